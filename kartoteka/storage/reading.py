"""Connections that only read: on PostgreSQL in autocommit, so a read costs no BEGIN and no ROLLBACK round trip.

A page reads in several short statements (the session's user, the list, its count, titles, saved views), each on a
connection of its own; in a transaction each cost two more round trips to the server (BEGIN before it, ROLLBACK
when the connection went back to the pool), about 0.2 ms on a busy two-core machine, as much as the statement.
Under PostgreSQL's READ COMMITTED every statement sees the data as of its own start, in a transaction or not, so
reading in autocommit shows nothing different. SQLite's driver begins transactions only for writes: its engine is
its own reader. Statements that write, lock (FOR UPDATE) or set anything for a transaction (SET LOCAL) go through
the engine itself, in `engine.begin()`.
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

import sqlalchemy as sa

_READERS: WeakKeyDictionary[sa.Engine, sa.Engine] = WeakKeyDictionary()


def reader(engine: sa.Engine) -> sa.Engine:
    """`engine` for statements that only read (the same pool; PostgreSQL's connections in autocommit)."""
    if engine.dialect.name != "postgresql":
        return engine
    found = _READERS.get(engine)
    if found is None:
        found = _READERS[engine] = engine.execution_options(isolation_level="AUTOCOMMIT")
    return found
