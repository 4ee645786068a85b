"""Card pages: the list, a card, its form (new and edit, live with htmx), reference lookups."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, flash, g, redirect, render_template, request, url_for
from werkzeug.datastructures import FileStorage, MultiDict

from kartoteka.errors import BadRequest, Conflict, NotFound, PermissionDenied, RecordValidationError
from kartoteka.extensions import platform
from kartoteka.files import FileTooLarge, UploadRefused, clean_name, store_file, upload_type
from kartoteka.metadata.model import EntityDef, FieldDef
from kartoteka.records.access import editable_fields, viewable_fields
from kartoteka.records.files import accepted_type, too_large
from kartoteka.records.lookup import exact_titles, record_titles, search_titles
from kartoteka.records.model import FormState, Principal, Record, ids_in
from kartoteka.records.scopes import in_scope, readable_entities, require, scope_of, scopes_for
from kartoteka.users import list_users, user_names
from kartoteka.web.auth import login_required, t
from kartoteka.web.cardform import CardForm, widget_for
from kartoteka.web.formatting import format_datetime, format_value
from kartoteka.web.forms import CONTROL_KEYS, form_values
from kartoteka.web.merge import merge_edit

cards = Blueprint("cards", __name__, url_prefix="/cards")


def _user() -> Principal:
    return g.user


def _entity(name: str, action: str = "read") -> EntityDef:
    """The entity, if the user may do `action` with some of its records (PermissionDenied otherwise)."""
    entity = platform.service.entity(name)
    require(platform.state.metadata, _user(), entity, action)
    return entity


def scopes(entity: EntityDef) -> dict[str, str]:
    """The user's scope per action on `entity`, for showing only the buttons that will work."""
    return scopes_for(platform.state.metadata, _user(), entity)


@cards.app_context_processor
def navigation() -> dict[str, Any]:
    """The cards the signed-in user may open, for the top navigation."""
    user = getattr(g, "user", None)
    if user is None:
        return {"nav_entities": []}
    return {"nav_entities": readable_entities(platform.state.metadata, user)}


@cards.get("/")
@login_required
def index() -> str:
    """The start page: every card the user may open, with links to its list, kanban and a new record."""
    entries = [(e, scopes(e)) for e in readable_entities(platform.state.metadata, _user())]
    return render_template("cards/index.html", entries=entries, board_field=board_field)


# --- forms -------------------------------------------------------------------------------------------


