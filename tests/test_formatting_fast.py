"""Numbers, money and percentages written by Python's grouping give Babel's text to the character."""

from __future__ import annotations

import random
from decimal import Decimal, localcontext

import pytest

from kartoteka.web.formatting import _fast, _render, _render_babel, format_money, format_number, format_percent

LANGS = ("en", "ru", "de", "fr", "hi", "ar", "de_CH")
KINDS = (("decimal", ""), ("percent", ""), *(("currency", code) for code in ("USD", "RUB", "EUR", "KZT", "JPY")))
PLACES = (None, 0, 2, 3)

EDGES = [
    0, 7, -7, 1000, -1234567, 10**29, -(10**29), 10**30, True, False,
    0.1, -2.675, 1e-7, 1.5e20, -0.0, 1e300, float("nan"), float("inf"), float("-inf"),
    *map(Decimal, (
        "0", "-0", "0.00", "-0.00", "0E+5", "-0E-3", "0E-1000", "-0E-1001", "0E+40",
        "999.995", "-999.995", "999999.995", "-999999.995", "0.005", "-0.005", "0.0049", "-0.0049", "0.5", "-0.5",
        "2.5", "-2.5", "1E+6", "1E-7", "1.000", "-1.500", "1E+29", "9.99E+29", "9.999999E+29", "1E+30", "-1E+30",
        "123456789012345678901234567890.125", "12345678901234567890123456789.995", "-99999999999999999999999999999.5",
        "1.2345678901234567890123456789012345678901234567890", "1E-1000", "1E-1001", "-1E-1000", "1E+1001",
        "NaN", "-NaN", "Infinity", "-Infinity",
    )),
]


def generated(count: int, seed: int) -> list[Decimal | int | float]:
    """Numbers of every magnitude and scale, either sign; some rounding up across a group, some ints and floats."""
    rng = random.Random(seed)
    values: list[Decimal | int | float] = []
    for _ in range(count):
        digits = rng.randint(1, 32)
        number = Decimal(rng.randint(0, 10**digits - 1)).scaleb(-rng.randint(0, 14))
        shape = rng.random()
        if shape < 0.1:  # 999…9.995: rounds up into a new group
            number = Decimal("9" * rng.randint(1, 12) + "." + "9" * rng.randint(1, 4) + "5")
        elif shape < 0.15:
            number = Decimal(0).scaleb(rng.randint(-6, 6))
        value: Decimal | int | float = number.copy_negate() if rng.random() < 0.5 else number
        if shape > 0.9:
            value = int(number)
        elif shape > 0.8:
            value = float(number)
        values.append(value)
    return values


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize(("kind", "currency"), KINDS)
def test_the_fast_path_writes_babels_text(lang, kind, currency):
    values = EDGES + generated(300, seed=LANGS.index(lang) * 100 + KINDS.index((kind, currency)))
    for places in PLACES:
        for value in values:
            assert _render(value, lang, places, kind, currency) == _render_babel(value, lang, places, kind, currency), (
                value, places)


@pytest.mark.parametrize("lang", ("en", "ru"))
def test_the_fast_path_writes_babels_text_in_any_decimal_context(lang):
    values = EDGES + generated(100, seed=7)
    with localcontext(prec=5, Emax=10, Emin=-10):
        for value in values:
            for places in (None, 2):
                for kind, currency in KINDS:
                    assert (_render(value, lang, places, kind, currency)
                            == _render_babel(value, lang, places, kind, currency)), (value, places, kind, currency)


def test_large_places_are_written_alike():
    for places in (10, 40, 1000, 5000, -3):
        for value in (Decimal("-1234.5678"), Decimal("0.1"), 12, Decimal("-0.0000")):
            assert _render(value, "ru", places, "percent", "") == _render_babel(value, "ru", places, "percent", "")


def test_english_and_russian_take_the_fast_path():
    for lang in ("en", "ru"):
        for kind, currency in KINDS:
            for places in (0, 2, 3):
                assert _fast(lang, kind, currency, places) is not None, (lang, kind, currency, places)


def test_patterns_python_cannot_write_are_left_to_babel():
    assert _fast("hi", "decimal", "", 2) is None  # groups 12,34,567: by threes, then twos
    assert _fast("de_CH", "decimal", "", 2) is None  # groups with an apostrophe, which Babel unquotes


def test_the_public_functions_still_write_the_documented_text():
    assert format_money(Decimal("-1500"), "RUB", "ru") == "-1\u00a0500,00\u00a0₽"
    assert format_money(Decimal("1500"), "RUB", "en") == "RUB\u00a01,500.00"
    assert format_money(Decimal("999.995"), "USD", "en") == "$1,000.00"
    assert format_money(Decimal("-0.001"), "USD", "en") == "$0.00"
    assert format_percent(Decimal("12.5"), "ru") == "12,50\u00a0%"
    assert format_percent(Decimal("-12.5"), "en", None) == "-12.5%"
    assert format_number(Decimal("-0.0"), "en") == "0.0"
