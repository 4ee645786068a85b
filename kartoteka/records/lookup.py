"""Titles of records for links and reference pickers, within the reader's read scope."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from kartoteka.metadata.fieldtypes import unstorable
from kartoteka.records.access import viewable_fields
from kartoteka.records.model import Principal
from kartoteka.records.query import check_search_text, like_pattern
from kartoteka.records.scopes import readable_where
from kartoteka.records.service import RecordService
from kartoteka.storage.database import casefold
from kartoteka.storage.tables import records

MAX_SUGGESTIONS = 20
MAX_EXACT = 5  # records sharing one title: enough to say "several are called ..."
MAX_NAMESAKES = 200  # records sharing titles whose picker texts are compared (beyond it: "#id" tells them apart)
_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits: "²".isdigit() is true, but int("²") fails


def _readable(service: RecordService, entity_name: str, user: Principal) -> list[sa.ColumnElement[bool]] | None:
    """WHERE clauses for live records of the entity the user may read; None for none or an unknown entity."""
    entity = service.metadata.entities.get(entity_name)
    return None if entity is None else readable_where(service.metadata, user, entity)


def record_titles(service: RecordService, entity_name: str, ids: Iterable[int], user: Principal) -> dict[int, str]:
    """id → title of the records among `ids` the user may read (titles never hold restricted fields)."""
    wanted = {i for i in ids if isinstance(i, int)}
    where = _readable(service, entity_name, user)
    if not wanted or where is None:
        return {}
    with service.engine.connect() as conn:
        rows = conn.execute(sa.select(records.c.id, records.c.title).where(records.c.id.in_(wanted), *where))
        return {row.id: row.title for row in rows}


def search_titles(service: RecordService, entity_name: str, text: str, user: Principal,
                  limit: int = MAX_SUGGESTIONS) -> list[tuple[int, str]]:
    """(id, title) of readable records whose title contains `text` (or whose id it is), for pickers.

    BadRequest for text longer than MAX_SEARCH_LENGTH or holding NUL or surrogates.
    """
    where = _readable(service, entity_name, user)
    if where is None:
        return []
    text = check_search_text(text.strip().lstrip("#").strip())
    title = casefold(records.c.title, service.dialect)
    if _ID.fullmatch(text):
        where.append(sa.or_(records.c.id == int(text), title.like(like_pattern(text), escape="\\")))
    elif text:
        where.append(title.like(like_pattern(text), escape="\\"))
    query = sa.select(records.c.id, records.c.title).where(*where).order_by(records.c.title, records.c.id)
    with service.engine.connect() as conn:
        return [(row.id, row.title) for row in conn.execute(query.limit(limit))]


@dataclass(frozen=True)
class PickerRow:
    """A record as a reference picker tells it from others: its title and its `picker` fields the user may see."""

    id: int
    title: str
    values: Mapping[str, Any]


def picker_rows(service: RecordService, entity_name: str, user: Principal, *, ids: Iterable[int] = (),
                titles: Collection[str] = (), namesakes: bool = False, limit: int = MAX_NAMESAKES) -> list[PickerRow]:
    """Readable records among `ids`, or whose title is one of `titles` ignoring case, with their picker values;
    with `namesakes`, also every readable record that shares a title with one of `ids` (in the same statement).

    At most `limit` rows, in id order; the picker fields are the entity's `picker:` ones the user may view.
    """
    where = _readable(service, entity_name, user)
    wanted = {i for i in ids if isinstance(i, int)}
    texts = {t.strip() for t in titles if t.strip() and unstorable(t) is None}
    if where is None or not (wanted or texts):
        return []
    entity = service.entity(entity_name)
    title = casefold(records.c.title, service.dialect)
    clauses = []
    if wanted:
        clauses.append(records.c.id.in_(wanted))
    if wanted and namesakes:
        named = sa.select(title).where(records.c.id.in_(wanted), *where).scalar_subquery()
        clauses.append(title.in_(named))
    if texts:
        clauses.append(title.in_([casefold(sa.literal(t, sa.String()), service.dialect) for t in sorted(texts)]))
    shown = [n for n in entity.picker if n in viewable_fields(entity, user)]
    query = (sa.select(records.c.id, records.c.title, records.c.data).where(*where, sa.or_(*clauses))
             .order_by(records.c.id).limit(limit))
    with service.engine.connect() as conn:
        rows = conn.execute(query).all()
    result = []
    for row in rows:
        values = service.typed_values(entity, {n: (row.data or {}).get(n) for n in shown})
        result.append(PickerRow(row.id, row.title, values))
    return result
