"""Who may read an uploaded file, which records hold it, and removing files no record holds.

A file is readable by whoever may read a live record that holds it in a field they may view, and,
until some record holds it, by the user who uploaded it. Nobody else: not by knowing its id.

Records hold files through file_links (one row per record, field and file, kept by every save, and
kept for records in the trash, which may come back with their files). A file no record holds is
either pending (uploaded, no record held it yet: its uploader may still save the form it was for)
or detached (a record held it and no longer does: nobody may read or attach it any more).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from kartoteka.config import UploadLimits
from kartoteka.messages import ByteSize, Message
from kartoteka.metadata.fieldtypes import file_ids
from kartoteka.metadata.model import EntityDef, FieldDef, Metadata
from kartoteka.records.access import viewable_fields
from kartoteka.records.model import Principal
from kartoteka.records.scopes import readable_where
from kartoteka.storage.tables import file_links, files, records

# An upload that no record holds after this long was abandoned (a form never saved); settings may say
# otherwise (KARTOTEKA_UPLOAD_PENDING_HOURS, UploadLimits.pending_lifetime).
UNATTACHED_LIFETIME = UploadLimits().pending_lifetime
PURGE_BATCH = 500


def size_text(size: int) -> str:
    """1536 -> '1.5 KiB': a size in English (the command line; messages carry a ByteSize)."""
    return ByteSize(size).text()


def accepted_type(field: FieldDef, name: str, content_type: str) -> Message | None:
    """Why a file of this name and type may not go into `field` (its `accept` list), or None."""
    if field.accept and not any(content_type == a or name.lower().endswith(a) for a in field.accept):
        return Message("file.type_not_accepted", "'{name}' is not an accepted file type (accepted: {types}).",
                       name=name, types=list(field.accept))
    return None


def too_large(field: FieldDef, name: str, size: int) -> Message | None:
    """Why a file of `size` bytes is too large for `field` (its `max_size`), or None."""
    if field.max_size is not None and size > field.max_size:
        return Message("file.too_large_for_field", "'{name}' is larger than {limit}, the most this field takes.",
                       name=name, limit=ByteSize.limit(field.max_size), limit_bytes=field.max_size)
    return None


def readable_files(conn: sa.Connection, metadata: Metadata, user: Principal, wanted: Collection[str]) -> set[str]:
    """The ids among `wanted` that `user` may read."""
    wanted = set(wanted)
    if not wanted:
        return set()
    readable: set[str] = set(conn.execute(sa.select(files.c.id).where(
        files.c.id.in_(wanted), files.c.created_by == user.id, files.c.attached_at.is_(None))).scalars())
    holders = []
    for entity in metadata.entities.values():
        fields = [f.name for f in entity.file_fields if f.name in viewable_fields(entity, user)]
        where = readable_where(metadata, user, entity) if fields else None
        if where is not None:
            holders.append(sa.and_(*where, file_links.c.field.in_(fields)))
    if holders and wanted - readable:
        query = (sa.select(file_links.c.file_id).join(records, records.c.id == file_links.c.record_id)
                 .where(file_links.c.file_id.in_(wanted - readable), sa.or_(*holders)))
        readable.update(conn.execute(query).scalars())
    return readable


def sync_file_links(conn: sa.Connection, entity: EntityDef, record_id: int, values: Mapping[str, Any],
                    before: Mapping[str, Any] | None, now: datetime) -> None:
    """Keep file_links in step with the record's file fields; mark files attached the first time."""
    for field in entity.file_fields:
        new = set(file_ids(values.get(field.name)))
        old = set(file_ids(before.get(field.name))) if before is not None else set()
        if old - new:
            conn.execute(sa.delete(file_links).where(file_links.c.record_id == record_id,
                                                     file_links.c.field == field.name,
                                                     file_links.c.file_id.in_(old - new)))
        if new - old:
            conn.execute(sa.insert(file_links), [
                {"file_id": f, "record_id": record_id, "field": field.name, "source_entity": entity.name}
                for f in sorted(new - old)])
            conn.execute(sa.update(files).where(files.c.id.in_(new - old), files.c.attached_at.is_(None))
                         .values(attached_at=now))


def purge_unattached(engine: sa.Engine, folder: Path, now: datetime,
                     lifetime: timedelta = UNATTACHED_LIFETIME) -> int:
    """Delete uploads no record ever held that are older than `lifetime` (rows and content); their count."""
    removed = 0
    while True:
        with engine.begin() as conn:
            ids: list[str] = list(conn.execute(sa.select(files.c.id).where(
                files.c.attached_at.is_(None), files.c.created_at < now - lifetime).limit(PURGE_BATCH)).scalars())
            if not ids:
                return removed
            conn.execute(sa.delete(files).where(files.c.id.in_(ids), files.c.attached_at.is_(None)))
        _unlink(folder, ids)
        removed += len(ids)


def held(file_id: Any) -> sa.ColumnElement[bool]:
    """Some record (live or in the trash) holds the file."""
    return sa.exists().where(file_links.c.file_id == file_id)


def sweepable(now: datetime, lifetime: timedelta) -> sa.ColumnElement[bool]:
    """Files no record holds that nobody needs: detached ones, and uploads pending for longer than `lifetime`."""
    return sa.and_(~held(files.c.id), sa.or_(files.c.attached_at.is_not(None),
                                             files.c.created_at < now - lifetime))


def sweep_files(engine: sa.Engine, folder: Path, now: datetime, lifetime: timedelta = UNATTACHED_LIFETIME, *,
                dry_run: bool = False) -> list[sa.Row[Any]]:
    """Delete every file no record holds, pending ones once older than `lifetime` (rows and content).

    Returns the files (id, name, size, created_at, attached_at) deleted, or with `dry_run` those that
    would be, deleting nothing. A file some record holds, even one in the trash, is never deleted.
    A save attaching a file meanwhile keeps it: the batch's rows are locked first (PostgreSQL; that
    waits for such a save, whose link to the file locks its row), and the delete checks again, seeing
    what committed (SQLite has one writer at a time anyway).
    """
    columns = (files.c.id, files.c.name, files.c.size, files.c.created_at, files.c.attached_at)
    swept: list[sa.Row[Any]] = []
    after = ""
    while True:
        with engine.begin() as conn:
            query = (sa.select(*columns).where(sweepable(now, lifetime), files.c.id > after)
                     .order_by(files.c.id).limit(PURGE_BATCH))
            batch = list(conn.execute(query if dry_run else query.with_for_update()))
            if not batch:
                return swept
            after = batch[-1].id
            if not dry_run:
                gone: set[str] = set(conn.execute(sa.delete(files).where(files.c.id.in_([r.id for r in batch]),
                                                               sweepable(now, lifetime))
                                        .returning(files.c.id)).scalars())
                batch = [r for r in batch if r.id in gone]
        if not dry_run:
            _unlink(folder, (r.id for r in batch))
        swept.extend(batch)


def _unlink(folder: Path, ids: Iterable[str]) -> None:
    for file_id in ids:
        (folder / file_id).unlink(missing_ok=True)
