"""Import pages and the list's export.

/cards/<entity>/import            choose a file and the options (upsert key, duplicates, invalid rows, automation)
/cards/<entity>/import/<upload>   the columns as matched (a select per column to change it) and the first rows as they
                                  would be saved; "Check every row" (dry run) or "Import"
/cards/imports/<id>               an import: its progress (htmx polling while it runs), counts, row errors, Undo
/cards/<entity>/export            the list as CSV or XLSX, with the list's filters, search and sort

The upload waits under the instance directory (`imports/upload-<user>-<token>.<format>`), named for its user: a
token is no use to anyone else. Small files are imported in the request; larger ones by `kartoteka worker`.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response

from kartoteka.errors import BadRequest, KartotekaError, RecordValidationError
from kartoteka.extensions import platform
from kartoteka.i18n import t
from kartoteka.imports.errors import ImportFileError
from kartoteka.imports.matching import ID, OWNER
from kartoteka.imports.reader import format_of
from kartoteka.imports.runner import Importer, ImportOptions
from kartoteka.imports.service import (
    INLINE_BYTES,
    options_from_form,
    save_file,
    start_import,
    upload_dir,
)
from kartoteka.imports.undo import UNDO_INLINE_SAVES, may_manage, undo_import, visible_import
from kartoteka.listargs import list_query
from kartoteka.messages import message_from_stored
from kartoteka.records.access import editable_fields, viewable_fields
from kartoteka.records.scopes import scope_of
from kartoteka.web.auth import login_required
from kartoteka.web.common import cards, current_user, entity_for
from kartoteka.web.formatting import format_datetime, format_value

_UPLOAD = re.compile(r"^upload-(\d+)-([0-9a-f]{32})\.(csv|xlsx)$")
UPLOAD_LIFETIME = 24 * 3600  # seconds an upload nobody imported is kept


def _uploads() -> Path:
    return upload_dir(platform.state.settings.instance_dir)


def _upload_path(token: str) -> Path:
    """The current user's upload named `token` (404 for any other name)."""
    match = _UPLOAD.match(token)
    user = current_user()
    if match is None or user.id is None or int(match.group(1)) != user.id:
        abort(404)
    path = _uploads() / token
    if not path.is_file():
        flash(t("The uploaded file is gone; choose it again."), "error")
        abort(404)
    return path


def _sweep_uploads() -> None:
    """Remove uploads older than a day that nobody imported."""
    folder = _uploads()
    if not folder.is_dir():
        return
    limit = time.time() - UPLOAD_LIFETIME
    for path in folder.glob("upload-*"):
        try:
            if path.stat().st_mtime < limit:
                path.unlink()
        except FileNotFoundError:
            continue


def _key_choices(entity: Any) -> list[tuple[str, str]]:
    user = current_user()
    viewable = viewable_fields(entity, user)
    return [(ID, "#")] + [(n, f.label.get(_language())) for n, f in entity.fields.items()
                          if n in viewable and not f.multiple and f.value_type.storage != "json"]


def _language() -> str:
    from flask import g

    return getattr(g, "language", "en")


@cards.get("/<entity_name>/import")
@login_required
def import_form(entity_name: str) -> Any:
    """Choose a file (CSV or XLSX) and how to import it."""
    entity = entity_for(entity_name, "create")
    return render_template("imports/upload.html", entity=entity, keys=_key_choices(entity), options=ImportOptions(),
                           may_update=scope_of(platform.state.metadata, current_user(), entity, "update") != "none")


@cards.post("/<entity_name>/import")
@login_required
def upload(entity_name: str) -> Any:
    """Save the chosen file and show its preview."""
    entity = entity_for(entity_name, "create")
    chosen = request.files.get("file")
    if chosen is None or not chosen.filename:
        flash(t("Choose a CSV or XLSX file to import."), "error")
        return redirect(url_for("cards.import_form", entity_name=entity.name))
    _sweep_uploads()
    user = current_user()
    try:
        path, kind, _size = save_file(chosen.stream, chosen.filename, platform.state.settings.instance_dir)
    except ImportFileError as exc:
        flash(t(exc.detail), "error")
        return redirect(url_for("cards.import_form", entity_name=entity.name))
    token = f"upload-{user.id}-{path.stem.rsplit('-', 1)[-1]}.{kind}"
    path.rename(_uploads() / token)
    options = options_from_form(request.form)
    args = {"name": chosen.filename[:200], **_option_args(options)}
    return redirect(url_for("cards.import_preview", entity_name=entity.name, token=token, **args))


def _option_args(options: ImportOptions) -> dict[str, str]:
    args = {"on_duplicate": options.on_duplicate, "skip_invalid": "true" if options.skip_invalid else "false",
            "automation": "true" if options.automation else "false"}
    if options.key:
        args["key"] = options.key
    if options.encoding:
        args["encoding"] = options.encoding
    return args


@cards.get("/<entity_name>/import/<token>")
@login_required
def import_preview(entity_name: str, token: str) -> Any:
    """The columns as matched and the first rows as they would be saved (rolled back)."""
    entity = entity_for(entity_name, "create")
    path = _upload_path(token)
    name = request.args.get("name") or path.name
    options = options_from_form(request.args)
    problem = None
    rows: list[Any] = []
    mapping = None
    header: list[str] = []
    try:
        importer = Importer(platform.service, entity.name, current_user(), options)
        with importer.open(path, name) as table:
            header = table.header
            mapping = importer.mapping
            rows = importer.preview(table)
    except RecordValidationError as exc:
        problem = " ".join(t(m) for ms in exc.errors.values() for m in ms)
    except KartotekaError as exc:
        problem = t(exc.detail)
    if mapping is None and not header:
        flash(problem or t("The file cannot be read."), "error")
        return redirect(url_for("cards.import_form", entity_name=entity.name))
    user = current_user()
    editable = editable_fields(entity, user)
    fields = [(ID, "#"), (OWNER, t("Owner"))] + [(n, f.label.get(_language())) for n, f in entity.fields.items()
                                                 if n in editable]
    chosen = {c.name: (c.field if c.matched else "") for c in mapping.columns} if mapping else \
        {column: options.mapping.get(column, "") for column in header}
    shown = [n for n in entity.fields if any(r.values.get(n) not in (None, "", []) for r in rows)][:12]
    return render_template(
        "imports/preview.html", entity=entity, token=token, name=name, options=options, mapping=mapping,
        header=header, chosen=chosen, fields=fields, rows=rows, shown=shown, problem=problem,
        text=lambda field, value: format_value(entity.fields[field], value, _language()),
        option_args=_option_args(options), status=400 if problem else 200), 400 if problem else 200