def _saver() -> Any:
    state = platform.state

    def save(field: FieldDef, upload: FileStorage) -> dict[str, Any]:
        # What the field does not take is refused before it is stored: a refused file would otherwise
        # wait a day as an unsaved upload, counting against the user's limit.
        try:
            name = clean_name(upload.filename or "")
            wrong_type = accepted_type(field, name, upload_type(name, upload.mimetype))
            if wrong_type is not None:
                raise ValueError(wrong_type)
            return store_file(state.engine, state.settings.instance_dir / "files", upload.stream,
                              upload.filename or "", upload.mimetype, _user().id, state.clock.now(),
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
    user = _user()
    viewable = viewable_fields(entity, user)
    ids: dict[str, set[int]] = {}
    for f in entity.reference_fields:
        value = state.values.get(f.name)
        if f.name in viewable:
            ids.setdefault(f.to or "", set()).update(ids_in(value))
    titles: dict[int, str] = {}
    for target, wanted in ids.items():
        titles.update(record_titles(platform.service, target, wanted, user))
    has_users = any(f.type.name == "user" and f.name in viewable for f in entity.fields.values())
    users = list_users(platform.state.engine, limit=500) if has_users else []
    live_url = (url_for("cards.live_edit", entity_name=entity.name, record_id=record.id) if record
                else url_for("cards.live_new", entity_name=entity.name))
    return CardForm(entity, user, state, viewable, editable_fields(entity, user), record, submitted, titles,
                    users, form_errors or {}, touched, live_url=live_url, language=g.language)


def _inferable(entity: EntityDef, state: FormState) -> set[str]:
    """Fields whose absence from a posted form means "emptied": editable now and placed in the user's layout.

    A department's layout may leave fields out; the form never renders them, so their absence says nothing.
    """
    user = _user()
    placed = set(entity.layout_for(user.department).field_names())
    return {n for n in editable_fields(entity, user) if n in placed and not state.read_only.get(n)}


def _submitted_values(entity: EntityDef, before: FormState, current: dict[str, Any] | None
                      ) -> tuple[dict[str, Any], dict[str, list[str]]]:
    return form_values(entity, request.form, request.files, current, _inferable(entity, before), _saver(),
                       _resolver(), viewable_fields(entity, _user()))


def _resolver() -> Any:
    user = _user()
    return lambda target, text: exact_titles(platform.service, target, text, user)


def _prefill(entity: EntityDef) -> dict[str, Any]:
    """?company=12&stage=lost on /new or /edit: values to start from (a related record, a kanban move)."""
    viewable = viewable_fields(entity, _user())  # a hidden name is ignored like one no card has
    return {k: v for k, v in request.args.items() if k in viewable and k not in CONTROL_KEYS}


def submitted_version() -> int | None:
    """The version a browser form says it was loaded at; None when it is missing or not a version."""
    text = request.form.get("version", "")
    return int(text) if text.isdigit() and text.isascii() and len(text) < 10 else None


def _owner_choice() -> int | None:
    """The owner chosen on the form; the record service decides whether this user may assign it."""
    raw = request.form.get("owner", "").strip()
    return int(raw) if raw.isdigit() and raw.isascii() and len(raw) < 19 else None


@cards.route("/<entity_name>/new", methods=["GET", "POST"])
@login_required
def new_record(entity_name: str) -> Any:
    """The empty card form; POST creates the record (full page, works without JavaScript)."""
    entity = _entity(entity_name, "create")
    service = platform.service
    before = service.evaluate(entity.name, _prefill(entity), _user())
    if request.method == "GET":  # nothing typed yet: no messages until the user leaves a field or saves
        return _render_form(entity, build_form(entity, before, touched=frozenset()))
    values, form_errors = _submitted_values(entity, before, None)
    try:
        if form_errors:
            raise RecordValidationError(form_errors)
        record = service.create(entity.name, values, _user(), owner=_owner_choice())
    except RecordValidationError as exc:
        # Everything the save would say, not only the form's own errors (an upload refused first).
        state = service.evaluate(entity.name, _parsable(values, form_errors), _user(), lookups=True)
        state.errors = {**state.errors, **exc.errors}
        flash(t("Please correct the highlighted fields."), "error")
        form = build_form(entity, state, submitted=request.form, form_errors=form_errors)
        return _render_form(entity, form), 422
    flash(t("Created."), "success")
    return redirect(url_for("cards.view_record", entity_name=entity.name, record_id=record.id))


def _parsable(values: dict[str, Any], errors: dict[str, list[str]]) -> dict[str, Any]:
    """The submitted values without those that failed, so the form state can still be evaluated."""
    return {k: v for k, v in values.items() if k not in errors}


@cards.route("/<entity_name>/<int:record_id>/edit", methods=["GET", "POST"])
@login_required
def edit_record(entity_name: str, record_id: int) -> Any:
    """The card form of a record; POST saves with the version it was loaded at (stale edits are refused)."""
    entity = _entity(entity_name)
    service = platform.service
    record = _changeable(entity, record_id)
    before = service.evaluate(entity.name, {}, _user(), record.id)
    if request.method == "GET":
        prefill = _prefill(entity)
        state = service.evaluate(entity.name, prefill, _user(), record.id) if prefill else before
        # A prefilled change (a kanban move that needs more) shows its errors at once; a plain edit only
        # those of fields flagged by someone who could not see them (the save must fix them).
        flagged = frozenset(a.field for a in record.attention if a.field)
        form = build_form(entity, state, record, submitted=MultiDict(prefill) if prefill else None,
                          touched=None if prefill else flagged)
        return _render_form(entity, form)
    values, form_errors = _submitted_values(entity, before, dict(record.values))
    take = request.form.getlist("_take_theirs")
    if take:  # "take theirs" on a field both people changed: show the form again with their value
        return _conflict(entity, record.id, values, form_errors, take_theirs=frozenset(take))
    version = submitted_version()
    if version is None:
        return _conflict(entity, record.id, values, form_errors, reason="missing"), 409
    if version != record.version:  # stale: merge first, even when some value did not parse
        return _conflict(entity, record.id, values, form_errors), 409
    try:
        if form_errors:
            raise RecordValidationError(form_errors)
        saved = service.update(entity.name, record.id, values, _user(), expected_version=version,
                               owner=_owner_choice())
    except RecordValidationError as exc:
        state = service.evaluate(entity.name, _parsable(values, form_errors), _user(), record.id, lookups=True)
        state.errors = {**state.errors, **exc.errors}
        flash(t("Please correct the highlighted fields."), "error")
        form = build_form(entity, state, record, submitted=request.form, form_errors=form_errors)
        form.version = version  # the values shown are those sent, made at this version, not the state's
        return _render_form(entity, form), 422
    except Conflict:
        return _conflict(entity, record.id, values, form_errors), 409
    flash(t("Saved."), "success")
    return redirect(url_for("cards.view_record", entity_name=entity.name, record_id=saved.id))


def _changeable(entity: EntityDef, record_id: int) -> Record:
    """The record, if the user may change it (its form and live checks are for those who may)."""
    record = platform.service.get(entity.name, record_id, _user())
    with platform.state.engine.connect() as conn:
        if not in_scope(conn, scope_of(platform.state.metadata, _user(), entity, "update"), _user(), record.owner):
            raise PermissionDenied(t("You may open this record but not change it."))
    return record


def _conflict(entity: EntityDef, record_id: int, values: dict[str, Any], form_errors: dict[str, list[str]], *,
              reason: str = "changed", take_theirs: frozenset[str] = frozenset()) -> str:
    """The form again after a concurrent change: the saved values, the user's own edits on top, clashes marked.

    The form carries the values it was loaded with (`_base`), so this is a three-way merge (web/merge.py):
    saving again never puts back a value someone else has just changed, and loses none of the user's.
    """
    service = platform.service
    base: dict[str, Any] | None
    try:
        base_texts = json.loads(request.form.get("_base", ""))
        base_form = MultiDict([(k, v) for k, texts in base_texts.items() for v in texts])
        base, _ = form_values(entity, base_form, MultiDict(), None, set(base_texts))
    except (ValueError, TypeError, AttributeError, RecursionError):
        base = None  # no usable snapshot (a hand-made request): everything that differs is the user's
    for _attempt in range(5):  # merged with one saved version, shown over the same one (another save may land)
        fresh = service.get(entity.name, record_id, _user())
        merge = merge_edit(entity, values, base, fresh.values, service.ctx, take_theirs)
        kept = {n: v for n, v in merge.kept.items() if n not in form_errors}
        state = service.evaluate(entity.name, _parsable(kept, form_errors), _user(), record_id)
        if state.version == fresh.version:
            break
    # Who saved meanwhile: often the same person in another tab, who should not read "someone else".
    yours = fresh.updated_by == _user().id
    who = t("you, in another tab") if yours else user_names(platform.state.engine, [fresh.updated_by]).get(
        fresh.updated_by or 0) or t("someone else")
    notes: dict[str, list[str]] = {}
    theirs: dict[str, str] = {}
    titles: dict[int, str] = {}
    for name, saved in merge.clashes.items():
        field = entity.fields[name]
        if field.type.name == "reference":
            titles.update(record_titles(service, field.to or "", ids_in(saved), _user()))
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


def _render_form(entity: EntityDef, form: CardForm) -> str:
    owner_scope = scope_of(platform.state.metadata, _user(), entity, "update" if form.record else "create")
    # The same active users a user field offers, when the form already loaded them.
    owners = (list(form.users) or list_users(platform.state.engine, limit=500)) if owner_scope != "own" else []
    return render_template("cards/form.html", entity=entity, form=form, widget_for=widget_for, owners=owners,
                           scopes=scopes(entity))


def _live(entity: EntityDef, record_id: int | None) -> str:
    """Re-evaluate the form as typed: formulas, conditions and errors of the fields the user has left."""
    service = platform.service
    record = service.get(entity.name, record_id, _user()) if record_id else None
    current = dict(record.values) if record else None
    before = service.evaluate(entity.name, {}, _user(), record_id)
    values, form_errors = form_values(entity, request.form, MultiDict(), current, _inferable(entity, before),
                                      resolve=_resolver(), viewable=viewable_fields(entity, _user()))
    values = {k: v for k, v in values.items() if entity.fields[k].type.name != "file"}
    state = service.evaluate(entity.name, _parsable(values, form_errors), _user(), record_id)
    touched = frozenset(n for n in request.form.get("_touched", "").split(",") if n)
    form = build_form(entity, state, record, submitted=request.form, form_errors=form_errors, touched=touched)
    return render_template("cards/_live.html", entity=entity, form=form)


@cards.post("/<entity_name>/live")
@login_required
def live_new(entity_name: str) -> str:
    """htmx: the new-record form re-evaluated."""
    return _live(_entity(entity_name, "create"), None)


@cards.post("/<entity_name>/<int:record_id>/live")
@login_required
def live_edit(entity_name: str, record_id: int) -> str:
    """htmx: the edit form re-evaluated (for those who may change the record)."""
    entity = _entity(entity_name)
    return _live(entity, _changeable(entity, record_id).id)


# --- a card ------------------------------------------------------------------------------------------


@cards.get("/<entity_name>/<int:record_id>")
@login_required
def view_record(entity_name: str, record_id: int) -> str:
    """The card: title and tags, fields by tab, records referring to it, actions the user may take."""
    entity = _entity(entity_name)
    service = platform.service
    record = service.get(entity.name, record_id, _user())
    state = service.evaluate(entity.name, {}, _user(), record.id)
    form = build_form(entity, state, record)
    related = []
    for (source, field_name), ids in service.referencing(entity.name, record.id, _user()).items():
        source_entity = platform.state.metadata.entities[source]
        titles = record_titles(service, source, ids, _user())
        related.append((source_entity, source_entity.fields[field_name], [(i, titles.get(i, f"#{i}")) for i in ids]))
    people = user_names(platform.state.engine, [record.owner, record.created_by, record.updated_by])
    metadata = platform.state.metadata
    creatable = [(e, f) for e in metadata.entities.values() for f in e.reference_fields
                 if f.to == entity.name and not f.multiple and scope_of(metadata, _user(), e, "create") != "none"
                 and f.name in editable_fields(e, _user())]
    with platform.state.engine.connect() as conn:
        may = {a: in_scope(conn, scope_of(metadata, _user(), entity, a), _user(), record.owner)
               for a in ("update", "delete")}
    return render_template("cards/card.html", entity=entity, record=record, form=form, related=related,
                           people=people, creatable=creatable, may_update=may["update"], may_delete=may["delete"],
                           format_datetime=lambda moment: format_datetime(moment, g.language))


@cards.post("/<entity_name>/<int:record_id>/delete")
@login_required
def delete_record(entity_name: str, record_id: int) -> Response:
    """Move the record to the trash."""
    entity = _entity(entity_name, "delete")
    version = submitted_version()
    if version is None:
        raise Conflict(t("The request did not say which version of the card it deletes; reload the card and "
                         "delete it again."))
    platform.service.delete(entity.name, record_id, _user(), expected_version=version)
    flash(t("Deleted."), "success")
    return redirect(url_for("cards.list_view", entity_name=entity.name))


def download_file(file_id: str) -> Response:
    """A file held by a record the signed-in user may read (the card links its file fields here)."""
    from kartoteka.api.files import send_stored_file

    if g.user is None:
        return login_required(lambda: None)()  # type: ignore[no-any-return]
    return send_stored_file(file_id, _user())


@cards.get("/<entity_name>/lookup")
@login_required
def lookup(entity_name: str) -> str:
    """htmx: <option>s of records matching what was typed into a reference picker."""
    field_name = request.args.get("field", "")
    text = request.args.get(field_name, request.args.get("q", ""))
    try:
        found = search_titles(platform.service, entity_name, text, _user())
    except NotFound:
        found = []
    return render_template("cards/_lookup.html", found=found)


def board_field(entity: EntityDef) -> str | None:
    """The select a kanban board groups by: `stage` or `status`, else the first select of the card."""
    selects = [n for n, f in entity.fields.items() if f.type.name == "select" and not f.is_formula]
    for preferred in ("stage", "status"):
        if preferred in selects:
            return preferred
    return selects[0] if selects else None


from kartoteka.web import lists  # noqa: E402, F401  (registers the list, kanban and saved-view routes)
