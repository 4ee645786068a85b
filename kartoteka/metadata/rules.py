"""Rules in metadata: triggers, the functions their conditions may call, and how `check-config` builds and checks them.

The engine that runs them is kartoteka/rules/ (docs/automation.md); nothing here runs a rule.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime, time, timedelta
from types import MappingProxyType
from typing import Any, Protocol

from cronsim import CronSim, CronSimError

from kartoteka.metadata.actions import ACTIONS, BEFORE, check_action
from kartoteka.metadata.expressions import (
    FUNCTIONS,
    CompiledExpression,
    ExpressionError,
    FunctionSpec,
    compile_expression,
    suggest,
)
from kartoteka.metadata.fieldtypes import FieldType, FieldValueError, ParseContext
from kartoteka.metadata.model import FieldDef, Label, RuleAction, RuleDef, Trigger, WorkWindow
from kartoteka.metadata.templates import LocalizedTemplate, TemplateProblem, compile_localized, compile_template

SAVE_EVENTS = ("created", "updated", "deleted", "restored", "changed")
ALONE = ("date", "schedule", "manual")  # trigger kinds that take no other event beside them
SOURCES = ("ui", "api", "import", "rule", "schedule", "manual", "merge", "restore")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Names a template may read besides the card's fields.
TEMPLATE_NAMES = ("id", "title", "url", "owner", "entity_label")
_KEY = re.compile(r"[^a-z0-9]+")


def _in_conditions_only(name: str) -> Callable[[Any], Callable[..., Any]]:
    def make(_: Any) -> Callable[..., Any]:
        raise ExpressionError(f"{name}() is available in rule conditions only")
    return make


# The functions a rule's condition may call besides the usual ones: the engine gives their values per change.
CHANGE_FUNCTIONS: dict[str, FunctionSpec] = {
    spec.name: spec for spec in (
        FunctionSpec("is_new", 0, 0, "true when the record is being created", _in_conditions_only("is_new")),
        FunctionSpec("is_changed", 1, 1, "is_changed('field'): true when this save changes the field",
                     _in_conditions_only("is_changed")),
        FunctionSpec("prior", 1, 1, "prior('field'): the field's value before this save (None for a new record)",
                     _in_conditions_only("prior")),
        FunctionSpec("changed_from", 2, 2, "changed_from('field', value): the field changed and was value",
                     _in_conditions_only("changed_from")),
        FunctionSpec("changed_to", 2, 2, "changed_to('field', value): the field changed and is now value",
                     _in_conditions_only("changed_to")),
        FunctionSpec("has_role", 1, 1, "has_role('role'): the user who made the change has the role",
                     _in_conditions_only("has_role")),
        FunctionSpec("source", 0, 0, "where the change came from: " + ", ".join(SOURCES),
                     _in_conditions_only("source")),
    )
}
RULE_FUNCTIONS: Mapping[str, FunctionSpec] = MappingProxyType({**FUNCTIONS, **CHANGE_FUNCTIONS})
_FIELD_ARGUMENT = ("is_changed", "prior", "changed_from", "changed_to")


class RuleBuilder(Protocol):
    """What building rules needs of the entity's builder (kartoteka/metadata/builder.py)."""

    known_names: list[str]
    roles: Collection[str] | None
    ctx: ParseContext

    def report(self, path: tuple[str | int, ...], message: str) -> None: ...

    def option_values(self, name: str) -> list[str] | None: ...


def rule_key(name: str) -> str:
    """The key a rule gets from its name when it names none: 'Deal won' -> 'deal_won'."""
    key = _KEY.sub("_", name.lower()).strip("_")
    if not key or not key[0].isalpha():
        key = "rule_" + key
    return key[:63].rstrip("_")


