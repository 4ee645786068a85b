"""Timelines, tasks and notifications through the activity layer: visibility by scope, versions, overdue, counts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from kartoteka.activity.model import Counts, TaskQuery
from kartoteka.activity.notifications import list_notifications, mark_read, unread_count
from kartoteka.activity.store import add_entry, create_task, notify
from kartoteka.activity.tasks import counts, get_task, list_tasks, new_task, update_task
from kartoteka.activity.timeline import card_timeline, log_entry
from kartoteka.errors import BadRequest, Conflict, NotFound, PermissionDenied, RecordValidationError
from kartoteka.records.model import SYSTEM
from kartoteka.storage.tables import rule_runs

MATRIX = yaml.safe_load((Path(__file__).parent / "fixtures" / "permission_matrix.yaml").read_text("utf-8"))
COMPANY = {"name": "Northwind Trading Ltd", "country": "gb"}


@pytest.fixture
def deal(service):
    """A deal owned by a sales rep `owner` (department sales)."""
    def make(owner, name="CRM rollout"):
        company = service.create("company", COMPANY | {"name": f"{name} Ltd"}, SYSTEM)
        return service.create("deal", {"name": name, "company": company.id}, SYSTEM, owner=owner.id)
    return make


def test_a_note_a_call_and_a_task_come_back_newest_first_with_their_authors(service, make_user, deal, fixed_clock):
    rep, _ = make_user("rep", ["sales"], "sales")
    card = deal(rep)
    log_entry(service, "deal", card.id, rep, kind="note", body="First contact")
    fixed_clock.advance(minutes=1)
    new_task(service, rep, title="Send the offer", assignee=rep.id, due_at=date(2026, 3, 5), entity="deal",
             record_id=card.id)
    fixed_clock.advance(minutes=1)
    log_entry(service, "deal", card.id, rep, kind="meeting", body="Demo", outcome="liked it", duration_minutes="45")
    page = card_timeline(service, "deal", card.id, rep)
    assert [e.kind for e in page.items] == ["meeting", "task", "note", "change"]  # the card's creation, last
    assert page.items[3].payload["action"] == "created" and page.items[3].payload["version"] == 1
    assert page.items[0].payload == {"outcome": "liked it", "duration_minutes": 45}
    assert page.items[1].task.title == "Send the offer" and page.items[1].author == "rep"
    assert page.items[2].author == "rep" and page.next_cursor is None


def test_the_timeline_pages_through_entries_runs_and_tasks_of_the_same_moment(service, make_user, deal, fixed_clock):
    rep, _ = make_user("rep", ["sales"], "sales")
    card = deal(rep)
    with service.engine.begin() as conn:  # the rules' run log, read by the timeline (a skipped run is not shown)
        conn.execute(sa.insert(rule_runs), [
            {"entity": "deal", "rule_key": f"run {n}", "record_id": card.id, "trigger": "updated", "source": "ui",
             "result": "skipped" if n == 9 else "done", "actions": [{"action": "set"}], "created_at": fixed_clock.now()}
            for n in (0, 1, 9)])
    for n in range(3):  # all at the same moment: the order is still total
        log_entry(service, "deal", card.id, rep, kind="note", body=f"note {n}")
        new_task(service, rep, title=f"task {n}", entity="deal", record_id=card.id)
    fixed_clock.advance(minutes=1)
    log_entry(service, "deal", card.id, rep, kind="note", body="latest")
    for limit in (1, 2, 3, 50):
        seen, cursor = [], None
        while True:
            page = card_timeline(service, "deal", card.id, rep, limit=limit, cursor=cursor)
            seen.extend(e.body or (e.task.title if e.task else e.payload["rule_key"] or e.payload["action"])
                        for e in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == ["latest", "note 2", "note 1", "note 0", "created", "run 1", "run 0", "task 2", "task 1",
                        "task 0"]
    run = card_timeline(service, "deal", card.id, rep).items[5]
    assert (run.kind, run.payload) == ("rule", {"rule_key": "run 1", "rule": "run 1", "result": "done",
                                               "actions": ["set"]})
    with pytest.raises(BadRequest):
        card_timeline(service, "deal", card.id, rep, cursor="not-a-cursor")


def test_entries_are_checked(service, make_user, deal):
    rep, _ = make_user("rep", ["sales"], "sales")
    card = deal(rep)
    with pytest.raises(RecordValidationError) as refused:
        log_entry(service, "deal", card.id, rep, kind="call", body="  ", duration_minutes="9999")
    assert set(refused.value.errors) == {"body", "duration_minutes"}
    assert refused.value.errors["body"][0].code == "timeline.body_required"
    with pytest.raises(BadRequest):
        log_entry(service, "deal", card.id, rep, kind="rule", body="forged rule run")


@pytest.mark.parametrize("role", list(MATRIX["expected"]))
def test_the_timeline_and_tasks_of_a_card_follow_its_read_scope(role, service, make_user, deal):
    """Whoever may read the deal sees its timeline and tasks and may add notes; anyone else gets NotFound."""
    me, _ = make_user("me", [role], MATRIX["departments"][role])
    owner, _ = make_user("owner", ["sales"], "other-department")
    card = deal(owner)
    with service.engine.begin() as conn:
        add_entry(conn, entity="deal", record_id=card.id, kind="note", now=service.clock.now(), body="Owner's note",
                  user_id=owner.id)
        task_id = create_task(conn, title="Owner's task", now=service.clock.now(), assignee=owner.id, entity="deal",
                              record_id=card.id, created_by=owner.id)
    may_read = MATRIX["expected"][role]["deal"].split()[1] == "all"
    if may_read:
        assert [e.kind for e in card_timeline(service, "deal", card.id, me).items] == ["note", "change", "task"]
        assert get_task(service, task_id, me).card_title == "CRM rollout"
        assert [t.id for t in list_tasks(service, me, TaskQuery(entity="deal")).items] == [task_id]
        log_entry(service, "deal", card.id, me, kind="note", body="Seen")
    else:
        with pytest.raises((NotFound, PermissionDenied)):
            card_timeline(service, "deal", card.id, me)
        with pytest.raises((NotFound, PermissionDenied)):
            log_entry(service, "deal", card.id, me, kind="note", body="Seen")
        with pytest.raises(NotFound):
            get_task(service, task_id, me)
        assert list_tasks(service, me, TaskQuery()).items == ()


def test_a_sales_rep_cannot_see_the_timeline_or_tasks_of_another_reps_deal(service, make_user, deal):
    rep, _ = make_user("rep", ["sales"], "sales")
    other, _ = make_user("other", ["sales"], "sales")
    theirs = deal(other)
    task = new_task(service, other, title="Call the CFO", assignee=other.id, entity="deal", record_id=theirs.id)
    with pytest.raises(NotFound):
        card_timeline(service, "deal", theirs.id, rep)
    with pytest.raises(NotFound):
        get_task(service, task.id, rep)
    with pytest.raises(NotFound):
        update_task(service, task.id, {"done": True}, rep, expected_version=1)
    with pytest.raises(NotFound):
        new_task(service, rep, title="Snoop", entity="deal", record_id=theirs.id)


def test_a_task_is_visible_to_its_assignee_even_without_the_card(service, make_user, deal, fixed_clock):
    """A task whose assignee may not open its card (a rule's, or theirs before their role changed): they see and
    tick it, but not the card's title. People cannot make such a task (test_activity_assignees.py)."""
    rep, _ = make_user("rep", ["sales"], "sales")
    hr, _ = make_user("hr", ["hr"], "hr")
    card = deal(rep)
    with service.engine.begin() as conn:
        task_id = create_task(conn, title="Check the contract", now=fixed_clock.now(), assignee=hr.id, entity="deal",
                              record_id=card.id, created_by=rep.id)
    task = get_task(service, task_id, rep)
    with pytest.raises(RecordValidationError):
        new_task(service, rep, title="Check the contract", assignee=hr.id, entity="deal", record_id=card.id)
    seen = get_task(service, task.id, hr)
    assert seen.card_title is None and seen.record_id == card.id
    assert update_task(service, task.id, {"done": True}, hr, expected_version=1).done


def test_readers_see_a_task_but_only_who_may_change_the_card_changes_it(service, make_user, deal):
    rep, _ = make_user("rep", ["sales"], "sales")
    marketing, _ = make_user("mk", ["marketing"], "marketing")  # reads every deal, changes none
    card = deal(rep)
    task = new_task(service, rep, title="Follow up", entity="deal", record_id=card.id)
    assert get_task(service, task.id, marketing).title == "Follow up"
    with pytest.raises(PermissionDenied):
        update_task(service, task.id, {"done": True}, marketing, expected_version=1)


def test_a_stale_task_edit_is_a_conflict_with_the_current_version(service, make_user):
    rep, _ = make_user("rep", ["sales"], "sales")
    task = new_task(service, rep, title="Prepare", assignee=rep.id)
    changed = update_task(service, task.id, {"title": "Prepare the offer"}, rep, expected_version=1)
    assert changed.version == 2 and changed.title == "Prepare the offer"
    with pytest.raises(Conflict) as stale:
        update_task(service, task.id, {"done": True}, rep, expected_version=1)
    assert stale.value.current_version == 2
    assert not get_task(service, task.id, rep).done
    unchanged = update_task(service, task.id, {"title": "Prepare the offer"}, rep, expected_version=2)
    assert unchanged.version == 2  # nothing to write, nothing written


def test_task_changes_are_checked(service, make_user):
    rep, _ = make_user("rep", ["sales"], "sales")
    task = new_task(service, rep, title="Prepare", assignee=rep.id)
    with pytest.raises(RecordValidationError) as refused:
        update_task(service, task.id, {"title": "", "assignee": 999, "done": "yes", "colour": "red"}, rep,
                    expected_version=1)
    assert set(refused.value.errors) == {"title", "assignee", "done", "colour"}


def test_overdue_tasks_and_the_header_counts_follow_the_clock(service, make_user, fixed_clock):
    rep, _ = make_user("rep", ["sales"], "sales")
    now = fixed_clock.now()  # 2026-03-02 09:30 UTC
    today = new_task(service, rep, title="Due today", assignee=rep.id, due_at=date(2026, 3, 2))
    past = new_task(service, rep, title="Due an hour ago", assignee=rep.id, due_at=now - timedelta(hours=1))
    new_task(service, rep, title="Undated", assignee=rep.id)
    done = new_task(service, rep, title="Done late", assignee=rep.id, due_at=date(2026, 2, 1))
    update_task(service, done.id, {"done": True}, rep, expected_version=1)
    with service.engine.begin() as conn:
        notify(conn, user_id=rep.id, text="Deal won", now=now)
    assert not get_task(service, today.id, rep).overdue(now)
    assert get_task(service, past.id, rep).overdue(now)
    assert counts(service.engine, rep.id, now) == Counts(open_tasks=3, overdue_tasks=1, unread=1)
    fixed_clock.moment = datetime(2026, 3, 3, 0, 0, 1, tzinfo=UTC)
    assert counts(service.engine, rep.id, fixed_clock.now()).overdue_tasks == 2
    open_tasks = list_tasks(service, rep, TaskQuery(assignee=rep.id, done=False))
    assert [t.title for t in open_tasks.items] == ["Due an hour ago", "Due today", "Undated"]
    due_soon = list_tasks(service, rep, TaskQuery(done=False, due_lte=datetime(2026, 3, 2, 23, 59, 59, tzinfo=UTC),
                                                  due_gte=datetime(2026, 3, 2, tzinfo=UTC)))
    assert [t.title for t in due_soon.items] == ["Due an hour ago", "Due today"]


def test_task_lists_page_by_due_date(service, make_user):
    rep, _ = make_user("rep", ["sales"], "sales")
    for day in (5, 3, 4):
        new_task(service, rep, title=f"day {day}", assignee=rep.id, due_at=date(2026, 3, day))
    new_task(service, rep, title="undated", assignee=rep.id)
    seen, cursor = [], None
    while True:
        page = list_tasks(service, rep, TaskQuery(assignee=rep.id, limit=1, cursor=cursor))
        seen.extend(t.title for t in page.items)
        if (cursor := page.next_cursor) is None:
            break
    assert seen == ["day 3", "day 4", "day 5", "undated"]


def test_a_task_of_a_card_in_the_trash_is_hidden(service, make_user, deal):
    rep, _ = make_user("rep", ["sales"], "sales")
    card = deal(rep)
    new_task(service, rep, title="Follow up", assignee=rep.id, entity="deal", record_id=card.id)
    assert counts(service.engine, rep.id, service.clock.now()).open_tasks == 1
    service.delete("deal", card.id, SYSTEM, expected_version=card.version)
    assert counts(service.engine, rep.id, service.clock.now()).open_tasks == 0
    assert list_tasks(service, rep, TaskQuery()).items == ()


def test_notifications_are_their_users_alone(service, make_user, fixed_clock):
    anna, _ = make_user("anna", ["sales"], "sales")
    boris, _ = make_user("boris", ["sales"], "sales")
    with service.engine.begin() as conn:
        first = notify(conn, user_id=anna.id, text="first", now=fixed_clock.now())
        fixed_clock.advance(minutes=1)
        second = notify(conn, user_id=anna.id, text="second", now=fixed_clock.now())
        theirs = notify(conn, user_id=boris.id, text="boris's", now=fixed_clock.now())
    assert [n.text for n in list_notifications(service.engine, anna).items] == ["second", "first"]
    assert unread_count(service.engine, anna) == 2
    with pytest.raises(NotFound):
        mark_read(service.engine, anna, fixed_clock.now(), [theirs])
    assert unread_count(service.engine, boris) == 1
    assert mark_read(service.engine, anna, fixed_clock.now(), [second]) == 1
    # Unread first, then newest first.
    assert [n.text for n in list_notifications(service.engine, anna).items] == ["first", "second"]
    page = list_notifications(service.engine, anna, limit=1)
    assert [n.id for n in page.items] == [first]
    assert [n.id for n in list_notifications(service.engine, anna, limit=1, cursor=page.next_cursor).items] == [second]
    assert mark_read(service.engine, anna, fixed_clock.now()) == 1
    assert unread_count(service.engine, anna) == 0 and unread_count(service.engine, boris) == 1
