"""List queries: filters, search, sort and keyset cursors built as SQLAlchemy expressions."""

from __future__ import annotations

import base64
import difflib
import functools
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kartoteka.errors import BadRequest
from kartoteka.messages import Message, message_of
from kartoteka.metadata.fieldtypes import FieldValueError, ParseContext, unstorable
from kartoteka.metadata.model import EntityDef, FieldDef
from kartoteka.records.access import viewable_fields
from kartoteka.records.model import OPERATORS, Filter, ListQuery, Principal
from kartoteka.records.pipeline import parse_value
from kartoteka.storage.database import casefold, fold
from kartoteka.storage.json_sql import JsonArrayAnyLike, JsonArrayContains, JsonValue
from kartoteka.storage.keys import key_columns
from kartoteka.storage.tables import records

if TYPE_CHECKING:
    from kartoteka.records.service import RecordService

SYSTEM_COLUMNS: dict[str, tuple[str, sa.Column[Any]]] = {
    "id": ("number", records.c.id),
    "owner": ("number", records.c.owner),
    "version": ("number", records.c.version),
    "created_at": ("datetime", records.c.created_at),
    "updated_at": ("datetime", records.c.updated_at),
    "created_by": ("number", records.c.created_by),
    "updated_by": ("number", records.c.updated_by),
}


def _integer_range(column: sa.Column[Any]) -> tuple[int, int]:
    """The values an integer column holds on both databases: INTEGER is 32 bits on PostgreSQL, BIGINT 64."""
    bits = 64 if isinstance(column.type, sa.BigInteger) else 32
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


# Filters and cursors on system numbers stay inside their column, or PostgreSQL fails with an overflow.
SYSTEM_INTEGER_RANGES: dict[str, tuple[int, int]] = {
    name: _integer_range(column) for name, (kind, column) in SYSTEM_COLUMNS.items() if kind == "number"
}

MAX_LIMIT = 500
MAX_IN_VALUES = 200
# Search text (q, `__contains`, pickers): far below SQLite's LIKE pattern limit (50,000 bytes), and long
# enough for any name, e-mail or phone typed into a search box.
MAX_SEARCH_LENGTH = 200
# Any other filter value: the longest web address a url field keeps.
MAX_FILTER_VALUE_LENGTH = 2_000
# A cursor is base64 of [sort, value, id]: room for a 10,000-character text field's value in any script.
MAX_CURSOR_LENGTH = 60_000


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable_problem(text: str) -> Message | None:
    """What in `text` no database stores, as a message to nest ("a NUL character (U+0000)"); None when nothing."""
    problem = unstorable(text)
    if problem is None:
        return None
    if isinstance(problem, Message):
        return problem
    found = _UNSTORABLE.search(text)
    if found is None or found.group() == "\x00":
        return Message("unstorable.nul", "a NUL character (U+0000)")
    return Message("unstorable.surrogate", "an unpaired surrogate ({char}, not a character)",
                   char=f"U+{ord(found.group()):04X}")


