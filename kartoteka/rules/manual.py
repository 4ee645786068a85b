"""Rules run by hand: the card's buttons and `POST /api/v1/records/<entity>/<id>/rules/<key>`; and dry runs."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from kartoteka.errors import NotFound, PermissionDenied, RuleRefused
from kartoteka.messages import Message
from kartoteka.metadata.model import EntityDef, RuleDef
from kartoteka.records.hooks import Origin
from kartoteka.records.model import Principal
from kartoteka.rules.engine import RuleEngine
from kartoteka.rules.runlog import Run
from kartoteka.storage.tables import outbox


def manual_rules(engine: RuleEngine, entity: EntityDef, user: Principal) -> list[RuleDef]:
    """The manual rules of `entity` that `user` may run (a record's update rights are checked when run)."""
    superuser = bool(user.roles & entity.superusers) or user.is_system
    return [rule for rule in entity.rules if rule.trigger.kind == "manual" and rule.enabled
            and (superuser or not rule.trigger.roles or rule.trigger.roles & user.roles)]


def run_manual(engine: RuleEngine, entity_name: str, record_id: int, key: str, user: Principal) -> Run:
    """Run manual rule `key` on a record `user` may change; RuleRefused when it did nothing (the run is logged)."""
    service = engine._service()
    entity = service.entity(entity_name)
    rule = engine.rule(entity, key)
    if rule is None or rule.trigger.kind != "manual":
        raise NotFound(Message("rule.not_found", "{what} has no rule '{key}' to run by hand.", what=entity.label,
                               key=key))
    service.require_changeable(entity.name, record_id, user)  # NotFound outside the read scope, else 403
    if rule not in manual_rules(engine, entity, user):
        raise PermissionDenied(Message("rule.not_yours", "Only {roles} may run '{name}'.",
                                       roles=", ".join(sorted(rule.trigger.roles)), name=rule.name))
    if not rule.enabled or engine.states.disabled(entity.name, rule.key):
        raise RuleRefused(Message("rule.disabled", "The rule '{name}' is disabled.", name=rule.name))
    with engine.engine.begin() as conn:
        run = engine.run_on_record(conn, entity, rule, record_id, user, Origin("manual"), "manual")
    if run.result == "skipped":
        raise RuleRefused(Message("rule.condition_false", "'{name}' does not apply to this record now (its "
                                  "condition does not hold).", name=rule.name), run)
    if run.result == "blocked":  # the rule's own message, written for whoever runs it
        raise RuleRefused(Message("rule.refused", "'{name}' did not run: {reason}", name=rule.name,
                                  reason=run.error or run.result), run)
    if run.result in ("failed", "stopped"):
        # The reason may quote values of fields the runner may not view: administrators read it in the run log.
        reason = run.error if engine.metadata.is_superuser(user.roles) or user.is_system else Message(
            "rule.failed_hidden", "an action failed; administrators see why in the rule run log")
        raise RuleRefused(Message("rule.refused", "'{name}' did not run: {reason}", name=rule.name,
                                  reason=reason or run.result), run)
    return run


@dataclass(frozen=True)
class DryRun:
    """What a rule would do to a record: its run, and the deliveries it would send (never sent)."""

    run: Run
    deliveries: list[dict[str, object]]


def dry_run(engine: RuleEngine, entity_name: str, record_id: int, key: str, user: Principal) -> DryRun:
    """Run any rule on a record inside a transaction that is rolled back; what it did and would deliver."""
    service = engine._service()
    entity = service.entity(entity_name)
    rule = engine.rule(entity, key)
    if rule is None:
        raise NotFound(Message("rule.unknown", "{what} has no rule '{key}'.", what=entity.label, key=key))
    with engine.engine.connect() as conn:
        transaction = conn.begin()
        try:
            before = conn.execute(sa.select(sa.func.max(outbox.c.id))).scalar() or 0
            run = engine.run_on_record(conn, entity, rule, record_id, user, Origin("manual"), "test")
            deliveries = [{"kind": row.kind, "to": row.destination, "payload": row.payload}
                          for row in conn.execute(sa.select(outbox).where(outbox.c.id > before).order_by(outbox.c.id))]
        finally:
            transaction.rollback()
    if run.result == "done":
        run.result = "dry_run"
    return DryRun(run, deliveries)
