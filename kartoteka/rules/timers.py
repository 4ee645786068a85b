"""Durable timers of date rules and the runs of scheduled rules, fired by `kartoteka worker`.

A date rule's due moment for each record is stored in rule_timers when the record is saved and moved when its date
changes (a fired timer whose date moves is due again); the worker claims due timers with a lease (several workers
fire each once: PostgreSQL skips rows another worker holds, SQLite has one writer), runs the rule, and marks it
fired. A worker that was down catches up: every timer due in the past fires once. A scheduled rule's next run
is one row of rule_schedules, claimed by moving `next_run_at` on with a compare-and-set, so one worker runs it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from cronsim import CronSim

from kartoteka.metadata.expressions import EvaluationError, Evaluator
from kartoteka.metadata.model import EntityDef, RuleDef, WorkWindow
from kartoteka.records.hooks import Origin
from kartoteka.records.model import SYSTEM
from kartoteka.rules.outbox import utc
from kartoteka.storage.tables import records, rule_schedules, rule_timers

if TYPE_CHECKING:
    from kartoteka.records.service import Change
    from kartoteka.rules.engine import RuleEngine

log = logging.getLogger(__name__)
LEASE = timedelta(minutes=5)
BATCH = 100


def due_at(rule: RuleDef, value: Any) -> datetime | None:
    """When `rule` (a date rule) is due for a record whose date field holds `value`."""
    if value is None:
        return None
    trigger = rule.trigger
    # A date's working day starts at 09:00 (UTC).
    moment = value if isinstance(value, datetime) else datetime(value.year, value.month, value.day, 9, 0, tzinfo=UTC)
    moment = moment + trigger.offset
    return into_window(moment, trigger.window) if trigger.window is not None else moment


def into_window(moment: datetime, window: WorkWindow) -> datetime:
    """`moment`, or the next start of `window` (a weekday, from..to) after it when it falls outside."""
    for _ in range(8):
        if moment.weekday() in window.weekdays:
            start = moment.replace(hour=window.start.hour, minute=window.start.minute, second=0, microsecond=0)
            end = moment.replace(hour=window.end.hour, minute=window.end.minute, second=0, microsecond=0)
            if moment < start:
                return start
            if moment <= end:
                return moment
        moment = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return moment


def schedule_timers(engine: RuleEngine, conn: sa.Connection, change: Change) -> None:
    """Store, move or drop the timers of the date rules of `change`'s record."""
    rules = [r for r in engine.dated(change.entity) if change.kind in ("created", "deleted", "restored")
             or r.trigger.field in change.changed]
    if not rules:
        return
    where = (rule_timers.c.entity == change.entity.name) & (rule_timers.c.record_id == change.record_id)
    now = engine.clock.now()
    if change.kind == "deleted":
        conn.execute(sa.delete(rule_timers).where(where))
        return
    for rule in rules:
        field_name = rule.trigger.field
        moment = due_at(rule, (change.after or {}).get(field_name))
        one = where & (rule_timers.c.rule_key == rule.key)
        if moment is None:
            conn.execute(sa.delete(rule_timers).where(one))
            continue
        # A moment already past when the date is saved (a record entered after the fact, a date set back) does not
        # fire: only a timer stored before its moment comes due, and fires late if the worker was down.
        # A rule that moves its own date (call again in a week) after the worker was down still fires, late.
        fired = now if moment <= now and change.origin.source not in ("rule", "schedule", "manual") else None
        moved = None if change.kind == "created" else conn.execute(  # a new record has no timers yet
            sa.update(rule_timers).where(one).values(due_at=moment, fired_at=fired, leased_until=None))
        if moved is None or moved.rowcount == 0:
            conn.execute(sa.insert(rule_timers).values(entity=change.entity.name, rule_key=rule.key,
                                                       record_id=change.record_id, due_at=moment, fired_at=fired))


def fire_due_timers(engine: RuleEngine, now: datetime) -> int:
    """Claim and fire the timers due by `now` (a worker's job); how many fired. (A timer stored already past its
    moment is stored fired: see schedule_timers.)"""
    fired = 0
    while True:
        claimed = _claim_timers(engine.engine, now)
        if not claimed:
            return fired
        for timer_id, entity_name, key, record_id in claimed:
            entity = engine.metadata.entities.get(entity_name)
            rule = engine.rule(entity, key) if entity is not None else None
            with engine.engine.begin() as conn:
                # Fired first, in the run's transaction: a rule that moves its own date sets the timer due again.
                conn.execute(sa.update(rule_timers).where(rule_timers.c.id == timer_id)
                             .values(fired_at=now, leased_until=None))
                if (entity is not None and rule is not None and rule.enabled
                        and not engine.states.disabled(entity.name, rule.key)):
                    engine.run_on_record(conn, entity, rule, record_id, SYSTEM, Origin("schedule"), "date")
            fired += 1


