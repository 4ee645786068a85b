"""Single values: text, contact data, numbers, booleans, dates."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import email_validator
import phonenumbers
from email_validator import EmailNotValidError, validate_email

from kartoteka.messages import N_, Message
from kartoteka.metadata.types.base import (
    BOUND,
    CURRENCY,
    DATE,
    DATE_TIME,
    EMAIL,
    LABEL,
    MAX_DECIMAL_DIGITS,
    MAX_LENGTH,
    MAX_SAFE_INTEGER,
    MAX_TEXT_LENGTH,
    MAX_TEXTAREA_LENGTH,
    MIN_LENGTH,
    PATTERN,
    PHONE,
    PLACES,
    UNIQUE,
    WEB_ADDRESS,
    BoundedType,
    Display,
    FieldType,
    FieldValueError,
    FormContext,
    ParseContext,
    PostedForm,
    blank,
    formula_type_message,
    grouped_number,
    json_type,
    length_checker,
    length_checks,
    number_text,
    numeric,
    require_str,
    typed_number,
    unstorable,
)

if TYPE_CHECKING:
    from kartoteka.metadata.model import FieldDef

_TEXT_OPTIONS: Mapping[str, Mapping[str, Any]] = {
    "min_length": MIN_LENGTH, "max_length": MAX_LENGTH, "pattern": PATTERN, "pattern_message": LABEL,
}


class TextType(FieldType):
    name = "text"
    form_items: str | None = "texts"
    option_schema = {**_TEXT_OPTIONS, "unique": UNIQUE}
    supports_multiple = True
    searchable = True
    names_records = True
    limit = MAX_TEXT_LENGTH

    def parse(self, raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
        if not isinstance(raw, str):
            return None if raw is None else require_str(raw)  # require_str refuses whatever is not text
        text = raw.strip()  # blank() and then require_str(raw).strip(), stripping once
        if not text:
            return None
        require_str(raw)
        if "\n" in text or "\r" in text:
            raise FieldValueError(Message("text.single_line", "Must be a single line."))
        return text

    def check(self, value: Any, field: FieldDef) -> list[str]:
        return length_checks(value, field, self.limit)

    def checker(self, field: FieldDef) -> Callable[[Any, FieldDef], list[str]] | None:
        return length_checker(self.check, field, self.limit) if type(self).check is TextType.check else self.check

    def from_formula(self, value: Any, field: FieldDef) -> Any:
        text = str(value)
        problem = unstorable(text)
        if problem is not None:  # PostgreSQL's jsonb refuses NUL; UTF-8 cannot encode a lone surrogate
            raise FieldValueError(Message("formula.unstorable", "the result holds {problem}, which cannot be stored",
                                          problem=problem))
        return text


class TextareaType(TextType):
    name = "textarea"
    option_schema = {**_TEXT_OPTIONS, "rows": {"type": "integer", "minimum": 1, "maximum": 50}}
    supports_multiple = False
    names_records = False
    limit = MAX_TEXTAREA_LENGTH
    widget = "textarea"
    form_items = None
    value_macro = "prose_value"

    def parse(self, raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
        if not isinstance(raw, str):
            return None if raw is None else require_str(raw)  # require_str refuses whatever is not text
        text = raw.strip()  # blank() and then require_str(raw).strip(), stripping once
        if not text:
            return None
        require_str(raw)
        return text.replace("\r\n", "\n")


MAX_EMAIL_LENGTH = 254  # RFC 5321: the longest forward path

# An everyday ASCII address, which email-validator accepts as typed but for case: a dot-atom local part (RFC 5322
# atext) and a host name of two or more labels of letters, digits and inner hyphens (at most 63 characters each),
# the last of them letters only. email-validator takes 40-60 µs for any address (its Unicode and IDNA checks); this
# pattern takes about 1 µs, and what it accepts the validator accepts too, with the same result once lowered
# (tests/test_email_parse.py compares the two over generated addresses). Anything else, whether valid (иван@пример.рф,
# punycode) or not, goes to the validator, which also words every refusal.
_ATEXT = r"a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~"
_PLAIN_EMAIL = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*@(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{{0,61}}[a-zA-Z0-9])?\.)+"
                          r"[a-zA-Z]{1,63}")

_SPECIAL_USE = frozenset(email_validator.SPECIAL_USE_DOMAIN_NAMES)
_SPECIAL_USE_ENDINGS = tuple("." + d for d in email_validator.SPECIAL_USE_DOMAIN_NAMES)


def _plain_email(text: str) -> bool:
    """True for an address `_PLAIN_EMAIL` vouches for: not one with "--" in its host (R-LDH labels such as punycode's
    "xn--", which the validator checks further) nor one under a special-use domain (.local, .test...), which it
    refuses."""
    if not text.isascii() or _PLAIN_EMAIL.fullmatch(text) is None:
        return False
    domain = text[text.index("@") + 1:].lower()
    return "--" not in domain and domain not in _SPECIAL_USE and not domain.endswith(_SPECIAL_USE_ENDINGS)


def _invalid_email(text: str) -> FieldValueError:
    return FieldValueError(Message("email.invalid", "'{text}' is not a valid e-mail address.", text=text[:60]))


class EmailType(FieldType):
    """An address as email-validator reads it (syntax only, no DNS), internationalised ones included.

    The API advertises `idn-email` (RFC 6531) because addresses like иван@пример.рф are accepted;
    quoted local parts, IP-literal domains and special-use domains (.local, .test...) are refused.
    """

    name = "email"
    option_schema = {"unique": UNIQUE, "max_length": MAX_LENGTH}
    supports_multiple = True
    searchable = True
    widget = "email_input"
    form_items = "texts"
    value_macro = "email_value"
    json_schema = {"type": "string", "format": "idn-email", "maxLength": MAX_EMAIL_LENGTH}

    def key_bytes(self, field: FieldDef) -> int | None:
        return 4 * min(field.max_length or MAX_EMAIL_LENGTH, MAX_EMAIL_LENGTH) + 4

    def parse(self, raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
        if type(raw) is str and len(raw) <= MAX_EMAIL_LENGTH and _plain_email(raw):
            return raw.lower()  # no spaces, nothing require_str refuses: what the general way gives
        return self._parse_any(raw)

    def _parse_any(self, raw: Any) -> str | None:
        """`parse` of any input."""
        if blank(raw):
            return None
        text = require_str(raw, EMAIL).strip()
        if len(text) > MAX_EMAIL_LENGTH:  # before the validator, whose work grows with the text
            raise _invalid_email(text)
        # The whole address is kept in lower case, so that a search or a uniqueness check finds it however typed.
        if _plain_email(text):
            return text.lower()
        try:
            address = validate_email(text, check_deliverability=False, allow_smtputf8=True)
        except EmailNotValidError:
            raise _invalid_email(text) from None
        # The validator gives the domain in Unicode (пример.рф, not xn--e1afmkfd.xn--p1ai).
        return address.normalized.lower()

    def check(self, value: Any, field: FieldDef) -> list[str]:
        return length_checks(value, field, 254)

    def checker(self, field: FieldDef) -> Callable[[Any, FieldDef], list[str]] | None:
        return length_checker(self.check, field, 254) if type(self).check is EmailType.check else self.check


class PhoneType(FieldType):
    name = "phone"
    option_schema = {"unique": UNIQUE, "region": {"type": "string", "pattern": "^[A-Z]{2}$",
                                                   "description": "ISO 3166 country of numbers written without +."}}
    supports_multiple = True
    searchable = True
    widget = "phone_input"
    form_items = "texts"
    value_macro = "phone_value"
    json_schema = {"type": "string", "format": "phone"}

    def parse(self, raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
        if blank(raw):
            return None
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = str(raw)
        text = require_str(raw, PHONE).strip()
        region = field.region or ctx.phone_region
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            raise FieldValueError(Message("phone.invalid", "'{text}' is not a phone number.", text=text[:40])) from None
        if not phonenumbers.is_valid_number(number):
            raise FieldValueError(Message("phone.invalid_for_country",
                                          "'{text}' is not a valid phone number for its country.", text=text[:40]))
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

    def display(self, value: Any, field: FieldDef, out: Display) -> str:
        """The stored E.164 number as people write it, grouped as its country does: '+7 912 345-67-89'.

        The international form for every number, the deployment's own country's too (not '8 (912) 345-67-89'):
        it reads the same to every user whatever their language and country, dials from any phone (abroad and
        over IP telephony the trunk prefix 8 does not), and '8 (7xx)' would not tell Russia from Kazakhstan,
        which share +7. A value that is not a phone number is shown as stored.
        """
        text = str(value)
        try:
            number = phonenumbers.parse(text, None)
        except phonenumbers.NumberParseException:
            return text
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


# A scheme of its own ("javascript:", "mailto:"), not a host followed by a port ("example.com:8080").
_OTHER_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(?!\d)")


class UrlType(FieldType):
    name = "url"
    option_schema = {"unique": UNIQUE, "max_length": MAX_LENGTH}
    supports_multiple = True
    searchable = True
    widget = "url_input"
    form_items = "texts"
    value_macro = "url_value"
    json_schema = {"type": "string", "format": "uri"}

    def parse(self, raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
        if blank(raw):
            return None
        typed = text = require_str(raw, WEB_ADDRESS).strip()
        # Messages quote what the user typed, not the address completed from it.
        invalid = FieldValueError(Message("url.invalid", "'{text}' is not a valid http(s) address.", text=typed[:60]))
        if "://" not in text:
            if _OTHER_SCHEME.match(text):  # "javascript:alert(1)", "mailto:a@b.ru": not a web page
                raise invalid
            text = "https://" + text
        try:
            parts = urlsplit(text)
        except ValueError:  # an unclosed or empty IPv6 bracket: "http://[::1", "http://[]"
            raise invalid from None
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https") or "." not in host or " " in text or len(text) > 2000:
            raise invalid
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:  # .port raises on a port beyond 65535 or one that is not digits
            port_ok = False
        if not port_ok:
            raise FieldValueError(Message("url.port", "'{text}' is not a valid http(s) address: the port must be "
                                          "from 1 to 65535.", text=typed[:60]))
        return text

    def check(self, value: Any, field: FieldDef) -> list[str]:
        return length_checks(value, field, 2000)

    def checker(self, field: FieldDef) -> Callable[[Any, FieldDef], list[str]] | None:
        return length_checker(self.check, field, 2000) if type(self).check is UrlType.check else self.check


# Built once: compiling a pattern or a constant per parse showed in every save's profile.
_DECIMAL_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_DECIMAL_LIMIT = Decimal(10) ** MAX_DECIMAL_DIGITS
_QUANTA = tuple(Decimal(1).scaleb(-places) for places in range(9))  # 10 ** -places for every `places` option
_FEW_DIGITS = tuple(Decimal(10) ** (MAX_DECIMAL_DIGITS - places) for places in range(9))


# Plain decimal text, as clients and forms mostly send amounts ('1500', '9892.73', '12.5'): ASCII digits, at most
# `places` of them after a point and at most 15 - places before it (so at most 15 digits in all). For such text the
# general parse comes to Decimal(text).quantize(10 ** -places); tests/test_fast_parse.py compares the two over
# generated texts. Anything else (a sign, spaces, a comma, more places, an exponent...) takes the general way.
_PLAIN_DECIMALS = tuple(re.compile(rf"[0-9]{{1,{MAX_DECIMAL_DIGITS - places}}}"
                                   + (rf"(?:\.[0-9]{{1,{places}}})?" if places else ""))
                        for places in range(len(_QUANTA)))


def _plain_decimal(raw: Any, places: int | None) -> Decimal | None:
    """The value of plain decimal text with `places` places (see _PLAIN_DECIMALS); None for anything else."""
    if type(raw) is str and places is not None and 0 <= places < len(_PLAIN_DECIMALS) \
            and _PLAIN_DECIMALS[places].fullmatch(raw) is not None:
        return Decimal(raw).quantize(_QUANTA[places])
    return None


def _quantum(places: int) -> Decimal:
    """10 ** -places, the exponent of a value with `places` decimal places."""
    return _QUANTA[places] if 0 <= places < len(_QUANTA) else Decimal(1).scaleb(-places)


def _formula_number(value: Any) -> Decimal:
    """A formula's numeric result as a Decimal within what a JSON number holds; FieldValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise FieldValueError(formula_type_message(value, "number"))
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite() or abs(number) >= _DECIMAL_LIMIT:
        raise FieldValueError(Message("formula.too_large", "the result is too large"))
    return number


