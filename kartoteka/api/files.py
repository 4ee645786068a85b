"""Uploading and downloading files for file fields."""

from __future__ import annotations

from pathlib import Path

from flask import Response, jsonify, request, send_file, url_for

from kartoteka.api.blueprint import api
from kartoteka.api.blueprint import current_user as _user
from kartoteka.errors import BadRequest, NotFound
from kartoteka.extensions import platform
from kartoteka.files import PendingUploadsFull, file_info, no_such_file, store_file
from kartoteka.messages import Message
from kartoteka.records.files import purge_unattached
from kartoteka.records.model import Principal
from kartoteka.web_errors import problem

# Types a browser may be told a download is; anything else (HTML, SVG, scripts) goes as plain bytes.
INERT_TYPES = frozenset({"application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp", "text/plain",
                         "text/csv", "application/zip", "application/vnd.openxmlformats-officedocument."
                         "spreadsheetml.sheet", "application/vnd.openxmlformats-officedocument."
                         "wordprocessingml.document", "application/msword", "application/vnd.ms-excel"})


def files_folder() -> Path:
    """Where uploaded content lives."""
    return platform.state.settings.instance_dir / "files"


@api.post("/files")
def upload_file() -> Response:
    """Store one multipart upload (`file`); the returned id is what a file field takes.

    Past the user's upload limits: 429 with Retry-After while too many uploads wait for a record to
    hold them, 413 when the file would not fit at all.
    """
    upload = request.files.get("file")
    if upload is None:
        raise BadRequest(Message("file.part_missing", "Send the file as multipart/form-data in a part named 'file'."))
    state = platform.state
    purge_unattached(state.engine, files_folder(), state.clock.now(), state.settings.uploads.pending_lifetime)
    try:
        info = store_file(state.engine, files_folder(), upload.stream, upload.filename or "", upload.mimetype,
                          _user().id, state.clock.now(), state.settings.uploads)
    except PendingUploadsFull as exc:
        refused = problem(exc.status, exc.title, exc.detail)
        refused.headers["Retry-After"] = str(exc.retry_after)
        return refused
    response = jsonify(info)
    response.status_code = 201
    response.headers["Location"] = url_for("api.download_file", file_id=info["id"])
    return response


@api.get("/files/<file_id>")
def download_file(file_id: str) -> Response:
    """The file's content, as an attachment, to whoever may read a record holding it."""
    return send_stored_file(file_id, _user())


def send_stored_file(file_id: str, user: Principal) -> Response:
    """The download of a file `user` may read; NotFound alike for a missing file and a forbidden one."""
    row, path = file_info(platform.state.engine, files_folder(), file_id)
    if not platform.service.readable_file(row.id, user):
        raise NotFound(no_such_file())
    content_type = row.content_type if row.content_type in INERT_TYPES else "application/octet-stream"
    response = send_file(path, mimetype=content_type, as_attachment=True, download_name=row.name,
                         max_age=0, etag=row.sha256)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "private, no-cache"
    return response
