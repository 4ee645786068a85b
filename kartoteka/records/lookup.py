"""Titles of records for links and reference pickers, within the reader's read scope."""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from kartoteka.metadata.fieldtypes import unstorable
from kartoteka.metadata.model import EntityDef
from kartoteka.records.access import viewable_fields
from kartoteka.records.model import Principal
from kartoteka.records.query import check_search_text, like_pattern
from kartoteka.records.scopes import ReadableShape, bound_readable_where, readable_shape, readable_where, trash_where
from kartoteka.records.service import RecordService
from kartoteka.storage.database import casefold
from kartoteka.storage.reading import reader
from kartoteka.storage.tables import records

MAX_SUGGESTIONS = 20
MAX_EXACT = 5  # records sharing one title: enough to say "several are called ..."
MAX_NAMESAKES = 200  # records sharing titles whose picker texts are compared (beyond it: "#id" tells them apart)
_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits: "²".isdigit() is true, but int("²") fails


def _shape(service: RecordService, entity_name: str, user: Principal) -> ReadableShape | None:
    """Which records of the entity the user may read; None for none or an unknown entity."""
    entity = service.metadata.entities.get(entity_name)
    return None if entity is None else readable_shape(service.metadata, user, entity)


def _readable(service: RecordService, entity_name: str, user: Principal) -> list[sa.ColumnElement[bool]] | None:
    """WHERE clauses for live records of the entity the user may read; None for none or an unknown entity."""
    entity = service.metadata.entities.get(entity_name)
    return None if entity is None else readable_where(service.metadata, user, entity)


# Titles and picker texts of given records are read for every list, card and form that shows references: their
# statements are built once per entity and kind of scope, the ids and the user bound per call.
@functools.lru_cache(maxsize=1024)
def _titles_by_ids(entity_name: str, kind: str) -> sa.Select[Any]:
    return sa.select(records.c.id, records.c.title).where(records.c.id.in_(sa.bindparam("ids", expanding=True)),
                                                          *bound_readable_where(entity_name, kind))


@functools.lru_cache(maxsize=1024)
def _picker_by_ids(entity_name: str, kind: str) -> sa.Select[Any]:
    return (sa.select(records.c.id, records.c.title, records.c.data)
            .where(records.c.id.in_(sa.bindparam("ids", expanding=True)), *bound_readable_where(entity_name, kind))
            .order_by(records.c.id).limit(sa.bindparam("limit", type_=sa.Integer())))


def record_titles(service: RecordService, entity_name: str, ids: Iterable[int], user: Principal) -> dict[int, str]:
    """id → title of the records among `ids` the user may read (titles never hold restricted fields)."""
    wanted = sorted({i for i in ids if isinstance(i, int) and not isinstance(i, bool)})
    shape = _shape(service, entity_name, user)
    if not wanted or shape is None:
        return {}
    with reader(service.engine).connect() as conn:
        rows = conn.execute(_titles_by_ids(shape.entity, shape.kind), {"ids": wanted, **shape.params})
        return {row.id: row.title for row in rows}


def trashed_titles(service: RecordService, entity_name: str, ids: Iterable[int], user: Principal) -> dict[int, str]:
    """id -> title of the records among `ids` that are in the trash and that the user could read if they were not:
    a reference to one shows it as deleted, not as a broken link."""
    wanted = sorted({i for i in ids if isinstance(i, int) and not isinstance(i, bool)})
    entity = service.metadata.entities.get(entity_name)
    where = None if entity is None or not wanted else trash_where(service.metadata, user, entity, "read")
    if where is None:
        return {}
    with reader(service.engine).connect() as conn:
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
    with reader(service.engine).connect() as conn:
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
    shape = _shape(service, entity_name, user)
    wanted = {i for i in ids if isinstance(i, int) and not isinstance(i, bool)}
    texts = {t.strip() for t in titles if t.strip() and unstorable(t) is None}
    if shape is None or not (wanted or texts):
        return []
    entity = service.metadata.entities[entity_name]
    shown = [n for n in entity.picker if n in viewable_fields(entity, user)]
    if not texts and not namesakes:  # the picked records of a form or a card: a statement built once
        with reader(service.engine).connect() as conn:
            found = conn.execute(_picker_by_ids(shape.entity, shape.kind),
                                 {"ids": sorted(wanted), "limit": limit, **shape.params}).all()
    else:
        found = _found_by_titles(service, entity, user, wanted, texts, namesakes, limit)
    return [PickerRow(row.id, row.title, service.typed_values(entity, {n: (row.data or {}).get(n) for n in shown}))
            for row in found]


def _found_by_titles(service: RecordService, entity: EntityDef, user: Principal, wanted: set[int], texts: set[str],
                     namesakes: bool, limit: int) -> list[sa.Row[Any]]:
    """Rows of `picker_rows` that name records by title (typed text, namesakes of the picked ones)."""
    where = readable_where(service.metadata, user, entity) or [sa.false()]
    title = casefold(records.c.title, service.dialect)
    clauses = []
    if wanted:
        clauses.append(records.c.id.in_(wanted))
    if wanted and namesakes:
        named = sa.select(title).where(records.c.id.in_(wanted), *where).scalar_subquery()
        clauses.append(title.in_(named))
    if texts:
        clauses.append(title.in_([casefold(sa.literal(t, sa.String()), service.dialect) for t in sorted(texts)]))
    query = (sa.select(records.c.id, records.c.title, records.c.data).where(*where, sa.or_(*clauses))
             .order_by(records.c.id).limit(limit))
    with reader(service.engine).connect() as conn:
        return list(conn.execute(query).all())
