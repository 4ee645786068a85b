"""Typed field values as display text for HTML pages, in English or Russian.

Numbers, money, percentages and dates are written by Babel from the CLDR data of the language (`en` or `ru`):
Russian groups thousands with a no-break space and writes a decimal comma ("10 000 000,00 ₽"), English groups
with a comma and writes a decimal point ("$10,000,000.00", "RUB 10,000,000.00"). A currency symbol, code or
percent sign is joined to its number without a breakable space, so that it never wraps onto a line of its own.

Pure functions: no Flask, no locale module, no database. Every function returns plain text (templates escape it)
and never raises on a value of its field's type; an unknown language is formatted as English.
"""

from __future__ import annotations

import copy
import functools
import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, tzinfo
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation, localcontext
from typing import Any

from babel import Locale
from babel import dates as babel_dates
from babel import numbers as babel_numbers
from babel.numbers import NumberPattern

from kartoteka.metadata.model import FieldDef, Label

__all__ = ["currency_symbol", "display_value", "format_date", "format_datetime", "format_money", "format_number",
           "format_percent", "format_value"]

NBSP = "\u00a0"

# Numbers with more integer or leading fractional digits than this are written in scientific notation: Babel
# would write out every digit of 1E+999999999 (a gigabyte of text) and its rounding would fail long before.
_MAX_POSITIONAL_DIGITS = 1000

# Dates: Russian cards show dd.MM.yyyy (the form written and expected in Russia; CLDR's medium form is
# "31 янв. 2026 г."), English ones CLDR's medium date "Jan 31, 2026". Times are CLDR's short time of the language
# ("14:05", "2:05 PM" with a no-break space before PM); Russian writes the time after the date with a plain space.
_DATE_PATTERNS = {"en": babel_dates.get_date_format("medium", "en").pattern, "ru": "dd.MM.yyyy"}
_DATETIME_PATTERNS = {
    "en": str(babel_dates.get_datetime_format("medium", "en")).format(
        babel_dates.get_time_format("short", "en").pattern, _DATE_PATTERNS["en"]),
    "ru": f"{_DATE_PATTERNS['ru']} {babel_dates.get_time_format('short', 'ru').pattern}",
}
_YES_NO = {"en": ("Yes", "No"), "ru": ("Да", "Нет")}


def _lang(language: str | None) -> str:
    """'ru' for Russian (also 'ru-RU', 'ru_RU'), otherwise 'en'."""
    if isinstance(language, str) and language.replace("_", "-").split("-")[0].strip().lower() == "ru":
        return "ru"
    return "en"


@functools.cache
def _locale(lang: str) -> Locale:
    return Locale.parse(lang)


def currency_symbol(code: str | None, language: str | None = "en") -> str:
    """The symbol of a currency code in `language` (CLDR: '₽' for RUB in Russian, 'RUB' in English, '$' for USD),
    or the code itself when there is none."""
    if not code:
        return ""
    return babel_numbers.get_currency_symbol(code.strip().upper(), _lang(language))


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


def _context(number: Decimal, places: int) -> Context:
    """A decimal context wide enough to round `number` to `places` exactly (Babel rounds in the current one)."""
    prec = number.adjusted() + places + 3
    if prec <= 28:  # nearly every number: the same context each time (localcontext works on a copy of it)
        return _CONTEXT_28
    return Context(prec=prec, rounding=ROUND_HALF_UP, Emax=999_999_999, Emin=-999_999_999)


_CONTEXT_28 = Context(prec=28, rounding=ROUND_HALF_UP, Emax=999_999_999, Emin=-999_999_999)


def _quantize(number: Decimal, places: int) -> Decimal:
    """`number` rounded half up to `places` decimals; unchanged if it cannot be (astronomically large)."""
    try:
        context = _context(number, places)
        return number.quantize(Decimal(1).scaleb(-places, context), context=context)
    except (InvalidOperation, ValueError, OverflowError, MemoryError):
        return number