def did_you_mean(word: str, candidates: Collection[str]) -> Message | None:
    """The closest of `candidates` to a mistyped `word` as "; did you mean 'x'?", or None."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return Message("hint.did_you_mean", "; did you mean '{name}'?", name=close[0]) if close else None


def check_search_text(text: str, what: str = "search", name: str = "") -> str:
    """`text` when a search may use it; BadRequest when it is too long or holds what no database takes.

    `what` says whose text it is in the refusal: "search" (a search box), "q" (a list's search parameter)
    or "contains" (the filter `name`, e.g. 'email__contains').
    """
    if len(text) > MAX_SEARCH_LENGTH:
        count, has = MAX_SEARCH_LENGTH, len(text)
        if what == "q":
            raise BadRequest(Message("search.q_too_long", "The search text 'q' is too long: at most {count} "
                                     "characters (has {has}).", count=count, has=has))
        if what == "contains":
            raise BadRequest(Message("filter.contains_too_long", "The text of '{name}' is too long: at most {count} "
                                     "characters (has {has}).", name=name, count=count, has=has))
        raise BadRequest(Message("search.too_long", "The search text is too long: at most {count} characters "
                                 "(has {has}).", count=count, has=has))
    problem = unstorable_problem(text)
    if problem is not None:
        if what == "q":
            raise BadRequest(Message("search.q_unsearchable", "The search text 'q' contains {problem}, which cannot "
                                     "be searched for.", problem=problem))
        if what == "contains":
            raise BadRequest(Message("filter.contains_unsearchable", "The text of '{name}' contains {problem}, "
                                     "which cannot be searched for.", name=name, problem=problem))
        raise BadRequest(Message("search.unsearchable", "The search text contains {problem}, which cannot be "
                                 "searched for.", problem=problem))
    return text


def like_pattern(text: str) -> str:
    """A LIKE pattern (escape '\\') matching folded text that contains `text`."""
    return "%" + _escape_like(fold(text.strip())) + "%"


def _contains_pattern(flt: Filter) -> str:
    """The pattern of a `field__contains=text` filter; BadRequest when the text is empty."""
    if not str(flt.value).strip():
        raise BadRequest(Message("filter.contains_empty", "'{field}__contains' needs some text.", field=flt.field))
    return like_pattern(check_search_text(str(flt.value), "contains", f"{flt.field}__contains"))


def _check_filter_values(flt: Filter) -> None:
    """Refuse filter values no field could hold before parsing them (each costs work and a bind parameter)."""
    values = _in_values(flt) if flt.op == "in" else [flt.value]
    name = f"{flt.field}__{flt.op}"
    for value in values:
        text = str(value)
        if len(text) > MAX_FILTER_VALUE_LENGTH:
            raise BadRequest(Message("filter.value_too_long", "The value of filter '{name}' is too long: at most "
                                     "{count} characters (has {has}).", name=name, count=MAX_FILTER_VALUE_LENGTH,
                                     has=len(text)))
        problem = unstorable_problem(text)
        if problem is not None:
            raise BadRequest(Message("filter.value_unsearchable", "The value of filter '{name}' contains {problem}, "
                                     "which cannot be searched for.", name=name, problem=problem))


class QueryBuilder:
    """Turns filters, sorts and cursors for one entity into SQL, using only fields the user can see."""

    def __init__(self, entity: EntityDef, dialect: str, ctx: ParseContext, viewable: Collection[str],
                 keys: Mapping[str, str] | None = None) -> None:
        self.entity = entity
        self.dialect = dialect
        self.ctx = ctx
        self.viewable = viewable
        # The key columns to read, by field (RecordService.key_columns: those filled); the metadata's when not given.
        self.keys = key_columns(entity) if keys is None else keys
        self._sort_keys: dict[str, tuple[str, bool, FieldDef | None, sa.ColumnElement[Any]]] = {}

    # --- columns -----------------------------------------------------------------------------------

    def field(self, name: str, purpose: str) -> FieldDef | None:
        """The field to filter, sort, group or sum by (`purpose`); None for a system column; BadRequest when
        unknown or hidden."""
        if name in SYSTEM_COLUMNS:
            return None
        field = self.entity.fields.get(name)
        if field is None or name not in self.viewable:
            known = [n for n in self.entity.fields if n in self.viewable] + list(SYSTEM_COLUMNS)
            hint: str = did_you_mean(name, known) or "."
            if purpose == "sort":
                raise BadRequest(Message("sort.unknown_field", "Cannot sort by unknown field '{name}'{hint}",
                                         name=name, hint=hint))
            if purpose == "group":
                raise BadRequest(Message("board.unknown_group_field", "Cannot group by unknown field '{name}'{hint}",
                                         name=name, hint=hint))
            if purpose == "sum":
                raise BadRequest(Message("board.unknown_sum_field", "Cannot sum by unknown field '{name}'{hint}",
                                         name=name, hint=hint))
            raise BadRequest(Message("filter.unknown_field", "Cannot filter by unknown field '{name}'{hint}",
                                     name=name, hint=hint))
        return field

    def column(self, name: str, field: FieldDef | None) -> sa.ColumnElement[Any]:
        """The SQL expression of a field, matching its index exactly: its key column, or its JSON value."""
        if field is None:
            return SYSTEM_COLUMNS[name][1]
        return _field_value(name, field.value_type.storage, self.key(field))

    def key(self, field: FieldDef | None) -> str | None:
        """The key column holding the field's value (storage/keys.py), None for a system column or a JSON value."""
        return None if field is None else self.keys.get(field.name)

    def bind(self, field: FieldDef | None, value: Any) -> object:
        """A typed bind parameter comparable with `column` on this database (for a system column, the value
        itself: SQLAlchemy binds it with the column's type)."""
        if field is None:
            return value
        kind = field.value_type.storage
        return sa.literal(self.bound_value(field, value), _bind_type(kind, self.dialect))

    def bound_value(self, field: FieldDef | None, value: Any) -> Any:
        """The value `bind` binds, for a parameter of `_bind_type` (a statement built once takes it at execution)."""
        if field is None:
            return value
        kind = field.value_type.storage
        if kind == "number":
            number = Decimal(value) if not isinstance(value, Decimal) else value
            return float(number) if self.dialect == "sqlite" else number
        if kind == "boolean":
            return bool(value)
        return field.value_type.to_storage(value)

    # --- filters -----------------------------------------------------------------------------------

    def filter_clause(self, flt: Filter) -> sa.ColumnElement[bool]:
        """One `field__op=value` as a WHERE clause."""
        if flt.op not in OPERATORS:
            raise BadRequest(Message("filter.unknown_operator", "Unknown filter operator '{op}'{hint}; use one of "
                                     "{operators}.", op=flt.op, hint=did_you_mean(flt.op, OPERATORS) or "",
                                     operators=list(OPERATORS)))
        field = self.field(flt.field, "filter")
        column = self.column(flt.field, field)
        _check_filter_values(flt)
        if flt.op == "isnull":
            wanted = self._parse_bool(flt)
            return column.is_(None) if wanted else column.isnot(None)
        if field is not None and field.value_type.filter_kind == "presence":  # files, consent: held or not
            raise BadRequest(Message("filter.presence_only", "'{field}' holds {noun}; filter it with {field}__isnull "
                                     "only.", field=flt.field, noun=field.value_type.presence_noun))
        if field is not None and field.is_list:
            return self._list_clause(flt, field)
        if flt.op == "in":
            raw_values = _in_values(flt)
            values = [self._value(flt, field, raw) for raw in raw_values if str(raw).strip()]
            if not values:
                raise BadRequest(Message("filter.in_empty", "'{field}__in' needs at least one value, e.g. "
                                         "{field}__in=a,b.", field=flt.field))
            return column.in_([self.bind(field, v) for v in values])
        if flt.op == "contains":
            # A fragment of an e-mail, phone or address is not a valid value itself: match the text.
            if field is None or field.value_type.storage != "text":
                raise BadRequest(Message("filter.contains_not_text", "'contains' works on text fields; '{field}' is "
                                         "not one.", field=flt.field))
            return casefold(column, self.dialect).like(_contains_pattern(flt), escape="\\")
        value = self._value(flt, field, flt.value)
        bound = self.bind(field, value)
        if flt.op == "eq":
            return column == bound
        if flt.op == "ne":
            return sa.or_(column != bound, column.is_(None))
        if field is not None and field.value_type.storage not in ("number", "text"):
            raise BadRequest(Message("filter.operator_not_applicable", "'{op}' does not apply to field '{field}'.",
                                     op=flt.op, field=flt.field))
        comparisons = {"lt": column < bound, "lte": column <= bound, "gt": column > bound, "gte": column >= bound}
        return comparisons[flt.op]

    def bound_filter(self, flt: Filter, param: str) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        """`filter_clause(flt)` as (shape, values): `bound_filter_clause(shape, param)` is the same clause with its
        values as the bound parameter `param`, built once per shape, and `values` fill it. None for what only
        `filter_clause` builds (list fields, `contains`, presence fields, refusals it words): call it instead.

        The checks and parsing are filter_clause's own, in its order, so a refused filter is refused alike.
        """
        if flt.op not in OPERATORS or flt.op == "contains":
            return None
        field = self.field(flt.field, "filter")
        if field is not None and (field.is_list or field.value_type.filter_kind == "presence"):
            return None
        _check_filter_values(flt)
        kind = None if field is None else field.value_type.storage
        key = self.key(field)
        if flt.op == "isnull":
            return (flt.field, kind, "isnull", self._parse_bool(flt), self.dialect, key), {}
        if flt.op == "in":
            values = [self._value(flt, field, raw) for raw in _in_values(flt) if str(raw).strip()]
            if not values:
                return None
            return ((flt.field, kind, "in", None, self.dialect, key),
                    {param: [self.bound_value(field, v) for v in values]})
        value = self._value(flt, field, flt.value)
        if flt.op not in ("eq", "ne") and field is not None and kind not in ("number", "text"):
            return None
        return (flt.field, kind, flt.op, None, self.dialect, key), {param: self.bound_value(field, value)}

    def _list_clause(self, flt: Filter, field: FieldDef) -> sa.ColumnElement[bool]:
        if flt.op not in ("eq", "contains", "in"):
            raise BadRequest(Message("filter.list_operator", "'{op}' does not apply to the list field '{field}'; use "
                                     "eq, in or contains.", op=flt.op, field=flt.field))
        if flt.op == "contains":  # some value contains the text: a fragment of one of several e-mails
            return JsonArrayAnyLike(records.c.data, field.name, _contains_pattern(flt))
        raw_values = _in_values(flt) if flt.op == "in" else [flt.value]
        clauses = []
        for raw in raw_values:
            value = self._value(flt, field, raw, single=True)
            stored = field.type.to_storage(value)
            clauses.append(JsonArrayContains(records.c.data, field.name, stored))
        return sa.or_(*clauses)

    def _value(self, flt: Filter, field: FieldDef | None, raw: Any, single: bool = False) -> Any:
        try:
            if field is None:
                return self._system_value(flt.field, raw)
            if field.is_formula or single or field.multiple:
                value = field.value_type.parse(raw, field, self.ctx)
            else:
                value = parse_value(field, raw, self.ctx)
        except FieldValueError as exc:
            raise BadRequest(Message("filter.invalid", "Filter '{name}': {message}", name=f"{flt.field}__{flt.op}",
                                     message=message_of(exc))) from None
        if value is None:
            raise BadRequest(Message("filter.needs_value", "Filter '{name}' needs a value (use {field}__isnull=true "
                                     "for empty).", name=f"{flt.field}__{flt.op}", field=flt.field))
        if isinstance(value, list):
            value = value[0]
        return value

    @staticmethod
    def _system_value(name: str, raw: Any) -> Any:
        kind = SYSTEM_COLUMNS[name][0]
        text = str(raw).strip()
        if kind == "number":
            low, high = SYSTEM_INTEGER_RANGES[name]
            # The digit count first bounds int()'s work on a long text.
            if not re.fullmatch(r"-?\d{1,19}", text) or not low <= int(text) <= high:
                raise FieldValueError(Message("filter.system_number", "'{text}' is not a whole number from {low} to "
                                              "{high}.", text=text[:40], low=low, high=high))
            return int(text)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise FieldValueError(Message("filter.system_datetime", "'{text}' is not an ISO date and time.",
                                          text=text[:40])) from None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    @staticmethod
    def _parse_bool(flt: Filter) -> bool:
        word = str(flt.value).strip().lower()
        if word in ("true", "1", "yes"):
            return True
        if word in ("false", "0", "no"):
            return False
        raise BadRequest(Message("filter.isnull_value", "'{field}__isnull' takes true or false, not '{value}'.",
                                 field=flt.field, value=str(flt.value)))

    def search_clause(self, text: str) -> sa.ColumnElement[bool]:
        """Case-insensitive search across the title and the entity's visible search fields."""
        pattern = like_pattern(check_search_text(text, "q"))
        clauses: list[sa.ColumnElement[bool]] = [casefold(records.c.title, self.dialect).like(pattern, escape="\\")]
        for name in self.entity.list.search:
            if name not in self.viewable:
                continue
            if self.entity.fields[name].multiple:  # several phones or e-mails: match any of them
                clauses.append(JsonArrayAnyLike(records.c.data, name, pattern))
            else:
                value = JsonValue(records.c.data, name, "text")
                clauses.append(casefold(value, self.dialect).like(pattern, escape="\\"))
        return sa.or_(*clauses)

    # --- sort and keyset ---------------------------------------------------------------------------

    def sort_key(self, sort: str) -> tuple[str, bool, FieldDef | None, sa.ColumnElement[Any]]:
        """(name, descending, field, expression) of a `-field` sort (worked out once per builder: a list asks
        for it for its columns, its order and its cursor)."""
        known = self._sort_keys.get(sort)
        if known is None:
            known = self._sort_keys[sort] = self._sort_key(sort)
        return known

    def _sort_key(self, sort: str) -> tuple[str, bool, FieldDef | None, sa.ColumnElement[Any]]:
        descending = sort.startswith("-")
        name = sort.lstrip("-")
        field = self.field(name, "sort")
        if field is not None and (field.is_list or field.value_type.storage == "json"):
            raise BadRequest(Message("sort.not_sortable", "Cannot sort by '{name}', which holds several or "
                                     "structured values.", name=name))
        return name, descending, field, self.column(name, field)

    def order_by(self, sort: str) -> list[sa.ColumnElement[Any]]:
        """ORDER BY the sort key, then id, in the same direction (so one index serves both)."""
        name, descending, field, _ = self.sort_key(sort)
        return list(_order_by(name, descending, None if field is None else field.value_type.storage, self.key(field)))

    def nulls_first(self, descending: bool) -> bool:
        """Where each database puts NULLs: SQLite first in ascending order, PostgreSQL last."""
        return (self.dialect == "sqlite") != descending

    def after(self, sort: str, cursor: str) -> sa.ColumnElement[bool]:
        """Rows that come after the cursor's (value, id) in this sort order."""
        name, descending, field, column = self.sort_key(sort)
        last_value, last_id = decode_cursor(cursor, sort)
        later_id = records.c.id < last_id if descending else records.c.id > last_id
        if name == "id":
            return later_id
        nulls_first = self.nulls_first(descending)
        if last_value is None:
            tie = sa.and_(column.is_(None), later_id)
            return sa.or_(tie, column.isnot(None)) if nulls_first else tie
        try:
            value = self._cursor_value(field, name, last_value)
        except (ValueError, TypeError, ArithmeticError):
            raise BadRequest(_malformed_cursor()) from None
        beyond = column < value if descending else column > value
        # The expanded form (not a row-value comparison) lets SQLite search the index.
        edge = column <= value if descending else column >= value
        clause = sa.and_(edge, sa.or_(beyond, later_id))
        return clause if nulls_first else sa.or_(clause, column.is_(None))

    def bound_after(self, sort: str, cursor: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """`after(sort, cursor)` as (shape, values): `bound_after_clause(shape)` is the same clause with the cursor's
        value and id as the bound parameters cursor_value and cursor_id (see `bound_filter`)."""
        name, descending, field, _ = self.sort_key(sort)
        last_value, last_id = decode_cursor(cursor, sort)
        kind = None if field is None else field.value_type.storage
        key = self.key(field)
        if name == "id" or last_value is None:
            return ((name, descending, kind, "id" if name == "id" else "null", self.dialect, key),
                    {"cursor_id": last_id})
        try:
            value = self._cursor_python_value(field, name, last_value)
        except (ValueError, TypeError, ArithmeticError):
            raise BadRequest(_malformed_cursor()) from None
        return (name, descending, kind, "value", self.dialect, key), {"cursor_id": last_id, "cursor_value": value}

    def _cursor_value(self, field: FieldDef | None, name: str, raw: Any) -> Any:
        value = self._cursor_python_value(field, name, raw)
        if field is None:
            return value
        return sa.literal(value, _bind_type(field.value_type.storage, self.dialect))

    def _cursor_python_value(self, field: FieldDef | None, name: str, raw: Any) -> Any:
        """The cursor's sort value as `_cursor_value` binds it (a system column's value, or a field's bound value)."""
        if field is None:
            kind = SYSTEM_COLUMNS[name][0]
            if kind == "datetime":
                return datetime.fromisoformat(raw)
            return self._system_value(name, raw)
        kind = field.value_type.storage
        if kind == "number":
            number = Decimal(str(raw))
            if not number.is_finite() or abs(number) >= Decimal(10) ** 16:
                raise ValueError("not a stored number")
            return self.bound_value(field, number)
        if kind == "boolean":
            return bool(raw)
        return str(raw)


def _bind_type(kind: str | None, dialect: str) -> Any:
    """The SQL type a field's value of storage `kind` is bound with (None: a system column's own type applies)."""
    if kind == "number":
        return sa.Float() if dialect == "sqlite" else sa.Numeric()
    if kind == "boolean":
        return sa.Boolean()
    return sa.String()


def _bound_column(name: str, kind: str | None, key: str | None) -> sa.ColumnElement[Any]:
    return SYSTEM_COLUMNS[name][1] if kind is None else _field_value(name, kind, key)


def _bound_param(name: str, kind: str | None, dialect: str, param: str, *, expanding: bool = False
                 ) -> sa.BindParameter[Any]:
    type_ = SYSTEM_COLUMNS[name][1].type if kind is None else _bind_type(kind, dialect)
    return sa.bindparam(param, type_=type_, expanding=expanding)


@functools.lru_cache(maxsize=4096)
def bound_filter_clause(shape: tuple[Any, ...], param: str) -> sa.ColumnElement[bool]:
    """The clause `filter_clause` builds for a filter of this shape (see `QueryBuilder.bound_filter`), its value
    the bound parameter `param`: one object per shape, so a statement made of it is built once."""
    name, kind, op, wanted, dialect, key = shape
    column = _bound_column(name, kind, key)
    if op == "isnull":
        return column.is_(None) if wanted else column.isnot(None)
    if op == "in":
        return column.in_(_bound_param(name, kind, dialect, param, expanding=True))
    bound = _bound_param(name, kind, dialect, param)
    if op == "eq":
        return column == bound
    if op == "ne":
        return sa.or_(column != bound, column.is_(None))
    comparisons = {"lt": column.__lt__, "lte": column.__le__, "gt": column.__gt__, "gte": column.__ge__}
    return comparisons[op](bound)


@functools.lru_cache(maxsize=1024)
def bound_after_clause(shape: tuple[Any, ...]) -> sa.ColumnElement[bool]:
    """The clause `QueryBuilder.after` builds for a cursor of this shape (see `QueryBuilder.bound_after`), with the
    bound parameters cursor_id and cursor_value."""
    name, descending, kind, which, dialect, key = shape
    later_id = records.c.id < sa.bindparam("cursor_id") if descending else records.c.id > sa.bindparam("cursor_id")
    if which == "id":
        return later_id
    column = _bound_column(name, kind, key)
    nulls_first = (dialect == "sqlite") != descending
    if which == "null":
        tie = sa.and_(column.is_(None), later_id)
        return sa.or_(tie, column.isnot(None)) if nulls_first else tie
    value = _bound_param(name, kind, dialect, "cursor_value")
    beyond = column < value if descending else column > value
    edge = column <= value if descending else column >= value
    clause = sa.and_(edge, sa.or_(beyond, later_id))
    return clause if nulls_first else sa.or_(clause, column.is_(None))


@functools.lru_cache(maxsize=1024)
def _field_value(name: str, kind: str, key: str | None) -> sa.ColumnElement[Any]:
    """The expression of a field's value: its key column `key` if it has one, else its JSON value (SQL elements are
    immutable: one per field name, kind and key will do)."""
    if key is not None:
        return records.c[key]
    return JsonValue(records.c.data, name, kind)


@functools.lru_cache(maxsize=1024)
def _order_by(name: str, descending: bool, kind: str | None, key: str | None = None
              ) -> tuple[sa.ColumnElement[Any], ...]:
    """ORDER BY a field (`kind`: how it is stored; `key`: its key column) or a system column (None), then id."""
    column = SYSTEM_COLUMNS[name][1] if kind is None else _field_value(name, kind, key)
    if name == "id":
        return (records.c.id.desc() if descending else records.c.id.asc(),)
    if descending:
        return column.desc(), records.c.id.desc()
    return column.asc(), records.c.id.asc()


def encode_cursor(sort: str, value: Any, record_id: int) -> str:
    """An opaque cursor holding the sort, the last row's sort value and its id."""
    if isinstance(value, datetime):
        value = value.astimezone(UTC).isoformat() if value.tzinfo else value.replace(tzinfo=UTC).isoformat()
    elif isinstance(value, Decimal | float):
        value = str(value)
    payload = json.dumps([sort, value, record_id], ensure_ascii=False, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[Any, int]:
    """(value, id) from a cursor made for the same sort; BadRequest otherwise."""
    malformed = BadRequest(_malformed_cursor())
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise malformed
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        saved_sort, value, record_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError, RecursionError):  # RecursionError: [[[[...]]]] nested past the stack
        raise malformed from None
    if not isinstance(record_id, int) or isinstance(record_id, bool) or not 0 < record_id < 2**53:
        raise malformed
    # Only what encode_cursor writes: a NUL or a surrogate in a hand-made one would reach the database.
    if not isinstance(saved_sort, str) or not (value is None or isinstance(value, str | int | float)) \
            or (isinstance(value, str) and unstorable(value) is not None):
        raise malformed
    if saved_sort != sort:
        raise BadRequest(Message("cursor.other_sort", "The cursor belongs to another sort order; start again from "
                                 "the first page."))
    return value, record_id


def _malformed_cursor() -> Message:
    return Message("cursor.invalid", "The cursor is malformed; start again from the first page.")


def _in_values(flt: Filter) -> list[Any]:
    """The values of an `__in` filter (a list, or one comma-separated text), at most MAX_IN_VALUES."""
    values = flt.value if isinstance(flt.value, list) else str(flt.value).split(",")
    if len(values) > MAX_IN_VALUES:
        raise BadRequest(Message("filter.too_many_values", "At most {limit} values in '{field}__in' (has {count}).",
                                 limit=MAX_IN_VALUES, field=flt.field, count=len(values)))
    return values


def clamp_limit(limit: int) -> int:
    """Page sizes between 1 and MAX_LIMIT."""
    if limit < 1 or limit > MAX_LIMIT:
        raise BadRequest(Message("limit.out_of_range", "limit must be between 1 and {limit}.", limit=MAX_LIMIT))
    return limit


# --- the total of a list ------------------------------------------------------------------------------

# Lists count exactly up to this many records and say "more than" beyond it (KARTOTEKA_LIST_COUNT_CAP).
DEFAULT_COUNT_CAP = 10_000


@dataclass(frozen=True)
class Total:
    """How many records a list holds: `count` exactly, or (`exact` false) more than `count`, the cap."""

    count: int
    exact: bool


# Filter operators an index on the field answers (a btree: equality, lists of values, ranges).
_INDEXED_OPERATORS = frozenset({"eq", "in", "lt", "lte", "gt", "gte"})


def _index_filtered(entity: EntityDef, query: ListQuery) -> bool:
    """True when one of the list's filters is answered by an expression index of the metadata."""
    indexed = {f.name for f in entity.indexed_fields if f.value_type.storage != "json"}
    return any(f.field in indexed and f.op in _INDEXED_OPERATORS for f in query.filters)


def count_records(service: RecordService, entity_name: str, user: Principal, query: ListQuery,
                  cap: int | None = DEFAULT_COUNT_CAP) -> Total:
    """The total of the list `query` (the same records the list shows, whatever its cursor, sort and page).

    An exact count reads every matching row (over JSON it cannot be answered from an index): 170-500 ms
    for a million records. With a `cap` it stops after cap + 1 rows, so a long list costs about as much as
    one of `cap` records and says "more than `cap`"; `cap=None` (or 0) counts exactly, on request.
    """
    entity = service.entity(entity_name)
    builder = QueryBuilder(entity, service.dialect, service.ctx, viewable_fields(entity, user),
                           service.key_columns(entity))
    where = service.list_where(entity, user, query, builder)
    if cap:
        counted = sa.select(records.c.id).where(*where).limit(cap + 1).subquery("counted")
        statement = sa.select(sa.func.count()).select_from(counted)
    else:
        statement = sa.select(sa.func.count()).select_from(records).where(*where)
    with service.engine.connect() as conn:
        if cap and service.dialect == "postgresql" and _index_filtered(entity, query):
            # Up to the cap, PostgreSQL prices a scan of the table that stops at the cap + 1st match below a bitmap
            # scan of the filter's index, not knowing that the scan reads each row's JSON (its ->> costs what any
            # operator does): at 100,000 deals, 25,000 of them in the filter, 31 ms against 11. The filter has an
            # index: have it used (for this statement's transaction only).
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        found = int(conn.execute(statement).scalar_one())
    if cap and found > cap:
        return Total(cap, exact=False)
    return Total(found, exact=True)
