"""Timers for the records that already exist when a date rule is added, enabled or changed (a worker's job).

A save stores its record's timers (timers.schedule_timers), so a rule that comes later, or whose field, offset or
working-hours window changes, would never fire for the records saved before it: the silent "date rule that never
fires". rule_date_syncs remembers the trigger each rule's timers were computed for; when the metadata's trigger
differs, one worker (a lease) recomputes that rule's timers over the card's live records in batches. A moment
already past is stored fired, as on a save: a new rule does not fire at once for every old date.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kartoteka.metadata.model import EntityDef, RuleDef
from kartoteka.rules.outbox import utc
from kartoteka.rules.timers import due_at
from kartoteka.storage.database import hold_transaction
from kartoteka.storage.tables import records, rule_date_syncs, rule_timers

if TYPE_CHECKING:
    from kartoteka.rules.engine import RuleEngine

LEASE = timedelta(minutes=10)
BATCH = 500


def trigger_text(rule: RuleDef) -> str:
    """What a date rule's timers depend on, as text: its field, offset and window."""
    trigger = rule.trigger
    return f"{trigger.field}|{int(trigger.offset.total_seconds())}|{trigger.window!r}"[:500]


def sync_date_timers(engine: RuleEngine, now: datetime) -> int:
    """Recompute the timers of every date rule whose trigger changed since its timers were computed; rules synced."""
    with engine.engine.connect() as conn:
        known = {(r.entity, r.rule_key): r for r in conn.execute(sa.select(rule_date_syncs))}
    current = {(entity.name, rule.key): (entity, rule) for entity in engine.metadata.entities.values()
               for rule in engine.dated(entity)}
    gone = [key for key in known if key not in current]
    if gone:
        _forget(engine.engine, gone)
    synced = 0
    for key, (entity, rule) in current.items():
        seen = known.get(key)
        if seen is not None and seen.trigger == trigger_text(rule):
            continue
        if _claim(engine.engine, entity, rule, seen, now):
            _recompute(engine, entity, rule, now)
            with engine.engine.begin() as conn:
                conn.execute(sa.update(rule_date_syncs).where(*_key(entity.name, rule.key))
                             .values(trigger=trigger_text(rule), synced_at=now, leased_until=None))
            synced += 1
    return synced


def _key(entity: str, rule_key: str) -> tuple[sa.ColumnElement[bool], ...]:
    return rule_date_syncs.c.entity == entity, rule_date_syncs.c.rule_key == rule_key


def _forget(db: sa.Engine, keys: list[tuple[str, str]]) -> None:
    """A rule removed or disabled: its pending timers go, and enabling it again recomputes them."""
    with db.begin() as conn:
        for entity, rule_key in keys:
            conn.execute(sa.delete(rule_date_syncs).where(*_key(entity, rule_key)))
            conn.execute(sa.delete(rule_timers).where(rule_timers.c.entity == entity,
                                                      rule_timers.c.rule_key == rule_key,
                                                      rule_timers.c.fired_at.is_(None)))


def _claim(db: sa.Engine, entity: EntityDef, rule: RuleDef, seen: sa.Row[Any] | None, now: datetime) -> bool:
    """Take the lease on recomputing `rule`'s timers; False when another worker holds it."""
    with db.begin() as conn:
        if seen is None:
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(rule_date_syncs).values(entity=entity.name, rule_key=rule.key,
                                                                   leased_until=now + LEASE))
            except sa.exc.IntegrityError:
                return False  # another worker started on it
            return True
        free = rule_date_syncs.c.leased_until.is_(None) | (rule_date_syncs.c.leased_until < now)
        taken = conn.execute(sa.update(rule_date_syncs).where(*_key(entity.name, rule.key), free)
                             .values(leased_until=now + LEASE))
        return taken.rowcount == 1


def _recompute(engine: RuleEngine, entity: EntityDef, rule: RuleDef, now: datetime) -> None:
    service = engine._service()
    field = entity.fields[rule.trigger.field or ""]
    after_id = 0
    while True:
        with engine.engine.begin() as conn:
            # Read and write under the records' locks, so a save of the same record waits (it moves its timer itself).
            hold_transaction(conn, immediate=True)
            query = (sa.select(records.c.id, records.c.data)
                     .where(records.c.entity == entity.name, records.c.deleted_at.is_(None), records.c.id > after_id)
                     .order_by(records.c.id).limit(BATCH))
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(read=True)
            rows = conn.execute(query).all()
            if not rows:
                return
            after_id = rows[-1].id
            ids = [row.id for row in rows]
            timers = {t.record_id: t for t in conn.execute(
                sa.select(rule_timers.c.id, rule_timers.c.record_id, rule_timers.c.due_at, rule_timers.c.fired_at)
                .where(rule_timers.c.entity == entity.name, rule_timers.c.rule_key == rule.key,
                       rule_timers.c.record_id.in_(ids)))}
            for row in rows:
                stored = (row.data or {}).get(field.name)
                value = service.typed_values(entity, {field.name: stored})[field.name] if stored is not None else None
                _store(conn, entity, rule, row.id, due_at(rule, value), timers.get(row.id), now)


def _store(conn: sa.Connection, entity: EntityDef, rule: RuleDef, record_id: int, moment: datetime | None,
           timer: sa.Row[Any] | None, now: datetime) -> None:
    if moment is None:
        if timer is not None:
            conn.execute(sa.delete(rule_timers).where(rule_timers.c.id == timer.id))
        return
    if timer is not None and utc(timer.due_at) == moment:
        return
    fired = None if moment > now else (utc(timer.fired_at) if timer is not None and timer.fired_at else now)
    if timer is None:
        conn.execute(sa.insert(rule_timers).values(entity=entity.name, rule_key=rule.key, record_id=record_id,
                                                   due_at=moment, fired_at=fired))
    else:
        conn.execute(sa.update(rule_timers).where(rule_timers.c.id == timer.id)
                     .values(due_at=moment, fired_at=fired, leased_until=None))
