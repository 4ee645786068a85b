"""Connections that only read: one per web request, and on PostgreSQL in autocommit.

A page reads in several short statements (the session's user, the list, its count, titles, saved views, the users
to choose). Each on a connection of its own cost a pool checkout (with PostgreSQL's liveness ping, a round trip) and,
in a transaction, two more round trips (BEGIN before it, ROLLBACK when it went back to the pool): about 0.2 ms each
on a busy two-core machine, as much as the statement. So reads go through `reader(engine).connect()`:

- within a `read_scope` (the web app opens one per request) every read shares one connection, opened at the first
  read and closed when the scope ends;
- on PostgreSQL that connection is in autocommit. Under READ COMMITTED every statement sees the data as of its own
  start, in a transaction or not, so reading in autocommit shows nothing different, and no transaction stays open
  while the page renders. SQLite's driver begins transactions only for writes, so its reads hold nothing either.

Statements that write, lock (FOR UPDATE) or set anything for a transaction (SET LOCAL) go through the engine itself,
in `engine.begin()`, on a connection of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar, Token
from types import TracebackType
from weakref import WeakKeyDictionary

import sqlalchemy as sa


class ReadScope:
    """One connection for the reads of a unit of work (a web request): opened at the first read, closed at the end."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._connection: sa.Connection | None = None

    def connection(self) -> sa.Connection:
        """The scope's connection (a new one if the last was closed or lost)."""
        if self._connection is None or self._connection.closed or self._connection.invalidated:
            self._connection = _autocommit(self.engine).connect()
        return self._connection

    def close(self) -> None:
        """Give the connection back to the pool."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


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
            self.connection.rollback()  # the next read starts clean (autocommit: nothing on the server to undo)


class Reader:
    """Connections for statements that only read, from `engine` (see the module's docstring)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def connect(self) -> AbstractContextManager[sa.Connection]:
        """The current read scope's connection, or else a connection of its own (closed at the block's end)."""
        scope = _SCOPE.get()
        if scope is not None and scope.engine is self.engine:
            return _Borrowed(scope.connection())
        return _autocommit(self.engine).connect()


_READERS: WeakKeyDictionary[sa.Engine, Reader] = WeakKeyDictionary()
_AUTOCOMMIT: WeakKeyDictionary[sa.Engine, sa.Engine] = WeakKeyDictionary()


def reader(engine: sa.Engine) -> Reader:
    """The reader of `engine` (made once per engine)."""
    found = _READERS.get(engine)
    if found is None:
        found = _READERS[engine] = Reader(engine)
    return found


def _autocommit(engine: sa.Engine) -> sa.Engine:
    """`engine` with PostgreSQL's connections in autocommit (the same pool); SQLite's engine as it is."""
    if engine.dialect.name != "postgresql":
        return engine
    found = _AUTOCOMMIT.get(engine)
    if found is None:
        found = _AUTOCOMMIT[engine] = engine.execution_options(isolation_level="AUTOCOMMIT")
    return found
