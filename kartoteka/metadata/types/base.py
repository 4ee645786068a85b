"""What every field type shares: the base class, the parse context, limits and input helpers."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from babel import Locale
from babel.numbers import (
    NumberFormatError,
    format_decimal,
    get_decimal_symbol,
    get_group_symbol,
    get_minus_sign_symbol,
    parse_decimal,
)

from kartoteka.messages import Message

if TYPE_CHECKING:
    from kartoteka.metadata.model import FieldDef, Label

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

# JSON Schema fragments of the options types share (each type lists the ones it takes in `option_schema`).
# "#/$defs/..." refer to entity.schema.json, into which the loader puts every type's fragment.
UNIQUE = {"type": "boolean", "description": "No two live records hold the same value."}
BOUND = {"type": ["number", "string"], "description": "Inclusive bound, written like input."}
MIN_LENGTH = {"type": "integer", "minimum": 0}
MAX_LENGTH = {"type": "integer", "minimum": 1}
MIN_ITEMS = {"type": "integer", "minimum": 0}
MAX_ITEMS_OPTION = {"type": "integer", "minimum": 1, "maximum": 1000}
PLACES = {"type": "integer", "minimum": 0, "maximum": 8, "description": "Digits after the decimal point."}
CURRENCY = {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217 code."}
PATTERN = {"type": "string", "minLength": 1, "description": "RE2 expression the whole value must match."}
LABEL = {"$ref": "#/$defs/label"}
REPEATABLE: Mapping[str, Mapping[str, Any]] = {
    "multiple": {"type": "boolean", "description": "A list of values."},
    "min_items": MIN_ITEMS,
    "max_items": MAX_ITEMS_OPTION,
}


class FieldValueError(ValueError):
    """A value does not fit its field; the message (a `Message`) is shown to the user.

    A list of values may carry one message per refused item (`messages`); `str()` joins them.
    """

    def __init__(self, message: str, *more: str) -> None:
        super().__init__(message, *more)
        self.messages: list[str] = [message, *more]

    def __str__(self) -> str:
        return " ".join(str(m) for m in self.messages)


@dataclass(frozen=True)


class ParseContext:
    """Settings that parsing depends on, passed in explicitly."""

    phone_region: str = "RU"
    timezone: timezone = UTC


class Display(Protocol):
    """How the interface writes values in the reader's language (web/formatting.py implements it).

    The types decide what to show (which option label, how many places, which currency); the display
    decides how numbers, dates and words look in the language.
    """

    language: str

    def number(self, value: Decimal | int, places: int | None = None) -> str: ...
    def money(self, value: Decimal | int, currency: str | None, places: int) -> str: ...
    def percent(self, value: Decimal | int, places: int | None) -> str: ...
    def date(self, value: Any) -> str | None: ...
    def datetime(self, value: Any) -> str | None: ...
    def day_of(self, value: Any) -> str | None: ...
    def yes_no(self, flag: bool) -> str: ...
    def label(self, label: Label) -> str: ...
    def user(self, user_id: Any) -> str | None: ...
    def record(self, record_id: Any) -> str | None: ...
    def text(self, message: str, **values: Any) -> str: ...


class PostedForm(Protocol):
    """What a posted HTML form offers (werkzeug's MultiDict): texts by name, repeated names as lists."""

    def get(self, key: str, default: Any = None) -> Any: ...
    def getlist(self, key: str) -> list[Any]: ...
    def __contains__(self, key: object) -> bool: ...


# Stores an upload for a file field (refusing what the field does not take) and returns its value.
FileSaver = Callable[["FieldDef", Any], dict[str, Any]]
class TitleResolver(Protocol):
    """Records of an entity a picker's text names: `kept` (the id picked before) while the text still names it."""

    def __call__(self, entity_name: str, text: str, kept: int | None = None, /) -> list[int]: ...


# A reference picker posts the text people read under "<field>__text" and the picked record's id under the
# field's own name (a hidden input), in the same order for a field with several.
PICKER_TEXT_SUFFIX = "__text"


@dataclass(frozen=True)
class FormContext:
    """What turning a posted form into a raw value may need besides the form: files and picked records."""

    files: PostedForm | None = None
    save_file: FileSaver | None = None
    resolve: TitleResolver | None = None
    language: str = "en"  # the reader's: numbers and dates are typed as their language writes them


@dataclass(frozen=True)
class Stamp:
    """Who saves, when, and whether the value was inferred from the form's silence (an unticked box)."""

    now: datetime
    user_id: int | None
    inferred: bool = False


class FieldType:
    """Base of all field types: one class is the whole home of a type, and subclasses override what differs.

    A type says how it parses, checks, stores and shows its values; which options its metadata takes
    (`option_schema`, a JSON Schema fragment the loader checks); and, by name, the Jinja macros of
    templates/macros/fields.html that edit and show it, so the web layer only asks and calls.
    """

    name: str = ""
    # Its own metadata options: key -> JSON Schema of the value (validated by the loader; a builder UI renders it).
    option_schema: Mapping[str, Mapping[str, Any]] = {}
    supports_multiple = False
    # What the value looks like inside the JSON column: text, number, boolean or json.
    storage = "text"
    # JSON Schema of one value as the API shows it (for OpenAPI and docs).
    json_schema: Mapping[str, Any] = {"type": "string"}
    computed = False
    # The value itself is a list of texts (multiselect, tags), without `multiple`.
    list_valued = False
    # The value is the id of a "record" (of the entity in `to`) or of a "user".
    refers: str | None = None
    # The value holds uploaded files (their ids link them to the record).
    holds_files = False
    # Search (`q`) reads its text; its first single-valued field makes the default title.
    searchable = False
    names_records = False
    # A false visible_if empties it on save; consent is an archive and is never emptied.
    emptied_when_hidden = True
    # The person's own decision (consent): kept in the consent archive; no revert, merge or undo makes it for them.
    personal_decision = False
    # What a kanban board may do with it: one column per option, or add the values up.
    groups_board = False
    sums_board = False
    # The list filter it offers: options | range | boolean | user | reference | text | presence (empty or not).
    filter_kind = "text"
    # Offered in a list's filter panel even when it is not one of the list's columns.
    offered_filter = False
    # A "range" filter's calendar: the type of the hidden browser picker its button opens ("date"), None for none.
    filter_calendar: str | None = None
    # Macros in templates/macros/fields.html: the form widget, the card's value, a list cell (also a board
    # line) and a badge in a card's header. `label_kind` says how the form row labels the widget: "for" (a
    # <label for>), "group" (a caption for a group of inputs), "inline" (after a checkbox) or "own".
    widget = "text_input"
    value_macro = "plain_value"
    cell_macro = "text_cell"
    badge_macro = "text_badge"
    badge_by_default = False  # a card without `badges:` shows it in its header (tags)
    marks_moment = False  # a date or a date and time: a date rule may count from it
    names_user = False  # holds a user's id: `assign` may set it, a task may go to whom it names
    label_kind = "for"
    # What the widget repeats, one per item, so that a compiled form row (kartoteka/web/formrows.py) depends on
    # their number: "texts" (a box per value, when multiple), "picks" (a picker per record), "files", "users"
    # (an option per user), or None.
    form_items: str | None = None
    required_message: str = Message("required", "Required.")
    # What a "presence" filter says the field holds ("'x' holds files; filter it with x__isnull only.").
    presence_noun = "a structured value"

    # --- metadata -----------------------------------------------------------------------------------

    @property
    def options(self) -> frozenset[str]:
        """Its own option keys (besides the common ones and `multiple`)."""
        return frozenset(self.option_schema)

    def options_schema(self) -> dict[str, Any]:
        """The JSON Schema of its options (common options aside), as a builder UI would render it."""
        properties = dict(self.option_schema)
        if self.supports_multiple:
            properties.update(REPEATABLE)
        return {"type": "object", "properties": properties}

    def allowed_options(self) -> frozenset[str]:
        """Metadata keys this type accepts."""
        repeatable = frozenset(REPEATABLE) if self.supports_multiple else frozenset()
        return COMMON_OPTIONS | self.options | repeatable

    def option_defaults(self) -> dict[str, Any]:
        """Values of its options that a field leaves out (the "default" of each option's schema)."""
        return {key: schema["default"] for key, schema in self.option_schema.items() if "default" in schema}

    def spec_problems(self, spec: Mapping[str, Any], entities: Collection[str]) -> list[tuple[tuple[str, ...], str]]:
        """Problems of a field's metadata only this type knows of, as (path below the field, message)."""
        return []

    def parse_bound(self, key: str, raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
        """A `min` or `max` option, written like input."""
        return self.parse(raw, field, ctx)

    # --- values -------------------------------------------------------------------------------------

    def parse(self, raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
        """Turn one input value (JSON or form string) into its Python value; None means empty."""
        raise NotImplementedError

    def check(self, value: Any, field: FieldDef) -> list[str]:
        """Constraint messages for one parsed, non-empty value."""
        return []

    # A save asks for these once per entity (kartoteka/records/pipeline.py's plan) and calls what they give for
    # every value: a type may work a field's options out ahead, or say there is nothing to check, never differ.

    def parser(self, field: FieldDef) -> Callable[[Any, FieldDef, ParseContext], Any]:
        """`parse` for values of this one field: the same results, the field's options worked out ahead."""
        return self.parse

    def checker(self, field: FieldDef) -> Callable[[Any, FieldDef], list[str]] | None:
        """`check` for values of this one field, or None when it has nothing to check there (never any message)."""
        return None if type(self).check is FieldType.check else self.check

    def to_storage(self, value: Any) -> Any:
        """The JSON-native form kept in the data column."""
        return value

    def from_storage(self, stored: Any, field: FieldDef | None = None) -> Any:
        """The Python value from its stored form (`field` gives options such as decimal places)."""
        return stored

    def to_json(self, value: Any) -> Any:
        """The value as the API returns it."""
        return self.to_storage(value)

    def from_formula(self, value: Any, field: FieldDef) -> Any:
        """A formula's non-empty result as this (result) type holds it; FieldValueError when it is not one."""
        raise FieldValueError(formula_type_message(value, self.name))

    def settle(self, value: Any, previous: Any, field: FieldDef, stamp: Stamp) -> Any:
        """The value a save keeps, given the one stored before (consent stamps who decided when)."""
        return value

    def same(self, value: Any, stored: Any) -> bool:
        """True when a value sent is what is stored (files: the same files, by id)."""
        return bool(value == stored)

    def missing(self, value: Any) -> bool:
        """True when a required field with this value lacks one (consent: also when not given)."""
        return value is None or value == "" or value == []

    def comparable(self, value: Any) -> Any:
        """The value reduced to what tells whether it changed (a non-empty value, for merging an edit)."""
        return tuple(value) if isinstance(value, list) else value

    # --- the web: display and forms -------------------------------------------------------------------

    def display(self, value: Any, field: FieldDef, out: Display) -> str:
        """One non-empty (non-list) value as text for reading, in `out`'s language."""
        return str(value)

    def title_text(self, value: Any, field: FieldDef) -> str:
        """A non-empty value as a record's title shows it (one language for everybody)."""
        return plain_title(value)

    def label_for(self, read_only: bool) -> str:
        """How the form row labels the widget (`label_kind`; a type may depend on whether it is read-only)."""
        return self.label_kind

    def input_text(self, value: Any, field: FieldDef, titles: Mapping[int, str]) -> str:
        """One value as an HTML input holds it (ISO dates, plain decimals)."""
        if value is None:
            return ""
        if isinstance(value, list):
            return ", ".join(self.input_text(v, field, titles) for v in value)
        if isinstance(value, datetime):
            # Seconds only when there are some: a form must not cut 09:15:37 to 09:15 on an unchanged save.
            return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S" if value.second else "%Y-%m-%dT%H:%M")
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, Decimal):
            return format(value, "f")
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def localized_input_text(self, value: Any, field: FieldDef, titles: Mapping[int, str], language: str) -> str:
        """One value as an input shows it to a reader of `language` (by default as `input_text`)."""
        return self.input_text(value, field, titles)

    def typed_text(self, text: str, field: FieldDef, language: str) -> str:
        """Text a reader of `language` typed, as `parse` reads it (by default as typed); FieldValueError if unclear."""
        return text

    def form_texts(self, value: Any, field: FieldDef) -> list[str]:
        """What the form posts for a value (under the field's name), as texts: the edit's starting point."""
        if field.multiple:
            return [self.input_text(v, field, {}) for v in value or []]
        return [self.input_text(value, field, {})] if value is not None else []

    def form_value(self, field: FieldDef, form: PostedForm, context: FormContext) -> Any:
        """The raw value of the field in a posted form (ValueError: a message next to the field)."""
        if field.multiple:
            return [self.typed_text(v, field, context.language) for v in form.getlist(field.name) if v.strip()]
        text = form.get(field.name)
        return self.typed_text(text, field, context.language) if isinstance(text, str) else text

    def filter_choices(self, field: FieldDef, out: Display) -> tuple[tuple[str, str], ...]:
        """(value, text) pairs an "options" filter offers."""
        return ()

    def filter_input(self, field: FieldDef, out: Display) -> dict[str, str]:
        """Attributes of the inputs of a "range" filter (type, step, min, max) for `out`'s reader; a "placeholder"
        is the format a value is typed in, which the list puts after its "from" and "to"."""
        return {"type": "text"}

    def sum_places(self, field: FieldDef) -> int | None:
        """Decimal places of a board's sum of this field (None: as many as the values have)."""
        return field.places

    def key_bytes(self, field: FieldDef) -> int | None:
        """At most how many bytes the field's value takes in an index entry (None: no bound known). A number's
        numeric takes a few dozen; a text four per character of its max_length (UTF-8), plus its header."""
        if self.storage == "number":
            return 24
        if self.storage == "text" and field.max_length is not None:
            return 4 * field.max_length + 4
        return None


def plain_title(value: Any) -> str:
    """A value as a record's title shows it when no type says otherwise (also a system value: id, created_at)."""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def blank(raw: Any) -> bool:
    """True for None and whitespace-only text: the field is empty."""
    return raw is None or (isinstance(raw, str) and not raw.strip())


def formula_type_message(value: Any, type_name: str) -> Message:
    """Why a formula's result is not a value of the type it declares."""
    return Message("formula.result_type", "the formula gave {value}, not a {type}", value=repr(value), type=type_name)


def length_checks(text: str, field: FieldDef, limit: int) -> list[str]:
    """min_length / max_length / pattern messages for a text."""
    problems: list[str] = []
    most = field.max_length if field.max_length is not None else limit
    if len(text) > most:
        problems.append(Message("text.too_long", "Must be at most {count} characters (has {has}).",
                                count=most, has=len(text)))
    if field.min_length is not None and len(text) < field.min_length:
        problems.append(Message("text.too_short", "Must be at least {count} characters.", count=field.min_length))
    if field.pattern is not None and not field.pattern.fullmatch(text):
        if field.pattern_message is not None:
            problems.append(Message("text.pattern", "{label}", label=field.pattern_message))
        else:
            problems.append(Message("text.pattern_default", "Does not match the pattern {pattern}.",
                                    pattern=field.pattern.pattern))
    return problems


# Control characters (but tab, newline, carriage return): invisible, and NUL is refused by PostgreSQL's jsonb.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# What no database column can hold: NUL (PostgreSQL text and jsonb refuse it) and UTF-16 surrogates, which
# JSON's "\ud800" escapes can produce but which are not characters (encoding them as UTF-8 raises).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Either of the two above: text without any is what almost every value is (a save checks each text it parses).
_SUSPECT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def unstorable(text: str) -> Message | None:
    """What in `text` cannot be stored ("a NUL character (U+0000)"), to nest in a message; None when it can be."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    char = found.group()
    if char == "\x00":
        return Message("unstorable.nul", "a NUL character (U+0000)")
    return Message("unstorable.surrogate", "an unpaired surrogate ({char}, not a character)",
                   char=f"U+{ord(char):04X}")


# What an input should have been, for "Must be {what}, not {type}." (nested: each language words its own).
TEXT = Message("kind.text", "text")
EMAIL = Message("kind.email", "an e-mail address")
PHONE = Message("kind.phone", "a phone number")
WEB_ADDRESS = Message("kind.url", "a web address")
DATE = Message("kind.date", "a date")
DATE_TIME = Message("kind.datetime", "a date and time")
USER = Message("kind.user", "a user")


def require_str(raw: Any, what: str = TEXT) -> str:
    """The text itself, or FieldValueError for another JSON type, NUL, surrogates or control characters."""
    if not isinstance(raw, str):
        raise FieldValueError(Message("value.type", "Must be {what}, not {type}.", what=what, type=json_type(raw)))
    if _SUSPECT.search(raw) is None:  # the usual text: one search instead of the two below
        return raw
    problem = unstorable(raw)
    if problem is not None:
        raise FieldValueError(Message("text.unstorable", "Contains {problem}, which cannot be stored.",
                                      problem=problem))
    if _CONTROL.search(raw):
        raise FieldValueError(Message("text.control_chars", "Contains control characters; remove them."))
    return raw


_JSON_TYPES = {
    "boolean": Message("json.boolean", "a boolean"),
    "number": Message("json.number", "a number"),
    "string": Message("json.string", "a string"),
    "list": Message("json.list", "a list"),
    "object": Message("json.object", "an object"),
}


def json_type(raw: Any) -> str:
    """How a JSON value's type reads in a message: 'a number', 'a list'... (a Message: each language its own)."""
    if isinstance(raw, bool):
        return _JSON_TYPES["boolean"]
    if isinstance(raw, int | float | Decimal):
        return _JSON_TYPES["number"]
    if isinstance(raw, str):
        return _JSON_TYPES["string"]
    if isinstance(raw, list | tuple):
        return _JSON_TYPES["list"]
    if isinstance(raw, dict):
        return _JSON_TYPES["object"]
    return type(raw).__name__


def bounds_checks(value: Any, field: FieldDef) -> list[str]:
    """min / max messages for a number or a date (the limit itself is the parameter: each language writes it)."""
    if field.min is not None and value < field.min:
        return [Message("value.min", "Must be at least {limit}.", limit=field.min)]
    if field.max is not None and value > field.max:
        return [Message("value.max", "Must be at most {limit}.", limit=field.max)]
    return []


class BoundedType(FieldType):
    """A type whose values are checked against their field's `min` and `max` (numbers, dates, moments)."""

    def check(self, value: Any, field: FieldDef) -> list[str]:
        return bounds_checks(value, field)

    def checker(self, field: FieldDef) -> Callable[[Any, FieldDef], list[str]] | None:
        if type(self).check is not BoundedType.check:
            return self.check
        low, high = field.min, field.max
        if low is None and high is None:
            return None  # no bounds, nothing else checked
        # The comparisons bounds_checks makes, in its order: it words a value out of bounds.
        if high is None:
            return lambda value, field: [] if not value < low else bounds_checks(value, field)
        if low is None:
            return lambda value, field: [] if not value > high else bounds_checks(value, field)
        return lambda value, field: [] if not value < low and not value > high else bounds_checks(value, field)


def length_checker(check: Callable[[Any, FieldDef], list[str]], field: FieldDef, limit: int
                   ) -> Callable[[Any, FieldDef], list[str]]:
    """`check`, which is length_checks with `limit`, for one field: a length test first when the field has neither a
    min_length nor a pattern (only a text too long gets a message, which `check` words)."""
    if field.min_length is not None or field.pattern is not None:
        return check
    most = field.max_length if field.max_length is not None else limit

    def within(value: Any, field: FieldDef) -> list[str]:
        return [] if len(value) <= most else check(value, field)

    return within


_NUMBER_SPACES = re.compile(r"[\s\u00a0\u202f']")


def grouped_number(value: Decimal, language: str) -> str:
    """A number as `language` writes it in an input, every stored digit kept: '10 000 000,00', '10,000,000.00'."""
    places = max(0, -int(value.as_tuple().exponent))
    symbols = _number_symbols(language)
    if symbols is not None:  # Python groups by threes as the language does: only its symbols differ
        return format(value, f",.{places}f").translate(symbols)
    pattern = "#,##0." + "0" * places if places else "#,##0"
    return format_decimal(value, format=pattern, locale=language, decimal_quantization=False)


@functools.cache
def _number_symbols(language: str) -> dict[int, str] | None:
    """How to turn Python's '1,234.5' into `language`'s writing, when the language groups digits by threes and
    writes its minus sign as '-' (else None: Babel formats it, about 20 times slower)."""
    locale = Locale.parse(language)
    if locale.decimal_formats[None].grouping != (3, 3) or get_minus_sign_symbol(locale) != "-":
        return None
    return str.maketrans({",": get_group_symbol(locale), ".": get_decimal_symbol(locale)})


# Languages that group digits with a no-break space (Russian): people type a plain or a narrow one as well.
_GROUP_SPACES = re.compile("[ \u00a0\u202f]")


def typed_number(text: str, language: str) -> str:
    """A number typed as `language` writes it ('1 500,50', '1,500.50') as plain digits ('1500.50').

    Text that is no number in that language is returned as typed, for `parse` to refuse with its message (or to
    read: '1500.50' typed by a Russian reader, '1 500,50' typed by an English one, whose comma before two digits
    can only be a decimal comma). What could be read two ways is refused with both readings rather than read by
    guess: '1,50,000' in English (150,000?), '1.500' in Russian (1 500 or 1,5?), and a comma in English that
    groups nothing ('1 500,500').
    """
    candidate = text.strip()
    if not candidate or "e" in candidate.casefold():
        return text  # nothing typed, or exponent notation, which no form writes: `parse` answers as for the API
    decimal, group = get_decimal_symbol(language), get_group_symbol(language)
    if group.isspace():  # a language that groups with a (no-break) space: people type any space for it
        candidate = _GROUP_SPACES.sub(group, candidate)
    if decimal == "," and _DOT_GROUPS.fullmatch(candidate):
        whole = Decimal(candidate.replace(".", ""))
        raise _unclear(text, grouped_number(whole, language), grouped_number(Decimal(candidate).normalize(), language))
    if group == "," and _DECIMAL_COMMA.fullmatch(candidate):
        return text  # "1 500,50": a comma before one or two digits groups nothing; it is a decimal comma
    try:
        number = parse_decimal(candidate, locale=language, strict=True)
    except NumberFormatError as error:
        choices = list(dict.fromkeys(error.suggestions or []))
        if len(choices) > 1:
            raise _unclear(text, choices[0], choices[-1]) from None
        if group == "," and "," in candidate:  # this language's comma only groups, and it groups nothing here
            raise FieldValueError(Message("number.unclear", "'{text}' is unclear: write numbers like {example}.",
                                          text=text[:40], example=grouped_number(Decimal("1234.5"), language))) \
                from None
        return text
    except (ValueError, ArithmeticError):
        return text
    return format(number, "f") if number.is_finite() else text


# One comma, no point, one or two digits after it: where a comma groups thousands this can only be a decimal comma.
_DECIMAL_COMMA = re.compile(r"[+-]?[\d \u00a0\u202f]*\d,\d{1,2}")
# "1.500" with a dot before each group of three: Russian writes 1 500, yet Germans and spreadsheets write it so.
_DOT_GROUPS = re.compile(r"[+-]?\d{1,3}(\.\d{3})+")


def _unclear(text: str, first: str, second: str) -> FieldValueError:
    """A number that reads two ways: both are offered."""
    choices = Message("list.or", "{first} or {second}", first=first, second=second)
    return FieldValueError(Message("number.grouping", "'{text}' is unclear: did you mean {choices}?",
                                   text=text[:40], choices=choices))


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
    raise FieldValueError(Message("list.type", "Must be a list, not {type}.", type=json_type(raw)))


def check_form_count(field: FieldDef, count: int) -> None:
    """Refuse more values than the field holds before doing per-value work (queries, files)."""
    if not field.multiple and count > 1:
        raise ValueError(Message("list.one_only", "Takes one value only."))
    if field.multiple and count > max_items(field):
        raise ValueError(too_many_items(field))


def numeric(value: Any) -> bool:
    """True for a number a display can write (bool counts as 0 or 1, as format_number reads it)."""
    return isinstance(value, int | float | Decimal)


def max_items(field: FieldDef) -> int:
    """How many values a list field holds at most: its max_items, else MAX_ITEMS."""
    return field.max_items or MAX_ITEMS


def item_count_checks(values: list[Any], field: FieldDef) -> list[str]:
    """min_items / max_items messages for a list value."""
    if len(values) > max_items(field):
        return [too_many_items(field)]
    if field.min_items is not None and len(values) < field.min_items:
        return [Message("list.too_few", "Must have at least {count} values.", count=field.min_items)]
    return []


def too_many_items(field: FieldDef) -> Message:
    """The message for a list longer than the field holds."""
    return Message("list.too_many", "Must have at most {count} values.", count=max_items(field))


def check_item_count(items: Any, field: FieldDef) -> None:
    """Refuse a list longer than the field may hold before any of its items is parsed (CPU is per item)."""
    if len(items) > max_items(field):
        raise FieldValueError(too_many_items(field))


_ID_TEXT = re.compile(r"[0-9]{1,19}")


def record_kind(entity: str | Label | None) -> Message:
    """'a Company record': what a reference field's value must be the id of (its label, else its name)."""
    return Message("kind.record", "a {entity} record", entity=entity)


def parse_id(raw: Any, what: str) -> int:
    """A record or user id (1..MAX_SAFE_INTEGER) from a whole number (6 or 6.0), digits ("6") or {"id": 6}."""
    if isinstance(raw, bool):
        raise FieldValueError(Message("id.boolean", "Must be {what} id, not a boolean.", what=what))
    if isinstance(raw, dict) and "id" in raw:
        raw = raw["id"]
    if isinstance(raw, str) and _ID_TEXT.fullmatch(raw.strip()):
        raw = int(raw.strip())
    elif isinstance(raw, float | Decimal) and not isinstance(raw, bool):
        # A JSON number written as 6.0 is the whole number 6, as for integer fields; 6.5 is no id.
        # Magnitude first: int() of Decimal("1E+999999") would build a number of a million digits.
        number = Decimal(raw)  # exactly the float's value; one type for abs() and int()
        if not number.is_finite() or abs(number) > MAX_SAFE_INTEGER or number != int(number):
            raise FieldValueError(Message("id.not_whole", "Must be {what} id (a positive whole number), not {value}.",
                                          what=what, value=str(raw)))
        raw = int(number)
    if not isinstance(raw, int) or isinstance(raw, bool) or raw <= 0 or raw > MAX_SAFE_INTEGER:
        raise FieldValueError(Message("id.invalid", "Must be {what} id (a positive whole number).", what=what))
    return raw
