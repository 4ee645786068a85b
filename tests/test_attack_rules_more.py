"""More attacks on the rules engine (config: tests/fixtures/attack_rules_more; margin is hidden from sales): the live
form's rule preview as an oracle on hidden fields, and date timers under two workers.
xfail(strict=True) marks a defect proven by the test."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from kartoteka.metadata.fieldtypes import ParseContext
from kartoteka.records.service import RecordService
from kartoteka.rules.engine import RuleEngine
from kartoteka.rules.timers import fire_due_timers
from kartoteka.storage.indexes import sync_indexes
from kartoteka.storage.tables import rule_runs, rule_timers, tasks

CONFIG = Path(__file__).resolve().parent / "fixtures" / "attack_rules_more"


@pytest.fixture
def config_dir() -> Path:
    return CONFIG


@pytest.fixture
def rules(engine, metadata, clock):
    sync_indexes(engine, metadata)
    return RuleEngine(metadata, clock, engine).attach(RecordService(metadata, engine, clock, ParseContext()))


@pytest.fixture
def people(make_user):
    return {name: make_user(name, roles)[0] for name, roles in
            (("anna", ["sales"]), ("fiona", ["finance"]), ("root", ["admin"]))}


def _rows(engine, table, *where):
    with engine.connect() as conn:
        return conn.execute(sa.select(table).where(*where).order_by(*table.primary_key.columns)).all()


def test_the_live_form_and_the_cards_buttons_tell_nothing_of_hidden_fields(app, client, make_user):
    from tests.test_web import sign_in, text_of

    service = app.extensions["kartoteka"].service
    anna = make_user("anna", ["sales"], password="pw-anna-123456")[0]
    root = make_user("root", ["admin"])[0]
    deal = service.create("deal", {"name": "Oracle"}, anna)
    sign_in(client, anna)
    seen = []
    for margin in ("900", "100"):
        service.update("deal", deal.id, {"margin": margin}, root, expected_version=None)
        preview = service.evaluate("deal", {"name": "Oracle 2"}, anna, deal.id, preview=True).rules
        button = "Review the margin" in text_of(client.get(f"/cards/deal/{deal.id}"))
        seen.append((preview, button))
    assert seen[0] == seen[1], seen


def test_the_preview_names_the_rules_for_who_may_view_their_fields(rules, people):
    """What holds: the preview runs nothing and, for a user who views every field, follows the condition."""
    service = rules.service
    root = people["root"]
    deal = service.create("deal", {"name": "Seen"}, root)
    service.update("deal", deal.id, {"margin": "900"}, root, expected_version=None)
    logged = len(_rows(rules.engine, rule_runs))
    assert service.evaluate("deal", {"name": "Seen 2"}, root, deal.id, preview=True).rules == ("Fat margin",)
    assert len(_rows(rules.engine, rule_runs)) == logged


def test_two_workers_fire_each_due_timer_once(rules, engine, people):
    """What holds: two workers firing the same due timers at once run each rule once per record, with no error."""
    service = rules.service
    anna = people["anna"]
    made = [service.create("deal", {"name": f"D{i}", "due": "2026-03-10"}, anna).id for i in range(6)]
    moment = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
    fired: list[int] = []
    errors: list[str] = []

    def work() -> None:
        try:
            fired.append(fire_due_timers(rules, moment))
        except Exception as exc:  # a worker's crash is a finding
            errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sum(fired) == len(made)
    assert sorted(t.record_id for t in _rows(engine, tasks)) == made
    assert all(t.fired_at is not None for t in _rows(engine, rule_timers))


def test_a_manual_rule_blocked_with_a_long_message_is_refused_not_an_error(rules, engine, people):
    """A block message has no length limit in metadata (metadata/actions.py _LABEL); the run log's error column
    holds 2000 characters."""
    from kartoteka.errors import RuleRefused
    from kartoteka.rules.manual import run_manual

    deal = rules.service.create("deal", {"name": "Loud"}, people["anna"])
    with pytest.raises(RuleRefused):
        run_manual(rules, "deal", deal.id, "refuse_loudly", people["anna"])


def test_prior_of_an_empty_field_is_false_not_a_failure(rules, engine, people):
    service = rules.service
    deal = service.create("deal", {"name": "Won", "stage": "won"}, people["anna"])
    service.update("deal", deal.id, {"amount": "5000"}, people["anna"], expected_version=None)
    assert [r.result for r in _rows(engine, rule_runs, rule_runs.c.rule_key == "crossed_won")] == []


def test_a_value_cannot_add_headers_to_a_rules_email(rules, engine, people):
    """What holds: a field value with line breaks in an e-mail's subject stays one Subject line of the message."""
    from kartoteka.rules.delivery import email_message
    from kartoteka.rules.outbox import Delivery
    from kartoteka.storage.tables import outbox

    service = rules.service
    deal = service.create("deal", {"name": "x", "note": "hi\r\nBcc: thief@evil.example\r\n\r\nfake body"},
                          people["anna"])
    service.update("deal", deal.id, {"name": "greet"}, people["anna"], expected_version=None)
    row = _rows(engine, outbox)[0]
    message = email_message(Delivery.of(row), "Kartoteka <k@example.com>", datetime(2026, 3, 2, tzinfo=UTC))
    assert message["Bcc"] is None and message.get_all("To") == ["client@example.com"]
    assert "\n" not in message["Subject"] and "thief@evil.example" in message["Subject"]


