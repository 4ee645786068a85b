"""SQL expressions over records.data that render exactly like the expression indexes built on them.

The path is a literal in the SQL text (never a bind parameter) so the planner can match the index,
and it is only ever built from a field name that exists in the metadata (checked again here).
"""

from __future__ import annotations

import json
import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
KINDS = ("text", "number", "boolean", "json")


def _checked(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a field name: {name!r}")
    return name


class JsonValue(ColumnElement[Any]):
    """The scalar value of one key of a JSON column, typed by `kind` (text, number, boolean)."""

    inherit_cache = True
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("key", InternalTraversal.dp_string),
        ("kind", InternalTraversal.dp_string),
    ]

    def __init__(self, column: ColumnElement[Any], key: str, kind: str = "text") -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown JSON value kind {kind!r}")
        self.column = column
        self.key = _checked(key)
        self.kind = kind
        self.type = {"number": sa.Numeric(), "boolean": sa.Boolean()}.get(kind, sa.String())


@compiles(JsonValue, "postgresql")
def _pg_value(element: JsonValue, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    if element.kind == "json":
        return f"({column} -> '{element.key}')"
    text = f"({column} ->> '{element.key}')"
    if element.kind == "number":
        return f"({text}::numeric)"
    if element.kind == "boolean":
        return f"({text}::boolean)"
    return text


@compiles(JsonValue, "sqlite")
def _sqlite_value(element: JsonValue, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    return f"json_extract({column}, '$.{element.key}')"


class JsonArrayContains(ColumnElement[bool]):
    """True when the JSON array under `key` has `value` as an element."""

    inherit_cache = True
    type = sa.Boolean()
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("key", InternalTraversal.dp_string),
        ("value", InternalTraversal.dp_clauseelement),
        ("array", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: ColumnElement[Any], key: str, value: Any) -> None:
        self.column = column
        self.key = _checked(key)
        self.value = sa.bindparam(None, value, unique=True)
        self.array = sa.bindparam(None, json.dumps([value], ensure_ascii=False), type_=sa.String(), unique=True)


@compiles(JsonArrayContains, "postgresql")
def _pg_contains(element: JsonArrayContains, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    value = compiler.process(element.array, **kw)
    return f"(({column} -> '{element.key}') @> CAST({value} AS JSONB))"


@compiles(JsonArrayContains, "sqlite")
def _sqlite_contains(element: JsonArrayContains, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    value = compiler.process(element.value, **kw)
    # The key is a checked field name and the value a bind placeholder: nothing here comes from input.
    return f"EXISTS (SELECT 1 FROM json_each({column}, '$.{element.key}') AS je WHERE je.value = {value})"  # noqa: S608


class JsonArrayAnyLike(ColumnElement[bool]):
    """True when some element of the JSON array under `key`, case-folded, is LIKE `pattern`."""

    inherit_cache = True
    type = sa.Boolean()
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("key", InternalTraversal.dp_string),
        ("pattern", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: ColumnElement[Any], key: str, pattern: str) -> None:
        self.column = column
        self.key = _checked(key)
        self.pattern = sa.bindparam(None, pattern, type_=sa.String(), unique=True)


@compiles(JsonArrayAnyLike, "postgresql")
def _pg_any_like(element: JsonArrayAnyLike, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    pattern = compiler.process(element.pattern, **kw)
    return (f"EXISTS (SELECT 1 FROM jsonb_array_elements_text(CASE jsonb_typeof({column} -> '{element.key}') "  # noqa: S608
            f"WHEN 'array' THEN {column} -> '{element.key}' END) AS je(v) "
            f"WHERE replace(lower(je.v), 'ё', 'е') LIKE {pattern} ESCAPE '\\')")


@compiles(JsonArrayAnyLike, "sqlite")
def _sqlite_any_like(element: JsonArrayAnyLike, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    pattern = compiler.process(element.pattern, **kw)
    return (f"EXISTS (SELECT 1 FROM json_each({column}, '$.{element.key}') AS je "  # noqa: S608 (checked key)
            f"WHERE casefold(je.value) LIKE {pattern} ESCAPE '\\')")
