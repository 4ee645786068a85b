"""The trash: deleted records of a card, who deleted them and when, and purging them for good.

Deleting is soft (RecordService.delete sets deleted_at): the card leaves lists, search, pickers and boards, keeps its
id, links, tasks and timeline, and RecordService.restore brings it back. Those who may delete a card see its trash,
within their delete scope. Purging removes a record and everything that hangs on it (links, files' links, tasks,
notifications, timeline, timers through the foreign keys; its journal rows here), except what the law asks to keep:
the consent archive has no tie to the records table and outlives them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from kartoteka.errors import BadRequest, PermissionDenied
from kartoteka.messages import Message
from kartoteka.records.model import Principal
from kartoteka.records.scopes import forbidden, trash_where
from kartoteka.records.service import RecordService
from kartoteka.storage.reading import reader
from kartoteka.storage.tables import journal, records, users
from kartoteka.storage.times import utc

PURGE_BATCH = 500


@dataclass(frozen=True)
class Trashed:
    """A record in the trash as its list shows it."""

    id: int
    title: str
    deleted_at: datetime
    deleted_by: int | None
    deleted_by_name: str | None
    version: int


@dataclass(frozen=True)
class TrashPage:
    items: tuple[Trashed, ...]
    next_cursor: str | None


def trash_page(service: RecordService, entity_name: str, user: Principal, *, limit: int = 50,
               cursor: str | None = None) -> TrashPage:
    """The card's records in the trash that `user` may restore, most recently deleted first."""
    entity = service.entity(entity_name)
    where = trash_where(service.metadata, user, entity)
    if where is None:
        raise PermissionDenied(forbidden(entity, "delete"))
    query = (sa.select(records.c.id, records.c.title, records.c.deleted_at, records.c.updated_by, records.c.version,
                       users.c.display_name)
             .select_from(records.outerjoin(users, users.c.id == records.c.updated_by)).where(*where))
    if cursor:
        moment, last_id = _decode(cursor)
        query = query.where(sa.or_(records.c.deleted_at < moment,
                                   sa.and_(records.c.deleted_at == moment, records.c.id < last_id)))
    query = query.order_by(records.c.deleted_at.desc(), records.c.id.desc()).limit(limit + 1)
    with reader(service.engine).connect() as conn:
        rows = conn.execute(query).all()
    items = tuple(Trashed(r.id, r.title, utc(r.deleted_at), r.updated_by, r.display_name, r.version)
                  for r in rows[:limit])
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = f"{utc(last.deleted_at).isoformat()}|{last.id}"
    return TrashPage(items, next_cursor)


def _decode(cursor: str) -> tuple[datetime, int]:
    moment_text, _, id_text = cursor.partition("|")
    try:
        if not (id_text.isascii() and id_text.isdigit() and len(id_text) < 19) or len(moment_text) > 40:
            raise ValueError(cursor)
        return utc(datetime.fromisoformat(moment_text)), int(id_text)
    except ValueError:
        raise BadRequest(Message("trash.cursor_invalid", "The cursor '{cursor}' was not given by this list.",
                                 cursor=cursor[:40])) from None


def purge(service: RecordService, now: datetime, older_than: timedelta, *, entity: str | None = None,
          record_ids: list[int] | None = None) -> int:
    """Remove for good the records deleted before `now - older_than` (or those of `record_ids` in the trash);
    how many went."""
    where: list[Any] = [records.c.deleted_at.is_not(None), records.c.deleted_at <= utc(now - older_than)]
    if entity is not None:
        where.append(records.c.entity == service.entity(entity).name)
    if record_ids is not None:
        where.append(records.c.id.in_(record_ids))
    purged = 0
    while True:
        with service.engine.begin() as conn:
            rows = conn.execute(sa.select(records.c.id, records.c.entity).where(*where)
                                .order_by(records.c.id).limit(PURGE_BATCH)).all()
            if not rows:
                return purged
            ids = [r.id for r in rows]
            conn.execute(sa.delete(journal).where(journal.c.record_id.in_(ids)))
            conn.execute(sa.delete(records).where(records.c.id.in_(ids), records.c.deleted_at.is_not(None)))
        purged += len(ids)


