"""Attack on c6a491a (storage/indexes.py _analyze_sqlite): ANALYZE on every start-up and `kartoteka init`.

ANALYZE writes sqlite_stat1, so it needs SQLite's write lock. Before c6a491a, an init (or `kartoteka serve`, which
inits first; or the dev server) with no index to create or drop only read, which WAL lets run beside a writer. Now it
waits for the write lock: beside a long write (an import, another command, a busy app) it waits busy_timeout (10 s)
and then start-up fails with "database is locked", for statistics that are only a planner hint.
"""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from kartoteka.storage.database import create_engine
from kartoteka.storage.indexes import sync_indexes


def test_an_init_with_nothing_to_change_starts_beside_a_running_write(engine, database_url, metadata):
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    sync_indexes(engine, metadata)  # every index exists: nothing to create or drop
    starting = create_engine(database_url)

    @sa.event.listens_for(starting, "connect")
    def _short_wait(dbapi_connection, _record) -> None:  # after the app's own setup: 0.3 s instead of 10 s
        dbapi_connection.execute("PRAGMA busy_timeout=300")

    writer = sqlite3.connect(sa.make_url(database_url).database, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # a write in progress elsewhere (an import, another process)
        writer.execute("UPDATE users SET language = language")
        assert sync_indexes(starting, metadata) == ([], [])  # OperationalError: database is locked (ANALYZE)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        starting.dispose()
