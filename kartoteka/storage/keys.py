"""Key columns: typed copies of indexed fields' values beside the JSON, which lists filter, sort and count by.

Every value lives in records.data. A list that filters or sorts by a field read from JSON parses each matching row's
JSON again in SQL (SQLite: json_extract per row; PostgreSQL: ->> per row), and an index on a JSON expression can
never answer a count alone. So the value of an `indexed` field is also written, by the record service in the same
statement, to one of the records table's key columns: `kt1`..`kt12` for values stored as text (text, selects, dates,
moments) and `kn1`..`kn6` for numbers (numbers, money, references, ratings). Lists then read a column, as a
hand-written table would (bench/README.md: a filtered, sorted page of 50 on SQLite, 1.98 ms of SQL → 1.04 ms,
against 0.83 for a typed table).

The columns are shared by every card: each entity gives them to its indexed fields in the order the fields are
declared, and each (entity, field, column) has its partial index `kkx_<entity>__<field>__<column>` on that entity's
live rows. The index's name is the record of the assignment: `storage/indexes.py` fills a column for an entity's
existing records (from their JSON) in the transaction that builds its index, so a field that becomes indexed, or
moves to another column, is filled before any list reads it. A column no field of an entity uses any more keeps
stale copies, which nothing reads; the next field given it is filled anew. Unique fields keep their unique JSON
expression index (one home for the uniqueness check), booleans and fields past the last column of their kind keep a
JSON expression index as before.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from functools import lru_cache
from typing import Any

from kartoteka.metadata.model import EntityDef, FieldDef

TEXT_KEYS = tuple(f"kt{i}" for i in range(1, 13))
NUMBER_KEYS = tuple(f"kn{i}" for i in range(1, 7))
KEY_COLUMNS = TEXT_KEYS + NUMBER_KEYS
_KEYS_BY_KIND = {"text": TEXT_KEYS, "number": NUMBER_KEYS}


def keyed(field: FieldDef) -> bool:
    """True when the field may have a key column: indexed, one value, stored as text or a number, not unique."""
    return field.indexed and not field.unique and not field.is_list and field.value_type.storage in _KEYS_BY_KIND


@lru_cache(maxsize=1024)
def key_columns(entity: EntityDef) -> Mapping[str, str]:
    """The key column of each of the entity's fields that has one, by field name (declaration order)."""
    taken = {kind: 0 for kind in _KEYS_BY_KIND}
    columns = {}
    for field in entity.fields.values():
        if not keyed(field):
            continue
        kind = field.value_type.storage
        position = taken[kind]
        if position < len(_KEYS_BY_KIND[kind]):
            columns[field.name] = _KEYS_BY_KIND[kind][position]
            taken[kind] = position + 1
    return columns


@lru_cache(maxsize=1024)
def _key_pairs(entity: EntityDef) -> tuple[tuple[str, str, tuple[type, ...]], ...]:
    fields = entity.fields
    return tuple((column, name, _FITTING[fields[name].value_type.storage])
                 for name, column in key_columns(entity).items())


# The Python types of a stored value a key column takes as it is: what the JSON expression gives for them is the value
# itself. Anything else (a value stored before its field's type changed: a text in a field that became a number, the
# list of a field that was multiple) is written by SQL from the stored JSON (`misfits`; records/service.py), as the
# index sync fills the column, never bound as it is (SQLAlchemy cannot bind a list, nor a text as a number on SQLite).
_FITTING: dict[str, tuple[type, ...]] = {"text": (str,), "number": (int, float)}


def key_values(entity: EntityDef, data: Mapping[str, Any], only: Collection[str] | None = None) -> dict[str, Any]:
    """The key columns' values of a record whose stored JSON is `data` (empty ones None), by column name; None for a
    value `misfits` names. With `only`, the columns of those fields alone (an update's changed fields)."""
    values = {}
    for column, name, fitting in _key_pairs(entity):
        if only is not None and name not in only:
            continue
        value = data.get(name)
        values[column] = value if value is None or type(value) in fitting else None
    return values


def misfits(entity: EntityDef, data: Mapping[str, Any]) -> tuple[str, ...]:
    """The fields of `data` whose value `key_values` cannot give (see _FITTING): the record service writes their
    columns from the stored JSON."""
    return tuple(name for _, name, fitting in _key_pairs(entity)
                 if (value := data.get(name)) is not None and type(value) not in fitting)
