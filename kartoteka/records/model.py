"""Value objects of the record service: who acts, what a record is, what a list query asks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Principal:
    """The user on whose behalf the service acts (passed in explicitly, never global)."""

    id: int | None
    username: str
    roles: frozenset[str] = frozenset()
    department: str | None = None
    language: str = "en"
    is_system: bool = False
    token_id: int | None = None  # the API token it acts with (the journal names it)


SYSTEM = Principal(None, "system", is_system=True)  # sees and edits every field, like a superuser


def ids_in(value: Any) -> list[int]:
    """The record or user ids held by a reference or user value (one id, a list of them, or empty)."""
    if value is None:
        return []
    return [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, int)]


@dataclass(frozen=True)
class Attention:
    """A problem of a stored record that the user who saved it could not see: a flag for those who can."""

    field: str | None
    message: str


@dataclass(frozen=True)
class Record:
    """One stored card with typed values (Decimal, date, ...), already filtered for the reader."""

    id: int
    entity: str
    version: int
    title: str
    values: Mapping[str, Any]
    owner: int | None
    created_at: datetime
    updated_at: datetime
    created_by: int | None = None
    updated_by: int | None = None
    deleted_at: datetime | None = None
    attention: tuple[Attention, ...] = ()

    def __getitem__(self, name: str) -> Any:
        return self.values.get(name)


@dataclass(frozen=True)
class Filter:
    """`field__op=value` from a list request; the value is still raw text or JSON."""

    field: str
    op: str
    value: Any


OPERATORS = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "contains", "isnull")


@dataclass(frozen=True)
class ListQuery:
    """What a list asks for: filters, a search text, sort, page size and a keyset cursor."""

    filters: tuple[Filter, ...] = ()
    search: str | None = None
    sort: str | None = None
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True)
class Page:
    """One page of records and the cursor of the next one (None on the last page)."""

    items: tuple[Record, ...]
    next_cursor: str | None
    total: int | None = None
    sort: str = "-id"


@dataclass
class FormState:
    """The evaluated state of a form: values with formulas, visibility, requiredness, errors."""

    values: dict[str, Any]
    visible: dict[str, bool] = field(default_factory=dict)
    required: dict[str, bool] = field(default_factory=dict)
    read_only: dict[str, bool] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    sections: dict[str, bool] = field(default_factory=dict)
    version: int | None = None  # the stored version the state was evaluated over (None for a new record)
    saved: dict[str, Any] | None = None  # the viewable stored values at that version, before the form's changes
    record: Record | None = None  # the stored record as the user sees it (None for a new one)
    rules: tuple[str, ...] = ()  # the names of the rules saving these values would fire (what will run)


@dataclass(frozen=True)
class RecordPermissions:
    """What one user may do with one stored record, decided by the record service."""

    update: bool
    delete: bool
