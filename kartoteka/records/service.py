"""The record service: the only code that writes records. API, UI, import and rules all call it."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple

import sqlalchemy as sa

from kartoteka.errors import Conflict, NotFound, PermissionDenied, RecordValidationError
from kartoteka.messages import Message, message_from_stored
from kartoteka.metadata.expressions import Clock
from kartoteka.metadata.fieldtypes import FieldType, ParseContext, plain_title
from kartoteka.metadata.model import EntityDef, FieldDef, Metadata
from kartoteka.metadata.types.scalar import DecimalType
from kartoteka.records import journal
from kartoteka.records.access import every_field, viewable_fields
from kartoteka.records.consent import INSERT as CONSENT_INSERT
from kartoteka.records.consent import archive_rows, consent_fields
from kartoteka.records.files import accepted_type, readable_files, sync_file_links, too_large
from kartoteka.records.hooks import API, UI, Origin, SaveEvent, SaveHooks
from kartoteka.records.model import (
    SYSTEM,
    Attention,
    FormState,
    ListQuery,
    Page,
    Principal,
    Record,
    RecordPermissions,
    ids_in,
)
from kartoteka.records.pipeline import Pipeline, Prepared, is_empty
from kartoteka.records.query import (
    SYSTEM_COLUMNS,
    QueryBuilder,
    _field_value,
    _order_by,
    bound_after_clause,
    bound_filter_clause,
    clamp_limit,
    encode_cursor,
)
from kartoteka.records.scopes import (
    bound_readable_where,
    in_scope,
    owner_message,
    owners_in_scope,
    readable_shape,
    readable_where,
    require,
    scope_of,
)
from kartoteka.storage.database import hold_transaction
from kartoteka.storage.indexes import filled_key_columns, planned_indexes
from kartoteka.storage.json_sql import JsonValue
from kartoteka.storage.keys import key_columns, key_values, misfits
from kartoteka.storage.reading import reader
from kartoteka.storage.statistics import refresh_statistics
from kartoteka.storage.tables import RECORD_COLUMNS, file_links, files, record_links, records, users
from kartoteka.storage.times import utc

TITLE_LENGTH = 300
# Statements of the hot paths are built once; only their parameters change per call.
_SELECT_ANY = sa.select(*RECORD_COLUMNS).where(records.c.id == sa.bindparam("record_id"),
                                       records.c.entity == sa.bindparam("entity"))
_SELECT_LIVE = _SELECT_ANY.where(records.c.deleted_at.is_(None))
_SELECT_LIVE_LOCKED = _SELECT_LIVE.with_for_update()
# Writes return nothing but the new id: the service knows every value it stored (see _Written), and on
# SQLite a RETURNING clause cost more than the rest of the statement (~50-100 µs per save). The id comes
# from the cursor's lastrowid on SQLite and from an implicit RETURNING id on PostgreSQL.
_INSERT = sa.insert(records)
# Built once: composing an UPDATE per save cost more than running it on SQLite (bench/README.md). The owner
# is set only when it changes: setting it rewrites the (entity, owner) index entry even when it is the same.
_UPDATE_VALUES = {
    "data": sa.bindparam("new_data", type_=records.c.data.type), "title": sa.bindparam("new_title"),
    "version": sa.bindparam("new_version"),
    "updated_at": sa.bindparam("new_updated_at", type_=records.c.updated_at.type),
    "updated_by": sa.bindparam("new_updated_by"), "flags": sa.bindparam("new_flags", type_=records.c.flags.type),
}
_UPDATE_WHERE = sa.update(records).where(records.c.id == sa.bindparam("record_id"),
                                         records.c.version == sa.bindparam("seen_version"))


@lru_cache(maxsize=1024)
def _update_statement(columns: tuple[str, ...], with_owner: bool) -> sa.Update:
    """The UPDATE of a record: its values, the key `columns` (storage/keys.py: those of the fields that changed) and
    the owner too when `with_owner`; a key column's parameter is its name after "new_" (as key_values gives them).

    Only the changed fields' key columns are set: SQLite rewrites the entry of every index over a column the UPDATE
    sets, whether its value changed or not."""
    keys = {column: sa.bindparam(f"new_{column}", type_=records.c[column].type) for column in columns}
    owner: dict[str, Any] = {"owner": sa.bindparam("new_owner")} if with_owner else {}
    return _UPDATE_WHERE.values(**_UPDATE_VALUES, **keys, **owner)


@lru_cache(maxsize=256)
def _refill_statement(entity: EntityDef, names: tuple[str, ...]) -> sa.Update:
    """The UPDATE writing the key columns of the fields `names` of the record `record_id` from its stored JSON, by the
    expression the index sync fills them with (storage/indexes.py): for values `key_values` cannot bind
    (storage/keys.py misfits)."""
    columns = key_columns(entity)
    return sa.update(records).where(records.c.id == sa.bindparam("record_id")).values(
        {columns[name]: JsonValue(records.c.data, name, entity.fields[name].value_type.storage) for name in names})


class _Written(NamedTuple):
    """The system columns of a row just written, as reading them back would give them (see _stored_moment)."""

    id: int
    version: int
    title: str
    owner: int | None
    created_at: datetime
    updated_at: datetime
    created_by: int | None
    updated_by: int | None
    deleted_at: datetime | None
    flags: Any


@dataclass(frozen=True)
class Change:
    """What a save did, handed to listeners (rules, history) inside the same transaction."""

    kind: str  # created | updated | deleted | restored
    entity: EntityDef
    record_id: int
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    changed: frozenset[str]
    user: Principal
    origin: Origin = API


Listener = Callable[[Change, sa.Connection], None]


class RecordService:
    """Creates, updates, deletes, reads and lists records through one validated pipeline."""

    def __init__(self, metadata: Metadata, engine: sa.Engine, clock: Clock,
                 parse_context: ParseContext | None = None, listeners: Sequence[Listener] = (),
                 hooks: SaveHooks | None = None) -> None:
        self.metadata = metadata
        self.hooks = hooks  # the rules engine's stages (records/hooks.py); None: no automation
        self.engine = engine
        self.clock = clock
        self.ctx = parse_context or ParseContext()
        self.listeners = list(listeners)
        self.dialect = engine.dialect.name
        # SQLite's statistics are looked at every this many creates (storage/statistics.py): a table that grew
        # since start-up gets them before its lists slow down. Its own count: no state shared between services.
        self.statistics_every = 1000 if self.dialect == "sqlite" else 0
        self._creates = 0
        self._filled_keys: dict[str, dict[str, str]] | None = None

    def key_columns(self, entity: EntityDef) -> Mapping[str, str]:
        """The key columns lists may read for `entity` (storage/keys.py): those whose index the sync has built, and so
        filled. A process whose metadata indexes a field that no sync has filled yet (a worker that loaded an edited
        config before `kartoteka init`) reads that field from the JSON: slower, never wrong. Looked up at the first
        list, once (`refresh_key_columns` after a sync in this process)."""
        filled = self._filled_keys
        if filled is None:
            with reader(self.engine).connect() as conn:
                filled = self._filled_keys = filled_key_columns(conn, self.metadata)
        return filled.get(entity.name, {})

    def refresh_key_columns(self) -> None:
        """Look up again which key columns are filled (after this process synced the indexes)."""
        self._filled_keys = None

    # --- lookups ------------------------------------------------------------------------------------

    def entity(self, name: str) -> EntityDef:
        """The entity called `name`, or NotFound."""
        entity = self.metadata.entities.get(name)
        if entity is None:
            raise NotFound(Message("entity.not_found", "There is no entity '{name}'.", name=name))
        return entity

    def _row(self, connection: sa.Connection, entity: EntityDef, record_id: int, *, lock: bool = False,
             include_deleted: bool = False) -> sa.Row[Any]:
        query = (_SELECT_ANY if include_deleted else
                 _SELECT_LIVE_LOCKED if lock and self.dialect == "postgresql" else _SELECT_LIVE)
        row = connection.execute(query, {"record_id": record_id, "entity": entity.name}).first()
        if row is None:
            raise NotFound(not_found(entity, record_id))
        return row

    def _visible_row(self, connection: sa.Connection, entity: EntityDef, record_id: int, user: Principal, *,
                     lock: bool = False) -> sa.Row[Any]:
        """A live row within the user's read scope; outside it the record does not exist for them."""
        scope = require(self.metadata, user, entity, "read")
        row = self._row(connection, entity, record_id, lock=lock)
        if not in_scope(connection, scope, user, row.owner):
            raise NotFound(not_found(entity, record_id))
        return row

    def _require_in_scope(self, conn: sa.Connection, entity: EntityDef, row: sa.Row[Any], user: Principal,
                          action: str) -> str:
        """The user's scope for changing `row`; PermissionDenied when the record lies outside it."""
        scope = require(self.metadata, user, entity, action)
        if not in_scope(conn, scope, user, row.owner):
            if action == "update":
                raise PermissionDenied(Message(
                    "record.update_out_of_scope", "You may open {what} #{id} but not change it: it is assigned to "
                    "someone outside your scope.", what=entity.label, id=row.id))
            raise PermissionDenied(Message(
                "record.delete_out_of_scope", "You may open {what} #{id} but not delete it: it is assigned to "
                "someone outside your scope.", what=entity.label, id=row.id))
        return scope

    def typed_values(self, entity: EntityDef, data: Mapping[str, Any]) -> dict[str, Any]:
        """The typed values of the fields `data` (stored JSON) names."""
        return {name: self._value(entity.fields[name], stored) for name, stored in data.items()}

    @staticmethod
    def _value(field: FieldDef, stored: Any) -> Any:
        if stored is None:
            return None
        if field.multiple:
            return [field.value_type.from_storage(v, field) for v in stored]
        return field.value_type.from_storage(stored, field)

    def _values(self, entity: EntityDef, data: Mapping[str, Any],
                visible: frozenset[str] | None = None) -> dict[str, Any]:
        """The typed values of every field (None when not stored), or of the `visible` ones only."""
        return _typed(_readers(entity, visible), data)

    def _record(self, entity: EntityDef, row: sa.Row[Any] | _Written, user: Principal,
                values: Mapping[str, Any] | None = None, visible: frozenset[str] | None = None) -> Record:
        visible = viewable_fields(entity, user) if visible is None else visible
        if values is None:  # a row of `records` as read (every column, in order)
            return _stored_record(entity, row, visible)  # type: ignore[arg-type]
        if visible is every_field(entity) and values.keys() == visible:  # a save's values, every field shown
            values = dict(values)
        else:
            values = {n: v for n, v in values.items() if n in visible}
        return Record(
            id=row.id, entity=entity.name, version=row.version, title=row.title, values=values,
            owner=row.owner, created_at=(created := utc(row.created_at)),
            updated_at=created if row.updated_at is row.created_at else utc(row.updated_at),
            created_by=row.created_by, updated_by=row.updated_by, deleted_at=utc(row.deleted_at),
            attention=attention(entity, row.flags, visible),
        )

    def stored(self, conn: sa.Connection, entity: EntityDef, record_id: int, *, lock: bool = False
               ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The typed values and system values (id, owner, created_at, updated_at) of a live record, or None; with
        `lock` the row stays locked until the caller's transaction ends (PostgreSQL: FOR UPDATE)."""
        query = _SELECT_LIVE_LOCKED if lock and self.dialect == "postgresql" else _SELECT_LIVE
        row = conn.execute(query, {"record_id": record_id, "entity": entity.name}).first()
        if row is None:
            return None
        system = {"id": row.id, "owner": row.owner, "created_at": utc(row.created_at),
                  "updated_at": utc(row.updated_at)}
        return self._values(entity, row.data), system

    def storage_json(self, entity: EntityDef, values: Mapping[str, Any]) -> dict[str, Any]:
        """`values` as the record's JSON holds them (what a webhook sends)."""
        return self._storage(entity, values)

    def readable_file(self, file_id: str, user: Principal) -> bool:
        """True when `user` may download the file (see records/files.py for who may)."""
        with reader(self.engine).connect() as conn:
            return file_id in readable_files(conn, self.metadata, user, [file_id])

    def get(self, entity_name: str, record_id: int, user: Principal) -> Record:
        """One live record as `user` may see it."""
        entity = self.entity(entity_name)
        with reader(self.engine).connect() as connection:
            return self._record(entity, self._visible_row(connection, entity, record_id, user), user)

    # --- writing ------------------------------------------------------------------------------------

    def create(self, entity_name: str, values: Mapping[str, Any], user: Principal, *,
               owner: int | None = None, connection: sa.Connection | None = None,
               inferred: frozenset[str] = frozenset(), input_errors: Mapping[str, list[str]] | None = None,
               origin: Origin = API) -> Record:
        """Validate and store a new record; RecordValidationError lists every problem.

        `input_errors` are problems the caller found reading its input (a value that did not parse, an
        upload refused): the save is refused with them and everything else it finds, in one run, and
        the error carries the evaluated form state. `inferred`: see Pipeline.run.
        """
        entity = self.entity(entity_name)
        scope = require(self.metadata, user, entity, "create")
        now = self.clock.now()
        system = {"id": None, "owner": owner or user.id, "created_at": now, "updated_at": now}
        event = self._event("created", entity, user, origin, None, system, conn=connection)
        prepared = Pipeline(entity, self.clock, self.ctx).run(values, None, user, system, inferred=inferred,
                                                              before_save=self._before_save(event))
        with self._transaction(connection) as conn:
            self._check_lookups(conn, entity, prepared, None, user)
            if owner is not None and owner != user.id:
                self._check_owner(conn, owner, scope, user, prepared)
            self._refuse_if_invalid(entity, prepared, user, input_errors)
            data = self._storage(entity, prepared.values)
            title = self._title(entity, prepared.values, system)
            new_owner = owner or user.id
            if event is not None and event.owner is not None:  # a rule assigned it
                new_owner = event.owner
            flags = prepared.unseen or None
            inserted = conn.execute(_INSERT, {
                "entity": entity.name, "data": data, "title": title, "owner": new_owner, "version": 1,
                "created_at": now, "updated_at": now, "created_by": user.id, "updated_by": user.id, "flags": flags,
                **key_values(entity, data),
            }).inserted_primary_key
            assert inserted is not None  # a single-row INSERT always has one
            record_id: int = inserted[0]
            if odd := misfits(entity, data):
                conn.execute(_refill_statement(entity, odd), {"record_id": record_id})
            if _title_reads_id(entity):  # the id exists only now
                title = self._title(entity, prepared.values, {**system, "id": record_id})
                conn.execute(sa.update(records).where(records.c.id == record_id).values(title=title))
            conn.execute(journal.INSERT, journal.row(entity, record_id, 1, "created", user, origin,
                                                     journal.changes(None, data, None, new_owner), now))
            if consent_fields(entity) and (decisions := archive_rows(entity, record_id, title, None, data, user,
                                                                     origin, now)):
                conn.execute(CONSENT_INSERT, decisions)
            stored_now = self._stored_moment(now)
            row = _Written(record_id, 1, title, new_owner, stored_now, stored_now, user.id, user.id, None, flags)
            self._sync_links(conn, entity, row.id, prepared.values, None)
            if _holds_files(entity):
                sync_file_links(conn, entity, row.id, prepared.values, None, now)
            if self.listeners or event is not None:
                change = Change("created", entity, row.id, None, prepared.values, frozenset(prepared.changed), user,
                                origin)
                self._notify(conn, change)
                if event is not None:
                    event.record_id = row.id
                    self.hooks.after_write(conn, change, event)  # type: ignore[union-attr]  # event means hooks
        if self.statistics_every and connection is None:
            self._creates += 1
            if self._creates % self.statistics_every == 0:
                refresh_statistics(self.engine)
        return self._record(entity, row, user, prepared.values)

    def update(self, entity_name: str, record_id: int, values: Mapping[str, Any], user: Principal, *,
               expected_version: int | None, owner: int | None = None,
               connection: sa.Connection | None = None, inferred: frozenset[str] = frozenset(),
               input_errors: Mapping[str, list[str]] | None = None, origin: Origin = API) -> Record:
        """Apply a partial change; a stale `expected_version` is a Conflict, never an overwrite.

        One read, one pipeline run, one write. A refused change raises RecordValidationError with the
        evaluated form state of this very run (see `create` for `input_errors` and `inferred`).
        """
        entity = self.entity(entity_name)
        now = self.clock.now()
        with self._transaction(connection) as conn:
            require(self.metadata, user, entity, "update")  # refuse before reading anything
            row = self._visible_row(conn, entity, record_id, user, lock=True)
            scope = self._require_in_scope(conn, entity, row, user, "update")
            # The row's columns read once, by position (by name each costs about 0.3 µs; see _COLUMNS).
            (row_id, _, data, _, row_owner, version, created_at, _, created_by, _, deleted_at, row_flags) = row[:_WIDTH]
            if expected_version is not None and version != expected_version:
                raise Conflict(
                    Message("record.stale", "{what} #{id} was changed by someone else (version {version}, you edited "
                            "version {edited}). Reload it and apply your change again.", what=entity.label,
                            id=record_id, version=version, edited=expected_version),
                    current_version=version,
                )
            stored = self._values(entity, data)
            system = {"id": row_id, "owner": row_owner, "created_at": utc(created_at), "updated_at": now}
            event = self._event("updated", entity, user, origin, stored, system, record_id, conn=conn)
            prepared = Pipeline(entity, self.clock, self.ctx).run(values, stored, user, system,
                                                                  flagged=_flagged_checks(row_flags), inferred=inferred,
                                                                  before_save=self._before_save(event))
            self._check_lookups(conn, entity, prepared, record_id, user)
            new_owner = row_owner if owner is None else owner
            if new_owner != row_owner:
                self._check_owner(conn, new_owner, scope, user, prepared)
            if event is not None and event.owner is not None:  # a rule assigned it
                new_owner = event.owner
            if new_owner != row_owner:
                prepared.changed.add("owner")
            self._refuse_if_invalid(entity, prepared, user, input_errors, row)
            flags = prepared.unseen or None
            if not prepared.changed and flags == (row_flags or None):
                return self._record(entity, row, user, prepared.values)
            title = self._title(entity, prepared.values, system)
            new_data = self._storage(entity, prepared.values)
            changed = prepared.changed
            keys = key_values(entity, new_data, only=changed)
            params = {
                "record_id": record_id, "seen_version": version, "new_data": new_data,
                "new_title": title, "new_version": version + 1, "new_updated_at": now,
                "new_updated_by": user.id, "new_flags": flags, **{f"new_{c}": v for c, v in keys.items()},
            }
            if new_owner != row_owner:
                params["new_owner"] = new_owner
            statement = _update_statement(tuple(keys), new_owner != row_owner)
            if conn.execute(statement, params).rowcount != 1:
                raise Conflict(Message("record.changed_while_saving", "{what} #{id} was changed while saving. "
                                       "Reload it and try again.", what=entity.label, id=record_id))
            if odd := tuple(name for name in misfits(entity, new_data) if name in changed):
                conn.execute(_refill_statement(entity, odd), {"record_id": record_id})
            conn.execute(journal.INSERT, journal.row(entity, record_id, version + 1, "updated", user, origin,
                                                     journal.changes(data, new_data, row_owner, new_owner), now))
            if consent_fields(entity) and (decisions := archive_rows(entity, record_id, title, data, new_data, user,
                                                                     origin, now)):
                conn.execute(CONSENT_INSERT, decisions)
            result = _Written(record_id, version + 1, title, new_owner, created_at, self._stored_moment(now),
                              created_by, user.id, deleted_at, flags)
            self._sync_links(conn, entity, record_id, prepared.values, stored)
            if _holds_files(entity):
                sync_file_links(conn, entity, record_id, prepared.values, stored, now)
            if self.listeners or event is not None:
                change = Change("updated", entity, record_id, stored, prepared.values, frozenset(prepared.changed),
                                user, origin)
                self._notify(conn, change)
                if event is not None:
                    self.hooks.after_write(conn, change, event)  # type: ignore[union-attr]  # event means hooks
        return self._record(entity, result, user, prepared.values)

    def delete(self, entity_name: str, record_id: int, user: Principal, *,
               expected_version: int | None = None, connection: sa.Connection | None = None,
               origin: Origin = API) -> None:
        """Soft-delete: the record leaves lists and lookups but stays restorable."""
        entity = self.entity(entity_name)
        now = self.clock.now()
        with self._transaction(connection) as conn:
            require(self.metadata, user, entity, "delete")  # refuse before reading anything
            row = self._visible_row(conn, entity, record_id, user, lock=True)
            self._require_in_scope(conn, entity, row, user, "delete")
            if expected_version is not None and row.version != expected_version:
                raise Conflict(Message("record.stale_delete",
                                       "{what} #{id} was changed by someone else; reload it first.",
                                       what=entity.label, id=record_id), current_version=row.version)
            stored = self._values(entity, row.data)
            # The version guard makes a delete lose to a save that landed after the read (SQLite takes no row lock).
            deleted = conn.execute(
                sa.update(records).where(records.c.id == record_id, records.c.version == row.version,
                                         records.c.deleted_at.is_(None))
                .values(deleted_at=now, version=row.version + 1, updated_at=now, updated_by=user.id)
            )
            if deleted.rowcount != 1:
                raise Conflict(Message("record.changed_while_deleting", "{what} #{id} was changed while deleting; "
                                       "reload it first.", what=entity.label, id=record_id))
            conn.execute(journal.INSERT, journal.row(entity, record_id, row.version + 1, "deleted", user, origin, {},
                                                     now))
            change = Change("deleted", entity, record_id, stored, None, frozenset(), user, origin)
            self._notify(conn, change)
            system = {"id": record_id, "owner": row.owner, "created_at": utc(row.created_at), "updated_at": now}
            event = self._event("deleted", entity, user, origin, stored, system, record_id)
            if event is not None:
                self.hooks.after_write(conn, change, event)  # type: ignore[union-attr]  # event means hooks

    def restore(self, entity_name: str, record_id: int, user: Principal, *,
                connection: sa.Connection | None = None, origin: Origin = API) -> Record:
        """Bring a record back from the trash under the same id, with its links and timeline as they were.

        Who may delete a record may restore it (within their scope). Refused while a unique value of it is held by
        a live record (someone entered it again meanwhile): the error names the field and that record.
        """
        entity = self.entity(entity_name)
        now = self.clock.now()
        with self._transaction(connection) as conn:
            require(self.metadata, user, entity, "delete")
            row = self._row(conn, entity, record_id, include_deleted=True)
            if not in_scope(conn, require(self.metadata, user, entity, "read"), user, row.owner):
                raise NotFound(not_found(entity, record_id))
            self._require_in_scope(conn, entity, row, user, "delete")
            if row.deleted_at is None:
                raise Conflict(Message("record.not_deleted", "{what} #{id} is not in the trash.",
                                       what=entity.label, id=record_id), current_version=row.version)
            stored = self._values(entity, row.data)
            self._refuse_taken_values(conn, entity, stored, record_id, user)
            restored = conn.execute(
                sa.update(records).where(records.c.id == record_id, records.c.version == row.version,
                                         records.c.deleted_at.is_not(None))
                .values(deleted_at=None, version=row.version + 1, updated_at=now, updated_by=user.id))
            if restored.rowcount != 1:
                raise Conflict(Message("record.changed_while_restoring", "{what} #{id} was changed while restoring; "
                                       "reload it first.", what=entity.label, id=record_id))
            conn.execute(journal.INSERT, journal.row(entity, record_id, row.version + 1, "restored", user, origin, {},
                                                     now))
            change = Change("restored", entity, record_id, None, stored, frozenset(stored), user, origin)
            self._notify(conn, change)
            system = {"id": record_id, "owner": row.owner, "created_at": utc(row.created_at), "updated_at": now}
            event = self._event("restored", entity, user, origin, None, system, record_id)
            if event is not None:
                self.hooks.after_write(conn, change, event)  # type: ignore[union-attr]  # event means hooks
            result = _Written(record_id, row.version + 1, row.title, row.owner, row.created_at,
                              self._stored_moment(now), row.created_by, user.id, None, row.flags)
        return self._record(entity, result, user, stored)

    def _refuse_taken_values(self, conn: sa.Connection, entity: EntityDef, stored: Mapping[str, Any], record_id: int,
                             user: Principal) -> None:
        """RecordValidationError when a unique value of the record is now another live record's."""
        query = QueryBuilder(entity, self.dialect, self.ctx, entity.fields)
        errors: dict[str, list[Any]] = {}
        for name, field in entity.fields.items():
            value = stored.get(name)
            if not field.unique or is_empty(value):
                continue
            other = conn.execute(sa.select(records.c.id).where(
                records.c.entity == entity.name, records.c.deleted_at.is_(None), records.c.id != record_id,
                query.column(name, field) == query.bind(field, value)).limit(1)).scalar()
            if other is not None:
                errors[name] = [self._unique_message(conn, entity, other, user)]
        if errors:
            raise RecordValidationError(errors, Message.counted(
                "record.restore_taken", "{what} #{id} cannot come back: {count} of its unique values is another "
                "record's now.", "{what} #{id} cannot come back: {count} of its unique values are other records' now.",
                what=entity.label, id=record_id, count=len(errors)))

    def validate(self, entity_name: str, values: Mapping[str, Any], user: Principal,
                 record_id: int | None = None) -> dict[str, list[str]]:
        """Every error a save of `values` would report, without saving anything.

        A save the user may not make at all raises PermissionDenied (or NotFound) first, as the save would.
        """
        entity = self.entity(entity_name)
        with reader(self.engine).connect() as conn:
            if record_id is None:
                require(self.metadata, user, entity, "create")
            else:
                self._require_in_scope(conn, entity, self._visible_row(conn, entity, record_id, user), user, "update")
            prepared = self._dry_run(conn, entity, values, user, record_id)
            self._check_lookups(conn, entity, prepared, record_id, user)
            self._hide_unseen(entity, prepared, user)
        return prepared.errors

    def _dry_run(self, conn: sa.Connection, entity: EntityDef, values: Mapping[str, Any], user: Principal,
                 record_id: int | None, row: Any = None, inferred: frozenset[str] = frozenset(),
                 stored: Mapping[str, Any] | None = None) -> Prepared:
        """The pure pipeline over the stored record (or a new one), as a save would run it; `stored`: the row's
        values when the caller has them already."""
        now = self.clock.now()
        system = {"id": record_id, "owner": user.id, "created_at": now, "updated_at": now}
        flagged: frozenset[str] = frozenset()
        if record_id is not None:
            row = row if row is not None else self._visible_row(conn, entity, record_id, user)
            stored = self._values(entity, row.data) if stored is None else stored
            system.update(owner=row.owner, created_at=utc(row.created_at))
            flagged = _flagged_checks(row.flags)
        return Pipeline(entity, self.clock, self.ctx).run(values, stored, user, system, flagged=flagged,
                                                          inferred=inferred)

    def evaluate(self, entity_name: str, values: Mapping[str, Any], user: Principal,
                 record_id: int | None = None, *, lookups: bool = False, for_update: bool = False,
                 inferred: frozenset[str] = frozenset(), preview: bool = False) -> FormState:
        """Compute formulas, conditions and errors for a form being edited, without saving.

        With `preview` the state names the rules saving these values would fire (a live form shows them).

        With `lookups` the database checks run too (unique values, references, files, which also
        gives kept files their names). With `for_update` a record outside the user's update scope is
        PermissionDenied: its form is for those who may change it. The state carries the record.
        """
        entity = self.entity(entity_name)
        if for_update:
            require(self.metadata, user, entity, "update")
        with reader(self.engine).connect() as conn:
            # One read: the version and saved values a form carries must be those its values came from.
            row = self._visible_row(conn, entity, record_id, user) if record_id is not None else None
            if for_update and row is not None:
                self._require_in_scope(conn, entity, row, user, "update")
            stored = None if row is None else self._values(entity, row.data)  # read once for the run and the form
            prepared = self._dry_run(conn, entity, values, user, record_id, row, inferred, stored)
            if lookups:
                self._check_lookups(conn, entity, prepared, record_id, user)
                self._hide_unseen(entity, prepared, user)
        state = self._form_state(entity, prepared, row, user, stored)
        if preview and self.hooks is not None and self.hooks.wants(entity, API):
            system = {"id": record_id, "owner": row.owner if row is not None else user.id,
                      "created_at": utc(row.created_at) if row is not None else self.clock.now(),
                      "updated_at": self.clock.now()}
            event = SaveEvent("updated" if row is not None else "created", entity, user, UI, stored, system,
                              prepared, record_id=record_id)
            state.rules = self.hooks.preview(event, frozenset(prepared.changed))
        return state

    def _form_state(self, entity: EntityDef, prepared: Prepared, row: sa.Row[Any] | None,
                    user: Principal, stored: Mapping[str, Any] | None = None) -> FormState:
        """What a form shows of one pipeline run, restricted to the fields the user may view (`stored`: the row's
        values when the caller has them already)."""
        visible = viewable_fields(entity, user)
        if stored is None and row is not None:
            stored = self._values(entity, row.data)
        return FormState(
            version=None if row is None else row.version,
            saved=None if stored is None else {n: v for n, v in stored.items() if n in visible},
            values={n: v for n, v in prepared.values.items() if n in visible},
            visible={n: v for n, v in prepared.visible.items() if n in visible},
            required={n: v for n, v in prepared.required.items() if n in visible},
            read_only={n: v for n, v in prepared.read_only.items() if n in visible},
            errors=prepared.errors,
            # The user's own layout's tabs and groups (CardForm shows only those they may see).
            sections=dict(prepared.sections),
            record=None if row is None else self._record(entity, row, user, stored),
        )

    def require_changeable(self, entity_name: str, record_id: int, user: Principal) -> None:
        """NotFound or PermissionDenied unless `user` may change the record (checked before storing uploads)."""
        entity = self.entity(entity_name)
        require(self.metadata, user, entity, "update")
        with reader(self.engine).connect() as conn:
            self._require_in_scope(conn, entity, self._visible_row(conn, entity, record_id, user), user, "update")

    def permissions(self, entity_name: str, records_: Iterable[Record], user: Principal
                    ) -> dict[int, RecordPermissions]:
        """What `user` may do with each of `records_` (ones they may read): change it, delete it."""
        entity = self.entity(entity_name)
        shown = list(records_)
        owners = {r.owner for r in shown}
        allowed: dict[str, set[Any]] = {}
        with reader(self.engine).connect() as conn:
            for action in ("update", "delete"):
                scope = scope_of(self.metadata, user, entity, action)
                allowed[action] = owners_in_scope(conn, scope, user, owners)
        return {r.id: RecordPermissions(update=r.owner in allowed["update"], delete=r.owner in allowed["delete"])
                for r in shown}

    # --- save helpers -------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, connection: sa.Connection | None) -> Iterator[sa.Connection]:
        """A transaction of our own, or a savepoint inside the caller's (import, rules)."""
        try:
            if connection is None:
                with self.engine.begin() as conn:
                    yield conn
            else:
                hold_transaction(connection)  # SQLite: the savepoint inside the caller's transaction, not its own
                with connection.begin_nested():
                    yield connection
        except sa.exc.IntegrityError as exc:
            raise self._unique_violation(exc) from None

    def _unique_violation(self, exc: sa.exc.IntegrityError) -> Exception:
        """Two saves raced past the uniqueness check: name the field, as the check would have."""
        message = str(exc.orig)
        for name, (plan, _field) in planned_indexes(self.metadata).items():
            if name in message:
                entity = self.metadata.entities[plan.entity]
                return RecordValidationError({plan.field: [Message(
                    "unique.race", "Must be unique: another {what} already has this value.", what=entity.label)]})
        return exc

    @staticmethod
    def _hide_unseen(entity: EntityDef, prepared: Prepared, user: Principal) -> None:
        """Turn problems with fields the user may not view into flags (the database checks find some too)."""
        prepared.hide_unseen(entity.fields.keys() - viewable_fields(entity, user))

    def _refuse_if_invalid(self, entity: EntityDef, prepared: Prepared, user: Principal,
                           input_errors: Mapping[str, list[str]] | None, row: sa.Row[Any] | None = None) -> None:
        """Refuse the save when anything is wrong, with the form state of this run (the caller's own input
        errors win over what the pipeline said of the same field)."""
        if not prepared.errors and not input_errors:  # the usual save: nothing to hide, nothing to refuse
            return
        self._hide_unseen(entity, prepared, user)
        for name, messages in (input_errors or {}).items():
            prepared.errors[name] = list(messages)
        if prepared.errors:
            raise RecordValidationError(prepared.errors, state=self._form_state(entity, prepared, row, user))

    def _storage(self, entity: EntityDef, values: Mapping[str, Any]) -> dict[str, Any]:
        # Empty values are left out (absent keys are NULL in SQL on both databases): is_empty, inlined.
        data = {name: value for name, value in values.items()
                if value is not None and not (not value and isinstance(value, str | list))}
        for name, multiple, convert in _writers(entity):  # the fields not stored as they are, lists copied
            value = data.get(name)
            if value is not None:
                data[name] = (list(value) if convert is None else [convert(v) for v in value]) if multiple \
                    else convert(value)  # type: ignore[misc]  # a single field is listed only with a converter
        return data

    def _stored_moment(self, moment: datetime) -> datetime:
        """`moment` as a timestamp column gives it back: SQLite keeps its wall-clock time (SQLAlchemy's SQLite
        DateTime drops the offset), PostgreSQL's timestamptz the instant (`_utc` makes both UTC)."""
        return moment.replace(tzinfo=None) if self.dialect == "sqlite" else moment

    def _title(self, entity: EntityDef, values: Mapping[str, Any], system: Mapping[str, Any]) -> str:
        def fmt(name: str, value: Any) -> str:
            field = entity.fields.get(name)
            if field is None:  # a system value (id, owner, created_at...)
                return plain_title(value)
            return field.value_type.title_text(value, field)

        # The values the title reads (a field's over a system value of the same name), not a copy of all of them.
        shown = {n: values[n] if n in values else system[n] for n in _title_names(entity) if n in values or n in system}
        title = entity.title.render(shown, fmt)
        return title[:TITLE_LENGTH] if title else f"{entity.label} (new)"

    def _check_lookups(self, conn: sa.Connection, entity: EntityDef, prepared: Prepared,
                       record_id: int | None, user: Principal) -> None:
        """Database checks: unique values, referenced records, users and files exist."""
        looked_up = _looked_up(entity)
        if not looked_up:
            return
        query = QueryBuilder(entity, self.dialect, self.ctx, entity.fields)
        for name, field in looked_up:
            value: Any = prepared.values.get(name)  # a list when the field is multiple
            if is_empty(value) or name in prepared.errors:
                continue
            if field.unique and name in prepared.changed:
                clause = sa.and_(records.c.entity == entity.name, records.c.deleted_at.is_(None),
                                 query.column(name, field) == query.bind(field, value))
                if record_id is not None:
                    clause = sa.and_(clause, records.c.id != record_id)
                other = conn.execute(sa.select(records.c.id).where(clause).limit(1)).scalar()
                if other is not None:
                    prepared.error(name, self._unique_message(conn, entity, other, user))
            if name not in prepared.changed:
                continue
            items: list[Any] = value if field.multiple else [value]
            if field.type.refers == "record":
                self._check_references(conn, field.to or "", items, name, prepared, user)
            elif field.type.refers == "user":
                for item in items:
                    self._check_user(conn, item, name, prepared)
            elif field.type.holds_files:
                prepared.values[name] = self._resolve_files(conn, entity, field, items, name, prepared, record_id,
                                                          user)

    def _unique_message(self, conn: sa.Connection, entity: EntityDef, other: int, user: Principal) -> Message:
        """Why a unique value is refused: the record holding it by its title, if the user may read it.

        A record outside the user's read scope does not exist for them: they learn only that the value
        is taken, never which record has it.
        """
        readable = readable_where(self.metadata, user, entity)
        title = None if readable is None else conn.execute(
            sa.select(records.c.title).where(records.c.id == other, *readable)).scalar()
        if title is None:
            return Message("unique.hidden", "Must be unique: this value is already used.")
        return Message("unique", "Must be unique: {what} #{id} '{title}' already has this value.", what=entity.label,
                       id=other, title=title)

    def _check_references(self, conn: sa.Connection, target: str, ids: Iterable[int], name: str,
                          prepared: Prepared, user: Principal) -> None:
        """Referenced records must exist and lie within the user's read scope (else: no such record)."""
        wanted = set(ids)
        target_entity = self.metadata.entities.get(target)
        readable = readable_where(self.metadata, user, target_entity) if target_entity is not None else None
        found: set[int] = set() if readable is None else set(
            conn.execute(sa.select(records.c.id).where(records.c.id.in_(wanted), *readable)).scalars())
        for missing in sorted(wanted - found):
            label = self.metadata.entities[target].label if target in self.metadata.entities else target
            prepared.error(name, Message("reference.missing", "There is no {what} with id {id}.", what=label,
                                         id=missing))

    def _check_owner(self, conn: sa.Connection, owner: int, scope: str, user: Principal,
                     prepared: Prepared) -> None:
        """The new owner must be an active user the scope lets this user assign records to."""
        self._check_user(conn, owner, "owner", prepared)
        if "owner" not in prepared.errors and not in_scope(conn, scope, user, owner):
            prepared.error("owner", owner_message(scope, user))

    def _check_user(self, conn: sa.Connection, user_id: int, name: str, prepared: Prepared) -> None:
        exists = conn.execute(sa.select(users.c.id).where(users.c.id == user_id, users.c.is_active)).scalar()
        if exists is None:
            prepared.error(name, Message("user.missing", "There is no active user with id {id}.", id=user_id))

    def _resolve_files(self, conn: sa.Connection, entity: EntityDef, field: FieldDef, items: list[dict[str, Any]],
                       name: str, prepared: Prepared, record_id: int | None, user: Principal) -> Any:
        """File values as stored: each file must exist and be the user's to attach (else: no such file)."""
        wanted = {item["id"] for item in items}
        # Files this record holds in fields the user may view are theirs to keep or move; one held in a
        # field hidden from them is not (copying its id into a visible field would be a way to read it).
        shown = [] if record_id is None else [
            f.name for f in entity.file_fields if f.name in viewable_fields(entity, user)]
        held: set[str] = set() if not shown else set(conn.execute(
            sa.select(file_links.c.file_id).where(file_links.c.record_id == record_id,
                                                  file_links.c.field.in_(shown))).scalars())
        # Attaching a file someone else uploaded to a record of one's own would be a way to read it.
        allowed = held | readable_files(conn, self.metadata, user, wanted - held)
        resolved = []
        for item in items:
            row = conn.execute(sa.select(files).where(files.c.id == item["id"])).first() \
                if item["id"] in allowed else None
            if row is None:
                prepared.error(name, Message("file.missing", "There is no uploaded file with id {id}.", id=item["id"]))
                continue
            for problem in (too_large(field, row.name, row.size), accepted_type(field, row.name, row.content_type)):
                if problem is not None:
                    prepared.error(name, problem)
            resolved.append({"id": row.id, "name": row.name, "size": row.size, "content_type": row.content_type})
        return resolved if field.multiple else (resolved[0] if resolved else None)

    def _sync_links(self, conn: sa.Connection, entity: EntityDef, record_id: int,
                    values: Mapping[str, Any], before: Mapping[str, Any] | None) -> None:
        for field in _references(entity):
            new = set(ids_in(values.get(field.name)))
            old = set(ids_in(before.get(field.name))) if before is not None else set()
            if new == old:
                continue
            if old - new:
                conn.execute(sa.delete(record_links).where(
                    record_links.c.source_id == record_id, record_links.c.field == field.name,
                    record_links.c.target_id.in_(old - new)))
            if new - old:
                conn.execute(sa.insert(record_links), [
                    {"source_id": record_id, "field": field.name, "target_id": t, "source_entity": entity.name}
                    for t in sorted(new - old)])

    def _event(self, kind: str, entity: EntityDef, user: Principal, origin: Origin, stored: Mapping[str, Any] | None,
               system: Mapping[str, Any], record_id: int | None = None, *,
               conn: sa.Connection | None = None) -> SaveEvent | None:
        """The event the hooks see, or None when they want nothing of this save (no rules, automation off)."""
        hooks = self.hooks
        if hooks is None or not hooks.wants(entity, origin):
            return None
        return SaveEvent(kind, entity, user, origin, stored, system, record_id=record_id, conn=conn)

    def _before_save(self, event: SaveEvent | None) -> Callable[[Prepared], None] | None:
        """The pipeline's before-save stage for `event` (None: nothing to run)."""
        if event is None:
            return None
        hooks = self.hooks
        if hooks is None:  # an event is made only when there are hooks
            return None

        def before_save(prepared: Prepared) -> None:
            event.prepared = prepared
            hooks.before_save(event)

        return before_save

    def _notify(self, conn: sa.Connection, change: Change) -> None:
        for listener in self.listeners:
            listener(change, conn)

    # --- reading many -------------------------------------------------------------------------------

    def list(self, entity_name: str, user: Principal, query: ListQuery, *, with_total: bool = False) -> Page:
        """One page of live records, filtered and sorted by fields the user can see."""
        entity = self.entity(entity_name)
        require(self.metadata, user, entity, "read")  # refuse before looking at the query
        visible = viewable_fields(entity, user)
        builder = QueryBuilder(entity, self.dialect, self.ctx, visible, self.key_columns(entity))
        limit = clamp_limit(query.limit)
        sort = query.sort or entity.list.sort
        _, _, sort_field, sort_column = builder.sort_key(sort)
        bound = self._bound_list(entity, user, query, builder, sort)
        with reader(self.engine).connect() as conn:
            if bound is not None:  # statements built once per shape of list, its values bound
                shape, params = bound
                params["limit"] = limit + 1
                rows = conn.execute(_list_statement(shape), params).all()
                total = conn.execute(_count_statement(shape[:3]), params).scalar() if with_total else None
            else:
                where = self.list_where(entity, user, query, builder)
                page_where = list(where)
                if query.cursor:
                    page_where.append(builder.after(sort, query.cursor))
                sort_kind = None if sort_field is None else sort_field.value_type.storage
                statement = (sa.select(*RECORD_COLUMNS, _sort_value(sort_column, sort_kind)).where(*page_where)
                             .order_by(*builder.order_by(sort)).limit(limit + 1))
                rows = conn.execute(statement).all()
                total = conn.execute(sa.select(sa.func.count()).select_from(records).where(*where)).scalar() \
                    if with_total else None
        items = tuple([_stored_record(entity, row, visible) for row in rows[:limit]])
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(sort, last.sort_value, last.id)
        return Page(items, next_cursor, total, sort)

    def _bound_list(self, entity: EntityDef, user: Principal, query: ListQuery, builder: QueryBuilder, sort: str
                    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        """(shape, values) of the list `query` as `_list_statement` builds it once per shape, or None when a filter
        or the search is built only by `list_where` (whose statement is then built for this call alone).

        The same clauses as `list_where` and `QueryBuilder.after`, refused alike and in the same order.
        """
        shape = readable_shape(self.metadata, user, entity)
        if shape is None or (query.search and query.search.strip()):
            return None
        filters = []
        params: dict[str, Any] = dict(shape.params)
        for number, flt in enumerate(query.filters):
            found = builder.bound_filter(flt, f"filter_{number}")
            if found is None:
                return None
            filters.append(found[0])
            params.update(found[1])
        cursor = None
        if query.cursor:
            cursor, values = builder.bound_after(sort, query.cursor)
            params.update(values)
        name, descending, field, _ = builder.sort_key(sort)
        sort_shape = (name, descending, None if field is None else field.value_type.storage, builder.key(field))
        return (shape.entity, shape.kind, tuple(filters), sort_shape, cursor), params

    def list_where(self, entity: EntityDef, user: Principal, query: ListQuery,
                   builder: QueryBuilder) -> builtins.list[sa.ColumnElement[bool]]:
        """The WHERE clauses of a list (entity, live, read scope, filters, search), without its cursor.

        Anything that counts or aggregates "the records of this list" builds on these clauses.
        """
        require(self.metadata, user, entity, "read")
        where = readable_where(self.metadata, user, entity) or [sa.false()]
        where += [builder.filter_clause(f) for f in query.filters]
        if query.search and query.search.strip():
            where.append(builder.search_clause(query.search))
        return where

    def referencing(self, entity_name: str, record_id: int, user: Principal
                    ) -> dict[tuple[str, str], builtins.list[int]]:
        """Live records that point at this one, by (entity, field): company → its deals and contacts."""
        self.get(entity_name, record_id, user)
        readable = []
        for entity in self.metadata.entities.values():
            where = readable_where(self.metadata, user, entity) if entity.reference_fields else None
            if where is not None:
                readable.append(sa.and_(*where))
        if not readable:
            return {}
        query = (sa.select(record_links.c.source_entity, record_links.c.field, record_links.c.source_id)
                 .join(records, records.c.id == record_links.c.source_id)
                 .where(record_links.c.target_id == record_id, records.c.deleted_at.is_(None), sa.or_(*readable))
                 .order_by(record_links.c.source_id))
        result: dict[tuple[str, str], builtins.list[int]] = {}
        with reader(self.engine).connect() as conn:
            for row in conn.execute(query):  # by name: a Row's unpacked items are typed `object`
                source = self.metadata.entities.get(row.source_entity)
                if source is not None and row.field in viewable_fields(source, user):
                    result.setdefault((row.source_entity, row.field), []).append(row.source_id)
        return result


def _bound_where(entity_name: str, kind: str, filters: tuple[Any, ...]) -> list[sa.ColumnElement[bool]]:
    """The readable records of a list's shape that pass its filters, every value a bound parameter."""
    return [*bound_readable_where(entity_name, kind),
            *(bound_filter_clause(f, f"filter_{number}") for number, f in enumerate(filters))]


@lru_cache(maxsize=1024)
def _count_statement(shape: tuple[Any, ...]) -> sa.Select[Any]:
    """The total of a list of this shape, (entity, scope kind, filters) of `RecordService._bound_list`'s."""
    return sa.select(sa.func.count()).select_from(records).where(*_bound_where(*shape))


# A number field's sort value as the next page's cursor holds it: SQLAlchemy's Numeric turns SQLite's doubles into
# Decimals of 10 places (1E-12 -> 0E-10), and a cursor holding 0 for 1E-12 gave the same page again and again.
_SORT_NUMBER = sa.Numeric().with_variant(sa.Float(), "sqlite")


def _sort_value(column: sa.ColumnElement[Any], kind: str | None) -> sa.ColumnElement[Any]:
    """The sort column read as the row's `sort_value`, exactly (see _SORT_NUMBER)."""
    return (sa.type_coerce(column, _SORT_NUMBER) if kind == "number" else column).label("sort_value")


@lru_cache(maxsize=1024)
def _list_statement(shape: tuple[Any, ...]) -> sa.Select[Any]:
    """A page of a list of this shape (see `RecordService._bound_list`), built once: its values, the limit among
    them, are bound parameters. The statement `list` otherwise builds per call."""
    entity_name, kind, filters, (name, descending, sort_kind, sort_key), cursor = shape
    column = SYSTEM_COLUMNS[name][1] if sort_kind is None else _field_value(name, sort_kind, sort_key)
    where = _bound_where(entity_name, kind, filters)
    if cursor is not None:
        where.append(bound_after_clause(cursor))
    return (sa.select(*RECORD_COLUMNS, _sort_value(column, sort_kind)).where(*where)
            .order_by(*_order_by(name, descending, sort_kind, sort_key))
            .limit(sa.bindparam("limit", type_=sa.Integer())))


# (names of the fields read, (name, multiple, read) of those whose stored value is not the value itself).
_Readers = tuple[tuple[str, ...], tuple[tuple[str, bool, Callable[[Any], Any] | None], ...]]


@lru_cache(maxsize=1024)
def _readers(entity: EntityDef, visible: frozenset[str] | None) -> _Readers:
    """The entity's fields (the `visible` ones) in order, and (name, multiple, read) of those a stored value needs
    converting for: read(stored) is the field's from_storage (None for a multiple field whose items are stored as
    they are: its list is copied). Text, numbers, selects... are their stored JSON value: reading calls nothing."""
    names = tuple(name for name in entity.fields if visible is None or name in visible)
    converted = []
    for name in names:
        field = entity.fields[name]
        read = _reader(field)
        if read is not None or field.multiple:
            converted.append((name, field.multiple, read))
    return names, tuple(converted)


def _reader(field: FieldDef) -> Callable[[Any], Any] | None:
    """The field's from_storage as a function of the stored value alone; None when it is the identity."""
    value_type = field.value_type
    kind = type(value_type)
    if kind.from_storage is FieldType.from_storage:
        return None
    if isinstance(value_type, DecimalType) and kind.from_storage is DecimalType.from_storage \
            and type(value_type).places is DecimalType.places:
        places = value_type.places(field)
        if places is not None:
            # DecimalType.from_storage with its places worked out once (a listed row reads three amounts or more).
            quantum = Decimal(1).scaleb(-places)

            def read_decimal(stored: Any) -> Decimal:
                return (Decimal(repr(stored)) if isinstance(stored, float) else Decimal(stored)).quantize(quantum)

            return read_decimal
    from_storage = value_type.from_storage
    return lambda stored: from_storage(stored, field)


def _typed(readers: _Readers, data: Mapping[str, Any]) -> dict[str, Any]:
    """The typed values of the fields `readers` names (None when not stored), in the fields' order."""
    names, converted = readers
    get = data.get
    values = {name: get(name) for name in names}
    for name, multiple, read in converted:
        stored = values[name]
        if stored is None:
            continue
        if multiple:
            values[name] = list(stored) if read is None else [read(v) for v in stored]
        else:
            values[name] = read(stored)  # type: ignore[misc]  # a single field is converted only with a reader
    return values


# The columns of `records` in the order a row of select(*RECORD_COLUMNS) holds them: a listed row is read by position
# (a Row's attribute access by name cost about 0.3 µs per column, 3 µs of a row's 13).
_COLUMNS = ("id", "entity", "data", "title", "owner", "version", "created_at", "updated_at", "created_by",
            "updated_by", "deleted_at", "flags")
if tuple(c.name for c in RECORD_COLUMNS) != _COLUMNS:  # pragma: no cover - guards the unpacking below
    raise RuntimeError(f"records' columns changed: {[c.name for c in RECORD_COLUMNS]}; update _COLUMNS and "
                       "_stored_record")
_WIDTH = len(_COLUMNS)


def _stored_record(entity: EntityDef, row: sa.Row[Any], visible: frozenset[str]) -> Record:
    """The Record of a row of select(records, ...) with the values of the `visible` fields."""
    (record_id, _entity, data, title, owner, version, created_at, updated_at, created_by, updated_by, deleted_at,
     flags) = row[:_WIDTH]
    created = utc(created_at)
    return Record(
        id=record_id, entity=entity.name, version=version, title=title,
        values=_typed(_readers(entity, visible), data), owner=owner, created_at=created,
        updated_at=created if updated_at is created_at else utc(updated_at), created_by=created_by,
        updated_by=updated_by, deleted_at=None if deleted_at is None else utc(deleted_at),
        attention=attention(entity, flags, visible) if flags else (),
    )


@lru_cache(maxsize=1024)
def _writers(entity: EntityDef) -> tuple[tuple[str, bool, Callable[[Any], Any] | None], ...]:
    """(name, multiple, to_storage) of the entity's fields whose value is not stored as it is (to_storage is None for a
    multiple field whose items are: its list is copied); text, integers, selects... are stored as they are, so
    writing a record calls nothing for those."""
    writers = []
    for name, field in entity.fields.items():
        value_type = field.value_type
        identity = type(value_type).to_storage is FieldType.to_storage
        if field.multiple or not identity:
            writers.append((name, field.multiple, None if identity else value_type.to_storage))
    return tuple(writers)


# Per entity, built once: which fields a save must look up or link (EntityDef's own properties build a new
# tuple on every call, and most cards have few such fields or none).
@lru_cache(maxsize=1024)
def _looked_up(entity: EntityDef) -> tuple[tuple[str, FieldDef], ...]:
    """The fields `_check_lookups` has work for: unique ones, references, users and files."""
    return tuple((name, f) for name, f in entity.fields.items()
                 if f.unique or f.type.refers in ("record", "user") or f.type.holds_files)


@lru_cache(maxsize=1024)
def _title_reads_id(entity: EntityDef) -> bool:
    return "id" in entity.title.names


@lru_cache(maxsize=1024)
def _title_names(entity: EntityDef) -> frozenset[str]:
    return entity.title.names


@lru_cache(maxsize=1024)
def _references(entity: EntityDef) -> tuple[FieldDef, ...]:
    return entity.reference_fields


@lru_cache(maxsize=1024)
def _holds_files(entity: EntityDef) -> bool:
    return bool(entity.file_fields)


def not_found(entity: EntityDef, record_id: int) -> Message:
    """A record that does not exist, or that the user may not read (which is the same to them)."""
    return Message("record.not_found", "There is no {what} with id {id}.", what=entity.label, id=record_id)


def attention(entity: EntityDef, flags: Any, visible: frozenset[str]) -> tuple[Attention, ...]:
    """The record's flags that a reader who sees `visible` may know of, with their messages (by code)."""
    if not flags:
        return ()
    checks = {v.key: v for v in entity.validations}
    found = []
    for flag in flags:
        field = flag.get("field") if isinstance(flag, dict) else None
        field = field if field in entity.fields else None
        if field is not None and field not in visible:
            continue
        if "check" in flag:
            check = checks.get(flag["check"])
            if check is None or not (check.expr.names & entity.fields.keys()) <= visible:
                continue  # a check the metadata no longer has, or one over fields this reader cannot see
            found.append(Attention(field, Message("validation.failed", "{label}", label=check.message)))
        elif field is not None and isinstance(flag.get("message"), str):
            found.append(Attention(field, message_from_stored(flag)))
    return tuple(found)


def _flagged_checks(flags: Any) -> frozenset[str]:
    """The keys of the checks a stored record is flagged for."""
    return frozenset(f["check"] for f in flags or () if isinstance(f, dict) and isinstance(f.get("check"), str))


__all__ = ["SYSTEM", "Change", "RecordService"]
