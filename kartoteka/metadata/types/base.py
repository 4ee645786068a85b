"""What every field type shares: the base class, the parse context, limits and input helpers."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kartoteka.metadata.model import FieldDef

# JSON numbers reach JavaScript clients as doubles: integers beyond this lose precision there.
MAX_SAFE_INTEGER = 2**53 - 1
# Decimals are stored as JSON numbers; up to 15 significant digits survive a double exactly.
MAX_DECIMAL_DIGITS = 15
MAX_TEXT_LENGTH = 10_000
MAX_TEXTAREA_LENGTH = 100_000
MAX_TAG_LENGTH = 60
MAX_ITEMS = 100

COMMON_OPTIONS = frozenset(
    {"type", "label", "help", "placeholder", "required", "default", "read_only", "indexed",
     "visible_if", "keep_when_hidden", "required_if", "read_only_if", "access"}
)


class FieldValueError(ValueError):
    """A single value does not fit its field; the message is shown to the user as is."""


@dataclass(frozen=True)


class ParseContext:
    """Settings that parsing depends on, passed in explicitly."""

    phone_region: str = "RU"
    timezone: timezone = UTC


class FieldType:
    """Base of all field types; subclasses override what differs."""

    name: str = ""
    options: frozenset[str] = frozenset()
    supports_multiple = False
    # What the value looks like inside the JSON column: text, number, boolean or json.
    storage = "text"
    # JSON Schema of one value as the API shows it (for OpenAPI and docs).
    json_schema: Mapping[str, Any] = {"type": "string"}
    computed = False

    def allowed_options(self) -> frozenset[str]:
        """Metadata keys this type accepts."""
        repeatable = frozenset({"multiple", "min_items", "max_items"}) if self.supports_multiple else frozenset()
        return COMMON_OPTIONS | self.options | repeatable

    def parse(self, raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
        """Turn one input value (JSON or form string) into its Python value; None means empty."""
        raise NotImplementedError

    def check(self, value: Any, field: FieldDef) -> list[str]:
        """Constraint messages for one parsed, non-empty value."""
        return []

    def to_storage(self, value: Any) -> Any:
        """The JSON-native form kept in the data column."""
        return value

    def from_storage(self, stored: Any, field: FieldDef | None = None) -> Any:
        """The Python value from its stored form (`field` gives options such as decimal places)."""
        return stored

    def to_json(self, value: Any) -> Any:
        """The value as the API returns it."""
        return self.to_storage(value)


def blank(raw: Any) -> bool:
    """True for None and whitespace-only text: the field is empty."""
    return raw is None or (isinstance(raw, str) and not raw.strip())


def length_checks(text: str, field: FieldDef, limit: int) -> list[str]:
    """min_length / max_length / pattern messages for a text."""
    problems = []
    if field.max_length is not None and len(text) > field.max_length:
        problems.append(f"Must be at most {field.max_length} characters (has {len(text)}).")
    elif len(text) > limit:
        problems.append(f"Must be at most {limit} characters (has {len(text)}).")
    if field.min_length is not None and len(text) < field.min_length:
        problems.append(f"Must be at least {field.min_length} characters.")
    if field.pattern is not None and not field.pattern.fullmatch(text):
        problems.append(field.pattern_message or f"Does not match the pattern {field.pattern.pattern}.")
    return problems


# Control characters (but tab, newline, carriage return): invisible, and NUL is refused by PostgreSQL's jsonb.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# What no database column can hold: NUL (PostgreSQL text and jsonb refuse it) and UTF-16 surrogates, which
# JSON's "\ud800" escapes can produce but which are not characters (encoding them as UTF-8 raises).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(text: str) -> str | None:
    """What in `text` cannot be stored ("a NUL character (U+0000)"), or None when it can be."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    char = found.group()
    if char == "\x00":
        return "a NUL character (U+0000)"
    return f"an unpaired surrogate (U+{ord(char):04X}, not a character)"


