"""The card's history page (its journal, with revert buttons) and the card's trash (restore, purge)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from flask import abort, flash, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from kartoteka.errors import BadRequest, Conflict, KartotekaError, RecordValidationError
from kartoteka.extensions import platform
from kartoteka.i18n import t
from kartoteka.messages import Message
from kartoteka.metadata.model import EntityDef
from kartoteka.records.access import editable_fields
from kartoteka.records.hooks import UI
from kartoteka.records.journal import OWNER, JournalEntry
from kartoteka.records.lookup import record_titles
from kartoteka.records.model import ids_in
from kartoteka.records.scopes import scope_of
from kartoteka.records.trash import purge, trash_page
from kartoteka.records.versions import history, revert
from kartoteka.users import user_names
from kartoteka.web import label_text
from kartoteka.web.activity import when
from kartoteka.web.auth import login_required
from kartoteka.web.common import cards, current_user, entity_for, submitted_version
from kartoteka.web.formatting import format_value

PAGE_SIZE = 50


def _page_cursor(name: str) -> int | None:
    text = request.args.get(name, "")
    return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else None


def _shown_changes(entity: EntityDef, entries: tuple[JournalEntry, ...]) -> dict[int, list[dict[str, Any]]]:
    """Each entry's changes as the page shows them: the field's label, the old and new values as display text."""
    return describe_changes(entity, [(entry.id, entry.changes) for entry in entries])


def describe_changes(entity: EntityDef, items: Iterable[tuple[int, Mapping[str, Any]]]
                     ) -> dict[int, list[dict[str, Any]]]:
    """Journal changes ({field: [old, new]} as stored, already cut to what the reader may view) as display rows:
    the field's label, the old and new values as text; by the key each came with (a journal row's id)."""
    service = platform.service
    user = current_user()
    people: set[int] = set()
    targets: dict[str, set[int]] = {}
    items = list(items)
    for _key, changes in items:
        for name, pair in changes.items():
            field = entity.fields.get(name)
            for value in pair:
                if name == OWNER or (field is not None and field.type.refers == "user"):
                    people.update(ids_in(value))
                elif field is not None and field.type.refers == "record" and field.to:
                    targets.setdefault(field.to, set()).update(ids_in(value))
    names = user_names(platform.state.engine, people)
    titles: dict[int, str] = {}
    for target, ids in targets.items():
        titles.update(record_titles(service, target, ids, user))
    shown: dict[int, list[dict[str, Any]]] = {}
    for key, changes in items:
        rows = []
        for name, (old, new) in changes.items():
            field = entity.fields.get(name)
            if name == OWNER:
                rows.append({"name": name, "label": t("Owner"), "old": names.get(old, "") if old else "",
                             "new": names.get(new, "") if new else "", "field": False})
                continue
            if field is None:  # a field the metadata no longer has
                rows.append({"name": name, "label": name, "old": str(old or ""), "new": str(new or ""),
                             "field": False})
                continue
            typed = service.typed_values(entity, {name: old})[name], service.typed_values(entity, {name: new})[name]
            rows.append({"name": name, "label": label_text(field.label), "field": not field.is_formula,
                         "old": format_value(field, typed[0], g.language, user_names=names, record_titles=titles),
                         "new": format_value(field, typed[1], g.language, user_names=names, record_titles=titles)})
        shown[key] = rows
    return shown


def _flash_refusal(exc: KartotekaError, entity: EntityDef) -> None:
    """A refused revert or restore, told on the page it returns to: the reason, and each field's problem."""
    flash(t("Nothing was changed: {reason}", reason=t(exc.detail)), "error")
    for name, messages in getattr(exc, "errors", {}).items():
        field = entity.fields.get(name)
        for message in messages:
            flash(f"{label_text(field.label)}: {t(message)}" if field is not None else t(message), "error")


