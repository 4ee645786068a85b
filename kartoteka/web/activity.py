"""Pages of timelines, tasks and notifications: the card's timeline section, "My tasks", the notification list, and
the header's counts. Every form works without JavaScript (a POST and a redirect); with htmx, the timeline and a
task's row are swapped in place."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import Blueprint, Flask, flash, g, redirect, render_template, request, url_for
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup
from werkzeug.wrappers import Response

from kartoteka.activity.model import USER_KINDS, Counts, Task, TaskQuery, due_moment
from kartoteka.activity.notifications import get_notification, list_notifications, mark_card_read, mark_read
from kartoteka.activity.tasks import (
    card_readers,
    counts,
    counts_on_card,
    get_task,
    list_tasks,
    may_change,
    new_task,
    update_task,
)
from kartoteka.activity.timeline import card_timeline, log_entry
from kartoteka.errors import BadRequest, Conflict, NotFound, PermissionDenied, RecordValidationError
from kartoteka.extensions import platform
from kartoteka.messages import N_
from kartoteka.metadata.model import EntityDef
from kartoteka.records.model import Record
from kartoteka.web.auth import _local_path, login_required, t
from kartoteka.web.common import current_user, entity_for, submitted_version
from kartoteka.web.formatting import format_date, format_datetime

activity = Blueprint("activity", __name__)

SHOWS = {"open": False, "done": True, "all": None}
TIMELINE_PAGE = 20
KIND_LABELS = {"note": N_("Note"), "call": N_("Call"), "meeting": N_("Meeting"), "email": N_("E-mail"),
               "rule": N_("Rule"), "task": N_("Task"), "change": N_("Change")}
# What a journal entry on the timeline says the save did.
CHANGE_LABELS = {"created": N_("Card created"), "updated": N_("Changed"), "deleted": N_("Moved to the trash"),
                 "restored": N_("Restored from the trash"), "merged": N_("Changed by a merge"),
                 "reverted": N_("Brought back to an earlier version")}
RESULT_LABELS = {"done": N_("done"), "blocked": N_("blocked"), "failed": N_("failed"), "stopped": N_("stopped"),
                 "skipped": N_("skipped"), "dry_run": N_("dry run")}
# A rule's actions as the timeline and the run log name them (metadata/actions.py: the action types).
ACTION_LABELS = {"set": N_("set a field"), "block": N_("block the save"), "add_tags": N_("add tags"),
                 "remove_tags": N_("remove tags"), "assign": N_("assign"), "create_task": N_("create a task"),
                 "create_record": N_("create a record"), "notify": N_("notify"), "email": N_("send an e-mail"),
                 "webhook": N_("send a webhook"), "run_rule": N_("run another rule")}
# A task's description is shown whole up to this many characters, else shortened with the whole text a click away.
DESCRIPTION_SHOWN = 160


def _htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def zone() -> tzinfo:
    """The instance's time zone (KARTOTEKA_TIMEZONE, default UTC): pages write moments in it."""
    return platform.state.settings.zone


def zone_abbreviation(moment: datetime) -> str:
    """The zone's short name at `moment` ("MSK", "UTC", "+05"; its IANA name when the zone has none)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        return aware.astimezone(zone()).tzname() or str(zone())
    except (OverflowError, ValueError):
        return "UTC"


def when(moment: Any) -> str:
    """A moment in the reader's language and the instance's time zone, the zone named: "31.01.2026 15:05 MSK"."""
    if moment is None:
        return ""
    return f"{format_datetime(moment, g.language, zone())} {zone_abbreviation(moment)}"


def local_time(moment: Any) -> Markup:
    """The Jinja filter of every moment on the timeline, task and run-log pages: a <time> element with the moment in
    UTC (datetime), the instance's zone by name (title) and the text of `when`."""
    if moment is None:
        return Markup("")
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    iso = aware.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(iso, str(zone()), when(aware))


def due_text(task: Task) -> str:
    """A task's due date (a whole day when it was given as a date: that day, whatever the zone), or its due moment
    in the instance's time zone, in the reader's language."""
    if task.due_at is None:
        return ""
    return format_date(task.due_at, g.language) if task.due_is_date else when(task.due_at)


