"""Expression indexes derived from metadata: `indexed`/`unique` fields, kept in step with the config."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from kartoteka.errors import IndexBuildError
from kartoteka.metadata.model import EntityDef, FieldDef, Metadata
from kartoteka.storage.duplicate_keys import duplicate_indexes
from kartoteka.storage.json_sql import JsonValue
from kartoteka.storage.keys import key_columns
from kartoteka.storage.statistics import refresh_statistics
from kartoteka.storage.tables import records

# kix_: plain indexes of earlier versions (on every row of the entity, deleted ones too); found to be dropped.
# klx_/kux_: on a field's JSON expression; kkx_: on the key column holding the field's value (storage/keys.py);
# kox_: an entity's records by owner with their key columns (owner_indexes); kdx_: what duplicates rules look up
# (storage/duplicate_keys.py).
PREFIXES = ("kix_", "klx_", "kux_", "kkx_", "kox_", "kdx_")


@dataclass(frozen=True)
class IndexPlan:
    """One index the metadata asks for: on the field's key column when it has one, else on its JSON expression."""

    name: str
    entity: str
    field: str
    unique: bool
    column: str | None = None

    def build(self, field: FieldDef) -> sa.Index:
        """The SQLAlchemy Index: partial on the entity's live rows (what lists, counts and unique checks read)."""
        expr = records.c[self.column] if self.column else JsonValue(records.c.data, field.name, storage_kind(field))
        # Live rows only: a count over a filtered list then reads the index alone, not each row's deleted_at
        # (SQLite, 2,500 of 10,000 deals: 0.35 ms against 1.3).
        where = _entity_rows(self.entity, live=True)
        if self.unique:
            return sa.Index(self.name, expr, unique=True, postgresql_where=where, sqlite_where=where)
        return sa.Index(self.name, expr, records.c.id, postgresql_where=where, sqlite_where=where)

    def fill(self, field: FieldDef) -> sa.Update:
        """The key column's values of every record of the entity (deleted ones too), from their JSON."""
        if self.column is None:
            raise ValueError(f"index {self.name} is not on a key column")
        value = JsonValue(records.c.data, field.name, storage_kind(field))
        return sa.update(records).where(_entity_rows(self.entity, live=False)).values({self.column: value})


def _entity_rows(entity: str, *, live: bool) -> sa.ColumnElement[bool]:
    # The entity as a literal, as lists write it: the planner matches a partial index's WHERE only so.
    same = records.c.entity == sa.literal(entity, literal_execute=True)
    return sa.and_(same, records.c.deleted_at.is_(None)) if live else same


def storage_kind(field: FieldDef) -> str:
    """How the field's value is compared in SQL: text, number, boolean or json."""
    return field.value_type.storage


def index_name(prefix: str, entity: str, field: str) -> str:
    """A name within PostgreSQL's 63 characters, stable for the same entity and field."""
    name = f"{prefix}{entity}__{field}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:10]
    return f"{name[:52]}_{digest}"


def planned_indexes(metadata: Metadata) -> dict[str, tuple[IndexPlan, FieldDef]]:
    """Every index the metadata asks for, by name."""
    plans: dict[str, tuple[IndexPlan, FieldDef]] = {}
    for entity in metadata.entities.values():
        keys = key_columns(entity)
        for field in _indexed(entity):
            column = keys.get(field.name)
            if column is not None:
                # The column is part of the name: a field given another column gets a new index, and that column
                # is filled for it (sync_indexes).
                plan = IndexPlan(index_name("kkx_", entity.name, f"{field.name}__{column}"), entity.name, field.name,
                                 unique=False, column=column)
            else:
                prefix = "kux_" if field.unique else "klx_"
                # The kind is part of the name so that a changed field type rebuilds its index.
                name = index_name(prefix, entity.name, f"{field.name}__{storage_kind(field)[0]}")
                plan = IndexPlan(name, entity.name, field.name, field.unique)
            plans[plan.name] = (plan, field)
    return plans


