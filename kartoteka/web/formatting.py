"""Typed field values as display text for HTML pages, in English or Russian.

Pure functions: no Flask, no locale module, no database. Every function returns plain text (templates escape it)
and never raises on a value of its field's type; an unknown language is formatted as English.

Russian groups thousands with a narrow no-break space (U+202F) and writes a decimal comma; English groups with a
comma and writes a decimal point. A currency symbol, code or percent sign is joined to its number with a no-break
space (U+00A0), so that it never wraps onto a line of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, tzinfo
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any

from kartoteka.metadata.model import FieldDef, Label

__all__ = ["format_date", "format_datetime", "format_money", "format_number", "format_percent", "format_value"]

NBSP = "\u00a0"
NARROW_NBSP = "\u202f"

# Symbols written after the number in Russian; in English only _PREFIX_SYMBOLS get a symbol, the rest their code.
CURRENCY_SYMBOLS: Mapping[str, str] = {"RUB": "₽", "USD": "$", "EUR": "€", "GBP": "£", "CNY": "¥", "KZT": "₸"}
_PREFIX_SYMBOLS = frozenset({"USD", "EUR", "GBP"})


def currency_symbol(code: str | None) -> str:
    """The symbol of a currency code (₽ for RUB), or the code itself when there is none."""
    if not code:
        return ""
    return CURRENCY_SYMBOLS.get(code.upper(), code.upper())

# Numbers with more integer or leading fractional digits than this are written in scientific notation.
_MAX_POSITIONAL_DIGITS = 1000

_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_YES_NO = {"en": ("Yes", "No"), "ru": ("Да", "Нет")}


def _lang(language: str | None) -> str:
    """'ru' for Russian (also 'ru-RU', 'ru_RU'), otherwise 'en'."""
    if isinstance(language, str) and language.replace("_", "-").split("-")[0].strip().lower() == "ru":
        return "ru"
    return "en"


def _as_decimal(value: Any) -> Decimal | None:
    """A Decimal from a Decimal, int or float; None for anything else."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        return Decimal(int(value))
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    return None


def _quantize(number: Decimal, places: int) -> Decimal:
    """`number` rounded half up to `places` decimals; unchanged if it cannot be (astronomically large)."""
    try:
        context = Context(prec=max(28, number.adjusted() + places + 2), rounding=ROUND_HALF_UP,
                          Emax=999_999_999, Emin=-999_999_999)
        return number.quantize(Decimal(1).scaleb(-places, context), context=context)
    except (InvalidOperation, ValueError, OverflowError, MemoryError):
        return number


def _group(digits: str, separator: str) -> str:
    """'1500000' → '1,500,000' with `separator`."""
    head = len(digits) % 3 or 3
    return separator.join([digits[:head], *(digits[i:i + 3] for i in range(head, len(digits), 3))])


def _scientific(number: Decimal, language: str) -> str:
    """'1E+2000' / '1,5E-2000': for numbers too long to write out."""
    text = str(number)
    return text.replace(".", ",") if _lang(language) == "ru" else text


def format_number(value: Decimal | int, language: str, places: int | None = None) -> str:
    """A number with grouped thousands and the language's decimal separator; `places` fixes the decimals."""
    number = _as_decimal(value)
    if number is None:
        return "" if value is None else str(value)
    if not number.is_finite():
        return "NaN" if number.is_nan() else "-∞" if number.is_signed() else "∞"
    if number and number.adjusted() > _MAX_POSITIONAL_DIGITS:  # far beyond any stored value: keep it short
        return _scientific(number, language)
    if places is not None:
        number = _quantize(number, max(int(places), 0))
    elif number and number.adjusted() < -_MAX_POSITIONAL_DIGITS:
        return _scientific(number, language)
    if number.is_zero():  # no "-0.00"; a zero keeps its decimals, within reason
        number = abs(number) if number.as_tuple().exponent >= -_MAX_POSITIONAL_DIGITS else Decimal(0)
    text = format(number, "f")
    sign = "-" if text.startswith("-") else ""
    whole, _, fraction = text.lstrip("-").partition(".")
    if _lang(language) == "ru":
        grouped, point = _group(whole, NARROW_NBSP), ","
    else:
        grouped, point = _group(whole, ","), "."
    return sign + grouped + (point + fraction if fraction else "")


