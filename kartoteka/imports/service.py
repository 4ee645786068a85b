"""What the API and the web pages share: an uploaded file saved under the instance directory, the import run at once
(small files) or queued for `kartoteka worker` (large ones), an import as JSON, and the worker's job."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from kartoteka.errors import BadRequest, NotFound
from kartoteka.imports.reader import format_of, save_upload
from kartoteka.imports.runner import ImportOptions, Outcome, fail_import, new_import, run_import
from kartoteka.messages import Message
from kartoteka.records.model import Principal
from kartoteka.records.scopes import require
from kartoteka.records.service import RecordService
from kartoteka.storage.tables import imports

log = logging.getLogger("kartoteka.imports")
INLINE_BYTES = 1024 * 1024  # larger files are imported by `kartoteka worker` (the page polls its progress)
MAX_UPLOAD_BYTES = 512 * 1024 * 1024
TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off", ""})


def upload_dir(instance_dir: Path) -> Path:
    """Where uploads wait for their import."""
    return instance_dir / "imports"


def stored_path(instance_dir: Path, import_id: int, kind: str) -> Path:
    """The saved upload of import `import_id`."""
    return upload_dir(instance_dir) / f"{import_id}.{kind}"


def _flag(form: Any, name: str, default: bool) -> bool:
    raw = form.get(name)
    if raw is None:
        return default
    text = str(raw).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise BadRequest(Message("import.flag_invalid", "'{name}' must be true or false, not '{value}'.", name=name,
                             value=str(raw)[:20]))


def options_from_form(form: Any) -> ImportOptions:
    """Import options from a form or a multipart body: dry_run, key, on_duplicate, skip_invalid, automation,
    encoding, and mapping as JSON ({"column": "field"}) or as `map.<column>` fields."""
    mapping: dict[str, str] = {}
    raw = form.get("mapping")
    if raw:
        try:
            loaded = json.loads(raw)
        except ValueError:
            loaded = None
        if not isinstance(loaded, dict) or not all(isinstance(k, str) and isinstance(v, str | None)
                                                   for k, v in loaded.items()):
            raise BadRequest(Message("import.mapping_invalid", "'mapping' must be a JSON object of column names to "
                                     "field names, e.g. {example}.", example='{"Телефон": "phones"}'))
        mapping.update({k: v or "" for k, v in loaded.items()})
    for key in form:
        if key.startswith("map.") and len(key) > 4:
            mapping[key[4:]] = form.get(key) or ""
    key = (form.get("key") or "").strip() or None
    return ImportOptions(key=key, on_duplicate=(form.get("on_duplicate") or "skip").strip(),
                         skip_invalid=_flag(form, "skip_invalid", False), automation=_flag(form, "automation", True),
                         mapping=mapping, encoding=(form.get("encoding") or "").strip() or None,
                         dry_run=_flag(form, "dry_run", False))


def save_file(stream: IO[bytes], file_name: str, instance_dir: Path) -> tuple[Path, str, int]:
    """The upload saved under the instance directory: (path, format, size)."""
    kind = format_of(file_name)
    path = upload_dir(instance_dir) / f"upload-{uuid.uuid4().hex}.{kind}"
    size = save_upload(stream, path, MAX_UPLOAD_BYTES)
    return path, kind, size


def start_import(service: RecordService, entity_name: str, user: Principal, path: Path, file_name: str, kind: str,
                 size: int, options: ImportOptions, instance_dir: Path, inline_bytes: int = INLINE_BYTES
                 ) -> tuple[int, Outcome | None]:
    """Run the import of the saved upload at once (small files: the outcome) or queue it for the worker (None)."""
    entity = service.entity(entity_name)
    require(service.metadata, user, entity, "create")
    if options.key is not None and options.on_duplicate == "update":
        require(service.metadata, user, entity, "update")
    if size > inline_bytes:
        import_id = new_import(service.engine, entity.name, user, file_name, kind, options, service.clock.now(),
                               status="queued")
        path.rename(stored_path(instance_dir, import_id, kind))
        return import_id, None
    try:
        outcome = run_import(service, entity.name, path, file_name, user, options)
    finally:
        path.unlink(missing_ok=True)
    return outcome.import_id or 0, outcome


def import_json(row: Any, outcome: Outcome | None = None) -> dict[str, Any]:
    """An import as the API gives it."""
    body = {"id": row.id, "entity": row.entity, "user_id": row.user_id, "file_name": row.file_name,
            "format": row.format, "options": row.options, "status": row.status,
            "counts": {"rows": row.rows, "created": row.created, "updated": row.updated, "skipped": row.skipped,
                       "invalid": row.invalid},
            "errors": [_public(e) for e in row.errors or []], "detail": _public(row.detail),
            "created_at": _iso(row.created_at), "finished_at": _iso(row.finished_at), "undone_at": _iso(row.undone_at)}
    if outcome is not None:
        body["mapping"] = outcome.mapping.as_json()
    return body


def _public(item: Any) -> Any:
    """A kept message (or a dict holding some) without the `stored` copies the pages read."""
    if isinstance(item, dict):
        return {k: _public(v) for k, v in item.items() if k != "stored"}
    if isinstance(item, list):
        return [_public(v) for v in item]
    return item


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    from datetime import UTC

    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class ImportJob:
    """`kartoteka worker`'s job: run one queued import per call (claimed, so two workers never run the same)."""

    def __init__(self, service: RecordService, instance_dir: Path) -> None:
        self.service = service
        self.instance_dir = instance_dir

    def __call__(self, engine: sa.Engine, now: datetime) -> int:
        from kartoteka.users import get_user

        with engine.begin() as conn:
            row = conn.execute(sa.select(imports).where(imports.c.status == "queued").order_by(imports.c.id)
                               .limit(1)).first()
            if row is None:
                return 0
            claimed = conn.execute(sa.update(imports).where(imports.c.id == row.id, imports.c.status == "queued")
                                   .values(status="running")).rowcount
        if claimed != 1:
            return 0
        undo = (row.detail or {}).get("undo_requested_by", False) if isinstance(row.detail, dict) else False
        if undo is not False:  # an undo asked for through the API or a page (undo.py, queue_over)
            self._undo(engine, row, undo)
            return 1
        path = stored_path(self.instance_dir, row.id, row.format)
        try:
            try:
                user = None if row.user_id is None else get_user(engine, user_id=row.user_id)
            except NotFound:  # deactivated since
                user = None
            if user is None or not path.is_file():
                why = Message("import.user_gone", "The user who started the import is no longer active.") \
                    if user is None else Message("import.file_gone", "The uploaded file of import #{id} is gone.",
                                                 id=row.id)
                fail_import(engine, row.id, why, self.service.clock.now())
                return 1
            run_import(self.service, row.entity, path, row.file_name, user, ImportOptions.from_json(row.options),
                       import_id=row.id)
        except Exception as exc:  # run_import marked the row failed; the worker goes on with its other jobs
            log.warning("import #%s failed: %s", row.id, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        finally:
            path.unlink(missing_ok=True)
        return 1

    def _undo(self, engine: sa.Engine, row: Any, user_id: int | None) -> None:
        from kartoteka.imports.undo import run_undo
        from kartoteka.records.model import SYSTEM
        from kartoteka.users import get_user

        detail = row.detail or {}
        try:
            user = SYSTEM if user_id is None else get_user(engine, user_id=user_id)
        except NotFound:  # deactivated since it asked: the import goes back as it was
            with engine.begin() as conn:
                conn.execute(sa.update(imports).where(imports.c.id == row.id).values(
                    status=detail.get("status_before") or "done", detail=detail.get("before")))
            log.warning("undo of import #%s dropped: its user is no longer active", row.id)
            return
        try:
            run_undo(self.service, row.id, row.entity, user, detail.get("status_before") or "done",
                     detail.get("before"))
        except Exception as exc:  # the row went back to its status; the worker goes on
            log.warning("undo of import #%s failed: %s", row.id, str(exc).splitlines()[0] if str(exc) else
                        type(exc).__name__)
