"""Connections that only read: one per web request, and on PostgreSQL in autocommit.

A page reads in several short statements (the session's user, the list, its count, titles, saved views, the users
to choose). Each on a connection of its own cost a pool checkout (with PostgreSQL's liveness ping, a round trip) and,
in a transaction, two more round trips (BEGIN before it, ROLLBACK when it went back to the pool): about 0.2 ms each
on a busy two-core machine, as much as the statement. So reads go through `reader(engine).connect()`:

- within a `read_scope` (the web app opens one per request) every read shares one connection, opened at the first
  read and closed when the scope ends; a connection the server dropped meanwhile is found without a round trip (its
  socket has something to read) and replaced;
- reads come from a pool of their own (storage/database.py `read_engine`): a request that holds its read connection
  while it writes on another never waits for a second connection of a pool it holds one of;
- on PostgreSQL that connection is in autocommit. Under READ COMMITTED every statement sees the data as of its own
  start, in a transaction or not, so reading in autocommit shows nothing different, and no transaction stays open
  while the page renders. SQLite's driver begins transactions only for writes, so its reads hold nothing either.

Statements that write, lock (FOR UPDATE) or set anything for a transaction (SET LOCAL) go through the engine itself,
in `engine.begin()`, on a connection of their own.
"""

from __future__ import annotations

import select
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar, Token
from types import TracebackType
from weakref import WeakKeyDictionary

import psycopg
import sqlalchemy as sa

from kartoteka.storage.database import read_engine


class ReadScope:
    """One connection for the reads of a unit of work (a web request): opened at the first read, closed at the end."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._connection: sa.Connection | None = None

    def connection(self) -> sa.Connection:
        """The scope's connection (a new one if the last was closed or lost)."""
        current = self._connection
        if current is not None and (current.closed or current.invalidated or not _alive(current)):
            current.close()
            current = None
        if current is None:
            current = self._connection = _reads(self.engine).connect()
        return current

    def close(self) -> None:
        """Give the connection back to the pool."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _alive(connection: sa.Connection) -> bool:
    """False when the server has closed a PostgreSQL connection since its last statement (a restart, a failover,
    pg_terminate_backend), as the pool's ping would have found at a checkout.

    A connection idle between statements has nothing to read: a poll of its socket costs no round trip. Something to
    read (a notice, or the server's goodbye) is checked by a ping.
    """
    pgconn = getattr(connection.connection.dbapi_connection, "pgconn", None)  # psycopg's; SQLite has no server
    if pgconn is None:
        return True
    try:
        readable, _, _ = select.select([pgconn.socket], [], [], 0)
    except (OSError, ValueError, sa.exc.SQLAlchemyError, psycopg.Error):
        return False
    if not readable:
        return True
    try:
        connection.exec_driver_sql("SELECT 1")
    except sa.exc.DBAPIError:
        return False
    return True


_SCOPE: ContextVar[ReadScope | None] = ContextVar("kartoteka_read_scope", default=None)


def open_read_scope(engine: sa.Engine) -> Token[ReadScope | None]:
    """Share one connection among the reads of `engine` from now on (in this thread or task); see `close_read_scope`."""
    return _SCOPE.set(ReadScope(engine))


def close_read_scope(token: Token[ReadScope | None]) -> None:
    """End the read scope `open_read_scope` opened, giving its connection back to the pool."""
    scope = _SCOPE.get()
    _SCOPE.reset(token)
    if scope is not None:
        scope.close()


@contextmanager
def read_scope(engine: sa.Engine) -> Iterator[None]:
    """Share one connection among the reads of `engine` made within this block."""
    token = open_read_scope(engine)
    try:
        yield
    finally:
        close_read_scope(token)


class _Borrowed(AbstractContextManager[sa.Connection]):
    """The scope's connection for one `with` block: left open at its end (the scope closes it)."""

    def __init__(self, connection: sa.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> sa.Connection:
        return self.connection

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is not None and not self.connection.closed:
            try:  # the next read starts clean (autocommit: nothing on the server to undo)
                self.connection.rollback()
            except sa.exc.SQLAlchemyError:  # a lost connection: closed here, the scope opens another for the next read
                self.connection.close()


class Reader:
    """Connections for statements that only read, from `engine` (see the module's docstring)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def connect(self) -> AbstractContextManager[sa.Connection]:
        """The current read scope's connection, or else a connection of its own (closed at the block's end)."""
        scope = _SCOPE.get()
        if scope is not None and scope.engine is self.engine:
            return _Borrowed(scope.connection())
        return _reads(self.engine).connect()


_READERS: WeakKeyDictionary[sa.Engine, Reader] = WeakKeyDictionary()


def reader(engine: sa.Engine) -> Reader:
    """The reader of `engine` (made once per engine)."""
    found = _READERS.get(engine)
    if found is None:
        found = _READERS[engine] = Reader(engine)
    return found


def _reads(engine: sa.Engine) -> sa.Engine:
    """The engine for `engine`'s reads (storage/database.py: a pool of its own; PostgreSQL's in autocommit)."""
    return read_engine(engine)
