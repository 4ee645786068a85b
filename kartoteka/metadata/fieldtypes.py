"""The registry of field types: how each type parses input, checks constraints and is stored."""

from __future__ import annotations

from kartoteka.metadata.types.base import (
    COMMON_OPTIONS,
    MAX_DECIMAL_DIGITS,
    MAX_ITEMS,
    MAX_SAFE_INTEGER,
    MAX_TAG_LENGTH,
    MAX_TEXT_LENGTH,
    MAX_TEXTAREA_LENGTH,
    FieldType,
    FieldValueError,
    ParseContext,
    check_item_count,
    item_count_checks,
    max_items,
    parse_id,
    unstorable,
)
from kartoteka.metadata.types.scalar import (
    BooleanType,
    DateTimeType,
    DateType,
    DecimalType,
    EmailType,
    IntegerType,
    MoneyType,
    PercentType,
    PhoneType,
    TextareaType,
    TextType,
    UrlType,
)
from kartoteka.metadata.types.structured import (
    ConsentType,
    FileType,
    FormulaType,
    MultiselectType,
    ReferenceType,
    SelectType,
    TagsType,
    UserType,
)

__all__ = [
    "COMMON_OPTIONS", "FIELD_TYPES", "MAX_DECIMAL_DIGITS", "MAX_ITEMS", "MAX_SAFE_INTEGER", "MAX_TAG_LENGTH",
    "MAX_TEXTAREA_LENGTH", "MAX_TEXT_LENGTH", "FieldType", "FieldValueError", "ParseContext", "TypeRegistry",
    "check_item_count", "item_count_checks", "max_items", "parse_id", "unstorable",
]


class TypeRegistry:
    """An explicit registry of field types by name."""

    def __init__(self) -> None:
        self._types: dict[str, FieldType] = {}

    def register(self, field_type: FieldType) -> None:
        """Add a type; a second type of the same name is a programming error."""
        if field_type.name in self._types:
            raise ValueError(f"field type {field_type.name!r} is registered twice")
        self._types[field_type.name] = field_type

    def get(self, name: str) -> FieldType:
        """The type called `name`; KeyError names the known types."""
        try:
            return self._types[name]
        except KeyError:
            raise KeyError(f"unknown field type {name!r}; known: {', '.join(sorted(self._types))}") from None

    def names(self) -> list[str]:
        """All registered type names, sorted."""
        return sorted(self._types)

    def __contains__(self, name: object) -> bool:
        return name in self._types


FIELD_TYPES = TypeRegistry()


for _type in (TextType(), TextareaType(), IntegerType(), DecimalType(), MoneyType(), PercentType(),
              BooleanType(), DateType(), DateTimeType(), EmailType(), PhoneType(), UrlType(),
              SelectType(), MultiselectType(), TagsType(), ReferenceType(), UserType(), FileType(),
              FormulaType(), ConsentType()):
    FIELD_TYPES.register(_type)
