"""Which fields a user may see and change; a formula is only visible if all its inputs are.

A field's own `access` and the `access` of the group and tab holding it in the user's layout (their
department's variant, else the default) all apply: a field in a tab for HR only is hidden from
everybody else, in every response, not only on the form.
"""

from __future__ import annotations

from functools import lru_cache

from kartoteka.metadata.model import EntityDef
from kartoteka.records.model import Principal


def viewable_fields(entity: EntityDef, user: Principal) -> frozenset[str]:
    """Names of the fields `user` may see on `entity`."""
    if user.is_admin:
        return frozenset(entity.fields)
    return _viewable(entity, user.roles, user.department)


def _placement_denies(entity: EntityDef, roles: frozenset[str], department: str | None, edit: bool) -> set[str]:
    """Fields placed (in the user's layout) in a group or tab that `roles` may not view (or edit)."""
    denied = set()
    for tab in entity.layout_for(department).tabs:
        for group in tab.groups:
            ok = all(a.can_edit(roles) if edit else a.can_view(roles) for a in (tab.access, group.access))
            if not ok:
                denied.update(group.fields)
    return denied


@lru_cache(maxsize=1024)
def _viewable(entity: EntityDef, roles: frozenset[str], department: str | None) -> frozenset[str]:
    denied = _placement_denies(entity, roles, department, edit=False)
    visible = {name for name, f in entity.fields.items() if f.access.can_view(roles) and name not in denied}
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
    return _editable(entity, user.roles, user.department)


@lru_cache(maxsize=1024)
def _editable(entity: EntityDef, roles: frozenset[str], department: str | None) -> frozenset[str]:
    visible = _viewable(entity, roles, department)
    denied = _placement_denies(entity, roles, department, edit=True)
    return frozenset(
        name for name, f in entity.fields.items()
        if name in visible and name not in denied and not f.is_formula and f.access.can_edit(roles)
    )