def build_rules(builder: RuleBuilder, raw: Iterable[Mapping[str, Any]], fields: Mapping[str, FieldDef],
                entity_fields: Mapping[str, Collection[str]]) -> tuple[RuleDef, ...]:
    """The rules of one card, every problem reported to `builder` with its path."""
    rules: list[RuleDef] = []
    names: set[str] = set()
    keys: dict[str, int] = {}
    specs = list(raw)
    for i, spec in enumerate(specs):
        path: tuple[str | int, ...] = ("rules", i)
        if spec["name"] in names:
            builder.report((*path, "name"), f"rule name '{spec['name']}' is used twice")
        names.add(spec["name"])
        key = spec.get("key") or rule_key(spec["name"])
        if key in keys:
            builder.report((*path, "key" if "key" in spec else "name"),
                           f"rule key '{key}' is used by rules[{keys[key]}] too; give one of them another 'key'")
        keys.setdefault(key, i)
        rule = _build_rule(builder, path, spec, key, fields, entity_fields)
        if rule is not None:
            rules.append(rule)
    all_keys = set(keys)
    for i, spec in enumerate(specs):
        for j, item in enumerate(spec["actions"]):
            target = item.get("run_rule", {}).get("rule") if isinstance(item.get("run_rule"), Mapping) else None
            if isinstance(target, str) and target not in all_keys:
                builder.report(("rules", i, "actions", j, "run_rule", "rule"),
                               f"unknown rule '{target}'{suggest(target, all_keys)}")
    return tuple(sorted(rules, key=lambda r: -r.priority))  # sorted() is stable: file order within a priority


def _build_rule(builder: RuleBuilder, path: tuple[str | int, ...], spec: Mapping[str, Any], key: str,
                fields: Mapping[str, FieldDef], entity_fields: Mapping[str, Collection[str]]) -> RuleDef | None:
    trigger = _trigger(builder, (*path, "trigger"), spec["trigger"], fields)
    condition = _condition(builder, (*path, "condition"), spec.get("condition"), fields)
    actions: list[RuleAction] = []
    template_known = [*builder.known_names, *TEMPLATE_NAMES]
    for j, item in enumerate(spec["actions"]):
        where = (*path, "actions", j)

        def check_template(text: str) -> list[str]:
            try:
                compile_template(text, template_known, suggest)
            except TemplateProblem as exc:
                return [str(exc)]
            return []

        problems = check_action(item, builder.known_names,
                                lambda text: compile_expression(text, builder.known_names), suggest, check_template)
        for rel, message in problems:
            builder.report((*where, *rel), message)
        (name, params), = item.items()
        if problems or not isinstance(params, Mapping):
            continue
        problems_before = _check_params(builder, where, name, params, fields, entity_fields)
        if problems_before:
            continue
        action_spec = ACTIONS[name]
        templates: dict[str, LocalizedTemplate] = {
            param: compile_localized(params[param], template_known, suggest)
            for param in action_spec.template_params if isinstance(params.get(param), str | Mapping)}
        if name == "create_record":
            templates.update({f"values.{field_name}": compile_localized(value, template_known, suggest)
                              for field_name, value in (params.get("values") or {}).items() if isinstance(value, str)})
        expression = params.get("expr") if name == "set" else params.get("busy_if") if name == "assign" else None
        expr = compile_expression(expression, builder.known_names) if expression else None
        actions.append(RuleAction(name, MappingProxyType(dict(params)), action_spec.stage,
                                  MappingProxyType(templates), expr))
    stage = _stage(builder, path, spec, trigger, actions)
    if trigger is None or len(actions) != len(spec["actions"]):
        return None
    return RuleDef(key, spec["name"], trigger, condition, tuple(actions), stage, int(spec.get("priority", 0)),
                   bool(spec.get("enabled", True)), spec.get("description", ""))


