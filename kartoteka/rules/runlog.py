"""The run log of rules (table rule_runs, which the card's timeline reads) and rules disabled for failing.

A rule failing `failure_limit` times in a row is disabled (rule_states.disabled_at) and the superusers are
notified; one run that succeeds sets the count back to 0. Enabling it again: `kartoteka rules enable`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from kartoteka.activity.store import notify
from kartoteka.metadata.model import RuleDef
from kartoteka.storage.reading import reader
from kartoteka.storage.tables import rule_runs, rule_states

# How long a process trusts what it read of rule_states (rules disabled by another process take this long).
STATES_TTL = 15.0
RESULTS = ("done", "skipped", "failed", "stopped", "dry_run")


@dataclass
class Run:
    """One run of one rule on one record: what it did, or why not."""

    rule: RuleDef
    entity: str
    record_id: int | None
    trigger: str
    source: str
    depth: int
    user_id: int | None
    result: str = "done"
    error: str | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def fail(self, error: str) -> None:
        """Mark the run failed with `error` (its actions were undone)."""
        self.result = "failed"
        self.error = error[:2000]
        self.actions.clear()

    def as_json(self) -> dict[str, Any]:
        """The run as the API and the CLI show it."""
        return {"rule": self.rule.key, "name": self.rule.name, "entity": self.entity, "record": self.record_id,
                "trigger": self.trigger, "source": self.source, "result": self.result, "error": self.error,
                "actions": self.actions, "depth": self.depth}


class RuleStates:
    """Which rules are disabled for failing, read from rule_states and kept for STATES_TTL seconds."""

    def __init__(self, engine: sa.Engine, failure_limit: int, superusers: frozenset[str]) -> None:
        self.engine = engine
        self.failure_limit = failure_limit
        self.superusers = superusers  # their users hear of a rule disabled for failing
        self._disabled: frozenset[tuple[str, str]] = frozenset()
        self._failing: frozenset[tuple[str, str]] = frozenset()
        self._read_at = float("-inf")

    def disabled(self, entity: str, key: str) -> bool:
        """True when the rule was disabled for failing."""
        self._refresh()
        return (entity, key) in self._disabled

    def failing(self, entity: str, key: str) -> bool:
        """True when the rule failed last time (a success must set its count back)."""
        self._refresh()
        return (entity, key) in self._failing

    def forget(self) -> None:
        """Read rule_states again at the next question."""
        self._read_at = float("-inf")

    def _refresh(self) -> None:
        if time.monotonic() - self._read_at < STATES_TTL:
            return
        with reader(self.engine).connect() as conn:
            rows = conn.execute(sa.select(rule_states.c.entity, rule_states.c.rule_key, rule_states.c.failures,
                                          rule_states.c.disabled_at)).all()
        self._disabled = frozenset((r.entity, r.rule_key) for r in rows if r.disabled_at is not None)
        self._failing = frozenset((r.entity, r.rule_key) for r in rows if r.failures)
        self._read_at = time.monotonic()


def write_runs(conn: sa.Connection, runs: list[Run], now: datetime, states: RuleStates) -> None:
    """Log `runs` in the caller's transaction; count failures, disabling a rule that fails too often."""
    if not runs:
        return
    conn.execute(sa.insert(rule_runs), [{
        "entity": run.entity, "rule_key": run.rule.key, "record_id": run.record_id, "trigger": run.trigger,
        "source": run.source, "result": run.result, "actions": run.actions or None, "error": run.error,
        "duration_us": int((time.perf_counter() - run.started) * 1e6), "depth": run.depth, "user_id": run.user_id,
        "created_at": now} for run in runs])
    for run in runs:
        # A manual run's failure is told at once to whoever ran it, and is mostly the record's (a missing value):
        # it does not count towards disabling the rule for everyone.
        if run.result == "failed" and run.source != "manual":
            _count_failure(conn, run, now, states)
        elif run.result == "done" and states.failing(run.entity, run.rule.key):
            conn.execute(sa.update(rule_states).where(rule_states.c.entity == run.entity,
                                                      rule_states.c.rule_key == run.rule.key)
                         .values(failures=0, updated_at=now))
            states.forget()


def _count_failure(conn: sa.Connection, run: Run, now: datetime, states: RuleStates) -> None:
    where = (rule_states.c.entity == run.entity, rule_states.c.rule_key == run.rule.key)
    updated = conn.execute(sa.update(rule_states).where(*where).values(failures=rule_states.c.failures + 1,
                                                                        updated_at=now))
    if updated.rowcount == 0:
        conn.execute(sa.insert(rule_states).values(entity=run.entity, rule_key=run.rule.key, failures=1,
                                                   updated_at=now))
    failures = conn.execute(sa.select(rule_states.c.failures, rule_states.c.disabled_at).where(*where)).one()
    states.forget()
    if failures.failures < states.failure_limit or failures.disabled_at is not None:
        return
    reason = f"failed {failures.failures} times in a row; last: {run.error}"[:2000]
    conn.execute(sa.update(rule_states).where(*where).values(disabled_at=now, disabled_reason=reason))
    for user_id in superuser_ids(conn, states):
        notify(conn, user_id=user_id, now=now, entity=run.entity, record_id=run.record_id, rule_key=run.rule.key,
               text=f"Rule «{run.rule.name}» ({run.entity}) was disabled: it {reason}. Fix it, then run "
                    f"`kartoteka rules enable {run.entity} {run.rule.key}`.")


def superuser_ids(conn: sa.Connection, states: RuleStates) -> list[int]:
    """Active users with a superuser role (admin by default): they hear of disabled rules."""
    from kartoteka.rules.recipients import users_with_role  # recipients reads users; kept apart from the log

    found: list[int] = []
    for role in sorted(states.superusers):
        found.extend(u for u in users_with_role(conn, role) if u not in found)
    return found


__all__ = ["RESULTS", "RuleStates", "Run", "superuser_ids", "write_runs"]
