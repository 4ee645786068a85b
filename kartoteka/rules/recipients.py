"""Who rule actions address: users by name, role or department, the record's owner; and whom `assign` picks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from kartoteka.metadata.model import EntityDef
from kartoteka.records.model import Principal
from kartoteka.storage.json_sql import JsonValue
from kartoteka.storage.tables import records, rule_runs, users

_COLUMNS = (users.c.id, users.c.username, users.c.roles, users.c.department, users.c.language, users.c.email)


def principal_of(row: sa.Row) -> Principal:  # type: ignore[type-arg]
    """The Principal of a users row read with _COLUMNS."""
    return Principal(row.id, row.username, frozenset(row.roles or ()), row.department, row.language or "en")


def active_users(conn: sa.Connection) -> list[sa.Row]:  # type: ignore[type-arg]
    """Every active user (the few dozen or hundred a CRM has), ordered by id."""
    return list(conn.execute(sa.select(*_COLUMNS).where(users.c.is_active.is_(True)).order_by(users.c.id)))


def users_with_role(conn: sa.Connection, role: str) -> list[int]:
    """Ids of active users holding `role`."""
    return [row.id for row in active_users(conn) if role in (row.roles or ())]


def users_in_department(conn: sa.Connection, department: str) -> list[int]:
    """Ids of active users of `department`."""
    return [row.id for row in active_users(conn) if row.department == department]


def user_by_name(conn: sa.Connection, username: str) -> int | None:
    """The id of the active user called `username`, or None."""
    row = conn.execute(sa.select(users.c.id).where(users.c.username == username, users.c.is_active.is_(True))).first()
    return row.id if row is not None else None


def principals(conn: sa.Connection, ids: Iterable[int]) -> dict[int, Principal]:
    """Principals (roles, department, language) of the active users among `ids`."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = conn.execute(sa.select(*_COLUMNS).where(users.c.id.in_(wanted), users.c.is_active.is_(True)))
    return {row.id: principal_of(row) for row in rows}


def pick(conn: sa.Connection, entity: EntityDef, rule_key: str, candidates: list[int], strategy: str,
         field_name: str | None, busy: Callable[[Mapping[str, Any]], bool] | None = None) -> int | None:
    """The candidate `assign` gives a record (or its user field `field_name`) to.

    round_robin: the candidate after the one this rule chose last (its run log says whom), in the order of user ids;
    least_loaded: the one holding the fewest live records of the card (as owner, or in the field); with `busy` only
    the records it says are load count (`busy_if: "status not in ['resolved', 'closed']"`). Ties go to the lower
    id.
    """
    if not candidates:
        return None
    ordered = sorted(set(candidates))
    if strategy == "least_loaded":
        holder = records.c.owner if field_name is None else JsonValue(
            records.c.data, field_name, entity.fields[field_name].value_type.storage)
        live = (records.c.entity == entity.name, records.c.deleted_at.is_(None))
        if busy is None:
            rows = conn.execute(sa.select(holder.label("holder"), sa.func.count().label("held")).where(*live)
                                .group_by(holder)).all()
            counts = {int(row.holder): row.held for row in rows if row.holder is not None}
        else:  # each record's values judged by the expression: the candidates' records only
            counts = {}
            for row in conn.execute(sa.select(holder.label("holder"), records.c.data).where(*live)):
                if row.holder is not None and int(row.holder) in ordered and busy(row.data):
                    counts[int(row.holder)] = counts.get(int(row.holder), 0) + 1
        return min(ordered, key=lambda c: (counts.get(c, 0), c))
    last = _last_assigned(conn, entity.name, rule_key)
    later = [c for c in ordered if last is not None and c > last]
    return later[0] if later else ordered[0]


def _last_assigned(conn: sa.Connection, entity: str, rule_key: str) -> int | None:
    """Whom the latest successful run of the rule assigned (its run log keeps each action's summary)."""
    rows = conn.execute(sa.select(rule_runs.c.actions).where(
        rule_runs.c.entity == entity, rule_runs.c.rule_key == rule_key, rule_runs.c.result == "done")
        .order_by(rule_runs.c.id.desc()).limit(1)).all()
    for row in rows:
        for action in row.actions or []:
            if isinstance(action, dict) and action.get("action") == "assign" and isinstance(action.get("user"), int):
                return int(action["user"])
    return None