def _spaced(pattern: NumberPattern, symbol: str) -> NumberPattern:
    """`pattern` with CLDR's currency spacing, which Babel leaves out: a symbol that ends (or starts) with a letter
    or digit next to the number gets a no-break space ('RUB 1,500.00', not 'RUB1,500.00'; '$1,500.00' stays)."""

    def plain(char: str) -> bool:
        return not unicodedata.category(char).startswith(("S", "Z"))

    def before(prefix: str) -> str:
        return prefix + NBSP if prefix.endswith("¤") and plain(symbol[-1]) else prefix

    def after(suffix: str) -> str:
        return NBSP + suffix if suffix.startswith("¤") and plain(symbol[0]) else suffix

    spaced = copy.copy(pattern)
    spaced.prefix = before(pattern.prefix[0]), before(pattern.prefix[1])
    spaced.suffix = after(pattern.suffix[0]), after(pattern.suffix[1])
    return spaced


def _render(value: Decimal | int, lang: str, places: int | None, kind: str, currency: str = "") -> str:
    """`value` by the language's CLDR pattern of `kind` (decimal, percent, currency) with `places` decimals
    (None: as many as the value has), rounded half up; percentages are given in points (12.5 → 12.5 %)."""
    number = _as_decimal(value)
    # A list page writes a hundred amounts: Python's own grouping writes them several times faster than Babel, with
    # the same text (see `_fast`); what it cannot write is left to Babel.
    if number is not None and number.is_finite() and number.adjusted() < _FAST_DIGITS:
        if places is None:
            exponent = int(number.as_tuple().exponent)
            if exponent >= -_MAX_POSITIONAL_DIGITS:
                if number.is_zero():  # its decimals as Babel's path keeps them: abs() in this thread's context
                    exponent = int(abs(number).as_tuple().exponent)
                fast = _fast(lang, kind, currency, max(0, -exponent))
                if fast is not None:
                    return _written(fast, number)
        else:
            fixed = min(max(int(places), 0), _MAX_POSITIONAL_DIGITS)
            fast = _fast(lang, kind, currency, fixed)
            if fast is not None:
                return _written(fast, _quantize(number, fixed))
    return _render_babel(value, lang, places, kind, currency)


# Numbers written by Python rather than Babel have fewer integer digits than this (a list's amounts have far fewer).
_FAST_DIGITS = 30

# Python's "1,234.50" for a number, the language's decimal and group symbols for its "." and ",", and the pattern's
# text before and after the number, positive and negative: `_written`.
_Fast = tuple[str, str, str, tuple[str, str], tuple[str, str]]

# Numbers `_fast` writes both ways before it trusts Python's writing: signs, zeros, groups, rounding up across one.
_PROBES = tuple(map(Decimal, ("7", "-7", "0", "-0.001", "0.5", "-0.5", "999.995", "-999.995", "1234567.891",
                              "-1234567.891", "123456789012345678901234567.5")))


def _written(fast: _Fast, number: Decimal) -> str:
    """`number`, already rounded to the places of `fast`, written by it (no "-0": a zero has no sign)."""
    spec, point, group, prefixes, suffixes = fast
    negative = number.is_signed() and not number.is_zero()
    # Three replacements take a third of the time of str.translate; "\0" keeps a group "." apart from a point ".".
    text = format(number.copy_abs(), spec).replace(",", "\0").replace(".", point).replace("\0", group)
    return prefixes[negative] + text + suffixes[negative]


@functools.lru_cache(maxsize=512)
def _fast(lang: str, kind: str, currency: str, places: int) -> _Fast | None:
    """Babel's writing of numbers with `places` decimals by the pattern of `lang`, `kind` and `currency` as Python
    writes them, when that is the same text for every number (else None: Babel writes them)."""
    pattern = _pattern(lang, kind, currency)
    locale = _locale(lang)
    group, point = babel_numbers.get_group_symbol(locale), babel_numbers.get_decimal_symbol(locale)
    # Python groups by threes with at least one integer digit, as this pattern must; Babel's quote and currency
    # replacements run over the whole text, so the number's symbols must hold no quote or currency sign, and a
    # currency's name (¤¤¤) differs with the number.
    if (pattern.grouping != (3, 3) or pattern.int_prec[0] != 1 or pattern.exp_prec or pattern.scale
            or "@" in pattern.pattern or not pattern.number_pattern
            or any(char in group + point for char in "'¤\0") or "¤¤¤" in "".join(pattern.prefix + pattern.suffix)):
        return None
    spec = f",.{places}f"
    frames = []
    for seven, eight in ((Decimal(7), Decimal(8)), (Decimal(-7), Decimal(-8))):
        # Babel writes prefix + number + suffix: its text for 7 and for 8 differ first where the number starts.
        text, other = (_render_babel(probe, lang, places, kind, currency) for probe in (seven, eight))
        start = next((at for at, (char, twin) in enumerate(zip(text, other, strict=False)) if char != twin), None)
        number = format(abs(seven), spec).replace(".", point)
        if start is None or not text.startswith(number, start):
            return None
        frames.append((text[:start], text[start + len(number):]))
    fast = spec, point, group, (frames[0][0], frames[1][0]), (frames[0][1], frames[1][1])
    if any(_written(fast, _quantize(probe, places)) != _render_babel(probe, lang, places, kind, currency)
           for probe in _PROBES):
        return None
    return fast


