"""Which fields a user may see and change; a formula is only visible if all its inputs are.

A field's own `access` and the `access` of the group and tab holding it in the user's layout (their
department's variant, else the default) all apply: a field in a tab for HR only is hidden from
everybody else, in every response, not only on the form. What may be viewed is decided in
kartoteka.metadata.visibility (pure, shared with check-config); this module caches it per user kind.
"""

from __future__ import annotations

from functools import lru_cache

from kartoteka.metadata import visibility
from kartoteka.metadata.model import EntityDef
from kartoteka.records.model import Principal


def viewable_fields(entity: EntityDef, user: Principal) -> frozenset[str]:
    """Names of the fields `user` may see on `entity` (all of them for superusers and the system)."""
    if user.is_system or user.roles & entity.superusers:
        return every_field(entity)
    return _viewable(entity, user.roles, user.department)


@lru_cache(maxsize=1024)
def every_field(entity: EntityDef) -> frozenset[str]:
    """The names of all the entity's fields, one frozenset per entity (the same object each time)."""
    # Built once per entity: every save and every listed row asks (a new frozenset each time cost 1-3 µs).
    return frozenset(entity.fields)


@lru_cache(maxsize=1024)
def _every_settable_field(entity: EntityDef) -> frozenset[str]:
    return frozenset(n for n, f in entity.fields.items() if not f.is_formula)


@lru_cache(maxsize=1024)
def _viewable(entity: EntityDef, roles: frozenset[str], department: str | None) -> frozenset[str]:
    # The rules live in the pure core, where check-config uses them to refuse leaking conditions.
    return visibility.viewable(entity, roles, department)


def editable_fields(entity: EntityDef, user: Principal) -> frozenset[str]:
    """Names of the fields `user` may set (computed fields are never set)."""
    if user.is_system or user.roles & entity.superusers:
        return _every_settable_field(entity)
    return _editable(entity, user.roles, user.department)


@lru_cache(maxsize=1024)
def _editable(entity: EntityDef, roles: frozenset[str], department: str | None) -> frozenset[str]:
    visible = _viewable(entity, roles, department)
    denied = visibility.placement_denies(entity, roles, department, edit=True)
    return frozenset(
        name for name, f in entity.fields.items()
        if name in visible and name not in denied and not f.is_formula and f.access.can_edit(roles)
    )
