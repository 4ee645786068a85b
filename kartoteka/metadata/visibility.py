"""Who may view which field: the rules `records/access.py` applies, and check-config reasons about.

A field is viewable by a user's roles when its own `access.view` lets one of them in, when the `view`
of the tab and of the group holding it in the user's layout (their department's variant, else the
default) do too, and, for a formula, when every field it reads is viewable. Users holding a superuser
role (`superuser: true` in roles.yaml; `admin` when no role says) view everything.

Each of these is a clause "holds one of these roles", so what it takes to view a field is a set of
clauses that must all be met: its `Requirement`. From it follow both which fields some roles may view
(`viewable`) and, for every combination of roles at once, whether whoever views one thing also views a
field (`witness`): check-config uses that to refuse conditions that would tell a user about a field
they may not view (`condition_leaks`). More roles never make a field less viewable, but a formula
reading a field only finance may view and one only HR may view is viewable only by a user holding
both roles, so the check reasons over sets of roles, not one role at a time.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType

from kartoteka.metadata.expressions import CompiledExpression
from kartoteka.metadata.model import DEFAULT_SUPERUSERS, EntityDef, Group, Tab

# The superuser role when roles.yaml names none: its holders view and edit every field.
ADMIN_ROLE = next(iter(DEFAULT_SUPERUSERS))
# A user must hold one of these roles.
Clause = frozenset[str]
# Every clause must be met.
Requirement = frozenset[Clause]
CONDITIONS = ("visible_if", "required_if", "read_only_if")


def section_requirement(tab: Tab, group: Group | None = None) -> Requirement:
    """What it takes to view a tab, or a group of it: the `view` roles of each."""
    return frozenset(a.view for a in (tab.access, *([group.access] if group else [])) if a.view is not None)


def _requirements(entity: EntityDef, department: str | None) -> Mapping[str, Requirement]:
    placement: dict[str, Requirement] = {}
    for tab in entity.layout_for(department).tabs:
        for group in tab.groups:
            placement.update(dict.fromkeys(group.fields, section_requirement(tab, group)))
    result: dict[str, set[Clause]] = {}
    for name, field in entity.fields.items():
        result[name] = set(placement.get(name, ()))
        if field.access.view is not None:
            result[name].add(field.access.view)
    # Formulas come in dependency order, so a formula's inputs are settled before it.
    for name in entity.formula_order:
        expr = entity.fields[name].expr
        for source in sorted((expr.names if expr else frozenset()) & entity.fields.keys()):
            result[name] |= result[source]
    return MappingProxyType({name: frozenset(clauses) for name, clauses in result.items()})


requirements = lru_cache(maxsize=256)(_requirements)
requirements.__doc__ = "Per field, what it takes to view it in the layout of `department` (cached per entity)."


def meets(requirement: Requirement, roles: frozenset[str], superusers: frozenset[str] = DEFAULT_SUPERUSERS) -> bool:
    """True when `roles` meet every clause (superusers meet everything)."""
    return bool(roles & superusers) or all(clause & roles for clause in requirement)


def viewable(entity: EntityDef, roles: frozenset[str], department: str | None) -> frozenset[str]:
    """Names of the fields a user holding `roles` in `department` may view."""
    if roles & entity.superusers:
        return frozenset(entity.fields)
    return frozenset(name for name, need in requirements(entity, department).items()
                     if meets(need, roles, entity.superusers))


def placement_denies(entity: EntityDef, roles: frozenset[str], department: str | None, edit: bool) -> set[str]:
    """Fields placed (in the department's layout) in a group or tab that `roles` may not view (or edit)."""
    denied: set[str] = set()
    for tab in entity.layout_for(department).tabs:
        for group in tab.groups:
            ok = all(a.can_edit(roles) if edit else a.can_view(roles) for a in (tab.access, group.access))
            if not ok:
                denied.update(group.fields)
    return denied


@dataclass(frozen=True)
class Witness:
    """Roles that view one thing but not a field: `roles`, or (when empty) a user holding none of `lacking`."""

    roles: frozenset[str]
    lacking: frozenset[str]

    def describe(self) -> tuple[str, str]:
        """('role 'sales'', 'it') or ('a user with the roles 'finance' and 'hr'', 'they')."""
        if len(self.roles) == 1:
            return f"role '{next(iter(self.roles))}'", "it"
        if self.roles:
            *first, last = sorted(self.roles)
            return f"a user with the roles {', '.join(repr(r) for r in first)} and '{last}'", "they"
        return f"a user with none of the roles {', '.join(repr(r) for r in sorted(self.lacking))}", "they"


def witness(sees: Requirement, reads: Requirement, roles: Collection[str] | None,
            superusers: frozenset[str] = DEFAULT_SUPERUSERS) -> Witness | None:
    """Roles that meet `sees` but not `reads`, or None when everyone who meets `sees` meets `reads`.

    `roles` are the roles users may hold, in the order roles.yaml declares them (None: any name at all);
    superusers view everything and are never part of a witness. One role is preferred, the first declared;
    otherwise the witness holds one role per clause of `sees`.
    Exact for every combination of roles: a set of roles misses a clause of `reads` while meeting all
    of `sees` exactly when no clause of `sees` lies inside that clause of `reads`.
    """
    universe = None if roles is None else frozenset(roles) - superusers
    rank = {role: i for i, role in enumerate(roles or ())}

    def first(candidates: frozenset[str]) -> str:
        return min(candidates, key=lambda role: (rank.get(role, len(rank)), role))

    usable = [(clause if universe is None else clause & universe) - superusers for clause in sees]
    if any(not clause for clause in usable):
        return None  # only superusers view it
    combined = None
    for lacking in sorted(reads, key=sorted):
        outside = [clause - lacking for clause in usable]
        if any(not clause for clause in outside):
            continue  # whoever meets that clause of `sees` holds a role of `lacking`
        if outside:
            common = frozenset.intersection(*outside)
        elif universe is not None:
            common = universe - lacking
        else:
            return Witness(frozenset(), lacking)  # any role outside `lacking` sees it
        if common:
            return Witness(frozenset({first(common)}), lacking)
        if outside and combined is None:
            combined = Witness(frozenset(first(clause) for clause in outside), lacking)
    return combined


@dataclass(frozen=True)
class Leak:
    """A condition that reads `reads`, which `witness` may not view while they see what it conditions.

    `field` and `condition` name a field's condition; otherwise `tab` (and `group`) index the section
    of the layout of `department` whose `visible_if` it is.
    """

    reads: str
    witness: Witness
    department: str | None
    field: str | None = None
    condition: str | None = None
    tab: int | None = None
    group: int | None = None


def condition_leaks(entity: EntityDef, roles: Collection[str] | None) -> Iterator[Leak]:
    """Conditions that would tell some user whether something about a field they may not view holds.

    A field's `visible_if`, `required_if` and `read_only_if` decide what a user who sees the field is
    shown (hidden, required, locked), and a tab's or group's `visible_if` what a user who sees the
    section is shown: so each may only read fields that everyone who sees the field or section can see,
    in every layout (the default one and each department's variant). `roles`: those of roles.yaml.
    """
    layouts = [None, *sorted(entity.variants)]
    tables = {department: _requirements(entity, department) for department in layouts}
    for name, field in entity.fields.items():
        for key in CONDITIONS:
            expr: CompiledExpression | None = getattr(field, key)
            for read in sorted(expr.names & entity.fields.keys()) if expr else ():
                for department in layouts:
                    found = witness(tables[department][name], tables[department][read], roles,
                                    entity.superusers)
                    if found is not None:
                        yield Leak(read, found, department, field=name, condition=key)
                        break
    for department in layouts:
        for t, tab in enumerate(entity.layout_for(department).tabs):
            sections = [(None, tab.visible_if), *((g, group.visible_if) for g, group in enumerate(tab.groups))]
            for g, expr in sections:
                sees = section_requirement(tab, None if g is None else tab.groups[g])
                for read in sorted(expr.names & entity.fields.keys()) if expr else ():
                    found = witness(sees, tables[department][read], roles, entity.superusers)
                    if found is not None:
                        yield Leak(read, found, department, tab=t, group=g)