def action_label(action: Any) -> str:
    """A rule action's type in the reader's language ("create_task" -> "create a task"); an unknown one as is."""
    return t(ACTION_LABELS[action]) if isinstance(action, str) and action in ACTION_LABELS else str(action)


def rule_line(entry: Any) -> str:
    """What a rule run's entry says: "Rule «X» ran: done (set, notify)"."""
    payload = entry.payload
    name = payload.get("rule") or payload.get("rule_key") or "?"
    if isinstance(name, dict):
        name = name.get(g.language) or name.get("en") or next(iter(name.values()), "?")
    result = payload.get("result")
    text = t("Rule «{rule}» ran: {result}", rule=str(name),
             result=t(RESULT_LABELS[result]) if result in RESULT_LABELS else str(result or "—"))
    actions = [a if isinstance(a, str) else str(a.get("type") or a.get("action") or a.get("kind") or "")
               for a in payload.get("actions") or [] if isinstance(a, str | dict)]
    actions = [action_label(a) for a in actions if a]
    return f"{text} ({', '.join(actions)})" if actions else text


def card_activity(entity: EntityDef, record: Record, form: dict[str, Any] | None = None) -> dict[str, Any]:
    """What templates/activity/_timeline.html shows of a card the user may read (called by the card page)."""
    service = platform.service
    form = form if form is not None else g.get("activity_form")  # a refused post shown on the card (no JavaScript)
    cursor = request.args.get("timeline") or None
    try:
        page = card_timeline(service, entity.name, record.id, current_user(), limit=TIMELINE_PAGE, cursor=cursor)
    except BadRequest:  # a stale or edited cursor in the address: the first page
        page = card_timeline(service, entity.name, record.id, current_user(), limit=TIMELINE_PAGE)
    user = current_user()
    try:
        service.require_changeable(entity.name, record.id, user)
        card_changeable = True
    except (NotFound, PermissionDenied):
        card_changeable = False

    def changeable(task: Task) -> bool:
        """May the reader tick this task of the card (see kartoteka.activity.tasks.may_change)?"""
        return card_changeable or user.id in (task.assignee, task.created_by) or service.metadata.is_superuser(
            user.roles)

    from kartoteka.web.history import describe_changes  # the history page's own rendering of journal changes

    change_rows = describe_changes(entity, [(item.id, item.payload.get("changes") or {}) for item in page.items
                                            if item.kind == "change" and item.payload.get("action") != "created"])
    return {"entity": entity, "record": record, "page": page, "kinds": USER_KINDS, "kind_labels": KIND_LABELS,
            "changeable": changeable, "change_rows": change_rows, "change_labels": CHANGE_LABELS,
            "users": card_readers(service, record), "me": current_user().id,
            "now": platform.state.clock.now(), "form": form or {}, "errors": (form or {}).get("errors", {}),
            "back": url_for("cards.view_record", entity_name=entity.name, record_id=record.id)}


def _texts(errors: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: [t(m) for m in messages] for name, messages in errors.items()}


def _refused_on_card(entity: EntityDef, record_id: int, form: dict[str, Any]) -> tuple[str, int]:
    """Without JavaScript, a refused entry or task: the card page again, the form holding what was typed (422)."""
    from kartoteka.web.cards import view_record

    g.activity_form = {**form, "errors": _texts(form["errors"])}
    flash(t("Please correct the highlighted fields."), "error")
    return view_record(entity.name, record_id), 422


def _card_back(entity: EntityDef, record_id: int) -> Response:
    return redirect(url_for("cards.view_record", entity_name=entity.name, record_id=record_id) + "#timeline")


def _timeline_section(entity: EntityDef, record_id: int, form: dict[str, Any] | None = None) -> str:
    record = platform.service.get(entity.name, record_id, current_user())
    return render_template("activity/_timeline.html", **card_activity(entity, record, form))


def _with_header(html: str) -> str:
    """An htmx answer that changed what the header counts (a task added, ticked, reassigned): the fragment, then the
    header's counts swapped out of band (hx-swap-oob), so the header agrees without a reload."""
    return html + str(header_activity(oob=True))  # str: a Markup on the right would escape the fragment


