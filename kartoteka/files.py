"""Uploaded files: content on disk under the instance folder, metadata in the files table.

What one user may upload is bounded (config.UploadLimits): uploads no record holds yet, by count and
bytes, and everything of theirs that a record holds or that is pending. Files that no record holds any
more, and uploads pending for longer than the limits' lifetime, count for nothing (`kartoteka files
sweep` deletes them). The counts come from the database, inside the transaction that adds the file, so
any number of app workers keep to the same limits.
"""

from __future__ import annotations

import hashlib
import math
import mimetypes
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from kartoteka.config import UploadLimits
from kartoteka.errors import BadRequest, KartotekaError, NotFound
from kartoteka.messages import ByteSize, Message
from kartoteka.records.files import UNATTACHED_LIFETIME, held
from kartoteka.storage.tables import files, users

CHUNK = 1 << 16
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f/\\]")
# Bidirectional controls reorder what follows them: "invoice\u202efdp.exe" shows as "invoiceexe.pdf".
# They have no business in a file name and are dropped (the marks LRM, RLM and ALM, the embeddings,
# overrides and isolates, and their terminators).
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Used when the caller names no limits; pass UploadLimits(0, 0, 0) for none at all.
DEFAULT_UPLOAD_LIMITS = UploadLimits()


class UploadRefused(KartotekaError):
    """An upload over the user's limits; nothing of it is kept."""


class PendingUploadsFull(UploadRefused):
    """Too many (or too large) uploads no record holds yet: frees up when they are saved or expire."""

    status = 429
    title = "Too many unsaved uploads"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after  # seconds until the oldest such upload is removed


class FileTooLarge(UploadRefused):
    """The upload is larger than the field it is for takes: nothing of it is kept."""

    status = 413
    title = "File too large"


class UploadQuotaFull(UploadRefused):
    """The upload would take the user past what they may store."""

    status = 413
    title = "Upload quota exceeded"


@dataclass(frozen=True)
class UploadUsage:
    """What a user's uploads take now: pending (no record holds them, not yet expired) and all still stored."""

    pending_files: int
    pending_bytes: int
    stored_bytes: int


def upload_usage(conn: sa.Connection, user_id: int, now: datetime, *, exclude: str | None = None,
                 lifetime: timedelta = UNATTACHED_LIFETIME) -> UploadUsage:
    """The user's usage, from the files table.

    Uploads pending past `lifetime` and files no record holds any more count for nothing: they are
    being removed.
    """
    pending = sa.and_(files.c.attached_at.is_(None), files.c.created_at >= now - lifetime)
    stored = sa.or_(sa.and_(files.c.attached_at.is_not(None), held(files.c.id)), pending)
    where = [files.c.created_by == user_id]
    if exclude is not None:
        where.append(files.c.id != exclude)
    row = conn.execute(sa.select(
        sa.func.coalesce(sa.func.sum(sa.case((pending, 1), else_=0)), 0),
        sa.func.coalesce(sa.func.sum(sa.case((pending, files.c.size), else_=0)), 0),
        sa.func.coalesce(sa.func.sum(sa.case((stored, files.c.size), else_=0)), 0),
    ).where(*where)).one()
    return UploadUsage(int(row[0]), int(row[1]), int(row[2]))


def room_left(usage: UploadUsage, limits: UploadLimits) -> int | None:
    """How many more bytes the user may upload now; None for no byte limit."""
    rooms = [limit - used for limit, used in ((limits.pending_bytes, usage.pending_bytes),
                                              (limits.user_bytes, usage.stored_bytes)) if limit]
    return min(rooms) if rooms else None


def require_room(conn: sa.Connection, user_id: int, usage: UploadUsage, limits: UploadLimits, size: int,
                 now: datetime) -> None:
    """Refuse an upload of `size` bytes that would take the user past `limits` (given their usage without it).

    Sizes (`limit`, `used`) are ByteSizes: each language writes them ("1.5 MiB", «1,5 МиБ»), JSON gives bytes;
    `limit_bytes`, `used_bytes` and `size_bytes` are the byte counts as before; `lifetime` is how long uploads no
    record holds wait ("a day").
    """
    lifetime = _duration(limits.pending_lifetime)
    if limits.pending_files and usage.pending_files >= limits.pending_files:
        raise PendingUploadsFull(Message.counted(
            "uploads.too_many", "You have {count} upload that no record holds yet, the most one user may have. Save "
            "the cards they were uploaded for; uploads no record holds are removed {lifetime} after upload.",
            "You have {count} uploads that no record holds yet, the most one user may have. Save the cards "
            "they were uploaded for; uploads no record holds are removed {lifetime} after upload.",
            count=usage.pending_files, limit=limits.pending_files, lifetime=lifetime),
            _retry_after(conn, user_id, now, limits))
    if limits.pending_bytes and size > limits.pending_bytes:
        raise UploadQuotaFull(Message(
            "uploads.file_too_large", "The file is larger than {limit}, the most one user's unsaved uploads may "
            "take.", limit=ByteSize.limit(limits.pending_bytes), limit_bytes=limits.pending_bytes, size_bytes=size))
    if limits.pending_bytes and usage.pending_bytes + size > limits.pending_bytes:
        raise PendingUploadsFull(Message(
            "uploads.pending_full", "The file does not fit: uploads that no record holds yet may take {limit} per "
            "user, and yours take {used}. Save the cards they were uploaded for; uploads no record holds are removed "
            "{lifetime} after upload.", limit=ByteSize.limit(limits.pending_bytes), limit_bytes=limits.pending_bytes,
            used=ByteSize(usage.pending_bytes), used_bytes=usage.pending_bytes, size_bytes=size,
            lifetime=lifetime), _retry_after(conn, user_id, now, limits))
    if limits.user_bytes and usage.stored_bytes + size > limits.user_bytes:
        raise UploadQuotaFull(Message(
            "file.quota", "The file does not fit: one user's files may take {limit}, and yours take {used}. Ask an "
            "administrator for more room.", limit=ByteSize.limit(limits.user_bytes), limit_bytes=limits.user_bytes,
            used=ByteSize(usage.stored_bytes), used_bytes=usage.stored_bytes, size_bytes=size))


