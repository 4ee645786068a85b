"""Storage through the record service on both databases: indexes, links, versions, uniqueness, deletes."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
import sqlalchemy as sa

from kartoteka.errors import Conflict, NotFound, RecordValidationError
from kartoteka.metadata.loader import load_metadata
from kartoteka.records.model import SYSTEM, Filter, ListQuery
from kartoteka.records.query import QueryBuilder
from kartoteka.records.scopes import readable_where
from kartoteka.records.service import RecordService
from kartoteka.storage.indexes import existing_indexes, sync_indexes
from kartoteka.storage.tables import records
from tests.conftest import CRM_CONFIG, write_config


@pytest.fixture
def config_dir():
    return CRM_CONFIG


def test_records_live_in_one_json_column(service, engine):
    deal = service.create("deal", {"name": "A", "price": "10.5", "tags": ["x"]}, SYSTEM)
    with engine.connect() as conn:
        row = conn.execute(sa.select(records).where(records.c.id == deal.id)).one()
    assert row.entity == "deal" and row.version == 1 and row.title == "A"
    # empty values are not stored; numbers are JSON numbers, so SQL compares them as numbers
    assert row.data == {"name": "A", "price": 10.5, "stage": "new", "quantity": 1, "discount": 0,
                        "total": 10.5, "tags": ["x"]}
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.pg_typeof(records.c.data).cast(sa.String))).scalar() == "jsonb"


def test_indexed_fields_get_indexes_that_lists_use(service, engine, metadata):
    with engine.connect() as conn:
        names = existing_indexes(conn)
    # Indexed fields on key columns (in the order each card declares them), a unique one and a boolean on their JSON.
    assert {"kkx_deal__stage__kt1", "kkx_deal__price__kn3", "kkx_deal__close_date__kt2", "kux_company__inn__t",
            "kkx_deal__company__kn1", "kkx_company__name__kt1", "klx_deal__signed__b"} <= names
    builder = QueryBuilder(metadata.entity("deal"), engine.dialect.name, service.ctx, metadata.entity("deal").fields)
    for flt in (Filter("stage", "eq", "won"), Filter("price", "gte", "100")):
        # The live records of the entity, as every list, count and picker asks for them.
        query = sa.select(records.c.id).where(*readable_where(metadata, SYSTEM, metadata.entity("deal")) or [],
                                              builder.filter_clause(flt))
        sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
        index = next(n for n in names if n.startswith((f"kkx_deal__{flt.field}__", f"klx_deal__{flt.field}__")))
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                # INDEXED BY makes SQLite fail outright when the index cannot serve the query.
                sql = sql.replace("FROM records", f"FROM records INDEXED BY {index}")
                plan = " ".join(str(r) for r in conn.execute(sa.text("EXPLAIN QUERY PLAN " + sql)))
            else:
                # On empty tables every index scan costs the same and the planner may take any: the others are
                # dropped inside a transaction that is rolled back (PostgreSQL's DDL is transactional), so the plan
                # says whether this one can serve the query.
                transaction = conn.begin()
                for other in sorted(n for n in names if n != index and n.startswith(("kkx_", "klx_", "kux_", "kox_",
                                                                                     "kdx_"))):
                    conn.execute(sa.text(f'DROP INDEX IF EXISTS "{other}"'))
                conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
                conn.execute(sa.text("SET LOCAL enable_bitmapscan = off"))
                plan = " ".join(str(r) for r in conn.execute(sa.text("EXPLAIN " + sql)))
                transaction.rollback()
        assert index in plan, plan


def test_indexes_of_earlier_versions_are_replaced_by_ones_on_live_rows(engine, metadata):
    # Before 2026-12, plain indexes covered deleted rows too and were named kix_; a database made then is brought up
    # to date by the same sync that `kartoteka init` and every start-up run.
    with engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX kkx_deal__stage__kt1"))
        conn.execute(sa.text("CREATE INDEX kix_deal__stage__t ON records (json_extract(data, '$.stage'), id) "
                             "WHERE entity = 'deal'" if engine.dialect.name == "sqlite" else
                             "CREATE INDEX kix_deal__stage__t ON records ((data ->> 'stage'), id) "
                             "WHERE entity = 'deal'"))
    assert sync_indexes(engine, metadata) == (["kkx_deal__stage__kt1"], ["kix_deal__stage__t"])
    with engine.connect() as conn:
        names = existing_indexes(conn)
    assert "kkx_deal__stage__kt1" in names and not any(n.startswith("kix_") for n in names)


def test_sync_indexes_is_idempotent_and_follows_metadata(engine, tmp_path, metadata):
    sync_indexes(engine, metadata)
    assert sync_indexes(engine, metadata) == ([], [])
    changed = load_metadata(write_config(tmp_path, {"deal": {
        "entity": "deal", "label": "Deal", "fields": {"name": {"type": "text", "indexed": True},
                                                      "stage": {"type": "integer", "indexed": True}}}}))
    created, dropped = sync_indexes(engine, changed)
    assert created == ["kkx_deal__name__kt1", "kkx_deal__stage__kn1"]
    assert "kkx_deal__stage__kt1" in dropped and "kux_company__inn__t" in dropped
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            statistics = set(conn.execute(sa.text(
                "SELECT stxname FROM pg_statistic_ext WHERE stxrelid = 'records'::regclass")).scalars())
        assert statistics == {"kst_key__kt1", "kst_key__kn1"}


def test_references_are_checked_and_reverse_lookups_use_links(service):
    acme = service.create("company", {"name": "Acme"}, SYSTEM)
    other = service.create("company", {"name": "Other"}, SYSTEM)
    d1 = service.create("deal", {"name": "D1", "company": acme.id, "partners": [other.id, acme.id]}, SYSTEM)
    d2 = service.create("deal", {"name": "D2", "company": acme.id}, SYSTEM)
    assert service.referencing("company", acme.id, SYSTEM) == {("deal", "company"): [d1.id, d2.id],
                                                                ("deal", "partners"): [d1.id]}
    service.update("deal", d2.id, {"company": other.id}, SYSTEM, expected_version=1)
    service.delete("deal", d1.id, SYSTEM)
    assert service.referencing("company", acme.id, SYSTEM) == {}
    assert service.referencing("company", other.id, SYSTEM) == {("deal", "company"): [d2.id]}
    with pytest.raises(RecordValidationError) as error:
        service.create("deal", {"name": "D3", "company": d2.id, "partners": [999]}, SYSTEM)
    assert error.value.errors == {"company": [f"There is no Company with id {d2.id}."],
                                  "partners": ["There is no Company with id 999."]}


def test_stale_versions_conflict_and_never_overwrite(service):
    deal = service.create("deal", {"name": "A", "price": 1}, SYSTEM)
    service.update("deal", deal.id, {"price": 2}, SYSTEM, expected_version=1)
    with pytest.raises(Conflict) as error:
        service.update("deal", deal.id, {"price": 3}, SYSTEM, expected_version=1)
    assert error.value.current_version == 2
    assert service.get("deal", deal.id, SYSTEM)["price"] == Decimal("2.00")


def test_an_unchanged_save_keeps_the_version(service):
    deal = service.create("deal", {"name": "A", "price": 5}, SYSTEM)
    again = service.update("deal", deal.id, {"price": "5.00"}, SYSTEM, expected_version=1)
    assert again.version == 1


def test_concurrent_updates_one_wins_one_conflicts(service, engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers; the race needs real concurrency")
    deal = service.create("deal", {"name": "Race", "price": 1}, SYSTEM)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def save(price: int) -> None:
        barrier.wait()
        try:
            service.update("deal", deal.id, {"price": price}, SYSTEM, expected_version=1)
            outcomes.append("saved")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=save, args=(p,)) for p in (10, 20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "saved"]
    assert service.get("deal", deal.id, SYSTEM).version == 2


def test_unique_values_ignore_deleted_records(service):
    first = service.create("company", {"name": "A", "inn": "7707083893"}, SYSTEM)
    with pytest.raises(RecordValidationError) as error:
        service.create("company", {"name": "B", "inn": "7707083893"}, SYSTEM)
    assert error.value.errors["inn"][0].startswith("Must be unique: Company #")
    service.delete("company", first.id, SYSTEM)
    assert service.create("company", {"name": "B", "inn": "7707083893"}, SYSTEM).values["inn"] == "7707083893"


def test_the_unique_index_catches_a_race_past_the_check(service, engine, monkeypatch):
    service.create("company", {"name": "A", "inn": "7707083893"}, SYSTEM)
    monkeypatch.setattr(RecordService, "_check_lookups", lambda *args: None)
    with pytest.raises(RecordValidationError) as error:
        service.create("company", {"name": "B", "inn": "7707083893"}, SYSTEM)
    assert error.value.errors == {"inn": ["Must be unique: another Company already has this value."]}


def test_deleted_records_leave_lists_and_lookups(service):
    deal = service.create("deal", {"name": "A"}, SYSTEM)
    service.delete("deal", deal.id, SYSTEM)
    with pytest.raises(NotFound):
        service.get("deal", deal.id, SYSTEM)
    with pytest.raises(NotFound):
        service.update("deal", deal.id, {"name": "B"}, SYSTEM, expected_version=2)
    assert service.list("deal", SYSTEM, ListQuery()).items == ()


def test_wrong_entity_for_an_id_is_not_found(service):
    company = service.create("company", {"name": "A"}, SYSTEM)
    with pytest.raises(NotFound):
        service.get("deal", company.id, SYSTEM)


@pytest.mark.parametrize("sort", ["price", "-price", "close_date", "-close_date", "name", "-updated_at", "id"])
def test_keyset_pages_cover_every_record_once_with_empty_values(service, sort):
    expected = []
    for i in range(11):
        values = {"name": f"D{i % 4}", "price": None if i % 3 == 0 else i % 5,
                  "close_date": None if i % 4 == 0 else f"2030-01-{1 + i % 3:02d}"}
        expected.append(service.create("deal", values, SYSTEM).id)
    seen, cursor = [], None
    while True:
        page = service.list("deal", SYSTEM, ListQuery(sort=sort, limit=3, cursor=cursor))
        seen += [r.id for r in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))
    one_page = [r.id for r in service.list("deal", SYSTEM, ListQuery(sort=sort, limit=100)).items]
    assert seen == one_page


def test_search_is_case_insensitive_for_cyrillic(service):
    service.create("company", {"name": "ООО «Ромашка»"}, SYSTEM)
    service.create("company", {"name": "Northwind"}, SYSTEM)
    found = service.list("company", SYSTEM, ListQuery(search="РОМАШ"))
    assert [r["name"] for r in found.items] == ["ООО «Ромашка»"]
    found = service.list("company", SYSTEM, ListQuery(filters=(Filter("name", "contains", "north"),)))
    assert [r["name"] for r in found.items] == ["Northwind"]
    found = service.list("company", SYSTEM, ListQuery(filters=(Filter("name", "contains", "%"),)))
    assert found.items == ()


def test_formula_division_by_zero_is_empty_not_an_error(engine, tmp_path, clock):
    metadata = load_metadata(write_config(tmp_path, {"deal": {
        "entity": "deal", "label": "Deal", "fields": {
            "won": {"type": "integer"}, "total": {"type": "integer"},
            "rate": {"type": "formula", "expr": "won / total * 100", "result": "percent"}}}}))
    service = RecordService(metadata, engine, clock)
    record = service.create("deal", {"won": 1, "total": 4}, SYSTEM)
    assert record["rate"] == Decimal("25.00")
    assert service.update("deal", record.id, {"total": 0}, SYSTEM, expected_version=1)["rate"] is None


def test_search_finds_any_of_several_phones_and_emails(service):
    service.create("deal", {"name": "One", "phones": ["+7 912 345-67-89", "+44 20 7946 0958"]}, SYSTEM)
    service.create("deal", {"name": "Two", "emails": ["Boss@Example.com"]}, SYSTEM)
    assert [r["name"] for r in service.list("deal", SYSTEM, ListQuery(search="7946")).items] == ["One"]
    assert [r["name"] for r in service.list("deal", SYSTEM, ListQuery(search="BOSS@")).items] == ["Two"]
    assert service.list("deal", SYSTEM, ListQuery(search="0000")).items == ()


def test_titles_can_show_the_id(engine, tmp_path, clock):
    metadata = load_metadata(write_config(tmp_path, {"ticket": {
        "entity": "ticket", "label": "Ticket", "title": "#{id}: {subject}",
        "fields": {"subject": {"type": "text"}}}}))
    service = RecordService(metadata, engine, clock)
    ticket = service.create("ticket", {"subject": "Printer"}, SYSTEM)
    assert ticket.title == f"#{ticket.id}: Printer"
    assert service.get("ticket", ticket.id, SYSTEM).title == f"#{ticket.id}: Printer"


def test_a_validation_that_went_stale_does_not_block_unrelated_edits(service, fixed_clock):
    deal = service.create("deal", {"name": "A", "close_date": "2026-03-10"}, SYSTEM)
    fixed_clock.advance(days=30)  # the close date is now in the past
    edited = service.update("deal", deal.id, {"name": "B"}, SYSTEM, expected_version=1)
    assert edited["name"] == "B"
    with pytest.raises(RecordValidationError) as error:
        service.update("deal", deal.id, {"close_date": "2026-03-20"}, SYSTEM, expected_version=2)
    assert error.value.errors == {"close_date": ["Close date is in the past"]}


def test_an_index_built_meanwhile_by_another_process_is_no_failure(engine, metadata, monkeypatch):
    """Two workers starting on one database both see an index missing; the second to build it must not fail."""
    from kartoteka.storage import indexes

    indexes.sync_indexes(engine, metadata)
    real = indexes.existing_indexes
    calls = []

    def stale_first(connection):
        calls.append(1)
        return set() if len(calls) == 1 else real(connection)  # the first look predates the other worker's build

    monkeypatch.setattr(indexes, "existing_indexes", stale_first)
    _created, dropped = indexes.sync_indexes(engine, metadata)  # no IndexBuildError ("already exists")
    assert dropped == []
    with engine.connect() as connection:
        assert real(connection) >= indexes.planned_indexes(metadata).keys()
