"""JSON API v1: entities (compiled schemas) and records, authenticated by bearer tokens."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from flask import Response, g, jsonify, request, url_for

from kartoteka.api.blueprint import api, current_user
from kartoteka.api.describe import describe_entity
from kartoteka.api.duplicates import refused_as_duplicate
from kartoteka.api.schemas import dump_record, read_record, record_schema
from kartoteka.errors import AuthenticationRequired, BadRequest, KartotekaError
from kartoteka.extensions import platform
from kartoteka.listargs import list_query
from kartoteka.messages import N_, Message
from kartoteka.records import duplicates
from kartoteka.records.access import viewable_fields
from kartoteka.records.query import count_records
from kartoteka.records.scopes import readable_entities, require, scopes_for
from kartoteka.users import user_for_token

_VERSION = re.compile(r'^(?:W/)?"?(\d{1,9})"?$')


class PreconditionRequired(KartotekaError):
    """A write without the version it was based on."""

    status = 428
    title = N_("Precondition required")


@api.before_request
def authenticate() -> None:
    """Every API call needs `Authorization: Bearer <token>` from `kartoteka token create`."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationRequired(Message("auth.bearer_missing", "Send 'Authorization: Bearer <token>'; create "
                                             "one with `kartoteka token create`."))
    state = platform.state
    user = user_for_token(state.engine, token.strip(), state.clock.now())
    if user is None:
        raise AuthenticationRequired(Message("auth.token_invalid", "The token is unknown, revoked, or its user is "
                                             "inactive."))
    g.user = user


_user = current_user


def _schema(entity_name: str) -> Any:
    entity = platform.service.entity(entity_name)
    return entity, record_schema(entity, viewable_fields(entity, _user()))


def _json_body() -> Any:
    if not request.is_json:
        raise BadRequest(Message("body.not_json", "Send the record as JSON with 'Content-Type: application/json'."))
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        raise BadRequest(Message("body.too_deep", "The JSON body is nested too deeply.")) from None
    if body is None:
        raise BadRequest(Message("body.invalid_json", "The request body is not valid JSON."))
    return body


def _record_response(schema: Any, record: Any, status: int = 200) -> Response:
    response = jsonify(dump_record(schema, record))
    response.status_code = status
    response.headers["ETag"] = f'"{record.version}"'
    return response


@api.get("/entities")
def list_entities() -> Response:
    """The card types with their labels."""
    metadata = platform.state.metadata
    items = [{"name": e.name, "label": e.label.as_json(), "label_plural": e.label_plural.as_json(),
              "url": url_for("api.get_entity", entity_name=e.name)}
             for e in readable_entities(metadata, _user())]
    return jsonify({"items": items})


@api.get("/entities/<entity_name>")
def get_entity(entity_name: str) -> Response:
    """The compiled schema of one card type, as the calling user may see it."""
    entity = platform.service.entity(entity_name)
    metadata = platform.state.metadata
    require(metadata, _user(), entity, "read")  # an entity the role may not read is 403, as the README says
    return jsonify(describe_entity(entity, _user(), scopes_for(metadata, _user(), entity)))


@api.get("/records/<entity_name>")
def list_records(entity_name: str) -> Response:
    """A page of records: ?field=value, ?field__op=value, sort, limit, cursor, q, total.

    `total=true` adds the total, counted exactly up to the list count cap (10,000): beyond it `total` is the
    cap and `total_exact` false ("more than"); `total=exact` counts to the end, whatever it costs.
    """
    entity, schema = _schema(entity_name)
    query = list_query(request.args)
    wanted = request.args.get("total", "").lower()
    page = platform.service.list(entity.name, _user(), query)
    body: dict[str, Any] = {"items": [dump_record(schema, r) for r in page.items], "sort": page.sort,
                            "next_cursor": page.next_cursor}
    if wanted in ("1", "true", "yes", "exact"):
        cap = None if wanted == "exact" else platform.state.settings.list_count_cap
        total = count_records(platform.service, entity.name, _user(), query, cap)
        body["total"] = total.count
        body["total_exact"] = total.exact
    response = jsonify(body)
    if page.next_cursor:
        # Every repeated filter (stage__ne=won&stage__ne=lost) must survive into the next page's URL.
        args = [(k, v) for k, v in request.args.items(multi=True) if k != "cursor"]
        query_string = urlencode([*args, ("cursor", page.next_cursor)])
        next_url = url_for("api.list_records", entity_name=entity.name) + "?" + query_string
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return response


