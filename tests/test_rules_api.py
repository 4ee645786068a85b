"""Manual rules, the run log and what a card has scheduled, through the API and the card page
(config: tests/fixtures/rules)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kartoteka.records.model import SYSTEM
from tests.test_web import CSRF, sign_in, text_of

RULES_CONFIG = Path(__file__).resolve().parent / "fixtures" / "rules"


@pytest.fixture
def config_dir() -> Path:
    return RULES_CONFIG


@pytest.fixture
def people(make_user):
    return {name: make_user(name, roles) for name, roles in
            (("anna", ["sales"]), ("boris", ["sales"]), ("fiona", ["finance"]), ("root", ["admin"]))}


@pytest.fixture
def deal(app, people):
    service = app.extensions["kartoteka"].service
    return service.create("deal", {"name": "Manual", "stage": "proposal", "close_date": "2026-06-01"},
                          people["anna"][0])


def test_a_manual_rule_runs_by_the_api_for_who_may_change_the_record(client, people, deal):
    url = f"/api/v1/records/deal/{deal.id}/rules/mark_lost"
    assert client.post(url, headers=people["fiona"][1]).status_code == 403  # may read, not change
    assert client.post(url, headers=people["boris"][1]).status_code == 404  # outside his scope
    assert client.post(f"/api/v1/records/deal/{deal.id}/rules/nope", headers=people["anna"][1]).status_code == 404
    assert client.post(f"/api/v1/records/deal/{deal.id}/rules/deal_won", headers=people["anna"][1]).status_code \
        == 404  # not a manual rule
    done = client.post(url, headers=people["anna"][1])
    assert done.status_code == 200, done.get_json()
    body = done.get_json()
    assert body["run"]["result"] == "done" and body["record"]["stage"] == "lost"
    again = client.post(url, headers=people["anna"][1])
    assert again.status_code == 422
    assert "does not apply to this record now" in again.get_json()["detail"]


def test_the_run_log_shows_administrators_everything_and_others_their_records_without_details(client, people,
                                                                                               deal):
    client.post(f"/api/v1/records/deal/{deal.id}/rules/mark_lost", headers=people["anna"][1])
    assert client.get("/api/v1/rule-runs", headers=people["anna"][1]).status_code == 403
    mine = client.get(f"/api/v1/rule-runs?entity=deal&record={deal.id}", headers=people["anna"][1]).get_json()
    assert {item["rule"] for item in mine["items"]} >= {"mark_lost", "lost_review"}
    assert all(isinstance(a, str) for item in mine["items"] for a in item["actions"])
    assert client.get(f"/api/v1/rule-runs?entity=deal&record={deal.id}",
                      headers=people["boris"][1]).status_code == 404
    everything = client.get("/api/v1/rule-runs?result=done", headers=people["root"][1]).get_json()["items"]
    assert everything and all(item["result"] == "done" for item in everything)
    assert client.get("/api/v1/rule-runs?entity=deal&record=x", headers=people["root"][1]).status_code == 400


def test_a_record_lists_its_manual_rules_and_what_is_scheduled(client, people, deal):
    body = client.get(f"/api/v1/records/deal/{deal.id}/rules", headers=people["anna"][1]).get_json()
    assert [m["key"] for m in body["manual"]] == ["mark_lost"]
    assert body["manual"][0]["confirm"] == "Mark this deal lost?"
    assert body["scheduled"] == [{"rule": "closing_soon", "name": "Closing soon", "due_at": "2026-05-29T09:00:00Z"}]
    assert client.get(f"/api/v1/records/deal/{deal.id}/rules", headers=people["fiona"][1]).get_json()["manual"] == []


def test_the_card_shows_the_rule_button_and_the_schedule_and_runs_the_rule(client, people, deal, app):
    sign_in(client, people["anna"][0])
    page = text_of(client.get(f"/cards/deal/{deal.id}"))
    assert "Mark lost" in page and 'data-confirm="Mark this deal lost?"' in page
    assert "Closing soon" in page
    response = client.post(f"/cards/deal/{deal.id}/rules/mark_lost", data={"csrf_token": CSRF})
    assert response.status_code == 302
    assert app.extensions["kartoteka"].service.get("deal", deal.id, SYSTEM)["stage"] == "lost"
    refused = client.post(f"/cards/deal/{deal.id}/rules/mark_lost", data={"csrf_token": CSRF},
                          follow_redirects=True)
    assert "does not apply to this record now" in text_of(refused)
    assert client.post(f"/cards/deal/{deal.id}/rules/mark_lost", data={}).status_code == 400  # no CSRF token


def test_the_run_log_page_is_for_administrators(client, people, deal):
    sign_in(client, people["anna"][0])
    assert client.get("/cards/rule-runs").status_code == 403
    sign_in(client, people["root"][0])
    page = text_of(client.get("/cards/rule-runs?result=done"))
    assert "Count saves" in page and "Deal · " in page


def test_the_command_line_lists_tests_and_enables_rules(runner, app, people, deal, engine):
    import sqlalchemy as sa

    from kartoteka.storage.tables import outbox, rule_states

    listed = runner.invoke("rules", "list", "deal")
    assert listed.exit_code == 0, listed.output
    assert "deal.deal_won" in listed.output and "changed stage to won" in listed.output
    assert "deal.mark_lost" in listed.output and "manual (admin, sales)" in listed.output
    tested = runner.invoke("rules", "test", "deal", str(deal.id), "webhook_on_won")
    assert tested.exit_code == 0, tested.output
    assert "would deliver webhook to https://hooks.example.com/deals" in tested.output
    assert "Rolled back" in tested.output
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(outbox)).scalar() == 0
    service = app.extensions["kartoteka"].service
    assert service.get("deal", deal.id, SYSTEM)["stage"] == "proposal"
    unknown = runner.invoke("rules", "test", "deal", str(deal.id), "nope")
    assert unknown.exit_code == 1 and "has no rule 'nope'" in unknown.output
    with engine.begin() as conn:
        conn.execute(sa.insert(rule_states).values(entity="deal", rule_key="broken", failures=5,
                                                   disabled_at=app.extensions["kartoteka"].clock.now(),
                                                   updated_at=app.extensions["kartoteka"].clock.now()))
    assert "DISABLED" in runner.invoke("rules", "list", "deal").output
    enabled = runner.invoke("rules", "enable", "deal", "broken")
    assert enabled.exit_code == 0 and "enabled" in enabled.output
    with engine.connect() as conn:
        assert conn.execute(sa.select(rule_states.c.disabled_at)).scalar() is None


def test_the_depth_limit_is_a_setting(tmp_path, database_url, engine, clock):
    from kartoteka import create_app
    from kartoteka.config import Settings

    settings = Settings.from_env({"KARTOTEKA_RULE_DEPTH": "1", "KARTOTEKA_DATABASE_URL": database_url,
                                  "KARTOTEKA_CONFIG_DIR": str(RULES_CONFIG),
                                  "KARTOTEKA_INSTANCE_DIR": str(tmp_path / "instance"), "KARTOTEKA_SECRET_KEY": "x"})
    app = create_app(settings, clock)
    try:
        assert app.extensions["kartoteka"].service.hooks.max_depth == 1
    finally:
        app.extensions["kartoteka"].engine.dispose()
    with pytest.raises(ValueError, match="KARTOTEKA_RULE_DEPTH must be a whole number"):
        Settings.from_env({"KARTOTEKA_RULE_DEPTH": "deep", "KARTOTEKA_SECRET_KEY": "x",
                           "KARTOTEKA_INSTANCE_DIR": str(tmp_path / "instance")})


def test_a_live_form_says_which_rules_saving_would_run(client, people, deal):
    sign_in(client, people["anna"][0])
    page = client.get(f"/cards/deal/{deal.id}/edit")
    assert 'id="rules-preview"' in text_of(page)
    form = {"csrf_token": CSRF, "version": str(deal.version), "name": "Manual", "stage": "won",
            "close_date": "2026-06-01"}
    live = text_of(client.post(f"/cards/deal/{deal.id}/live", data=form))
    assert "Saving will run:" in live and "Deal won" in live and "Ticket for a won deal" in live
    assert "Deal lost" not in live
    quiet = text_of(client.post(f"/cards/deal/{deal.id}/live", data={**form, "stage": "proposal"}))
    assert "Saving will run" not in quiet