def _claim_timers(db: sa.Engine, now: datetime) -> list[tuple[int, str, str, int]]:
    due = (rule_timers.c.fired_at.is_(None) & (rule_timers.c.due_at <= now)
           & (rule_timers.c.leased_until.is_(None) | (rule_timers.c.leased_until < now)))
    with db.begin() as conn:
        query = sa.select(rule_timers.c.id, rule_timers.c.entity, rule_timers.c.rule_key, rule_timers.c.record_id
                          ).where(due).order_by(rule_timers.c.due_at).limit(BATCH)
        if db.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = [tuple(r) for r in conn.execute(query)]
        if not rows:
            return []
        taken = conn.execute(sa.update(rule_timers).where(rule_timers.c.id.in_([r[0] for r in rows]), due)
                             .values(leased_until=now + LEASE))
        if taken.rowcount != len(rows):  # another worker took some between (SQLite): take them one by one next time
            return []
    return rows  # type: ignore[return-value]


def next_run(cron: str, after: datetime) -> datetime:
    """The first moment after `after` that `cron` matches (UTC)."""
    naive = after.astimezone(UTC).replace(tzinfo=None)
    return next(CronSim(cron, naive)).replace(tzinfo=UTC)


def run_schedules(engine: RuleEngine, now: datetime) -> int:
    """Run the scheduled rules due by `now` (a worker's job), each once whatever the number of workers; runs made."""
    made = 0
    for entity in engine.metadata.entities.values():
        for rule in entity.rules:
            if rule.trigger.kind != "schedule" or not rule.enabled or rule.trigger.cron is None \
                    or engine.states.disabled(entity.name, rule.key):
                continue
            if _claim_schedule(engine.engine, entity.name, rule, now):
                made += run_scheduled(engine, entity, rule, now)
    return made


def _claim_schedule(db: sa.Engine, entity: str, rule: RuleDef, now: datetime) -> bool:
    cron = rule.trigger.cron or ""
    key = (rule_schedules.c.entity == entity) & (rule_schedules.c.rule_key == rule.key)
    with db.begin() as conn:
        row = conn.execute(sa.select(rule_schedules.c.next_run_at, rule_schedules.c.cron).where(key)).first()
        if row is None:
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(rule_schedules).values(entity=entity, rule_key=rule.key, cron=cron,
                                                                  next_run_at=next_run(cron, now)))
            except sa.exc.IntegrityError:
                return False  # another worker added it
            return False
        seen = utc(row.next_run_at)
        if row.cron != cron:  # the schedule was edited: start again from now
            conn.execute(sa.update(rule_schedules).where(key).values(cron=cron, next_run_at=next_run(cron, now)))
            return False
        if seen > now:
            return False
        taken = conn.execute(sa.update(rule_schedules).where(key, rule_schedules.c.next_run_at == row.next_run_at)
                             .values(next_run_at=next_run(cron, now), last_run_at=now))
        return taken.rowcount == 1


def run_scheduled(engine: RuleEngine, entity: EntityDef, rule: RuleDef, now: datetime) -> int:
    """Run a scheduled rule on every live record its condition selects, in batches; how many it ran on."""
    service = engine._service()
    made = 0
    after_id = 0
    while True:
        with engine.engine.connect() as conn:
            rows = conn.execute(sa.select(records.c.id, records.c.data, records.c.owner, records.c.created_at,
                                          records.c.updated_at)
                                .where(records.c.entity == entity.name, records.c.deleted_at.is_(None),
                                       records.c.id > after_id).order_by(records.c.id).limit(500)).all()
        if not rows:
            return made
        after_id = rows[-1].id
        empty = dict.fromkeys(entity.fields)  # a stored record leaves its empty fields out
        chosen = [row.id for row in rows
                  if _selects(engine, entity, rule, {**empty, **service.typed_values(entity, row.data)}, row)]
        for record_id in chosen:
            with engine.engine.begin() as conn:
                engine.run_on_record(conn, entity, rule, record_id, SYSTEM, Origin("schedule"), "schedule")
            made += 1


def _selects(engine: RuleEngine, entity: EntityDef, rule: RuleDef, values: dict[str, Any], row: Any) -> bool:
    if rule.condition is None:
        return True
    system = {"id": row.id, "owner": row.owner, "created_at": utc(row.created_at),
              "updated_at": utc(row.updated_at)}
    try:
        return bool(Evaluator({**values, **system}, engine.clock).value(rule.condition))
    except EvaluationError:
        return True  # run_on_record evaluates it again and logs the failure


def timers_of(conn: sa.Connection, entity: str, record_id: int) -> Iterable[tuple[str, datetime]]:
    """The pending timers of one record: (rule key, due moment), soonest first (the card shows what comes next)."""
    return [(r.rule_key, utc(r.due_at)) for r in conn.execute(
        sa.select(rule_timers.c.rule_key, rule_timers.c.due_at).where(
            rule_timers.c.entity == entity, rule_timers.c.record_id == record_id, rule_timers.c.fired_at.is_(None))
        .order_by(rule_timers.c.due_at))]
