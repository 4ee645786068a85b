"""Card pages: the list, a card, its form (new and edit, live with htmx), reference lookups."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, flash, g, redirect, render_template, request, url_for
from werkzeug.datastructures import FileStorage, MultiDict

from kartoteka.errors import BadRequest, Conflict, NotFound, RecordValidationError
from kartoteka.extensions import platform
from kartoteka.files import FileTooLarge, UploadRefused, clean_name, store_file, upload_type
from kartoteka.metadata.fieldtypes import PICKER_TEXT_SUFFIX
from kartoteka.metadata.model import EntityDef, FieldDef
from kartoteka.records.access import editable_fields, viewable_fields
from kartoteka.records.duplicates import candidates, worth_asking
from kartoteka.records.files import accepted_type, too_large
from kartoteka.records.hooks import UI
from kartoteka.records.lookup import record_titles, trashed_titles
from kartoteka.records.model import FormState, Record, ids_in
from kartoteka.records.scopes import readable_entities, require, scope_of
from kartoteka.users import list_users, user_names
from kartoteka.web.activity import when
from kartoteka.web.auth import login_required, t
from kartoteka.web.cardform import CardForm
from kartoteka.web.common import board_field, cards, current_user, entity_for, scopes, submitted_version
from kartoteka.web.formatting import format_value
from kartoteka.web.formpage import render_form_page
from kartoteka.web.forms import CONTROL_KEYS, FormInput, form_values
from kartoteka.web.merge import merge_edit
from kartoteka.web.pickers import named_records, resolve, suggestions
from kartoteka.web.rules import card_rules


@cards.app_context_processor
def navigation() -> dict[str, Any]:
    """The cards the signed-in user may open, for the top navigation, and whether they manage users."""
    user = getattr(g, "user", None)
    if user is None:
        return {"nav_entities": [], "superuser": False}
    metadata = platform.state.metadata
    return {"nav_entities": readable_entities(metadata, user), "superuser": metadata.is_superuser(user.roles)}


@cards.get("/")
@login_required
def index() -> str:
    """The start page: every card the user may open, with links to its list, kanban and a new record."""
    entries = [(e, scopes(e)) for e in readable_entities(platform.state.metadata, current_user())]
    return render_template("cards/index.html", entries=entries, board_field=board_field)


# --- forms -------------------------------------------------------------------------------------------


def _saver(entity: EntityDef, record_id: int | None) -> Any:
    state = platform.state
    locked: dict[str, bool] = {}

    def refusal(field: FieldDef) -> str | None:
        """Why the save would refuse any file in `field` from this user (as Pipeline._refusal says), or None."""
        if field.name not in editable_fields(entity, current_user()):
            return "You may not change this field."
        if field.read_only:
            return "Is read-only."
        if field.read_only_if is not None and record_id is not None:  # locked by the card as stored
            if not locked:
                locked.update(platform.service.evaluate(entity.name, {}, current_user(), record_id).read_only)
            if locked.get(field.name):
                return "Is read-only."
        return None

    def save(field: FieldDef, upload: FileStorage) -> dict[str, Any]:
        # What the field does not take is refused before it is stored: a refused file would otherwise
        # wait a day as an unsaved upload, counting against the user's limit.
        refused = refusal(field)
        if refused is not None:
            raise ValueError(refused)
        try:
            name = clean_name(upload.filename or "")
            wrong_type = accepted_type(field, name, upload_type(name, upload.mimetype))
            if wrong_type is not None:
                raise ValueError(wrong_type)
            return store_file(state.engine, state.settings.instance_dir / "files", upload.stream,
                              upload.filename or "", upload.mimetype, current_user().id, state.clock.now(),
                              state.settings.uploads, max_size=field.max_size)
        except FileTooLarge:
            raise ValueError(too_large(field, name, (field.max_size or 0) + 1)) from None
        except (UploadRefused, BadRequest) as exc:  # next to the field, with everything else the user typed kept
            raise ValueError(exc.detail) from None
    return save


def build_form(entity: EntityDef, state: FormState, record: Record | None = None, *,
               submitted: MultiDict[str, str] | None = None, form_errors: dict[str, list[str]] | None = None,
               touched: frozenset[str] | None = None) -> CardForm:
    """A CardForm with the titles of referenced records and the users a user field can name."""
    user = current_user()
    viewable = viewable_fields(entity, user)
    ids: dict[str, set[int]] = {}
    for f in entity.reference_fields:
        value = state.values.get(f.name)
        if f.name in viewable:
            ids.setdefault(f.to or "", set()).update(ids_in(value))
    titles: dict[int, str] = {}
    labels: dict[int, str] = {}
    trashed: set[int] = set()
    for target, wanted in ids.items():
        found, texts = named_records(target, wanted)
        titles.update(found)
        labels.update(texts)
        if missing := wanted - found.keys():  # deleted since, or outside the user's scope
            gone = trashed_titles(platform.service, target, missing, user)
            deleted = t("deleted")
            titles.update((i, f"{title} ({deleted})") for i, title in gone.items())
            labels.update((i, f"{title} ({deleted})") for i, title in gone.items())
            trashed.update(gone)
    user_fields = [f for f in entity.fields.values() if f.type.refers == "user" and f.name in viewable]
    users = list_users(platform.state.engine, limit=500) if user_fields else []
    # The users the card names now stay choosable even when no longer listed (deactivated, or past the first
    # 500): a select without its current value would send another one on an unchanged save.
    if user_fields:
        users = _with_users(users, {i for f in user_fields for i in ids_in(state.values.get(f.name))})
    live_url = (url_for("cards.live_edit", entity_name=entity.name, record_id=record.id) if record
                else url_for("cards.live_new", entity_name=entity.name))
    record_url = url_for("cards.view_record", entity_name=entity.name, record_id=record.id) if record else ""
    return CardForm(entity, user, state, viewable, editable_fields(entity, user), record, submitted, titles,
                    labels, users, form_errors or {}, touched, live_url=live_url, language=g.language,
                    url_root=request.script_root, record_url=record_url, trashed=frozenset(trashed))


def _inferable(entity: EntityDef) -> set[str]:
    """Fields whose absence from a posted form means "emptied": editable and placed in the user's layout.

    A department's layout may leave fields out; the form never renders them, so their absence says nothing.
    A field locked now (read_only_if) is left as stored by the service (see Pipeline.run's `inferred`).
    """
    user = current_user()
    placed = set(entity.layout_for(user.department).field_names())
    return {n for n in editable_fields(entity, user) if n in placed}


def _submitted(entity: EntityDef, *, with_files: bool = True, record_id: int | None = None) -> FormInput:
    return form_values(entity, request.form, request.files if with_files else MultiDict(), _inferable(entity),
                       _saver(entity, record_id) if with_files else None, _resolver(),
                       viewable_fields(entity, current_user()), g.language)


def _resolver() -> Any:
    return resolve


def _prefill(entity: EntityDef) -> dict[str, Any]:
    """?company=12&stage=lost on /new or /edit: values to start from (a related record, a kanban move)."""
    viewable = viewable_fields(entity, current_user())  # a hidden name is ignored like one no card has
    return {k: v for k, v in request.args.items() if k in viewable and k not in CONTROL_KEYS}


def _owner_choice() -> int | None:
    """The owner chosen on the form; the record service decides whether this user may assign it."""
    raw = request.form.get("owner", "").strip()
    return int(raw) if raw.isdigit() and raw.isascii() and len(raw) < 19 else None


@cards.route("/<entity_name>/new", methods=["GET", "POST"])
@login_required
def new_record(entity_name: str) -> Any:
    """The empty card form; POST creates the record (full page, works without JavaScript)."""
    entity = entity_for(entity_name, "create")
    service = platform.service
    if request.method == "GET":  # nothing typed yet: no messages until the user leaves a field or saves
        state = service.evaluate(entity.name, _prefill(entity), current_user())
        return _render_form(entity, build_form(entity, state, touched=frozenset()))
    sent = _submitted(entity)
    if (found := _likely_duplicates(entity, sent)) is not None:
        return found, 409  # the candidates, with "Save anyway"
    try:
        record = service.create(entity.name, sent.values, current_user(), owner=_owner_choice(), inferred=sent.inferred,
                                input_errors=sent.errors, origin=UI)
    except RecordValidationError as exc:
        return _refused(entity, exc, sent), 422
    flash(t("Created."), "success")
    return redirect(url_for("cards.view_record", entity_name=entity.name, record_id=record.id))


def _refused(entity: EntityDef, exc: RecordValidationError, sent: FormInput, record_id: int | None = None,
             version: int | None = None) -> str:
    """The form again after a refused save, showing what the service evaluated in that same save."""
    state = exc.state if isinstance(exc.state, FormState) else None
    if state is None:  # a uniqueness race lost at commit: no state came with it, evaluate the input
        state = platform.service.evaluate(entity.name, _parsable(sent.values, sent.errors), current_user(), record_id,
                                          lookups=True, inferred=sent.inferred)
        state.errors = {**state.errors, **exc.errors}
    flash(t("Please correct the highlighted fields."), "error")
    form = build_form(entity, state, state.record, submitted=request.form, form_errors=sent.errors)
    if version is not None:
        form.version = version  # the values shown are those sent, made at this version, not the state's
    return _render_form(entity, form)


def _likely_duplicates(entity: EntityDef, sent: FormInput, record_id: int | None = None,
                       version: int | None = None) -> str | None:
    """The form again, with the records its save would likely repeat (kartoteka/records/duplicates.py) above its
    buttons: each with the fields that tell it apart and a link to open it, and "Save anyway", which posts the form
    again with `_allow_duplicates`. None when there are none (or the user chose to save anyway): save."""
    if sent.errors or request.form.get("_allow_duplicates") or not worth_asking(
            entity, sent.values, platform.service.ctx, _changed_since_loaded(entity, sent) if record_id else None):
        return None  # an edit leaving the rules' fields as loaded costs its save nothing more
    user = current_user()
    found = candidates(platform.service, entity.name, sent.values, user, record_id)
    if not found:
        return None
    service = platform.service
    state = service.evaluate(entity.name, sent.values, user, record_id, lookups=True, inferred=sent.inferred,
                             for_update=record_id is not None)
    form = build_form(entity, state, state.record, submitted=request.form, form_errors=sent.errors)
    if version is not None:
        form.version = version  # the values shown are those sent, made at this version
    visible = viewable_fields(entity, user)
    shown = [entity.fields[n] for n in entity.duplicates.show if n in visible]
    titles: dict[int, str] = {}
    names: dict[int, str] = {}
    for f in shown:
        ids = [i for c in found for i in ids_in(c.show.get(f.name))]
        if f.type.refers == "record" and ids:
            titles.update(record_titles(service, f.to or "", ids, user))
        elif f.type.refers == "user" and ids:
            names.update(user_names(platform.state.engine, ids))
    rows = []
    for c in found:
        why = []
        for match in c.matches:
            field_label = ", ".join(entity.fields[n].label.get(g.language) for n in match.fields)
            if match.kind == "exact":
                first = entity.fields[match.fields[0]]
                if len(match.fields) == 1 and match.values:  # as the card writes the value
                    typed = service.typed_values(entity, {first.name: list(match.values) if first.is_list else
                                                          match.values[0]})
                    value = format_value(first, typed[first.name], g.language, record_titles=titles, user_names=names)
                else:
                    value = ", ".join(str(v) for v in match.values)
                why.append(t("Same {field}: {value}", field=field_label, value=value))
            else:
                why.append(t("{field} {score}% alike", field=field_label, score=match.score))
        rows.append({"id": c.id, "title": c.title, "why": why,
                     "url": url_for("cards.view_record", entity_name=entity.name, record_id=c.id),
                     "texts": [format_value(f, c.show.get(f.name), g.language, record_titles=titles, user_names=names)
                               for f in shown]})
    return _render_form(entity, form, duplicates=rows, duplicate_fields=shown)


def _changed_since_loaded(entity: EntityDef, sent: FormInput) -> set[str] | None:
    """The fields the user changed in an edit form, by the values it was loaded with (`_base`); None when the form did
    not say (every field sent counts as changed)."""
    try:
        base_texts = json.loads(request.form.get("_base", ""))
        base_form = MultiDict([(k, v) for k, texts in base_texts.items() for v in texts])
        base = form_values(entity, base_form, MultiDict(), set(base_texts)).values
    except (ValueError, TypeError, AttributeError, RecursionError):
        return None
    return {name for name, value in sent.values.items() if _blank_to_none(base.get(name)) != _blank_to_none(value)}


def _blank_to_none(value: Any) -> Any:
    """A posted value with its empty forms ("", [], a list of empty texts) as None: the snapshot leaves them out."""
    if isinstance(value, list):
        value = [v for v in value if v not in (None, "")]
    return None if value in (None, "", []) else value


def _parsable(values: dict[str, Any], errors: dict[str, list[str]]) -> dict[str, Any]:
    """The submitted values without those that failed, so the form state can still be evaluated."""
    return {k: v for k, v in values.items() if k not in errors}


@cards.route("/<entity_name>/<int:record_id>/edit", methods=["GET", "POST"])
@login_required
def edit_record(entity_name: str, record_id: int) -> Any:
    """The card form of a record; POST saves with the version it was loaded at (stale edits are refused)."""
    entity = entity_for(entity_name)
    service = platform.service
    if request.method == "GET":
        prefill = _prefill(entity)
        state = service.evaluate(entity.name, prefill, current_user(), record_id, for_update=True)
        record = state.record
        # A prefilled change (a kanban move that needs more) shows its errors at once; a plain edit only
        # those of fields flagged by someone who could not see them (the save must fix them).
        flagged = frozenset(a.field for a in record.attention if a.field) if record else frozenset()
        form = build_form(entity, state, record, submitted=MultiDict(prefill) if prefill else None,
                          touched=None if prefill else flagged)
        return _render_form(entity, form)
    if any(f.filename for f in request.files.values()):  # nothing is stored for a card the user may not change
        service.require_changeable(entity.name, record_id, current_user())
    else:
        require(platform.state.metadata, current_user(), entity, "update")
    sent = _submitted(entity, record_id=record_id)
    take = request.form.getlist("_take_theirs")
    if take:  # "take theirs" on a field both people changed: show the form again with their value
        return _conflict(entity, record_id, sent, take_theirs=frozenset(take))
    version = submitted_version()
    if version is None:
        return _conflict(entity, record_id, sent, reason="missing"), 409
    if (found := _likely_duplicates(entity, sent, record_id, version)) is not None:
        return found, 409
    try:
        saved = service.update(entity.name, record_id, sent.values, current_user(), expected_version=version,
                               owner=_owner_choice(), inferred=sent.inferred, input_errors=sent.errors, origin=UI)
    except RecordValidationError as exc:
        return _refused(entity, exc, sent, record_id, version), 422
    except Conflict:  # stale: merge, even when some value did not parse
        return _conflict(entity, record_id, sent), 409
    flash(t("Saved."), "success")
    return redirect(url_for("cards.view_record", entity_name=entity.name, record_id=saved.id))


def _conflict(entity: EntityDef, record_id: int, sent: FormInput, *,
              reason: str = "changed", take_theirs: frozenset[str] = frozenset()) -> str:
    """The form again after a concurrent change: the saved values, the user's own edits on top, clashes marked.

    The form carries the values it was loaded with (`_base`), so this is a three-way merge (web/merge.py):
    saving again never puts back a value someone else has just changed, and loses none of the user's.
    """
    service = platform.service
    values, form_errors = sent.values, sent.errors
    base: dict[str, Any] | None
    try:
        base_texts = json.loads(request.form.get("_base", ""))
        base_form = MultiDict([(k, v) for k, texts in base_texts.items() for v in texts])
        base = form_values(entity, base_form, MultiDict(), set(base_texts)).values
    except (ValueError, TypeError, AttributeError, RecursionError):
        base = None  # no usable snapshot (a hand-made request): everything that differs is the user's
    for _attempt in range(5):  # merged with one saved version, shown over the same one (another save may land)
        fresh = service.get(entity.name, record_id, current_user())
        merge = merge_edit(entity, values, base, fresh.values, service.ctx, take_theirs)
        kept = {n: v for n, v in merge.kept.items() if n not in form_errors}
        state = service.evaluate(entity.name, _parsable(kept, form_errors), current_user(), record_id, for_update=True,
                                 inferred=sent.inferred)
        if state.version == fresh.version:
            break
    # Who saved meanwhile: often the same person in another tab, who should not read "someone else".
    yours = fresh.updated_by == current_user().id
    who = t("you, in another tab") if yours else user_names(platform.state.engine, [fresh.updated_by]).get(
        fresh.updated_by or 0) or t("someone else")
    notes: dict[str, list[str]] = {}
    theirs: dict[str, str] = {}
    titles: dict[int, str] = {}
    for name, saved in merge.clashes.items():
        field = entity.fields[name]
        if field.type.refers == "record":
            titles.update(record_titles(service, field.to or "", ids_in(saved), current_user()))
        shown = format_value(field, saved, g.language, record_titles=titles)
        if shown:
            theirs[name] = t("Take the saved value: «{value}»", value=shown)
            notes[name] = [t("Meanwhile «{value}» was saved here ({who}); keep yours or take the saved value.",
                             value=shown, who=who)]
        else:
            theirs[name] = t("Take the saved value: empty")
            notes[name] = [t("Meanwhile this field was emptied ({who}); keep yours or take the saved value.",
                             who=who)]
    shown_as_sent = merge.mine | set(form_errors)
    submitted = MultiDict([(k, v) for k, v in request.form.items(multi=True)
                           if (k in shown_as_sent or k not in entity.fields) and k not in ("_take_theirs", "_base")])
    if reason == "missing":
        flash(t("The form did not say which version of the card it changes. It now shows the saved card with "
                "your changes on top; check them and save again."), "error")
    elif take_theirs:
        flash(t("The saved value is in the form now; save to keep it."), "info")
    else:
        saved_by = t("You saved this card in another tab meanwhile.") if yours else t(
            "{name} saved this card while you were editing it.", name=who)
        after = t("The form shows the saved values with your changes on top; check the marked fields and save "
                  "again.") if notes else t("The form shows the saved values with your changes on top; none of the "
                                            "fields you changed was changed there. Check and save again.")
        flash(f"{saved_by} {after}", "error")
    form = build_form(entity, state, fresh, submitted=submitted, form_errors={**form_errors, **notes})
    form.theirs = theirs  # the version and base of the next save are the state's: what the form shows over
    return _render_form(entity, form)


def _with_users(listed: list[tuple[int, str]], wanted: set[int]) -> list[tuple[int, str]]:
    """`listed` plus the users of `wanted` it lacks, marked when they can no longer sign in."""
    missing = wanted - {i for i, _ in listed}
    if not missing:
        return listed
    names = user_names(platform.state.engine, missing)
    return [*listed, *((i, t("{name} (deactivated)", name=names[i])) for i in sorted(missing) if i in names)]


def _render_form(entity: EntityDef, form: CardForm, **extra: Any) -> str:
    """The form's page; with `extra` (the likely duplicates) rendered by the template, which alone shows them."""
    owner_scope = scope_of(platform.state.metadata, current_user(), entity, "update" if form.record else "create")
    # The same users a user field offers, when the form already loaded them (the card's owner among them).
    owners = (list(form.users) or list_users(platform.state.engine, limit=500)) if owner_scope != "own" else []
    if owners and form.record is not None and form.record.owner is not None:
        owners = _with_users(owners, {form.record.owner})
    current_owner = form.record.owner if form.record is not None else current_user().id
    if extra:
        return render_template("cards/form.html", entity=entity, form=form, owners=owners,
                               current_owner=current_owner, **extra)
    return render_form_page(entity, form, owners, current_owner, navigation())


def _live(entity: EntityDef, record_id: int | None) -> str:
    """Re-evaluate the form as typed: formulas, conditions and errors of the fields the user has left."""
    sent = _submitted(entity, with_files=False)  # uploads wait for the save
    values = {k: v for k, v in sent.values.items() if not entity.fields[k].type.holds_files}
    state = platform.service.evaluate(entity.name, _parsable(values, sent.errors), current_user(), record_id,
                                      for_update=record_id is not None, inferred=sent.inferred, preview=True)
    touched = frozenset(n for n in request.form.get("_touched", "").split(",") if n)
    form = build_form(entity, state, state.record, submitted=request.form, form_errors=sent.errors, touched=touched)
    return render_template("cards/_live.html", entity=entity, form=form)


@cards.post("/<entity_name>/live")
@login_required
def live_new(entity_name: str) -> str:
    """htmx: the new-record form re-evaluated."""
    return _live(entity_for(entity_name, "create"), None)


@cards.post("/<entity_name>/<int:record_id>/live")
@login_required
def live_edit(entity_name: str, record_id: int) -> str:
    """htmx: the edit form re-evaluated (for those who may change the record)."""
    return _live(entity_for(entity_name), record_id)


# --- a card ------------------------------------------------------------------------------------------


@cards.get("/<entity_name>/<int:record_id>")
@login_required
def view_record(entity_name: str, record_id: int) -> str:
    """The card: title and tags, fields by tab, records referring to it, actions the user may take."""
    entity = entity_for(entity_name)
    service = platform.service
    record = service.get(entity.name, record_id, current_user())
    state = service.evaluate(entity.name, {}, current_user(), record.id)
    form = build_form(entity, state, record)
    related = []
    for (source, field_name), ids in service.referencing(entity.name, record.id, current_user()).items():
        source_entity = platform.state.metadata.entities[source]
        titles = record_titles(service, source, ids, current_user())
        related.append((source_entity, source_entity.fields[field_name], [(i, titles.get(i, f"#{i}")) for i in ids]))
    people = user_names(platform.state.engine, [record.owner, record.created_by, record.updated_by])
    metadata = platform.state.metadata
    creatable = [(e, f) for e in metadata.entities.values() for f in e.reference_fields
                 if f.to == entity.name and not f.multiple and scope_of(metadata, current_user(), e, "create") != "none"
                 and f.name in editable_fields(e, current_user())]
    may = service.permissions(entity.name, [record], current_user())[record.id]
    manual, upcoming = card_rules(entity, record.id, current_user(), may.update)
    return render_template("cards/card.html", entity=entity, record=record, form=form, related=related,
                           people=people, creatable=creatable, may_update=may.update, may_delete=may.delete,
                           manual_rules=manual, upcoming=upcoming,
                           format_datetime=when)


@cards.post("/<entity_name>/<int:record_id>/delete")
@login_required
def delete_record(entity_name: str, record_id: int) -> Response:
    """Move the record to the trash."""
    entity = entity_for(entity_name, "delete")
    version = submitted_version()
    if version is None:
        raise Conflict(t("The request did not say which version of the card it deletes; reload the card and "
                         "delete it again."))
    platform.service.delete(entity.name, record_id, current_user(), expected_version=version, origin=UI)
    flash(t("Moved to the trash: whoever may delete these cards can restore it from the list's Trash."), "success")
    return redirect(url_for("cards.list_view", entity_name=entity.name))


def download_file(file_id: str) -> Response:
    """A file held by a record the signed-in user may read (the card links its file fields here)."""
    from kartoteka.api.files import send_stored_file

    if g.user is None:
        return login_required(lambda: None)()  # type: ignore[no-any-return]
    return send_stored_file(file_id, current_user())


@cards.get("/<entity_name>/lookup")
@login_required
def lookup(entity_name: str) -> str:
    """htmx: <option>s of records matching what was typed into a reference picker, as the picker writes them
    (title, then the fields the card's `picker:` names, so that namesakes differ)."""
    field_name = request.args.get("field", "")
    text = request.args.get(field_name + PICKER_TEXT_SUFFIX, request.args.get(field_name, request.args.get("q", "")))
    try:
        found = suggestions(entity_name, text)
    except NotFound:
        found = []
    return render_template("cards/_lookup.html", found=found)
