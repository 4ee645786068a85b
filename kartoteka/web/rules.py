"""The card's rule buttons (manual rules) and what its date rules have scheduled; the admins' run log page."""

from __future__ import annotations

import re
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


RUNS_PAGE = 50
# The results a run log row may hold (rules/runlog.py; blocked: a before-save rule refused the save).
RESULT_NAMES = ("done", "failed", "blocked", "stopped", "skipped", "dry_run")
_RULE_KEY = re.compile(r"[A-Za-z0-9_.-]{1,127}")


def _run_filters(args: Any) -> tuple[dict[str, str], list[Any], list[str]]:
    """The run log's filters from the query string: what was asked (to show it again), WHERE clauses, and what was
    wrong with it (each in the reader's language)."""
    metadata = platform.state.metadata
    asked = {name: (args.get(name) or "").strip() for name in ("entity", "rule", "record", "result", "before")}
    where: list[Any] = []
    errors: list[str] = []
    if asked["entity"]:
        if asked["entity"] in metadata.entities:
            where.append(rule_runs.c.entity == asked["entity"])
        else:
            errors.append(t("There is no card type «{name}»; choose one from the list.", name=asked["entity"][:63]))
    if asked["rule"]:
        if _RULE_KEY.fullmatch(asked["rule"]):
            where.append(rule_runs.c.rule_key == asked["rule"])
        else:
            errors.append(t("«{key}» is not a rule key: keys are letters, digits, '_', '.' and '-', such as "
                            "deal_won.", key=asked["rule"][:127]))
    if asked["record"]:
        text = asked["record"].removeprefix("#")
        if text.isdigit() and text.isascii() and len(text) < 19:
            where.append(rule_runs.c.record_id == int(text))
        else:
            errors.append(t("The record must be a card's number, such as 42, not «{text}».", text=asked["record"][:40]))
    if asked["result"]:
        if asked["result"] in RESULT_NAMES:
            where.append(rule_runs.c.result == asked["result"])
        else:
            errors.append(t("«{result}» is not a result of a run; choose one from the list.",
                            result=asked["result"][:40]))
    if asked["before"]:
        if asked["before"].isdigit() and asked["before"].isascii() and len(asked["before"]) < 19:
            where.append(rule_runs.c.id < int(asked["before"]))
        else:
            errors.append(t("The page link is broken; start from the newest runs."))
    return asked, where, errors


@cards.get("/rule-runs")
@login_required
def rule_runs_page() -> tuple[str, int]:
    """Administrators: the rule runs, newest first, 50 a page, filtered by card type, rule key, record and result
    (?entity=deal&rule=deal_won&record=42&result=failed; ?before=<id> pages on). A filter that cannot be read is
    said on the page (400), never guessed."""
    if not platform.state.metadata.is_superuser(current_user().roles):
        abort(403)
    asked, where, errors = _run_filters(request.args)
    rows: list[Any] = []
    more = False
    if not errors:
        with reader(platform.state.engine).connect() as conn:
            rows = list(conn.execute(sa.select(rule_runs).where(*where).order_by(rule_runs.c.id.desc())
                                     .limit(RUNS_PAGE + 1)))
        more = len(rows) > RUNS_PAGE
        rows = rows[:RUNS_PAGE]
    filters = {k: v for k, v in asked.items() if v and k != "before"}
    older = url_for("cards.rule_runs_page", **filters, before=rows[-1].id) if more else None
    newest = url_for("cards.rule_runs_page", **filters) if asked["before"] else None
    entities = platform.state.metadata.entities
    names = {(name, rule.key): rule.name for name, entity in entities.items() for rule in entity.rules}
    results = {"done": t("done"), "failed": t("failed"), "blocked": t("blocked"), "stopped": t("stopped"),
               "skipped": t("skipped"), "dry_run": t("dry run")}
    page = render_template("rules/runs.html", runs=rows, asked=asked, errors=errors, entities=entities,
                           rule_names=names, results=results, result_names=RESULT_NAMES, older=older, newest=newest,
                           filtered=bool(filters))
    return page, 400 if errors else 200
