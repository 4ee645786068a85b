"""Merging duplicates: the survivor takes the chosen values, references, tasks and timeline move to it, the merged
records go to the trash, all journalled; undoing it puts everything back (shipped config)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from kartoteka.activity.store import add_entry, create_task
from kartoteka.errors import BadRequest, Conflict, NotFound, PermissionDenied, RecordValidationError
from kartoteka.records.merging import merge, undo_merge
from kartoteka.records.model import SYSTEM
from kartoteka.storage.tables import journal, tasks, timeline

COMPANY = {"name": "Northwind Trading Ltd", "country": "gb"}


@pytest.fixture
def people(make_user):
    return {name: make_user(name, roles, department)[0] for name, roles, department in
            (("rep", ["sales"], "sales"), ("other", ["sales"], "sales"), ("boss", ["admin"], None))}


@pytest.fixture
def twins(service, people):
    """Two contacts of one person at one company, a deal pointing at the second, a task and a note on it."""
    company = service.create("company", COMPANY, SYSTEM)
    first = service.create("contact", {"first_name": "Ann", "last_name": "Lee", "company": company.id,
                                       "phones": ["+44 20 7946 0958"], "position": "CFO"}, people["boss"])
    second = service.create("contact", {"first_name": "Anne", "last_name": "Lee", "company": company.id,
                                        "phones": ["+44 20 7946 0959"], "emails": ["ann@example.com"]},
                            people["boss"])
    deal = service.create("deal", {"name": "Rollout", "company": company.id, "contact": second.id}, SYSTEM,
                          owner=people["rep"].id)
    with service.engine.begin() as conn:
        task = create_task(conn, title="Call Anne", now=service.clock.now(), assignee=people["boss"].id,
                           entity="contact", record_id=second.id, created_by=people["boss"].id)
        note = add_entry(conn, entity="contact", record_id=second.id, kind="note", now=service.clock.now(),
                         body="Met at the fair", user_id=people["boss"].id)
    return {"company": company, "first": first, "second": second, "deal": deal, "task": task, "note": note}


def _row(engine, table, row_id):
    with engine.connect() as conn:
        return conn.execute(sa.select(table).where(table.c.id == row_id)).one()


def test_a_merge_moves_everything_to_the_survivor_and_its_undo_puts_it_back(service, engine, people, twins):
    first, second, deal = twins["first"], twins["second"], twins["deal"]
    done = merge(service, "contact", first.id, [second.id],
                 {"phones": ["+44 20 7946 0958", "+44 20 7946 0959"], "emails": ["ann@example.com"]}, people["boss"])
    assert done.merged == (second.id,) and done.repointed == (("deal", deal.id),)
    assert done.moved == {"timeline": 1, "tasks": 1, "notifications": 0}
    assert done.survivor["phones"] == ["+442079460958", "+442079460959"]
    assert done.survivor["emails"] == ["ann@example.com"] and done.survivor["position"] == "CFO"
    assert service.get("deal", deal.id, SYSTEM)["contact"] == first.id
    with pytest.raises(NotFound):
        service.get("contact", second.id, SYSTEM)
    assert _row(engine, tasks, twins["task"]).record_id == first.id
    assert _row(engine, timeline, twins["note"]).record_id == first.id
    with engine.connect() as conn:
        batch = conn.execute(sa.select(journal.c.entity, journal.c.record_id, journal.c.action)
                             .where(journal.c.batch == f"merge:{done.merge_id}").order_by(journal.c.id)).all()
    assert [tuple(r) for r in batch] == [("deal", deal.id, "merged"), ("contact", second.id, "deleted"),
                                         ("contact", first.id, "merged")]

    undone = undo_merge(service, done.merge_id, people["boss"])
    assert undone.restored == (second.id,) and undone.kept == ()
    assert service.get("contact", second.id, SYSTEM)["first_name"] == "Anne"
    assert service.get("contact", first.id, SYSTEM)["phones"] == ["+442079460958"]
    assert service.get("contact", first.id, SYSTEM)["emails"] is None
    assert service.get("deal", deal.id, SYSTEM)["contact"] == second.id
    assert _row(engine, tasks, twins["task"]).record_id == second.id
    assert _row(engine, timeline, twins["note"]).record_id == second.id
    with pytest.raises(Conflict):
        undo_merge(service, done.merge_id, people["boss"])


def test_an_undo_leaves_and_names_what_changed_after_the_merge(service, people, twins):
    first, second, deal = twins["first"], twins["second"], twins["deal"]
    done = merge(service, "contact", first.id, [second.id], {"position": "CEO"}, people["boss"])
    service.update("contact", first.id, {"position": "Chair"}, people["boss"], expected_version=None)
    undone = undo_merge(service, done.merge_id, people["boss"])
    assert undone.kept == (("contact", first.id, "position"),)
    assert service.get("contact", first.id, SYSTEM)["position"] == "Chair"
    assert service.get("deal", deal.id, SYSTEM)["contact"] == second.id


def test_a_unique_value_can_move_to_the_survivor_and_back(service, people):
    old = service.create("company", COMPANY | {"name": "Roga Ltd"}, SYSTEM)
    new = service.create("company", COMPANY | {"name": "Roga and Kopyta Ltd", "inn": "7707083893"}, SYSTEM)
    done = merge(service, "company", old.id, [new.id], {"inn": "7707083893"}, people["boss"])
    assert done.survivor["inn"] == "7707083893"
    undo_merge(service, done.merge_id, people["boss"])
    assert service.get("company", new.id, SYSTEM)["inn"] == "7707083893"
    assert service.get("company", old.id, SYSTEM)["inn"] is None


def test_a_merge_is_checked_and_all_or_nothing(service, engine, people, twins):
    first, second = twins["first"], twins["second"]
    for survivor, others, code in ((first.id, [], "merge.others_invalid"), (first.id, [first.id],
                                   "merge.survivor_in_others"), ("1", [second.id], "merge.survivor_invalid"),
                                   (first.id, [True], "merge.others_invalid")):
        with pytest.raises(BadRequest) as error:
            merge(service, "contact", survivor, others, {}, people["boss"])
        assert error.value.detail.code == code
    with pytest.raises(PermissionDenied):  # reps may not delete contacts: they may not merge them
        merge(service, "contact", first.id, [second.id], {}, people["rep"])
    with pytest.raises(RecordValidationError):  # a bad value refuses the whole merge
        merge(service, "contact", first.id, [second.id], {"emails": ["not an address"]}, people["boss"])
    assert service.get("contact", second.id, SYSTEM)["first_name"] == "Anne"
    assert service.get("deal", twins["deal"].id, SYSTEM)["contact"] == second.id
    assert _row(engine, tasks, twins["task"]).record_id == second.id
    done = merge(service, "contact", first.id, [second.id], {}, people["boss"])
    with pytest.raises(PermissionDenied):
        undo_merge(service, done.merge_id, people["other"])
