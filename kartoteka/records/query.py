"""List queries: filters, search, sort and keyset cursors built as SQLAlchemy expressions."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kartoteka.errors import BadRequest
from kartoteka.metadata.expressions import suggest
from kartoteka.metadata.fieldtypes import FieldValueError, ParseContext, unstorable
from kartoteka.metadata.model import EntityDef, FieldDef
from kartoteka.records.access import viewable_fields
from kartoteka.records.model import OPERATORS, Filter, ListQuery, Principal
from kartoteka.records.pipeline import parse_value
from kartoteka.storage.database import casefold, fold
from kartoteka.storage.json_sql import JsonArrayAnyLike, JsonArrayContains, JsonValue
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


def check_search_text(text: str, what: str = "The search text") -> str:
    """`text` when a search may use it; BadRequest when it is too long or holds what no database takes."""
    if len(text) > MAX_SEARCH_LENGTH:
        raise BadRequest(f"{what} is too long: at most {MAX_SEARCH_LENGTH} characters (has {len(text)}).")
    problem = unstorable(text)
    if problem is not None:
        raise BadRequest(f"{what} contains {problem}, which cannot be searched for.")
    return text


def like_pattern(text: str) -> str:
    """A LIKE pattern (escape '\\') matching folded text that contains `text`."""
    return "%" + _escape_like(fold(text.strip())) + "%"


def _contains_pattern(flt: Filter) -> str:
    """The pattern of a `field__contains=text` filter; BadRequest when the text is empty."""
    if not str(flt.value).strip():
        raise BadRequest(f"'{flt.field}__contains' needs some text.")
    return like_pattern(check_search_text(str(flt.value), f"The text of '{flt.field}__contains'"))


def _check_filter_values(flt: Filter) -> None:
    """Refuse filter values no field could hold before parsing them (each costs work and a bind parameter)."""
    values = _in_values(flt) if flt.op == "in" else [flt.value]
    name = f"{flt.field}__{flt.op}"
    for value in values:
        text = str(value)
        if len(text) > MAX_FILTER_VALUE_LENGTH:
            raise BadRequest(f"The value of filter '{name}' is too long: at most {MAX_FILTER_VALUE_LENGTH} "
                             f"characters (has {len(text)}).")
        problem = unstorable(text)
        if problem is not None:
            raise BadRequest(f"The value of filter '{name}' contains {problem}, which cannot be searched for.")


class QueryBuilder:
    """Turns filters, sorts and cursors for one entity into SQL, using only fields the user can see."""

    def __init__(self, entity: EntityDef, dialect: str, ctx: ParseContext, viewable: Collection[str]) -> None:
        self.entity = entity
        self.dialect = dialect
        self.ctx = ctx
        self.viewable = viewable

    # --- columns -----------------------------------------------------------------------------------

    def field(self, name: str, purpose: str) -> FieldDef | None:
        """The field for a filter or sort; None for a system column; BadRequest when unknown or hidden."""
        if name in SYSTEM_COLUMNS:
            return None
        field = self.entity.fields.get(name)
        if field is None or name not in self.viewable:
            known = [n for n in self.entity.fields if n in self.viewable] + list(SYSTEM_COLUMNS)
            hint = suggest(name, known)
            raise BadRequest(f"Cannot {purpose} by unknown field '{name}'{hint or '.'}")
        return field

    def column(self, name: str, field: FieldDef | None) -> sa.ColumnElement[Any]:
        """The SQL expression of a field, matching its expression index exactly."""
        if field is None:
            return SYSTEM_COLUMNS[name][1]
        return JsonValue(records.c.data, name, field.value_type.storage)

    def bind(self, field: FieldDef | None, value: Any) -> object:
        """A typed bind parameter comparable with `column` on this database (for a system column, the value
        itself: SQLAlchemy binds it with the column's type)."""
        if field is None:
            return value
        kind = field.value_type.storage
        if kind == "number":
            number = Decimal(value) if not isinstance(value, Decimal) else value
            if self.dialect == "sqlite":
                return sa.literal(float(number), sa.Float())
            return sa.literal(number, sa.Numeric())
        if kind == "boolean":
            return sa.literal(bool(value), sa.Boolean())
        return sa.literal(field.value_type.to_storage(value), sa.String())

    # --- filters -----------------------------------------------------------------------------------

    def filter_clause(self, flt: Filter) -> sa.ColumnElement[bool]:
        """One `field__op=value` as a WHERE clause."""
        if flt.op not in OPERATORS:
            raise BadRequest(f"Unknown filter operator '{flt.op}'{suggest(flt.op, OPERATORS)}; "
                             f"use one of {', '.join(OPERATORS)}.")
        field = self.field(flt.field, "filter")
        column = self.column(flt.field, field)
        _check_filter_values(flt)
        if flt.op == "isnull":
            wanted = self._parse_bool(flt)
            return column.is_(None) if wanted else column.isnot(None)
        if field is not None and field.value_type.filter_kind == "presence":  # files, consent: held or not
            raise BadRequest(f"'{flt.field}' holds {field.value_type.presence_noun}; filter it with "
                             f"{flt.field}__isnull only.")
        if field is not None and field.is_list:
            return self._list_clause(flt, field)
        if flt.op == "in":
            raw_values = _in_values(flt)
            values = [self._value(flt, field, raw) for raw in raw_values if str(raw).strip()]
            if not values:
                raise BadRequest(f"'{flt.field}__in' needs at least one value, e.g. {flt.field}__in=a,b.")
            return column.in_([self.bind(field, v) for v in values])
        if flt.op == "contains":
            # A fragment of an e-mail, phone or address is not a valid value itself: match the text.
            if field is None or field.value_type.storage != "text":
                raise BadRequest(f"'contains' works on text fields; '{flt.field}' is not one.")
            return casefold(column, self.dialect).like(_contains_pattern(flt), escape="\\")
        value = self._value(flt, field, flt.value)
        bound = self.bind(field, value)
        if flt.op == "eq":
            return column == bound
        if flt.op == "ne":
            return sa.or_(column != bound, column.is_(None))
        if field is not None and field.value_type.storage not in ("number", "text"):
            raise BadRequest(f"'{flt.op}' does not apply to field '{flt.field}'.")
        comparisons = {"lt": column < bound, "lte": column <= bound, "gt": column > bound, "gte": column >= bound}
        return comparisons[flt.op]

    def _list_clause(self, flt: Filter, field: FieldDef) -> sa.ColumnElement[bool]:
        if flt.op not in ("eq", "contains", "in"):
            raise BadRequest(f"'{flt.op}' does not apply to the list field '{flt.field}'; use eq, in or contains.")
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
            raise BadRequest(f"Filter '{flt.field}__{flt.op}': {exc}") from None
        if value is None:
            raise BadRequest(f"Filter '{flt.field}__{flt.op}' needs a value (use {flt.field}__isnull=true for empty).")
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
                raise FieldValueError(f"'{text[:40]}' is not a whole number from {low} to {high}.")
            return int(text)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise FieldValueError(f"'{text[:40]}' is not an ISO date and time.") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    @staticmethod
    def _parse_bool(flt: Filter) -> bool:
        word = str(flt.value).strip().lower()
        if word in ("true", "1", "yes"):
            return True
        if word in ("false", "0", "no"):
            return False
        raise BadRequest(f"'{flt.field}__isnull' takes true or false, not '{flt.value}'.")

    def search_clause(self, text: str) -> sa.ColumnElement[bool]:
        """Case-insensitive search across the title and the entity's visible search fields."""
        pattern = like_pattern(check_search_text(text, "The search text 'q'"))
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
        """(name, descending, field, expression) of a `-field` sort."""
        descending = sort.startswith("-")
        name = sort.lstrip("-")
        field = self.field(name, "sort")
        if field is not None and (field.is_list or field.value_type.storage == "json"):
            raise BadRequest(f"Cannot sort by '{name}', which holds several or structured values.")
        return name, descending, field, self.column(name, field)

    def order_by(self, sort: str) -> list[sa.ColumnElement[Any]]:
        """ORDER BY the sort key, then id, in the same direction (so one index serves both)."""
        name, descending, _, column = self.sort_key(sort)
        if name == "id":
            return [records.c.id.desc() if descending else records.c.id.asc()]
        if descending:
            return [column.desc(), records.c.id.desc()]
        return [column.asc(), records.c.id.asc()]

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
            raise BadRequest("The cursor is malformed; start again from the first page.") from None
        beyond = column < value if descending else column > value
        # The expanded form (not a row-value comparison) lets SQLite search the index.
        edge = column <= value if descending else column >= value
        clause = sa.and_(edge, sa.or_(beyond, later_id))
        return clause if nulls_first else sa.or_(clause, column.is_(None))

    def _cursor_value(self, field: FieldDef | None, name: str, raw: Any) -> Any:
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
            return self.bind(field, number)
        if kind == "boolean":
            return sa.literal(bool(raw), sa.Boolean())
        return sa.literal(str(raw), sa.String())


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
    malformed = BadRequest("The cursor is malformed; start again from the first page.")
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
        raise BadRequest("The cursor belongs to another sort order; start again from the first page.")
    return value, record_id


def _in_values(flt: Filter) -> list[Any]:
    """The values of an `__in` filter (a list, or one comma-separated text), at most MAX_IN_VALUES."""
    values = flt.value if isinstance(flt.value, list) else str(flt.value).split(",")
    if len(values) > MAX_IN_VALUES:
        raise BadRequest(f"At most {MAX_IN_VALUES} values in '{flt.field}__in' (has {len(values)}).")
    return values


def clamp_limit(limit: int) -> int:
    """Page sizes between 1 and MAX_LIMIT."""
    if limit < 1 or limit > MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}.")
    return limit