def test_a_weekly_date_rule_goes_on_after_the_worker_was_down(rules, engine, people, fixed_clock):
    service = rules.service
    deal = service.create("deal", {"name": "Weekly", "next_call": "2026-03-10"}, people["anna"])
    fixed_clock.moment = datetime(2026, 3, 20, 10, 0, tzinfo=UTC)  # the worker was down from the 9th to the 20th
    assert fire_due_timers(rules, fixed_clock.now()) >= 1
    fixed_clock.moment = datetime(2026, 3, 31, 10, 0, tzinfo=UTC)
    assert fire_due_timers(rules, fixed_clock.now()) >= 1  # the call of the 24th (or the 17th's, late) comes
    assert str(service.get("deal", deal.id, people["root"])["next_call"]) > "2026-03-31"


def test_an_email_to_an_address_the_saver_chose_carries_no_field_the_saver_may_not_view(rules, engine, people):
    """A sales rep may set approver_email (to herself) and fire the rule: the e-mail must not carry the margin she
    may not view. (Rendering e-mails with every field, whoever's change fired the rule, would let any rep mail
    herself the hidden fields of every card she may edit.)"""
    from kartoteka.storage.tables import outbox

    service = rules.service
    deal = service.create("deal", {"name": "x"}, people["anna"])
    service.update("deal", deal.id, {"margin": "987"}, people["root"], expected_version=None)
    service.update("deal", deal.id, {"name": "approve", "approver_email": "anna@home.example"}, people["anna"],
                   expected_version=None)
    mails = _rows(engine, outbox, outbox.c.kind == "email")
    assert [m.payload["to"] for m in mails] == [["anna@home.example"]]
    assert "987" not in str(mails[0].payload)


def test_the_api_lists_only_the_manual_rules_the_caller_may_run(app, client, make_user):
    service = app.extensions["kartoteka"].service
    anna = make_user("anna", ["sales"])[0]
    _fiona, fiona_headers = make_user("fiona", ["finance"])
    deal = service.create("deal", {"name": "Listed"}, anna)
    listed = client.get(f"/api/v1/records/deal/{deal.id}/rules", headers=fiona_headers).get_json()["manual"]
    runnable = [m["key"] for m in listed
                if client.post(f"/api/v1/records/deal/{deal.id}/rules/{m['key']}",
                               headers=fiona_headers).status_code != 403]
    assert [m["key"] for m in listed] == runnable
