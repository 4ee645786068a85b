"""The merge screen: two or more cards side by side, the user picks the card that stays and, field by field, whose
value it keeps (lists can take all of them); then the merge, with an Undo button on the survivor's page."""

from __future__ import annotations

from typing import Any

from flask import flash, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from kartoteka.errors import BadRequest, Conflict, PermissionDenied, RecordValidationError
from kartoteka.extensions import platform
from kartoteka.i18n import t, tn
from kartoteka.messages import Message
from kartoteka.metadata.model import EntityDef, FieldDef
from kartoteka.records.access import editable_fields, viewable_fields
from kartoteka.records.lookup import record_titles
from kartoteka.records.merging import MAX_OTHERS, merge, undo_merge
from kartoteka.records.model import Record, ids_in
from kartoteka.users import user_names
from kartoteka.web import label_text
from kartoteka.web.auth import login_required
from kartoteka.web.common import cards, current_user, entity_for
from kartoteka.web.formatting import format_value

ALL = "all"  # the choice that keeps every value of a list field


def _ids(text: str) -> list[int]:
    ids = [int(part) for part in text.replace(" ", "").split(",") if part.isascii() and part.isdigit()
           and len(part) < 19]
    ids = list(dict.fromkeys(ids))
    if not 2 <= len(ids) <= MAX_OTHERS + 1:
        raise BadRequest(Message("merge.pick_cards", "Pick from 2 to {most} cards to merge, by their numbers "
                                 "(ids=12,34).", most=MAX_OTHERS + 1))
    return ids


def _fields(entity: EntityDef, cards_shown: list[Record]) -> list[FieldDef]:
    """The fields the user may change and that hold a value on some card, in the card's order."""
    editable = editable_fields(entity, current_user())
    return [f for name, f in entity.fields.items() if name in editable and not f.type.holds_files
            and not f.type.personal_decision  # a person's consent is not merged: the survivor keeps its own
            and any(c.values.get(name) not in (None, [], "") for c in cards_shown)]


def _display(entity: EntityDef, fields: list[FieldDef], shown: list[Record]) -> dict[tuple[str, int], str]:
    users: set[int] = set()
    targets: dict[str, set[int]] = {}
    for record in shown:
        for f in fields:
            if f.type.refers == "user":
                users.update(ids_in(record.values.get(f.name)))
            elif f.type.refers == "record" and f.to:
                targets.setdefault(f.to, set()).update(ids_in(record.values.get(f.name)))
    names = user_names(platform.state.engine, users)
    titles: dict[int, str] = {}
    for target, ids in targets.items():
        titles.update(record_titles(platform.service, target, ids, current_user()))
    return {(f.name, r.id): format_value(f, r.values.get(f.name), g.language, user_names=names, record_titles=titles)
            for f in fields for r in shown}


@cards.get("/<entity_name>/merge")
@login_required
def merge_screen(entity_name: str) -> str:
    """The cards side by side with a choice per field."""
    entity = entity_for(entity_name, "delete")
    ids = _ids(request.args.get("ids", ""))
    shown = [platform.service.get(entity.name, i, current_user()) for i in ids]
    fields = _fields(entity, shown)
    return render_template("history/merge.html", entity=entity, cards=shown, fields=fields,
                           display=_display(entity, fields, shown), default=_defaults(fields, shown), ALL=ALL,
                           viewable=viewable_fields(entity, current_user()))


def _defaults(fields: list[FieldDef], shown: list[Record]) -> dict[str, str]:
    """Which card's value each field keeps unless the user picks another: the first card holding one; every value
    of a list field when the cards hold different ones."""
    chosen = {}
    for f in fields:
        holders = [r for r in shown if r.values.get(f.name) not in (None, [], "")]
        distinct = {repr(r.values.get(f.name)) for r in holders}
        chosen[f.name] = ALL if f.multiple and len(distinct) > 1 else str(holders[0].id)
    return chosen


@cards.post("/<entity_name>/merge")
@login_required
def merge_cards(entity_name: str) -> Response:
    """Merge the cards as picked; to the survivor's page with an Undo button."""
    entity = entity_for(entity_name, "delete")
    ids = _ids(request.form.get("ids", ""))
    survivor_text = request.form.get("survivor", "")
    survivor_id = int(survivor_text) if survivor_text.isascii() and survivor_text.isdigit() else None
    if survivor_id not in ids:
        raise BadRequest(Message("merge.survivor_missing", "Pick the card that stays."))
    shown = {i: platform.service.get(entity.name, i, current_user()) for i in ids}
    values: dict[str, Any] = {}
    for f in _fields(entity, list(shown.values())):
        pick = request.form.get(f"pick-{f.name}", str(survivor_id))
        if pick == ALL and f.multiple:
            merged: list[Any] = []
            for record in shown.values():
                merged.extend(v for v in record.values.get(f.name) or [] if v not in merged)
            value: Any = merged
        elif pick.isdigit() and int(pick) in shown:
            value = shown[int(pick)].values.get(f.name)
        else:
            continue
        if value != shown[survivor_id].values.get(f.name):
            values[f.name] = value
    try:
        done = merge(platform.service, entity.name, survivor_id, [i for i in ids if i != survivor_id], values,
                     current_user())
    except (RecordValidationError, PermissionDenied, Conflict) as exc:
        flash(t("Nothing was merged: {reason}", reason=t(exc.detail)), "error")
        for name, messages in getattr(exc, "errors", {}).items():
            field = entity.fields.get(name)
            for message in messages:
                flash(f"{label_text(field.label)}: {t(message)}" if field is not None else t(message), "error")
        return redirect(url_for("cards.merge_screen", entity_name=entity.name, ids=",".join(map(str, ids))))
    flash(tn("Merged {count} card into this one.", "Merged {count} cards into this one.", len(done.merged)), "success")
    return redirect(url_for("cards.view_record", entity_name=entity.name, record_id=survivor_id,
                            merged=done.merge_id))


@cards.post("/merges/<int:merge_id>/undo")
@login_required
def undo_merge_view(merge_id: int) -> Response:
    """Undo a merge; back to the page it was asked from."""
    target = request.form.get("next", "")
    back = target if target.startswith("/cards/") and "//" not in target else url_for("cards.index")
    try:
        done = undo_merge(platform.service, merge_id, current_user())
    except Conflict as exc:  # undone already, or no longer possible: said on the page (403 and 404 stay errors)
        flash(t("The merge was not undone: {reason}", reason=t(exc.detail)), "error")
        return redirect(back)
    flash(tn("The merge was undone: {count} card is back.", "The merge was undone: {count} cards are back.",
             len(done.restored)), "success")
    for entity_name, record_id, field_name in done.kept:
        entity = platform.state.metadata.entities.get(entity_name)
        field = entity.fields.get(field_name) if entity is not None else None
        flash(t("Left as it is, changed after the merge: {field} of #{id}.",
                field=label_text(field.label) if field is not None else field_name, id=record_id), "info")
    return redirect(back)


def duplicates_of(entity: EntityDef, record: Record) -> list[Any]:
    """The card's likely duplicates by its card's `duplicates:` rules, for who may merge them (change and delete);
    [] for the others or a card without rules (the card page offers the merge screen with them)."""
    from kartoteka.records.duplicates import candidates
    from kartoteka.records.scopes import scope_of

    user = current_user()
    metadata = platform.state.metadata
    if not entity.duplicates.rules or "none" in (scope_of(metadata, user, entity, "delete"),
                                            scope_of(metadata, user, entity, "update")):
        return []
    return candidates(platform.service, entity.name, {}, user, record.id, changed_only=False, for_save=False)
