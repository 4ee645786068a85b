"""The outbox in the API, for administrators: `GET /api/v1/outbox?state=dead` and `POST /api/v1/outbox/<id>/retry`."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Response, jsonify, request, url_for

from kartoteka.api.blueprint import api, current_user
from kartoteka.errors import BadRequest, PermissionDenied
from kartoteka.extensions import platform
from kartoteka.messages import Message
from kartoteka.rules import outbox

MAX_LIMIT = 200


def require_admin() -> None:
    """Administrators only (a superuser role in roles.yaml); PermissionDenied otherwise."""
    if not platform.state.metadata.is_superuser(current_user().roles):
        raise PermissionDenied(Message("outbox.admin_only", "Only administrators may see and retry the outbox."))


def _whole(name: str, default: int | None, low: int, high: int) -> int | None:
    text = request.args.get(name, "")
    if not text:
        return default
    if not (text.isascii() and text.isdigit() and len(text) < 19 and low <= int(text) <= high):
        raise BadRequest(Message("outbox.param_invalid", "'{name}' must be a whole number from {low} to {high}.",
                                 name=name, low=low, high=high))
    return int(text)


@api.get("/outbox")
def list_outbox() -> Response:
    """Deliveries newest first: `state` (pending, done, dead; default all), `limit` (1-200, 50), `cursor`; with the
    count of each state."""
    require_admin()
    state = platform.state
    limit = _whole("limit", 50, 1, MAX_LIMIT) or 50
    before = _whole("cursor", None, 1, 2**63 - 1)
    items, next_cursor = outbox.list_deliveries(state.engine, state=request.args.get("state") or None, limit=limit,
                                                before=before)
    body = {"items": [item.as_json() for item in items], "next_cursor": str(next_cursor) if next_cursor else None,
            "counts": outbox.count_by_state(state.engine)}
    response = jsonify(body)
    if next_cursor:
        args = [(k, v) for k, v in request.args.items(multi=True) if k != "cursor"]
        response.headers["Link"] = f'<{url_for("api.list_outbox")}?{urlencode([*args, ("cursor", next_cursor)])}>; ' \
                                   'rel="next"'
    return response


@api.get("/outbox/<key>")
def get_outbox(key: str) -> Response:
    """One delivery by its number or delivery id (msg_...), with its payload."""
    require_admin()
    delivery = outbox.get_delivery(platform.state.engine, key)
    return jsonify({**delivery.as_json(), "payload": dict(delivery.payload)})


@api.post("/outbox/<key>/retry")
def retry_outbox(key: str) -> Response:
    """Send a dead delivery (or one waiting to be retried) again at once, its attempts counted afresh."""
    require_admin()
    state = platform.state
    return jsonify(outbox.retry(state.engine, key, state.clock.now()).as_json())
