"""The registry of field types: how each type parses input, checks constraints and is stored."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import phonenumbers

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
     "visible_if", "required_if", "read_only_if", "access"}
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


def _blank(raw: Any) -> bool:
    return raw is None or (isinstance(raw, str) and not raw.strip())


def _length_checks(text: str, field: FieldDef, limit: int) -> list[str]:
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


def _require_str(raw: Any, what: str = "text") -> str:
    if not isinstance(raw, str):
        raise FieldValueError(f"Must be {what}, not {_json_type(raw)}.")
    if _CONTROL.search(raw):
        raise FieldValueError("Contains control characters; remove them.")
    return raw


def _json_type(raw: Any) -> str:
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


class TextType(FieldType):
    name = "text"
    options = frozenset({"min_length", "max_length", "pattern", "pattern_message", "unique"})
    supports_multiple = True
    limit = MAX_TEXT_LENGTH

    def parse(self, raw, field, ctx):
        if _blank(raw):
            return None
        text = _require_str(raw).strip()
        if "\n" in text or "\r" in text:
            raise FieldValueError("Must be a single line.")
        return text

    def check(self, value, field):
        return _length_checks(value, field, self.limit)


class TextareaType(TextType):
    name = "textarea"
    options = frozenset({"min_length", "max_length", "pattern", "pattern_message", "rows"})
    supports_multiple = False
    limit = MAX_TEXTAREA_LENGTH

    def parse(self, raw, field, ctx):
        if _blank(raw):
            return None
        return _require_str(raw).strip().replace("\r\n", "\n")


def _bounds_checks(value: Any, field: FieldDef, fmt: Callable[[Any], str] = str) -> list[str]:
    if field.min is not None and value < field.min:
        return [f"Must be at least {fmt(field.min)}."]
    if field.max is not None and value > field.max:
        return [f"Must be at most {fmt(field.max)}."]
    return []


_NUMBER_SPACES = re.compile(r"[\s\u00a0\u202f']")


def _number_text(raw: str) -> str:
    """Accept '1 500,50' as typed in Russian locales as well as '1500.50'."""
    text = _NUMBER_SPACES.sub("", raw.strip())
    if "," in text and "." not in text and text.count(",") == 1:
        text = text.replace(",", ".")
    return text


class IntegerType(FieldType):
    name = "integer"
    options = frozenset({"min", "max", "unique"})
    supports_multiple = True
    storage = "number"
    json_schema = {"type": "integer"}

    def parse(self, raw, field, ctx):
        if _blank(raw):
            return None
        if isinstance(raw, bool):
            raise FieldValueError("Must be a whole number, not a boolean.")
        if isinstance(raw, int):
            number = raw
        elif isinstance(raw, float | Decimal):
            # is_finite first: comparing a signalling Decimal NaN raises InvalidOperation.
            if not Decimal(raw).is_finite() or raw != int(raw):
                raise FieldValueError("Must be a whole number.")
            number = int(raw)
        elif isinstance(raw, str):
            text = _number_text(raw)
            if not re.fullmatch(r"[+-]?\d{1,30}", text):
                raise FieldValueError(f"'{raw.strip()[:40]}' is not a whole number.")
            number = int(text)
        else:
            raise FieldValueError(f"Must be a whole number, not {_json_type(raw)}.")
        if abs(number) > MAX_SAFE_INTEGER:
            raise FieldValueError(f"Must be between -{MAX_SAFE_INTEGER} and {MAX_SAFE_INTEGER}.")
        return number

    def check(self, value, field):
        return _bounds_checks(value, field)


class DecimalType(FieldType):
    name = "decimal"
    options = frozenset({"min", "max", "places", "unique"})
    supports_multiple = True
    storage = "number"
    json_schema = {"type": "string", "format": "decimal"}
    default_places: int | None = None

    def places(self, field: FieldDef) -> int | None:
        return field.places if field.places is not None else self.default_places

    def parse(self, raw, field, ctx):
        if _blank(raw):
            return None
        if isinstance(raw, bool):
            raise FieldValueError("Must be a number, not a boolean.")
        if isinstance(raw, Decimal):
            number = raw
        elif isinstance(raw, int):
            number = Decimal(raw)
        elif isinstance(raw, float):
            number = Decimal(repr(raw))
        elif isinstance(raw, str):
            text = _number_text(raw)
            if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", text):
                raise FieldValueError(f"'{raw.strip()[:40]}' is not a number.")
            number = Decimal(text)
        else:
            raise FieldValueError(f"Must be a number, not {_json_type(raw)}.")
        if not number.is_finite():
            raise FieldValueError("Must be a finite number.")
        places = self.places(field)
        exponent = number.as_tuple().exponent
        if places is not None and isinstance(exponent, int) and -exponent > places:
            number = number.normalize()
            exponent = number.as_tuple().exponent
            if isinstance(exponent, int) and -exponent > places:
                raise FieldValueError(f"Must have at most {places} digits after the decimal point.")
        if places is not None:
            try:
                number = number.quantize(Decimal(1).scaleb(-places))
            except InvalidOperation:  # more digits than the context holds: far too large anyway
                raise FieldValueError(f"Is too large: at most {MAX_DECIMAL_DIGITS} significant digits.") from None
        digits = len(number.normalize().as_tuple().digits)
        if digits > MAX_DECIMAL_DIGITS or abs(number) >= Decimal(10) ** MAX_DECIMAL_DIGITS:
            raise FieldValueError(f"Is too large: at most {MAX_DECIMAL_DIGITS} significant digits.")
        if number and number.adjusted() < -307:  # below the smallest normal double: stored as 0 or inexact
            raise FieldValueError("Is too close to zero to be stored.")
        return number

    def check(self, value, field):
        return _bounds_checks(value, field, lambda v: f"{v:f}" if isinstance(v, Decimal) else str(v))

    def to_storage(self, value):
        # Up to 15 significant digits a double holds the decimal exactly; see MAX_DECIMAL_DIGITS.
        return int(value) if value == value.to_integral_value() else float(value)

    def from_storage(self, stored, field=None):
        number = Decimal(repr(stored)) if isinstance(stored, float) else Decimal(stored)
        places = self.places(field) if field is not None else self.default_places
        return number.quantize(Decimal(1).scaleb(-places)) if places is not None else number

    def to_json(self, value):
        return format(value, "f")


class MoneyType(DecimalType):
    name = "money"
    options = frozenset({"min", "max", "currency", "places", "unique"})
    supports_multiple = False
    json_schema = {"type": "string", "format": "decimal"}
    default_places = 2


class PercentType(DecimalType):
    name = "percent"
    options = frozenset({"min", "max", "places"})
    supports_multiple = False
    default_places = 2

    def parse(self, raw, field, ctx):
        if isinstance(raw, str):
            raw = raw.strip().removesuffix("%")
        return super().parse(raw, field, ctx)


class BooleanType(FieldType):
    name = "boolean"
    storage = "boolean"
    json_schema = {"type": "boolean"}
    _TRUE = frozenset({"true", "1", "yes", "on", "да", "y"})
    _FALSE = frozenset({"false", "0", "no", "off", "нет", "n"})

    def parse(self, raw, field, ctx):
        if _blank(raw):
            return None
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int) and raw in (0, 1):
            return bool(raw)
        if isinstance(raw, str):
            word = raw.strip().lower()
            if word in self._TRUE:
                return True
            if word in self._FALSE:
                return False
        raise FieldValueError("Must be true or false.")


class DateType(FieldType):
    name = "date"
    options = frozenset({"min", "max"})
    supports_multiple = True
    json_schema = {"type": "string", "format": "date"}

    def parse(self, raw, field, ctx):
        if _blank(raw):
            return None
        if isinstance(raw, datetime):
            raise FieldValueError("Must be a date without a time.")
        if isinstance(raw, date):
            return raw
        text = _require_str(raw, "a date").strip()
        match = re.fullmatch(r"(\d{1,2})\.(\d{1,2})\.(\d{4})", text)
        try:
            if match:
                day, month, year = (int(g) for g in match.groups())
                return date(year, month, day)
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                return date.fromisoformat(text)
        except ValueError as exc:
            raise FieldValueError(f"'{text[:40]}' is not a valid date: {exc}.") from None
        raise FieldValueError(f"'{text[:40]}' is not a date; use YYYY-MM-DD or DD.MM.YYYY.")

    def check(self, value, field):
        return _bounds_checks(value, field, lambda v: v.isoformat())

    def to_storage(self, value):
        return value.isoformat()

    def from_storage(self, stored, field=None):
        return date.fromisoformat(stored)


class DateTimeType(FieldType):
    name = "datetime"
    options = frozenset({"min", "max"})
    json_schema = {"type": "string", "format": "date-time"}

    def parse(self, raw, field, ctx):
        if _blank(raw):
            return None
        if isinstance(raw, datetime):
            moment = raw
        elif isinstance(raw, date):
            raise FieldValueError("Must be a date with a time.")
        else:
            text = _require_str(raw, "a date and time").strip()
            try:
                moment = datetime.fromisoformat(text.replace(" ", "T", 1))
            except ValueError:
                raise FieldValueError(
                    f"'{text[:40]}' is not a date and time; use ISO 8601, e.g. 2025-03-01T14:30:00+03:00."
                ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=ctx.timezone)
        try:
            return moment.astimezone(UTC).replace(microsecond=0)
        except OverflowError:  # 0001-01-01T00:00+01:00 is before the first representable UTC moment
            raise FieldValueError("Is out of the supported range of dates.") from None

    def check(self, value, field):
        return _bounds_checks(value, field, lambda v: v.isoformat())

    def to_storage(self, value):
        # One fixed UTC format so that text order is time order in indexes.
        # isoformat() pads the year to four digits; strftime("%Y") does not for years before 1000.
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"

    def from_storage(self, stored, field=None):
        return datetime.fromisoformat(stored).astimezone(UTC)


_EMAIL = re.compile(r"[^@\s\"<>,;:]+@[^@\s\"<>,;:]+\.[^@\s\"<>,;:.]{2,}")


class EmailType(FieldType):
    name = "email"
    options = frozenset({"unique", "max_length"})
    supports_multiple = True
    json_schema = {"type": "string", "format": "email"}

    def parse(self, raw, field, ctx):
        if _blank(raw):
            return None
        text = _require_str(raw, "an e-mail address").strip()
        if len(text) > 254 or not _EMAIL.fullmatch(text) or ".." in text:
            raise FieldValueError(f"'{text[:60]}' is not a valid e-mail address.")
        return text.lower()

    def check(self, value, field):
        return _length_checks(value, field, 254)


class PhoneType(FieldType):
    name = "phone"
    options = frozenset({"unique", "region"})
    supports_multiple = True
    json_schema = {"type": "string", "format": "phone"}

    def parse(self, raw, field, ctx):
        if _blank(raw):
            return None
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = str(raw)
        text = _require_str(raw, "a phone number").strip()
        region = field.region or ctx.phone_region
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            raise FieldValueError(f"'{text[:40]}' is not a phone number.") from None
        if not phonenumbers.is_valid_number(number):
            raise FieldValueError(f"'{text[:40]}' is not a valid phone number for its country.")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class UrlType(FieldType):
    name = "url"
    options = frozenset({"unique", "max_length"})
    supports_multiple = True
    json_schema = {"type": "string", "format": "uri"}

    def parse(self, raw, field, ctx):
        if _blank(raw):
            return None
        text = _require_str(raw, "a web address").strip()
        if "://" not in text:
            text = "https://" + text
        parts = urlsplit(text)
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https") or "." not in host or " " in text or len(text) > 2000:
            raise FieldValueError(f"'{text[:60]}' is not a valid http(s) address.")
        return text

    def check(self, value, field):
        return _length_checks(value, field, 2000)


class SelectType(FieldType):
    name = "select"
    options = frozenset({"options", "unique"})
    json_schema = {"type": "string"}

    def parse(self, raw, field, ctx):
        if _blank(raw):
            return None
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise FieldValueError(f"Must be one of the options, not {_json_type(raw)}.")
        value = str(raw).strip()
        if value not in field.option_values:
            allowed = ", ".join(field.option_values)
            raise FieldValueError(f"'{value[:40]}' is not one of the options: {allowed}.")
        return value


def _as_list(raw: Any) -> list[Any]:
    if isinstance(raw, str):
        return [part for part in raw.split(",") if part.strip()]
    if isinstance(raw, list | tuple):
        return list(raw)
    raise FieldValueError(f"Must be a list, not {_json_type(raw)}.")


class MultiselectType(FieldType):
    name = "multiselect"
    options = frozenset({"options", "min_items", "max_items"})
    storage = "json"
    json_schema = {"type": "array", "items": {"type": "string"}}

    def parse(self, raw, field, ctx):
        if raw is None:
            return None
        values: list[str] = []
        for item in _as_list(raw):
            value = SelectType.parse(self, item, field, ctx)  # type: ignore[arg-type]
            if value is not None and value not in values:
                values.append(value)
        return values or None

    def check(self, value, field):
        return item_count_checks(value, field)


def item_count_checks(values: list[Any], field: FieldDef) -> list[str]:
    """min_items / max_items messages for a list value."""
    if len(values) > (field.max_items or MAX_ITEMS):
        return [f"Must have at most {field.max_items or MAX_ITEMS} values."]
    if field.min_items is not None and len(values) < field.min_items:
        return [f"Must have at least {field.min_items} values."]
    return []


class TagsType(FieldType):
    name = "tags"
    options = frozenset({"suggestions", "min_items", "max_items"})
    storage = "json"
    json_schema = {"type": "array", "items": {"type": "string"}}

    def parse(self, raw, field, ctx):
        if raw is None:
            return None
        tags: list[str] = []
        seen: set[str] = set()
        for item in _as_list(raw):
            tag = " ".join(_require_str(item, "text").split())
            if not tag:
                continue
            if len(tag) > MAX_TAG_LENGTH:
                raise FieldValueError(f"Tag '{tag[:20]}…' is longer than {MAX_TAG_LENGTH} characters.")
            if tag.casefold() not in seen:
                seen.add(tag.casefold())
                tags.append(tag)
        return tags or None

    def check(self, value, field):
        return item_count_checks(value, field)


def _parse_id(raw: Any, what: str) -> int:
    if isinstance(raw, bool):
        raise FieldValueError(f"Must be {what} id, not a boolean.")
    if isinstance(raw, dict) and "id" in raw:
        raw = raw["id"]
    if isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw.strip())
    if not isinstance(raw, int) or raw <= 0 or raw > MAX_SAFE_INTEGER:
        raise FieldValueError(f"Must be {what} id (a positive whole number).")
    return raw


class ReferenceType(FieldType):
    name = "reference"
    options = frozenset({"to"})
    supports_multiple = True
    storage = "number"
    json_schema = {"type": "integer"}

    def parse(self, raw, field, ctx):
        if _blank(raw):
            return None
        return _parse_id(raw, f"a {field.to} record")


class UserType(FieldType):
    name = "user"
    supports_multiple = True
    storage = "number"
    json_schema = {"type": "integer"}

    def parse(self, raw, field, ctx):
        if _blank(raw):
            return None
        return _parse_id(raw, "a user")


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
        if _blank(raw):
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
        if _blank(raw):
            return None
        # A BooleanType instance: its parse reads the word lists of its own class.
        given = raw.get("given") if isinstance(raw, dict) else BooleanType().parse(raw, field, ctx)
        if not isinstance(given, bool):
            raise FieldValueError("Must be true (consent given) or false (withdrawn or not given).")
        return {"given": given}

    def to_json(self, value):
        return dict(value)


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
