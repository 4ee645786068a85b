"""Imports and exports in the API.

- `POST /api/v1/imports/<entity>`: a multipart `file` (CSV or XLSX) with `dry_run`, `key`, `on_duplicate`
  (skip, update, create), `skip_invalid`, `automation`, `encoding` and `mapping` (JSON: {"column": "field"}). A small
  file is imported at once (201, or 200 for a dry run; 422 when rows are invalid and nothing was imported); a large
  one is queued for `kartoteka worker` (202, `Location` of the import to poll).
- `GET /api/v1/imports/<id>`: its status, counts and first row errors (its author or an administrator).
- `POST /api/v1/imports/<id>/undo`: undo it (its author or an administrator); an import of more than 2,000 saves is
  undone by `kartoteka worker` (202, poll the import).
- `GET /api/v1/records/<entity>/export?format=csv|xlsx&columns=all|list&<list filters>`: the list as a file,
  streamed (every field the caller may view, or the list's own columns).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

from flask import Response, current_app, jsonify, request, stream_with_context, url_for
from werkzeug.datastructures import MultiDict

from kartoteka.api.blueprint import api, current_user
from kartoteka.errors import BadRequest
from kartoteka.extensions import platform
from kartoteka.i18n import current_language
from kartoteka.imports.export import FORMATS, csv_chunks, write_xlsx
from kartoteka.imports.runner import import_row
from kartoteka.imports.service import INLINE_BYTES, import_json, options_from_form, save_file, start_import
from kartoteka.imports.undo import UNDO_INLINE_SAVES, undo_import, visible_import
from kartoteka.listargs import list_query
from kartoteka.messages import Message
from kartoteka.records.scopes import require


@api.post("/imports/<entity_name>")
def create_import(entity_name: str) -> Response:
    """Import (or dry-run) an uploaded file into the card `entity_name`."""
    service = platform.service
    entity = service.entity(entity_name)
    user = current_user()
    require(service.metadata, user, entity, "create")
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise BadRequest(Message("import.file_missing", "Send the file to import as the multipart part 'file'."))
    options = options_from_form(request.form)
    settings = platform.state.settings
    path, kind, size = save_file(upload.stream, upload.filename, settings.instance_dir)
    inline = current_app.config.get("KARTOTEKA_IMPORT_INLINE_BYTES", INLINE_BYTES)
    import_id, outcome = start_import(service, entity.name, user, path, upload.filename, kind, size, options,
                                      settings.instance_dir, inline)
    body = import_json(import_row(service.engine, import_id), outcome)
    location = url_for("api.get_import", import_id=import_id)
    if outcome is None:
        status = 202
    elif outcome.status in ("failed", "invalid") or (outcome.counts.invalid and not (
            outcome.counts.created or outcome.counts.updated)):
        status = 422
    else:
        status = 200 if options.dry_run else 201
    response = jsonify(body)
    response.status_code = status
    response.headers["Location"] = location
    return response


@api.get("/imports/<int:import_id>")
def get_import(import_id: int) -> Response:
    """An import's status, counts and first row errors."""
    return jsonify(import_json(visible_import(platform.service, import_id, current_user())))


@api.post("/imports/<int:import_id>/undo")
def undo(import_id: int) -> Response:
    """Undo an import: the records it created go to the trash, those it updated get their values back."""
    result = undo_import(platform.service, import_id, current_user(), queue_over=UNDO_INLINE_SAVES)
    body = import_json(import_row(platform.service.engine, import_id))
    if result is None:  # a large import: undone by the worker (poll the import)
        response = jsonify(body)
        response.status_code = 202
        response.headers["Location"] = url_for("api.get_import", import_id=import_id)
        return response
    body["undo"] = result.as_json()
    return jsonify(body)


EXPORT_PARAMS = ("format", "columns", "limit", "cursor", "total")


def export_kind() -> tuple[str, bool]:
    """The export's format (csv, xlsx) and whether it holds the list's columns only (`columns=list`) or every field
    the user may view (`columns=all`, the default)."""
    kind = (request.args.get("format") or "csv").lower()
    if kind not in FORMATS:
        raise BadRequest(Message("export.format_unknown", "format must be csv or xlsx, not '{format}'.",
                                 format=kind[:20]))
    columns = (request.args.get("columns") or "all").lower()
    if columns not in ("all", "list"):
        raise BadRequest(Message("export.columns_unknown", "columns must be all or list, not '{columns}'.",
                                 columns=columns[:20]))
    return kind, columns == "list"


def export_args() -> tuple[str, bool, MultiDict[str, str]]:
    """The format, `columns=list` and the list's arguments (without the export's own) of an export."""
    kind, list_only = export_kind()
    args: MultiDict[str, str] = MultiDict([(k, v) for k, v in request.args.items(multi=True)
                                           if k not in EXPORT_PARAMS])
    return kind, list_only, args


def export_response(entity_name: str, kind: str, query: object, language: str, list_only: bool = False) -> Response:
    """The streamed file of an export (CSV as it is written; XLSX from a temporary file, in chunks)."""
    service = platform.service
    user = current_user()
    entity = service.entity(entity_name)
    require(service.metadata, user, entity, "read")
    stamp = service.clock.now().strftime("%Y%m%d-%H%M")
    headers = {"Content-Disposition": f'attachment; filename="{entity.name}-{stamp}.{kind}"',
               "Cache-Control": "no-store"}
    if kind == "csv":
        chunks = csv_chunks(service, entity.name, user, query, language, list_only)  # type: ignore[arg-type]
        first = next(chunks)  # errors (a bad filter) before the status is sent
        return Response(stream_with_context(_chain(first, chunks)), mimetype=FORMATS["csv"], headers=headers)
    spooled = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115 - closed by the generator
    try:
        write_xlsx(service, entity.name, user, query, language, spooled, list_only)  # type: ignore[arg-type]
    except BaseException:
        spooled.close()
        raise
    size = spooled.tell()
    spooled.seek(0)

    def read() -> Iterator[bytes]:
        try:
            while chunk := spooled.read(256 * 1024):
                yield chunk
        finally:
            spooled.close()

    headers["Content-Length"] = str(size)
    return Response(read(), mimetype=FORMATS["xlsx"], headers=headers)


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


@api.get("/records/<entity_name>/export")
def export_records(entity_name: str) -> Response:
    """The list (`?field__op=value`, `q`, `sort`) as CSV or XLSX: the records the caller may read, the fields they
    may view."""
    kind, list_only, args = export_args()
    return export_response(entity_name, kind, list_query(args), current_language(), list_only)
