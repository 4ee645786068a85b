"""Kanban board totals: per option of a select field, how many records and the sum of a number field.

The totals cover exactly the records the list shows for the same query (entity, live records, the
user's read scope, filters and search; the cursor, sort and page size do not matter) and are counted
in one grouped statement. Grouping by the field's JSON expression lets an indexed select use its index.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from kartoteka.errors import BadRequest
from kartoteka.messages import Message
from kartoteka.metadata.fieldtypes import FIELD_TYPES
from kartoteka.metadata.model import FieldDef
from kartoteka.records.access import viewable_fields
from kartoteka.records.model import ListQuery, Principal
from kartoteka.records.query import QueryBuilder
from kartoteka.records.scopes import require
from kartoteka.records.service import RecordService
from kartoteka.storage.database import EXACT
from kartoteka.storage.reading import reader
from kartoteka.storage.tables import records


@dataclass(frozen=True)
class Column:
    """One column of a board: the option value (None: empty or unknown value), its count and its sum."""

    value: str | None
    count: int
    total: Decimal | None  # None without a sum field, or when no record of the column has a value to sum


def board_totals(service: RecordService, entity_name: str, user: Principal, group_field: str,
                 sum_field: str | None, query: ListQuery) -> dict[str | None, Column]:
    """Count (and sum `sum_field` over) the records of the list `query`, per option of `group_field`.

    The result holds every option of the field in its configured order, then the None column for
    records whose value is empty or no longer one of the options; empty columns have count 0 and
    total None. NotFound for an unknown entity, PermissionDenied without read access, BadRequest for
    a group field that is not a visible field a board may group by (a select) or a sum field that is
    not a visible field a board may add up (money, decimal, integer), and for the query's own bad filters.
    """
    entity = service.entity(entity_name)
    require(service.metadata, user, entity, "read")  # refuse before looking at the query, as the list does
    builder = QueryBuilder(entity, service.dialect, service.ctx, viewable_fields(entity, user),
                           service.key_columns(entity))
    group = _group_field(builder, group_field)
    summed = _sum_field(builder, sum_field) if sum_field is not None else None
    places = _places(summed) if summed is not None else None

    group_column = builder.column(group.name, group)
    selected: list[sa.ColumnElement[Any]] = [group_column.label("value"), sa.func.count().label("record_count")]
    if summed is not None:
        selected.append(_sum(builder.column(summed.name, summed), service.dialect).label("total"))
    statement = (sa.select(*selected).select_from(records)
                 .where(*service.list_where(entity, user, query, builder))
                 .group_by(group_column))
    with reader(service.engine).connect() as conn:
        rows = conn.execute(statement).all()

    options = group.option_values
    counts: dict[str | None, int] = dict.fromkeys([*options, None], 0)
    totals: dict[str | None, Decimal | None] = dict.fromkeys([*options, None])
    for row in rows:
        key = row.value if isinstance(row.value, str) and row.value in options else None
        # Not `row.count`: that is also the tuple's count() method, which a type checker sees.
        counts[key] += row.record_count
        if summed is not None and row.total is not None:
            amount = _decimal(row.total, places)
            before = totals[key]
            totals[key] = amount if before is None else EXACT.add(before, amount)
    return {key: Column(key, counts[key], totals[key]) for key in counts}


def _groups(field: FieldDef) -> bool:
    return field.type.groups_board and not field.is_list


def _sums(field: FieldDef) -> bool:
    return field.value_type.sums_board and not field.is_list


def _group_field(builder: QueryBuilder, name: str) -> FieldDef:
    """The field to group by (a select); BadRequest when unknown, hidden or of a type a board cannot group by."""
    field = builder.field(name, "group")
    if field is None or not _groups(field):
        kinds = " or ".join(t.name for t in FIELD_TYPES.all() if t.groups_board)
        raise BadRequest(Message("board.group_invalid", "Cannot group {entity} by '{name}': a board groups by a "
                                 "{kinds} field (one of: {fields}).", entity=builder.entity.name,
                                 what=builder.entity.label_plural, name=name, kinds=kinds,
                                 fields=_names(builder, _groups) or _none()))
    return field


def _sum_field(builder: QueryBuilder, name: str) -> FieldDef:
    """The number field to sum; BadRequest when unknown, hidden or of a type a board does not add up."""
    field = builder.field(name, "sum")
    if field is None or not _sums(field):
        raise BadRequest(Message("board.sum_invalid", "Cannot sum '{name}' of {entity}: a board sums a {kinds} "
                                 "field (one of: {fields}).", entity=builder.entity.name,
                                 what=builder.entity.label_plural, name=name, kinds=_summable_kinds(),
                                 fields=_names(builder, _sums) or _none()))
    return field


def _none() -> Message:
    """'none': what a list of fields reads when it has none."""
    return Message("list.none", "none")


def _summable_kinds() -> str:
    """'money, decimal or integer': the types a board adds up, amounts of money first."""
    names = [t.name for t in sorted(FIELD_TYPES.all(), key=lambda t: ("currency" not in t.options, t.name))
             if t.sums_board]
    return " or ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} or {names[-1]}"


def _names(builder: QueryBuilder, fits: Callable[[FieldDef], bool]) -> list[str]:
    """The visible fields that fit (for error messages)."""
    return [n for n, f in builder.entity.fields.items() if n in builder.viewable and fits(f)]


def _places(field: FieldDef) -> int | None:
    """Decimal places of the summed values: the field's (2 for money), 0 for integers, None when free."""
    return field.value_type.sum_places(field)


def _sum(column: sa.ColumnElement[Any], dialect: str) -> sa.ColumnElement[Any]:
    """SUM of the field, exact on both databases.

    PostgreSQL sums numerics. SQLite reads JSON numbers as doubles: TOTAL() of those is inexact past 15
    digits; SUM() of them scaled to whole units of the last place fails with "integer overflow" past 2^63
    (about a hundred of the largest money amounts), and the CAST before it clips a single value of many
    places (10^14 with 8 places) to 2^63-1. No bound on each value bounds a sum over any number of
    records, so SQLite adds with decimal_sum() (storage/database.py): exact, at 1-2 µs more per row.
    """
    if dialect != "sqlite":
        return sa.func.sum(column)
    return sa.type_coerce(sa.func.decimal_sum(column), sa.String())


def _decimal(raw: Any, places: int | None) -> Decimal:
    """The database's sum (a Decimal from PostgreSQL, decimal text from SQLite) with the field's places."""
    number = Decimal(str(raw))
    # EXACT: a sum of more than 28 digits would make quantize in the default context raise.
    return number.quantize(Decimal(1).scaleb(-places), context=EXACT) if places is not None else number


__all__ = ["Column", "board_totals"]