@activity.get("/cards/<entity_name>/<int:record_id>/timeline")
@login_required
def timeline_section(entity_name: str, record_id: int) -> str:
    """htmx: the card's timeline section (a later page with ?timeline=<cursor>)."""
    return _timeline_section(entity_for(entity_name), record_id)


@activity.post("/cards/<entity_name>/<int:record_id>/entries")
@login_required
def add_entry(entity_name: str, record_id: int) -> Any:
    """Add a note, a logged call or a meeting to the card (read access is enough)."""
    entity = entity_for(entity_name)
    sent = request.form
    kind = sent.get("kind", "note")
    try:
        log_entry(platform.service, entity.name, record_id, current_user(), kind=kind, body=sent.get("body", ""),
                  outcome=sent.get("outcome") or None, duration_minutes=sent.get("duration_minutes") or None)
    except (RecordValidationError, BadRequest) as exc:
        errors = exc.errors if isinstance(exc, RecordValidationError) else {"kind": [exc.detail]}
        if _htmx():
            return _timeline_section(entity, record_id, {"entry": dict(sent.items()), "errors": _texts(errors)})
        return _refused_on_card(entity, record_id, {"entry": dict(sent.items()), "errors": errors})
    if _htmx():
        return _timeline_section(entity, record_id, {"added": t("Added to the timeline.")})
    flash(t("Added to the timeline."), "success")
    return _card_back(entity, record_id)


def _due_input(text: str) -> Any:
    from datetime import date

    try:
        return due_moment(date.fromisoformat(text)) if text else None
    except ValueError:
        return text  # refused by the service with its message


@activity.post("/cards/<entity_name>/<int:record_id>/tasks")
@login_required
def add_task(entity_name: str, record_id: int) -> Any:
    """Create a task on the card: title, description, assignee (someone who may read the card), due date."""
    entity = entity_for(entity_name)
    sent = request.form
    assignee = sent.get("assignee", "")
    try:
        new_task(platform.service, current_user(), title=sent.get("title", ""),
                 description=sent.get("description", "").strip(),
                 assignee=int(assignee) if assignee.isdigit() and assignee.isascii() and len(assignee) < 19 else None,
                 due_at=_due_input(sent.get("due", "")), entity=entity.name, record_id=record_id)
    except RecordValidationError as exc:
        if _htmx():
            return _timeline_section(entity, record_id, {"task": dict(sent.items()), "errors": _texts(exc.errors)})
        return _refused_on_card(entity, record_id, {"task": dict(sent.items()), "errors": exc.errors})
    if _htmx():
        return _with_header(_timeline_section(entity, record_id, {"added": t("Task added.")}))
    flash(t("Task added."), "success")
    return _card_back(entity, record_id)


def _local(target: str | None, default: str) -> str:
    """`target` when it is a path of this site (as the sign-in's `next` is checked), else `default`."""
    return _local_path(target) or default


@activity.get("/tasks")
@login_required
def my_tasks() -> str:
    """My tasks: the signed-in user's tasks, open (default), done or all; overdue ones marked."""
    show = request.args.get("show", "open")
    if show not in SHOWS:
        show = "open"
    query = TaskQuery(assignee=current_user().id, done=SHOWS[show], limit=200,
                      cursor=request.args.get("cursor") or None)
    try:
        page = list_tasks(platform.service, current_user(), query)
    except BadRequest:
        page = list_tasks(platform.service, current_user(), TaskQuery(assignee=current_user().id,
                                                                      done=SHOWS[show], limit=200))
    return render_template("activity/tasks.html", page=page, show=show, now=platform.state.clock.now(),
                           shows=[("open", t("Open")), ("done", t("Done")), ("all", t("All"))])