def _duration(lifetime: timedelta) -> Message:
    """'a day', '36 hours', '90 minutes': how long uploads wait, to nest in messages."""
    minutes = round(lifetime.total_seconds() / 60)
    if minutes == 24 * 60:
        return Message("duration.day", "a day")
    if minutes % 60:
        return Message.counted("duration.minutes", "{count} minute", "{count} minutes", count=minutes)
    return Message.counted("duration.hours", "{count} hour", "{count} hours", count=minutes // 60)


def _retry_after(conn: sa.Connection, user_id: int, now: datetime, limits: UploadLimits) -> int:
    """Seconds until the user's oldest upload no record holds is removed (and so frees its room)."""
    lifetime = limits.pending_lifetime
    oldest = conn.execute(sa.select(sa.func.min(files.c.created_at)).where(
        files.c.created_by == user_id, files.c.attached_at.is_(None),
        files.c.created_at >= now - lifetime)).scalar()
    if oldest is None:
        return 1
    if isinstance(oldest, str):  # SQLite hands back an aggregate over timestamps as text
        oldest = datetime.fromisoformat(oldest)
    oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
    return max(1, math.ceil((oldest + lifetime - now).total_seconds()))


def upload_type(name: str, content_type: str | None) -> str:
    """The media type an upload is stored with: the one sent, else guessed from the name."""
    return (content_type or "").split(";")[0].strip() or mimetypes.guess_type(name)[0] or "application/octet-stream"


def clean_name(name: str) -> str:
    """A file name without paths, control or bidirectional control characters, at most 255 characters."""
    base = _BIDI.sub("", name).replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE.sub("_", base.strip()).strip(". ")[:255]
    if not cleaned:
        raise BadRequest(Message("file.name_missing", "The file needs a name."))
    return cleaned


def store_file(engine: sa.Engine, folder: Path, stream: IO[bytes], name: str, content_type: str | None,
               user_id: int | None, now: datetime, limits: UploadLimits | None = None,
               max_size: int | None = None) -> dict[str, Any]:
    """Save an upload and return {id, name, size, content_type} for use as a file field's value.

    A user's upload is refused (UploadRefused: 429 or 413) past `limits` (DEFAULT_UPLOAD_LIMITS when
    not given); uploads without a user (commands) have none. Past `max_size` bytes (the field's limit,
    when the upload is for a known field) it is refused too, before more of it is written.
    """
    name = clean_name(name)
    content_type = upload_type(name, content_type)
    limits = DEFAULT_UPLOAD_LIMITS if limits is None else limits
    limited = user_id if any((limits.pending_files, limits.pending_bytes, limits.user_bytes)) else None
    usage, room = None, None
    if limited is not None:
        # Before anything reaches the disk; the count that decides is taken again when the file is added.
        with engine.connect() as conn:
            usage = upload_usage(conn, limited, now, lifetime=limits.pending_lifetime)
            require_room(conn, limited, usage, limits, 0, now)
        room = room_left(usage, limits)
    file_id = uuid.uuid4().hex
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_id
    digest, size = hashlib.sha256(), 0
    try:
        with path.open("wb") as out:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                if max_size is not None and size > max_size:
                    raise FileTooLarge(Message("file.too_large", "The file is larger than {limit}.",
                                               limit=ByteSize.limit(max_size), limit_bytes=max_size))
                if room is not None and size > room:
                    break  # over a limit: write no more of it
                out.write(chunk)
        if limited is not None and usage is not None and room is not None and size > room:
            with engine.connect() as conn:
                require_room(conn, limited, usage, limits, size, now)  # says which limit, and raises
        if size == 0:
            raise BadRequest(Message("file.empty", "The file is empty."))
        row = {"id": file_id, "name": name, "content_type": content_type[:127], "size": size,
               "sha256": digest.hexdigest(), "created_at": now, "created_by": user_id}
        with engine.begin() as conn:
            if limited is not None and conn.dialect.name == "postgresql":
                # One upload of a user at a time decides; on SQLite the insert's write lock does the same.
                conn.execute(sa.select(users.c.id).where(users.c.id == limited).with_for_update())
            conn.execute(sa.insert(files).values(**row))
            if limited is not None:
                require_room(conn, limited, upload_usage(conn, limited, now, exclude=file_id,
                                                         lifetime=limits.pending_lifetime), limits, size, now)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return {"id": file_id, "name": name, "size": size, "content_type": row["content_type"]}


def file_info(engine: sa.Engine, folder: Path, file_id: str) -> tuple[sa.Row[Any], Path]:
    """The stored file's row and path, or NotFound."""
    if not re.fullmatch(r"[0-9a-f]{32}", file_id):
        raise NotFound(no_such_file())
    with engine.connect() as conn:
        row = conn.execute(sa.select(files).where(files.c.id == file_id)).first()
    path = folder / file_id
    if row is None or not path.exists():
        raise NotFound(no_such_file())
    return row, path


def no_such_file() -> Message:
    """A missing file, or one the user may not read: the same words for both."""
    return Message("file.not_found", "There is no such file.")
