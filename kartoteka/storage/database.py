"""Creating engines for SQLite (the embedded default) and PostgreSQL, and upgrading the schema."""

from __future__ import annotations

import json
import math
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 10000  # how long a SQLite statement waits for another connection's write lock


# JSON columns are written and read by orjson: a record's JSON in 0.2 µs against the standard library's 3.7, read in
# 0.8 against 4.9 (a list page reads 50, bench/README.md). What orjson cannot write so that it reads back the same is
# refused, never stored otherwise: an int beyond 64 bits (it would read back as a float) or a lone surrogate; neither
# passes the record service's checks. It writes NaN and infinities as null: the service refuses them before.
def _json_dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"cannot be stored as JSON: {exc}") from None


def _json_loads(text: str | bytes) -> Any:
    # The standard library reads what orjson refuses (NaN, Infinity), should a row written elsewhere hold it.
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def fold(text: str) -> str:
    """Text as search compares it: case-folded, with ё read as е (Russian writers use either)."""
    return text.casefold().replace("ё", "е")


def _casefold(value: Any) -> Any:
    return fold(value) if isinstance(value, str) else value


# Arithmetic that never rounds: a sum or a quantize gets as many digits as it needs.
EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


class DecimalSum:
    """SQLite aggregate `decimal_sum(x)`: the exact sum of the numbers among x, as text (NULL when none).

    A JSON number reaches SQLite as an integer or a double; a double is read back as the shortest decimal
    that gives it, which is the stored decimal itself (at most 15 significant digits, see MAX_DECIMAL_DIGITS).
    Python integers and decimals do not overflow. Anything else (NULL, text) adds nothing, as it cannot raise.
    """

    def __init__(self) -> None:
        self.total: Decimal | None = None

    def step(self, value: Any) -> None:
        """Add one row's value."""
        if isinstance(value, int):
            number = Decimal(value)
        elif isinstance(value, float) and math.isfinite(value):
            number = Decimal(repr(value))
        else:
            return
        self.total = number if self.total is None else EXACT.add(self.total, number)

    def finalize(self) -> str | None:
        """The sum as decimal text: a Python int beyond 64 bits could not be handed back to SQLite."""
        return None if self.total is None else str(self.total)


def create_engine(url: str, **kwargs: Any) -> sa.Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys, a Unicode casefold() and an exact decimal_sum().

    Beside it, an engine for reads with a pool of its own (`read_engine`, storage/reading.py): a request keeps one
    read connection while it writes on another, and two pools mean it never waits for a second connection of the
    pool it holds one of (which, with every connection held by a request waiting for another, would wait forever).
    """
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    options: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": _json_loads, "future": True,
                               **kwargs}
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        in_memory = not database or database == ":memory:"
        if not in_memory:
            Path(database).parent.mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
        engine = _sqlite_engine(url, options, in_memory)
        if not in_memory:  # an in-memory database exists once per connection: reads must share its pool
            _register_reader(engine, _sqlite_engine(url, options, in_memory))
        return engine
    options.setdefault("pool_pre_ping", True)
    engine = sa.create_engine(url, **options)
    # Reads in autocommit: no BEGIN and ROLLBACK round trips (see storage/reading.py).
    _register_reader(engine, sa.create_engine(url, **{**options, "isolation_level": "AUTOCOMMIT"}))
    return engine


def _sqlite_engine(url: str, options: dict[str, Any], in_memory: bool) -> sa.Engine:
    engine = sa.create_engine(url, **options)

    @sa.event.listens_for(engine, "connect")
    def _sqlite_setup(dbapi_connection: Any, _record: Any) -> None:
        # SQLite's lower() and LIKE only fold ASCII; Cyrillic search needs Python's casefold.
        dbapi_connection.create_function("casefold", 1, _casefold, deterministic=True)
        dbapi_connection.create_aggregate("decimal_sum", 1, DecimalSum)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


_READ_ENGINES: WeakKeyDictionary[sa.Engine, sa.Engine] = WeakKeyDictionary()


def _register_reader(engine: sa.Engine, reads: sa.Engine) -> None:
    _READ_ENGINES[engine] = reads
    # Disposing of the engine (a worker's exit, tests) closes its reads' connections too. (The app is never created
    # before a fork, so no dispose(close=False) is needed, whose connections this would close: see server.py.)
    sa.event.listen(engine, "engine_disposed", lambda _engine: reads.dispose())


def read_engine(engine: sa.Engine) -> sa.Engine:
    """The engine `engine`'s reads use: its own pool (PostgreSQL's in autocommit); `engine` itself for an in-memory
    SQLite database or an engine not made by `create_engine`."""
    return _READ_ENGINES.get(engine, engine)


def casefold(expression: Any, dialect_name: str) -> sa.ColumnElement[str]:
    """`fold` in SQL on both databases (SQLite's own lower() folds ASCII only)."""
    if dialect_name == "sqlite":
        return sa.func.casefold(expression)
    return sa.func.replace(sa.func.lower(expression), "ё", "е")


def alembic_config(engine: sa.Engine) -> Config:
    """An Alembic config bound to `engine`, pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: sa.Engine) -> None:
    """Bring the core tables to the newest migration (idempotent)."""
    command.upgrade(alembic_config(engine), "head")


def hold_transaction(conn: sa.Connection, *, immediate: bool = False) -> None:
    """Make the connection's transaction real now, before a savepoint (`immediate`: holding SQLite's write lock).

    SQLite's driver begins a transaction only before the first write: a SAVEPOINT before any write would begin one
    of its own, which its RELEASE commits, out of reach of the outer transaction's rollback (a dry run, a refused
    save). A transaction that reads, decides and then writes (a rule run on a stored record) takes the write lock
    first with `immediate`, so a second one waits for it and reads what it wrote. PostgreSQL's driver begins at
    once (its callers lock rows): nothing to do.
    """
    if conn.dialect.name != "sqlite":
        return
    dbapi = conn.connection.dbapi_connection
    if dbapi is not None and not dbapi.in_transaction:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
