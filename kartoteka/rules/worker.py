"""`kartoteka worker`: a loop of passes, each running every job once; the outbox's delivery is one job.

A job is a callable `(engine, now) -> int` that does what is due at `now` and says how much it did. A pass that did
nothing makes the loop wait a moment (`--once`: stop). SIGTERM and SIGINT stop the worker after the delivery in
progress; deliveries it had claimed but not started are given back at once.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING

import sqlalchemy as sa

from kartoteka.config import OutboxSettings, Settings
from kartoteka.metadata.expressions import Clock
from kartoteka.rules.delivery import Deliverer, Outcome
from kartoteka.rules.outbox import (
    KINDS,
    Delivery,
    bury_abandoned,
    claim,
    extend,
    note_waiting,
    record_delivered,
    record_failure,
    release,
)

if TYPE_CHECKING:
    from kartoteka.extensions import PlatformState

Job = Callable[[sa.Engine, datetime], int]
log = logging.getLogger("kartoteka.worker")

NO_SMTP = "KARTOTEKA_SMTP_URL is not set: e-mail waits until a worker has it (never dropped)."
MAX_IDLE_AFTER_ERROR = 30.0
CHORES_EVERY = 60.0  # seconds between burials of abandoned deliveries (and notes on waiting e-mail)
FLUSH_EVERY = 1.0  # at most this long between a delivery and its record as done
LEASE_AHEAD = 3  # attempts' worth of timeouts a claim holds for before it is moved on


class OutboxJob:
    """Delivers one batch of due deliveries per call: claim (leased, committed), deliver outside any transaction,
    record each result."""

    def __init__(self, settings: OutboxSettings, *, deliverer: Deliverer | None = None,
                 stopping: Callable[[], bool] = lambda: False, timer: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.deliverer = deliverer or Deliverer(settings)
        self.stopping = stopping
        self.timer = timer
        # Without an SMTP server e-mails are not claimed (no attempt is spent on them): they wait, marked so.
        self.kinds = KINDS if settings.smtp_url else tuple(k for k in KINDS if k != "email")
        # The longest one attempt may take (connect, send and read each up to the timeout), and some.
        self.attempt = timedelta(seconds=3 * settings.webhook_timeout + 30)
        # A claim holds for a few such attempts and is moved on while the batch is still being delivered: a killed
        # worker's deliveries are claimed again by others at most this long after.
        self.lease = timedelta(seconds=60 + LEASE_AHEAD * 3 * settings.webhook_timeout)
        self._chores_due: float | None = None

    def __call__(self, engine: sa.Engine, now: datetime) -> int:
        """Deliver what is due at `now`; how many deliveries were attempted."""
        started = self.timer()
        if self._chores_due is None or started >= self._chores_due:
            self._chores(engine, now)
            self._chores_due = started + CHORES_EVERY
        pending = claim(engine, now, kinds=self.kinds, limit=self.settings.batch, lease=self.lease)
        delivered: list[Delivery] = []  # recorded together (one commit a batch, or a second when they are slow)
        flush_at, attempted = started + FLUSH_EVERY, 0
        try:
            while pending:
                if self.stopping():
                    release(engine, pending)
                    break
                began = self.timer()
                moment = now + timedelta(seconds=began - started)
                if moment + self.attempt > pending[0].leased_until:  # type: ignore[operator]
                    held = extend(engine, pending, moment + self.lease)
                    if len(held) < len(pending):
                        log.warning("%d claimed deliveries were taken over by another worker (lease expired)",
                                    len(pending) - len(held))
                    pending = held
                    if not pending:
                        break
                delivery = pending.pop(0)
                attempted += 1
                outcome = self.deliverer.deliver(delivery, moment)
                ended = self.timer()
                moment, took = now + timedelta(seconds=ended - started), (ended - began) * 1000
                if outcome.ok:
                    delivered.append(delivery)
                    log.info("delivered %s (attempt %d, %.0f ms): %s", _where(delivery), delivery.attempts, took,
                             outcome.detail)
                    if ended >= flush_at:
                        record_delivered(engine, delivered, moment)
                        delivered, flush_at = [], ended + FLUSH_EVERY
                    continue
                self._failed(engine, delivery, moment, outcome, took)
        finally:  # also when stopping or on an unexpected error: what was delivered is recorded
            record_delivered(engine, delivered, now + timedelta(seconds=self.timer() - started))
        return attempted

    def _chores(self, engine: sa.Engine, now: datetime) -> None:
        """Now and then: bury deliveries whose workers died every time; tell waiting e-mails why they wait."""
        buried = bury_abandoned(engine, now, self.settings.max_attempts)
        if buried:
            log.warning("dead: %d deliveries whose workers stopped during every attempt", buried)
        if "email" not in self.kinds and note_waiting(engine, "email", NO_SMTP):
            log.warning(NO_SMTP)

    def _failed(self, engine: sa.Engine, delivery: Delivery, moment: datetime, outcome: Outcome, took: float) -> None:
        result = record_failure(engine, delivery, moment, outcome.detail, permanent=outcome.permanent,
                                max_attempts=self.settings.max_attempts, backoff=self.settings.backoff)
        where = _where(delivery)
        if result is None:
            log.warning("failed %s (attempt %d, %.0f ms), its claim lost to another worker: %s", where,
                        delivery.attempts, took, outcome.detail)
        elif result[0] == "dead":
            log.error("dead %s (attempt %d, %.0f ms): %s", where, delivery.attempts, took, outcome.detail)
        else:
            log.warning("failed %s (attempt %d, %.0f ms), next at %s: %s", where, delivery.attempts, took,
                        f"{result[1]:%Y-%m-%d %H:%M:%S}", outcome.detail)


def _where(delivery: Delivery) -> str:
    """The delivery for a log line; a webhook URL without its query (which may carry a token)."""
    destination = delivery.destination
    if delivery.kind == "webhook":
        destination = destination.split("?", 1)[0] + ("?..." if "?" in destination else "")
    return f"{delivery.delivery_id} {delivery.kind} {destination[:200]}"


def default_jobs(settings: Settings, stopping: Callable[[], bool] = lambda: False) -> list[Job]:
    """The jobs of a worker that needs only its settings: the outbox (worker_jobs adds the rules engine's)."""
    return [OutboxJob(settings.outbox, stopping=stopping)]


def worker_jobs(state: PlatformState, stopping: Callable[[], bool] = lambda: False) -> list[Job]:
    """The jobs `kartoteka worker` runs for an app's platform state: the outbox, queued imports (kartoteka/imports/),
    then the rules engine's timers of new or changed date rules (timer_sync.py), due date timers and scheduled rules
    (timers.py)."""
    from kartoteka.imports.service import ImportJob
    from kartoteka.rules.engine import RuleEngine
    from kartoteka.rules.timer_sync import sync_date_timers
    from kartoteka.rules.timers import fire_due_timers, run_schedules

    jobs = default_jobs(state.settings, stopping)
    jobs.append(ImportJob(state.service, state.settings.instance_dir))  # imports too large to run in a request
    rules = state.service.hooks
    if isinstance(rules, RuleEngine):
        jobs.append(lambda _engine, now: sync_date_timers(rules, now))
        jobs.append(lambda _engine, now: fire_due_timers(rules, now))
        jobs.append(lambda _engine, now: run_schedules(rules, now))
    return jobs


class _StopSignals:
    """SIGTERM and SIGINT set `stop` (a second one stops at once); the previous handlers come back on exit. Only in
    the main thread (where Python delivers signals)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.previous: dict[int, object] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGTERM, signal.SIGINT):
                self.previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, _frame: FrameType | None) -> None:
        if self.stop.is_set():
            raise SystemExit(128 + number)
        log.info("stopping (%s): finishing the delivery in progress", signal.Signals(number).name)
        self.stop.set()

    def __exit__(self, *_exc: object) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)  # type: ignore[arg-type]


def run_worker(engine: sa.Engine, settings: Settings, clock: Clock, *, once: bool = False,
               jobs: Sequence[Job] | None = None, idle: float = 1.0, stop: threading.Event | None = None) -> int:
    """Run passes of `jobs` (default: the outbox's) until stopped; `once`: until a pass finds nothing due. What was
    done in all."""
    stop = stop or threading.Event()
    jobs = list(jobs) if jobs is not None else default_jobs(settings, stop.is_set)
    total, failures = 0, 0
    with _StopSignals(stop):
        log.info("worker started: %d job%s%s", len(jobs), "" if len(jobs) == 1 else "s", ", once" if once else "")
        while not stop.is_set():
            done, failed = 0, 0
            for job in jobs:  # one job failing (the database away, a bug) does not keep the others from running
                if stop.is_set():
                    break
                try:
                    done += job(engine, clock.now())
                except Exception as exc:
                    if once:
                        raise
                    failed += 1
                    log.exception("job %s failed: %s", getattr(job, "__name__", type(job).__name__),
                                  str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            total += done
            failures = failures + 1 if failed else 0
            if failed:  # wait longer after each failing pass, up to 30 s
                stop.wait(min(idle * 2 ** failures, MAX_IDLE_AFTER_ERROR))
            elif done == 0:
                if once:
                    break
                stop.wait(idle)
    log.info("worker stopped: %d done", total)
    return total
