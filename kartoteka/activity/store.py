"""Tasks, notifications and timeline entries: the rows people and rules add about cards.

Functions take the connection of the caller's transaction: a rule's task is written with the save that fired it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from kartoteka.activity.model import stored
from kartoteka.storage.tables import notifications, tasks, timeline


def create_task(conn: sa.Connection, *, title: str, now: datetime, description: str = "",
                assignee: int | None = None, due_at: datetime | None = None, entity: str | None = None,
                record_id: int | None = None, created_by: int | None = None, rule_key: str | None = None) -> int:
    """Insert a task; its id."""
    inserted = conn.execute(sa.insert(tasks).values(
        title=title[:300], description=description[:5000], assignee=assignee,
        due_at=stored(due_at) if due_at is not None else None, entity=entity, record_id=record_id, rule_key=rule_key,
        created_by=created_by, created_at=stored(now), updated_at=stored(now),
    )).inserted_primary_key
    return int(inserted[0]) if inserted else 0


def notify(conn: sa.Connection, *, user_id: int, text: str, now: datetime, entity: str | None = None,
           record_id: int | None = None, rule_key: str | None = None) -> int:
    """Insert one user's notification; its id."""
    inserted = conn.execute(sa.insert(notifications).values(
        user_id=user_id, text=text[:2000], entity=entity, record_id=record_id, rule_key=rule_key,
        created_at=stored(now),
    )).inserted_primary_key
    return int(inserted[0]) if inserted else 0


def add_entry(conn: sa.Connection, *, entity: str, record_id: int, kind: str, now: datetime, body: str = "",
              payload: Mapping[str, Any] | None = None, user_id: int | None = None) -> int:
    """Insert a timeline entry (note, call, meeting, email, rule); its id."""
    inserted = conn.execute(sa.insert(timeline).values(
        entity=entity, record_id=record_id, kind=kind, body=body[:10000],
        payload=dict(payload) if payload is not None else None, user_id=user_id, created_at=stored(now),
    )).inserted_primary_key
    return int(inserted[0]) if inserted else 0
