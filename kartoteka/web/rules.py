"""The card's rule buttons (manual rules) and what its date rules have scheduled; the admins' run log page."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import login_required
from werkzeug.wrappers import Response

from kartoteka.errors import RuleRefused
from kartoteka.extensions import platform
from kartoteka.i18n import t
from kartoteka.metadata.model import EntityDef
from kartoteka.records.model import Principal
from kartoteka.rules.engine import RuleEngine
from kartoteka.rules.manual import manual_rules, run_manual
from kartoteka.rules.timers import timers_of
from kartoteka.storage.reading import reader
from kartoteka.storage.tables import rule_runs
from kartoteka.web.common import cards, current_user, entity_for


def rule_engine() -> RuleEngine | None:
    """The app's rules engine, or None."""
    hooks = platform.service.hooks
    return hooks if isinstance(hooks, RuleEngine) else None


def card_rules(entity: EntityDef, record_id: int, user: Principal, may_update: bool
               ) -> tuple[list[Any], list[tuple[str, datetime]]]:
    """The manual rules `user` may run on the card (when they may change it) and its pending date rules."""
    engine = rule_engine()
    if engine is None:
        return [], []
    manual = manual_rules(engine, entity, user) if may_update else []
    names = {rule.key: rule.name for rule in entity.rules}
    with reader(platform.state.engine).connect() as conn:
        manual = [rule for rule in manual if engine.applies(conn, entity, rule, record_id, user)]
        upcoming = [(names.get(key, key), due) for key, due in timers_of(conn, entity.name, record_id)]
    return manual, upcoming


@cards.post("/<entity_name>/<int:record_id>/rules/<key>")
@login_required
def run_card_rule(entity_name: str, record_id: int, key: str) -> Response:
    """A manual rule's button: run it, then back to the card with what happened."""
    entity = entity_for(entity_name, "update")
    engine = rule_engine()
    if engine is None:
        abort(404)
    try:
        run = run_manual(engine, entity.name, record_id, key, current_user())
    except RuleRefused as exc:
        flash(str(exc), "error")
    else:
        flash(t("Done: {name}.", name=run.rule.name), "success")
    return redirect(url_for("cards.view_record", entity_name=entity.name, record_id=record_id))


@cards.get("/rule-runs")
@login_required
def rule_runs_page() -> str:
    """Administrators: the latest rule runs, filterable by result and card."""
    if not platform.state.metadata.is_superuser(current_user().roles):
        abort(403)
    where = []
    result = request.args.get("result") or ""
    if result:
        where.append(rule_runs.c.result == result)
    entity_name = request.args.get("entity") or ""
    if entity_name in platform.state.metadata.entities:
        where.append(rule_runs.c.entity == entity_name)
    with reader(platform.state.engine).connect() as conn:
        rows = conn.execute(sa.select(rule_runs).where(*where).order_by(rule_runs.c.id.desc()).limit(200)).all()
    entities = platform.state.metadata.entities
    names = {(name, rule.key): rule.name for name, entity in entities.items() for rule in entity.rules}
    results = {"done": t("done"), "failed": t("failed"), "blocked": t("blocked"), "stopped": t("stopped"),
               "skipped": t("skipped"), "dry_run": t("dry run")}
    return render_template("rules/runs.html", runs=rows, result=result, entity_name=entity_name, entities=entities,
                           rule_names=names, results=results)
