"""Record permissions from roles.yaml: per role and entity, a scope for create/read/update/delete."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from kartoteka.metadata.expressions import suggest
from kartoteka.metadata.sources import Problem, Source

ACTIONS = ("create", "read", "update", "delete")
# Narrowest first: a user holding several roles gets the widest scope any of them grants.
SCOPES = ("none", "own", "department", "all")
WILDCARD = "*"
_RANK = {scope: i for i, scope in enumerate(SCOPES)}


@dataclass(frozen=True)
class Grant:
    """What one role may do with one entity: a scope per action (None: not said here)."""

    scopes: Mapping[str, str]

    def get(self, action: str) -> str | None:
        """The scope this grant names for `action`, if any."""
        return self.scopes.get(action)


@dataclass(frozen=True)
class Permissions:
    """Every role's grants; `defined` is False when roles.yaml has no permissions section."""

    grants: Mapping[str, Mapping[str, Grant]] = field(default_factory=lambda: MappingProxyType({}))
    defined: bool = False

    def scope(self, roles: Iterable[str], entity: str, action: str) -> str:
        """The widest scope any of `roles` has for `action` on `entity`; 'all' when nothing is defined."""
        if not self.defined:
            return "all"
        best = "none"
        for role in roles:
            by_entity = self.grants.get(role)
            if by_entity is None:
                continue
            scope = _pick(by_entity.get(entity), by_entity.get(WILDCARD), action)
            if _RANK[scope] > _RANK[best]:
                best = scope
        return best


def _pick(specific: Grant | None, default: Grant | None, action: str) -> str:
    """The entity's own entry wins per action; the role's '*' entry fills in; else none."""
    for grant in (specific, default):
        if grant is not None and grant.get(action) is not None:
            return grant.get(action) or "none"
    return "none"


def build_permissions(source: Source, raw: Any, roles: Iterable[str], entities: Iterable[str]
                      ) -> tuple[Permissions, list[Problem]]:
    """Permissions from the `permissions:` mapping of roles.yaml, with every problem found in it."""
    if raw is None:
        return Permissions(), []
    problems: list[Problem] = []
    role_names, entity_names = list(roles), [*entities, WILDCARD]
    base: tuple[str | int, ...] = ("permissions",)
    if not isinstance(raw, Mapping):
        return Permissions(), [source.problem(base, "must be a mapping of role → entity → scope")]
    grants: dict[str, Mapping[str, Grant]] = {}
    for role, by_entity in raw.items():
        path = (*base, role)
        if role not in role_names:
            problems.append(source.problem(path, f"unknown role '{role}'{suggest(str(role), role_names)}"))
            continue
        if not isinstance(by_entity, Mapping):
            problems.append(source.problem(path, "must be a mapping of entity (or '*') → scope"))
            continue
        entries: dict[str, Grant] = {}
        for entity, spec in by_entity.items():
            entity_path = (*path, entity)
            if entity not in entity_names:
                problems.append(source.problem(
                    entity_path, f"unknown entity '{entity}'{suggest(str(entity), entity_names)}; "
                                 f"use '*' for every entity"))
                continue
            grant = _grant(source, entity_path, spec, problems)
            if grant is not None:
                entries[entity] = grant
        grants[role] = MappingProxyType(entries)
    return Permissions(MappingProxyType(grants), defined=True), problems


def _grant(source: Source, path: tuple[str | int, ...], spec: Any, problems: list[Problem]) -> Grant | None:
    if isinstance(spec, str):
        if spec not in SCOPES:
            problems.append(source.problem(path, _bad_scope(spec)))
            return None
        return Grant(MappingProxyType(dict.fromkeys(ACTIONS, spec)))
    if not isinstance(spec, Mapping):
        problems.append(source.problem(path, f"must be a scope ({', '.join(SCOPES)}) or a mapping of "
                                             f"{', '.join(ACTIONS)} → scope"))
        return None
    scopes: dict[str, str] = {}
    for action, scope in spec.items():
        if action not in ACTIONS:
            problems.append(source.problem((*path, action), f"unknown action '{action}'"
                                           f"{suggest(str(action), ACTIONS)}; actions: {', '.join(ACTIONS)}"))
        elif not isinstance(scope, str) or scope not in SCOPES:
            problems.append(source.problem((*path, action), _bad_scope(scope)))
        else:
            scopes[action] = scope
    return Grant(MappingProxyType(scopes))


def _bad_scope(value: Any) -> str:
    return f"unknown scope '{value}'{suggest(str(value), SCOPES)}; scopes: {', '.join(SCOPES)}"
