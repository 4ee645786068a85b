"""The change journal: every save writes it, replaying it rebuilds every version, reverts go through the service, and
nobody reads an old value of a field they may not view; trash and restore keep the id (shipped config)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from kartoteka.errors import BadRequest, Conflict, NotFound, PermissionDenied, RecordValidationError
from kartoteka.records.hooks import Origin
from kartoteka.records.journal import entries_query
from kartoteka.records.journal import values_at as rebuild
from kartoteka.records.model import SYSTEM
from kartoteka.records.versions import history, revert, values_at
from kartoteka.storage.tables import journal, records

COMPANY = {"name": "Northwind Trading Ltd", "country": "gb"}


def _stored(engine, record_id):
    with engine.connect() as conn:
        row = conn.execute(sa.select(records.c.data, records.c.owner, records.c.version)
                           .where(records.c.id == record_id)).one()
    return dict(row.data), row.owner, row.version


def _journal(engine, record_id):
    with engine.connect() as conn:
        return conn.execute(sa.select(journal).where(journal.c.record_id == record_id).order_by(journal.c.id)).all()


@pytest.fixture
def deal(service):
    """Make a deal (of a new company) owned by `user`."""
    def make(user, **values):
        company = service.create("company", COMPANY | {"name": f"{values['name']} Ltd"}, SYSTEM)
        return service.create("deal", {"company": company.id, **values}, user)
    return make


@pytest.fixture
def people(make_user):
    return {name: make_user(name, roles, department)[0] for name, roles, department in
            (("rep", ["sales"], "sales"), ("other", ["sales"], "sales"), ("fin", ["finance"], "finance"),
             ("boss", ["admin"], None))}


def test_every_save_writes_the_journal_and_replaying_it_rebuilds_every_version(service, engine, people):
    company = service.create("company", COMPANY, SYSTEM)
    deal = service.create("deal", {"name": "Rollout", "company": company.id, "amount": "1000", "tags": ["a"]},
                          people["rep"], origin=Origin("ui"))
    snapshots = {1: _stored(engine, deal.id)[:2]}
    steps = [
        lambda: service.update("deal", deal.id, {"amount": "2500.50", "stage": "proposal"}, people["rep"],
                               expected_version=None),
        lambda: service.update("deal", deal.id, {"margin": "12"}, people["fin"], expected_version=None),
        lambda: service.update("deal", deal.id, {"tags": [], "description": "Big one"}, people["boss"],
                               expected_version=None, owner=people["other"].id),
        lambda: service.delete("deal", deal.id, people["boss"]),
        lambda: service.restore("deal", deal.id, people["boss"], origin=Origin("ui")),
        lambda: service.update("deal", deal.id, {"amount": None}, people["boss"], expected_version=None),
    ]
    for step in steps:
        step()
        data, owner, version = _stored(engine, deal.id)
        snapshots[version] = (data, owner)
    rows = _journal(engine, deal.id)
    assert [(r.version, r.action, r.source) for r in rows] == [
        (1, "created", "ui"), (2, "updated", "api"), (3, "updated", "api"), (4, "updated", "api"),
        (5, "deleted", "api"), (6, "restored", "ui"), (7, "updated", "api")]
    assert [r.user_id for r in rows] == [people["rep"].id, people["rep"].id, people["fin"].id] + [people["boss"].id] * 4
    assert {"amount", "stage"} <= set(rows[1].changes) and rows[1].changes["stage"][1] == "proposal"
    assert rows[3].changes["owner"] == [people["rep"].id, people["other"].id]
    assert rows[3].changes["tags"] == [["a"], None]
    for version, (data, owner) in snapshots.items():
        with engine.connect() as conn:
            later = conn.execute(entries_query(service.entity("deal"), deal.id).where(journal.c.version > version))
            assert rebuild(*_stored(engine, deal.id)[:2], later.all()) == (data, owner), version


def test_a_field_and_a_whole_record_go_back_to_an_earlier_version_as_journalled_saves(service, engine, people, deal):
    card = deal(people["rep"], name="Rollout", amount="1000", next_step="Call")
    service.update("deal", card.id, {"amount": "5000", "next_step": "Demo"}, people["rep"], expected_version=None)
    service.update("deal", card.id, {"name": "Rollout 2"}, people["rep"], expected_version=None)

    one = revert(service, "deal", card.id, 1, people["rep"], fields=["amount"])
    assert one.fields == ("amount",) and one.record["amount"] == 1000 and one.record["next_step"] == "Demo"
    assert one.record["name"] == "Rollout 2"
    whole = revert(service, "deal", card.id, 1, people["rep"], origin=Origin("ui"))
    assert set(whole.fields) == {"name", "next_step"}
    assert (whole.record["name"], whole.record["next_step"]) == ("Rollout", "Call")
    last = _journal(engine, card.id)[-1]
    assert (last.action, last.reverts, last.source, last.version) == ("reverted", 1, "ui", whole.record.version)
    # Nothing left to bring back: no save.
    again = revert(service, "deal", card.id, 1, people["rep"])
    assert again.fields == () and again.record.version == whole.record.version
    assert values_at(service, "deal", card.id, 2, people["rep"])["next_step"] == "Demo"


def test_a_revert_checks_what_any_save_checks(service, engine, people, deal):
    card = deal(people["rep"], name="Rollout", amount="1000")
    service.update("deal", card.id, {"amount": "5000"}, people["rep"], expected_version=None)
    with pytest.raises(BadRequest) as error:
        revert(service, "deal", card.id, 7, people["rep"])
    assert error.value.detail.code == "journal.version_unknown"
    with pytest.raises(RecordValidationError) as invalid:
        revert(service, "deal", card.id, 1, people["rep"], fields=["amount", "amonut", "expected_revenue"])
    assert [m.code for m in invalid.value.errors["fields"]] == ["journal.field_unknown", "journal.field_computed"]
    with pytest.raises(Conflict):  # someone saved in between: a stale revert is refused, never an overwrite
        revert(service, "deal", card.id, 1, people["rep"], expected_version=1)
    with pytest.raises(NotFound):  # another rep's deal does not exist for them
        revert(service, "deal", card.id, 1, people["other"])
    service.delete("deal", card.id, people["boss"])
    with pytest.raises(NotFound) as deleted:
        revert(service, "deal", card.id, 1, people["boss"])
    assert deleted.value.detail.code == "journal.revert_deleted"
    with pytest.raises(NotFound) as gone:  # who may not see the trash: it does not exist
        history(service, "deal", card.id, people["rep"])
    assert gone.value.detail.code == "record.not_found"


def test_a_record_saved_before_the_journal_says_which_versions_cannot_be_rebuilt(service, engine, people, deal):
    card = deal(people["rep"], name="Old", amount="1")
    service.update("deal", card.id, {"amount": "2"}, people["rep"], expected_version=None)
    with engine.begin() as conn:  # as if the journal began only at version 3
        conn.execute(sa.delete(journal).where(journal.c.record_id == card.id))
    service.update("deal", card.id, {"amount": "3"}, people["rep"], expected_version=None)
    assert values_at(service, "deal", card.id, 2, people["rep"])["amount"] == 2  # the old values of version 3
    with pytest.raises(BadRequest) as error:
        values_at(service, "deal", card.id, 1, people["rep"])
    assert error.value.detail.code == "journal.version_before_journal"


def test_history_never_shows_a_value_of_a_field_the_reader_may_not_view(service, engine, people, deal):
    card = deal(people["rep"], name="Secret margin")
    service.update("deal", card.id, {"margin": "35"}, people["fin"], expected_version=None)
    service.update("deal", card.id, {"margin": "40", "next_step": "Sign"}, people["fin"], expected_version=None)
    seen_by_rep = history(service, "deal", card.id, people["rep"])
    assert [e.version for e in seen_by_rep.entries] == [3, 2, 1]
    assert seen_by_rep.entries[0].changes == {"next_step": [None, "Sign"]} and seen_by_rep.entries[0].hidden >= 1
    assert all("margin" not in e.changes and "margin_amount" not in e.changes for e in seen_by_rep.entries)
    assert "35" not in repr(seen_by_rep)
    with pytest.raises(RecordValidationError):  # nor can they ask for it back by name
        revert(service, "deal", card.id, 2, people["rep"], fields=["margin"])
    assert "margin" in history(service, "deal", card.id, people["fin"]).entries[0].changes
    with pytest.raises(NotFound):
        history(service, "deal", card.id, people["other"])
    page = history(service, "deal", card.id, people["fin"], limit=2)
    assert [e.version for e in page.entries] == [3, 2] and page.next_before is not None
    rest = history(service, "deal", card.id, people["fin"], limit=2, before=page.next_before)
    assert [e.version for e in rest.entries] == [1] and rest.next_before is None


def test_restore_brings_the_record_back_under_its_id_unless_its_unique_value_is_taken(service, engine, people):
    first = service.create("company", COMPANY | {"inn": "7707083893"}, people["boss"])
    contact = service.create("contact", {"first_name": "Ann", "last_name": "Lee", "company": first.id,
                                         "phones": ["+44 20 7946 0958"]},
                             people["boss"])
    service.delete("company", first.id, people["boss"])
    with pytest.raises(Conflict):  # a live record is not in the trash
        service.restore("contact", contact.id, people["boss"])
    second = service.create("company", COMPANY | {"name": "Again Ltd", "inn": "7707083893"}, people["boss"])
    with pytest.raises(RecordValidationError) as taken:
        service.restore("company", first.id, people["boss"])
    assert "inn" in taken.value.errors
    service.delete("company", second.id, people["boss"])
    back = service.restore("company", first.id, people["boss"])
    assert back.id == first.id and back["inn"] == "7707083893"
    assert service.get("contact", contact.id, SYSTEM)["company"] == first.id
    with pytest.raises(PermissionDenied):
        service.restore("company", first.id, people["rep"])


def test_the_history_and_purge_commands(runner, service, engine, people, deal):
    card = deal(people["rep"], name="Cli deal", amount="10")
    service.update("deal", card.id, {"margin": "37.5", "next_step": "Call"}, people["fin"], expected_version=None)
    everything = runner.invoke("history", "deal", str(card.id))
    assert everything.exit_code == 0, everything.output
    assert "v2 " in everything.output and "margin: null -> 37.5" in everything.output
    assert "v1 " in everything.output and "created by rep (api)" in everything.output
    as_rep = runner.invoke("history", "deal", str(card.id), "--as", "rep")
    assert "margin" not in as_rep.output and "37.5" not in as_rep.output
    assert 'next_step: null -> "Call"' in as_rep.output and "more field" in as_rep.output
    assert runner.invoke("history", "deal", "999999").exit_code == 1
    assert runner.invoke("history", "deal", str(card.id), "--as", "nobody").exit_code == 1

    service.delete("deal", card.id, people["boss"])
    bad = runner.invoke("purge", "--older-than", "ninety")
    assert bad.exit_code == 1 and "like 90d or 12h" in bad.output
    # The command reads the real clock; the test's deletion happened at the fixed clock's moment, months ago.
    assert "Would remove 0 records" in runner.invoke("purge", "--older-than", "99999d", "--dry-run").output
    assert "Would remove 1 record " in runner.invoke("purge", "--older-than", "1d", "--dry-run").output
    removed = runner.invoke("purge", "--older-than", "1d", "--entity", "deal")
    assert removed.exit_code == 0 and "Removed 1 record " in removed.output, removed.output
    with engine.connect() as conn:
        assert conn.execute(sa.select(records.c.id).where(records.c.id == card.id)).first() is None
