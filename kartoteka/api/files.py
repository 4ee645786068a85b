"""Uploading and downloading files for file fields."""

from __future__ import annotations

from flask import Response, jsonify, request, send_file, url_for

from kartoteka.api import _user, api
from kartoteka.errors import BadRequest
from kartoteka.extensions import platform
from kartoteka.files import file_info, store_file


def _folder():
    return platform.state.settings.instance_dir / "files"


@api.post("/files")
def upload_file() -> Response:
    """Store one multipart upload (`file`); the returned id is what a file field takes."""
    upload = request.files.get("file")
    if upload is None:
        raise BadRequest("Send the file as multipart/form-data in a part named 'file'.")
    state = platform.state
    info = store_file(state.engine, _folder(), upload.stream, upload.filename or "", upload.mimetype,
                      _user().id, state.clock.now())
    response = jsonify(info)
    response.status_code = 201
    response.headers["Location"] = url_for("api.download_file", file_id=info["id"])
    return response


@api.get("/files/<file_id>")
def download_file(file_id: str) -> Response:
    """The file's content, as an attachment."""
    row, path = file_info(platform.state.engine, _folder(), file_id)
    return send_file(path, mimetype=row.content_type, as_attachment=True, download_name=row.name,
                     max_age=0, etag=row.sha256)
