"""The pure part of the save pipeline: parse → merge → formulas → conditions → validate.

No database here: lookups the pipeline cannot do itself (uniqueness, references) are the service's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from kartoteka.messages import Message, message_of, stored_message
from kartoteka.metadata.expressions import Clock, CompiledExpression, EvaluationError, Evaluator
from kartoteka.metadata.fieldtypes import (
    FieldType,
    FieldValueError,
    ParseContext,
    Stamp,
    check_item_count,
    item_count_checks,
)
from kartoteka.metadata.model import EntityDef, FieldDef
from kartoteka.metadata.types.structured import COMPUTED
from kartoteka.records.access import editable_fields, viewable_fields
from kartoteka.records.model import Principal

RECORD_ERRORS = "_record"
_NONE: frozenset[str] = frozenset()
UNKNOWN_FIELD = Message("unknown_field", "Unknown field.")
FORBIDDEN = Message("field.forbidden", "You may not change this field.")
READ_ONLY = Message("read_only", "Is read-only.")


# The types whose empty values are empty (isinstance with a tuple: `str | list` would build a union at each call).
_SIZED = (str, list)


def is_empty(value: Any) -> bool:
    """None, '' and [] are empty; False and 0 are values."""
    # Not `value == ""`: comparing a Decimal or a date with a str or a list costs 1-2 µs, for every field of a save.
    return value is None or (isinstance(value, _SIZED) and not value)


@dataclass
class Prepared:
    """The outcome of the pure pipeline for one save."""

    values: dict[str, Any]
    changed: set[str]
    errors: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    visible: dict[str, bool] = dataclasses.field(default_factory=dict)
    required: dict[str, bool] = dataclasses.field(default_factory=dict)
    read_only: dict[str, bool] = dataclasses.field(default_factory=dict)
    # Tabs and groups of the user's layout by key ("t0", "t0g1"): False when their visible_if is false.
    sections: dict[str, bool] = dataclasses.field(default_factory=dict)
    # Problems the acting user may not learn of (fields or checks over fields they cannot view): they do
    # not stop the save; the service stores them as the record's flags for those who can see them.
    unseen: list[dict[str, str]] = dataclasses.field(default_factory=list)
    # Names sent that the user may not view (or that do not exist): refused alike as unknown fields.
    unknown: set[str] = dataclasses.field(default_factory=set)
    # Fields whose own visible_if is false (whatever the layout): the save empties them unless kept.
    condition_hidden: set[str] = dataclasses.field(default_factory=set)
    # Fields sent that this user may not change (formulas, read-only, not theirs to edit).
    refused: set[str] = dataclasses.field(default_factory=set)

    def error(self, name: str, message: str) -> None:
        """Add one message for `name`."""
        self.errors.setdefault(name, []).append(message)

    def hide_unseen(self, hidden: Collection[str]) -> None:
        """Move messages about the `hidden` fields (those the user may not view) out of `errors`, into `unseen`."""
        for name in [n for n in self.errors if n in hidden and n not in self.unknown]:
            for message in self.errors.pop(name):
                self.unseen.append({"field": name, **stored_message(message)})


def parse_value(field: FieldDef, raw: Any, ctx: ParseContext, *, as_stored: bool = False) -> Any:
    """Parse one field's input, a list for `multiple` fields; FieldValueError on bad input.

    `as_stored` parses a formula's value as its result type, to compare what a client sent back.
    """
    value_type = field.value_type if as_stored else field.type
    if not field.multiple:
        return value_type.parse(raw, field, ctx)
    if raw is None or raw == "":
        return None
    items = raw if isinstance(raw, list | tuple) else [raw]
    check_item_count(items, field)  # before parsing: the work grows with every item sent
    values: list[Any] = []
    seen: set[Any] = set()
    problems: list[str] = []
    for position, item in enumerate(items, start=1):
        try:
            value = value_type.parse(item, field, ctx)
        except FieldValueError as exc:
            problems.extend(Message("list.item", "Value {position}: {message}", position=position, message=inner)
                            for inner in exc.messages)
            continue
        if value is None:
            continue
        # Repeats go by a hashed key (a file's value is a dict), so removing them stays linear.
        key = tuple(sorted(value.items())) if isinstance(value, dict) else value
        if key not in seen:
            seen.add(key)
            values.append(value)
    if problems:
        raise FieldValueError(*problems)
    return values or None


class Pipeline:
    """Runs the pure steps of a save for one entity."""

    def __init__(self, entity: EntityDef, clock: Clock, ctx: ParseContext) -> None:
        self.entity = entity
        self.clock = clock
        self.ctx = ctx
        self.plan = _plan(entity)

    def defaults(self) -> dict[str, Any]:
        """Initial values of a new record."""
        plan = self.plan
        values = dict(plan.defaults)
        for name in plan.list_defaults:  # a list of its own for each record
            values[name] = list(values[name])
        return values

    def run(self, incoming: Mapping[str, Any], stored: Mapping[str, Any] | None, user: Principal,
            system: Mapping[str, Any], *, check_writes: bool = True, flagged: frozenset[str] = frozenset(),
            inferred: frozenset[str] = frozenset(), before_save: Callable[[Prepared], None] | None = None
            ) -> Prepared:
        """Parse `incoming` over `stored` (None for a new record), compute and validate everything.

        `flagged` holds the checks the stored record is flagged for: they run even if none of their
        fields changed, so the next save by someone who can see them must fix them. `inferred` names
        values a form inferred from absence (an unticked box, an emptied list): one the user may not
        change now is left as stored, not refused, and an unticked consent never given records nothing.
        `before_save` (the rules' before-save stage) sees the merged values before formulas and validation run; what it
        sets is validated and saved with the rest.
        """
        entity = self.entity
        base = dict(stored) if stored is not None else self.defaults()
        prepared = Prepared(values=base, changed=set())
        viewable = viewable_fields(entity, user)
        locked = self._locked(stored, system) if stored is not None and self.plan.locked_if else _NONE
        stamps: dict[bool, Stamp] = {}  # made for the first value whose type settles with one (consent)
        ctx = self.ctx
        # What each field this user may be sent takes (see _inputs), worked out once per kind of user.
        inputs = _inputs(entity, viewable, editable_fields(entity, user) if check_writes else None)
        for name, raw in incoming.items():
            entry = inputs.get(name)
            if entry is None:
                prepared.unknown.add(name)  # a field the user may not view is as unknown as one that does not exist
                continue
            field, parse, refusal, settles, compares = entry
            if refusal is None and name in locked:
                refusal, parse = READ_ONLY, None
            if refusal is not None:
                if name in inferred:
                    continue  # the form did not send it because the user could not change it
                prepared.refused.add(name)
            try:
                # parse_value of a single value is its type's parse: called directly (a save parses every field sent).
                value = parse(raw, field, ctx) if parse is not None else parse_value(field, raw, ctx,
                                                                                     as_stored=refusal is not None)
            except FieldValueError as exc:
                for message in [refusal] if refusal is not None else exc.messages:
                    prepared.error(name, message)
                continue
            stored_value = base.get(name)
            if settles:
                if not stamps:
                    now = self.clock.now()
                    stamps = {inferred_: Stamp(now, user.id, inferred_) for inferred_ in (False, True)}
                value = field.type.settle(value, stored_value, field, stamps[name in inferred])
            same = value == stored_value or (compares and field.type.same(value, stored_value))
            if refusal is not None:
                # Sending back an unchanged value (a record read, edited elsewhere, PATCHed whole) is fine;
                # files are the same by their ids (a form sends only those; names and sizes are the store's).
                if not same:
                    prepared.error(name, refusal)
                continue
            if same and value != stored_value:
                continue  # the same by the type's measure (files by id): kept as stored, with names and sizes
            if not same:
                prepared.changed.add(name)
            base[name] = value
        if before_save is not None:
            before_save(prepared)
        evaluator = Evaluator(_Names(base, system), self.clock)
        fixed = _unconditional_conditions(entity, user.department)
        formula_errors = self._formulas(prepared, evaluator, stored)
        self._conditions(prepared, evaluator, user, fixed)
        # Emptying a hidden field may hide or change others: repeat until nothing more is emptied (each
        # round empties at least one field, so this ends).
        while self._empty_hidden(prepared, stored):
            formula_errors = self._formulas(prepared, evaluator, stored)
            self._conditions(prepared, evaluator, user, fixed)
        for name, message in formula_errors.items():
            prepared.error(name, message)
        self._constraints(prepared)
        if entity.validations:
            self._validations(prepared, evaluator, viewable, creating=stored is None, flagged=flagged)
        if prepared.errors:
            prepared.hide_unseen(entity.fields.keys() - viewable)
        if prepared.errors:
            self._blank_formulas_over_errors(prepared)  # after hiding: only what the user is told counts
        for name in prepared.unknown:
            prepared.errors[name] = [UNKNOWN_FIELD]
        return prepared

    @staticmethod
    def _refusal(field: FieldDef, editable: frozenset[str], locked: set[str]) -> str | None:
        """Why this user may not change this field now, or None."""
        if field.is_formula:
            return COMPUTED
        if field.name not in editable:
            return FORBIDDEN
        if field.read_only or field.name in locked:
            return READ_ONLY
        return None

    def _locked(self, stored: Mapping[str, Any], system: Mapping[str, Any]) -> set[str]:
        # read_only_if looks at the record as stored: a locked field stays locked for this save.
        conditional = self.plan.locked_if
        evaluator = Evaluator(_Names(stored, system), self.clock)
        return {f.name for f in conditional if f.read_only_if is not None and evaluator.condition(f.read_only_if)}

    def _formulas(self, prepared: Prepared, evaluator: Evaluator, stored: Mapping[str, Any] | None
                  ) -> dict[str, str]:
        """Compute every formula in dependency order; returns the message of each that cannot be computed."""
        errors: dict[str, str] = {}
        values, changed, before = prepared.values, prepared.changed, (stored or {}).get
        for name, field, expr, from_formula in self.plan.formulas:
            # A result normalised to the declared result type, within what storage can hold.
            try:
                value = evaluator.value(expr)
                if value is not None:
                    value = from_formula(value, field)
            except (EvaluationError, FieldValueError) as exc:  # from_formula raises only the latter, value the former
                errors[name] = Message("formula.failed", "Cannot be computed: {reason}.", reason=message_of(exc))
                value = None
            if value != before(name):
                changed.add(name)
            else:
                changed.discard(name)
            values[name] = value
        return errors

    def _blank_formulas_over_errors(self, prepared: Prepared) -> None:
        """A formula reading a value that failed its checks shows nothing rather than a result built on it.

        Only a refused save or a form being typed has errors; a saved record never holds such a result.
        """
        doubtful = {name for name in prepared.errors if name in self.entity.fields}
        if not doubtful:
            return
        for name in self.entity.formula_order:
            expr = self.entity.fields[name].expr
            if expr is not None and expr.names & doubtful:
                prepared.values[name] = None
                doubtful.add(name)

    def _empty_hidden(self, prepared: Prepared, stored: Mapping[str, Any] | None) -> bool:
        """Empty the fields whose own visible_if is false; True when any value went.

        A hidden value would live on unseen (a won deal keeping its lost reason). Tab and group
        conditions hide without emptying: layouts differ per department, and a save must not
        depend on who makes it. Formulas are computed anyway; consent is never dropped.
        """
        emptied = False
        for field in self.plan.conditionally_emptied:
            name = field.name
            if name not in prepared.condition_hidden:
                continue
            if name not in prepared.refused:  # a value sent for a hidden field no longer matters; a refusal does
                prepared.errors.pop(name, None)
            if not is_empty(prepared.values.get(name)):
                prepared.values[name] = None
                if not is_empty((stored or {}).get(name)):
                    prepared.changed.add(name)
                else:
                    prepared.changed.discard(name)
                emptied = True
        return emptied

    def _sections(self, prepared: Prepared, evaluator: Evaluator, user: Principal) -> Mapping[str, bool]:
        """Visibility of the tabs and groups of the user's layout; returns each placed field's section's."""
        placed: dict[str, bool] = {}
        for t, tab in enumerate(self.entity.layout_for(user.department).tabs):
            tab_shown = tab.visible_if is None or evaluator.condition(tab.visible_if)
            prepared.sections[f"t{t}"] = tab_shown
            for g, group in enumerate(tab.groups):
                shown = tab_shown and (group.visible_if is None or evaluator.condition(group.visible_if))
                prepared.sections[f"t{t}g{g}"] = shown
                placed.update(dict.fromkeys(group.fields, shown))
        return placed

    def _conditions(self, prepared: Prepared, evaluator: Evaluator, user: Principal, fixed: _Unconditional | None
                    ) -> None:
        """Visibility, requiredness and read-only state of every field (and section) for this save's values.

        `fixed` is _unconditional_conditions of the user's department, looked up once per save."""
        hidden, visible, required, read_only = (prepared.condition_hidden, prepared.visible, prepared.required,
                                                prepared.read_only)
        hidden.clear()
        condition = evaluator.condition
        if fixed is None:
            # A field in a hidden tab or group is hidden too, so it is not required either.
            section_shown = self._sections(prepared, evaluator, user)
            conditions = self.plan.conditions
        else:  # sections without conditions: fields without any are the same for every save
            sections, section_shown, fixed_visible, fixed_required, fixed_read_only, conditions = fixed
            prepared.sections.update(sections)
            visible.update(fixed_visible)  # every field, in order; those with conditions are set below
            required.update(fixed_required)
            read_only.update(fixed_read_only)
        for name, visible_if, always_required, required_if, always_read_only, read_only_if, as_shown in conditions:
            own = visible_if is None or condition(visible_if)
            if not own:
                hidden.add(name)
            shown = visible[name] = section_shown.get(name, True) and own
            # A required_if that is the visible_if holds where the field is shown (shown implies own).
            required[name] = shown and (always_required or as_shown or (required_if is not None
                                                                         and condition(required_if)))
            read_only[name] = always_read_only or (read_only_if is not None and condition(read_only_if))

    def _constraints(self, prepared: Prepared) -> None:
        errors, values, required = prepared.errors, prepared.values, prepared.required
        for name, field, check, missing, multiple in self.plan.constraints:
            if name in errors:
                continue
            value: Any = values.get(name)  # a list when the field is multiple
            if missing is not None and required[name] and missing(value):
                prepared.error(name, field.type.required_message)
                continue
            if value is None or (isinstance(value, _SIZED) and not value):  # is_empty, inlined: every field
                continue
            if not multiple:
                if check is not None:
                    problems = check(value, field)
                    if problems:
                        errors.setdefault(name, []).extend(problems)  # prepared.error of each
                continue
            value_type = field.value_type
            for item in value:
                for message in value_type.check(item, field):
                    prepared.error(name, message)
            for message in item_count_checks(value, field):
                prepared.error(name, message)

    def _validations(self, prepared: Prepared, evaluator: Evaluator, viewable: frozenset[str], *, creating: bool,
                     flagged: frozenset[str]) -> None:
        for validation in self.entity.validations:
            inputs = validation.expr.names & self.entity.fields.keys()
            # On an update, a rule is checked when a field it reads changes: a deal whose close date
            # passed yesterday must stay editable until someone touches that date.
            if not creating and not (validation.expr.names & prepared.changed) and validation.key not in flagged:
                continue
            target = validation.field
            if target is None:
                target = next(iter(inputs)) if len(inputs) == 1 else RECORD_ERRORS
            try:
                ok = evaluator.value(validation.expr)
                problem = None if ok is None or ok else Message("validation.failed", "{label}",
                                                                label=validation.message)
            except EvaluationError as exc:
                problem = Message("validation.error", "Validation '{expr}' failed: {reason}.",
                                  expr=validation.expr.source, reason=message_of(exc))
            if problem is None:
                continue
            if not inputs <= viewable or (target != RECORD_ERRORS and target not in viewable):
                # Whether a check over fields the user cannot see holds would tell them about those
                # fields (a refusal is an oracle too): it does not stop this save, it flags the record.
                prepared.unseen.append({"check": validation.key, "field": target})
                continue
            prepared.error(target, problem)


_Condition = tuple[str, Any, bool, Any, bool, Any, bool]


def _same_condition(first: CompiledExpression | None, second: CompiledExpression | None) -> bool:
    """True when both are one condition: compiled from the same source, calling no function (today() may move)."""
    return first is not None and second is not None and first == second and not first.functions \
        and first.program is not None and second.program is not None


@dataclass(frozen=True)
class _Plan:
    """What every save of one entity looks up in its metadata, gathered once (see `_plan`)."""

    defaults: dict[str, Any]  # copied per new record (never handed out itself)
    list_defaults: tuple[str, ...]  # fields whose default is a list: each record gets a copy
    # (name, visible_if, required, required_if, read_only or formula, read_only_if, required_if is the visible_if)
    # of every field, in order.
    conditions: tuple[_Condition, ...]
    # (name, field, its value type's checker (None: nothing to check), its type's missing (None: never required),
    # multiple) of the fields, in order, that may have something to check: the others never have a message.
    constraints: tuple[tuple[str, FieldDef, Callable[[Any, FieldDef], list[str]] | None,
                             Callable[[Any], bool] | None, bool], ...]
    # (name, field, expr, its result type's from_formula) in formula_order.
    formulas: tuple[tuple[str, FieldDef, CompiledExpression, Callable[[Any, FieldDef], Any]], ...]
    conditionally_emptied: tuple[FieldDef, ...]
    locked_if: tuple[FieldDef, ...]  # fields with a read_only_if
    settles: frozenset[str]  # fields whose type settles a value against the stored one (consent)
    compares: frozenset[str]  # fields whose type has its own measure of "the same" (files, by id)
    # name -> the type's parser of each field that holds one value (parse_value of a value as sent is just that).
    parsers: dict[str, Callable[[Any, FieldDef, ParseContext], Any]]


def _constraint(name: str, field: FieldDef) -> tuple[str, FieldDef, Callable[[Any, FieldDef], list[str]] | None,
                                                      Callable[[Any], bool] | None, bool] | None:
    """The field's entry in _Plan.constraints; None when no value of it can get a message there."""
    check = field.value_type.checker(field)
    may_be_required = field.required or field.required_if is not None
    if check is None and not may_be_required and not field.multiple:
        return None
    return name, field, check, field.type.missing if may_be_required else None, field.multiple


@lru_cache(maxsize=1024)
def _plan(entity: EntityDef) -> _Plan:
    """The entity's per-save lookups, built once: a save reads them instead of asking each field again."""
    fields = entity.fields.items()
    return _Plan(
        defaults={name: f.default for name, f in fields},
        list_defaults=tuple(name for name, f in fields if isinstance(f.default, list)),
        conditions=tuple((name, f.visible_if, f.required, f.required_if, f.read_only or f.is_formula, f.read_only_if,
                          _same_condition(f.required_if, f.visible_if)) for name, f in fields),
        constraints=tuple(entry for name, f in fields if (entry := _constraint(name, f)) is not None),
        formulas=tuple((name, f, _expr(f), f.value_type.from_formula)
                       for name, f in ((name, entity.fields[name]) for name in entity.formula_order)),
        conditionally_emptied=entity.conditionally_emptied,
        locked_if=tuple(f for f in entity.fields.values() if f.read_only_if is not None),
        settles=frozenset(name for name, f in fields if type(f.type).settle is not FieldType.settle),
        compares=frozenset(name for name, f in fields if type(f.type).same is not FieldType.same),
        parsers={name: f.type.parser(f) for name, f in fields if not f.multiple},
    )


def _expr(field: FieldDef) -> CompiledExpression:
    """A formula's expression (formula_order holds formulas only)."""
    if field.expr is None:
        raise ValueError(f"{field.name} is not a formula")
    return field.expr


# (field, its parse of a value as sent (None: parse_value), why the user may never change it (None: they may, or
# writes go unchecked), its type settles a value, its type has its own measure of "the same").
_Input = tuple[FieldDef, Callable[[Any, FieldDef, ParseContext], Any] | None, str | None, bool, bool]


@lru_cache(maxsize=1024)
def _inputs(entity: EntityDef, viewable: frozenset[str], editable: frozenset[str] | None) -> dict[str, _Input]:
    """What a save does with each field a user who may view `viewable` and edit `editable` (None: writes unchecked)
    may send; a name not here is unknown to them."""
    plan = _plan(entity)
    refusals = _refusals(entity, editable) if editable is not None else {}
    inputs: dict[str, _Input] = {}
    for name, field in entity.fields.items():
        if name in viewable:
            refusal = refusals.get(name)
            inputs[name] = (field, plan.parsers.get(name) if refusal is None else None, refusal,
                            name in plan.settles, name in plan.compares)
    return inputs


@lru_cache(maxsize=1024)
def _refusals(entity: EntityDef, editable: frozenset[str]) -> dict[str, str]:
    """name -> why a user who may edit `editable` may never change the field (Pipeline._refusal without locks), for
    the fields with such a reason."""
    refusals = {}
    for name, field in entity.fields.items():
        refusal = Pipeline._refusal(field, editable, set())
        if refusal is not None:
            refusals[name] = refusal
    return refusals


# (sections, each placed field's section's, visible, required, read_only, conditions): see _unconditional_conditions.
_Unconditional = tuple[dict[str, bool], dict[str, bool], dict[str, bool], dict[str, bool], dict[str, bool],
                       tuple[_Condition, ...]]


@lru_cache(maxsize=1024)
def _unconditional_conditions(entity: EntityDef, department: str | None) -> _Unconditional | None:
    """For a department whose layout has no section conditions: its sections and each placed field's section's (see
    _unconditional_sections), (visible, required, read_only) of every field as a field without conditions of its own
    has them in every save (callers copy them), and the plan's conditions of the fields that have some; None when a
    tab or group has a visible_if."""
    sections = _unconditional_sections(entity, department)
    if sections is None:
        return None
    section_shown = sections[1]
    visible: dict[str, bool] = {}
    required: dict[str, bool] = {}
    read_only: dict[str, bool] = {}
    conditional = []
    for entry in _plan(entity).conditions:
        name, visible_if, always_required, required_if, always_read_only, read_only_if, _ = entry
        shown = visible[name] = section_shown.get(name, True)
        required[name] = shown and always_required
        read_only[name] = always_read_only
        if visible_if is not None or required_if is not None or read_only_if is not None:
            conditional.append(entry)
    return sections[0], section_shown, visible, required, read_only, tuple(conditional)


@lru_cache(maxsize=1024)
def _unconditional_sections(entity: EntityDef, department: str | None
                            ) -> tuple[dict[str, bool], dict[str, bool]] | None:
    """(sections, each placed field's section's) of the department's layout when none of its tabs and groups has
    a visible_if, else None. Callers copy the first and only read the second.
    """
    layout = entity.layout_for(department)
    if any(tab.visible_if is not None or any(g.visible_if is not None for g in tab.groups) for tab in layout.tabs):
        return None
    sections: dict[str, bool] = {}
    placed: dict[str, bool] = {}
    for t, tab in enumerate(layout.tabs):
        sections[f"t{t}"] = True
        for g, group in enumerate(tab.groups):
            sections[f"t{t}g{g}"] = True
            placed.update(dict.fromkeys(group.fields, True))
    return sections, placed


class _Names(dict[str, Any]):
    """Field values with the system values (id, owner, created_at...) visible to expressions."""

    __slots__ = ("_fields",)  # no instance dict: one fewer object per save, and a quicker self._fields

    def __init__(self, values: Mapping[str, Any], system: Mapping[str, Any]) -> None:
        super().__init__(system)
        self._fields = values  # not `values`: that would hide dict.values()

    def __getitem__(self, name: str) -> Any:
        if name in self._fields:
            return self._fields[name]
        return super().__getitem__(name)

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default