def owner_indexes(metadata: Metadata) -> dict[str, sa.Index]:
    """Per entity that some role reads in an own or department scope: its live records by owner, with their key
    columns, by name.

    Such a role's lists and counts read the records of one owner (or a department's owners) among every other's.
    Without this index they found them by an (entity, owner) index and read each row for its filter (PostgreSQL,
    a sales rep's capped count over 10,000 of 100,000 deals: 11-20 ms, 6,000 heap pages); with it the index answers
    the owner and the filters on key columns alone (an index-only scan on PostgreSQL, a covering index on SQLite).
    The columns are part of the name: when the entity's key columns change the index is rebuilt. The entity comes
    second though every row of the index has the same: SQLite prefers an index whose leading columns the query
    pins down by equality, as it does not weigh a covering index's saving otherwise (a rep's capped count, 10,000
    deals: 0.08 ms against 0.84 by (entity, owner)).
    """
    roles = metadata.permissions.grants.keys()
    indexes = {}
    for entity in metadata.entities.values():
        columns = _owner_key_columns(entity)
        scopes = {metadata.permissions.scope([role], entity.name, "read") for role in roles}
        if not scopes & {"own", "department"}:
            continue
        name = index_name("kox_", entity.name, "_".join(("owner", "entity", *columns)))
        where = _entity_rows(entity.name, live=True)
        indexes[name] = sa.Index(name, records.c.owner, records.c.entity, *(records.c[c] for c in columns),
                                 records.c.id, postgresql_where=where, sqlite_where=where)
    return indexes


# What the key columns of one owner index entry may take together: PostgreSQL refuses a btree entry over 2,704
# bytes, and the owner, entity and id take some.
OWNER_KEY_BYTES = 2000


def _owner_key_columns(entity: EntityDef) -> tuple[str, ...]:
    """The key columns an owner index holds: those of fields whose values are bounded (numbers, selects, dates, texts
    with a max_length), in declaration order, as long as they fit OWNER_KEY_BYTES together. A text without a bound
    stays in its own index alone: one entry of a long text and its neighbours would overflow a btree entry."""
    columns, budget = [], OWNER_KEY_BYTES
    for name, column in key_columns(entity).items():
        field = entity.fields[name]
        size = field.value_type.key_bytes(field)
        if size is not None and size <= budget:
            columns.append(column)
            budget -= size
    return tuple(columns)


def _indexed(entity: EntityDef) -> Iterable[FieldDef]:
    return (f for f in entity.indexed_fields if storage_kind(f) != "json")


def filled_key_columns(connection: sa.Connection, metadata: Metadata) -> dict[str, dict[str, str]]:
    """Per entity, its fields' key columns (storage/keys.py) whose index exists: the sync filled them."""
    existing = existing_indexes(connection)
    filled: dict[str, dict[str, str]] = {}
    for name, (plan, _field) in planned_indexes(metadata).items():
        if plan.column is not None and name in existing:
            filled.setdefault(plan.entity, {})[plan.field] = plan.column
    return filled


def existing_indexes(connection: sa.Connection) -> set[str]:
    """Names of the metadata-driven indexes on the records table."""
    if connection.dialect.name == "postgresql":
        catalog = sa.table("pg_indexes", sa.column("indexname"), sa.column("tablename"), sa.column("schemaname"))
        query = sa.select(catalog.c.indexname).where(
            catalog.c.tablename == "records", catalog.c.schemaname == sa.func.current_schema()
        )
    else:
        catalog = sa.table("sqlite_master", sa.column("name"), sa.column("type"), sa.column("tbl_name"))
        query = sa.select(catalog.c.name).where(catalog.c.type == "index", catalog.c.tbl_name == "records")
    return {name for (name,) in connection.execute(query) if name.startswith(PREFIXES)}