def require_str(raw: Any, what: str = "text") -> str:
    """The text itself, or FieldValueError for another JSON type, NUL, surrogates or control characters."""
    if not isinstance(raw, str):
        raise FieldValueError(f"Must be {what}, not {json_type(raw)}.")
    problem = unstorable(raw)
    if problem is not None:
        raise FieldValueError(f"Contains {problem}, which cannot be stored.")
    if _CONTROL.search(raw):
        raise FieldValueError("Contains control characters; remove them.")
    return raw


def json_type(raw: Any) -> str:
    """How a JSON value's type reads in a message: 'a number', 'a list'..."""
    if isinstance(raw, bool):
        return "a boolean"
    if isinstance(raw, int | float | Decimal):
        return "a number"
    if isinstance(raw, str):
        return "a string"
    if isinstance(raw, list | tuple):
        return "a list"
    if isinstance(raw, dict):
        return "an object"
    return type(raw).__name__


def bounds_checks(value: Any, field: FieldDef, fmt: Callable[[Any], str] = str) -> list[str]:
    """min / max messages for a number or a date."""
    if field.min is not None and value < field.min:
        return [f"Must be at least {fmt(field.min)}."]
    if field.max is not None and value > field.max:
        return [f"Must be at most {fmt(field.max)}."]
    return []


_NUMBER_SPACES = re.compile(r"[\s\u00a0\u202f']")


def number_text(raw: str) -> str:
    """Accept '1 500,50' as typed in Russian locales as well as '1500.50'."""
    text = _NUMBER_SPACES.sub("", raw.strip())
    if "," in text and "." not in text and text.count(",") == 1:
        text = text.replace(",", ".")
    return text


def as_list(raw: Any) -> list[Any]:
    """A list from a JSON list or comma-separated form text."""
    if isinstance(raw, str):
        return [part for part in raw.split(",") if part.strip()]
    if isinstance(raw, list | tuple):
        return list(raw)
    raise FieldValueError(f"Must be a list, not {json_type(raw)}.")


def max_items(field: FieldDef) -> int:
    """How many values a list field holds at most: its max_items, else MAX_ITEMS."""
    return field.max_items or MAX_ITEMS


def item_count_checks(values: list[Any], field: FieldDef) -> list[str]:
    """min_items / max_items messages for a list value."""
    if len(values) > max_items(field):
        return [f"Must have at most {max_items(field)} values."]
    if field.min_items is not None and len(values) < field.min_items:
        return [f"Must have at least {field.min_items} values."]
    return []


def check_item_count(items: Any, field: FieldDef) -> None:
    """Refuse a list longer than the field may hold before any of its items is parsed (CPU is per item)."""
    if len(items) > max_items(field):
        raise FieldValueError(f"Must have at most {max_items(field)} values.")


_ID_TEXT = re.compile(r"[0-9]{1,19}")


def parse_id(raw: Any, what: str) -> int:
    """A record or user id (1..MAX_SAFE_INTEGER) from a whole number (6 or 6.0), digits ("6") or {"id": 6}."""
    if isinstance(raw, bool):
        raise FieldValueError(f"Must be {what} id, not a boolean.")
    if isinstance(raw, dict) and "id" in raw:
        raw = raw["id"]
    if isinstance(raw, str) and _ID_TEXT.fullmatch(raw.strip()):
        raw = int(raw.strip())
    elif isinstance(raw, float | Decimal) and not isinstance(raw, bool):
        # A JSON number written as 6.0 is the whole number 6, as for integer fields; 6.5 is no id.
        # Magnitude first: int() of Decimal("1E+999999") would build a number of a million digits.
        if not Decimal(raw).is_finite() or abs(raw) > MAX_SAFE_INTEGER or raw != int(raw):
            raise FieldValueError(f"Must be {what} id (a positive whole number), not {raw}.")
        raw = int(raw)
    if not isinstance(raw, int) or isinstance(raw, bool) or raw <= 0 or raw > MAX_SAFE_INTEGER:
        raise FieldValueError(f"Must be {what} id (a positive whole number).")
    return raw