def _render_babel(value: Decimal | int, lang: str, places: int | None, kind: str, currency: str = "") -> str:
    """`_render` by Babel: every number, however large, small or not finite."""
    number = _as_decimal(value)
    if number is None:
        return "" if value is None else str(value)
    locale = _locale(lang)
    pattern = _pattern(lang, kind, currency)
    if number.is_nan():
        return _framed("NaN", False, pattern, lang, currency)
    if number.is_finite():
        if places is not None:
            places = min(max(int(places), 0), _MAX_POSITIONAL_DIGITS)
        if number and (number.adjusted() > _MAX_POSITIONAL_DIGITS
                       or (places is None and number.adjusted() < -_MAX_POSITIONAL_DIGITS)):
            return _scientific(number, lang, pattern, currency)
        if places is not None:
            number = _quantize(number, places)
        exponent = int(number.as_tuple().exponent)  # finite: a whole number
        if number.is_zero():  # no "-0.00"; a zero keeps its decimals, within reason
            number = abs(number) if exponent >= -_MAX_POSITIONAL_DIGITS else Decimal(0)
        if places is None:
            places = max(0, -int(number.as_tuple().exponent))
    pattern = _with_places(pattern, places or 0)
    with localcontext(_context(number, places or 0) if number.is_finite() else Context()):
        return str(pattern.apply(number, locale, currency=currency or None, currency_digits=False))


@functools.lru_cache(maxsize=256)
def _pattern(lang: str, kind: str, currency: str) -> NumberPattern:
    """The language's CLDR pattern of `kind` (decimal, percent, currency) for `currency`, unscaled and with CLDR's
    currency spacing; made once per language, kind and currency (never changed afterwards: see `_with_places`)."""
    locale = _locale(lang)
    formats = {"decimal": locale.decimal_formats, "percent": locale.percent_formats}
    pattern = copy.copy(locale.currency_formats["standard"] if kind == "currency" else formats[kind][None])
    pattern.scale = 0
    if currency:
        pattern = _spaced(pattern, currency_symbol(currency, lang))
    return pattern


@functools.lru_cache(maxsize=512)
def _with_places(pattern: NumberPattern, places: int) -> NumberPattern:
    """A copy of `pattern` writing exactly `places` decimals (a pattern is a cached, shared object: not changed)."""
    fixed = copy.copy(pattern)
    fixed.frac_prec = (places, places)
    return fixed


def _framed(text: str, negative: bool, pattern: NumberPattern, lang: str, currency: str) -> str:
    """`text` in place of the number of `pattern`, with its sign, currency and percent sign."""
    framed = pattern.prefix[negative] + "\0" + pattern.suffix[negative]
    if currency:
        framed = framed.replace("¤", currency_symbol(currency, lang))
    return framed.replace("'", "").replace("\0", text)


def _scientific(number: Decimal, lang: str, pattern: NumberPattern, currency: str) -> str:
    """'1E+2000', '-1,5E-2000' (with the pattern's sign and symbols): for numbers too long to write out."""
    digits = "".join(map(str, number.as_tuple().digits)).rstrip("0") or "0"
    exponent = number.adjusted()
    mantissa = digits[0] + (babel_numbers.get_decimal_symbol(lang) + digits[1:] if len(digits) > 1 else "")
    power = ("+" if exponent > 0 else babel_numbers.get_minus_sign_symbol(lang) if exponent < 0 else "") + str(
        abs(exponent))
    return _framed(f"{mantissa}E{power}", number.is_signed(), pattern, lang, currency)


