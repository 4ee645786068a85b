"""The outbox: side effects (e-mails, webhooks) written in the saving transaction, delivered after commit.

Payloads: an e-mail is {"to": [addresses], "subject": text, "body": text}; a webhook is {"type": event,
"timestamp": ISO 8601, "data": {...}, "secret_env": name or None}, its body the JSON of type, timestamp and data
(the Standard Webhooks payload shape). `delivery_id` is the idempotency key, the webhook's `webhook-id`.

A delivery is `pending` until delivered (`done`) or given up (`dead`). Workers claim due ones by leasing them
(`leased_until`): on PostgreSQL with `FOR UPDATE SKIP LOCKED`, on SQLite by one UPDATE (a single writer), so two
workers never hold the same delivery; a worker that dies leaves its lease to expire, and the delivery is claimed
again (at least once, under the same delivery id). Each claim counts an attempt.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from kartoteka.errors import BadRequest, Conflict, NotFound
from kartoteka.messages import Message
from kartoteka.storage.tables import outbox
from kartoteka.storage.times import utc

KINDS = ("email", "webhook")
STATES = ("pending", "done", "dead")
MAX_BACKOFF = timedelta(hours=6)
_ERROR_LENGTH = 2000


def enqueue(conn: sa.Connection, *, kind: str, destination: str, payload: Mapping[str, Any], now: datetime,
            entity: str | None = None, record_id: int | None = None, rule_key: str | None = None) -> str:
    """Write one delivery to the outbox in the caller's transaction; its delivery id."""
    if kind not in KINDS:
        raise ValueError(f"unknown delivery kind '{kind}'; known: {', '.join(KINDS)}")
    delivery_id = "msg_" + secrets.token_hex(16)
    conn.execute(sa.insert(outbox).values(
        delivery_id=delivery_id, kind=kind, destination=destination[:2000], payload=dict(payload), state="pending",
        attempts=0, next_attempt_at=now, entity=entity, record_id=record_id, rule_key=rule_key, created_at=now,
    ))
    return delivery_id