@activity.post("/tasks/<int:task_id>/done")
@login_required
def set_done(task_id: int) -> Any:
    """Mark a task done, or open again (the checkbox); a stale version is refused and shows the task as it is."""
    done = request.form.get("done") == "1"
    back = _local(request.form.get("next"), url_for("activity.my_tasks"))
    version = submitted_version()
    message = None
    try:
        if version is None:
            raise Conflict(t("The form did not say which version of the task it changes; reload the page."))
        update_task(platform.service, task_id, {"done": done}, current_user(), expected_version=version)
    except Conflict:
        message = t("Someone changed this task meanwhile; it now shows the saved state. Check it and try again.")
    if _htmx():
        task = get_task(platform.service, task_id, current_user())
        return _with_header(render_template(
            "activity/_task_row.html", task=task, now=platform.state.clock.now(), next=back, error=message,
            may_change=may_change(platform.service, task, current_user()),
            show_card=request.form.get("show_card") == "1"))
    flash(message or (t("Task done.") if done else t("Task reopened.")), "error" if message else "success")
    return redirect(back)


@activity.get("/notifications")
@login_required
def notifications_page() -> str:
    """The signed-in user's notifications, unread first, with links to their cards."""
    page = list_notifications(platform.state.engine, current_user(), limit=200)
    return render_template("activity/notifications.html", page=page)


@activity.post("/notifications/<int:notification_id>/read")
@login_required
def read_one(notification_id: int) -> Response:
    """Mark one notification read (another user's is not found)."""
    get_notification(platform.state.engine, current_user(), notification_id)
    mark_read(platform.state.engine, current_user(), platform.state.clock.now(), [notification_id])
    flash(t("Marked as read."), "success")
    return redirect(url_for("activity.notifications_page"))


@activity.post("/notifications/read")
@login_required
def read_all() -> Response:
    """Mark every notification of the signed-in user read."""
    mark_read(platform.state.engine, current_user(), platform.state.clock.now())
    flash(t("All notifications marked as read."), "success")
    return redirect(url_for("activity.notifications_page"))


def _opened_card(context: Context | None) -> Record | None:
    """The card whose page is being rendered (`cards.view_record` read it with the user's scope), else None."""
    if context is None or request.method != "GET" or request.endpoint != "cards.view_record":
        return None
    record = context.get("record")
    return record if isinstance(record, Record) and record.id == (request.view_args or {}).get("record_id") else None


@pass_context
def header_activity(context: Context | None = None, *, oob: bool = False) -> Markup:
    """The header's links: My tasks with the open count (overdue emphasised) and the bell with the unread count.

    On a card's page the user's unread notifications about that card are marked read: the count's own statement
    says how many there are, so the page writes (one UPDATE) only when there is something to mark. With `oob`, the
    links are marked for an htmx out-of-band swap (an htmx answer that changed the counts)."""
    user = getattr(g, "user", None)
    if user is None or user.id is None:
        return Markup("")
    engine, now = platform.state.engine, platform.state.clock.now()
    card = _opened_card(context)
    try:
        if card is None:
            found = counts(engine, user.id, now)
        else:
            found, about_card = counts_on_card(engine, user.id, now, card.entity, card.id)
            if about_card:
                marked = mark_card_read(engine, user, now, card.entity, card.id)
                found = Counts(found.open_tasks, found.overdue_tasks, max(0, found.unread - marked))
    except sa.exc.SQLAlchemyError:  # an error page about the database itself still renders
        found = Counts(0, 0, 0)
    here = request.endpoint
    if oob:  # an htmx answer: the page the links are swapped into is the one htmx says it is on
        here = {url_for("activity.my_tasks"): "activity.my_tasks",
                url_for("activity.notifications_page"): "activity.notifications_page"}.get(
            urlsplit(request.headers.get("HX-Current-URL", "")).path)
    return Markup(render_template("activity/_header.html", counts=found, oob=oob,  # noqa: S704  (it escapes)
                                  here=here))


def init_activity(app: Flask) -> None:
    """Register the pages and the template helpers (the header's counts, the card's timeline)."""
    app.register_blueprint(activity)
    app.jinja_env.globals.update(header_activity=header_activity, card_activity=card_activity, when=when,
                                 due_text=due_text, rule_line=rule_line, action_label=action_label,
                                 description_shown=DESCRIPTION_SHOWN)
    app.jinja_env.filters["local_time"] = local_time
