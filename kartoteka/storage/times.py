"""Moments as the database keeps them: in UTC.

SQLite keeps a timestamp as its wall-clock text without the offset, PostgreSQL's timestamptz gives it back in the
session's zone: every moment read goes through `utc`, and every moment written is UTC, so that SQLite's text orders
and compares as time does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


@overload
def utc(moment: datetime) -> datetime: ...


@overload
def utc(moment: None) -> None: ...


def utc(moment: datetime | None) -> datetime | None:
    """`moment` in UTC; a moment without a zone (as SQLite gives it back) is taken as UTC."""
    if moment is None:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
