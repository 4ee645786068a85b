"""Choices, lists, links to other records, users and files, formulas and consent."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from kartoteka.metadata.types.base import (
    MAX_TAG_LENGTH,
    FieldType,
    FieldValueError,
    as_list,
    blank,
    check_item_count,
    item_count_checks,
    json_type,
    parse_id,
    require_str,
)
from kartoteka.metadata.types.scalar import BooleanType

if TYPE_CHECKING:
    from kartoteka.metadata.model import FieldDef


def option_value(raw: Any, field: FieldDef) -> str | None:
    """One of the field's option values, from text or a number; FieldValueError otherwise."""
    if blank(raw):
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise FieldValueError(f"Must be one of the options, not {json_type(raw)}.")
    value = str(raw).strip()
    if value not in field.option_values:
        allowed = ", ".join(field.option_values)
        raise FieldValueError(f"'{value[:40]}' is not one of the options: {allowed}.")
    return value


class SelectType(FieldType):
    name = "select"
    options = frozenset({"options", "unique"})
    json_schema = {"type": "string"}

    def parse(self, raw, field, ctx):
        return option_value(raw, field)


class ListFieldType(FieldType):
    """A value that is a list of texts: stored as a JSON array, limited by min_items / max_items."""

    storage = "json"
    json_schema = {"type": "array", "items": {"type": "string"}}

    def check(self, value, field):
        return item_count_checks(value, field)


class MultiselectType(ListFieldType):
    name = "multiselect"
    options = frozenset({"options", "min_items", "max_items"})

    def parse(self, raw, field, ctx):
        if raw is None:
            return None
        items = as_list(raw)
        check_item_count(items, field)
        values: dict[str, None] = {}  # ordered and hashed: removing repeats stays linear
        for item in items:
            value = option_value(item, field)
            if value is not None:
                values.setdefault(value)
        return list(values) or None


class TagsType(ListFieldType):
    name = "tags"
    options = frozenset({"suggestions", "min_items", "max_items"})

    def parse(self, raw, field, ctx):
        if raw is None:
            return None
        tags: list[str] = []
        seen: set[str] = set()
        items = as_list(raw)
        check_item_count(items, field)
        for item in items:
            tag = " ".join(require_str(item, "text").split())
            if not tag:
                continue
            if "," in tag:
                # Commas separate tags in forms, filters and spreadsheet cells: a tag holding one would split.
                raise FieldValueError(f"A tag cannot contain a comma ('{tag[:40]}'); send it as separate tags.")
            if len(tag) > MAX_TAG_LENGTH:
                raise FieldValueError(f"Tag '{tag[:20]}…' is longer than {MAX_TAG_LENGTH} characters.")
            if tag.casefold() not in seen:
                seen.add(tag.casefold())
                tags.append(tag)
        return tags or None


class ReferenceType(FieldType):
    name = "reference"
    options = frozenset({"to"})
    supports_multiple = True
    storage = "number"
    json_schema = {"type": "integer"}

    def parse(self, raw, field, ctx):
        if blank(raw):
            return None
        return parse_id(raw, f"a {field.to} record")


class UserType(FieldType):
    name = "user"
    supports_multiple = True
    storage = "number"
    json_schema = {"type": "integer"}

    def parse(self, raw, field, ctx):
        if blank(raw):
            return None
        return parse_id(raw, "a user")


class FileType(FieldType):
    """A stored file: the value is the file's id; the service fills in name, size and type."""

    name = "file"
    options = frozenset({"accept", "max_size"})
    supports_multiple = True
    storage = "json"
    json_schema = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                       "size": {"type": "integer"}, "content_type": {"type": "string"}},
    }

    def parse(self, raw, field, ctx):
        if blank(raw):
            return None
        file_id = raw.get("id") if isinstance(raw, dict) else raw
        if not isinstance(file_id, str) or not re.fullmatch(r"[0-9a-f]{32}", file_id.strip()):
            raise FieldValueError("Must be the id of an uploaded file.")
        return {"id": file_id.strip()}


class FormulaType(FieldType):
    """Computed from other fields; the stored value is the last computed one (for lists and sorting)."""

    name = "formula"
    options = frozenset({"expr", "result", "places", "currency"})
    computed = True

    def parse(self, raw, field, ctx):
        raise FieldValueError("Is computed by a formula and cannot be set.")


class ConsentType(FieldType):
    """Consent to personal-data processing: who gave or withdrew it, when, for which policy version."""

    name = "consent"
    options = frozenset({"policy_version", "policy_url", "text"})
    storage = "json"
    json_schema = {
        "type": "object",
        "properties": {"given": {"type": "boolean"}, "at": {"type": "string", "format": "date-time"},
                       "by": {"type": ["integer", "null"]}, "policy_version": {"type": "string"}},
    }

    def parse(self, raw, field, ctx):
        if blank(raw):
            return None
        # A BooleanType instance: its parse reads the word lists of its own class.
        given = raw.get("given") if isinstance(raw, dict) else BooleanType().parse(raw, field, ctx)
        if not isinstance(given, bool):
            raise FieldValueError("Must be true (consent given) or false (withdrawn or not given).")
        return {"given": given}

    def to_json(self, value):
        return dict(value)