def planned_statistics(metadata: Metadata) -> dict[str, str]:
    """PostgreSQL statistics objects on the indexed JSON expressions, by name.

    The metadata indexes are partial (one entity each) and PostgreSQL keeps no statistics for partial
    expression indexes, so without these it guesses selectivity and may read every matching row and
    sort instead of walking the sort index (measured in bench/: 7.6 ms vs 0.5 ms per page).
    """
    dialect = postgresql.dialect()
    plans = {}
    for plan, field in planned_indexes(metadata).values():
        if plan.column is not None:
            # A key column holds several cards' fields: its values depend on the entity.
            plans[f"kst_key__{plan.column}"] = f"entity, {plan.column}"
            continue
        kind = storage_kind(field)
        expression = JsonValue(sa.column("data"), plan.field, kind).compile(dialect=dialect)
        plans[f"kst_{plan.field}__{kind[0]}"] = str(expression)
    return plans


def _sync_statistics(engine: sa.Engine, metadata: Metadata) -> None:
    if engine.dialect.name != "postgresql" or (engine.dialect.server_version_info or (0,)) < (14,):
        return
    wanted = planned_statistics(metadata)
    with engine.begin() as connection:
        existing = set(connection.execute(sa.text(
            "SELECT stxname FROM pg_statistic_ext WHERE stxrelid = 'records'::regclass AND stxname LIKE 'kst\\_%'"
        )).scalars())
        for name in sorted(existing - wanted.keys()):
            connection.execute(sa.text(f'DROP STATISTICS IF EXISTS "{name}"'))
        for name in sorted(wanted.keys() - existing):
            # Both parts are generated from checked field names (see JsonValue), never from input.
            connection.execute(sa.text(f'CREATE STATISTICS IF NOT EXISTS "{name}" ON {wanted[name]} FROM records'))
        if wanted.keys() - existing:
            connection.execute(sa.text("ANALYZE records"))


def sync_indexes(engine: sa.Engine, metadata: Metadata) -> tuple[list[str], list[str]]:
    """Create missing and drop obsolete metadata indexes, filling the key columns they are on; returns (created,
    dropped) names.

    A unique index that cannot be built because stored values already repeat raises IntegrityError
    naming the index; the data must be cleaned up first.
    """
    plans = planned_indexes(metadata)
    by_owner = owner_indexes(metadata)
    by_duplicates = duplicate_indexes(metadata, engine.dialect.name)
    created, dropped = [], []
    with engine.begin() as connection:
        existing = existing_indexes(connection)
        for name in sorted(existing - plans.keys() - by_owner.keys() - by_duplicates.keys()):
            connection.execute(sa.schema.DropIndex(sa.Index(name)))
            dropped.append(name)
    failures = []
    for name, (plan, field) in sorted(plans.items()):
        if name in existing:
            continue
        try:
            with engine.begin() as connection:
                if plan.column is not None:  # the column's values first, in the same transaction: never an index
                    connection.execute(plan.fill(field))  # over a column not yet filled
                # IF NOT EXISTS: another process starting on the same database (a second worker, a command beside
                # a running app) may have built it since `existing` was read; that is no failure.
                connection.execute(sa.schema.CreateIndex(plan.build(field), if_not_exists=True))
        except sa.exc.DBAPIError as exc:
            reason = ("some live records share a value" if plan.unique and isinstance(exc, sa.exc.IntegrityError)
                      else f"stored values do not fit a {field.value_type.name} field")
            detail = str(exc.orig).strip().splitlines()[0]
            failures.append(f"{plan.entity}.{plan.field}: cannot build index {name}: {reason} ({detail}). "
                            "Fix those records, or the field's type or unique flag, and run `kartoteka init` again.")
            continue
        created.append(name)
    for name, index in sorted([*by_owner.items(), *by_duplicates.items()]):  # owners': after their key columns
        if name not in existing:
            with engine.begin() as connection:
                connection.execute(sa.schema.CreateIndex(index, if_not_exists=True))
            created.append(name)
    _sync_statistics(engine, metadata)
    refresh_statistics(engine, force=bool(created))  # SQLite: new indexes have none yet
    if failures:
        raise IndexBuildError("\n".join(failures))
    return created, dropped