# --- the total of a list ------------------------------------------------------------------------------

# Lists count exactly up to this many records and say "more than" beyond it (KARTOTEKA_LIST_COUNT_CAP).
DEFAULT_COUNT_CAP = 10_000


@dataclass(frozen=True)
class Total:
    """How many records a list holds: `count` exactly, or (`exact` false) more than `count`, the cap."""

    count: int
    exact: bool


def count_records(service: RecordService, entity_name: str, user: Principal, query: ListQuery,
                  cap: int | None = DEFAULT_COUNT_CAP) -> Total:
    """The total of the list `query` (the same records the list shows, whatever its cursor, sort and page).

    An exact count reads every matching row (over JSON it cannot be answered from an index): 170-500 ms
    for a million records. With a `cap` it stops after cap + 1 rows, so a long list costs about as much as
    one of `cap` records and says "more than `cap`"; `cap=None` (or 0) counts exactly, on request.
    """
    entity = service.entity(entity_name)
    builder = QueryBuilder(entity, service.dialect, service.ctx, viewable_fields(entity, user))
    where = service.list_where(entity, user, query, builder)
    if cap:
        counted = sa.select(records.c.id).where(*where).limit(cap + 1).subquery("counted")
        statement = sa.select(sa.func.count()).select_from(counted)
    else:
        statement = sa.select(sa.func.count()).select_from(records).where(*where)
    with service.engine.connect() as conn:
        found = int(conn.execute(statement).scalar_one())
    if cap and found > cap:
        return Total(cap, exact=False)
    return Total(found, exact=True)
