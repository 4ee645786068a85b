"""In-app notifications: each is its user's alone (anyone else's is NotFound), unread first, then newest first.

The text was rendered for its recipient when it was written (with the fields they could view then); a link to the
card is only a link: opening it checks the reader's scope again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from kartoteka.activity.model import (
    Notification,
    NotificationPage,
    cursor_int,
    decode_cursor,
    encode_cursor,
    stored,
    utc,
)
from kartoteka.errors import BadRequest, NotFound
from kartoteka.messages import Message
from kartoteka.records.model import Principal
from kartoteka.storage.reading import reader
from kartoteka.storage.tables import notifications

MAX_IDS = 500
_UNREAD, _READ = 0, 1


def _notification(row: sa.Row[Any]) -> Notification:
    return Notification(id=row.id, text=row.text, entity=row.entity, record_id=row.record_id, rule_key=row.rule_key,
                        created_at=utc(row.created_at) or row.created_at, read_at=utc(row.read_at))


def _user_id(user: Principal) -> int:
    if user.id is None:
        raise NotFound(Message("notification.no_user", "Only a signed-in user has notifications."))
    return user.id


def list_notifications(engine: sa.Engine, user: Principal, *, limit: int = 50, cursor: str | None = None,
                       unread_only: bool = False) -> NotificationPage:
    """A page of `user`'s notifications: the unread ones first, each group newest first."""
    user_id = _user_id(user)
    group, after = _UNREAD, None
    if cursor:
        group_text, id_text = decode_cursor(cursor, 2)
        group, after = cursor_int(group_text), cursor_int(id_text)
    found: list[tuple[int, Notification]] = []
    with reader(engine).connect() as conn:
        for this_group in (_UNREAD, _READ):
            if this_group < group or (this_group == _READ and unread_only) or len(found) > limit:
                continue
            query = sa.select(notifications).where(
                notifications.c.user_id == user_id,
                notifications.c.read_at.is_(None) if this_group == _UNREAD else notifications.c.read_at.is_not(None))
            if after is not None and this_group == group:
                query = query.where(notifications.c.id < after)
            query = query.order_by(notifications.c.id.desc()).limit(limit + 1 - len(found))
            found.extend((this_group, _notification(row)) for row in conn.execute(query))
    page = found[:limit]
    next_cursor = encode_cursor(page[-1][0], page[-1][1].id) if len(found) > limit else None
    return NotificationPage(tuple(n for _, n in page), next_cursor)


def unread_count(engine: sa.Engine, user: Principal) -> int:
    """How many of `user`'s notifications are unread."""
    user_id = _user_id(user)
    with reader(engine).connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(notifications).where(
            notifications.c.user_id == user_id, notifications.c.read_at.is_(None))).scalar() or 0)


def mark_read(engine: sa.Engine, user: Principal, now: datetime, ids: Sequence[int] | None = None) -> int:
    """Mark `ids` (all of `user`'s unread ones when None) read; how many were unread. Another's id is NotFound."""
    user_id = _user_id(user)
    if ids is not None and len(ids) > MAX_IDS:
        raise BadRequest(Message("notification.too_many_ids", "Mark at most {most} notifications at once.",
                                 most=MAX_IDS))
    where = [notifications.c.user_id == user_id]
    with engine.begin() as conn:
        if ids is not None:
            wanted = set(ids)
            mine = set(conn.execute(sa.select(notifications.c.id).where(
                notifications.c.id.in_(wanted), notifications.c.user_id == user_id)).scalars())
            missing = sorted(wanted - mine)
            if missing:
                raise NotFound(Message("notification.not_found", "There is no notification #{id}.", id=missing[0]))
            if not wanted:
                return 0
            where.append(notifications.c.id.in_(wanted))
        result = conn.execute(sa.update(notifications).where(*where, notifications.c.read_at.is_(None))
                              .values(read_at=stored(now)))
        return int(result.rowcount or 0)


def mark_card_read(engine: sa.Engine, user: Principal, now: datetime, entity: str, record_id: int) -> int:
    """Mark `user`'s unread notifications about one card read (they opened it); how many were unread. One UPDATE:
    callers that know nothing is unread (the header's count) do not call it, so a page read writes nothing."""
    user_id = _user_id(user)
    with engine.begin() as conn:
        result = conn.execute(sa.update(notifications).where(
            notifications.c.user_id == user_id, notifications.c.entity == entity,
            notifications.c.record_id == record_id, notifications.c.read_at.is_(None)).values(read_at=stored(now)))
        return int(result.rowcount or 0)


def get_notification(engine: sa.Engine, user: Principal, notification_id: int) -> Notification:
    """One of `user`'s notifications; NotFound for anyone else's."""
    user_id = _user_id(user)
    with reader(engine).connect() as conn:
        row = conn.execute(sa.select(notifications).where(notifications.c.id == notification_id,
                                                          notifications.c.user_id == user_id)).first()
    if row is None:
        raise NotFound(Message("notification.not_found", "There is no notification #{id}.", id=notification_id))
    return _notification(row)
