"""Merging duplicate records into one survivor, and undoing a merge.

A merge is one transaction of ordinary saves through the record service, each carrying `batch = "merge:<id>"` in the
journal: the survivor takes the values chosen field by field; every live record referring to a merged record is
repointed to the survivor; the merged records go to the trash. Timeline entries, tasks and notifications of the
merged records move to the survivor (their ids are kept in `merges.moved`). Undoing restores the merged records,
moves those entries back and reverts the merge's saves field by field, leaving (and naming) any value changed since.

Repointing references is done with the merging user's name but without their scope (`acting`): a merge must not
leave a reference to a record in the trash because the user may not edit the card that holds it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from kartoteka.errors import BadRequest, Conflict, NotFound, PermissionDenied, RecordValidationError
from kartoteka.messages import Message
from kartoteka.records import journal
from kartoteka.records.hooks import Origin
from kartoteka.records.model import Principal, Record, ids_in
from kartoteka.records.scopes import require
from kartoteka.records.service import RecordService
from kartoteka.storage.database import hold_transaction
from kartoteka.storage.tables import journal as journal_table
from kartoteka.storage.tables import merges, notifications, record_links, records, tasks, timeline

MAX_OTHERS = 20
_MOVED = {"timeline": timeline, "tasks": tasks, "notifications": notifications}


@dataclass(frozen=True)
class MergeResult:
    """What a merge did."""

    merge_id: int
    survivor: Record
    merged: tuple[int, ...]
    repointed: tuple[tuple[str, int], ...]  # (entity, id) of the records whose references now name the survivor
    moved: Mapping[str, int]  # how many timeline entries, tasks and notifications moved to the survivor


@dataclass(frozen=True)
class UndoResult:
    """What undoing a merge did: the records back from the trash, and values left because they changed since."""

    merge_id: int
    restored: tuple[int, ...]
    kept: tuple[tuple[str, int, str], ...]  # (entity, id, field) not reverted: changed after the merge


def _acting(user: Principal) -> Principal:
    """The merging user without their scope limits: the journal still names them."""
    return dataclasses.replace(user, is_system=True)


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def _others(survivor_id: Any, other_ids: Any) -> list[int]:
    if not _is_id(survivor_id):
        raise BadRequest(Message("merge.survivor_invalid", "'survivor' must be the id of the record that stays."))
    if not isinstance(other_ids, list | tuple) or not other_ids or not all(_is_id(i) for i in other_ids):
        raise BadRequest(Message("merge.others_invalid", "'others' must be a list of the ids of the records merged "
                                 "into the survivor."))
    others = list(dict.fromkeys(other_ids))
    if survivor_id in others:
        raise BadRequest(Message("merge.survivor_in_others", "The survivor #{id} cannot also be merged into itself.",
                                 id=survivor_id))
    if len(others) > MAX_OTHERS:
        raise BadRequest(Message("merge.too_many", "At most {most} records can be merged into one at a time.",
                                 most=MAX_OTHERS))
    return others


def merge(service: RecordService, entity_name: str, survivor_id: Any, other_ids: Any, values: Mapping[str, Any],
          user: Principal) -> MergeResult:
    """Merge `other_ids` into `survivor_id`: the survivor takes `values`, references and activity move to it, the
    others go to the trash; all or nothing."""
    entity = service.entity(entity_name)
    others = _others(survivor_id, other_ids)
    require(service.metadata, user, entity, "update")
    require(service.metadata, user, entity, "delete")
    consents = sorted(name for name in values if name in entity.fields and entity.fields[name].type.personal_decision)
    if consents:
        raise RecordValidationError({name: [Message(
            "merge.consent_kept", "A consent is the person's own decision: the card that stays keeps its own, and "
            "the merged cards' decisions stay in the consent archive.")] for name in consents})
    now = service.clock.now()
    for record_id in (survivor_id, *others):  # NotFound for what the user may not read
        service.get(entity.name, record_id, user)
    with service.engine.begin() as conn:
        hold_transaction(conn, immediate=True)
        _lock(conn, [survivor_id, *others])
        merge_id = conn.execute(sa.insert(merges).values(
            entity=entity.name, survivor_id=survivor_id, others=others, moved={}, user_id=user.id,
            created_at=now)).inserted_primary_key[0]  # type: ignore[index]
        origin = Origin("merge", batch=f"merge:{merge_id}")
        repointed = _repoint(service, conn, others, survivor_id, _acting(user), origin)
        moved: dict[str, dict[str, list[int]]] = {}  # table -> the merged record they came from -> their ids
        for name, table in _MOVED.items():
            where: list[sa.ColumnElement[bool]] = [table.c.record_id.in_(others)]
            if name != "notifications":
                where.append(table.c.entity == entity.name)
            found: dict[str, list[int]] = {}
            for item in conn.execute(sa.select(table.c.id, table.c.record_id).where(*where).order_by(table.c.id)):
                found.setdefault(str(item.record_id), []).append(item.id)
            ids = [i for group in found.values() for i in group]
            if ids:
                conn.execute(sa.update(table).where(table.c.id.in_(ids)).values(record_id=survivor_id))
            moved[name] = found
        for other in others:
            service.delete(entity.name, other, user, connection=conn, origin=origin)
        # Last: a unique value the survivor takes from a merged record is free only once that one is in the trash.
        service.update(entity.name, survivor_id, dict(values), user, expected_version=None, connection=conn,
                       origin=origin)
        conn.execute(sa.update(merges).where(merges.c.id == merge_id).values(moved=moved))
    survivor = service.get(entity.name, survivor_id, user)
    return MergeResult(merge_id, survivor, tuple(others), tuple(repointed),
                       {name: sum(len(ids) for ids in found.values()) for name, found in moved.items()})


def _lock(conn: sa.Connection, ids: list[int]) -> None:
    """Lock the merge's records in the order of their ids (PostgreSQL), so two merges of the same records wait for
    each other instead of deadlocking; SQLite's write lock (hold_transaction) already serialises them."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(records.c.id).where(records.c.id.in_(ids)).order_by(records.c.id).with_for_update())


