"""JSON API of a card's timeline, tasks and notifications (registered on the API blueprint by kartoteka.api)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Response, jsonify, request, url_for

from kartoteka.activity.model import Entry, Notification, Task, TaskQuery, page_limit, parse_moment
from kartoteka.activity.notifications import list_notifications, mark_read, unread_count
from kartoteka.activity.tasks import get_task, list_tasks, new_task, update_task
from kartoteka.activity.timeline import card_timeline, log_entry
from kartoteka.api import _expected_version, _json_body
from kartoteka.api.blueprint import api, current_user
from kartoteka.errors import BadRequest
from kartoteka.extensions import platform
from kartoteka.messages import Message


def _moment(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def task_json(task: Task) -> dict[str, Any]:
    """A task as the API writes it."""
    card = None
    if task.entity is not None and task.record_id is not None:
        card = {"entity": task.entity, "id": task.record_id, "title": task.card_title}
    now = platform.state.clock.now()
    return {"id": task.id, "title": task.title, "description": task.description,
            "assignee": {"id": task.assignee, "name": task.assignee_name} if task.assignee is not None else None,
            "due_at": _moment(task.due_at), "done": task.done, "done_at": _moment(task.done_at),
            "overdue": task.overdue(now), "record": card, "rule_key": task.rule_key,
            "created_by": ({"id": task.created_by, "name": task.created_by_name}
                           if task.created_by is not None else None),
            "created_at": _moment(task.created_at), "updated_at": _moment(task.updated_at), "version": task.version,
            "url": url_for("api.patch_task", task_id=task.id)}


def _entry_json(entry: Entry) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": entry.kind, "id": entry.id, "created_at": _moment(entry.created_at),
                            "user": {"id": entry.user_id, "name": entry.author} if entry.user_id is not None else None}
    if entry.task is not None:
        body["task"] = task_json(entry.task)
    else:
        body["body"] = entry.body
        body["payload"] = dict(entry.payload)
    return body


def _notification_json(item: Notification) -> dict[str, Any]:
    return {"id": item.id, "text": item.text, "unread": item.unread, "created_at": _moment(item.created_at),
            "read_at": _moment(item.read_at), "rule_key": item.rule_key,
            "record": {"entity": item.entity, "id": item.record_id} if item.record_id is not None else None}


def _paged(items: list[dict[str, Any]], next_cursor: str | None, endpoint: str, **values: Any) -> Response:
    response = jsonify({"items": items, "next_cursor": next_cursor})
    if next_cursor:
        args = [(k, v) for k, v in request.args.items(multi=True) if k != "cursor"]
        next_url = url_for(endpoint, **values) + "?" + urlencode([*args, ("cursor", next_cursor)])
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return response


def _task_response(task: Task, status: int = 200) -> Response:
    response = jsonify(task_json(task))
    response.status_code = status
    response.headers["ETag"] = f'"{task.version}"'
    return response


@api.get("/records/<entity_name>/<int:record_id>/timeline")
def get_timeline(entity_name: str, record_id: int) -> Response:
    """The card's timeline, newest first: entries (notes, calls, meetings, e-mails, rule runs) and its tasks."""
    page = card_timeline(platform.service, entity_name, record_id, current_user(),
                         limit=page_limit(request.args.get("limit")), cursor=request.args.get("cursor"))
    return _paged([_entry_json(e) for e in page.items], page.next_cursor, "api.get_timeline",
                  entity_name=entity_name, record_id=record_id)


@api.post("/records/<entity_name>/<int:record_id>/notes")
def post_note(entity_name: str, record_id: int) -> Response:
    """Add a note (or with `kind`, a logged call or meeting: `outcome`, `duration_minutes`) to a card one may read."""
    body = _object(_json_body())
    entry = log_entry(platform.service, entity_name, record_id, current_user(), kind=body.get("kind", "note"),
                      body=body.get("body"), outcome=body.get("outcome"),
                      duration_minutes=body.get("duration_minutes"))
    response = jsonify(_entry_json(entry))
    response.status_code = 201
    response.headers["Location"] = url_for("api.get_timeline", entity_name=entity_name, record_id=record_id)
    return response


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest(Message("body.not_object", "Send a JSON object."))
    return body


def _flag(name: str) -> bool | None:
    text = request.args.get(name)
    if text is None or text == "":
        return None
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise BadRequest(Message("activity.flag_invalid", "'{name}' must be true or false.", name=name))


