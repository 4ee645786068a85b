"""Uploaded files: content on disk under the instance folder, metadata in the files table."""

from __future__ import annotations

import hashlib
import mimetypes
import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from kartoteka.errors import BadRequest, NotFound
from kartoteka.storage.tables import files

CHUNK = 1 << 16
_UNSAFE = re.compile(r"[\x00-\x1f/\\]")


def clean_name(name: str) -> str:
    """A file name without paths or control characters, at most 255 characters."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE.sub("_", base.strip()).strip(". ")[:255]
    if not cleaned:
        raise BadRequest("The file needs a name.")
    return cleaned


def store_file(engine: sa.Engine, folder: Path, stream: IO[bytes], name: str, content_type: str | None,
               user_id: int | None, now: datetime) -> dict[str, Any]:
    """Save an upload and return {id, name, size, content_type} for use as a file field's value."""
    name = clean_name(name)
    content_type = (content_type or "").split(";")[0].strip() or mimetypes.guess_type(name)[0] \
        or "application/octet-stream"
    file_id = uuid.uuid4().hex
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_id
    digest, size = hashlib.sha256(), 0
    with path.open("wb") as out:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    if size == 0:
        path.unlink()
        raise BadRequest("The file is empty.")
    row = {"id": file_id, "name": name, "content_type": content_type[:127], "size": size,
           "sha256": digest.hexdigest(), "created_at": now, "created_by": user_id}
    with engine.begin() as conn:
        conn.execute(sa.insert(files).values(**row))
    return {"id": file_id, "name": name, "size": size, "content_type": row["content_type"]}


def file_info(engine: sa.Engine, folder: Path, file_id: str) -> tuple[sa.Row[Any], Path]:
    """The stored file's row and path, or NotFound."""
    if not re.fullmatch(r"[0-9a-f]{32}", file_id):
        raise NotFound("There is no such file.")
    with engine.connect() as conn:
        row = conn.execute(sa.select(files).where(files.c.id == file_id)).first()
    path = folder / file_id
    if row is None or not path.exists():
        raise NotFound("There is no such file.")
    return row, path