@dataclass(frozen=True)
class Delivery:
    """One row of the outbox as a worker or an administrator sees it."""

    id: int
    delivery_id: str
    kind: str
    destination: str
    payload: Mapping[str, Any]
    state: str
    attempts: int
    next_attempt_at: datetime
    leased_until: datetime | None
    last_error: str | None
    entity: str | None
    record_id: int | None
    rule_key: str | None
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def of(cls, row: Any) -> Delivery:
        """From a row of the outbox table (every column)."""
        return cls(id=row.id, delivery_id=row.delivery_id, kind=row.kind, destination=row.destination,
                   payload=row.payload or {}, state=row.state, attempts=row.attempts,
                   next_attempt_at=utc(row.next_attempt_at),  # type: ignore[arg-type]
                   leased_until=utc(row.leased_until), last_error=row.last_error, entity=row.entity,
                   record_id=row.record_id, rule_key=row.rule_key,
                   created_at=utc(row.created_at), delivered_at=utc(row.delivered_at))  # type: ignore[arg-type]

    def as_json(self) -> dict[str, Any]:
        """What the API shows of it (the payload stays in the table)."""
        def when(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None
        return {"id": self.id, "delivery_id": self.delivery_id, "kind": self.kind, "destination": self.destination,
                "state": self.state, "attempts": self.attempts, "next_attempt_at": when(self.next_attempt_at),
                "leased_until": when(self.leased_until), "last_error": self.last_error, "entity": self.entity,
                "record_id": self.record_id, "rule_key": self.rule_key, "created_at": when(self.created_at),
                "delivered_at": when(self.delivered_at)}


@contextmanager
def bookkeeping(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction of the workers' own bookkeeping (claims, results). On PostgreSQL it commits without waiting for
    the WAL to reach the disk (synchronous_commit off): a database crash may forget its last fraction of a second,
    which makes a delivery repeat under its id, never lose one; and a worker records a result in a fraction of the
    time (deliveries per second: bench/README.md)."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
        yield conn


def _due(now: datetime, kinds: Sequence[str]) -> sa.ColumnElement[bool]:
    return sa.and_(outbox.c.state == "pending", outbox.c.next_attempt_at <= now,
                   sa.or_(outbox.c.leased_until.is_(None), outbox.c.leased_until <= now), outbox.c.kind.in_(kinds))


def claim(engine: sa.Engine, now: datetime, *, kinds: Sequence[str] = KINDS, limit: int = 20,
          lease: timedelta = timedelta(minutes=5)) -> list[Delivery]:
    """Lease up to `limit` due deliveries of `kinds` until now + lease and count an attempt each; committed here,
    so that delivering happens outside any transaction. Two workers never get the same row."""
    if not kinds or limit < 1:
        return []
    due = _due(now, kinds)
    chosen = sa.select(outbox.c.id).where(due).order_by(outbox.c.next_attempt_at, outbox.c.id).limit(limit)
    lease_and_count = {"leased_until": now + lease, "attempts": outbox.c.attempts + 1}
    with bookkeeping(engine) as conn:
        if engine.dialect.name == "postgresql":
            # Two statements: PostgreSQL may run `id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)` inside an UPDATE
            # more than once and so claim more than n rows; a plain SELECT honours the LIMIT.
            ids: list[int] = list(conn.execute(chosen.with_for_update(skip_locked=True)).scalars())
            if not ids:
                return []
            rows = conn.execute(sa.update(outbox).where(outbox.c.id.in_(ids)).values(**lease_and_count)
                                .returning(*outbox.c)).all()
        else:  # one statement: SQLite takes the write lock first, so nobody claims between the choice and the update
            rows = conn.execute(sa.update(outbox).where(outbox.c.id.in_(chosen), due).values(**lease_and_count)
                                .returning(*outbox.c)).all()
    return sorted((Delivery.of(row) for row in rows), key=lambda d: (d.next_attempt_at, d.id))


def release(engine: sa.Engine, deliveries: Sequence[Delivery]) -> None:
    """Give back claimed deliveries that were not attempted (a worker stopping mid-batch): due again at once."""
    for delivery in deliveries:
        with bookkeeping(engine) as conn:
            # The claim counted an attempt that was never made (and a claimed row has at least that one).
            conn.execute(sa.update(outbox).where(*_held(delivery)).values(leased_until=None,
                                                                          attempts=outbox.c.attempts - 1))


def extend(engine: sa.Engine, deliveries: Sequence[Delivery], until: datetime) -> list[Delivery]:
    """Move the lease of deliveries claimed together on to `until`: those still held, with the new lease as their
    token (a delivery whose lease expired and that another worker claimed is not ours to deliver any more)."""
    if not deliveries:
        return []
    with bookkeeping(engine) as conn:
        held: set[int] = set(conn.execute(sa.update(outbox).where(
            outbox.c.id.in_([d.id for d in deliveries]), outbox.c.state == "pending",
            outbox.c.leased_until == deliveries[0].leased_until,
        ).values(leased_until=until).returning(outbox.c.id)).scalars())
    return [replace(d, leased_until=until) for d in deliveries if d.id in held]


def _held(delivery: Delivery) -> tuple[sa.ColumnElement[bool], ...]:
    """The row is still pending under this claim's lease (its lease time is the claim's token)."""
    return outbox.c.id == delivery.id, outbox.c.state == "pending", outbox.c.leased_until == delivery.leased_until


def record_delivered(engine: sa.Engine, deliveries: Sequence[Delivery], now: datetime) -> int:
    """Mark deliveries done, in one statement (whoever holds their lease now); how many were still pending."""
    if not deliveries:
        return 0
    with bookkeeping(engine) as conn:
        result = conn.execute(sa.update(outbox).where(outbox.c.id.in_([d.id for d in deliveries]),
                                                      outbox.c.state == "pending")
                              .values(state="done", delivered_at=now, leased_until=None, last_error=None))
    return result.rowcount or 0


def backoff_delay(attempts: int, base: float) -> timedelta:
    """How long to wait after the `attempts`-th failed attempt: base × 2^(attempts-1), at most 6 hours, of which a
    random half (jitter, so that deliveries failing together do not come back together)."""
    delay = min(base * 2 ** min(max(attempts - 1, 0), 30), MAX_BACKOFF.total_seconds())
    return timedelta(seconds=random.uniform(delay / 2, delay))


def record_failure(engine: sa.Engine, delivery: Delivery, now: datetime, error: str, *, permanent: bool,
                   max_attempts: int, backoff: float) -> tuple[str, datetime | None] | None:
    """Record a failed attempt: dead when permanent or out of attempts, else pending until a backed-off moment.
    The new state and the next attempt's time; None when the claim was lost (another worker took it over)."""
    dead = permanent or delivery.attempts >= max_attempts
    next_at = None if dead else now + backoff_delay(delivery.attempts, backoff)
    values: dict[str, Any] = {"leased_until": None, "last_error": error[:_ERROR_LENGTH]}
    values.update(state="dead") if dead else values.update(next_attempt_at=next_at)
    with bookkeeping(engine) as conn:
        result = conn.execute(sa.update(outbox).where(*_held(delivery)).values(**values))
    return ("dead" if dead else "pending", next_at) if result.rowcount else None


def bury_abandoned(engine: sa.Engine, now: datetime, max_attempts: int) -> int:
    """Deliveries whose every attempt was cut short (their workers died, e.g. killed by a payload they choke on)
    are dead once out of attempts, rather than claimed forever; how many."""
    with engine.begin() as conn:
        result = conn.execute(sa.update(outbox).where(
            outbox.c.state == "pending", outbox.c.attempts >= max_attempts, outbox.c.leased_until <= now,
        ).values(state="dead", leased_until=None,
                 last_error=f"The worker stopped during each of the {max_attempts} attempts (killed or crashed); "
                            "see the worker's log."))
    return result.rowcount or 0


def note_waiting(engine: sa.Engine, kind: str, reason: str) -> int:
    """Say on pending deliveries of `kind` that no worker can send them yet (and why); how many were told."""
    with engine.begin() as conn:
        result = conn.execute(sa.update(outbox).where(
            outbox.c.state == "pending", outbox.c.kind == kind, outbox.c.last_error.is_(None),
        ).values(last_error=reason[:_ERROR_LENGTH]))
    return result.rowcount or 0


def _find(conn: sa.Connection, key: str | int) -> Any:
    text = str(key)
    where = outbox.c.id == int(text) if text.isdigit() and len(text) < 19 else outbox.c.delivery_id == text[:64]
    row = conn.execute(sa.select(outbox).where(where)).first()
    if row is None:
        raise NotFound(Message("outbox.not_found", "There is no delivery {key} in the outbox.", key=text[:64]))
    return row


def get_delivery(engine: sa.Engine, key: str | int) -> Delivery:
    """One delivery by its number or its delivery id (NotFound)."""
    with engine.connect() as conn:
        return Delivery.of(_find(conn, key))


def retry(engine: sa.Engine, key: str | int, now: datetime) -> Delivery:
    """Send a dead delivery (or one waiting for its next attempt) again now, with its attempts counted afresh.

    NotFound for an unknown key; Conflict for one delivered already or being delivered at this moment."""
    with engine.begin() as conn:
        row = _find(conn, key)
        if row.state == "done":
            raise Conflict(Message("outbox.retry_done", "Delivery {key} was delivered already.",
                                   key=row.delivery_id))
        if row.state == "pending" and row.leased_until is not None and utc(row.leased_until) > now:  # type: ignore[operator]
            raise Conflict(Message("outbox.retry_leased", "Delivery {key} is being delivered right now.",
                                   key=row.delivery_id))
        conn.execute(sa.update(outbox).where(outbox.c.id == row.id, outbox.c.state == row.state).values(
            state="pending", attempts=0, next_attempt_at=now, leased_until=None))
        return Delivery.of(conn.execute(sa.select(outbox).where(outbox.c.id == row.id)).one())


def list_deliveries(engine: sa.Engine, *, state: str | None = None, limit: int = 50,
                    before: int | None = None) -> tuple[list[Delivery], int | None]:
    """A page of deliveries, newest first, of one state or all; with the cursor of the next page (or None)."""
    if state is not None and state not in STATES:
        raise BadRequest(Message("outbox.state_invalid", "'state' must be one of {states}, not {state}.",
                                 states=", ".join(STATES), state=repr(state[:40])))
    query = sa.select(outbox).order_by(outbox.c.id.desc()).limit(limit + 1)
    if state is not None:
        query = query.where(outbox.c.state == state)
    if before is not None:
        query = query.where(outbox.c.id < before)
    with engine.connect() as conn:
        rows = [Delivery.of(row) for row in conn.execute(query)]
    more = len(rows) > limit
    return rows[:limit], rows[limit - 1].id if more else None


def count_by_state(engine: sa.Engine) -> dict[str, int]:
    """How many deliveries are in each state (every state present, zero or more)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(outbox.c.state, sa.func.count()).group_by(outbox.c.state)).all()
    counts: dict[str, int] = {row[0]: row[1] for row in rows}
    return {name: counts.get(name, 0) for name in STATES}