@cards.post("/<entity_name>/import/<token>")
@login_required
def run_upload(entity_name: str, token: str) -> Any:
    """Import the previewed file (or dry-run it) with the mapping chosen on the preview."""
    entity = entity_for(entity_name, "create")
    path = _upload_path(token)
    name = request.form.get("name") or path.name
    options = options_from_form(request.form)
    if request.form.get("remap"):  # the mapping changed: preview again
        args = {"name": name, **_option_args(options)}
        args.update({f"map.{c}": f for c, f in options.mapping.items()})
        return redirect(url_for("cards.import_preview", entity_name=entity.name, token=token, **args))
    kind = format_of(name)
    inline = current_app.config.get("KARTOTEKA_IMPORT_INLINE_BYTES", INLINE_BYTES)
    settings = platform.state.settings
    kept = path
    if options.dry_run:  # the upload stays for the import that follows a dry run
        kept = path.with_name(path.name + ".check")
        shutil.copyfile(path, kept)
    try:
        import_id, _outcome = start_import(platform.service, entity.name, current_user(), kept, name, kind,
                                           kept.stat().st_size, options, settings.instance_dir, inline)
    except RecordValidationError as exc:
        flash(" ".join(t(m) for ms in exc.errors.values() for m in ms), "error")
        return redirect(url_for("cards.import_preview", entity_name=entity.name, token=token, name=name,
                                **_option_args(options)))
    except (BadRequest, KartotekaError) as exc:
        flash(t(exc.detail), "error")
        return redirect(url_for("cards.import_form", entity_name=entity.name))
    if not options.dry_run:
        path.unlink(missing_ok=True)
    if options.dry_run:  # the status page offers to import the same upload next
        return redirect(url_for("cards.import_status", import_id=import_id, upload=token, name=name))
    return redirect(url_for("cards.import_status", import_id=import_id))


def _said(item: Any) -> str:
    """A message the imports table kept, in the reader's language."""
    if not isinstance(item, dict):
        return ""
    stored = item.get("stored")
    return t(message_from_stored(stored)) if isinstance(stored, dict) else t(str(item.get("message") or ""))


def _status_context(import_id: int) -> dict[str, Any]:
    service = platform.service
    user = current_user()
    row = visible_import(service, import_id, user)
    entity = service.entity(row.entity)
    done = row.status not in ("queued", "running")
    return {"row": row, "entity": entity, "done": done, "may_undo": may_manage(service, row, user) and
            row.status in ("done", "failed") and not (row.options or {}).get("dry_run") and
            (row.created or row.updated),
            "said": _said, "created_at": format_datetime(row.created_at, _language()),
            "finished_at": format_datetime(row.finished_at, _language()) if row.finished_at else None}


@cards.get("/imports/<int:import_id>")
@login_required
def import_status(import_id: int) -> Any:
    """An import: progress while it runs, then its counts, errors and the Undo button."""
    context = _status_context(import_id)
    upload_token = request.args.get("upload", "")
    if not _UPLOAD.match(upload_token):
        upload_token = ""
    return render_template("imports/status.html", upload=upload_token, **context)


@cards.get("/imports/<int:import_id>/progress")
@login_required
def import_progress(import_id: int) -> Any:
    """The progress fragment the status page polls (htmx) while the import runs."""
    context = _status_context(import_id)
    response = current_app.response_class(render_template("imports/_progress.html", **context))
    if context["done"]:
        response.headers["HX-Refresh"] = "true"  # the whole page: errors, the Undo button
    return response


@cards.post("/imports/<int:import_id>/undo")
@login_required
def undo(import_id: int) -> Response:
    """Undo an import (its author or an administrator)."""
    result = undo_import(platform.service, import_id, current_user(), queue_over=UNDO_INLINE_SAVES)
    if result is None:
        flash(t("The import is large: it is being undone in the background."), "info")
        return redirect(url_for("cards.import_status", import_id=import_id))
    flash(t("Import undone: {deleted} created records deleted, {reverted} updated records reverted.",
            deleted=result.deleted, reverted=result.reverted), "success")
    for kept in result.kept[:20]:
        flash(t(kept.reason), "info")
    return redirect(url_for("cards.import_status", import_id=import_id))


@cards.get("/<entity_name>/export")
@login_required
def export(entity_name: str) -> Any:
    """The list as a file: its filters, search and sort as the list page reads them."""
    from kartoteka.api.imports import EXPORT_PARAMS, export_kind, export_response
    from kartoteka.web.lists import _clean_args, _read_typed

    entity = entity_for(entity_name)
    kind, list_only = export_kind()
    args: MultiDict[str, str] = MultiDict([(k, v) for k, v in _clean_args(entity).items(multi=True)
                                           if k not in EXPORT_PARAMS])
    query = list_query(_read_typed(entity, args), skip_empty=True)
    return export_response(entity.name, kind, query, _language(), list_only)
