"""The registry of rule actions: the parameters each takes and what in them names a field.

The engine that runs actions comes with the automation issue; the metadata contract is checked now.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema

_TEMPLATE = {"type": "string", "minLength": 1, "maxLength": 5000}
_IDENT = {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,62}$"}


@dataclass(frozen=True)
class ActionSpec:
    """A rule action: its JSON Schema and which parameters are field names, templates or expressions."""

    name: str
    doc: str
    schema: Mapping[str, Any]
    field_params: tuple[str, ...] = ()
    template_params: tuple[str, ...] = ()
    expression_params: tuple[str, ...] = ()
    validator: Any = field(default=None, compare=False, repr=False)


def _spec(name: str, doc: str, properties: dict[str, Any], required: Iterable[str], **kw: Any) -> ActionSpec:
    schema = {"type": "object", "additionalProperties": False, "required": list(required),
              "properties": properties}
    return ActionSpec(name, doc, schema, validator=jsonschema.Draft202012Validator(schema), **kw)


ACTIONS: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        _spec("set", "Set a field to a value or to the result of an expression.",
              {"field": _IDENT, "value": {}, "expr": {"type": "string", "minLength": 1}},
              ["field"], field_params=("field",), expression_params=("expr",)),
        _spec("create_task", "Create a task linked to the record.",
              {"title": _TEMPLATE, "description": _TEMPLATE,
               "assignee": {"type": ["string", "integer"]}, "due_in_days": {"type": "integer", "minimum": 0},
               "due_in_hours": {"type": "integer", "minimum": 0}},
              ["title"], template_params=("title", "description")),
        _spec("notify", "Notify users in the application.",
              {"role": _IDENT, "user": {"type": ["string", "integer"]}, "message": _TEMPLATE},
              ["message"], template_params=("message",)),
        _spec("email", "Send an e-mail through the outbox.",
              {"to": _TEMPLATE, "subject": _TEMPLATE, "body": _TEMPLATE, "template": _IDENT},
              ["to", "subject"], template_params=("to", "subject", "body")),
        _spec("webhook", "POST the record to a URL through the outbox, signed.",
              {"url": {"type": "string", "pattern": "^https?://"}, "event": _IDENT,
               "secret_env": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"}},
              ["url"]),
    )
}


def template_names(template: str) -> list[str]:
    """Field names used by a '{name}: {total}' template; ValueError on a malformed one."""
    names = []
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None:
            if not name.isidentifier():
                raise ValueError(f"'{{{name}}}' in '{template}' is not a field name")
            names.append(name)
    return names


def check_action(
    raw: Mapping[str, Any],
    known_fields: Iterable[str],
    compile_expr: Callable[[str], object],
    suggest: Callable[[str, Iterable[str]], str],
) -> list[tuple[tuple[str | int, ...], str]]:
    """Problems of one `{action: params}` item, as (relative path, message) pairs."""
    (name, params), = raw.items()
    spec = ACTIONS.get(name)
    if spec is None:
        return [((name,), f"unknown action '{name}'{suggest(name, ACTIONS)}; known: {', '.join(ACTIONS)}")]
    if not isinstance(params, Mapping):
        return [((name,), f"parameters of '{name}' must be a mapping")]
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for error in spec.validator.iter_errors(params):
        where = (name, *error.absolute_path)
        if error.validator == "additionalProperties":
            extra = sorted(set(params) - set(spec.schema["properties"]))
            for key in extra:
                problems.append(((name, key), f"unknown parameter '{key}' of '{name}'"
                                 f"{suggest(key, spec.schema['properties'])}"))
        else:
            problems.append((where, error.message))
    known = set(known_fields)
    for param in spec.field_params:
        value = params.get(param)
        if isinstance(value, str) and value not in known:
            problems.append(((name, param), f"unknown field '{value}'{suggest(value, known)}"))
    for param in spec.template_params:
        value = params.get(param)
        if isinstance(value, str):
            try:
                unknown = [n for n in template_names(value) if n not in known]
            except ValueError as exc:
                problems.append(((name, param), str(exc)))
                continue
            problems.extend(((name, param), f"unknown field '{n}' in template{suggest(n, known)}") for n in unknown)
    for param in spec.expression_params:
        value = params.get(param)
        if isinstance(value, str):
            try:
                compile_expr(value)
            except ValueError as exc:
                problems.append(((name, param), str(exc)))
    if name == "set" and ("value" in params) == ("expr" in params):
        problems.append(((name,), "'set' takes exactly one of 'value' or 'expr'"))
    return problems
