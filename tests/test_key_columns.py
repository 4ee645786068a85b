"""Key columns (storage/keys.py): indexed fields' values copied beside the JSON, written by every save, filled by
the index sync, and read by lists exactly as the JSON would be."""

from __future__ import annotations

import itertools
import random
from decimal import Decimal

import pytest
import sqlalchemy as sa

from kartoteka.metadata.fieldtypes import ParseContext
from kartoteka.metadata.loader import load_metadata
from kartoteka.records.model import SYSTEM, Filter, ListQuery, Principal
from kartoteka.records.query import count_records
from kartoteka.records.service import RecordService
from kartoteka.storage.database import read_engine
from kartoteka.storage.indexes import existing_indexes, sync_indexes
from kartoteka.storage.json_sql import JsonValue
from kartoteka.storage.keys import NUMBER_KEYS, TEXT_KEYS, key_columns
from kartoteka.storage.tables import records
from tests.conftest import CRM_CONFIG, write_config


@pytest.fixture
def config_dir():
    return CRM_CONFIG


def _keys_and_json(engine, entity, record_id):
    """(key column values, the same fields' JSON values) of one stored row."""
    columns = key_columns(entity)
    with engine.connect() as conn:
        row = conn.execute(sa.select(
            *(records.c[c] for c in columns.values()),
            *(JsonValue(records.c.data, name, entity.fields[name].value_type.storage) for name in columns),
        ).where(records.c.id == record_id)).one()
    half = len(columns)
    return tuple(row[:half]), tuple(row[half:])


def test_indexed_fields_get_key_columns_in_declaration_order(metadata):
    deal = metadata.entity("deal")
    # Text-stored fields (select, date) on kt, numbers (reference, integer, money) on kn; the unique INN and the
    # boolean are not keyed (their indexes stay on the JSON).
    assert dict(key_columns(deal)) == {"company": "kn1", "stage": "kt1", "quantity": "kn2", "price": "kn3",
                                       "close_date": "kt2"}
    assert dict(key_columns(metadata.entity("company"))) == {"name": "kt1"}


def test_every_save_writes_the_key_columns_as_the_json_holds_them(service, engine, metadata):
    deal = metadata.entity("deal")
    acme = service.create("company", {"name": "Acme"}, SYSTEM)
    record = service.create("deal", {"name": "A", "company": acme.id, "stage": "won", "quantity": 3,
                                      "price": "1234.50", "close_date": "2026-05-01"}, SYSTEM)
    keys, json_values = _keys_and_json(engine, deal, record.id)
    assert keys == json_values
    assert keys[1:] == ("won", 3, Decimal("1234.5"), "2026-05-01") or keys[1:] == ("won", 3, Decimal("1234.50"),
                                                                                   "2026-05-01")
    service.update("deal", record.id, {"stage": "lost", "lost_reason": "price", "price": "", "close_date": None},
                   SYSTEM, expected_version=1)
    keys, json_values = _keys_and_json(engine, deal, record.id)
    assert keys == json_values
    assert keys == (acme.id, "lost", 3, None, None)
    # A delete keeps them: a restored record lists as before.
    service.delete("deal", record.id, SYSTEM)
    assert _keys_and_json(engine, deal, record.id)[0] == (acme.id, "lost", 3, None, None)


def _deals(service, count=120, seed=7):
    rng = random.Random(seed)
    companies = [service.create("company", {"name": f"C{i}"}, SYSTEM).id for i in range(4)]
    for i in range(count):
        values = {"name": f"Deal {i}", "stage": rng.choice(["new", "won", "lost"]), "quantity": rng.randint(1, 5)}
        if values["stage"] == "lost":
            values["lost_reason"] = "price"
        if rng.random() < 0.8:
            values["price"] = str(rng.choice([0, 1, 99.5, 100, 1000.25, 1e6]) if rng.random() < 0.5
                                  else Decimal(rng.randint(0, 10**8)) / 100)
        if rng.random() < 0.8:
            values["close_date"] = f"2026-{rng.randint(4, 12):02d}-{rng.randint(1, 28):02d}"
        if rng.random() < 0.7:
            values["company"] = rng.choice(companies)
        service.create("deal", values, SYSTEM)
    return companies


