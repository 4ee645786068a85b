"""SQLite's planner statistics for the records table, kept in step with its size.

Without statistics SQLite assumes that an equality on an index's first column picks about ten rows, so
`entity = 'deal'` on an (entity, ...) index looks cheaper than walking a field's index: a list of 10,000 deals
sorted by amount then reads every deal and sorts them (20 ms) instead of reading 51 entries of the amount index
(0.1 ms). ANALYZE tells it how many records an entity has. PostgreSQL keeps its own (autovacuum).

ANALYZE writes sqlite_stat1 and so needs the write lock: it is tried without waiting and skipped when another
connection is writing (statistics are a hint; a start-up must not fail for them). Below MIN_ROWS records it is not
run at all: any plan is fast there, and statistics of a small table would mislead the planner as the table grows.
"""

from __future__ import annotations

import sqlalchemy as sa

from kartoteka.storage.database import SQLITE_BUSY_TIMEOUT_MS

MIN_ROWS = 1000
GROWTH = 4  # analysed again once the table holds this many times more (or fewer) rows than when last analysed


def analysed_rows(connection: sa.Connection) -> int | None:
    """How many rows records had when it was last analysed (sqlite_stat1), or None if it never was."""
    if connection.execute(sa.text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")).first() is None:
        return None
    stat = connection.execute(sa.text(
        "SELECT stat FROM sqlite_stat1 WHERE tbl = 'records' AND idx = 'ix_records_entity_live'")).scalar()
    return int(str(stat).split()[0]) if stat else None


def _rows(connection: sa.Connection) -> int:
    return int(connection.execute(sa.text("SELECT count(*) FROM records")).scalar_one())


def statistics_due(connection: sa.Connection) -> bool:
    """True when records has MIN_ROWS rows or more and was never analysed, or has grown or shrunk GROWTH-fold."""
    rows = _rows(connection)
    if rows < MIN_ROWS:
        return False
    analysed = analysed_rows(connection)
    return analysed is None or rows >= analysed * GROWTH or rows * GROWTH <= analysed


def refresh_statistics(engine: sa.Engine, *, force: bool = False) -> bool:
    """ANALYZE records on SQLite when it is due (`force`: whenever it holds MIN_ROWS rows or more, as after its
    indexes changed); True when it ran. Never waits for another writer: skipped (False) if one holds the lock."""
    if engine.dialect.name != "sqlite":
        return False
    with engine.connect() as connection:
        due = _rows(connection) >= MIN_ROWS if force else statistics_due(connection)
        if not due:
            return False
        connection.exec_driver_sql("PRAGMA busy_timeout = 0")
        try:
            connection.exec_driver_sql("ANALYZE records")
            connection.commit()
        except sa.exc.OperationalError as exc:
            connection.rollback()
            if "locked" not in str(exc.orig) and "busy" not in str(exc.orig):
                raise
            return False
        finally:
            connection.exec_driver_sql(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    return True
