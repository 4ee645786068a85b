"""Undo an import as one batch, from the change journal (rows with `batch = "import:<id>"`).

A record the import created is deleted (to the trash); one it updated is reverted to the version before the import's
save, only the fields that save changed (`kartoteka.records.versions.revert`, through the record service). A record
changed since the import (its version is no longer the one the import left) is reported and left as it is, never
overwritten; so is one the undoing user may not delete or change.

Each record is undone in a save of its own: `versions.revert` takes no caller's transaction, so the undo of one
record cannot be rolled back with another's (the result names every record left alone, and why).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from kartoteka.errors import Conflict, KartotekaError, NotFound, PermissionDenied
from kartoteka.imports.runner import batch_name, import_row, said
from kartoteka.messages import Message
from kartoteka.records.access import editable_fields
from kartoteka.records.hooks import Origin
from kartoteka.records.model import SYSTEM, Principal
from kartoteka.records.service import RecordService
from kartoteka.records.versions import revert
from kartoteka.storage.tables import imports, journal, records


@dataclass(frozen=True)
class Kept:
    """A record the undo left as it is, and why."""

    record_id: int
    reason: Message | str

    def as_json(self) -> dict[str, Any]:
        """As the API and the imports table give it."""
        return {"record_id": self.record_id, **said(self.reason)}


@dataclass
class UndoResult:
    """What an undo did."""

    deleted: int = 0
    reverted: int = 0
    kept: list[Kept] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """As the API gives it."""
        return {"deleted": self.deleted, "reverted": self.reverted, "kept": [k.as_json() for k in self.kept]}


def undo_saves(service: RecordService, entity_name: str, batch: str, user: Principal = SYSTEM,
               origin_batch: str | None = None) -> UndoResult:
    """Undo every save the journal has under `batch`, record by record, newest first."""
    entity = service.entity(entity_name)
    with service.engine.connect() as conn:
        saves = conn.execute(sa.select(journal.c.record_id, journal.c.version, journal.c.action, journal.c.changes)
                             .where(journal.c.batch == batch, journal.c.entity == entity.name)
                             .order_by(journal.c.id.desc())).all()
    per_record: dict[int, list[Any]] = {}
    for save in saves:
        per_record.setdefault(save.record_id, []).append(save)
    origin = Origin("import", automation=False, batch=origin_batch)
    result = UndoResult()
    editable = editable_fields(entity, user)
    for record_id, its in per_record.items():
        last, first = its[0], its[-1]
        with service.engine.connect() as conn:
            current = conn.execute(sa.select(records.c.version, records.c.deleted_at)
                                   .where(records.c.id == record_id)).first()
        if current is None or current.deleted_at is not None:
            if first.action != "created":
                result.kept.append(Kept(record_id, Message("import.undo_deleted", "#{id} is in the trash; restore it "
                                                           "to undo the import's change.", id=record_id)))
            continue
        if current.version != last.version:
            result.kept.append(Kept(record_id, _changed(record_id, last.version, current.version)))
            continue
        try:
            if first.action == "created":
                service.delete(entity.name, record_id, user, expected_version=last.version, origin=origin)
                result.deleted += 1
                continue
            touched = {name for save in its for name in (save.changes or {})
                       if name in entity.fields and not entity.fields[name].is_formula and name in editable}
            # A consent is the person's decision, kept in the consent archive as given: no undo takes it back.
            consents = sorted(n for n in touched if entity.fields[n].type.personal_decision)
            changed = sorted(n for n in touched if n not in consents)
            if consents:
                result.kept.append(Kept(record_id, Message(
                    "import.undo_value_kept", "#{id}: {fields} could not be taken back to what it was before the "
                    "import (the field keeps a value once given); change it by hand.", id=record_id,
                    fields=", ".join(str(entity.fields[n].label) for n in consents))))
            if not changed:
                continue
            done = revert(service, entity.name, record_id, first.version - 1, user, fields=changed,
                          expected_version=last.version, origin=origin)
            result.reverted += 1
            # A value the save could not bring back (a field type that keeps what it had, as a consent given, which
            # an empty value never clears) is said, not claimed undone.
            before = {}
            for save in its:  # newest first: the oldest save's old value wins
                before.update({n: pair[0] for n, pair in (save.changes or {}).items() if n in changed})
            now = service.storage_json(entity, {n: done.record.values.get(n) for n in changed})
            stuck = [n for n in changed if n in done.record.values and now.get(n) != before.get(n)]
            if stuck:
                result.kept.append(Kept(record_id, Message(
                    "import.undo_value_kept", "#{id}: {fields} could not be taken back to what it was before the "
                    "import (the field keeps a value once given); change it by hand.", id=record_id,
                    fields=", ".join(str(entity.fields[n].label) for n in stuck))))
        except Conflict:
            result.kept.append(Kept(record_id, _changed(record_id, last.version, None)))
        except (PermissionDenied, NotFound, KartotekaError) as exc:
            result.kept.append(Kept(record_id, exc.detail))
    return result


def _changed(record_id: int, left: int, now: int | None) -> Message:
    if now is None:
        return Message("import.undo_changed_meanwhile", "#{id} was changed while undoing; it is left as it is.",
                       id=record_id)
    return Message("import.undo_changed", "#{id} was changed after the import (version {now}, the import left "
                   "version {left}); it is left as it is.", id=record_id, now=now, left=left)


def may_manage(service: RecordService, row: Any, user: Principal) -> bool:
    """True when `user` may see and undo the import `row`: its author, an administrator or the system."""
    return user.is_system or service.metadata.is_superuser(user.roles) or (
        row.user_id is not None and row.user_id == user.id)


def visible_import(service: RecordService, import_id: int, user: Principal) -> Any:
    """The imports row `user` may see (its author's or any for an admin); NotFound otherwise."""
    row = import_row(service.engine, import_id)
    if row is None or not may_manage(service, row, user):
        raise NotFound(Message("import.not_found", "There is no import #{id}.", id=import_id))
    return row


UNDO_INLINE_SAVES = 2000  # an import with more saves than this is undone by `kartoteka worker` when asked to queue


def undo_import(service: RecordService, import_id: int, user: Principal, *,
                queue_over: int | None = None) -> UndoResult | None:
    """Undo the import `import_id` as `user` (its author or an administrator). With `queue_over`, an import of more
    saves than that is queued for `kartoteka worker` instead (None is returned; the row says `queued`, then
    `running`, then `undone`)."""
    row = import_row(service.engine, import_id)
    if row is None:
        raise NotFound(Message("import.not_found", "There is no import #{id}.", id=import_id))
    if not may_manage(service, row, user):
        raise PermissionDenied(Message("import.undo_forbidden", "Only the user who made import #{id} or an "
                                       "administrator may undo it.", id=import_id))
    if row.status == "undone":
        raise Conflict(Message("import.already_undone", "Import #{id} was undone already.", id=import_id))
    if row.status in ("queued", "running"):
        raise Conflict(Message("import.still_running", "Import #{id} is still running; undo it when it is done.",
                               id=import_id))
    if (row.options or {}).get("dry_run"):
        raise Conflict(Message("import.dry_run_not_undone", "Import #{id} was a dry run: it saved nothing to undo.",
                               id=import_id))
    queue = False
    if queue_over is not None:
        with service.engine.connect() as conn:
            saves = conn.execute(sa.select(sa.func.count()).select_from(journal)
                                 .where(journal.c.batch == batch_name(import_id))).scalar() or 0
        queue = saves > queue_over
    # Claimed (a second undo at the same time finds it taken); a queued undo says who asked and the status to go
    # back to should it fail.
    request = {"undo_requested_by": user.id, "status_before": row.status, "before": row.detail}
    with service.engine.begin() as conn:
        claimed = conn.execute(sa.update(imports).where(imports.c.id == import_id, imports.c.status == row.status)
                               .values(status="queued" if queue else "running", detail=request)).rowcount
    if claimed != 1:
        raise Conflict(Message("import.still_running", "Import #{id} is still running; undo it when it is done.",
                               id=import_id))
    if queue:
        return None
    return run_undo(service, import_id, row.entity, user, row.status, row.detail)


def run_undo(service: RecordService, import_id: int, entity: str, user: Principal, status_before: str,
             detail_before: Any) -> UndoResult:
    """Undo a claimed import (its status `running`): `undone` when done, back to `status_before` on an error."""
    try:
        result = undo_saves(service, entity, batch_name(import_id), user, origin_batch=f"undo:{import_id}")
    except BaseException:
        with service.engine.begin() as conn:
            conn.execute(sa.update(imports).where(imports.c.id == import_id).values(status=status_before,
                                                                                    detail=detail_before))
        raise
    with service.engine.begin() as conn:
        conn.execute(sa.update(imports).where(imports.c.id == import_id).values(
            status="undone", undone_at=service.clock.now(),
            detail={"undo": result.as_json(), "before": detail_before}))
    return result
