"""Which fields a user may see and change; a formula is only visible if all its inputs are."""

from __future__ import annotations

from functools import lru_cache

from kartoteka.metadata.model import EntityDef
from kartoteka.records.model import Principal


def viewable_fields(entity: EntityDef, user: Principal) -> frozenset[str]:
    """Names of the fields `user` may see on `entity`."""
    if user.is_admin:
        return frozenset(entity.fields)
    return _viewable(entity, user.roles)


@lru_cache(maxsize=1024)
def _viewable(entity: EntityDef, roles: frozenset[str]) -> frozenset[str]:
    visible = {name for name, f in entity.fields.items() if f.access.can_view(roles)}
    # Formulas come in dependency order, so a formula's inputs are settled before it.
    for name in entity.formula_order:
        expr = entity.fields[name].expr
        if name in visible and expr is not None and not (expr.names & entity.fields.keys()) <= visible:
            visible.discard(name)
    return frozenset(visible)


def editable_fields(entity: EntityDef, user: Principal) -> frozenset[str]:
    """Names of the fields `user` may set (computed fields are never set)."""
    if user.is_admin:
        return frozenset(n for n, f in entity.fields.items() if not f.is_formula)
    return _editable(entity, user.roles)


@lru_cache(maxsize=1024)
def _editable(entity: EntityDef, roles: frozenset[str]) -> frozenset[str]:
    visible = _viewable(entity, roles)
    return frozenset(
        name for name, f in entity.fields.items()
        if name in visible and not f.is_formula and f.access.can_edit(roles)
    )
