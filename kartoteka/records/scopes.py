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


def readable_where(metadata: Metadata, user: Principal, entity: EntityDef) -> list[sa.ColumnElement[bool]] | None:
    """WHERE clauses for the live records of `entity` the user may read; None when they may read none."""
    if scope_of(metadata, user, entity, "read") == "none":
        return None
    shape = readable_shape(metadata, user, entity)
    if shape is None:  # a user without an id (never signed in): owns nothing, nor has colleagues
        return [*_readable_clauses(entity.name, "all", None, None), sa.false()]
    return _readable_clauses(entity.name, shape.kind, user.id, user.department)


def trash_where(metadata: Metadata, user: Principal, entity: EntityDef, action: str = "delete"
                ) -> list[sa.ColumnElement[bool]] | None:
    """WHERE clauses for the records of `entity` in the trash within the user's scope for `action`: delete for the
    trash itself (it is for who may delete), read for telling a reference's target is deleted; None for no scope."""
    scope = scope_of(metadata, user, entity, action)
    if scope == "none" or (scope != "all" and user.id is None):
        return None
    kind = "department" if scope == "department" and user.department else "all" if scope == "all" else "own"
    return [records.c.entity == entity.name, records.c.deleted_at.is_not(None),
            *_readable_clauses(entity.name, kind, user.id, user.department)[2:]]  # the owner clauses alone


@dataclass(frozen=True)
class ReadableShape:
    """The live records of an entity a user may read, as a statement built once per shape and its values: `kind` is
    all, own or department; `params` fill the statement's bound parameters (see `bound_readable_where`)."""

    entity: str
    kind: str
    params: dict[str, Any]


def readable_shape(metadata: Metadata, user: Principal, entity: EntityDef) -> ReadableShape | None:
    """Which records of `entity` the user may read, as a kind of scope and its values (None when none)."""
    scope = scope_of(metadata, user, entity, "read")
    if scope == "none" or (scope != "all" and user.id is None):
        return None  # a user without an id (never signed in) owns nothing, nor has colleagues
    kind = "department" if scope == "department" and user.department else "all" if scope == "all" else "own"
    return ReadableShape(entity.name, kind, {"scope_user": user.id, "scope_department": user.department})


@functools.lru_cache(maxsize=1024)
def bound_readable_where(entity_name: str, kind: str) -> tuple[sa.ColumnElement[bool], ...]:
    """`readable_where`'s clauses with the user's id and department as bound parameters (scope_user,
    scope_department), so that a statement made of them is built, and its cache key computed, once."""
    return tuple(_readable_clauses(entity_name, kind, sa.bindparam("scope_user"), sa.bindparam("scope_department")))


def _readable_clauses(entity_name: str, kind: str, user_id: Any, department: Any) -> list[sa.ColumnElement[bool]]:
    """The live records of the entity within a kind of scope; the user's id and department as values or parameters."""
    # The entity written into the SQL, as the metadata indexes' WHERE has it: SQLite then knows a row matches the
    # partial index without reading it (a bound parameter could be any entity), so counts read the index alone.
    where = [records.c.entity == sa.literal(entity_name, literal_execute=True), records.c.deleted_at.is_(None)]
    if kind == "department":
        same_department = sa.select(users.c.id).where(users.c.department == department)
        where.append(sa.or_(records.c.owner == user_id, records.c.owner.in_(same_department.scalar_subquery())))
    elif kind == "own":
        where.append(records.c.owner == user_id)
    return where


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
