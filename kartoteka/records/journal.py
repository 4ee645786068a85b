"""The change journal: who changed what in a record, when and from where, and each value old -> new.

The record service writes one row per save in the saving transaction (create, update, delete, restore; merges,
imports, rules and reverts are saves too and say so in `source`, `batch`, `rule_key`, `reverts`). Values are kept as
stored in the record's JSON ("owner" stands for the owner column), so replaying the rows backwards from the current
values rebuilds the record exactly as it was at any version (`values_at`). What a reader is shown is cut to the
fields they may view (`visible_entry`): nobody reads an old value of a field they may not view.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from kartoteka.metadata.model import EntityDef
from kartoteka.records.access import viewable_fields
from kartoteka.records.hooks import Origin
from kartoteka.records.model import Principal
from kartoteka.storage.tables import journal, users
from kartoteka.storage.times import utc

OWNER = "owner"  # the key of an owner change among a row's changes (no field may be called so: a system name)
INSERT = sa.insert(journal)


def changes(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, owner_before: int | None = None,
            owner_after: int | None = None) -> dict[str, list[Any]]:
    """Each value that differs between two stored forms of a record, as [old, new] (None: empty)."""
    before = before or {}
    after = after or {}
    found = {name: [before.get(name), value] for name, value in after.items() if before.get(name) != value}
    found.update((name, [value, None]) for name, value in before.items() if value is not None and name not in after)
    found.pop(OWNER, None)
    if owner_before != owner_after:
        found[OWNER] = [owner_before, owner_after]
    return found


def action_of(kind: str, origin: Origin) -> str:
    """What the journal calls a save: its kind, or `reverted` and `merged` for those updates."""
    if kind == "updated" and origin.reverts is not None:
        return "reverted"
    if kind == "updated" and origin.source == "merge":
        return "merged"
    return kind


def row(entity: EntityDef, record_id: int, version: int, kind: str, user: Principal, origin: Origin,
        found: Mapping[str, list[Any]], now: datetime) -> dict[str, Any]:
    """The journal row of one save (for INSERT)."""
    return {"entity": entity.name, "record_id": record_id, "version": version, "action": action_of(kind, origin),
            "source": origin.source, "user_id": user.id, "token_id": user.token_id, "rule_key": origin.rule,
            "batch": origin.batch, "reverts": origin.reverts, "changes": dict(found), "created_at": now}


@dataclass(frozen=True)
class JournalEntry:
    """One save of a record as a reader is shown it."""

    id: int
    version: int
    action: str
    source: str
    user_id: int | None
    user: str | None
    token_id: int | None
    rule_key: str | None
    batch: str | None
    reverts: int | None
    created_at: datetime
    changes: dict[str, list[Any]]  # field -> [old, new], as stored; only fields the reader may view
    hidden: int  # how many changed fields the reader may not view (their names and values are not shown)


def entries_query(entity: EntityDef, record_id: int) -> sa.Select[Any]:
    """The journal rows of a record, newest first, with the name of the user who saved each."""
    return (sa.select(journal, users.c.display_name.label("user_name"))
            .select_from(journal.outerjoin(users, users.c.id == journal.c.user_id))
            .where(journal.c.entity == entity.name, journal.c.record_id == record_id).order_by(journal.c.id.desc()))


def visible_entry(entity: EntityDef, user: Principal, stored_row: Any) -> JournalEntry:
    """A journal row cut to what `user` may view of the card's fields."""
    viewable = viewable_fields(entity, user)
    shown = {name: list(pair) for name, pair in (stored_row.changes or {}).items()
             if name == OWNER or name in viewable}
    return JournalEntry(
        id=stored_row.id, version=stored_row.version, action=stored_row.action, source=stored_row.source,
        user_id=stored_row.user_id, user=stored_row.user_name, token_id=stored_row.token_id,
        rule_key=stored_row.rule_key, batch=stored_row.batch, reverts=stored_row.reverts,
        created_at=utc(stored_row.created_at), changes=shown,
        hidden=len(stored_row.changes or {}) - len(shown))


def values_at(current: Mapping[str, Any], owner: int | None, later: Iterable[Any]) -> tuple[dict[str, Any], int | None]:
    """The stored values and owner of a record before the saves `later` (its journal rows, newest first), rebuilt
    backwards from its `current` values and owner."""
    data = dict(current)
    for stored_row in later:
        for name, (old, _new) in (stored_row.changes or {}).items():
            if name == OWNER:
                owner = old
            elif old is None:
                data.pop(name, None)
            else:
                data[name] = old
    return data, owner