def _user_id(name: str, text: str | None) -> int | None:
    if text is None or text == "":
        return None
    if text == "me":
        return current_user().id
    if text.isdigit() and text.isascii() and len(text) < 19:
        return int(text)
    raise BadRequest(Message("activity.user_invalid", "'{name}' must be 'me' or a user's id.", name=name))


def task_query(args: Any, *, default_limit: int = 50) -> TaskQuery:
    """A TaskQuery from query-string arguments (?assignee=me&done=false&due__lte=2026-03-31&entity=deal&record=7)."""
    due_lte, due_gte = args.get("due__lte"), args.get("due__gte")
    record = args.get("record")
    if record is not None and not (record.isdigit() and record.isascii() and len(record) < 19):
        raise BadRequest(Message("activity.record_invalid", "'record' must be a record's id."))
    return TaskQuery(
        assignee=_user_id("assignee", args.get("assignee")), done=_flag("done"),
        due_lte=parse_moment(due_lte, end_of_day=True, name="due__lte") if due_lte else None,
        due_gte=parse_moment(due_gte, end_of_day=False, name="due__gte") if due_gte else None,
        entity=args.get("entity") or None, record_id=int(record) if record else None,
        limit=page_limit(args.get("limit"), default_limit), cursor=args.get("cursor") or None)


@api.get("/tasks")
def get_tasks() -> Response:
    """The tasks the caller may see: ?assignee=me|<id>&done=true|false&due__lte=&due__gte=&entity=&record=."""
    page = list_tasks(platform.service, current_user(), task_query(request.args))
    return _paged([task_json(t) for t in page.items], page.next_cursor, "api.get_tasks")


def _due(body: dict[str, Any]) -> Any:
    value = body.get("due_at")
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(Message("activity.due_invalid", "'due_at' must be an ISO date or date and time, or null."))
    return parse_moment(value, end_of_day=True, name="due_at")


@api.post("/tasks")
def post_task() -> Response:
    """Create a task: title, description, assignee (an id or "me"), due_at, and optionally its card (entity, record)."""
    body = _object(_json_body())
    assignee = body.get("assignee")
    record = body.get("record")
    if record is not None and (isinstance(record, bool) or not isinstance(record, int)):
        raise BadRequest(Message("activity.record_invalid", "'record' must be a record's id."))
    task = new_task(platform.service, current_user(), title=body.get("title"),
                    description=body.get("description", ""),
                    assignee=current_user().id if assignee == "me" else assignee, due_at=_due(body),
                    entity=body.get("entity"), record_id=record)
    response = _task_response(task, 201)
    response.headers["Location"] = url_for("api.patch_task", task_id=task.id)
    return response


@api.get("/tasks/<int:task_id>")
def get_one_task(task_id: int) -> Response:
    """One task the caller may see (ETag: its version)."""
    return _task_response(get_task(platform.service, task_id, current_user()))


@api.patch("/tasks/<int:task_id>")
def patch_task(task_id: int) -> Response:
    """Change a task (title, description, assignee, due_at, done); needs If-Match or `version` (stale: 409)."""
    body = _object(_json_body())
    version = _expected_version(body, required=True)
    changes = dict(body)
    if "due_at" in changes:
        changes["due_at"] = _due(changes)
    if changes.get("assignee") == "me":
        changes["assignee"] = current_user().id
    task = update_task(platform.service, task_id, changes, current_user(), expected_version=version or 0)
    return _task_response(task)


@api.get("/notifications")
def get_notifications() -> Response:
    """The caller's notifications, unread first, then newest first (?unread=true for the unread ones only)."""
    engine = platform.state.engine
    page = list_notifications(engine, current_user(), limit=page_limit(request.args.get("limit")),
                              cursor=request.args.get("cursor") or None, unread_only=bool(_flag("unread")))
    response = _paged([_notification_json(n) for n in page.items], page.next_cursor, "api.get_notifications")
    response.headers["X-Unread-Count"] = str(unread_count(engine, current_user()))
    return response


@api.post("/notifications/read")
def read_notifications() -> Response:
    """Mark notifications read: {"ids": [1, 2]} or {"all": true}; answers how many were marked and how many are left."""
    body = _object(_json_body())
    ids = body.get("ids")
    if body.get("all") is True and ids is None:
        wanted = None
    elif isinstance(ids, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        wanted = ids
    else:
        raise BadRequest(Message("notification.read_body", "Send 'ids' (a list of notification ids) or 'all': true."))
    engine = platform.state.engine
    marked = mark_read(engine, current_user(), platform.state.clock.now(), wanted)
    return jsonify({"marked": marked, "unread": unread_count(engine, current_user())})
