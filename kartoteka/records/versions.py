"""A record's history and earlier versions, read from the change journal, and reverting to one of them.

A revert is a save like any other: it goes through the record service (validation, permissions, formulas, rules)
with the version it goes back to in its origin, and is journalled as `reverted`. Only values the user may view and
change come back; the others stay as they are and are named in the result. A consent is never reverted: it is the
person's own decision, changed only when they give or withdraw it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from kartoteka.errors import BadRequest, NotFound, PermissionDenied, RecordValidationError
from kartoteka.messages import Message
from kartoteka.metadata.model import EntityDef
from kartoteka.records import journal
from kartoteka.records.access import editable_fields, viewable_fields
from kartoteka.records.hooks import API, Origin
from kartoteka.records.model import Principal, Record
from kartoteka.records.scopes import in_scope, require
from kartoteka.records.service import RecordService, not_found
from kartoteka.storage.reading import reader
from kartoteka.storage.tables import journal as journal_table
from kartoteka.storage.tables import records


@dataclass(frozen=True)
class History:
    """A record's journal as a reader may see it, newest first."""

    entity: str
    record_id: int
    title: str
    version: int
    deleted: bool
    entries: tuple[journal.JournalEntry, ...]
    next_before: int | None  # the id to page on from (entries older than it), None at the journal's start


@dataclass(frozen=True)
class Reverted:
    """What a revert did: the record as saved, the fields it brought back and those it left as they are."""

    record: Record
    fields: tuple[str, ...]
    kept: tuple[str, ...]  # differing fields the user may not view or change


def _readable_row(conn: sa.Connection, service: RecordService, entity: EntityDef, record_id: int,
                  user: Principal) -> Any:
    """The record's row, live or in the trash, when `user` may read it; NotFound otherwise."""
    scope = require(service.metadata, user, entity, "read")
    row = conn.execute(sa.select(records.c.id, records.c.data, records.c.owner, records.c.version,
                                 records.c.deleted_at, records.c.title).where(records.c.id == record_id,
                                                             records.c.entity == entity.name)).first()
    missing = NotFound(not_found(entity, record_id))
    if row is None or not in_scope(conn, scope, user, row.owner):
        raise missing
    if row.deleted_at is not None:  # the trash is for those who may delete it: for the others it does not exist
        try:
            delete_scope = require(service.metadata, user, entity, "delete")
        except PermissionDenied:
            raise missing from None
        if not in_scope(conn, delete_scope, user, row.owner):
            raise missing
    return row


def history(service: RecordService, entity_name: str, record_id: int, user: Principal, *, limit: int = 50,
            before: int | None = None) -> History:
    """A page of the record's journal, newest first, cut to the fields `user` may view."""
    entity = service.entity(entity_name)
    with reader(service.engine).connect() as conn:
        row = _readable_row(conn, service, entity, record_id, user)
        query = journal.entries_query(entity, record_id)
        if before is not None:
            query = query.where(journal_table.c.id < before)
        rows = conn.execute(query.limit(limit + 1)).all()
    shown = tuple(journal.visible_entry(entity, user, r) for r in rows[:limit])
    return History(entity.name, record_id, row.title, row.version, row.deleted_at is not None, shown,
                   shown[-1].id if len(rows) > limit else None)


def values_at(service: RecordService, entity_name: str, record_id: int, version: int, user: Principal
              ) -> dict[str, Any]:
    """The record's typed values as they were at `version`, the fields `user` may view."""
    entity = service.entity(entity_name)
    with reader(service.engine).connect() as conn:
        row = _readable_row(conn, service, entity, record_id, user)
        data, _owner = _rebuilt(conn, entity, row, version)
    viewable = viewable_fields(entity, user)
    return service.typed_values(entity, {n: v for n, v in data.items() if n in viewable and n in entity.fields})


def _rebuilt(conn: sa.Connection, entity: EntityDef, row: Any, version: int) -> tuple[dict[str, Any], int | None]:
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= row.version:
        raise BadRequest(Message("journal.version_unknown", "{what} #{id} has versions 1 to {last}, not {version}.",
                                 what=entity.label, id=row.id, last=row.version, version=str(version)[:20]))
    later = conn.execute(journal.entries_query(entity, row.id).where(journal_table.c.version > version)).all()
    if [r.version for r in later] != list(range(row.version, version, -1)):
        first = min((r.version for r in later), default=row.version + 1)
        raise BadRequest(Message("journal.version_before_journal", "{what} #{id} was saved before the journal began "
                                 "(it starts after version {first}); version {version} cannot be rebuilt.",
                                 what=entity.label, id=row.id, first=first - 1, version=version))
    return journal.values_at(row.data or {}, row.owner, later)


def revert(service: RecordService, entity_name: str, record_id: int, version: Any, user: Principal, *,
           fields: Sequence[Any] | None = None, expected_version: int | None = None,
           origin: Origin = API) -> Reverted:
    """Bring the record's values (all, or `fields`) back to what they were at `version`, as a save by `user`."""
    entity = service.entity(entity_name)
    with reader(service.engine).connect() as conn:
        row = _readable_row(conn, service, entity, record_id, user)
        if row.deleted_at is not None:
            raise NotFound(Message("journal.revert_deleted", "{what} #{id} is in the trash: restore it first.",
                                   what=entity.label, id=record_id))
        target, _owner = _rebuilt(conn, entity, row, version)
    current = row.data or {}
    viewable, editable = viewable_fields(entity, user), editable_fields(entity, user)
    if fields is None:
        differing = sorted(n for n in entity.fields if target.get(n) != current.get(n))
        chosen = [n for n in differing if n in editable and not _is_consent(entity, n)]
        kept = tuple(n for n in differing if (n not in editable or _is_consent(entity, n))
                     and not entity.fields[n].is_formula)
    else:
        chosen = _chosen_fields(entity, fields, viewable)
        kept = ()
    values = service.typed_values(entity, {n: target.get(n) for n in chosen if target.get(n) != current.get(n)})
    if not values:
        return Reverted(service.get(entity.name, record_id, user), (), tuple(n for n in kept if n in viewable))
    saved = service.update(entity.name, record_id, values, user,
                           expected_version=row.version if expected_version is None else expected_version,
                           origin=dataclasses.replace(origin, reverts=version))
    return Reverted(saved, tuple(values), tuple(n for n in kept if n in viewable))


def _chosen_fields(entity: EntityDef, fields: Sequence[Any], viewable: frozenset[str]) -> list[str]:
    errors: dict[str, list[Any]] = {}
    chosen = []
    for name in fields:
        if not isinstance(name, str) or name not in entity.fields or name not in viewable:
            errors.setdefault("fields", []).append(Message("journal.field_unknown", "{what} has no field '{name}'.",
                                                           what=entity.label, name=str(name)[:63]))
        elif _is_consent(entity, name):
            errors.setdefault("fields", []).append(Message(
                "journal.field_consent", "'{name}' is a person's consent: it changes only when they give or withdraw "
                "it, never by going back to an earlier version.", name=name))
        elif entity.fields[name].is_formula:
            errors.setdefault("fields", []).append(Message(
                "journal.field_computed", "'{name}' is computed by a formula: it follows the fields it is computed "
                "from.", name=name))
        else:
            chosen.append(name)
    if errors:
        raise RecordValidationError(errors)
    return chosen


def _is_consent(entity: EntityDef, name: str) -> bool:
    """A consent is the person's decision, archived as made: no revert, undo or merge makes it for them."""
    return entity.fields[name].type.personal_decision
