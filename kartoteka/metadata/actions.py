"""The contract of rule actions: the parameters each takes, its stage, and what in them names a field.

The metadata checker (`check-config`) uses it; the engine in kartoteka/rules/ runs what it describes. Texts that
rules write (titles, messages, e-mails) are templates in a small, safe part of Jinja2 (kartoteka/metadata/templates.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema

# A text once for every language, or per language ({en: ..., ru: ...}) as labels are.
_TEMPLATE = {"type": ["string", "object"], "minLength": 1, "maxLength": 5000, "minProperties": 1,
             "propertyNames": {"pattern": "^[a-z]{2}(-[A-Z]{2})?$"},
             "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 5000}}
_IDENT = {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,62}$"}
_LABEL = {"type": ["string", "object"], "minLength": 1, "minProperties": 1,
          "propertyNames": {"pattern": "^[a-z]{2}(-[A-Z]{2})?$"}, "additionalProperties": {"type": "string"}}
_USERNAME = {"type": "string", "minLength": 1, "maxLength": 150}
_TAGS = {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"type": "string", "minLength": 1,
                                                                           "maxLength": 100}}

# Before the write: actions that change or refuse the record being saved. After it, in the same transaction:
# everything else (tasks, notifications, other records, the outbox).
BEFORE = "before"
AFTER = "after"


@dataclass(frozen=True)
class ActionSpec:
    """A rule action: its JSON Schema, its stage, and which parameters are field names, templates or expressions."""

    name: str
    doc: str
    schema: Mapping[str, Any]
    stage: str = AFTER
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
        _spec("set", "Set a field of the record being saved to a value or to the result of an expression.",
              {"field": _IDENT, "value": {}, "expr": {"type": "string", "minLength": 1}},
              ["field"], stage=BEFORE, field_params=("field",), expression_params=("expr",)),
        _spec("block", "Refuse the save with a message, on one field or on the whole record.",
              {"message": _LABEL, "field": _IDENT}, ["message"], stage=BEFORE, field_params=("field",)),
        _spec("add_tags", "Add tags to a tags field of the record being saved.",
              {"field": _IDENT, "tags": _TAGS}, ["field", "tags"], stage=BEFORE, field_params=("field",)),
        _spec("remove_tags", "Remove tags from a tags field of the record being saved.",
              {"field": _IDENT, "tags": _TAGS}, ["field", "tags"], stage=BEFORE, field_params=("field",)),
        _spec("assign", "Give the record (or a user field) to a user, in turn within a role or department, or to "
              "the least loaded of them.",
              {"field": _IDENT, "user": _USERNAME, "role": _IDENT, "department": _IDENT,
               "strategy": {"enum": ["round_robin", "least_loaded"]},
               "busy_if": {"type": "string", "minLength": 1, "maxLength": 2000}},
              [], stage=BEFORE, field_params=("field",), expression_params=("busy_if",)),
        _spec("create_task", "Create a task about the record.",
              {"title": _TEMPLATE, "description": _TEMPLATE, "assignee": _USERNAME, "assignee_field": _IDENT,
               "due_in_days": {"type": "integer", "minimum": 0, "maximum": 3650},
               "due_in_hours": {"type": "integer", "minimum": 0, "maximum": 87600},
               "due_in_working_days": {"type": "integer", "minimum": 0, "maximum": 2600}},
              ["title"], field_params=("assignee_field",), template_params=("title", "description")),
        _spec("create_record", "Create a record of any card, filled from this one and linked to it (or link the "
              "one that already matches).",
              {"entity": _IDENT, "values": {"type": "object", "propertyNames": {"pattern": "^[a-z][a-z0-9_]{0,62}$"}},
               "copy": {"type": "object", "propertyNames": {"pattern": "^[a-z][a-z0-9_]{0,62}$"},
                        "additionalProperties": _IDENT},
               "link": _IDENT, "link_back": _IDENT,
               "match": {"type": "array", "minItems": 1, "uniqueItems": True, "items": _IDENT}},
              ["entity"]),
        _spec("notify", "Notify users in the application: named users, a role, the record's owner.",
              {"users": {"type": "array", "minItems": 1, "items": _USERNAME}, "role": _IDENT,
               "owner": {"type": "boolean"}, "message": _TEMPLATE},
              ["message"], template_params=("message",)),
        _spec("email", "Send an e-mail through the outbox (only while the consent field `consent` names is given).",
              {"to": _TEMPLATE, "subject": _TEMPLATE, "body": _TEMPLATE, "consent": _IDENT},
              ["to", "subject", "body"], field_params=("consent",), template_params=("to", "subject", "body")),
        _spec("webhook", "POST the record to a URL through the outbox, signed (Standard Webhooks).",
              {"url": {"type": "string", "pattern": "^https?://", "maxLength": 2000}, "event": _IDENT,
               "secret_env": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"},
               "fields": {"type": "array", "minItems": 1, "uniqueItems": True, "items": _IDENT}},
              ["url"], field_params=()),
        _spec("run_rule", "Run another rule of this card on the record now (its condition is checked).",
              {"rule": _IDENT}, ["rule"]),
    )
}

Problems = list[tuple[tuple[str | int, ...], str]]


def check_action(
    raw: Mapping[str, Any],
    known_fields: Iterable[str],
    compile_expr: Callable[[str], object],
    suggest: Callable[[str, Iterable[str]], str],
    check_template: Callable[[str], list[str]],
) -> Problems:
    """Problems of one `{action: params}` item, as (relative path, message) pairs.

    `check_template` returns the problems of one template (unknown fields, what the safe subset refuses).
    """
    (name, params), = raw.items()
    spec = ACTIONS.get(name)
    if spec is None:
        return [((name,), f"unknown action '{name}'{suggest(name, ACTIONS)}; known: {', '.join(ACTIONS)}")]
    if not isinstance(params, Mapping):
        return [((name,), f"parameters of '{name}' must be a mapping")]
    problems: Problems = []
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
            problems.extend(((name, param), message) for message in check_template(value))
        elif isinstance(value, Mapping):
            for language, text in value.items():
                if isinstance(text, str):
                    problems.extend(((name, param, language), message) for message in check_template(text))
    for param in spec.expression_params:
        value = params.get(param)
        if isinstance(value, str):
            try:
                compile_expr(value)
            except ValueError as exc:
                problems.append(((name, param), str(exc)))
    if name == "set" and ("value" in params) == ("expr" in params):
        problems.append(((name,), "'set' takes exactly one of 'value' or 'expr'"))
    if name == "assign" and sum(1 for key in ("user", "role", "department") if key in params) != 1:
        problems.append(((name,), "'assign' takes exactly one of 'user', 'role' or 'department'"))
    if name == "assign" and "busy_if" in params and params.get("strategy") != "least_loaded":
        problems.append(((name, "busy_if"), "'busy_if' says which records count as load: it goes with "
                         "strategy: least_loaded"))
    if name == "assign" and "strategy" in params and "user" in params:
        problems.append(((name, "strategy"), "a strategy chooses among a role's or department's users, not one user"))
    if name == "notify" and not any(key in params for key in ("users", "role", "owner")):
        problems.append(((name,), "'notify' needs someone to notify: 'users', 'role' or 'owner: true'"))
    if name == "webhook":
        for position, field_name in enumerate(params.get("fields") or []):
            if isinstance(field_name, str) and field_name not in known:
                problems.append(((name, "fields", position), f"unknown field '{field_name}'"
                                 f"{suggest(field_name, known)}"))
    return problems
