"""Creating many records at once in the caller's transaction (an import's batch), through the record service.

Each item goes through the same pipeline as `RecordService.create` (parsing, formulas, conditions, validation); the
database's checks and writes are made once for the whole batch instead of once per record: one query per unique
field and per referenced card, one multi-row INSERT of the records (RETURNING their ids), one of their journal rows,
one of their links. Saves that need one save at a time fall back to `create` per item, each in a savepoint: rules
to run (automation on and rules on the card), file fields, a title that shows the record's id, listeners.

This module is the service's own (same package): it uses the service's internal steps so that a record saved here is
the same record, journal row and links as `create` makes (tests/test_bulk_create.py compares them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kartoteka.errors import RecordValidationError
from kartoteka.messages import Message
from kartoteka.metadata.model import EntityDef
from kartoteka.records import journal
from kartoteka.records.consent import INSERT as CONSENT_INSERT
from kartoteka.records.consent import archive_rows, consent_fields
from kartoteka.records.hooks import API, Origin
from kartoteka.records.model import Principal, Record, ids_in
from kartoteka.records.pipeline import Pipeline, Prepared, is_empty
from kartoteka.records.query import QueryBuilder
from kartoteka.records.scopes import readable_where, require
from kartoteka.storage.keys import key_values, misfits
from kartoteka.storage.tables import record_links, records, users

if TYPE_CHECKING:
    from kartoteka.records.service import RecordService

Outcome = Record | RecordValidationError
_INSERT_RETURNING = sa.insert(records).returning(records.c.id, sort_by_parameter_order=True)


def create_many(service: RecordService, entity_name: str, items: Sequence[Mapping[str, Any]], user: Principal, *,
                connection: sa.Connection, origin: Origin = API,
                owners: Sequence[int | None] | None = None) -> list[Outcome]:
    """Create a record of each item in `connection`'s transaction; each outcome is the record, or the
    RecordValidationError that refused that item (the others are written)."""
    from kartoteka.records.service import _holds_files, _title_reads_id, _Written

    entity = service.entity(entity_name)
    owners = list(owners) if owners is not None else [None] * len(items)
    one_at_a_time = (service.listeners or _holds_files(entity) or _title_reads_id(entity)
                     or (service.hooks is not None and service.hooks.wants(entity, origin)))
    if one_at_a_time:
        return [_create_one(service, entity, values, user, owner, connection, origin)
                for values, owner in zip(items, owners, strict=True)]
    scope = require(service.metadata, user, entity, "create")
    now = service.clock.now()
    prepared_all: list[Prepared] = []
    for values, owner in zip(items, owners, strict=True):
        system = {"id": None, "owner": owner or user.id, "created_at": now, "updated_at": now}
        prepared_all.append(Pipeline(entity, service.clock, service.ctx).run(values, None, user, system))
    _check_lookups(service, connection, entity, prepared_all, user)
    checked_owners: dict[int, Prepared] = {}
    for prepared, owner in zip(prepared_all, owners, strict=True):
        if owner is not None and owner != user.id:
            if owner not in checked_owners:
                probe = Prepared(values={}, changed=set())
                service._check_owner(connection, owner, scope, user, probe)
                checked_owners[owner] = probe
            for message in checked_owners[owner].errors.get("owner", ()):
                prepared.error("owner", message)
    outcomes: list[Outcome | None] = []
    rows: list[dict[str, Any]] = []
    kept: list[tuple[int, Prepared, dict[str, Any], int | None]] = []
    for position, (prepared, owner) in enumerate(zip(prepared_all, owners, strict=True)):
        try:
            service._refuse_if_invalid(entity, prepared, user, None)
        except RecordValidationError as refused:
            outcomes.append(refused)
            continue
        outcomes.append(None)
        data = service._storage(entity, prepared.values)
        system = {"id": None, "owner": owner or user.id, "created_at": now, "updated_at": now}
        new_owner = owner or user.id
        rows.append({"entity": entity.name, "data": data, "title": service._title(entity, prepared.values, system),
                     "owner": new_owner, "version": 1, "created_at": now, "updated_at": now, "created_by": user.id,
                     "updated_by": user.id, "flags": prepared.unseen or None, **key_values(entity, data)})
        kept.append((position, prepared, data, new_owner))
    if rows:
        ids: list[int] = list(connection.execute(_INSERT_RETURNING, rows).scalars())
        _write_after(service, connection, entity, user, origin, now, kept, rows, ids)
        stored_now = service._stored_moment(now)
        for (position, prepared, _data, new_owner), row, record_id in zip(kept, rows, ids, strict=True):
            written = _Written(record_id, 1, row["title"], new_owner, stored_now, stored_now, user.id, user.id, None,
                               row["flags"])
            outcomes[position] = service._record(entity, written, user, prepared.values)
    return [outcome for outcome in outcomes if outcome is not None]


def _write_after(service: RecordService, conn: sa.Connection, entity: EntityDef, user: Principal, origin: Origin,
                 now: Any, kept: list[tuple[int, Prepared, dict[str, Any], int | None]], rows: list[dict[str, Any]],
                 ids: list[int]) -> None:
    """The journal rows, consent decisions, key columns that JSON must fill, and reference links of the new records."""
    conn.execute(journal.INSERT, [
        journal.row(entity, record_id, 1, "created", user, origin, journal.changes(None, data, None, owner), now)
        for (_, _, data, owner), record_id in zip(kept, ids, strict=True)])
    if consent_fields(entity):
        decisions = [d for (_, _, data, _), row, record_id in zip(kept, rows, ids, strict=True)
                     for d in archive_rows(entity, record_id, row["title"], None, data, user, origin, now)]
        if decisions:
            conn.execute(CONSENT_INSERT, decisions)
    from kartoteka.records.service import _refill_statement

    for (_, _, data, _), record_id in zip(kept, ids, strict=True):
        if odd := misfits(entity, data):
            conn.execute(_refill_statement(entity, odd), {"record_id": record_id})
    links = [{"source_id": record_id, "field": field.name, "target_id": target, "source_entity": entity.name}
             for (_, prepared, _, _), record_id in zip(kept, ids, strict=True)
             for field in entity.reference_fields for target in sorted(set(ids_in(prepared.values.get(field.name))))]
    if links:
        conn.execute(sa.insert(record_links), links)


def _create_one(service: RecordService, entity: EntityDef, values: Mapping[str, Any], user: Principal,
                owner: int | None, conn: sa.Connection, origin: Origin) -> Outcome:
    try:
        return service.create(entity.name, values, user, owner=owner, connection=conn, origin=origin)
    except RecordValidationError as refused:
        return refused


def _check_lookups(service: RecordService, conn: sa.Connection, entity: EntityDef, batch: list[Prepared],
                   user: Principal) -> None:
    """`create`'s database checks for a whole batch: unique values (also between the batch's own records),
    referenced records readable by the user, active users."""
    query = QueryBuilder(entity, service.dialect, service.ctx, entity.fields)
    for name, field in entity.fields.items():
        holders = [(p, p.values.get(name)) for p in batch if not is_empty(p.values.get(name)) and name not in p.errors]
        if not holders:
            continue
        if field.unique:
            _check_unique(service, conn, entity, query, name, holders, user)
        if field.type.refers == "record":
            target = service.metadata.entities.get(field.to or "")
            wanted = {i for _, value in holders for i in ids_in(value)}
            readable = readable_where(service.metadata, user, target) if target is not None else None
            found: set[int] = set() if readable is None or not wanted else set(conn.execute(
                sa.select(records.c.id).where(records.c.id.in_(wanted), *readable)).scalars())
            for prepared, value in holders:
                for missing in sorted(set(ids_in(value)) - found):
                    prepared.error(name, Message("reference.missing", "There is no {what} with id {id}.",
                                                 what=target.label if target is not None else field.to, id=missing))
        elif field.type.refers == "user":
            wanted = {i for _, value in holders for i in ids_in(value)}
            active: set[int] = set(conn.execute(sa.select(users.c.id).where(users.c.id.in_(wanted), users.c.is_active))
                         .scalars())
            for prepared, value in holders:
                for missing in sorted(set(ids_in(value)) - active):
                    prepared.error(name, Message("user.missing", "There is no active user with id {id}.",
                                                 id=missing))


def _check_unique(service: RecordService, conn: sa.Connection, entity: EntityDef, query: QueryBuilder, name: str,
                  holders: list[tuple[Prepared, Any]], user: Principal) -> None:
    field = entity.fields[name]
    column = query.column(name, field)
    taken: dict[Any, int] = {}
    distinct = list({_key(v): v for _, v in holders}.values())
    for start in range(0, len(distinct), 500):
        chunk = distinct[start:start + 500]
        found = conn.execute(sa.select(column.label("value"), records.c.id).where(
            records.c.entity == entity.name, records.c.deleted_at.is_(None),
            sa.or_(*(column == query.bind(field, v) for v in chunk))))
        for row in found:
            taken.setdefault(_key(row.value), row.id)
    seen: set[Any] = set()
    for prepared, value in holders:
        key = _key(value)
        if key in taken:
            prepared.error(name, service._unique_message(conn, entity, taken[key], user))
        elif key in seen:
            prepared.error(name, Message("unique.in_batch", "{value} is also in an earlier row of this batch: it may "
                                         "be saved once.", value=str(value)[:100]))
        seen.add(key)


def _key(value: Any) -> Any:
    """A unique value as the database compares it (exactly; equal numbers are equal whatever their places)."""
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value