def _repoint(service: RecordService, conn: sa.Connection, others: list[int], survivor_id: int, acting: Principal,
             origin: Origin) -> list[tuple[str, int]]:
    """Point every live record referring to one of `others` at the survivor instead; the records changed."""
    rows = conn.execute(
        sa.select(record_links.c.source_entity, record_links.c.source_id, record_links.c.field)
        .join(records, records.c.id == record_links.c.source_id)
        .where(record_links.c.target_id.in_(others), records.c.deleted_at.is_(None),
               record_links.c.source_id.not_in(others))
        .order_by(record_links.c.source_id)).all()
    fields_of: dict[tuple[str, int], set[str]] = {}
    for row in rows:
        fields_of.setdefault((row.source_entity, row.source_id), set()).add(row.field)
    gone = set(others)
    changed = []
    for (entity_name, record_id), names in fields_of.items():
        source = service.metadata.entities.get(entity_name)
        stored = service.stored(conn, source, record_id, lock=True) if source is not None else None
        if source is None or stored is None:
            continue
        values, _system = stored
        update: dict[str, Any] = {}
        for name in sorted(names):
            field = source.fields.get(name)
            if field is None:
                continue
            value = values.get(name)
            if field.multiple:
                update[name] = list(dict.fromkeys(survivor_id if i in gone else i for i in ids_in(value)))
            elif value in gone:
                update[name] = survivor_id
        if update:
            service.update(entity_name, record_id, update, acting, expected_version=None, connection=conn,
                           origin=origin)
            changed.append((entity_name, record_id))
    return changed


