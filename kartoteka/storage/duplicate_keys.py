"""The indexes that let a card's `duplicates:` rules find records by equal values without reading them all.

A rule's field that is `indexed` or `unique` already has its index (a key column, or a JSON expression; see
storage/indexes.py), which the finder reads as lists do. Any other single-valued field a rule looks records up by gets
`kdx_<entity>__<field>__<kind>`: its JSON expression, as `indexed: true` would build it, but without giving it a key
column (a rule's field is not a list's filter). A field of several values (phones, e-mails) cannot be indexed by an
expression over one value:

- PostgreSQL: a GIN index on the field's array, `kdx_<entity>__<field>__g`, which `@>` (the array holds this value)
  reads;
- SQLite: one index per position of the first `POSITIONS` items (`json_extract(data, '$.phones[0]')`, `[1]`, `[2]`:
  `kdx_<entity>__<field>__0`...), and one by the number of items (`__len`), through which the few records holding more
  are found and their items read one by one. Most people have one to three phones.

Every index is partial on the entity's live records, as the others are.
"""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from kartoteka.metadata.model import EntityDef, FieldDef, Metadata
from kartoteka.storage.json_sql import JsonValue
from kartoteka.storage.tables import records

PREFIX = "kdx_"
# SQLite: the items of a list field indexed by their position; a record holding more is found through `__len`.
POSITIONS = 3


class JsonItem(ColumnElement[Any]):
    """The text of item `position` of the JSON array under `key` (SQLite), as its position index has it."""

    inherit_cache = True
    type = sa.String()
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("key", InternalTraversal.dp_string),
        ("position", InternalTraversal.dp_plain_obj),
    ]

    def __init__(self, column: ColumnElement[Any], key: str, position: int) -> None:
        self.column = column
        self.key = JsonValue(column, key).key  # checked as a field name
        self.position = int(position)


@compiles(JsonItem, "sqlite")
def _sqlite_item(element: JsonItem, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    return f"json_extract({column}, '$.{element.key}[{element.position}]')"


class JsonLength(ColumnElement[Any]):
    """How many items the JSON array under `key` holds (SQLite; 0 when absent)."""

    inherit_cache = True
    type = sa.Integer()
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("key", InternalTraversal.dp_string),
    ]

    def __init__(self, column: ColumnElement[Any], key: str) -> None:
        self.column = column
        self.key = JsonValue(column, key).key


@compiles(JsonLength, "sqlite")
def _sqlite_length(element: JsonLength, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    return f"json_array_length({column}, '$.{element.key}')"


def more_items(key: str) -> sa.ColumnElement[bool]:
    """SQLite: the records holding more items under `key` than the position indexes cover (a range of the `__len`
    index). The number is a literal, which the planner weighs against the index's statistics."""
    return JsonLength(records.c.data, key) > sa.literal(POSITIONS, literal_execute=True)


def live_rows(entity: str) -> list[sa.ColumnElement[bool]]:
    """The entity's live records, the entity written as a literal (as the partial indexes' WHERE has it)."""
    return [records.c.entity == sa.literal(entity, literal_execute=True), records.c.deleted_at.is_(None)]


def _name(entity: str, field: str, suffix: str) -> str:
    name = f"{PREFIX}{entity}__{field}__{suffix}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:10]
    return f"{name[:52]}_{digest}"


def _has_index(entity: EntityDef, field: FieldDef) -> bool:
    """True when storage/indexes.py builds the field an index already (indexed or unique, one value)."""
    return field in entity.indexed_fields and field.value_type.storage != "json"


def duplicate_indexes(metadata: Metadata, dialect: str) -> dict[str, sa.Index]:
    """Every index the cards' duplicates rules need beyond those of indexed and unique fields, by name."""
    indexes: dict[str, sa.Index] = {}
    for entity in metadata.entities.values():
        for name in sorted(entity.duplicates.looked_up):
            field = entity.fields[name]
            if _has_index(entity, field):
                continue
            live = sa.and_(*live_rows(entity.name))
            if field.is_list and dialect == "postgresql":
                index_name = _name(entity.name, name, "g")
                indexes[index_name] = sa.Index(index_name, JsonValue(records.c.data, name, "json"),
                                               postgresql_using="gin", postgresql_where=live)
            elif field.is_list:
                for position in range(POSITIONS):
                    index_name = _name(entity.name, name, str(position))
                    indexes[index_name] = sa.Index(index_name, JsonItem(records.c.data, name, position),
                                                   records.c.id, sqlite_where=live)
                # By the number of items, so that "more than POSITIONS" is a range of it: a partial index of those
                # few records would be empty, have no statistics, and be passed over for a scan of the card.
                index_name = _name(entity.name, name, "len")
                indexes[index_name] = sa.Index(index_name, JsonLength(records.c.data, name), records.c.id,
                                               sqlite_where=live)
            else:
                kind = field.value_type.storage
                index_name = _name(entity.name, name, kind[0])
                indexes[index_name] = sa.Index(index_name, JsonValue(records.c.data, name, kind), records.c.id,
                                               postgresql_where=live, sqlite_where=live)
    return indexes
