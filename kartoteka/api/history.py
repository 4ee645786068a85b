"""JSON API of the change journal and the trash: a record's history, reverting it, the trash, restoring."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request, url_for

from kartoteka.api import _expected_version  # the API's If-Match reading (this module is imported at its end)
from kartoteka.api.blueprint import api, current_user
from kartoteka.api.schemas import dump_record, record_schema
from kartoteka.errors import BadRequest
from kartoteka.extensions import platform
from kartoteka.messages import Message
from kartoteka.records.access import viewable_fields
from kartoteka.records.journal import JournalEntry
from kartoteka.records.merging import merge, undo_merge
from kartoteka.records.trash import trash_page
from kartoteka.records.versions import history, revert

MAX_PAGE = 200


def _limit() -> int:
    text = request.args.get("limit", "50")
    if not (text.isascii() and text.isdigit() and len(text) <= 4) or not 1 <= int(text) <= MAX_PAGE:
        raise BadRequest(Message("page.limit_invalid", "'limit' must be a whole number from 1 to {most}.",
                                 most=MAX_PAGE))
    return int(text)


def _moment(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def entry_json(entry: JournalEntry) -> dict[str, Any]:
    """One journal entry as the API writes it (values as the record's JSON holds them)."""
    return {"id": entry.id, "version": entry.version, "action": entry.action, "source": entry.source,
            "user": None if entry.user_id is None else {"id": entry.user_id, "name": entry.user},
            "token": entry.token_id, "rule": entry.rule_key, "batch": entry.batch, "reverts": entry.reverts,
            "created_at": _moment(entry.created_at),
            "changes": {name: {"old": old, "new": new} for name, (old, new) in entry.changes.items()},
            "hidden_changes": entry.hidden}


@api.get("/records/<entity_name>/<int:record_id>/history")
def record_history(entity_name: str, record_id: int) -> Any:
    """The record's journal, newest first, showing only the fields the caller may view (`?limit=&before=`)."""
    before_text = request.args.get("before")
    if before_text is not None and not (before_text.isascii() and before_text.isdigit() and len(before_text) < 19):
        raise BadRequest(Message("journal.before_invalid", "'before' must be the id of a history entry."))
    page = history(platform.service, entity_name, record_id, current_user(), limit=_limit(),
                   before=int(before_text) if before_text else None)
    body: dict[str, Any] = {"entity": page.entity, "record": page.record_id, "version": page.version,
                            "deleted": page.deleted, "entries": [entry_json(e) for e in page.entries], "next": None}
    if page.next_before is not None:
        body["next"] = url_for("api.record_history", entity_name=page.entity, record_id=record_id,
                               before=page.next_before, limit=request.args.get("limit"))
    return jsonify(body)


@api.post("/records/<entity_name>/<int:record_id>/revert")
def revert_record(entity_name: str, record_id: int) -> Any:
    """Bring the record (all fields, or `fields`) back to `version`: a save through the record service."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or "version" not in body:
        raise BadRequest(Message("journal.revert_body", "Send a JSON object with 'version', the version to go back "
                                 "to, and optionally 'fields', the names of the fields to bring back."))
    fields = body.get("fields")
    if fields is not None and not isinstance(fields, list):
        raise BadRequest(Message("journal.fields_not_list", "'fields' must be a list of field names."))
    expected = _expected_version(None, required=False)
    user = current_user()
    done = revert(platform.service, entity_name, record_id, body["version"], user, fields=fields,
                  expected_version=expected)
    entity = platform.service.entity(entity_name)
    return jsonify({"record": dump_record(record_schema(entity, viewable_fields(entity, user)), done.record),
                    "reverted": list(done.fields), "kept": list(done.kept)})


@api.get("/trash/<entity_name>")
def trash(entity_name: str) -> Any:
    """The card's records in the trash the caller may restore, most recently deleted first."""
    page = trash_page(platform.service, entity_name, current_user(), limit=_limit(),
                      cursor=request.args.get("cursor"))
    entity = platform.service.entity(entity_name)
    body: dict[str, Any] = {"items": [
        {"id": t.id, "title": t.title, "version": t.version, "deleted_at": _moment(t.deleted_at),
         "deleted_by": None if t.deleted_by is None else {"id": t.deleted_by, "name": t.deleted_by_name}}
        for t in page.items], "next": None}
    if page.next_cursor:
        body["next"] = url_for("api.trash", entity_name=entity.name, cursor=page.next_cursor,
                               limit=request.args.get("limit"))
    return jsonify(body)


@api.post("/records/<entity_name>/<int:record_id>/restore")
def restore_record(entity_name: str, record_id: int) -> Response:
    """Bring a record back from the trash under the same id."""
    user = current_user()
    record = platform.service.restore(entity_name, record_id, user)
    entity = platform.service.entity(entity_name)
    response = jsonify(dump_record(record_schema(entity, viewable_fields(entity, user)), record))
    response.headers["ETag"] = f'"{record.version}"'
    return response


@api.post("/records/<entity_name>/merge")
def merge_records(entity_name: str) -> Any:
    """Merge `others` into `survivor`, which takes `values`; references, tasks and the timeline move to it."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest(Message("merge.body", "Send a JSON object with 'survivor' (the id that stays), 'others' "
                                 "(the ids merged into it) and optionally 'values' (the survivor's new values)."))
    values = body.get("values") or {}
    if not isinstance(values, dict):
        raise BadRequest(Message("merge.values_not_object", "'values' must be an object of field values."))
    user = current_user()
    done = merge(platform.service, entity_name, body.get("survivor"), body.get("others"), values, user)
    entity = platform.service.entity(entity_name)
    return jsonify({"merge": done.merge_id, "merged": list(done.merged),
                    "repointed": [{"entity": e, "id": i} for e, i in done.repointed], "moved": dict(done.moved),
                    "survivor": dump_record(record_schema(entity, viewable_fields(entity, user)), done.survivor),
                    "undo": url_for("api.undo_merge_route", merge_id=done.merge_id)})


@api.post("/merges/<int:merge_id>/undo")
def undo_merge_route(merge_id: int) -> Any:
    """Undo a merge: the merged records come back with their references, tasks and timeline."""
    done = undo_merge(platform.service, merge_id, current_user())
    return jsonify({"merge": done.merge_id, "restored": list(done.restored),
                    "kept": [{"entity": e, "id": i, "field": f} for e, i, f in done.kept]})
