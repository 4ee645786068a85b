"""The rules engine through the record service: each trigger and action, the order of execution, loops and depth,
failures, date timers and schedules (config: tests/fixtures/rules)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from kartoteka.activity.timeline import card_timeline
from kartoteka.errors import RecordValidationError
from kartoteka.metadata.fieldtypes import ParseContext
from kartoteka.records.hooks import Origin
from kartoteka.records.model import SYSTEM
from kartoteka.records.service import RecordService
from kartoteka.rules.engine import RuleEngine
from kartoteka.rules.timer_sync import sync_date_timers
from kartoteka.rules.timers import fire_due_timers, run_schedules
from kartoteka.storage.indexes import sync_indexes
from kartoteka.storage.tables import (
    journal,
    notifications,
    outbox,
    rule_date_syncs,
    rule_runs,
    rule_states,
    rule_timers,
    tasks,
    timeline,
)
from kartoteka.web.formatting import format_value

RULES_CONFIG = Path(__file__).resolve().parent / "fixtures" / "rules"


@pytest.fixture
def config_dir() -> Path:
    return RULES_CONFIG


@pytest.fixture
def rules(engine, metadata, clock):
    """A record service with the rules engine attached."""
    sync_indexes(engine, metadata)
    service = RecordService(metadata, engine, clock, ParseContext())
    return RuleEngine(metadata, clock, engine, display=format_value).attach(service)


@pytest.fixture
def people(make_user):
    """anna and boris in sales, fiona in finance, an admin."""
    return {name: make_user(name, roles)[0] for name, roles in
            (("anna", ["sales"]), ("boris", ["sales"]), ("fiona", ["finance"]), ("root", ["admin"]))}


def _rows(engine, table, *where):
    with engine.connect() as conn:
        return conn.execute(sa.select(table).where(*where).order_by(*table.primary_key.columns)).all()


def _runs(engine, key=None):
    return _rows(engine, rule_runs, *([rule_runs.c.rule_key == key] if key else []))


def test_a_stage_moved_to_won_sets_fields_in_the_same_version_and_notifies_with_what_each_reader_may_see(
        rules, engine, people):
    service = rules.service
    deal = service.create("deal", {"name": "Roga", "stage": "proposal", "amount": "500000"}, people["anna"],
                          origin=Origin("ui"))
    deal = service.update("deal", deal.id, {"margin": "90000"}, people["root"], expected_version=None)
    won = service.update("deal", deal.id, {"stage": "won"}, people["anna"], expected_version=deal.version)
    assert won.version == deal.version + 1  # the rule's changes are part of the same version
    assert won["probability"] == Decimal(100) and won["tags"] == ["won"]
    texts = {row.user_id: row.text for row in _rows(engine, notifications)}
    assert set(texts) == {people["fiona"].id, people["anna"].id}
    assert "90" in texts[people["fiona"].id] and "Roga" in texts[people["fiona"].id]
    assert "90" not in texts[people["anna"].id]  # the owner may not view the margin: the text leaves it out
    run = _runs(engine, "deal_won")[0]
    assert (run.result, run.trigger, run.source, run.record_id) == ("done", "updated", "api", deal.id)
    assert [a["action"] for a in run.actions] == ["set", "add_tags", "notify"]
    shown = [e for e in card_timeline(service, "deal", deal.id, people["root"]).items if e.kind == "rule"]
    assert ("deal_won", "done", ["set", "add_tags", "notify"]) in [
        (e.payload["rule_key"], e.payload["result"], e.payload["actions"]) for e in shown]


@pytest.mark.parametrize(("start", "fires"), [("proposal", True), ("new", True), ("won", False)])
def test_a_changed_trigger_fires_only_from_the_stages_it_names(rules, engine, people, start, fires):
    service = rules.service
    deal = service.create("deal", {"name": "D", "stage": start}, SYSTEM, owner=people["anna"].id)
    service.update("deal", deal.id, {"stage": "lost", "lost_reason": "price"}, SYSTEM, expected_version=None)
    made = _rows(engine, tasks, tasks.c.record_id == deal.id, tasks.c.rule_key == "lost_review")
    assert bool(made) is fires
    if fires:
        assert made[0].title == "Review lost deal D" and made[0].description == "Reason: price"
        assert made[0].assignee == people["anna"].id  # the owner by default
        assert service.get("deal", deal.id, SYSTEM)["probability"] == Decimal(0)


def test_a_block_refuses_the_save_with_the_rules_message_for_everyone_but_who_it_spares(rules, engine, people):
    service = rules.service
    with pytest.raises(RecordValidationError) as refused:
        service.create("deal", {"name": "Big", "amount": "2000000"}, people["anna"])
    assert [str(m) for m in refused.value.errors["amount"]] == ["Deals over a million need an administrator"]
    assert service.create("deal", {"name": "Big", "amount": "2000000"}, people["root"]).id


def test_prior_and_source_in_conditions(rules, people):
    service = rules.service
    deal = service.create("deal", {"name": "L", "locked": True}, people["anna"])
    with pytest.raises(RecordValidationError) as refused:
        service.update("deal", deal.id, {"name": "L2"}, people["anna"], expected_version=None)
    assert "This deal is locked" in str(refused.value.errors)
    unlocked = service.update("deal", deal.id, {"locked": False}, people["anna"], expected_version=None)
    assert unlocked["locked"] is False  # prior('locked') and locked: unlocking is allowed


def test_is_new_and_is_changed_and_an_expression_set(rules, people):
    service = rules.service
    deal = service.create("deal", {"name": "C"}, people["anna"])
    assert deal["counter"] == 1
    deal = service.update("deal", deal.id, {"amount": "10"}, people["anna"], expected_version=None)
    assert deal["counter"] == 1
    deal = service.update("deal", deal.id, {"name": "C2"}, people["anna"], expected_version=None)
    assert deal["counter"] == 2


def test_create_record_links_the_new_card_and_runs_as_a_rule_save(rules, engine, people):
    service = rules.service
    deal = service.create("deal", {"name": "Onb", "stage": "proposal"}, people["anna"])
    service.update("deal", deal.id, {"stage": "won"}, people["anna"], expected_version=None)
    run = _runs(engine, "onboarding")[0]
    ticket = service.get("ticket", run.actions[0]["id"], SYSTEM)
    assert ticket["subject"] == "Onboarding: Onb" and ticket["deal"] == deal.id and ticket.owner == people["anna"].id
    # The journal names the rule that made the ticket, and the deal's save carries the rule's before-save change.
    made = _rows(engine, journal, journal.c.record_id == ticket.id)
    assert [(j.action, j.source, j.rule_key, j.user_id) for j in made] == [
        ("created", "rule", "onboarding", None)]  # made by the rule, not by a person
    won = _rows(engine, journal, journal.c.record_id == deal.id)[-1]
    assert won.changes["stage"] == ["proposal", "won"] and won.source == "api" and won.version == 2


def test_assign_deals_records_out_in_turn(rules, people):
    service = rules.service
    owners = [service.create("deal", {"name": f"A{i}"}, people["root"])["responsible"] for i in range(4)]
    assert owners == [people["anna"].id, people["boris"].id, people["anna"].id, people["boris"].id]


def test_assign_takes_turns_within_one_transaction_of_many_saves(rules, engine, people):
    """A bulk save (an import's batch) makes its records in one transaction: each before-save reads it, so the
    turn moves on between records instead of every record going to the same person."""
    service = rules.service
    with engine.begin() as conn:
        owners = [service.create("deal", {"name": f"B{i}"}, people["root"], connection=conn)["responsible"]
                  for i in range(3)]
    assert owners == [people["anna"].id, people["boris"].id, people["anna"].id]


def test_webhook_and_email_are_written_to_the_outbox_in_the_saving_transaction(rules, engine, people):
    service = rules.service
    deal = service.create("deal", {"name": "W", "stage": "proposal", "amount": "5", "margin": "1"}, people["root"])
    service.update("deal", deal.id, {"stage": "won"}, people["root"], expected_version=None)
    hook = _rows(engine, outbox, outbox.c.kind == "webhook")[0]
    assert hook.destination == "https://hooks.example.com/deals" and hook.payload["type"] == "deal_won"
    assert hook.payload["data"]["record"] == {"name": "W", "amount": 5, "stage": "won"}
    assert hook.delivery_id.startswith("msg_") and hook.state == "pending"
    ticket = service.create("ticket", {"subject": "Help", "reporter_email": "client@example.com"}, people["root"])
    service.update("ticket", ticket.id, {"status": "resolved"}, people["root"], expected_version=None)
    mail = _rows(engine, outbox, outbox.c.kind == "email")[0]
    assert mail.payload == {"to": ["client@example.com"], "subject": "Resolved: Help",
                            "body": "Your request Help is resolved."}
    assert [e.kind for e in _rows(engine, timeline, timeline.c.record_id == ticket.id)].count("email") == 1


def test_a_refused_save_leaves_nothing_of_its_rules(rules, engine, people):
    service = rules.service
    deal = service.create("deal", {"name": "R", "stage": "proposal"}, people["anna"])
    with pytest.raises(RecordValidationError):
        service.update("deal", deal.id, {"stage": "won", "amount": "9000000"}, people["anna"], expected_version=None)
    assert _rows(engine, notifications) == [] and _rows(engine, outbox) == []
    assert service.get("deal", deal.id, SYSTEM)["stage"] == "proposal"


def test_run_rule_loops_stop_after_one_round(rules, engine, people):
    service = rules.service
    ticket = service.create("ticket", {"subject": "P"}, people["root"])
    service.update("ticket", ticket.id, {"bounce": 1}, people["root"], expected_version=None)
    assert service.get("ticket", ticket.id, SYSTEM)["bounce"] == 2  # ping ran pong once; pong's save did not ping


def test_a_chain_stops_at_the_depth_limit_with_a_visible_entry(rules, engine, people):
    service = rules.service
    service.create("ticket", {"subject": "chain"}, people["root"])
    made = _rows(engine, timeline)  # noqa: F841  # the entries exist per record
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM records WHERE entity = 'ticket'")).scalar()
    assert count == 1 + rules.max_depth
    stopped = [r for r in _runs(engine, "spawn") if r.result == "stopped"]
    assert len(stopped) == 1 and "limit of 3" in stopped[0].error and stopped[0].depth == 3


def test_a_failing_rule_never_fails_the_save_and_is_disabled_after_repeated_failures(rules, engine, people):
    service = rules.service
    deal = service.create("deal", {"name": "x"}, people["root"])
    for number in range(rules.states.failure_limit):
        deal = service.update("deal", deal.id, {"name": "broken"}, people["root"], expected_version=None)
        deal = service.update("deal", deal.id, {"name": f"x{number}"}, people["root"], expected_version=None)
        rules.states.forget()
    runs = _runs(engine, "broken")
    assert [r.result for r in runs] == ["failed"] * rules.states.failure_limit
    assert "ghost" in runs[0].error
    assert _rows(engine, tasks, tasks.c.rule_key == "broken") == []
    state = _rows(engine, rule_states)[0]
    assert state.disabled_at is not None and "failed 5 times" in state.disabled_reason
    told = _rows(engine, notifications, notifications.c.user_id == people["root"].id)
    assert any("was disabled" in n.text for n in told)
    service.update("deal", deal.id, {"name": "broken"}, people["root"], expected_version=None)
    assert len(_runs(engine, "broken")) == rules.states.failure_limit  # disabled: no more runs


def test_date_rules_keep_a_timer_moved_by_edits_and_fire_once_when_due(rules, engine, people, fixed_clock):
    service = rules.service
    deal = service.create("deal", {"name": "T", "stage": "proposal", "close_date": "2026-03-20"}, people["anna"])
    timer = _rows(engine, rule_timers)[0]
    assert timer.due_at.replace(tzinfo=UTC) == datetime(2026, 3, 17, 9, 0, tzinfo=UTC)
    service.update("deal", deal.id, {"close_date": "2026-04-10"}, people["anna"], expected_version=None)
    timer = _rows(engine, rule_timers)[0]
    assert timer.due_at.replace(tzinfo=UTC) == datetime(2026, 4, 7, 9, 0, tzinfo=UTC)
    assert fire_due_timers(rules, datetime(2026, 4, 1, tzinfo=UTC)) == 0
    assert fire_due_timers(rules, datetime(2026, 4, 8, tzinfo=UTC)) == 1  # a worker down on the 7th catches up
    assert fire_due_timers(rules, datetime(2026, 4, 9, tzinfo=UTC)) == 0
    made = _rows(engine, tasks, tasks.c.record_id == deal.id)
    assert [t.title for t in made] == ["Deal T closes in 3 days"] and made[0].assignee == people["anna"].id
    assert _runs(engine, "closing_soon")[0].source == "schedule"


def test_a_date_rule_gets_timers_for_the_records_saved_before_it_and_follows_its_trigger_changes(
        rules, engine, metadata, clock, people):
    """Records saved before the date rule existed get its timers from the worker (a past moment stored fired, as on
    a save); a changed trigger recomputes them once; a removed rule's pending timers go."""
    before_rules = RecordService(metadata, engine, clock, ParseContext())  # no engine: the rule did not exist yet
    coming = before_rules.create("deal", {"name": "C", "close_date": "2026-04-10"}, people["anna"])
    past = before_rules.create("deal", {"name": "P", "close_date": "2026-03-01"}, people["anna"])
    before_rules.create("deal", {"name": "N"}, people["anna"])  # no date: no timer
    assert _rows(engine, rule_timers) == []
    now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

    assert sync_date_timers(rules, now) == 1
    timers = {t.record_id: t for t in _rows(engine, rule_timers)}
    assert timers.keys() == {coming.id, past.id}
    assert timers[coming.id].due_at.replace(tzinfo=UTC) == datetime(2026, 4, 7, 9, 0, tzinfo=UTC)
    assert timers[coming.id].fired_at is None and timers[past.id].fired_at is not None
    assert sync_date_timers(rules, now) == 0  # done once, whatever the number of worker ticks
    assert fire_due_timers(rules, datetime(2026, 4, 8, tzinfo=UTC)) == 1
    assert [t.title for t in _rows(engine, tasks, tasks.c.record_id == coming.id)] == ["Deal C closes in 3 days"]

    # The trigger recorded differs from the metadata's (an offset edited): the timers are recomputed, the fired
    # one whose moment moved into the future is due again.
    with engine.begin() as conn:
        conn.execute(sa.update(rule_date_syncs).values(trigger="close_date|-86400|None"))
        conn.execute(sa.update(rule_timers).where(rule_timers.c.record_id == coming.id)
                     .values(due_at=datetime(2026, 4, 9, 9, 0, tzinfo=UTC)))
    service = rules.service
    service.update("deal", coming.id, {"close_date": "2026-05-10"}, people["anna"], expected_version=None)
    with engine.begin() as conn:  # a stale moment left by an older computation
        conn.execute(sa.update(rule_timers).where(rule_timers.c.record_id == coming.id)
                     .values(due_at=datetime(2026, 4, 9, 9, 0, tzinfo=UTC), fired_at=now))
    assert sync_date_timers(rules, now) == 1
    timer = _rows(engine, rule_timers, rule_timers.c.record_id == coming.id)[0]
    assert (timer.due_at.replace(tzinfo=UTC), timer.fired_at) == (datetime(2026, 5, 7, 9, 0, tzinfo=UTC), None)

    # A rule that is gone (removed or disabled in the metadata): its pending timers go, its sync row too.
    with engine.begin() as conn:
        conn.execute(sa.insert(rule_date_syncs).values(entity="deal", rule_key="old_rule", trigger="x"))
        conn.execute(sa.insert(rule_timers).values(entity="deal", rule_key="old_rule", record_id=coming.id,
                                                   due_at=datetime(2026, 6, 1, tzinfo=UTC)))
    assert sync_date_timers(rules, now) == 0
    assert {t.rule_key for t in _rows(engine, rule_timers)} == {"closing_soon"}
    assert {r.rule_key for r in _rows(engine, rule_date_syncs)} == {"closing_soon"}


def test_a_worker_holding_the_lease_keeps_others_off_a_date_rules_recomputation(rules, engine, people):
    rules.service.create("deal", {"name": "C", "close_date": "2026-04-10"}, people["anna"])
    now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(sa.insert(rule_date_syncs).values(entity="deal", rule_key="closing_soon", trigger="old",
                                                       leased_until=now + timedelta(minutes=5)))
    assert sync_date_timers(rules, now) == 0  # another worker is on it
    assert sync_date_timers(rules, now + timedelta(minutes=6)) == 1  # its lease ran out: taken over


def test_scheduled_rules_run_once_per_time_over_the_records_they_select(rules, engine, people):
    service = rules.service
    stale = service.create("deal", {"name": "S", "stage": "proposal"}, people["anna"])
    fresh = service.create("deal", {"name": "F", "stage": "new"}, people["anna"])
    start = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    assert run_schedules(rules, start) == 0  # first sight: the next run is 03:00 tomorrow
    assert run_schedules(rules, start + timedelta(hours=14)) == 0
    assert run_schedules(rules, start + timedelta(hours=15, minutes=1)) == 1
    assert run_schedules(rules, start + timedelta(hours=15, minutes=2)) == 0  # once, however often workers look
    assert service.get("deal", stale.id, SYSTEM)["tags"] == ["stale"]
    assert service.get("deal", fresh.id, SYSTEM)["tags"] is None


def test_a_manual_rule_saves_its_changes_through_the_service_and_fires_the_save_rules(rules, engine, people):
    service = rules.service
    deal = service.create("deal", {"name": "M", "stage": "proposal"}, people["anna"])
    entity = service.entity("deal")
    with engine.begin() as conn:
        run = rules.run_on_record(conn, entity, rules.rule(entity, "mark_lost"), deal.id, people["anna"],
                                  Origin("manual"), "manual")
    assert run.result == "done"
    saved = service.get("deal", deal.id, SYSTEM)
    assert (saved["stage"], saved["lost_reason"]) == ("lost", "Marked by hand")
    assert _rows(engine, tasks, tasks.c.rule_key == "lost_review")  # the stage change fired the lost rule
    with engine.begin() as conn:
        again = rules.run_on_record(conn, entity, rules.rule(entity, "mark_lost"), deal.id, people["anna"],
                                    Origin("manual"), "manual")
    assert again.result == "skipped"  # its condition no longer holds


def test_automation_can_be_skipped_explicitly(rules, engine, people):
    service = rules.service
    deal = service.create("deal", {"name": "I"}, people["anna"], origin=Origin("import", automation=False))
    assert deal["counter"] is None and deal["responsible"] is None
    assert _runs(engine) == []


def test_the_same_triggers_fire_whatever_the_source(rules, engine, people):
    service = rules.service
    for source in ("ui", "api", "import"):
        service.create("deal", {"name": source}, people["anna"], origin=Origin(source))
    assert sorted(r.source for r in _runs(engine, "count_saves")) == ["api", "import", "ui"]


def test_a_deleted_record_drops_its_timers(rules, engine, people):
    service = rules.service
    deal = service.create("deal", {"name": "D", "close_date": date(2026, 5, 1).isoformat()}, people["anna"])
    assert _rows(engine, rule_timers)
    service.delete("deal", deal.id, people["anna"])
    assert _rows(engine, rule_timers) == []
    service.restore("deal", deal.id, people["root"])  # back from the trash: its timers are set again
    assert [(t.record_id, t.rule_key, t.fired_at) for t in _rows(engine, rule_timers)] == [
        (deal.id, "closing_soon", None)]


def test_rule_texts_are_written_in_each_readers_language(rules, engine, people, make_user):
    ivan = make_user("ivan", ["finance"], language="ru")[0]
    service = rules.service
    deal = service.create("deal", {"name": "Roga", "stage": "proposal", "amount": "1500.5"}, people["anna"])
    service.update("deal", deal.id, {"stage": "won"}, people["anna"], expected_version=None)
    texts = {row.user_id: row.text for row in _rows(engine, notifications)}
    assert texts[people["fiona"].id].startswith("Deal Roga won: RUB\xa01,500.50")
    assert texts[ivan.id].startswith("Сделка Roga выиграна: 1\xa0500,50")


def test_check_config_checks_every_language_of_a_rule_text(tmp_path):
    from kartoteka.metadata.loader import check_config
    from tests.conftest import write_config

    deal = {"entity": "deal", "label": "Deal", "title": "{name}", "fields": {"name": {"type": "text"}},
            "rules": [{"name": "Tell", "trigger": {"on": ["created"]},
                       "actions": [{"notify": {"owner": True, "message": {"en": "{{ name }}", "ru": "{{ nmae }}"}}}]}]}
    _, problems = check_config(write_config(tmp_path, {"deal": deal}), ParseContext())
    assert any("rules[0].actions[0].notify.message.ru: unknown field 'nmae'" in str(p) for p in problems), problems


def test_check_config_wants_a_consent_field_for_an_emails_consent(tmp_path):
    from kartoteka.metadata.loader import check_config
    from tests.conftest import write_config

    fields = {"name": {"type": "text"}, "email": {"type": "email"}, "agreed": {"type": "boolean"},
              "pd_consent": {"type": "consent", "policy_version": "1"}}
    mail = {"to": "{{ email }}", "subject": "Hi", "body": "Hello"}
    for consent, expected in (("agreed", "'agreed' is a boolean field; 'consent' names a consent field"),
                              ("pd_consnet", "unknown field 'pd_consnet'"), ("pd_consent", None)):
        deal = {"entity": "deal", "label": "Deal", "title": "{name}", "fields": fields,
                "rules": [{"name": "Mail", "trigger": {"on": ["created"]},
                           "actions": [{"email": {**mail, "consent": consent}}]}]}
        _, problems = check_config(write_config(tmp_path / consent, {"deal": deal}), ParseContext())
        if expected is None:
            assert problems == []
        else:
            assert any(f"rules[0].actions[0].email.consent: {expected}" in str(p) for p in problems), problems