FILTERS = [(), (Filter("stage", "eq", "won"),), (Filter("stage", "ne", "won"),), (Filter("stage", "in", "won,lost"),),
           (Filter("price", "gte", "100"),), (Filter("price", "lt", "99.5"),), (Filter("price", "isnull", "true"),),
           (Filter("close_date", "lte", "2026-08-15"),), (Filter("close_date", "isnull", "false"),),
           (Filter("quantity", "eq", "3"), Filter("stage", "ne", "lost")), (Filter("company", "isnull", "true"),)]
SORTS = ["price", "-price", "close_date", "-close_date", "stage", "-quantity", "company", "-id"]


def _walk(service, query):
    """Every page of `query`, following its cursors, and its total."""
    pages, cursor = [], None
    while True:
        page = service.list("deal", SYSTEM, ListQuery(filters=query.filters, sort=query.sort, limit=7, cursor=cursor),
                            with_total=cursor is None)
        pages.append([r.id for r in page.items])
        if page.total is not None:
            total = page.total
        cursor = page.next_cursor
        if cursor is None:
            return pages, total


def test_lists_on_key_columns_match_lists_on_the_json(service, monkeypatch):
    _deals(service)
    shapes = list(itertools.product(FILTERS, SORTS))
    on_keys = {shape: _walk(service, ListQuery(filters=shape[0], sort=shape[1])) for shape in shapes}
    counts = {f: count_records(service, "deal", SYSTEM, ListQuery(filters=f)) for f in FILTERS}
    # The same lists read from the JSON: no field has a key column to read.
    monkeypatch.setattr(service, "key_columns", lambda entity: {})
    for shape in shapes:
        assert _walk(service, ListQuery(filters=shape[0], sort=shape[1])) == on_keys[shape], shape
    for flt in FILTERS:
        assert count_records(service, "deal", SYSTEM, ListQuery(filters=flt)) == counts[flt], flt
    assert sum(len(p) for p in on_keys[((), "-id")][0]) == 120


