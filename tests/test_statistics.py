"""SQLite's planner statistics (storage/statistics.py): taken once records is large enough, again as it grows, never
waiting for another writer; with them a sorted list walks its field's index instead of reading every record."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from kartoteka.metadata.fieldtypes import ParseContext
from kartoteka.records.model import SYSTEM, Filter, ListQuery
from kartoteka.records.service import RecordService
from kartoteka.storage import statistics
from kartoteka.storage.database import create_engine
from kartoteka.storage.indexes import sync_indexes
from kartoteka.storage.tables import records
from tests.conftest import CRM_CONFIG


@pytest.fixture
def config_dir():
    return CRM_CONFIG


@pytest.fixture
def sqlite_engine(engine):
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite only: PostgreSQL's autovacuum keeps its statistics")
    yield engine
    with engine.begin() as conn:  # the database is shared by the session's tests: leave no statistics behind
        if conn.execute(sa.text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")).first():
            conn.execute(sa.text("DELETE FROM sqlite_stat1"))
        conn.execute(sa.text("ANALYZE sqlite_schema"))  # the planner reloads what it knows
    engine.dispose()


def _load(engine, count: int, start: int = 0) -> None:
    now = datetime.now(UTC)
    rows = [{"entity": "deal", "data": {"name": f"D{i}", "stage": "won" if i % 3 else "new", "price": i},
             "title": f"D{i}", "version": 1, "created_at": now, "updated_at": now,
             "kt1": "won" if i % 3 else "new", "kn3": i} for i in range(start, start + count)]
    with engine.begin() as conn:
        conn.execute(sa.insert(records), rows)


def _plan(engine, sql: str) -> str:
    with engine.connect() as conn:
        return " ".join(str(row) for row in conn.execute(sa.text("EXPLAIN QUERY PLAN " + sql)))


SORTED = ("SELECT id FROM records WHERE entity = 'deal' AND deleted_at IS NULL ORDER BY kn3 DESC, id DESC LIMIT 51")


def test_a_grown_table_gets_statistics_and_its_sorted_lists_walk_the_field_index(sqlite_engine, service):
    _load(sqlite_engine, statistics.MIN_ROWS - 1)
    assert statistics.refresh_statistics(sqlite_engine) is False  # small: any plan is fast, none is taken
    _load(sqlite_engine, 2000, start=statistics.MIN_ROWS)
    # Without statistics SQLite takes `entity = ?` on (entity, deleted_at, id) for about ten rows: it reads every
    # deal and sorts them all.
    assert "ix_records_entity_live" in _plan(sqlite_engine, SORTED)
    assert statistics.refresh_statistics(sqlite_engine) is True
    fresh = create_engine(str(sqlite_engine.url))  # a connection opened now reads the statistics
    try:
        assert "kkx_deal__price__kn3" in _plan(fresh, SORTED)
        with fresh.connect() as conn:
            assert statistics.analysed_rows(conn) == 2999
            assert statistics.statistics_due(conn) is False  # fresh: not again until the table grows
    finally:
        fresh.dispose()
    page = service.list("deal", SYSTEM, ListQuery(filters=(Filter("stage", "eq", "won"),), sort="-price", limit=3))
    assert [r["name"] for r in page.items] == ["D2999", "D2998", "D2996"]


def test_statistics_are_taken_again_when_the_table_has_grown_fourfold(sqlite_engine):
    _load(sqlite_engine, statistics.MIN_ROWS)
    assert statistics.refresh_statistics(sqlite_engine) is True
    _load(sqlite_engine, statistics.MIN_ROWS * 2, start=statistics.MIN_ROWS)
    with sqlite_engine.connect() as conn:
        assert statistics.statistics_due(conn) is False  # three times as many: not yet
    _load(sqlite_engine, statistics.MIN_ROWS, start=statistics.MIN_ROWS * 3)
    with sqlite_engine.connect() as conn:
        assert statistics.statistics_due(conn) is True
    assert statistics.refresh_statistics(sqlite_engine) is True
    with sqlite_engine.connect() as conn:
        assert statistics.analysed_rows(conn) == statistics.MIN_ROWS * 4


def test_statistics_never_wait_for_another_writer(sqlite_engine, database_url, metadata):
    _load(sqlite_engine, statistics.MIN_ROWS)
    writer = sqlite3.connect(sa.make_url(database_url).database, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # an import or another process writing
        writer.execute("UPDATE users SET language = language")
        assert statistics.refresh_statistics(sqlite_engine) is False
        assert sync_indexes(sqlite_engine, metadata) == ([], [])  # a start-up beside it goes on
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert statistics.refresh_statistics(sqlite_engine) is True  # taken once the writer is done
    with sqlite_engine.connect() as conn:  # and the connection waits for writers as before
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000


def test_the_record_service_looks_at_statistics_every_so_many_creates(sqlite_engine, metadata, clock):
    sync_indexes(sqlite_engine, metadata)
    _load(sqlite_engine, statistics.MIN_ROWS)
    service = RecordService(metadata, sqlite_engine, clock, ParseContext())
    service.statistics_every = 5
    for i in range(4):
        service.create("deal", {"name": f"N{i}"}, SYSTEM)
    with sqlite_engine.connect() as conn:
        assert statistics.analysed_rows(conn) is None
    service.create("deal", {"name": "N4"}, SYSTEM)
    with sqlite_engine.connect() as conn:
        assert statistics.analysed_rows(conn) == statistics.MIN_ROWS + 5
