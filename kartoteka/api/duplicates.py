"""Likely duplicates in the API: a create or change that repeats existing records is 409 with the candidates unless
`?allow_duplicates=true`; `GET /api/v1/duplicates/<entity>` lists the card's duplicate groups, or the candidates of
given values (`?phones=...&last_name=...`) or of a stored record (`?record=<id>`). See kartoteka/records/duplicates.py.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request

from kartoteka.api.blueprint import api, current_user
from kartoteka.errors import BadRequest
from kartoteka.extensions import platform
from kartoteka.messages import N_, Message
from kartoteka.metadata.model import EntityDef
from kartoteka.records import duplicates
from kartoteka.records.access import viewable_fields
from kartoteka.records.query import did_you_mean
from kartoteka.records.scopes import require
from kartoteka.web_errors import problem

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no", "")
MAX_GROUPS = 1000
# Query keys of GET /duplicates/<entity> that are not field values.
_CONTROL = frozenset({"limit", "record"})


def allow_duplicates() -> bool:
    """`?allow_duplicates=true` (or 1, yes): save even when the record likely repeats others; a value that is none
    of these nor false, 0, no is a BadRequest rather than a guess."""
    text = request.args.get("allow_duplicates", "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise BadRequest(Message("duplicates.allow_invalid", "'allow_duplicates' is true or false, not {value}.",
                             value=repr(request.args.get("allow_duplicates", ""))))


def refused_as_duplicate(entity: EntityDef, values: dict[str, Any], record_id: int | None = None) -> Response | None:
    """A 409 problem+json naming the records a save of `values` likely repeats (`candidates`), or None to save."""
    if not entity.duplicates.rules or allow_duplicates() or \
            not duplicates.worth_asking(entity, values, platform.service.ctx):
        return None  # a change that leaves the rules' fields alone (or does not parse) costs its save nothing more
    if record_id is None:  # 403 for a role that may not create these cards, before any 409
        require(platform.state.metadata, current_user(), entity, "create")
    found = duplicates.candidates(platform.service, entity.name, values, current_user(), record_id)
    if not found:
        return None
    detail = Message.counted(
        "duplicates.found", "{count} {what} record looks like the same one: open it, or send the request again with "
        "?allow_duplicates=true to save anyway.", "{count} {what} records look like the same one: open them, or send "
        "the request again with ?allow_duplicates=true to save anyway.", count=len(found), what=entity.label)
    return problem(409, N_("Conflict"), detail, candidates=[c.as_json(entity) for c in found])


def _limit() -> int:
    text = request.args.get("limit", "")
    if not text:
        return 100
    if not (text.isascii() and text.isdigit() and len(text) < 6 and 1 <= int(text) <= MAX_GROUPS):
        raise BadRequest(Message("duplicates.limit_invalid", "'limit' is a whole number from 1 to {high}.",
                                 high=MAX_GROUPS))
    return int(text)


@api.get("/duplicates/<entity_name>")
def find_duplicates(entity_name: str) -> Response:
    """Without field values: the card's duplicate groups over existing data, the largest first (`limit`, default 100).
    With field values (`?emails=a@b.ru&full_name=...`, a list field's repeated): the records a save of them would
    likely repeat. With `record=<id>`: the records that record likely repeats."""
    service = platform.service
    entity = service.entity(entity_name)
    user = current_user()
    require(platform.state.metadata, user, entity, "read")
    visible = viewable_fields(entity, user)
    values: dict[str, Any] = {}
    for name in request.args:
        if name in _CONTROL or name == "allow_duplicates":
            continue
        if name not in visible:  # a hidden field is as unknown as one no card has
            known = sorted(n for n in entity.fields if n in visible)
            raise BadRequest(Message("duplicates.unknown_field", "{what} has no field '{name}'{hint}",
                                     what=entity.label, name=name, hint=did_you_mean(name, known) or "."))
        texts = request.args.getlist(name)
        values[name] = texts if entity.fields[name].is_list else texts[-1]
    record = request.args.get("record", "")
    if record:
        if not (record.isascii() and record.isdigit() and len(record) < 16):
            raise BadRequest(Message("duplicates.record_invalid", "'record' is a record id (a whole number)."))
        found = duplicates.candidates(service, entity.name, values, user, int(record), changed_only=False,
                                      for_save=False)
        return jsonify({"entity": entity.name, "record": int(record),
                        "candidates": [c.as_json(entity) for c in found]})
    if values:
        found = duplicates.candidates(service, entity.name, values, user, for_save=False)
        return jsonify({"entity": entity.name, "candidates": [c.as_json(entity) for c in found]})
    limit = _limit()
    groups = duplicates.groups(service, entity.name, user, limit=limit + 1)
    return jsonify({"entity": entity.name, "rules": [r.key for r in duplicates.readable_rules(entity, user)],
                    "groups": [g.as_json(entity) for g in groups[:limit]], "more": len(groups) > limit})
