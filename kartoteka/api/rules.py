"""JSON API of rules: run a manual rule, read the run log, see what a record has scheduled."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import jsonify, request

from kartoteka.api.blueprint import api, current_user
from kartoteka.api.schemas import dump_record, record_schema
from kartoteka.errors import BadRequest, PermissionDenied
from kartoteka.extensions import platform
from kartoteka.messages import Message
from kartoteka.records.access import viewable_fields
from kartoteka.rules.engine import RuleEngine
from kartoteka.rules.manual import manual_rules, run_manual
from kartoteka.rules.timers import timers_of
from kartoteka.storage.reading import reader
from kartoteka.storage.tables import rule_runs

MAX_RUNS = 200


def rule_engine() -> RuleEngine:
    """The app's rules engine (attached to its record service)."""
    hooks = platform.service.hooks
    if not isinstance(hooks, RuleEngine):
        raise RuntimeError("the app's record service has no rules engine")
    return hooks


def _moment(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def run_json(row: Any, detailed: bool = True) -> dict[str, Any]:
    """One row of the run log as the API writes it; without detail (not an administrator) the error text, which may
    quote values, is left out."""
    return {"id": row.id, "entity": row.entity, "rule": row.rule_key, "record": row.record_id,
            "trigger": row.trigger, "source": row.source, "result": row.result,
            "actions": [a.get("action") for a in row.actions or []] if not detailed else row.actions or [],
            "error": row.error if detailed else None, "duration_us": row.duration_us, "depth": row.depth,
            "user": row.user_id, "created_at": _moment(row.created_at)}


@api.post("/records/<entity_name>/<int:record_id>/rules/<key>")
def run_rule(entity_name: str, record_id: int, key: str) -> Any:
    """Run a manual rule on a record (422 with the reason when it did nothing); the record as it is now."""
    user = current_user()
    run = run_manual(rule_engine(), entity_name, record_id, key, user)
    entity = platform.service.entity(entity_name)
    record = platform.service.get(entity_name, record_id, user)
    return jsonify({"run": run.as_json(), "record": dump_record(record_schema(entity, viewable_fields(entity, user)),
                                                                record)})


@api.get("/records/<entity_name>/<int:record_id>/rules")
def record_rules(entity_name: str, record_id: int) -> Any:
    """The manual rules the caller may run on a record now (they may change it, and the rule's condition holds), and
    its date rules' pending timers (what runs next)."""
    user = current_user()
    record = platform.service.get(entity_name, record_id, user)  # NotFound outside the read scope
    engine = rule_engine()
    entity = platform.service.entity(entity_name)
    may_change = platform.service.permissions(entity.name, [record], user)[record.id].update
    with reader(platform.state.engine).connect() as conn:
        pending = timers_of(conn, entity.name, record_id)
        runnable = [rule for rule in manual_rules(engine, entity, user)
                    if may_change and engine.applies(conn, entity, rule, record_id, user)]
    names = {rule.key: rule.name for rule in entity.rules}
    manual = [{"key": rule.key, "name": rule.name,
               "label": (rule.trigger.label.get(user.language) if rule.trigger.label else rule.name),
               "confirm": rule.trigger.confirm.get(user.language) if rule.trigger.confirm else None}
              for rule in runnable]
    return jsonify({"manual": manual, "scheduled": [{"rule": key, "name": names.get(key, key), "due_at": _moment(due)}
                                                    for key, due in pending]})


@api.get("/rule-runs")
def list_rule_runs() -> Any:
    """The run log, newest first: administrators see every run; others name a record they may read."""
    user = current_user()
    entity_name = request.args.get("entity")
    record = request.args.get("record")
    superuser = platform.state.metadata.is_superuser(user.roles)
    where: list[sa.ColumnElement[bool]] = []
    if entity_name:
        platform.service.entity(entity_name)
        where.append(rule_runs.c.entity == entity_name)
    if record is not None:
        if not record.isdigit() or len(record) > 18:
            raise BadRequest(Message("rule_runs.record", "'record' is a record id (a whole number)."))
        if not entity_name:
            raise BadRequest(Message("rule_runs.entity", "Name the record's card with 'entity' too."))
        platform.service.get(entity_name, int(record), user)  # NotFound outside the read scope
        where.append(rule_runs.c.record_id == int(record))
    elif not superuser:
        raise PermissionDenied(Message("rule_runs.admins", "Only administrators read the whole run log; name a "
                                       "record with 'entity' and 'record'."))
    if request.args.get("result"):
        where.append(rule_runs.c.result == request.args["result"])
    if request.args.get("rule"):
        where.append(rule_runs.c.rule_key == request.args["rule"])
    try:
        limit = min(max(int(request.args.get("limit", "50")), 1), MAX_RUNS)
    except ValueError:
        raise BadRequest(Message("rule_runs.limit", "'limit' is a whole number.")) from None
    with reader(platform.state.engine).connect() as conn:
        rows = conn.execute(sa.select(rule_runs).where(*where).order_by(rule_runs.c.id.desc()).limit(limit)).all()
    return jsonify({"items": [run_json(row, superuser) for row in rows]})
