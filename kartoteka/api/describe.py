"""The compiled schema of an entity as JSON, showing only what the user may see."""

from __future__ import annotations

from typing import Any

from kartoteka.metadata.expressions import CompiledExpression
from kartoteka.metadata.fieldtypes import max_items
from kartoteka.metadata.model import EXPRESSION_SYSTEM_NAMES, Access, EntityDef, FieldDef, Label, Layout
from kartoteka.records.access import editable_fields, viewable_fields
from kartoteka.records.model import Principal

SYSTEM_NAMES = frozenset(EXPRESSION_SYSTEM_NAMES)


def _label(label: Label | None) -> dict[str, str] | None:
    return label.as_json() if label is not None else None


def _jsonable(field: FieldDef, value: Any) -> Any:
    if value is None:
        return None
    if field.multiple and isinstance(value, list):
        return [field.value_type.to_json(v) for v in value]
    return field.value_type.to_json(value)


def _source(expr: CompiledExpression | None, visible: frozenset[str] | None) -> str | None:
    """An expression's text, unless it names a field the reader may not see (that would reveal it)."""
    if expr is None or (visible is not None and not expr.names <= visible | SYSTEM_NAMES):
        return None
    return expr.source


def _value_schema(field: FieldDef) -> dict[str, Any]:
    """One value's JSON Schema, with the item limit of a list type (tags, multiselect) that is enforced."""
    schema = dict(field.value_type.json_schema)
    if schema.get("type") == "array":
        schema["maxItems"] = max_items(field)
    return schema


def describe_field(field: FieldDef, editable: bool, visible: frozenset[str] | None = None) -> dict[str, Any]:
    """One field's definition for clients (forms, importers, API users)."""
    info: dict[str, Any] = {
        "name": field.name, "type": field.type.name, "label": _label(field.label),
        "required": field.required, "multiple": field.multiple, "editable": editable,
        "value_schema": _value_schema(field),
    }
    optional = {
        "help": _label(field.help), "placeholder": _label(field.placeholder),
        "default": _jsonable(field, field.default), "unique": field.unique or None,
        "indexed": field.indexed or None, "read_only": field.read_only or None,
        "min": _jsonable(field, field.min), "max": _jsonable(field, field.max),
        "min_length": field.min_length, "max_length": field.max_length,
        "pattern": field.pattern.pattern if field.pattern else None, "to": field.to,
        "currency": field.currency, "places": field.places,
        "expr": _source(field.expr, visible),
        "result": field.result.name if field.result else None,
        "visible_if": _source(field.visible_if, visible),
        "required_if": _source(field.required_if, visible),
        "read_only_if": _source(field.read_only_if, visible),
        "policy_version": field.policy_version, "policy_url": field.policy_url, "text": _label(field.text),
        "suggestions": list(field.suggestions) or None,
        "options": [{"value": o.value, "label": o.label.as_json(), "color": o.color} for o in field.options] or None,
    }
    info.update({k: v for k, v in optional.items() if v is not None})
    return info


def describe_layout(layout: Layout, roles: frozenset[str], visible: frozenset[str], admin: bool) -> list[Any]:
    """Tabs and groups the user may see, with only their visible fields."""
    def allowed(access: Access) -> bool:
        return admin or access.can_view(roles)

    tabs = []
    for tab in layout.tabs:
        if not allowed(tab.access):
            continue
        groups = [{"label": _label(g.label), "columns": g.columns,
                   "fields": [n for n in g.fields if n in visible],
                   "visible_if": _source(g.visible_if, visible)}
                  for g in tab.groups if allowed(g.access)]
        groups = [g for g in groups if g["fields"]]
        if groups:
            tabs.append({"label": _label(tab.label), "groups": groups,
                         "visible_if": _source(tab.visible_if, visible)})
    return tabs


def describe_entity(entity: EntityDef, user: Principal, scopes: dict[str, str]) -> dict[str, Any]:
    """The entity for `user`: fields, layout (their department's variant), list spec, validations, scopes."""
    visible = viewable_fields(entity, user)
    editable = editable_fields(entity, user)
    fields = [describe_field(f, f.name in editable, visible) for f in entity.fields.values() if f.name in visible]
    # A list longer than its maxItems is refused before any item is read, so the schema says so.
    properties = {f["name"]: f["value_schema"] if not f["multiple"]
                  else {"type": "array", "items": f["value_schema"], "maxItems": max_items(entity.fields[f["name"]])}
                  for f in fields}
    return {
        "name": entity.name,
        "label": entity.label.as_json(),
        "label_plural": entity.label_plural.as_json(),
        "description": _label(entity.description),
        "title": entity.title.source,
        "permissions": scopes,
        "fields": fields,
        "layout": {"tabs": describe_layout(entity.layout_for(user.department), user.roles, visible,
                                           user.is_system or bool(user.roles & entity.superusers))},
        "list": {"columns": [c for c in entity.list.columns if c in visible or c not in entity.fields],
                 "sort": entity.list.sort, "search": [s for s in entity.list.search if s in visible]},
        "validations": [{"expr": v.expr.source, "message": v.message.as_json(), "field": v.field}
                        for v in entity.validations if _source(v.expr, visible) is not None],
        "json_schema": {"type": "object", "properties": properties,
                        "required": [f["name"] for f in fields if f["required"]]},
    }
