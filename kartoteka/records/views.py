"""Saved views: a list's filters, search and sort saved under a name, private or shared with everybody.

A view stores the list URL's query string as it was (minus the page cursor and the CSRF token), so
opening it is a redirect to the list with that query; the list checks the filters as on any request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import sqlalchemy as sa

from kartoteka.errors import BadRequest, Conflict, NotFound, PermissionDenied
from kartoteka.messages import Message
from kartoteka.records.model import Principal
from kartoteka.storage.database import fold
from kartoteka.storage.reading import reader
from kartoteka.storage.tables import saved_views
from kartoteka.storage.times import utc

MAX_NAME = 100
MAX_QUERY = 2000
MAX_ENTITY = 63
# Keys of a list URL that describe a moment, not the view: the page reached and the form's token.
DROPPED_KEYS = frozenset({"cursor", "csrf_token"})


@dataclass(frozen=True)
class SavedView:
    """A saved list filter; `mine` is true when the reading user is its author."""

    id: int
    user_id: int
    entity: str
    name: str
    query: str
    shared: bool
    created_at: datetime
    mine: bool


def clean_query(query: str) -> str:
    """The query string without `cursor` and `csrf_token`, repeated keys and their order kept."""
    pairs = parse_qsl(query.strip().removeprefix("?"), keep_blank_values=True)
    return urlencode([(key, value) for key, value in pairs if key not in DROPPED_KEYS], safe=",")


def _view(row: sa.Row[Any], user: Principal) -> SavedView:
    return SavedView(row.id, row.user_id, row.entity, row.name, row.query, bool(row.shared), utc(row.created_at),
                     row.user_id == user.id)


def _validate(user: Principal, entity: str, name: str, query: str) -> None:
    if user.id is None:
        raise BadRequest(Message("view.anonymous", "Only a signed-in user can save views."))
    if not entity or len(entity) > MAX_ENTITY:
        raise BadRequest(Message("view.invalid_entity", "'{entity}' is not a valid entity name.", entity=entity))
    if not name:
        raise BadRequest(Message("view.name_missing", "The view needs a name."))
    if len(name) > MAX_NAME:
        raise BadRequest(Message("view.name_too_long", "The view name may have at most {limit} characters (it has "
                                 "{count}).", limit=MAX_NAME, count=len(name)))
    if len(query) > MAX_QUERY:
        raise BadRequest(Message("view.query_too_long", "The view's filters are too long: at most {limit} characters "
                                 "(they have {count}).", limit=MAX_QUERY, count=len(query)))


def _upsert(engine: sa.Engine, user: Principal, entity: str, name: str, query: str, shared: bool,
            now: datetime) -> SavedView:
    with engine.begin() as conn:
        row = conn.execute(sa.select(saved_views).where(
            saved_views.c.user_id == user.id, saved_views.c.entity == entity, saved_views.c.name == name,
        ).with_for_update()).first()
        if row is None:
            view_id: int = conn.execute(sa.insert(saved_views).values(
                user_id=user.id, entity=entity, name=name, query=query, shared=shared, created_at=now,
            ).returning(saved_views.c.id)).scalar_one()
        else:
            view_id = row.id
            conn.execute(sa.update(saved_views).where(saved_views.c.id == view_id).values(query=query, shared=shared))
        stored = conn.execute(sa.select(saved_views).where(saved_views.c.id == view_id)).one()
    return _view(stored, user)


def save_view(engine: sa.Engine, user: Principal, entity: str, name: str, query: str, shared: bool,
              now: datetime) -> SavedView:
    """Save `query` as the user's view `name` of `entity`, replacing a view of the same name; BadRequest if invalid."""
    name = name.strip()
    query = clean_query(query)
    _validate(user, entity, name, query)
    try:
        return _upsert(engine, user, entity, name, query, shared, now)
    except sa.exc.IntegrityError:
        # Another request inserted the same name between our select and insert: now it is an update.
        try:
            return _upsert(engine, user, entity, name, query, shared, now)
        except sa.exc.IntegrityError as error:
            raise Conflict(Message("view.save_race", "The view '{name}' could not be saved; try again.",
                                   name=name)) from error


# Keys of a list URL that name no field: the search text, the sort (its value names one), the count and board.
LIST_KEYS = frozenset({"q", "sort", "total", "board"})


def names_fields(query: str) -> set[str]:
    """The field names a view's query string filters or sorts by (`stage__ne=won&sort=-amount`: stage, amount)."""
    named = set()
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "sort":
            named.add(value.strip().lstrip("-"))
        elif key not in LIST_KEYS:
            named.add(key.split("__", 1)[0])
    return named - {""}


# Read by every list page: built once, the entity and user bound per call.
_VIEWS_OF = sa.select(saved_views).where(
    saved_views.c.entity == sa.bindparam("entity"),
    sa.or_(saved_views.c.user_id == sa.bindparam("user_id"), saved_views.c.shared))


def list_views(engine: sa.Engine, user: Principal, entity: str,
               readable: Callable[[str], bool] | None = None) -> list[SavedView]:
    """The user's own views of `entity` and those others shared: own first, then by name (case-insensitive).

    With `readable`, a view someone else shared is left out when it filters or sorts by a field the user
    may not view: its name and filters would tell of the hidden field (a threshold on a margin, say).
    """
    with reader(engine).connect() as conn:
        views = [_view(row, user) for row in conn.execute(_VIEWS_OF, {"entity": entity, "user_id": user.id})]
    if readable is not None:
        views = [v for v in views if v.mine or all(readable(name) for name in names_fields(v.query))]
    return sorted(views, key=lambda v: (not v.mine, fold(v.name), v.name, v.id))


def delete_view(engine: sa.Engine, user: Principal, view_id: int) -> None:
    """Delete the user's own view; NotFound if the user cannot see it, PermissionDenied if somebody else's."""
    with engine.begin() as conn:
        row = conn.execute(sa.select(saved_views).where(saved_views.c.id == view_id).with_for_update()).first()
        if row is None or (row.user_id != user.id and not row.shared):
            raise NotFound(Message("view.not_found", "There is no saved view {id}.", id=view_id))
        if row.user_id != user.id:
            raise PermissionDenied(Message("view.not_author", "Only the author of a shared view may delete it."))
        conn.execute(sa.delete(saved_views).where(saved_views.c.id == view_id))