def _stage(builder: RuleBuilder, path: tuple[str | int, ...], spec: Mapping[str, Any], trigger: Trigger | None,
           actions: list[RuleAction]) -> str:
    """`before` when an action changes or refuses the record being saved (set, block, tags, assign), else `after`;
    `stage: after` with such an action, or such an action on a 'deleted' trigger, is a problem. Manual, date and
    scheduled rules run after: what they change is saved through the record service as a change of its own."""
    changes_record = [a.name for a in actions if a.stage == BEFORE]
    declared = spec.get("stage")
    if changes_record and declared == "after":
        builder.report((*path, "stage"), f"'{changes_record[0]}' changes the record being saved, which happens "
                       "before the write: this rule's stage is 'before' (or move the action to another rule)")
    if changes_record and trigger is not None and "deleted" in trigger.events:
        builder.report((*path, "actions"), f"'{changes_record[0]}' changes the record being saved, but a 'deleted' "
                       "trigger saves nothing; use create_task, notify or the like, or another trigger")
    if declared == "before" and trigger is not None and trigger.kind != "save":
        builder.report((*path, "stage"), f"a '{trigger.kind}' trigger has no save to run before: its changes to the "
                       "record are saved as a change of their own")
    if trigger is not None and trigger.kind != "save":
        return "after"  # manual, date and scheduled rules save what they change through the record service
    return "before" if changes_record or declared == "before" else "after"


def _trigger(builder: RuleBuilder, path: tuple[str | int, ...], raw: Mapping[str, Any],
             fields: Mapping[str, FieldDef]) -> Trigger | None:
    on = raw["on"]
    events = [on] if isinstance(on, str) else list(on)
    alone = [e for e in events if e in ALONE]
    if alone and len(events) > 1:
        builder.report((*path, "on"), f"'{alone[0]}' cannot be combined with other events; write another rule")
        return None
    kind = alone[0] if alone else "save"
    allowed = {"save": {"on", "fields", "field", "from", "to"}, "date": {"on", "field", "before", "after", "window"},
               "schedule": {"on", "cron"}, "manual": {"on", "roles", "label", "confirm"}}[kind]
    for key in sorted(set(raw) - allowed):
        builder.report((*path, key), f"'{key}' does not apply to a '{kind if kind != 'save' else events[0]}' "
                       f"trigger{suggest(key, allowed)}")
    if kind == "save":
        return _save_trigger(builder, path, raw, events, fields)
    if kind == "date":
        return _date_trigger(builder, path, raw, fields)
    if kind == "schedule":
        cron = raw.get("cron")
        if not isinstance(cron, str):
            builder.report(path, "a 'schedule' trigger needs 'cron' (minute hour day month weekday, e.g. '0 3 * * *')")
            return None
        try:
            next(CronSim(cron, datetime(2026, 1, 1)))
        except (CronSimError, StopIteration, ValueError) as exc:
            builder.report((*path, "cron"), f"'{cron}' is not a cron expression: {exc or 'no time matches it'}")
            return None
        return Trigger("schedule", cron=cron)
    roles = raw.get("roles") or []
    unknown = [(i, role) for i, role in enumerate(roles) if builder.roles is not None and role not in builder.roles]
    for i, role in unknown:
        builder.report((*path, "roles", i), f"unknown role '{role}'{suggest(role, builder.roles or ())}")
    if unknown:
        return None
    return Trigger("manual", roles=frozenset(roles), label=Label.of(raw["label"]) if raw.get("label") else None,
                   confirm=Label.of(raw["confirm"]) if raw.get("confirm") else None)


def _save_trigger(builder: RuleBuilder, path: tuple[str | int, ...], raw: Mapping[str, Any], events: list[str],
                  fields: Mapping[str, FieldDef]) -> Trigger | None:
    ok = True
    trigger_fields = raw.get("fields") or []
    for j, name in enumerate(trigger_fields):
        if name not in fields:
            builder.report((*path, "fields", j), f"unknown field '{name}'{suggest(name, fields)}")
            ok = False
    if trigger_fields and "updated" not in events:
        builder.report((*path, "fields"), "'fields' narrows 'updated' (only when one of them changed); this trigger "
                       "has no 'updated'")
        ok = False
    field_name = raw.get("field")
    if "changed" in events:
        if not isinstance(field_name, str) or field_name not in fields:
            hint = suggest(field_name, fields) if isinstance(field_name, str) else ""
            builder.report((*path, "field"), "a 'changed' trigger needs 'field', the field whose change fires it"
                           if field_name is None else f"unknown field '{field_name}'{hint}")
            return None
    elif field_name is not None or "from" in raw or "to" in raw:
        builder.report((*path, "field" if field_name is not None else "from" if "from" in raw else "to"),
                       "'field', 'from' and 'to' belong to a 'changed' trigger")
        return None
    values: dict[str, tuple[Any, ...] | None] = {"from": None, "to": None}
    for side in ("from", "to"):
        if side in raw and field_name is not None:
            given = raw[side] if isinstance(raw[side], list) else [raw[side]]
            options = builder.option_values(field_name)
            for item in given:
                if options is not None and item is not None and item not in options:
                    builder.report((*path, side), f"'{item}' is not an option of '{field_name}'"
                                   f"{suggest(str(item), options) or '; its options: ' + ', '.join(options)}")
                    ok = False
            values[side] = tuple(given)
    if not ok:
        return None
    return Trigger("save", frozenset(events), tuple(trigger_fields), field_name, values["from"], values["to"])