def format_number(value: Decimal | int, language: str, places: int | None = None) -> str:
    """A number with grouped thousands and the language's decimal separator; `places` fixes the decimals."""
    return _render(value, _lang(language), places, "decimal")


def format_money(value: Decimal | int, currency: str | None, language: str, places: int = 2) -> str:
    """An amount with 2 decimals (or `places`) and its currency: '1 500,00 ₽', '$1,500.00', 'RUB 1,500.00'."""
    code = (currency or "").strip().upper()
    return _render(value, _lang(language), places, "currency" if code else "decimal", code)


def format_percent(value: Decimal | int, language: str, places: int | None = 2) -> str:
    """A percentage given in points: '12,50 %' in Russian, '12.50%' in English."""
    return _render(value, _lang(language), places, "percent")


def format_date(value: date, language: str) -> str:
    """A date: '31.01.2026' in Russian, 'Jan 31, 2026' in English."""
    lang = _lang(language)
    if isinstance(value, datetime):  # as Babel's format_date: the date of a moment
        value = value.date()
    return _day_writer(_DATE_PATTERNS[lang], lang)(value)


# A date pattern's fields (Babel's parsed pattern is a %-format of them: '%(MMM)s %(d)s, %(y)s').
_PATTERN_FIELDS = re.compile(r"%\(([A-Za-z]+)\)s")


@functools.cache
def _day_writer(pattern: str, lang: str) -> Callable[[date], str]:
    """A function writing a date by `pattern` as Babel does: the year, month (digits or the language's names) and
    day written directly (a list's dates: about 3 us instead of 10), any other field by Babel itself."""
    parsed = _date_pattern(pattern)
    locale = _locale(lang)
    names = _PATTERN_FIELDS.findall(parsed.format)
    if not all(name[0] == "d" or name[0] == "y" or (name[0] == "M" and len(name) <= 4) for name in names):
        return lambda day: parsed.apply(day, locale)
    months = {3: babel_dates.get_month_names("abbreviated", "format", locale),
              4: babel_dates.get_month_names("wide", "format", locale)}

    def field(name: str) -> Callable[[date], str]:
        width = len(name)
        if name[0] == "y":  # Babel: zero-padded to the width, two letters keep the last two digits
            return (lambda day: f"{day.year:02d}"[-2:]) if width == 2 else (lambda day: f"{day.year:0{width}d}")
        if name[0] == "M":
            return (lambda day: f"{day.month:0{width}d}") if width <= 2 else (lambda day: months[width][day.month])
        return lambda day: f"{day.day:0{width}d}"

    fields = [(name, field(name)) for name in names]
    template = parsed.format
    return lambda day: template % {name: write(day) for name, write in fields}


def _in_zone(value: datetime, tz: tzinfo | None) -> datetime:
    """`value` in `tz`; a naive value is taken as UTC; a moment that cannot be converted stays as it is."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(tz or UTC)
    except (OverflowError, ValueError):
        return value


def format_datetime(value: datetime, language: str, tz: tzinfo = UTC) -> str:
    """A moment in `tz`: '31.01.2026 14:05' in Russian, 'Jan 31, 2026, 2:05 PM' in English."""
    # The wall-clock time in `tz`, handed to Babel without a zone: it converts nothing more (nor overflows).
    moment = _in_zone(value, tz).replace(tzinfo=None)
    lang = _lang(language)
    return _date_pattern(_DATETIME_PATTERNS[lang]).apply(moment.replace(tzinfo=UTC), _locale(lang))


def _date_pattern(pattern: str) -> babel_dates.DateTimePattern:
    """Babel's parsed date pattern (it keeps them: parsed once)."""
    return babel_dates.parse_pattern(pattern)


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
        from kartoteka.messages import translate

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
    return display_value(field, value, ValueDisplay(language, tz, user_names, record_titles))


def display_value(field: FieldDef, value: Any, out: ValueDisplay) -> str:
    """`format_value` through a ValueDisplay made once for many values (a list's column)."""
    if value is None:
        return ""
    value_type = field.value_type
    if isinstance(value, list | tuple):
        texts = (value_type.display(item, field, out) for item in value if item is not None)
        return ", ".join(text for text in texts if text)
    return value_type.display(value, field, out)