def test_lists_filter_and_sort_on_the_key_column_indexes(service, engine, metadata):
    _deals(service, count=30)
    captured: list[str] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        captured.append(statement)

    reads = read_engine(engine)  # lists read on the read engine (storage/reading.py)
    sa.event.listen(reads, "before_cursor_execute", capture)
    try:
        service.list("deal", SYSTEM, ListQuery(filters=(Filter("stage", "eq", "won"),), sort="-close_date"))
    finally:
        sa.event.remove(reads, "before_cursor_execute", capture)
    statement = next(s for s in captured if "ORDER BY" in s)
    assert "records.kt1 =" in statement and "ORDER BY records.kt2 DESC" in statement
    assert "json_extract" not in statement and "->>" not in statement
    sql = str(sa.select(records.c.id).where(records.c.entity == sa.literal("deal", literal_execute=True),
                                             records.c.deleted_at.is_(None), records.c.kt1 == "won")
              .compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            plan = " ".join(str(r) for r in conn.execute(sa.text("EXPLAIN QUERY PLAN " + sql)))
        else:
            conn.execute(sa.text("ANALYZE records"))
            conn.execute(sa.text("SET enable_seqscan = off"))
            plan = " ".join(str(r) for r in conn.execute(sa.text("EXPLAIN " + sql)))
    assert "kkx_deal__stage__kt1" in plan, plan


def _fields(**extra):
    return {"name": {"type": "text"}, "stage": {"type": "select", "options": ["new", "won"], "indexed": True},
            "amount": {"type": "money", "currency": "RUB"}, **extra}


def test_a_field_made_indexed_gets_its_column_filled_from_stored_records(engine, tmp_path, clock):
    first = load_metadata(write_config(tmp_path / "a", {"deal": {"entity": "deal", "label": "Deal",
                                                                 "fields": _fields()}}), ParseContext())
    sync_indexes(engine, first)
    before = RecordService(first, engine, clock, ParseContext())
    ids = [before.create("deal", {"name": f"D{i}", "stage": "won" if i % 2 else "new", "amount": str(i * 10)},
                         SYSTEM).id for i in range(6)]
    before.delete("deal", ids[0], SYSTEM)
    # `name` becomes indexed before `stage`: it takes kt1 and stage moves to kt2; amount gets kn1.
    fields = _fields(amount={"type": "money", "currency": "RUB", "indexed": True})
    fields = {"name": {"type": "text", "indexed": True}, **{k: v for k, v in fields.items() if k != "name"}}
    second = load_metadata(write_config(tmp_path / "b", {"deal": {"entity": "deal", "label": "Deal",
                                                                  "fields": fields}}), ParseContext())
    created, dropped = sync_indexes(engine, second)
    assert created == ["kkx_deal__amount__kn1", "kkx_deal__name__kt1", "kkx_deal__stage__kt2"]
    assert dropped == ["kkx_deal__stage__kt1"]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(records.c.id, records.c.kt1, records.c.kt2, records.c.kn1)
                            .where(records.c.entity == "deal").order_by(records.c.id)).all()
    # Deleted records too: a restore must find them filled.
    assert [tuple(r) for r in rows] == [(ids[i], f"D{i}", "won" if i % 2 else "new", i * 10) for i in range(6)]
    after = RecordService(second, engine, clock, ParseContext())
    page = after.list("deal", SYSTEM, ListQuery(filters=(Filter("amount", "gte", "30"),), sort="-name"))
    assert [r["name"] for r in page.items] == ["D5", "D4", "D3"]
    assert sync_indexes(engine, second) == ([], [])


def test_fields_beyond_the_key_columns_keep_json_indexes(engine, tmp_path, clock):
    texts = {f"t{i:02d}": {"type": "text", "indexed": True} for i in range(len(TEXT_KEYS) + 2)}
    numbers = {f"n{i:02d}": {"type": "integer", "indexed": True} for i in range(len(NUMBER_KEYS) + 1)}
    metadata = load_metadata(write_config(tmp_path, {"wide": {"entity": "wide", "label": "Wide",
                                                              "fields": {**texts, **numbers}}}), ParseContext())
    sync_indexes(engine, metadata)
    with engine.connect() as conn:
        names = existing_indexes(conn)
    assert {"klx_wide__t12__t", "klx_wide__t13__t", "klx_wide__n06__n", "kkx_wide__t11__kt12",
            "kkx_wide__n05__kn6"} <= names
    service = RecordService(metadata, engine, clock, ParseContext())
    for i in range(5):
        service.create("wide", {"t13": f"x{i % 2}", "t11": f"y{i}", "n06": i, "n05": 5 - i}, SYSTEM)
    page = service.list("wide", SYSTEM, ListQuery(filters=(Filter("t13", "eq", "x1"),), sort="-n06"))
    assert [r["t11"] for r in page.items] == ["y3", "y1"]
    page = service.list("wide", SYSTEM, ListQuery(filters=(Filter("n05", "lte", "3"),), sort="t11"))
    assert [r["n06"] for r in page.items] == [2, 3, 4]


def _scoped(tmp_path, fields):
    roles = {"roles": {"admin": {"label": "Admin"}, "rep": {"label": "Rep"}},
             "permissions": {"rep": {"deal": {"create": "own", "read": "own", "update": "own", "delete": "none"}}}}
    return load_metadata(write_config(tmp_path, {"deal": {"entity": "deal", "label": "Deal", "fields": fields},
                                                 "note": {"entity": "note", "label": "Note", "fields": {
                                                     "text": {"type": "text", "indexed": True}}}}, roles),
                         ParseContext())


