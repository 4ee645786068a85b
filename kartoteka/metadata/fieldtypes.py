"""The field types and their registry (kartoteka/metadata/types/): how each type parses input, checks
constraints, is stored, shown, edited and filtered."""

from __future__ import annotations

from kartoteka.metadata.types.base import (
    COMMON_OPTIONS,
    MAX_DECIMAL_DIGITS,
    MAX_ITEMS,
    MAX_SAFE_INTEGER,
    MAX_TAG_LENGTH,
    MAX_TEXT_LENGTH,
    MAX_TEXTAREA_LENGTH,
    PICKER_TEXT_SUFFIX,
    Display,
    FieldType,
    FieldValueError,
    FormContext,
    ParseContext,
    Stamp,
    check_form_count,
    check_item_count,
    item_count_checks,
    max_items,
    parse_id,
    plain_title,
    unstorable,
)
from kartoteka.metadata.types.registry import FIELD_TYPES, TypeRegistry
from kartoteka.metadata.types.structured import file_ids, picked_id

__all__ = [
    "COMMON_OPTIONS", "FIELD_TYPES", "MAX_DECIMAL_DIGITS", "MAX_ITEMS", "MAX_SAFE_INTEGER", "MAX_TAG_LENGTH",
    "MAX_TEXTAREA_LENGTH", "MAX_TEXT_LENGTH", "PICKER_TEXT_SUFFIX", "Display", "FieldType", "FieldValueError",
    "FormContext",    "ParseContext", "Stamp", "TypeRegistry", "check_form_count", "check_item_count", "file_ids",
    "item_count_checks", "max_items", "parse_id", "picked_id", "plain_title", "unstorable",
]
