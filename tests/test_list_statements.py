"""Lists read by statements built once per shape (RecordService._bound_list) give exactly what the statement built
per call gives (list_where + QueryBuilder.after): the same records in the same order, the same cursors and totals,
the same refusals, for every kind of filter, sort, cursor and read scope; and listed rows read by position give the
same Record as the generic row reader."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest

from kartoteka.errors import BadRequest
from kartoteka.metadata.loader import load_metadata
from kartoteka.records import service as service_module
from kartoteka.records.model import SYSTEM, Filter, ListQuery
from kartoteka.records.service import RecordService
from kartoteka.storage.indexes import sync_indexes
from tests.conftest import write_config

ROLES = {
    "roles": {"admin": {"label": "Admin", "superuser": True}, "sales": {"label": "Sales"},
              "support": {"label": "Support"}},
    "departments": {"sales": {"label": "Sales"}, "support": {"label": "Support"}},
    "permissions": {"admin": {"*": "all"}, "sales": {"*": "own"}, "support": {"*": "department"}},
}
STAGES = ["new", "won", "lost"]
FIELDS = {
    "name": {"type": "text", "required": True},
    "stage": {"type": "select", "indexed": True, "options": [{"value": s, "label": s} for s in STAGES]},
    "quantity": {"type": "integer"},
    "price": {"type": "money", "indexed": True},
    "discount": {"type": "percent"},
    "rate": {"type": "decimal"},
    "close_date": {"type": "date", "indexed": True},
    "met_at": {"type": "datetime"},
    "active": {"type": "boolean"},
    "email": {"type": "email"},
    "tags": {"type": "tags"},
    "total": {"type": "formula", "expr": "quantity * price", "result": "money"},
}


@pytest.fixture
def listing(engine, tmp_path, clock, make_user):
    """A service over a card with a field of each kind, 60 deals owned by three users, two of them soft-deleted."""
    metadata = load_metadata(write_config(tmp_path, {"deal": {"entity": "deal", "label": "Deal", "title": "{name}",
                                                             "fields": FIELDS}}, ROLES))
    sync_indexes(engine, metadata)
    service = RecordService(metadata, engine, clock)
    users = {name: make_user(name, [role], department=department)[0] for name, role, department in (
        ("root", "admin", None), ("anna", "sales", "sales"), ("gleb", "support", "support"),
        ("pavel", "support", "support"), ("nina", "support", None))}
    rng = random.Random(7)
    owners = [users["anna"], users["gleb"], users["pavel"]]
    for i in range(60):
        values: dict = {"name": f"Deal {i}", "stage": rng.choice(STAGES), "quantity": rng.choice([1, 2, 3, None]),
                        "active": rng.choice([True, False, None]), "tags": rng.choice([["a"], ["a", "b"], []])}
        if rng.random() < 0.8:  # NULLs in every sortable field, and ties
            values["price"] = rng.choice(["10.00", "10.50", "99.99", "-5.25", "0"])
            values["close_date"] = (date(2026, 1, 1) + timedelta(days=rng.randint(0, 5))).isoformat()
            values["rate"] = rng.choice(["0.125", "7", "100", "-3.5"])
            values["met_at"] = (datetime(2026, 1, 1, 9) + timedelta(minutes=rng.randint(0, 3) * 7)).isoformat()
            values["email"] = rng.choice(["A@example.com", "b@example.com"])
            values["discount"] = rng.choice(["0", "12.5"])
        record = service.create("deal", values, SYSTEM, owner=owners[i % 3].id)
        if i in (5, 17):
            service.delete("deal", record.id, SYSTEM)
    return service, users


def _built_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RecordService, "_bound_list", lambda *args, **kwargs: None)


def _walk(service: RecordService, user, query: ListQuery) -> list[tuple]:
    """Every page of the list, following cursors: (ids, cursor, total) per page."""
    pages = []
    cursor = None
    for _ in range(100):
        page = service.list("deal", user, ListQuery(filters=query.filters, search=query.search, sort=query.sort,
                                                    limit=query.limit, cursor=cursor), with_total=True)
        pages.append(([(r.id, r.version, r.values, r.created_at, r.updated_at, r.owner) for r in page.items],
                      page.next_cursor, page.total))
        cursor = page.next_cursor
        if cursor is None:
            break
    return pages


QUERIES = [
    (),
    (Filter("stage", "eq", "won"),),
    (Filter("stage", "ne", "won"),),
    (Filter("stage", "in", "won,lost"),),
    (Filter("stage", "in", ["new"]),),
    (Filter("price", "gt", "10"),),
    (Filter("price", "lte", "10.5"), Filter("stage", "eq", "new")),
    (Filter("price", "in", "10,99.99"),),
    (Filter("rate", "gte", "0.125"),),
    (Filter("quantity", "lt", "3"),),
    (Filter("quantity", "eq", "2"),),
    (Filter("close_date", "gte", "2026-01-03"),),
    (Filter("close_date", "isnull", "true"),),
    (Filter("close_date", "isnull", "false"),),
    (Filter("met_at", "lt", "2026-01-01T09:10:00"),),
    (Filter("active", "eq", "true"),),
    (Filter("active", "ne", "false"),),
    (Filter("email", "eq", "A@Example.com"),),
    (Filter("name", "gt", "Deal 3"),),
    (Filter("id", "gt", "10"), Filter("id", "lte", "40")),
    (Filter("owner", "in", "1,2,3"),),
    (Filter("created_at", "gte", "2020-01-01T00:00:00"),),
    (Filter("version", "eq", "1"),),
    (Filter("tags", "eq", "b"),),  # a list field: built per call on both paths
    (Filter("name", "contains", "deal 1"),),
]
SORTS = ["-close_date", "close_date", "price", "-price", "-rate", "quantity", "-active", "met_at", "name", "-email",
         "id", "-id", "-created_at", "owner", "-total"]


@pytest.mark.parametrize("filters", QUERIES, ids=[",".join(f"{f.field}__{f.op}" for f in q) or "none" for q in QUERIES])
def test_every_filter_lists_what_the_statement_built_per_call_lists(listing, monkeypatch, filters):
    service, users = listing
    for sort in (SORTS if filters in (QUERIES[0], QUERIES[1], QUERIES[12]) else ["-close_date", "price", "-id"]):
        for user in (SYSTEM, users["root"], users["anna"], users["gleb"], users["nina"]):
            query = ListQuery(filters=filters, sort=sort, limit=4)
            bound = _walk(service, user, query)
            with monkeypatch.context() as patch:
                _built_per_call(patch)
                built = _walk(service, user, query)
            assert bound == built, (sort, user.username)
            assert sum(len(page[0]) for page in bound) == bound[0][2]


def test_the_bound_path_is_taken_for_scalar_filters_and_cursors(listing):
    service, users = listing
    entity = service.entity("deal")
    from kartoteka.records.access import viewable_fields
    from kartoteka.records.query import QueryBuilder

    def shape(query: ListQuery, user=SYSTEM):
        builder = QueryBuilder(entity, service.dialect, service.ctx, viewable_fields(entity, user))
        return service._bound_list(entity, user, query, builder, query.sort or entity.list.sort)

    assert shape(ListQuery(filters=(Filter("stage", "eq", "won"), Filter("price", "gt", "1")))) is not None
    assert shape(ListQuery(filters=(Filter("tags", "eq", "a"),))) is None
    assert shape(ListQuery(filters=(Filter("name", "contains", "x"),))) is None
    assert shape(ListQuery(search="deal")) is None
    first = service.list("deal", SYSTEM, ListQuery(sort="-close_date", limit=2))
    found = shape(ListQuery(sort="-close_date", limit=2, cursor=first.next_cursor))
    assert found is not None and found[1]["cursor_id"] == first.items[-1].id
    # One statement per shape, whatever the values: built once, its cache key computed once.
    a = shape(ListQuery(filters=(Filter("stage", "eq", "won"),), sort="-price"), users["anna"])
    b = shape(ListQuery(filters=(Filter("stage", "eq", "lost"),), sort="-price"), users["anna"])
    assert a is not None and b is not None and a[0] == b[0] and a[1] != b[1]
    assert service_module._list_statement(a[0]) is service_module._list_statement(b[0])


REFUSED = [
    (Filter("nope", "eq", "1"),),
    (Filter("stage", "like", "1"),),
    (Filter("price", "eq", "ten"),),
    (Filter("price", "eq", ""),),
    (Filter("stage", "in", ",,"),),
    (Filter("stage", "in", ",".join(["new"] * 201)),),
    (Filter("active", "lt", "true"),),
    (Filter("close_date", "isnull", "maybe"),),
    (Filter("id", "eq", "x"),),
    (Filter("id", "eq", str(2**63)),),
    (Filter("created_at", "gt", "yesterday"),),
    (Filter("name", "eq", "a\x00b"),),
    (Filter("name", "eq", "x" * 2001),),
    (Filter("stage", "eq", "won"), Filter("price", "eq", "x")),
]


@pytest.mark.parametrize("filters", REFUSED)
def test_refusals_are_the_same(listing, monkeypatch, filters):
    service, _ = listing

    def refusal() -> str:
        with pytest.raises(BadRequest) as caught:
            service.list("deal", SYSTEM, ListQuery(filters=filters))
        return repr(caught.value.args)

    bound = refusal()
    _built_per_call(monkeypatch)
    assert bound == refusal()


@pytest.mark.parametrize("cursor", ["nope", "W10", "WyItY2xvc2VfZGF0ZSIsIngiLDFd", "WyItcHJpY2UiLCJ4IiwxXQ",
                                    "WyJwcmljZSIsIjFlOTkiLDFd"])
@pytest.mark.parametrize("sort", ["-close_date", "-price", "price"])
def test_bad_cursors_are_refused_alike(listing, monkeypatch, cursor, sort):
    service, _ = listing

    def outcome() -> str:
        try:
            page = service.list("deal", SYSTEM, ListQuery(sort=sort, cursor=cursor))
        except BadRequest as exc:
            return repr(exc.args)
        return repr([r.id for r in page.items])

    bound = outcome()
    _built_per_call(monkeypatch)
    assert bound == outcome()


def test_listed_rows_read_by_position_are_the_generic_records(listing):
    service, users = listing
    entity = service.entity("deal")
    for user in (SYSTEM, users["anna"]):
        for record in service.list("deal", user, ListQuery(limit=100)).items:
            again = service.get("deal", record.id, user)
            assert record == again
            assert list(record.values) == [n for n in entity.fields if n in record.values]  # the fields' order
            assert all(type(v) is Decimal for n in ("price", "total") if (v := record.values.get(n)) is not None)
