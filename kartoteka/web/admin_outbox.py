"""The administrators' outbox page: dead, waiting and delivered e-mails and webhooks, with a Retry button."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from kartoteka.errors import KartotekaError
from kartoteka.extensions import platform
from kartoteka.i18n import t
from kartoteka.messages import Message
from kartoteka.rules import outbox
from kartoteka.web.auth import login_required

admin_outbox = Blueprint("admin_outbox", __name__, url_prefix="/admin/outbox")
PAGE_SIZE = 50


def admins_only(view: Callable[..., Any]) -> Callable[..., Any]:
    """Signed-in administrators only: others get 403, anonymous visitors the sign-in page."""
    @wraps(view)
    @login_required
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not platform.state.metadata.is_superuser(g.user.roles):
            abort(403, Message("outbox.admin_only", "Only administrators may see and retry the outbox."))
        return view(*args, **kwargs)
    return wrapped


@admin_outbox.get("/")
@admins_only
def outbox_page() -> str:
    """Deliveries of one state (dead by default), newest first, a page at a time."""
    state = request.args.get("state", "dead")
    if state not in outbox.STATES:
        state = "dead"
    cursor = request.args.get("cursor", "")
    before = int(cursor) if cursor.isascii() and cursor.isdigit() and len(cursor) < 19 else None
    engine = platform.state.engine
    items, next_cursor = outbox.list_deliveries(engine, state=state, limit=PAGE_SIZE, before=before)
    return render_template("admin/outbox.html", items=items, state=state, next_cursor=next_cursor,
                           counts=outbox.count_by_state(engine), now=platform.state.clock.now())


@admin_outbox.post("/<int:delivery>/retry")
@admins_only
def retry_delivery(delivery: int) -> Response:
    """Send one delivery again now; back to the list it was on."""
    state = request.form.get("state", "dead")
    try:
        done = outbox.retry(platform.state.engine, delivery, platform.state.clock.now())
    except KartotekaError as exc:
        flash(t(exc.detail), "error")
    else:
        flash(t("{delivery} will be sent again in a moment.", delivery=done.delivery_id), "success")
    return redirect(url_for("admin_outbox.outbox_page", state=state if state in outbox.STATES else "dead"))