def undo_merge(service: RecordService, merge_id: int, user: Principal) -> UndoResult:
    """Undo a merge: the merged records come back, activity moves back, the merge's changes are reverted where
    nothing changed them since (those are named in `kept`, with the consents, which only their person changes)."""
    with service.engine.connect() as conn:
        row = conn.execute(sa.select(merges).where(merges.c.id == merge_id)).first()
    if row is None:
        raise NotFound(Message("merge.not_found", "There is no merge #{id}.", id=merge_id))
    entity = service.entity(row.entity)
    if row.user_id != user.id and not service.metadata.is_superuser(user.roles) and not user.is_system:
        raise PermissionDenied(Message("merge.undo_not_yours", "Only who made merge #{id}, or an administrator, may "
                                       "undo it.", id=merge_id))
    if row.undone_at is not None:
        raise Conflict(Message("merge.already_undone", "Merge #{id} was undone already.", id=merge_id))
    acting = _acting(user)
    origin = Origin("merge", batch=f"unmerge:{merge_id}")
    batch = f"merge:{merge_id}"
    kept: list[tuple[str, int, str]] = []
    others = [int(i) for i in row.others]
    with service.engine.begin() as conn:
        hold_transaction(conn, immediate=True)
        _lock(conn, [row.survivor_id, *others])
        taken = conn.execute(sa.update(merges).where(merges.c.id == merge_id, merges.c.undone_at.is_(None))
                             .values(undone_at=service.clock.now(), undone_by=user.id))
        if taken.rowcount != 1:
            raise Conflict(Message("merge.already_undone", "Merge #{id} was undone already.", id=merge_id))
        _check_undoable(conn, entity.name, row.survivor_id, others, batch, merge_id)
        saves = conn.execute(sa.select(journal_table).where(journal_table.c.batch == batch,
                                                            journal_table.c.action != "deleted")
                             .order_by(journal_table.c.id.desc())).all()
        survivor_saves = [save for save in saves if save.record_id == row.survivor_id and save.entity == entity.name]
        # The survivor gives back what it took first (a unique value a merged record holds), its references to the
        # merged records last (they must be back for the reference check); then the other records' references.
        for save in survivor_saves:
            kept.extend(_revert_save(service, conn, save, acting, origin, references=False))
        for other in others:
            with contextlib.suppress(Conflict):  # restored by hand since: nothing to bring back
                service.restore(entity.name, other, acting, connection=conn, origin=origin)
        for save in survivor_saves:
            kept.extend(_revert_save(service, conn, save, acting, origin, references=True))
        for name, found in (row.moved or {}).items():
            table = _MOVED.get(name)
            if table is None:
                continue
            for origin_id, ids in (found or {}).items():
                # Back to the record each came from (unless it was removed since: then it stays on the survivor).
                conn.execute(sa.update(table).where(table.c.id.in_([int(i) for i in ids]),
                                                    table.c.record_id == row.survivor_id)
                             .values(record_id=int(origin_id)))
        for save in saves:
            if not (save.record_id == row.survivor_id and save.entity == entity.name):
                kept.extend(_revert_save(service, conn, save, acting, origin))
    return UndoResult(merge_id, tuple(others), tuple(dict.fromkeys(kept)))


def _check_undoable(conn: sa.Connection, entity: str, survivor_id: int, others: list[int], batch: str,
                    merge_id: int) -> None:
    """Conflict when the merge cannot be undone as it was made: its survivor is in the trash, or a merged record was
    removed for good or went to the trash again by something later (another merge)."""
    found = {r.id: r for r in conn.execute(sa.select(records.c.id, records.c.deleted_at)
                                           .where(records.c.id.in_([survivor_id, *others])))}
    survivor = found.get(survivor_id)
    if survivor is None or survivor.deleted_at is not None:
        raise Conflict(Message("merge.survivor_gone", "The card merge #{id} kept is in the trash or removed: restore "
                               "it first, then undo the merge.", id=merge_id))
    for other in others:
        if other not in found:
            raise Conflict(Message("merge.record_purged", "#{record}, merged by merge #{id}, was removed for good: "
                                   "the merge can no longer be undone.", record=other, id=merge_id))
        last = conn.execute(sa.select(journal_table.c.action, journal_table.c.batch)
                            .where(journal_table.c.entity == entity, journal_table.c.record_id == other)
                            .order_by(journal_table.c.id.desc()).limit(1)).first()
        if found[other].deleted_at is not None and (last is None or last.batch != batch):
            raise Conflict(Message("merge.superseded", "#{record} went to the trash again after merge #{id} (merged "
                                   "or deleted later): undo that first.", record=other, id=merge_id))


def _revert_save(service: RecordService, conn: sa.Connection, save: Any, acting: Principal, origin: Origin,
                 references: bool | None = None) -> list[tuple[str, int, str]]:
    """Put back the old values of one save of the merge, each only if nothing changed it since (with `references`
    True or False, only the reference fields or only the others); the fields left, and its consents."""
    entity = service.metadata.entities.get(save.entity)
    stored = service.stored(conn, entity, save.record_id, lock=True) if entity is not None else None
    if entity is None or stored is None:
        return []
    with_data = conn.execute(sa.select(records.c.data).where(records.c.id == save.record_id)).scalar() or {}
    update: dict[str, Any] = {}
    left = []
    for name, (old, new) in (save.changes or {}).items():
        if name == journal.OWNER or name not in entity.fields or entity.fields[name].is_formula:
            continue
        if references is not None and (entity.fields[name].type.refers == "record") != references:
            continue
        if entity.fields[name].type.personal_decision or with_data.get(name) != new:
            left.append((save.entity, save.record_id, name))
            continue
        update[name] = service.typed_values(entity, {name: old})[name]
    if update:
        service.update(entity.name, save.record_id, update, acting, expected_version=None, connection=conn,
                       origin=origin)
    return left

