"""Value objects of the activity layer (tasks, timeline entries, notifications) and the helpers they share."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from kartoteka.errors import BadRequest
from kartoteka.messages import Message
from kartoteka.storage.times import utc

# Timeline kinds: what people log from the card (USER_KINDS) and what the platform writes (e-mails, rule runs).
KINDS = ("note", "call", "meeting", "email", "rule")
USER_KINDS = ("note", "call", "meeting")
MAX_PAGE = 200
# A due date without a time is due at the end of that day (UTC): a task due today is not overdue this morning.
END_OF_DAY = time(23, 59, 59)


# A moment as it is written: in UTC, so that SQLite's offset-less text orders and compares as time does (the same
# conversion as reading one back: kartoteka.storage.times.utc).
stored = utc


def due_moment(value: date | datetime) -> datetime:
    """The moment a due date stands for: a date is due at the end of that day (UTC)."""
    if isinstance(value, datetime):
        return stored(value)
    return datetime.combine(value, END_OF_DAY, tzinfo=UTC)


def parse_moment(text: str, *, end_of_day: bool, name: str) -> datetime:
    """An ISO date or date-time; a bare date is its start (or, with `end_of_day`, its last second), UTC."""
    raw = text.strip()
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            return datetime.combine(day, END_OF_DAY if end_of_day else time(0), tzinfo=UTC)
        return stored(datetime.fromisoformat(raw))
    except ValueError:
        raise BadRequest(Message("activity.moment_invalid", "'{name}' must be an ISO date (2026-03-31) or date and "
                                 "time (2026-03-31T17:00:00Z), not {text}.", name=name, text=repr(raw[:40]))) from None


def page_limit(text: str | None, default: int = 50) -> int:
    """A page size from a query string: 1 to 200."""
    if text is None or text == "":
        return default
    if not (text.isdigit() and text.isascii()) or not 0 < int(text[:6]) <= MAX_PAGE:
        raise BadRequest(Message("activity.limit_invalid", "'limit' must be a whole number from 1 to {most}.",
                                 most=MAX_PAGE))
    return int(text)


def encode_cursor(*parts: object) -> str:
    """An opaque keyset cursor made of `parts`."""
    return base64.urlsafe_b64encode("|".join(str(p) for p in parts).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, count: int) -> list[str]:
    """The `count` parts of a cursor made by encode_cursor; BadRequest when it is not one."""
    try:
        parts = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split("|")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        parts = []
    if len(parts) != count or len(cursor) > 200:
        raise BadRequest(Message("activity.cursor_invalid", "The cursor is not one this list made; start from the "
                                 "first page."))
    return parts


def cursor_moment(text: str) -> datetime:
    """A cursor's moment; BadRequest when it is not one."""
    try:
        return stored(datetime.fromisoformat(text))
    except ValueError:
        raise BadRequest(Message("activity.cursor_invalid", "The cursor is not one this list made; start from the "
                                 "first page.")) from None


def cursor_int(text: str) -> int:
    """A cursor's id; BadRequest when it is not one."""
    if not (text.isdigit() and text.isascii() and len(text) < 19):
        raise BadRequest(Message("activity.cursor_invalid", "The cursor is not one this list made; start from the "
                                 "first page."))
    return int(text)


@dataclass(frozen=True)
class Task:
    """A task as a user may see it: the card's title only when that user may open the card."""

    id: int
    title: str
    description: str
    assignee: int | None
    assignee_name: str | None
    due_at: datetime | None
    done_at: datetime | None
    entity: str | None
    record_id: int | None
    card_title: str | None
    rule_key: str | None
    created_by: int | None
    created_by_name: str | None
    created_at: datetime
    updated_at: datetime
    version: int

    @property
    def done(self) -> bool:
        """True once the task was marked done."""
        return self.done_at is not None

    def overdue(self, now: datetime) -> bool:
        """Open and past its due moment."""
        return self.done_at is None and self.due_at is not None and self.due_at < now

    @property
    def due_is_date(self) -> bool:
        """The due moment stands for a whole day (it was given as a date)."""
        return self.due_at is not None and self.due_at.time() == END_OF_DAY


@dataclass(frozen=True)
class TaskQuery:
    """What a task list asks for: filters, a page size and a keyset cursor."""

    assignee: int | None = None
    done: bool | None = None
    due_lte: datetime | None = None
    due_gte: datetime | None = None
    entity: str | None = None
    record_id: int | None = None
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True)
class TaskPage:
    """One page of tasks and the cursor of the next one (None on the last page)."""

    items: tuple[Task, ...]
    next_cursor: str | None


@dataclass(frozen=True)
class Entry:
    """One line of a card's timeline: an entry of `timeline`, or one of the card's tasks (kind 'task')."""

    id: int
    kind: str
    created_at: datetime
    user_id: int | None
    author: str | None
    body: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    task: Task | None = None


@dataclass(frozen=True)
class TimelinePage:
    """One page of a card's timeline, newest first."""

    items: tuple[Entry, ...]
    next_cursor: str | None


@dataclass(frozen=True)
class Notification:
    """One in-app notification of its user."""

    id: int
    text: str
    entity: str | None
    record_id: int | None
    rule_key: str | None
    created_at: datetime
    read_at: datetime | None

    @property
    def unread(self) -> bool:
        """Not marked read yet."""
        return self.read_at is None


@dataclass(frozen=True)
class NotificationPage:
    """One page of notifications, unread first, newest first within each."""

    items: tuple[Notification, ...]
    next_cursor: str | None


@dataclass(frozen=True)
class Counts:
    """What the header shows: the user's open tasks, how many of them are overdue, unread notifications."""

    open_tasks: int
    overdue_tasks: int
    unread: int