def test_an_entity_read_in_own_scope_gets_an_owner_index_over_its_key_columns(engine, tmp_path, clock):
    metadata = _scoped(tmp_path / "a", _fields(amount={"type": "money", "currency": "RUB", "indexed": True}))
    created, _ = sync_indexes(engine, metadata)
    # Only the deal: no role reads notes in a narrower scope than all.
    assert [n for n in created if n.startswith("kox_")] == ["kox_deal__owner_entity_kt1_kn1"]
    service = RecordService(metadata, engine, clock, ParseContext())
    with engine.begin() as conn:
        rep = Principal(_user(conn, "rep1"), "rep1", frozenset({"rep"}))
        other = Principal(_user(conn, "rep2"), "rep2", frozenset({"rep"}))
    for i in range(12):
        service.create("deal", {"name": f"D{i}", "stage": "won" if i % 3 else "new", "amount": str(i)},
                       rep if i % 2 else other)
    query = ListQuery(filters=(Filter("stage", "eq", "won"),), sort="-amount")
    assert [r["name"] for r in service.list("deal", rep, query).items] == ["D11", "D7", "D5", "D1"]
    assert count_records(service, "deal", rep, query) == count_records(service, "deal", rep, query, cap=None)
    assert count_records(service, "deal", rep, query).count == 4
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(sa.text("ANALYZE records"))
            conn.execute(sa.text("SET enable_seqscan = off"))
            conn.execute(sa.text("SET enable_bitmapscan = off"))
            sql = ("SELECT count(*) FROM records WHERE entity = 'deal' AND deleted_at IS NULL "
                   f"AND owner = {rep.id} AND kt1 = 'won'")
            plan = " ".join(str(r) for r in conn.execute(sa.text("EXPLAIN " + sql)))
        assert "Index Only Scan using kox_deal__owner_entity_kt1_kn1" in plan, plan
    # Key columns that change rebuild it: the stage moves to kt2 when the name, now indexed, takes kt1; a text
    # without a max_length stays out of it (one btree entry must hold them all), one with a small one goes in.
    fields = _fields(amount={"type": "money", "currency": "RUB", "indexed": True},
                     name={"type": "text", "indexed": True})
    created, dropped = sync_indexes(engine, _scoped(tmp_path / "b", fields))
    assert "kox_deal__owner_entity_kt1_kn1" in dropped and "kox_deal__owner_entity_kt2_kn1" in created
    fields["name"]["max_length"] = 200
    created, dropped = sync_indexes(engine, _scoped(tmp_path / "c", fields))
    assert dropped == ["kox_deal__owner_entity_kt2_kn1"] and created == ["kox_deal__owner_entity_kt1_kt2_kn1"]


def _user(conn, username):
    from kartoteka.storage.tables import users

    return conn.execute(sa.insert(users).values(username=username, display_name=username, roles=["rep"],
                                                created_at=sa.func.now()).returning(users.c.id)).scalar_one()


def test_an_update_sets_the_key_columns_of_the_fields_it_changes_alone(service, engine, metadata):
    # SQLite rewrites the entry of every index over a column an UPDATE sets, changed or not.
    record = service.create("deal", {"name": "A", "stage": "new", "quantity": 2, "price": "10"}, SYSTEM)
    captured: list[str] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        captured.append(statement)

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        record = service.update("deal", record.id, {"name": "B"}, SYSTEM, expected_version=record.version)
        record = service.update("deal", record.id, {"stage": "won", "price": "12"}, SYSTEM,
                                expected_version=record.version)
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    updates = [s for s in captured if s.startswith("UPDATE records")]
    assert len(updates) == 2
    assert not any(f"{c}=" in updates[0].replace(" ", "") for c in key_columns(metadata.entity("deal")).values())
    assert "kt1=" in updates[1].replace(" ", "") and "kn3=" in updates[1].replace(" ", "")
    assert "kn2=" not in updates[1].replace(" ", "") and "kt2=" not in updates[1].replace(" ", "")
    keys, json_values = _keys_and_json(engine, metadata.entity("deal"), record.id)
    assert keys == json_values