def format_money(value: Decimal | int, currency: str | None, language: str, places: int = 2) -> str:
    """An amount with 2 decimals (or `places`) and its currency: '1 500,00 ₽', '$1,500.00', '1,500.00 RUB'."""
    number = format_number(value, language, places)
    code = (currency or "").strip().upper()
    if not code:
        return number
    if _lang(language) == "ru":
        return f"{number}{NBSP}{CURRENCY_SYMBOLS.get(code, code)}"
    if code in _PREFIX_SYMBOLS:
        sign, digits = ("-", number[1:]) if number.startswith("-") else ("", number)
        return f"{sign}{CURRENCY_SYMBOLS[code]}{digits}"
    return f"{number}{NBSP}{code}"


def format_percent(value: Decimal | int, language: str, places: int | None = 2) -> str:
    """A percentage: '12,50 %' in Russian, '12.50%' in English."""
    number = format_number(value, language, places)
    return f"{number}{NBSP}%" if _lang(language) == "ru" else f"{number}%"


def format_date(value: date, language: str) -> str:
    """A date: '31.01.2026' in Russian, '31 Jan 2026' in English."""
    if _lang(language) == "ru":
        return f"{value.day:02d}.{value.month:02d}.{value.year:04d}"
    return f"{value.day} {_MONTHS_EN[value.month - 1]} {value.year:04d}"


def _in_zone(value: datetime, tz: tzinfo | None) -> datetime:
    """`value` in `tz`; a naive value is taken as UTC; a moment that cannot be converted stays as it is."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(tz or UTC)
    except (OverflowError, ValueError):
        return value


def format_datetime(value: datetime, language: str, tz: tzinfo = UTC) -> str:
    """A moment in `tz`: '31.01.2026 14:05' in Russian, '31 Jan 2026 14:05' in English."""
    moment = _in_zone(value, tz)
    return f"{format_date(moment, language)} {moment.hour:02d}:{moment.minute:02d}"


def _yes_no(flag: bool, language: str) -> str:
    yes, no = _YES_NO[_lang(language)]
    return yes if flag else no


def _label(label: Label, language: str) -> str:
    """A metadata label in `language` as given if the label has it, else by the normalised language."""
    return label.get(language if language in label.texts else _lang(language))


def _parse_date(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            return None
    return None


def _parse_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            return None
    return None


class ValueDisplay:
    """The Display the field types write values through (kartoteka.metadata.types.base.Display): this module's
    formats in one language and time zone, with the names of users and titles of records at hand."""

    def __init__(self, language: str, tz: tzinfo = UTC, user_names: Mapping[int, str] | None = None,
                 record_titles: Mapping[int, str] | None = None) -> None:
        self.language = language
        self.tz = tz
        self.user_names = user_names
        self.record_titles = record_titles

    def number(self, value: Decimal | int, places: int | None = None) -> str:
        return format_number(value, self.language, places)

    def money(self, value: Decimal | int, currency: str | None, places: int) -> str:
        return format_money(value, currency, self.language, places)

    def percent(self, value: Decimal | int, places: int | None) -> str:
        return format_percent(value, self.language, places)

    def date(self, value: Any) -> str | None:
        day = _parse_date(value)
        return format_date(day, self.language) if day is not None else None

    def datetime(self, value: Any) -> str | None:
        moment = _parse_datetime(value)
        return format_datetime(moment, self.language, self.tz) if moment is not None else None

    def day_of(self, value: Any) -> str | None:
        moment = _parse_datetime(value)
        return format_date(_in_zone(moment, self.tz), self.language) if moment is not None else None

    def yes_no(self, flag: bool) -> str:
        return _yes_no(flag, self.language)

    def label(self, label: Label) -> str:
        return _label(label, self.language)

    def user(self, user_id: Any) -> str | None:
        return _name(self.user_names, user_id)

    def record(self, record_id: Any) -> str | None:
        return _name(self.record_titles, record_id)

    def text(self, message: str, **values: Any) -> str:
        from kartoteka.web.i18n import translate

        return translate(_lang(self.language), message, **values)


def _name(names: Mapping[int, str] | None, key: Any) -> str | None:
    try:
        return names.get(key) if names is not None else None
    except TypeError:  # an unhashable value
        return None


def format_value(
    field: FieldDef, value: Any, language: str, *,
    user_names: Mapping[int, str] | None = None, record_titles: Mapping[int, str] | None = None,
    tz: tzinfo = UTC,
) -> str:
    """Any field value as plain display text; lists are joined with ', ', None and empty values give ''."""
    if value is None:
        return ""
    out = ValueDisplay(language, tz, user_names, record_titles)
    value_type = field.value_type
    if isinstance(value, list | tuple):
        texts = (value_type.display(item, field, out) for item in value if item is not None)
        return ", ".join(text for text in texts if text)
    return value_type.display(value, field, out)