@cards.get("/<entity_name>/<int:record_id>/history")
@login_required
def record_history(entity_name: str, record_id: int) -> str:
    """The card's journal, newest first: who changed what, old and new values, and buttons to go back."""
    entity = entity_for(entity_name)
    user = current_user()
    page = history(platform.service, entity.name, record_id, user, limit=PAGE_SIZE, before=_page_cursor("before"))
    record = None if page.deleted else platform.service.get(entity.name, record_id, user)
    may_update = record is not None and platform.service.permissions(entity.name, [record], user)[record.id].update
    return render_template("history/history.html", entity=entity, page=page, record=record,
                           changes=_shown_changes(entity, page.entries), may_update=may_update,
                           editable=editable_fields(entity, user),
                           format_datetime=when)


@cards.post("/<entity_name>/<int:record_id>/revert")
@login_required
def revert_record(entity_name: str, record_id: int) -> Response:
    """Bring the card (or one field) back to an earlier version, as a save; back to the history page."""
    entity = entity_for(entity_name, "update")
    version_text = request.form.get("to_version", "")
    field = request.form.get("field") or None
    expected = submitted_version()
    if expected is None:
        raise Conflict(t("The request did not say which version of the card it changes; reload the page and try "
                         "again."))
    target: Any = int(version_text) if version_text.isascii() and version_text.isdigit() else version_text[:20]
    try:
        done = revert(platform.service, entity.name, record_id, target, current_user(),
                      fields=[field] if field else None, expected_version=expected, origin=UI)
    except (RecordValidationError, BadRequest, Conflict) as exc:
        _flash_refusal(exc, entity)
    else:
        if done.fields:
            labels = ", ".join(label_text(entity.fields[n].label) for n in done.fields)
            flash(t("Back to version {version}: {fields}.", version=target, fields=labels), "success")
        else:
            flash(t("The card already has the values of version {version}.", version=target), "info")
        if done.kept:
            flash(t("Left as they are (you may not change them): {fields}.",
                    fields=", ".join(label_text(entity.fields[n].label) for n in done.kept)), "info")
    return redirect(url_for("cards.record_history", entity_name=entity.name, record_id=record_id))


@cards.get("/<entity_name>/trash")
@login_required
def trash_view(entity_name: str) -> str:
    """The card's deleted records the user may restore, most recently deleted first."""
    entity = entity_for(entity_name, "delete")
    cursor = request.args.get("cursor") or None
    page = trash_page(platform.service, entity.name, current_user(), limit=PAGE_SIZE, cursor=cursor)
    return render_template("history/trash.html", entity=entity, page=page,
                           may_purge=platform.state.metadata.is_superuser(current_user().roles),
                           format_datetime=when)


@cards.post("/<entity_name>/<int:record_id>/restore")
@login_required
def restore_record(entity_name: str, record_id: int) -> Response:
    """Bring a card back from the trash; to the card."""
    entity = entity_for(entity_name, "delete")
    try:
        platform.service.restore(entity.name, record_id, current_user(), origin=UI)
    except (RecordValidationError, Conflict) as exc:
        _flash_refusal(exc, entity)
        return redirect(url_for("cards.trash_view", entity_name=entity.name))
    flash(t("Restored."), "success")
    return redirect(url_for("cards.view_record", entity_name=entity.name, record_id=record_id))


@cards.post("/<entity_name>/<int:record_id>/purge")
@login_required
def purge_record(entity_name: str, record_id: int) -> Response:
    """Remove a card in the trash for good (administrators)."""
    entity = entity_for(entity_name, "delete")
    if not platform.state.metadata.is_superuser(current_user().roles) \
            or scope_of(platform.state.metadata, current_user(), entity, "delete") == "none":
        abort(403, Message("trash.purge_admin_only", "Only administrators may remove records for good."))
    gone = purge(platform.service, platform.state.clock.now(), timedelta(0), entity=entity.name,
                 record_ids=[record_id])
    flash(t("Removed for good.") if gone else t("It is not in the trash."), "success" if gone else "error")
    return redirect(url_for("cards.trash_view", entity_name=entity.name))