def _date_trigger(builder: RuleBuilder, path: tuple[str | int, ...], raw: Mapping[str, Any],
                  fields: Mapping[str, FieldDef]) -> Trigger | None:
    field_name = raw.get("field")
    field = fields.get(field_name) if isinstance(field_name, str) else None
    if field is None:
        hint = suggest(field_name, fields) if isinstance(field_name, str) else ""
        builder.report((*path, "field"), "a 'date' trigger needs 'field', a date or date-time field"
                       if field_name is None else f"unknown field '{field_name}'{hint}")
        return None
    if not _is_moment(field.value_type) or field.multiple:
        builder.report((*path, "field"), f"'{field_name}' is a {field.type.name} field; a 'date' trigger needs a "
                       "date or date-time field")
        return None
    if ("before" in raw) == ("after" in raw):
        builder.report(path, "a 'date' trigger takes one of 'before' or 'after' (e.g. before: {days: 30})")
        return None
    side = "before" if "before" in raw else "after"
    offset = _offset(builder, (*path, side), raw[side])
    if offset is None:
        return None
    window = _window(builder, (*path, "window"), raw["window"]) if "window" in raw else None
    if "window" in raw and window is None:
        return None
    return Trigger("date", field=field_name, offset=-offset if side == "before" else offset, window=window)


def _is_moment(value_type: FieldType) -> bool:
    return value_type.marks_moment


def _offset(builder: RuleBuilder, path: tuple[str | int, ...], raw: Any) -> timedelta | None:
    units = {"days", "hours", "minutes"}
    if not isinstance(raw, Mapping) or not raw or set(raw) - units or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 36_500 for v in raw.values()):
        builder.report(path, "write the offset as days, hours and minutes, whole numbers from 0 (e.g. {days: 30})")
        return None
    return timedelta(days=raw.get("days", 0), hours=raw.get("hours", 0), minutes=raw.get("minutes", 0))


def _window(builder: RuleBuilder, path: tuple[str | int, ...], raw: Any) -> WorkWindow | None:
    if not isinstance(raw, Mapping) or set(raw) - {"days", "from", "to"}:
        builder.report(path, "a window is {days: [mon, tue, wed, thu, fri], from: '09:00', to: '18:00'}")
        return None
    days = raw.get("days", list(WEEKDAYS[:5]))
    unknown = [d for d in days if d not in WEEKDAYS] if isinstance(days, list) else [days]
    if unknown or not days:
        builder.report((*path, "days"), f"days are some of {', '.join(WEEKDAYS)}")
        return None
    try:
        start = time.fromisoformat(str(raw.get("from", "09:00")))
        end = time.fromisoformat(str(raw.get("to", "18:00")))
    except ValueError:
        builder.report(path, "'from' and 'to' are times such as '09:00' and '18:00'")
        return None
    if start >= end:
        builder.report(path, f"the window ends ({end:%H:%M}) before it starts ({start:%H:%M})")
        return None
    return WorkWindow(frozenset(WEEKDAYS.index(d) for d in days), start, end)


