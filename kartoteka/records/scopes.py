"""Record scopes: which records of an entity a user may create, read, update or delete.

A scope is own (records the user owns), department (records owned by anyone in the user's
department), all or none, taken from roles.yaml. Lists get it as a SQL clause; single records and
owner assignments are checked against the owner's department.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from kartoteka.errors import PermissionDenied
from kartoteka.messages import Message
from kartoteka.metadata.model import EntityDef, Metadata
from kartoteka.metadata.permissions import ACTIONS
from kartoteka.records.model import Principal
from kartoteka.storage.tables import records, users


def scope_of(metadata: Metadata, user: Principal, entity: EntityDef, action: str) -> str:
    """The user's scope for `action` on `entity` (superusers and the system: all)."""
    if user.is_system or metadata.is_superuser(user.roles):
        return "all"
    return metadata.permissions.scope(user.roles, entity.name, action)


def scopes_for(metadata: Metadata, user: Principal, entity: EntityDef) -> dict[str, str]:
    """The user's scope for each action on `entity` (what the UI offers, what the API describes)."""
    return {action: scope_of(metadata, user, entity, action) for action in ACTIONS}


def readable_entities(metadata: Metadata, user: Principal) -> list[EntityDef]:
    """The entities with some records the user may read (navigation, the start page, the API's index)."""
    return [e for e in metadata.entities.values() if scope_of(metadata, user, e, "read") != "none"]


def require(metadata: Metadata, user: Principal, entity: EntityDef, action: str) -> str:
    """The scope, or PermissionDenied when it is none."""
    scope = scope_of(metadata, user, entity, action)
    if scope == "none":
        raise PermissionDenied(forbidden(entity, action))
    return scope


def forbidden(entity: EntityDef, action: str) -> Message:
    """Why the user's role may not do `action` on records of `entity` (the entity's plural label as {what})."""
    what, name = entity.label_plural, entity.name
    if action == "create":
        return Message("entity.forbidden.create", "Your role may not create {what}.", what=what, entity=name)
    if action == "update":
        return Message("entity.forbidden.update", "Your role may not change {what}.", what=what, entity=name)
    if action == "delete":
        return Message("entity.forbidden.delete", "Your role may not delete {what}.", what=what, entity=name)
    return Message("entity.forbidden.read", "Your role may not open {what}.", what=what, entity=name)


def scope_clause(scope: str, user: Principal) -> sa.ColumnElement[bool] | None:
    """A WHERE clause on `records` limiting rows to the scope; None for all."""
    if scope == "all":
        return None
    if scope == "none" or user.id is None:
        return sa.false()
    if scope == "department" and user.department:
        same_department = sa.select(users.c.id).where(users.c.department == user.department)
        return sa.or_(records.c.owner == user.id, records.c.owner.in_(same_department.scalar_subquery()))
    return records.c.owner == user.id


def readable_where(metadata: Metadata, user: Principal, entity: EntityDef) -> list[sa.ColumnElement[bool]] | None:
    """WHERE clauses for the live records of `entity` the user may read; None when they may read none."""
    scope = scope_of(metadata, user, entity, "read")
    if scope == "none":
        return None
    # The entity written into the SQL, as the metadata indexes' WHERE has it: SQLite then knows a row matches the
    # partial index without reading it (a bound parameter could be any entity), so counts read the index alone.
    where = [records.c.entity == sa.literal(entity.name, literal_execute=True), records.c.deleted_at.is_(None)]
    clause = scope_clause(scope, user)
    if clause is not None:
        where.append(clause)
    return where


@dataclass(frozen=True)
class ReadableShape:
    """The live records of an entity a user may read, as a statement built once per shape and its values: `kind` is
    all, own or department; `params` fill the statement's bound parameters (see `bound_readable_where`)."""

    entity: str
    kind: str
    params: dict[str, Any]


def readable_shape(metadata: Metadata, user: Principal, entity: EntityDef) -> ReadableShape | None:
    """What `readable_where` says, for statements built once per shape (None when the user may read none)."""
    scope = scope_of(metadata, user, entity, "read")
    if scope == "none" or (scope != "all" and user.id is None):
        return None  # as readable_where's scope clause: a user without an id owns nothing, nor has colleagues
    kind = "department" if scope == "department" and user.department else "all" if scope == "all" else "own"
    return ReadableShape(entity.name, kind, {"scope_user": user.id, "scope_department": user.department})


@functools.lru_cache(maxsize=1024)
def bound_readable_where(entity_name: str, kind: str) -> tuple[sa.ColumnElement[bool], ...]:
    """`readable_where`'s clauses with the user's id and department as bound parameters (scope_user,
    scope_department), so that a statement made of them is built, and its cache key computed, once."""
    where: list[sa.ColumnElement[bool]] = [records.c.entity == sa.literal(entity_name, literal_execute=True),
                                           records.c.deleted_at.is_(None)]
    if kind == "department":
        same_department = sa.select(users.c.id).where(users.c.department == sa.bindparam("scope_department"))
        where.append(sa.or_(records.c.owner == sa.bindparam("scope_user"),
                            records.c.owner.in_(same_department.scalar_subquery())))
    elif kind == "own":
        where.append(records.c.owner == sa.bindparam("scope_user"))
    return tuple(where)


def in_scope(conn: sa.Connection, scope: str, user: Principal, owner: Any) -> bool:
    """True when a record owned by `owner` (a user id or None) lies within `scope` for `user`."""
    if scope == "all":
        return True
    if scope == "none" or owner is None or user.id is None:
        return False
    if owner == user.id:
        return True
    if scope == "department" and user.department:
        department = conn.execute(sa.select(users.c.department).where(users.c.id == owner)).scalar()
        return department == user.department
    return False


def owners_in_scope(conn: sa.Connection, scope: str, user: Principal, owners: set[Any]) -> set[Any]:
    """The owners among `owners` whose records lie within `scope` for `user` (one query at most)."""
    if scope == "all":
        return set(owners)
    if scope == "none" or user.id is None:
        return set()
    allowed = {user.id} & owners
    others = {o for o in owners if o is not None and o != user.id}
    if scope == "department" and user.department and others:
        allowed |= set(conn.execute(sa.select(users.c.id).where(users.c.id.in_(others),
                                                                 users.c.department == user.department)).scalars())
    return allowed


def owner_message(scope: str, user: Principal) -> Message:
    """Why an owner may not be assigned under `scope`."""
    if scope == "department" and user.department:
        return Message("owner.scope_department", "You may assign records only to yourself or to colleagues of your "
                       "department.")
    return Message("owner.scope", "You may assign records only to yourself.")