class NumberType(BoundedType):
    """What the number types share: a range filter, sums on a board, numeric display."""

    storage = "number"
    filter_kind = "range"
    sums_board = True

    def filter_input(self, field: FieldDef, out: Display) -> dict[str, str]:
        # Whole numbers only (IntegerType): no decimal separator for the browser to drop, and the edit form's input
        # is a number input too. DecimalType types its own.
        return {"type": "number", "step": "any"}


_INTEGER_TEXT = re.compile(r"[+-]?\d{1,30}")
_NOT_WHOLE = Message("number.not_whole", "Must be a whole number.")
_INTEGER_RANGE = Message("integer.range", "Must be between -{max} and {max}.", max=MAX_SAFE_INTEGER)


class IntegerType(NumberType):
    name = "integer"
    option_schema = {"min": BOUND, "max": BOUND, "unique": UNIQUE}
    supports_multiple = True
    json_schema = {"type": "integer"}
    widget = "integer_input"

    def parse(self, raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
        if blank(raw):
            return None
        if isinstance(raw, bool):
            raise FieldValueError(Message("integer.boolean", "Must be a whole number, not a boolean."))
        if isinstance(raw, int):
            number = raw
        elif isinstance(raw, float | Decimal):
            exact = Decimal(raw)  # exactly the float's value; one type for abs() and int()
            # is_finite first: comparing a signalling Decimal NaN raises InvalidOperation.
            if not exact.is_finite():
                raise FieldValueError(_NOT_WHOLE)
            # Magnitude before int(): int(Decimal("1E+999999")) would build a million-digit number.
            if abs(exact) > MAX_SAFE_INTEGER:
                raise FieldValueError(_INTEGER_RANGE)
            if exact != int(exact):
                raise FieldValueError(_NOT_WHOLE)
            number = int(exact)
        elif isinstance(raw, str):
            text = number_text(raw)
            if not _INTEGER_TEXT.fullmatch(text):
                raise FieldValueError(Message("integer.invalid", "'{text}' is not a whole number.",
                                              text=raw.strip()[:40]))
            number = int(text)
        else:
            raise FieldValueError(Message("integer.type", "Must be a whole number, not {type}.", type=json_type(raw)))
        if abs(number) > MAX_SAFE_INTEGER:
            raise FieldValueError(_INTEGER_RANGE)
        return number

    def from_formula(self, value: Any, field: FieldDef) -> Any:
        return int(_formula_number(value).to_integral_value(rounding=ROUND_HALF_UP))

    def display(self, value: Any, field: FieldDef, out: Display) -> str:
        return out.number(value) if numeric(value) else str(value)

    def sum_places(self, field: FieldDef) -> int | None:
        return 0


_TOO_LARGE = Message("number.too_large", "Is too large: at most {digits} significant digits.",
                     digits=MAX_DECIMAL_DIGITS)


class DecimalType(NumberType):
    name = "decimal"
    option_schema = {"min": BOUND, "max": BOUND, "places": PLACES, "unique": UNIQUE}
    supports_multiple = True
    json_schema = {"type": "string", "format": "decimal"}
    default_places: int | None = None
    widget = "decimal_input"

    def places(self, field: FieldDef) -> int | None:
        return field.places if field.places is not None else self.default_places

    def parse(self, raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
        places = self.places(field)
        number = _plain_decimal(raw, places)
        return number if number is not None else self._parse_any(raw, places)

    def parser(self, field: FieldDef) -> Callable[[Any, FieldDef, ParseContext], Any]:
        places = self.places(field)
        # PercentType's parse takes a "%" off text first: plain text has none.
        if places is None or not 0 <= places < len(_PLAIN_DECIMALS) \
                or type(self).parse not in (DecimalType.parse, PercentType.parse):
            return self.parse
        plain, quantum, parse = _PLAIN_DECIMALS[places].fullmatch, _QUANTA[places], self.parse

        def parse_plain(raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
            if type(raw) is str and plain(raw) is not None:  # _plain_decimal with the field's places worked out
                return Decimal(raw).quantize(quantum)
            return parse(raw, field, ctx)

        return parse_plain

    def _parse_any(self, raw: Any, places: int | None) -> Decimal | None:
        """`parse` of any input, with the field's `places`."""
        if blank(raw):
            return None
        if isinstance(raw, bool):
            raise FieldValueError(Message("number.boolean", "Must be a number, not a boolean."))
        exponent: int | str | None = None  # known from the text itself, else read from the number
        if isinstance(raw, Decimal):
            number = raw
        elif isinstance(raw, int):
            number = Decimal(raw)
        elif isinstance(raw, float):
            number = Decimal(repr(raw))
        elif isinstance(raw, str):
            text = number_text(raw)
            if not _DECIMAL_TEXT.fullmatch(text):
                raise FieldValueError(Message("number.invalid", "'{text}' is not a number.", text=raw.strip()[:40]))
            number = Decimal(text)
            point = text.find(".")  # digits [sign] [digits] [. digits]: as many places as digits after the point
            exponent = 0 if point < 0 else point + 1 - len(text)
        else:
            raise FieldValueError(Message("number.type", "Must be a number, not {type}.", type=json_type(raw)))
        if not number.is_finite():
            raise FieldValueError(Message("number.not_finite", "Must be a finite number."))
        if number.is_zero():
            number = number.copy_abs()  # "-0" is 0: stored, shown and compared as such
        if exponent is None:
            exponent = number.as_tuple().exponent
        if places is not None and isinstance(exponent, int) and -exponent > places:
            number = number.normalize()
            exponent = number.as_tuple().exponent
            if isinstance(exponent, int) and -exponent > places:
                raise FieldValueError(Message("number.places",
                                              "Must have at most {places} digits after the decimal point.",
                                              places=places))
        if places is not None:
            try:
                number = number.quantize(_quantum(places))
            except InvalidOperation:  # more digits than the context holds: far too large anyway
                raise FieldValueError(_TOO_LARGE) from None
        # Below 10 ** (15 - places) a value quantized to `places` has at most 15 digits: nothing to count.
        if places is None or places >= len(_FEW_DIGITS) or abs(number) >= _FEW_DIGITS[places]:
            digits = len(number.normalize().as_tuple().digits)
            if digits > MAX_DECIMAL_DIGITS or abs(number) >= _DECIMAL_LIMIT:
                raise FieldValueError(_TOO_LARGE)
        if number and number.adjusted() < -307:  # below the smallest normal double: stored as 0 or inexact
            raise FieldValueError(Message("number.too_small", "Is too close to zero to be stored."))
        return number

    def to_storage(self, value: Any) -> Any:
        # Up to 15 significant digits a double holds the decimal exactly; see MAX_DECIMAL_DIGITS.
        return int(value) if value == value.to_integral_value() else float(value)

    def from_storage(self, stored: Any, field: FieldDef | None = None) -> Any:
        number = Decimal(repr(stored)) if isinstance(stored, float) else Decimal(stored)
        places = self.places(field) if field is not None else self.default_places
        return number.quantize(_quantum(places)) if places is not None else number

    def to_json(self, value: Any) -> Any:
        return format(value, "f")

    def from_formula(self, value: Any, field: FieldDef) -> Any:
        places = self.places(field)
        # A Decimal result (what arithmetic on amounts gives) is _formula_number's own number: no copy to make.
        number = value if type(value) is Decimal and value.is_finite() and abs(value) < _DECIMAL_LIMIT \
            else _formula_number(value)
        if places is not None:
            return number.quantize(_quantum(places), rounding=ROUND_HALF_UP)
        with localcontext() as context:  # what a JSON number (a double) holds exactly
            context.prec = MAX_DECIMAL_DIGITS
            return (+number).normalize()

    def display(self, value: Any, field: FieldDef, out: Display) -> str:
        return out.number(value, self.places(field)) if numeric(value) else str(value)

    def localized_input_text(self, value: Any, field: FieldDef, titles: Mapping[int, str], language: str) -> str:
        if not isinstance(value, Decimal) or not value.is_finite() or value.adjusted() > MAX_DECIMAL_DIGITS:
            return self.input_text(value, field, titles)
        return grouped_number(value, language)

    def typed_text(self, text: str, field: FieldDef, language: str) -> str:
        return typed_number(text, language)

    def filter_input(self, field: FieldDef, out: Display) -> dict[str, str]:
        # Text, as the edit form's: a number input drops a decimal comma ('1500,5' became 15005) and shows nothing
        # for a value it cannot read ('10 000 000' from a URL the list does filter by).
        return {"type": "text", "inputmode": "decimal", "autocomplete": "off"}

    def sum_places(self, field: FieldDef) -> int | None:
        return self.places(field)


class MoneyType(DecimalType):
    name = "money"
    option_schema = {"min": BOUND, "max": BOUND, "currency": {**CURRENCY, "default": "RUB"}, "places": PLACES,
                     "unique": UNIQUE}
    supports_multiple = False
    json_schema = {"type": "string", "format": "decimal"}
    default_places = 2
    widget = "money_input"

    def display(self, value: Any, field: FieldDef, out: Display) -> str:
        places = self.places(field)
        return out.money(value, field.currency, 2 if places is None else places) if numeric(value) else str(value)


class PercentType(DecimalType):
    name = "percent"
    option_schema = {"min": BOUND, "max": BOUND, "places": PLACES}
    supports_multiple = False
    sums_board = False  # a sum of percentages means nothing
    default_places = 2
    widget = "percent_input"

    def display(self, value: Any, field: FieldDef, out: Display) -> str:
        return out.percent(value, self.places(field)) if numeric(value) else str(value)

    def parse(self, raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
        if isinstance(raw, str):
            raw = raw.strip().removesuffix("%")
        return super().parse(raw, field, ctx)


class BooleanType(FieldType):
    name = "boolean"
    storage = "boolean"
    json_schema = {"type": "boolean"}
    filter_kind = "boolean"
    offered_filter = True
    widget = "checkbox"
    label_kind = "inline"
    _TRUE = frozenset({"true", "1", "yes", "on", "да", "y"})
    _FALSE = frozenset({"false", "0", "no", "off", "нет", "n"})

    def parse(self, raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
        if blank(raw):
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
        raise FieldValueError(Message("boolean.invalid", "Must be true or false."))

    def from_formula(self, value: Any, field: FieldDef) -> Any:
        return bool(value)

    def display(self, value: Any, field: FieldDef, out: Display) -> str:
        return out.yes_no(value) if isinstance(value, bool) else str(value)

    def form_value(self, field: FieldDef, form: PostedForm, context: FormContext) -> Any:
        return form.get(field.name, "false")  # an unticked box sends nothing


# How a reader types a date, by language (Babel patterns): Russian day first, as the card page writes it; everyone
# else ISO 8601, which no reader misreads (an American's 03/01/2025 is the 3rd of January to most of the world).
_DATE_INPUT_PATTERNS: Mapping[str, str] = {"ru": "dd.MM.yyyy"}
_ISO_DATE_PATTERN = "yyyy-MM-dd"
_TIME_INPUT_PATTERN = "HH:mm"  # ":ss" follows when the value has seconds
# What a reader may type: year first in every language, and day first with dots (as DateType.parse reads them);
# day first with dashes or slashes too where the language writes the day first (01/03/2025 is ambiguous in English).
# A time follows after a space (or ISO's T), with or without seconds.
_YEAR_FIRST = r"(?P<year>\d{4})[-./](?P<month>\d{1,2})[-./](?P<day>\d{1,2})"
_DAY_FIRST_DOTTED = r"(?P<day>\d{1,2})\.(?P<month>\d{1,2})\.(?P<year>\d{4})"
_DAY_FIRST = r"(?P<day>\d{1,2})[-./](?P<month>\d{1,2})[-./](?P<year>\d{4})"
_TYPED_TIME = r"(?:,?\s+|T)(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?"


# The input patterns hold digits and separators only: written by str.format, compiled once per pattern (Babel's
# format_date reads the pattern each time, about 15 us a date; a 60-field form has several).
_INPUT_FIELDS = {"yyyy": "{0.year:04d}", "MM": "{0.month:02d}", "dd": "{0.day:02d}", "HH": "{0.hour:02d}",
                 "mm": "{0.minute:02d}", "ss": "{0.second:02d}"}
_INPUT_TOKENS = re.compile("|".join(_INPUT_FIELDS))


@functools.cache
def _input_format(pattern: str) -> str:
    """A str.format template writing `pattern`'s fields; ValueError if the pattern has letters it does not know."""
    literals = _INPUT_TOKENS.split(pattern)
    if any(char.isalpha() or char in "'{}" for literal in literals for char in literal):
        raise ValueError(f"not a digits-only input pattern: {pattern!r}")
    fields = [_INPUT_FIELDS[token] for token in _INPUT_TOKENS.findall(pattern)]
    return "".join(literal + (fields[i] if i < len(fields) else "") for i, literal in enumerate(literals))


def input_digits(moment: date, pattern: str) -> str:
    """`moment` written by an input pattern of digits ('dd.MM.yyyy', 'yyyy-MM-dd HH:mm:ss'), as Babel writes it."""
    return _input_format(pattern).format(moment)


def date_input_pattern(language: str) -> str:
    """The Babel pattern of a date as a reader of `language` types it: 'dd.MM.yyyy' (ru), 'yyyy-MM-dd' (others)."""
    return _DATE_INPUT_PATTERNS.get(language, _ISO_DATE_PATTERN)


def _impossible_date(text: str) -> Message:
    """A date written right that does not exist (31.02, month 13): Python's reason is English, so it is not quoted."""
    return Message("date.impossible", "'{text}' is not a date that exists (check the day and the month).",
                   text=text[:40])


def _typed_iso(text: str, language: str, with_time: bool) -> str | None:
    """A date (and time) typed in an order the reader's language reads as ISO 8601 text ('01.03.2025 14:30' ->
    '2025-03-01T14:30'); None when it is written some other way (`parse` reads it or says what is wrong).
    FieldValueError when it names no real day or time (31.02.2025, 25:00)."""
    stripped = text.strip()
    tail = f"(?:{_TYPED_TIME})?" if with_time else ""  # a date alone is midnight, as in ISO 8601
    day_first = _DAY_FIRST if date_input_pattern(language).startswith("dd") else _DAY_FIRST_DOTTED
    match = re.fullmatch(_YEAR_FIRST + tail, stripped) or re.fullmatch(day_first + tail, stripped)
    if match is None:
        return None
    parts = {key: int(number) for key, number in match.groupdict().items() if number is not None}
    try:
        day = date(parts["year"], parts["month"], parts["day"])
    except ValueError:
        raise FieldValueError(_impossible_date(stripped)) from None
    if "hour" not in parts:
        return day.isoformat()
    try:
        moment = time(parts["hour"], parts["minute"], parts.get("second", 0))
    except ValueError:
        raise FieldValueError(Message("time.impossible", "'{text}' is not a time that exists (hours 0–23, minutes "
                                      "and seconds 0–59).", text=stripped[:40])) from None
    return f"{day.isoformat()}T{moment.isoformat('seconds' if 'second' in parts else 'minutes')}"


def _date_filter_input(out: Display) -> dict[str, str]:
    """A date range filter's inputs: text in the reader's order (as the card form's), not Chromium's date input in
    the browser's locale; app.js's calendar reads and writes data-date-format."""
    return {"type": "text", "autocomplete": "off", "spellcheck": "false",
            "data-date-format": date_input_pattern(out.language), "placeholder": out.text(N_("YYYY-MM-DD"))}


_DOTTED_DATE = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# ISO text alone, as clients and forms mostly send a date: the general parse comes to date.fromisoformat(raw) for it
# (tests/test_fast_parse.py compares the two).
_PLAIN_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class DateType(BoundedType):
    name = "date"
    marks_moment = True
    option_schema = {"min": BOUND, "max": BOUND}
    supports_multiple = True
    json_schema = {"type": "string", "format": "date"}
    filter_kind = "range"
    filter_calendar = "date"
    widget = "date_input"

    def key_bytes(self, field: FieldDef) -> int | None:
        return 16  # YYYY-MM-DD

    def parse(self, raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
        if type(raw) is str and _PLAIN_DATE.fullmatch(raw) is not None:
            try:
                return date.fromisoformat(raw)
            except ValueError:
                pass  # a day that does not exist: refused the general way, in its words
        return self._parse_any(raw)

    def _parse_any(self, raw: Any) -> date | None:
        """`parse` of any input."""
        if blank(raw):
            return None
        if isinstance(raw, datetime):
            raise FieldValueError(Message("date.has_time", "Must be a date without a time."))
        if isinstance(raw, date):
            return raw
        text = require_str(raw, DATE).strip()
        match = _DOTTED_DATE.fullmatch(text)
        try:
            if match:
                day, month, year = (int(g) for g in match.groups())
                return date(year, month, day)
            if _ISO_DATE.fullmatch(text):
                return date.fromisoformat(text)
        except ValueError:
            raise FieldValueError(_impossible_date(text)) from None
        raise FieldValueError(Message("date.invalid", "'{text}' is not a date; use YYYY-MM-DD or DD.MM.YYYY.",
                                      text=text[:40]))

    def to_storage(self, value: Any) -> Any:
        return value.isoformat()

    def from_storage(self, stored: Any, field: FieldDef | None = None) -> Any:
        return date.fromisoformat(stored)

    def from_formula(self, value: Any, field: FieldDef) -> Any:
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        return super().from_formula(value, field)

    def display(self, value: Any, field: FieldDef, out: Display) -> str:
        shown = out.date(value)
        return shown if shown is not None else str(value)

    def input_pattern(self, language: str) -> str:
        """How the form's input writes a date for a reader of `language` (its placeholder and app.js follow it)."""
        return date_input_pattern(language)

    def localized_input_text(self, value: Any, field: FieldDef, titles: Mapping[int, str], language: str) -> str:
        if isinstance(value, date) and not isinstance(value, datetime):
            return input_digits(value, self.input_pattern(language))
        return super().localized_input_text(value, field, titles, language)

    def typed_text(self, text: str, field: FieldDef, language: str) -> str:
        return _typed_iso(text, language, with_time=False) or text

    def filter_input(self, field: FieldDef, out: Display) -> dict[str, str]:
        return _date_filter_input(out)


class DateTimeType(BoundedType):
    name = "datetime"
    marks_moment = True
    option_schema = {"min": BOUND, "max": BOUND}
    json_schema = {"type": "string", "format": "date-time"}
    filter_kind = "range"
    filter_calendar = "date"
    widget = "datetime_input"

    def key_bytes(self, field: FieldDef) -> int | None:
        return 32  # YYYY-MM-DDTHH:MM:SSZ

    def parse(self, raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
        if blank(raw):
            return None
        if isinstance(raw, datetime):
            moment = raw
        elif isinstance(raw, date):
            raise FieldValueError(Message("datetime.date_only", "Must be a date with a time."))
        else:
            text = require_str(raw, DATE_TIME).strip()
            try:
                moment = datetime.fromisoformat(text.replace(" ", "T", 1))
            except ValueError:
                raise FieldValueError(Message(
                    "datetime.invalid",
                    "'{text}' is not a date and time; write it as 2025-03-01 14:30 (ISO 8601; a time zone may "
                    "follow, as in 2025-03-01T14:30:00+03:00).",
                    text=text[:40])) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=ctx.timezone)
        try:
            return moment.astimezone(UTC).replace(microsecond=0)
        except OverflowError:  # 0001-01-01T00:00+01:00 is before the first representable UTC moment
            raise FieldValueError(Message("datetime.out_of_range", "Is out of the supported range of dates.")) from None

    def to_storage(self, value: Any) -> Any:
        # One fixed UTC format so that text order is time order in indexes.
        # isoformat() pads the year to four digits; strftime("%Y") does not for years before 1000.
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"

    def from_storage(self, stored: Any, field: FieldDef | None = None) -> Any:
        return datetime.fromisoformat(stored).astimezone(UTC)

    def from_formula(self, value: Any, field: FieldDef) -> Any:
        if isinstance(value, datetime):
            # Whole seconds, as stored: a result with microseconds differed from itself read back, so every save
            # counted the formula as changed and made a new version (a ticket's sla_due).
            return value.astimezone(UTC).replace(microsecond=0)
        if isinstance(value, date):
            return datetime.combine(value, time(), UTC)
        return super().from_formula(value, field)

    def display(self, value: Any, field: FieldDef, out: Display) -> str:
        shown = out.datetime(value)
        return shown if shown is not None else str(value)

    def input_pattern(self, language: str) -> str:
        """How the form's input writes a moment for a reader of `language`, seconds aside (added when it has some)."""
        return f"{date_input_pattern(language)} {_TIME_INPUT_PATTERN}"

    def localized_input_text(self, value: Any, field: FieldDef, titles: Mapping[int, str], language: str) -> str:
        if not isinstance(value, datetime):
            return super().localized_input_text(value, field, titles, language)
        # In UTC, as the form reads a moment typed without a zone. Seconds only when there are some: a form must
        # not cut 09:15:37 to 09:15 on an unchanged save.
        moment = value.astimezone(UTC).replace(tzinfo=None)
        pattern = self.input_pattern(language) + (":ss" if moment.second else "")
        return input_digits(moment, pattern)

    def typed_text(self, text: str, field: FieldDef, language: str) -> str:
        return _typed_iso(text, language, with_time=True) or text

    def filter_input(self, field: FieldDef, out: Display) -> dict[str, str]:
        return _date_filter_input(out)  # a day is what a list is filtered by; a time may be typed after it


TYPES = (TextType, TextareaType, EmailType, PhoneType, UrlType, IntegerType, DecimalType, MoneyType, PercentType,
         BooleanType, DateType, DateTimeType)