def _condition(builder: RuleBuilder, path: tuple[str | int, ...], text: str | None,
               fields: Mapping[str, FieldDef]) -> CompiledExpression | None:
    if text is None:
        return None
    try:
        compiled = compile_expression(text, builder.known_names, RULE_FUNCTIONS)
    except ExpressionError as exc:
        builder.report(path, str(exc))
        return None
    for node in ast.walk(compiled.tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        name = node.func.id
        first = node.args[0] if node.args else None
        literal = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
        if name in _FIELD_ARGUMENT:
            if literal is None:
                builder.report(path, f"{name}() takes a field's name in quotes, e.g. {name}('stage')")
            elif literal not in fields:
                builder.report(path, f"unknown field '{literal}' in {name}(){suggest(literal, fields)}")
            elif name in ("changed_from", "changed_to") and len(node.args) > 1:
                second = node.args[1]
                options = builder.option_values(literal)
                if (options is not None and isinstance(second, ast.Constant) and isinstance(second.value, str)
                        and second.value not in options):
                    builder.report(path, f"'{second.value}' is not an option of '{literal}'"
                                   f"{suggest(second.value, options) or '; its options: ' + ', '.join(options)}")
        elif name == "has_role":
            if literal is None:
                builder.report(path, "has_role() takes a role's name in quotes, e.g. has_role('sales_manager')")
            elif builder.roles is not None and literal not in builder.roles:
                builder.report(path, f"unknown role '{literal}' in has_role(){suggest(literal, builder.roles)}")
    for node in ast.walk(compiled.tree):  # source() == 'imprt' would never hold
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(isinstance(o, ast.Call) and isinstance(o.func, ast.Name) and o.func.id == "source"
                   for o in operands):
                for operand in operands:
                    items = operand.elts if isinstance(operand, ast.List | ast.Tuple) else [operand]
                    for item in items:
                        if isinstance(item, ast.Constant) and isinstance(item.value, str) and item.value not in SOURCES:
                            builder.report(path, f"'{item.value}' is not a source of changes"
                                           f"{suggest(item.value, SOURCES) or '; the sources: ' + ', '.join(SOURCES)}")
    return compiled


def _unreadable(field: FieldDef, value: Any, ctx: ParseContext) -> str:
    """Why `value` (a metadata literal) is not a value of `field`, or '' when it is."""
    if value is None:
        return ""
    try:
        if field.multiple:
            items = value if isinstance(value, list) else [value]
            for item in items:
                field.type.parse(item, field, ctx)
        else:
            field.type.parse(value, field, ctx)
    except FieldValueError as exc:
        return " ".join(str(m) for m in exc.messages)
    return ""


def _check_params(builder: RuleBuilder, where: tuple[str | int, ...], name: str, params: Mapping[str, Any],
                  fields: Mapping[str, FieldDef], entity_fields: Mapping[str, Collection[str]]) -> bool:
    """Checks that need the card's fields or other cards; True when a problem was reported."""
    found = False

    def report(rel: tuple[str | int, ...], message: str) -> None:
        nonlocal found
        found = True
        builder.report((*where, name, *rel), message)

    field = fields.get(params.get("field", "")) if isinstance(params.get("field"), str) else None
    if name == "set" and field is not None and (field.is_formula or field.read_only):
        report(("field",), f"'{field.name}' is {'a formula' if field.is_formula else 'read-only'}: rules cannot set it")
    elif name == "set" and field is not None and "value" in params:
        problem = _unreadable(field, params["value"], builder.ctx)
        if problem:
            report(("value",), f"{params['value']!r} is not a value of '{field.name}': {problem}")
    if name in ("add_tags", "remove_tags") and field is not None and field.is_list:
        for position, tag in enumerate(params.get("tags") or []):
            problem = _unreadable(field, [tag], builder.ctx)
            if problem:
                report(("tags", position), f"{tag!r} is not a value of '{field.name}': {problem}")
    if name in ("add_tags", "remove_tags") and field is not None and not field.is_list:
        report(("field",), f"'{field.name}' holds one value; {name} needs a field of several (tags, multiselect)")
    assignee_field = fields.get(params.get("assignee_field", "")) if isinstance(params.get("assignee_field"), str) \
        else None
    if name == "create_task" and assignee_field is not None and not assignee_field.value_type.names_user:
        report(("assignee_field",), f"'{assignee_field.name}' is a {assignee_field.type.name} field; the task's "
               "assignee comes from a user field")
    if name == "create_task" and "assignee" in params and "assignee_field" in params:
        report(("assignee",), "give the task one of 'assignee' (a user) or 'assignee_field' (a user field)")
    consent = fields.get(params.get("consent", "")) if isinstance(params.get("consent"), str) else None
    if name == "email" and consent is not None and not consent.type.personal_decision:
        report(("consent",), f"'{consent.name}' is a {consent.type.name} field; 'consent' names a consent field, "
               "whose consent the e-mail needs")
    if name == "assign" and field is not None and not field.value_type.names_user:
        report(("field",), f"'{field.name}' is a {field.type.name} field; assign sets a user field (or the owner)")
    if name == "assign" and builder.roles is not None and isinstance(params.get("role"), str) \
            and params["role"] not in builder.roles:
        report(("role",), f"unknown role '{params['role']}'{suggest(params['role'], builder.roles)}")
    if name == "notify" and builder.roles is not None and isinstance(params.get("role"), str) \
            and params["role"] not in builder.roles:
        report(("role",), f"unknown role '{params['role']}'{suggest(params['role'], builder.roles)}")
    if name == "create_record":
        target = params["entity"]
        target_fields = entity_fields.get(target)
        if target_fields is None:
            report(("entity",), f"unknown card '{target}'{suggest(target, entity_fields)}")
        else:
            for value_name in params.get("values") or {}:
                if value_name not in target_fields:
                    report(("values", value_name), f"'{target}' has no field '{value_name}'"
                           f"{suggest(value_name, target_fields)}")
            link = params.get("link")
            if isinstance(link, str) and link not in target_fields:
                report(("link",), f"'{target}' has no field '{link}'{suggest(link, target_fields)}")
            for target_name, source_name in (params.get("copy") or {}).items():
                if target_name not in target_fields:
                    report(("copy", target_name), f"'{target}' has no field '{target_name}'"
                           f"{suggest(target_name, target_fields)}")
                if source_name not in fields:
                    report(("copy", target_name), f"unknown field '{source_name}'{suggest(source_name, fields)}")
            for position, match_name in enumerate(params.get("match") or []):
                if match_name not in target_fields:
                    report(("match", position), f"'{target}' has no field '{match_name}'"
                           f"{suggest(match_name, target_fields)}")
            back = params.get("link_back")
            back_field = fields.get(back) if isinstance(back, str) else None
            if isinstance(back, str) and (back_field is None or back_field.to != target or back_field.multiple):
                report(("link_back",), f"'{back}' must be a reference field of this card to '{target}'"
                       if back_field is not None else f"unknown field '{back}'{suggest(back, fields)}")
            given = {*(params.get("values") or {}), *(params.get("copy") or {}), params.get("link")}
            specs = target_fields if isinstance(target_fields, Mapping) else {}
            for required_name, spec in specs.items():
                if (isinstance(spec, Mapping) and spec.get("required") is True and "default" not in spec
                        and spec.get("type") != "formula" and required_name not in given):
                    report(("values",), f"'{target}' requires '{required_name}': give it in 'values' or 'copy', or "
                           "every run of this rule is refused")
            template_known = [*builder.known_names, *TEMPLATE_NAMES]
            for value_name, value in (params.get("values") or {}).items():
                if isinstance(value, str):
                    try:
                        compile_template(value, template_known, suggest)
                    except TemplateProblem as exc:
                        report(("values", value_name), str(exc))
    return found


__all__ = ["CHANGE_FUNCTIONS", "RULE_FUNCTIONS", "SAVE_EVENTS", "SOURCES", "TEMPLATE_NAMES", "build_rules",
           "rule_key"]
