"""Creating engines for SQLite (the embedded default) and PostgreSQL, and upgrading the schema."""

from __future__ import annotations

import json
import math
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")


# One encoder for every JSON column: json.dumps with options other than its defaults builds a new JSONEncoder on
# each call (about 2 µs of a save's 4-6 µs of encoding). Its encode() keeps no state between calls.
# Values come from the record service and never refer to themselves, so no check for circular references.
_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)


def _json_dumps(value: Any) -> str:
    return _JSON_ENCODER.encode(value)


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
    """An engine for `url`; SQLite gets WAL, foreign keys, a Unicode casefold() and an exact decimal_sum()."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    options: dict[str, Any] = {"json_serializer": _json_dumps, "future": True, **kwargs}
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, **options)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_setup(dbapi_connection: Any, _record: Any) -> None:
            # SQLite's lower() and LIKE only fold ASCII; Cyrillic search needs Python's casefold.
            dbapi_connection.create_function("casefold", 1, _casefold, deterministic=True)
            dbapi_connection.create_aggregate("decimal_sum", 1, DecimalSum)
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=10000")
            if database and database != ":memory:":
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    options.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, **options)


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