@api.post("/records/<entity_name>")
def create_record(entity_name: str) -> Response:
    """Create a record from a flat JSON object of field values."""
    entity, schema = _schema(entity_name)
    sent = read_record(_json_body())
    if not sent.errors and (refused := refused_as_duplicate(entity, sent.values)) is not None:
        return refused  # 409 with the likely duplicates, unless ?allow_duplicates=true
    record = platform.service.create(entity.name, sent.values, _user(), owner=sent.owner,
                                     input_errors=sent.errors)
    response = _record_response(schema, record, 201)
    response.headers["Location"] = url_for("api.get_record", entity_name=entity.name, record_id=record.id)
    return response


@api.get("/records/<entity_name>/<int:record_id>")
def get_record(entity_name: str, record_id: int) -> Response:
    """One record."""
    entity, schema = _schema(entity_name)
    return _record_response(schema, platform.service.get(entity.name, record_id, _user()))


def _expected_version(body: dict[str, Any] | None, required: bool) -> int | None:
    header = request.headers.get("If-Match")
    from_body = body.pop("version", None) if isinstance(body, dict) else None
    if header:
        match = _VERSION.match(header.strip())
        if not match:
            raise BadRequest(Message("version.if_match_invalid", "If-Match must be the record's version, e.g. "
                                     "If-Match: \"3\", not {header}.", header=repr(header)))
        if from_body is not None and from_body != int(match.group(1)):
            raise BadRequest(Message("version.mismatch", "If-Match says version {version} but the body says {body}; "
                                     "send one.", version=int(match.group(1)), body=repr(from_body)))
        return int(match.group(1))
    if from_body is not None:
        if isinstance(from_body, bool) or not isinstance(from_body, int) or not 0 < from_body < 2**31:
            raise BadRequest(Message("version.invalid", "'version' must be the whole-number version of the record "
                                     "you edited."))
        return from_body
    if required:
        raise PreconditionRequired(Message("version.missing", "Send the version you edited, as 'If-Match: "
                                           "\"<version>\"' or a 'version' key, so that a concurrent change is never "
                                           "silently overwritten."))
    return None


@api.patch("/records/<entity_name>/<int:record_id>")
def update_record(entity_name: str, record_id: int) -> Response:
    """Change some fields; needs the version the change was based on."""
    entity, schema = _schema(entity_name)
    body = _json_body()
    version = _expected_version(body, required=True)
    sent = read_record(body)
    if not sent.errors and duplicates.worth_asking(entity, sent.values, platform.service.ctx):
        platform.service.require_changeable(entity.name, record_id, _user())  # 404 / 403 before any 409
        if (refused := refused_as_duplicate(entity, sent.values, record_id)) is not None:
            return refused
    record = platform.service.update(entity.name, record_id, sent.values, _user(), expected_version=version,
                                     owner=sent.owner, input_errors=sent.errors)
    return _record_response(schema, record)


@api.delete("/records/<entity_name>/<int:record_id>")
def delete_record(entity_name: str, record_id: int) -> Response:
    """Move a record to the trash (soft delete); needs the version it was based on, as a change does."""
    entity = platform.service.entity(entity_name)
    version = _expected_version(None, required=True)
    platform.service.delete(entity.name, record_id, _user(), expected_version=version)
    return Response(status=204)


from kartoteka.api import files  # noqa: E402, F401, I001  (registers the file routes; they import only .blueprint)
from kartoteka.api import activity  # noqa: E402, F401  (registers the timeline, task and notification routes)
from kartoteka.api import rules  # noqa: E402, F401  (registers the manual rule, run log and schedule routes)
from kartoteka.api import outbox  # noqa: E402, F401  (registers the outbox routes for administrators)
from kartoteka.api import history  # noqa: E402, F401  (registers the journal, revert, trash and restore routes)
from kartoteka.api import imports  # noqa: E402, F401  (registers the import, undo and export routes)
