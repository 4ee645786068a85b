"""Field types as a user and an admin meet them: what input is accepted, what is refused and why.

Fields are built through the real loader from a small entity written for the tests, so the options
(min, max, pattern, places, region...) go through the same parsing as shipped metadata.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from kartoteka.metadata.fieldtypes import (
    FIELD_TYPES,
    MAX_SAFE_INTEGER,
    FieldValueError,
    ParseContext,
)
from kartoteka.metadata.loader import load_metadata
from kartoteka.metadata.model import FieldDef
from kartoteka.records.pipeline import parse_value
from tests.conftest import write_config

CTX = ParseContext()
FILE_ID = "0123456789abcdef0123456789abcdef"

# One field per registered type, named after its type, plus fields with constraints.
FIELDS: dict[str, dict[str, Any]] = {
    "text": {"type": "text"},
    "textarea": {"type": "textarea"},
    "integer": {"type": "integer"},
    "decimal": {"type": "decimal"},
    "money": {"type": "money"},
    "percent": {"type": "percent"},
    "boolean": {"type": "boolean"},
    "date": {"type": "date"},
    "datetime": {"type": "datetime"},
    "email": {"type": "email"},
    "phone": {"type": "phone"},
    "url": {"type": "url"},
    "select": {"type": "select", "options": ["new", "won", {"value": "lost", "label": "Проиграна"}]},
    "multiselect": {"type": "multiselect", "options": ["red", "green", "blue"]},
    "tags": {"type": "tags"},
    "reference": {"type": "reference", "to": "probe"},
    "user": {"type": "user"},
    "file": {"type": "file"},
    "formula": {"type": "formula", "expr": "integer * 2", "result": "integer"},
    "consent": {"type": "consent", "policy_version": "2025-01"},
    "rating": {"type": "rating"},
    # constraints
    "short": {"type": "text", "min_length": 2, "max_length": 5},
    "code": {"type": "text", "pattern": r"[A-Z]{3}-\d+", "pattern_message": "Use a code like ABC-1."},
    "slug": {"type": "text", "pattern": "[a-z]+"},
    "note": {"type": "textarea", "max_length": 10},
    "qty": {"type": "integer", "min": 1, "max": 10},
    "price": {"type": "money", "min": 0, "max": "1000.50"},
    "whole_rubles": {"type": "money", "places": 0},
    "rate": {"type": "decimal", "places": 3, "min": -1.5, "max": 1.5},
    "share": {"type": "percent", "min": 0, "max": 100},
    "due": {"type": "date", "min": "2025-01-01", "max": "31.12.2025"},
    "meeting": {"type": "datetime", "min": "2025-01-01T00:00:00Z", "max": "2025-12-31 23:59:59"},
    "colors": {"type": "multiselect", "options": ["red", "green", "blue"], "min_items": 1, "max_items": 2},
    "labels": {"type": "tags", "max_items": 2},
    "work_email": {"type": "email", "max_length": 20},
    "us_phone": {"type": "phone", "region": "US"},
    "phones": {"type": "phone", "multiple": True},
    "counts": {"type": "integer", "multiple": True, "min": 0},
    "emails": {"type": "email", "multiple": True},
    "amounts": {"type": "decimal", "multiple": True},
    "days": {"type": "date", "multiple": True},
    "ten_stars": {"type": "rating", "max": 10},
}


@pytest.fixture(scope="module")
def fields(tmp_path_factory) -> dict[str, FieldDef]:
    root = write_config(tmp_path_factory.mktemp("fieldtypes"), {
        "probe": {"entity": "probe", "label": {"en": "Probe", "ru": "Проба"}, "fields": FIELDS},
    })
    return dict(load_metadata(root).entity("probe").fields)


def outcome(field: FieldDef, raw: Any, ctx: ParseContext = CTX) -> tuple[Any, list[str]]:
    """What a user sees after typing `raw`: the parsed value and the messages shown next to the field."""
    try:
        value = parse_value(field, raw, ctx)
    except FieldValueError as exc:
        return None, [str(exc)]
    if value is None:
        return None, []
    items = value if field.multiple else [value]
    return value, [message for item in items for message in field.value_type.check(item, field)]


def accepted(field: FieldDef, raw: Any, ctx: ParseContext = CTX) -> Any:
    value, messages = outcome(field, raw, ctx)
    assert messages == [], f"{raw!r} was refused: {messages}"
    return value


def refused(field: FieldDef, raw: Any, ctx: ParseContext = CTX) -> str:
    value, messages = outcome(field, raw, ctx)
    assert messages, f"{raw!r} was accepted as {value!r}"
    return " ".join(messages)


# --- the registry ---------------------------------------------------------------------------------

def test_every_registered_type_has_a_field_and_cases_here():
    names = set(FIELD_TYPES.names())
    assert names <= set(FIELDS), "add a field for the new type to FIELDS"
    assert names - {"formula"} <= {case[0] for case in VALID}, "add valid inputs for the new type"
    assert names <= {case[0] for case in INVALID}, "add invalid inputs for the new type"


def test_registering_a_type_twice_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        FIELD_TYPES.register(type(FIELD_TYPES.get("text"))())


def test_an_unknown_type_lists_the_known_ones():
    with pytest.raises(KeyError, match="known: boolean, consent"):
        FIELD_TYPES.get("monye")


# --- valid input ----------------------------------------------------------------------------------

VALID: list[tuple[str, Any, Any]] = [
    ("text", "Hello", "Hello"),
    ("text", "  padded  ", "padded"),
    ("text", "Привет, мир", "Привет, мир"),
    ("text", "party 🎉👩‍👩‍👧", "party 🎉👩‍👩‍👧"),
    ("text", "x" * 10_000, "x" * 10_000),
    ("textarea", "line one\r\nline two", "line one\nline two"),
    ("textarea", "  Многострочный\nтекст 😀 ", "Многострочный\nтекст 😀"),
    ("integer", 42, 42),
    ("integer", -7, -7),
    ("integer", "1 500", 1500),
    ("integer", "1\u00a0500", 1500),
    ("integer", " +12 ", 12),
    ("integer", 3.0, 3),
    ("integer", Decimal("4"), 4),
    ("integer", MAX_SAFE_INTEGER, MAX_SAFE_INTEGER),
    ("integer", -MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER),
    ("integer", str(MAX_SAFE_INTEGER), MAX_SAFE_INTEGER),
    ("decimal", "1 500,50", Decimal("1500.50")),
    ("decimal", "1500.5", Decimal("1500.5")),
    ("decimal", 0.1, Decimal("0.1")),
    ("decimal", ".5", Decimal("0.5")),
    ("decimal", "-3,25", Decimal("-3.25")),
    ("decimal", "123456789012345", Decimal("123456789012345")),
    ("decimal", "0.000000000000001", Decimal("1E-15")),
    ("decimal", Decimal("1.23456789012345E-300"), Decimal("1.23456789012345E-300")),
    ("money", "1 500,50", Decimal("1500.50")),
    ("money", "1\u202f500,5", Decimal("1500.50")),
    ("money", "1'500.50", Decimal("1500.50")),
    ("money", 1500.5, Decimal("1500.50")),
    ("money", 7, Decimal("7.00")),
    ("money", "1.500", Decimal("1.50")),  # trailing zeros are not extra precision
    ("money", "9999999999999.99", Decimal("9999999999999.99")),
    ("percent", "12,5 %", Decimal("12.50")),
    ("percent", "50%", Decimal("50.00")),
    ("percent", 7.25, Decimal("7.25")),
    ("boolean", True, True),
    ("boolean", False, False),
    ("boolean", 1, True),
    ("boolean", 0, False),
    ("boolean", "yes", True),
    ("boolean", " Да ", True),
    ("boolean", "нет", False),
    ("boolean", "off", False),
    ("date", "2025-03-01", date(2025, 3, 1)),
    ("date", "01.03.2025", date(2025, 3, 1)),
    ("date", "1.3.2025", date(2025, 3, 1)),
    ("date", "29.02.2024", date(2024, 2, 29)),
    ("date", date(2025, 3, 1), date(2025, 3, 1)),
    ("date", "0001-01-01", date(1, 1, 1)),
    ("datetime", "2025-03-01T14:30:00+03:00", datetime(2025, 3, 1, 11, 30, tzinfo=UTC)),
    ("datetime", "2025-03-01T14:30:00Z", datetime(2025, 3, 1, 14, 30, tzinfo=UTC)),
    ("datetime", "2025-03-01 14:30", datetime(2025, 3, 1, 14, 30, tzinfo=UTC)),
    ("datetime", "2025-03-01T14:30:15.987654Z", datetime(2025, 3, 1, 14, 30, 15, tzinfo=UTC)),
    ("datetime", datetime(2025, 3, 1, 14, 30, tzinfo=timezone(timedelta(hours=5))),
     datetime(2025, 3, 1, 9, 30, tzinfo=UTC)),
    ("email", "John.DOE@Example.COM", "john.doe@example.com"),
    ("email", "  sales+crm@firm.ru ", "sales+crm@firm.ru"),
    ("email", "Иван@Пример.РФ", "иван@пример.рф"),
    ("phone", "8 (912) 345-67-89", "+79123456789"),
    ("phone", "+7 912 345 67 89", "+79123456789"),
    ("phone", "89123456789", "+79123456789"),
    ("phone", 79123456789, "+79123456789"),
    ("phone", "+44 20 7946 0958", "+442079460958"),
    ("url", "example.com", "https://example.com"),
    ("url", "www.example.com/path?q=1", "https://www.example.com/path?q=1"),
    ("url", "http://example.com", "http://example.com"),
    ("url", "example.com:8080/crm", "https://example.com:8080/crm"),
    ("url", "https://пример.рф/страница", "https://пример.рф/страница"),
    ("select", "won", "won"),
    ("select", " lost ", "lost"),
    ("multiselect", ["red", "blue"], ["red", "blue"]),
    ("multiselect", ["red", "red", "green"], ["red", "green"]),
    ("multiselect", "red, green", ["red", "green"]),
    ("multiselect", ["blue", "green", "red"], ["red", "green", "blue"]),  # in the options' order, always
    ("tags", ["VIP", "  partner  "], ["VIP", "partner"]),
    ("tags", "vip, Партнёр, VIP", ["vip", "Партнёр"]),
    ("tags", ["Привет", "привет", "🎉 party", "  ", "two   words"], ["Привет", "🎉 party", "two words"]),
    ("reference", 5, 5),
    ("reference", "12", 12),
    ("reference", 5.0, 5),
    ("reference", Decimal("6.00"), 6),
    ("user", 3.0, 3),
    ("reference", {"id": 7, "title": "ACME"}, 7),
    ("user", 3, 3),
    ("user", " 3 ", 3),
    ("file", FILE_ID, {"id": FILE_ID}),
    ("file", {"id": FILE_ID, "name": "contract.pdf", "size": 10}, {"id": FILE_ID}),
    ("consent", True, {"given": True}),
    ("consent", "yes", {"given": True}),
    ("consent", "да", {"given": True}),
    ("consent", False, {"given": False}),
    ("consent", {"given": True}, {"given": True}),
    ("rating", 4, 4),
    ("rating", "5", 5),
    ("rating", " 1 ", 1),
    ("rating", 3.0, 3),
    ("ten_stars", "10", 10),
]


@pytest.mark.parametrize(("name", "raw", "expected"), VALID,
                         ids=[f"{n}-{r!r}"[:60] for n, r, _ in VALID])
def test_valid_input_is_accepted_and_normalised(fields, name, raw, expected):
    value = accepted(fields[name], raw)
    assert value == expected
    assert type(value) is type(expected)


def test_decimals_keep_their_places(fields):
    assert str(accepted(fields["money"], "1 500,5")) == "1500.50"
    assert str(accepted(fields["rate"], "0,1")) == "0.100"
    assert str(accepted(fields["whole_rubles"], "1 500")) == "1500"
    assert str(accepted(fields["whole_rubles"], "1500.00")) == "1500"


def test_naive_date_times_are_read_in_the_configured_timezone(fields):
    moscow = ParseContext(timezone=timezone(timedelta(hours=3)))
    assert accepted(fields["datetime"], "2025-03-01 14:30", moscow) == datetime(2025, 3, 1, 11, 30, tzinfo=UTC)
    assert accepted(fields["datetime"], "2025-03-01T14:30+01:00", moscow) == datetime(2025, 3, 1, 13, 30, tzinfo=UTC)


def test_phone_numbers_use_the_field_region_then_the_context_region(fields):
    assert accepted(fields["phone"], "8 (912) 345-67-89") == "+79123456789"
    assert accepted(fields["us_phone"], "(202) 555-0123") == "+12025550123"
    assert accepted(fields["phone"], "(202) 555-0123", ParseContext(phone_region="US")) == "+12025550123"
    assert "is not a valid phone number" in refused(fields["phone"], "(202) 555-0123")


# --- invalid input --------------------------------------------------------------------------------

INVALID: list[tuple[str, Any, str]] = [
    ("text", "two\nlines", "Must be a single line."),
    ("text", "x" * 10_001, "Must be at most 10000 characters (has 10001)."),
    ("textarea", "x" * 100_001, "Must be at most 100000 characters (has 100001)."),
    ("integer", "12abc", "'12abc' is not a whole number."),
    ("integer", "1.5", "'1.5' is not a whole number."),
    ("integer", 1.5, "Must be a whole number."),
    ("integer", "1e5", "'1e5' is not a whole number."),
    ("decimal", "1,5,0", "'1,5,0' is not a number."),
    ("decimal", "1.500,50", "'1.500,50' is not a number."),
    ("decimal", "twelve", "'twelve' is not a number."),
    ("decimal", "1e400", "'1e400' is not a number."),
    ("money", "10.005", "Must have at most 2 digits after the decimal point."),
    ("money", 0.1 + 0.2, "Must have at most 2 digits after the decimal point."),
    ("whole_rubles", "10.5", "Must have at most 0 digits after the decimal point."),
    ("percent", "abc%", "'abc' is not a number."),
    ("boolean", "maybe", "Must be true or false."),
    ("boolean", 2, "Must be true or false."),
    ("date", "2025-02-30", "'2025-02-30' is not a date that exists (check the day and the month)."),
    ("date", "31.04.2025", "'31.04.2025' is not a date that exists"),
    ("date", "2025/03/01", "'2025/03/01' is not a date; use YYYY-MM-DD or DD.MM.YYYY."),
    ("date", "2025-3-1", "is not a date; use YYYY-MM-DD or DD.MM.YYYY."),
    ("date", "0000-01-01", "'0000-01-01' is not a date that exists"),
    ("date", "tomorrow", "'tomorrow' is not a date"),
    ("date", datetime(2025, 3, 1, 12, 0), "Must be a date without a time."),
    ("datetime", "next week", "'next week' is not a date and time; write it as 2025-03-01 14:30"),
    ("datetime", date(2025, 3, 1), "Must be a date with a time."),
    ("datetime", "0001-01-01T00:00:00+01:00", "Is out of the supported range of dates."),
    ("datetime", "9999-12-31T23:59:59-05:00", "Is out of the supported range of dates."),
    ("email", "a@b", "'a@b' is not a valid e-mail address."),
    ("email", "john..doe@example.com", "is not a valid e-mail address."),
    ("email", "john doe@example.com", "is not a valid e-mail address."),
    ("email", "@example.com", "is not a valid e-mail address."),
    ("email", "x" * 250 + "@example.com", "is not a valid e-mail address."),
    ("phone", "abc", "'abc' is not a phone number."),
    ("phone", "12", "'12' is not a valid phone number for its country."),
    ("phone", "x" * 5000, "is not a phone number."),
    ("url", "ftp://example.com", "'ftp://example.com' is not a valid http(s) address."),
    ("url", "localhost", "is not a valid http(s) address."),
    ("url", "exa mple.com", "is not a valid http(s) address."),
    ("url", "javascript:alert(1)", "'javascript:alert(1)' is not a valid http(s) address."),  # as typed
    ("url", "mailto:anna@example.org", "'mailto:anna@example.org' is not a valid http(s) address."),
    ("url", "localhost:8080", "'localhost:8080' is not a valid http(s) address."),
    ("url", "example.com/" + "x" * 2000, "is not a valid http(s) address."),
    ("select", "open", "'open' is not one of the options: new, won, Проиграна."),
    ("select", "Won", "'Won' is not one of the options"),
    ("multiselect", ["red", "pink"], "'pink' is not one of the options: red, green, blue."),
    ("tags", "x" * 61, "Tag 'xxxxxxxxxxxxxxxxxxxx…' is longer than 60 characters."),
    ("tags", ["vip, gold"], "A tag cannot contain a comma ('vip, gold'); send it as separate tags."),
    ("reference", 0, "Must be a Probe record id (a positive whole number)."),
    ("reference", -5, "Must be a Probe record id (a positive whole number)."),
    ("reference", "abc", "Must be a Probe record id (a positive whole number)."),
    ("reference", MAX_SAFE_INTEGER + 1, "Must be a Probe record id (a positive whole number)."),
    ("user", "admin", "Must be a user id (a positive whole number)."),
    ("file", "../../etc/passwd", "Must be the id of an uploaded file."),
    ("file", FILE_ID.upper(), "Must be the id of an uploaded file."),
    ("formula", 42, "Is computed by a formula and cannot be set."),
    ("formula", None, "Is computed by a formula and cannot be set."),
    ("consent", "maybe", "Must be true or false."),
    ("consent", {"given": "yes"}, "Must be true (consent given) or false (withdrawn or not given)."),
    ("consent", {}, "Must be true (consent given) or false"),
    ("rating", 0, "Must be a whole number of stars from 1 to 5."),
    ("rating", 6, "Must be a whole number of stars from 1 to 5."),
    ("rating", "3.5", "'3.5' is not a number of stars."),
    ("rating", 2.5, "Must be a whole number of stars from 1 to 5."),
    ("rating", "★★★", "'★★★' is not a number of stars."),
    ("rating", True, "Must be a whole number of stars, not a boolean."),
    ("rating", [4], "Must be a whole number of stars, not a list."),
    ("ten_stars", 11, "Must be a whole number of stars from 1 to 10."),
]


@pytest.mark.parametrize(("name", "raw", "message"), INVALID,
                         ids=[f"{n}-{r!r}"[:60] for n, r, _ in INVALID])
def test_invalid_input_is_refused_with_a_clear_message(fields, name, raw, message):
    assert message in refused(fields[name], raw)


# --- empty input ----------------------------------------------------------------------------------

EMPTY_INPUTS = [None, "", "   ", "\t\n", "\u00a0"]


@pytest.mark.parametrize("raw", EMPTY_INPUTS, ids=repr)
@pytest.mark.parametrize("name", sorted(set(FIELD_TYPES.names()) - {"formula"}))
def test_empty_and_whitespace_input_is_no_value(fields, name, raw):
    assert outcome(fields[name], raw) == (None, [])


@pytest.mark.parametrize("name", ["multiselect", "tags"])
def test_an_empty_list_is_no_value(fields, name):
    assert outcome(fields[name], []) == (None, [])
    assert outcome(fields[name], ["", "  "]) == (None, [])


# --- wrong JSON types -----------------------------------------------------------------------------

WRONG_JSON: list[tuple[str, Any, str]] = [
    ("text", ["a", "b"], "Must be text, not a list."),
    ("text", {"en": "Hi"}, "Must be text, not an object."),
    ("text", 5, "Must be text, not a number."),
    ("text", True, "Must be text, not a boolean."),
    ("textarea", ["a"], "Must be text, not a list."),
    ("integer", True, "Must be a whole number, not a boolean."),
    ("integer", False, "Must be a whole number, not a boolean."),
    ("integer", [1], "Must be a whole number, not a list."),
    ("integer", {"value": 1}, "Must be a whole number, not an object."),
    ("decimal", True, "Must be a number, not a boolean."),
    ("decimal", [1.5], "Must be a number, not a list."),
    ("money", {"amount": 5, "currency": "RUB"}, "Must be a number, not an object."),
    ("percent", False, "Must be a number, not a boolean."),
    ("boolean", [True], "Must be true or false."),
    ("boolean", 1.0, "Must be true or false."),
    ("date", 20250301, "Must be a date, not a number."),
    ("date", True, "Must be a date, not a boolean."),
    ("date", ["2025-03-01"], "Must be a date, not a list."),
    ("datetime", 1740000000, "Must be a date and time, not a number."),
    ("email", ["a@b.ru"], "Must be an e-mail address, not a list."),
    ("phone", True, "Must be a phone number, not a boolean."),
    ("phone", 7.9e10, "Must be a phone number, not a number."),
    ("url", {"href": "x.ru"}, "Must be a web address, not an object."),
    ("select", {"value": "new"}, "Must be one of the options, not an object."),
    ("select", ["new"], "Must be one of the options, not a list."),
    ("select", True, "Must be one of the options, not a boolean."),
    ("select", 1, "'1' is not one of the options"),
    ("multiselect", {"red": True}, "Must be a list, not an object."),
    ("multiselect", 5, "Must be a list, not a number."),
    ("multiselect", [True], "Must be one of the options, not a boolean."),
    ("tags", {"a": 1}, "Must be a list, not an object."),
    ("tags", [1, 2], "Must be text, not a number."),
    ("tags", [["nested"]], "Must be text, not a list."),
    ("reference", True, "Must be a Probe record id, not a boolean."),
    ("reference", 5.5, "Must be a Probe record id (a positive whole number), not 5.5."),
    ("reference", 2.0**63, "Must be a Probe record id (a positive whole number)"),
    ("reference", "²", "Must be a Probe record id (a positive whole number)."),
    ("reference", "9" * 5000, "Must be a Probe record id (a positive whole number)."),
    ("user", 3.5, "Must be a user id (a positive whole number), not 3.5."),
    ("user", str(2**63), "Must be a user id (a positive whole number)."),
    ("reference", [5], "Must be a Probe record id (a positive whole number)."),
    ("user", False, "Must be a user id, not a boolean."),
    ("file", 5, "Must be the id of an uploaded file."),
    ("file", {"name": "x.pdf"}, "Must be the id of an uploaded file."),
    ("consent", [], "Must be true or false."),
    ("consent", 5, "Must be true or false."),
]


@pytest.mark.parametrize(("name", "raw", "message"), WRONG_JSON,
                         ids=[f"{n}-{r!r}"[:60] for n, r, _ in WRONG_JSON])
def test_a_json_value_of_the_wrong_type_is_refused(fields, name, raw, message):
    assert message in refused(fields[name], raw)


# --- huge numbers, NaN and infinity ---------------------------------------------------------------

HUGE: list[tuple[str, Any, str]] = [
    ("integer", 2**53, f"Must be between -{MAX_SAFE_INTEGER} and {MAX_SAFE_INTEGER}."),
    ("integer", -(2**53), f"Must be between -{MAX_SAFE_INTEGER} and {MAX_SAFE_INTEGER}."),
    ("integer", str(2**53), "Must be between"),
    ("integer", "9" * 30, "Must be between"),
    ("integer", "9" * 31, "is not a whole number."),
    ("integer", "9" * 5000, "is not a whole number."),
    ("integer", 10**400, "Must be between"),
    ("integer", 1e300, "Must be between"),
    ("integer", Decimal("1E+400"), "Must be between"),
    ("decimal", "1234567890.123456", "Is too large: at most 15 significant digits."),
    ("decimal", Decimal("1234567890.123456"), "Is too large: at most 15 significant digits."),
    ("decimal", 0.1 + 0.2, "Is too large: at most 15 significant digits."),
    ("decimal", "1" + "0" * 15, "Is too large: at most 15 significant digits."),
    ("decimal", 10**400, "Is too large"),
    ("decimal", "9" * 5000, "Is too large"),
    ("decimal", 1e300, "Is too large"),
    ("decimal", Decimal("1E-400"), "Is too close to zero to be stored."),
    ("decimal", 5e-324, "Is too close to zero to be stored."),
    ("money", "1e400", "'1e400' is not a number."),
    ("money", "12345678901234567890123456789", "Is too large"),
    ("money", 10**30, "Is too large"),
    ("money", 10**15, "Is too large"),
    ("money", "99999999999999.99", "Is too large"),
    ("percent", 10**40, "Is too large"),
    ("reference", 10**400, "Must be a Probe record id (a positive whole number)."),
]


@pytest.mark.parametrize(("name", "raw", "message"), HUGE, ids=[f"{n}-{r!r}"[:40] for n, r, _ in HUGE])
def test_numbers_too_large_to_keep_exactly_are_refused(fields, name, raw, message):
    assert message in refused(fields[name], raw)


NOT_FINITE = [float("nan"), float("inf"), float("-inf"), Decimal("NaN"), Decimal("sNaN"), Decimal("-Infinity")]


@pytest.mark.parametrize("raw", NOT_FINITE, ids=repr)
@pytest.mark.parametrize("name", ["decimal", "money", "percent"])
def test_nan_and_infinity_are_not_numbers_you_can_store(fields, name, raw):
    assert "Must be a finite number." in refused(fields[name], raw)


@pytest.mark.parametrize("raw", [*NOT_FINITE, "NaN", "Infinity", "-inf", "nan"], ids=repr)
def test_nan_and_infinity_are_not_whole_numbers(fields, raw):
    assert "whole number" in refused(fields["integer"], raw)


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "inf", "1e400", "-1E+400"])
@pytest.mark.parametrize("name", ["decimal", "money", "percent"])
def test_nan_and_infinity_as_text_are_not_numbers(fields, name, raw):
    assert "is not a number." in refused(fields[name], raw)


# --- constraints ----------------------------------------------------------------------------------

CONSTRAINTS: list[tuple[str, Any, str | None]] = [
    ("short", "ab", None),
    ("short", "abcde", None),
    ("short", "a", "Must be at least 2 characters."),
    ("short", "abcdef", "Must be at most 5 characters (has 6)."),
    ("short", "ёжик🎉", None),  # characters, not bytes
    ("short", "  a  ", "Must be at least 2 characters."),  # trimmed first
    ("note", "0123456789", None),
    ("note", "0123456789x", "Must be at most 10 characters (has 11)."),
    ("code", "ABC-12", None),
    ("code", "ABC-12x", "Use a code like ABC-1."),  # the whole value must match
    ("code", "xABC-12", "Use a code like ABC-1."),
    ("slug", "abc", None),
    ("slug", "ABC", "Does not match the pattern [a-z]+."),
    ("qty", 1, None),
    ("qty", 10, None),
    ("qty", "10", None),
    ("qty", 0, "Must be at least 1."),
    ("qty", 11, "Must be at most 10."),
    ("price", "0", None),
    ("price", "1000.50", None),
    ("price", "1 000,51", "Must be at most 1000.5."),
    ("price", -0.01, "Must be at least 0."),
    ("rate", "-1.5", None),
    ("rate", "1,501", "Must be at most 1.5."),
    ("rate", "-1.6", "Must be at least -1.5."),
    ("rate", "0.0001", "Must have at most 3 digits after the decimal point."),
    ("share", "100%", None),
    ("share", "100.01", "Must be at most 100."),
    ("share", "-1", "Must be at least 0."),
    ("due", "2025-01-01", None),
    ("due", "31.12.2025", None),
    ("due", "31.12.2024", "Must be at least 2025-01-01."),
    ("due", "2026-01-01", "Must be at most 2025-12-31."),
    ("meeting", "2025-06-01T12:00:00+03:00", None),
    ("meeting", "2024-12-31T23:59:59Z", "Must be at least 2025-01-01 00:00:00+00:00."),
    ("meeting", "2026-01-01T01:00:00+03:00", None),  # 2025-12-31T22:00Z
    ("meeting", "2026-01-01T00:00:00Z", "Must be at most 2025-12-31 23:59:59+00:00."),
    ("colors", ["red"], None),
    ("colors", ["red", "green"], None),
    ("colors", ["red", "green", "blue"], "Must have at most 2 values."),
    ("labels", ["a", "b", "c"], "Must have at most 2 values."),
    # A list longer than max_items is refused before its items are read (the work is per item), repeats or not.
    ("labels", ["a", "A", "b"], "Must have at most 2 values."),
    ("labels", ["a", "A"], None),
    ("work_email", "a@example.com", None),
    ("work_email", "someone.long@example.com", "Must be at most 20 characters (has 24)."),
]


@pytest.mark.parametrize(("name", "raw", "message"), CONSTRAINTS,
                         ids=[f"{n}-{r!r}"[:50] for n, r, _ in CONSTRAINTS])
def test_constraints_from_metadata(fields, name, raw, message):
    value, messages = outcome(fields[name], raw)
    if message is None:
        assert messages == [] and value is not None
    else:
        assert message in " ".join(messages)


def test_the_bounds_are_parsed_with_the_fields_own_type(fields):
    assert fields["qty"].min == 1 and fields["qty"].max == 10
    assert fields["price"].max == Decimal("1000.50")
    assert fields["rate"].min == Decimal("-1.500")
    assert fields["due"].max == date(2025, 12, 31)
    assert fields["meeting"].min == datetime(2025, 1, 1, tzinfo=UTC)


# --- multiple values ------------------------------------------------------------------------------

MULTIPLE: list[tuple[str, Any, Any]] = [
    ("phones", ["8 (912) 345-67-89", "+7 912 345 67 89", "+44 20 7946 0958"], ["+79123456789", "+442079460958"]),
    ("phones", "8 912 345 67 89", ["+79123456789"]),
    ("phones", [None, "", "89123456789"], ["+79123456789"]),
    ("phones", [], None),
    ("phones", "", None),
    ("phones", None, None),
    ("counts", [1, "2", "1 000", 1], [1, 2, 1000]),
    ("emails", ["A@Example.com", "a@example.com"], ["a@example.com"]),
    ("amounts", ["1,5", 2.25, "1.50"], [Decimal("1.5"), Decimal("2.25")]),
    ("days", ["01.03.2025", "2025-03-02"], [date(2025, 3, 1), date(2025, 3, 2)]),
]


@pytest.mark.parametrize(("name", "raw", "expected"), MULTIPLE, ids=[f"{n}-{r!r}"[:50] for n, r, _ in MULTIPLE])
def test_multiple_values_are_parsed_one_by_one_without_duplicates(fields, name, raw, expected):
    assert accepted(fields[name], raw) == expected


MULTIPLE_ERRORS: list[tuple[str, Any, str]] = [
    ("phones", ["+79123456789", "abc"], "Value 2: 'abc' is not a phone number."),
    ("phones", ["nope"], "Value 1: 'nope' is not a phone number."),
    ("counts", [1, 2, True], "Value 3: Must be a whole number, not a boolean."),
    ("counts", [1, 2**53], "Value 2: Must be between"),
    ("emails", ["a@b.ru", "c@d.ru", ["x@y.ru"]], "Value 3: Must be an e-mail address, not a list."),
    ("amounts", ["1", "NaN"], "Value 2: 'NaN' is not a number."),
    ("days", ["2025-02-30"], "Value 1: '2025-02-30' is not a date that exists"),
]


@pytest.mark.parametrize(("name", "raw", "message"), MULTIPLE_ERRORS,
                         ids=[f"{n}-{r!r}"[:50] for n, r, _ in MULTIPLE_ERRORS])
def test_a_bad_item_of_a_multiple_field_is_named_by_its_position(fields, name, raw, message):
    assert refused(fields[name], raw).startswith(message)


def test_constraints_apply_to_every_item_of_a_multiple_field(fields):
    assert refused(fields["counts"], [3, -1]) == "Must be at least 0."


# --- storage round trips --------------------------------------------------------------------------

ROUND_TRIPS: list[tuple[str, Any]] = [
    ("text", "Привет 🎉"),
    ("textarea", "a\nb"),
    ("integer", MAX_SAFE_INTEGER),
    ("integer", -1),
    ("decimal", "0.1"),
    ("decimal", "1500.50"),
    ("decimal", "-0"),
    ("decimal", "123456789012345"),
    ("decimal", "12345678901234.5"),
    ("decimal", "0.000000000000001"),
    ("decimal", Decimal("1.23456789012345E-300")),
    ("money", "1 500,50"),
    ("money", "0"),
    ("money", "9999999999999.99"),
    ("money", "-0.01"),
    ("whole_rubles", "1 500"),
    ("rate", "0.125"),
    ("rate", "1"),
    ("percent", "12,5"),
    ("percent", "100"),
    ("boolean", True),
    ("boolean", False),
    ("date", "2025-03-01"),
    ("date", "0001-01-01"),
    ("date", "9999-12-31"),
    ("datetime", "2025-03-01T14:30:00+03:00"),
    ("datetime", "0999-05-01T00:00:00Z"),
    ("datetime", "0001-01-01T00:00:00Z"),
    ("datetime", "9999-12-31T23:59:59Z"),
    ("email", "A@B.ru"),
    ("phone", "8 912 345 67 89"),
    ("url", "example.com/путь"),
    ("select", "lost"),
    ("multiselect", ["blue", "red"]),
    ("tags", ["Партнёр", "🎉"]),
    ("reference", 5),
    ("user", 9),
    ("file", FILE_ID),
    ("consent", True),
    ("rating", 4),
    ("ten_stars", "10"),
]

STORED_KIND = {"text": str, "number": int | float, "boolean": bool, "json": list | dict}


@pytest.mark.parametrize(("name", "raw"), ROUND_TRIPS, ids=[f"{n}-{r!r}"[:50] for n, r in ROUND_TRIPS])
def test_values_survive_the_json_column(fields, name, raw):
    field = fields[name]
    value = accepted(field, raw)
    value_type = field.value_type
    stored = value_type.to_storage(value)
    assert isinstance(stored, STORED_KIND[value_type.storage])
    through_json = json.loads(json.dumps(stored))
    back = value_type.from_storage(through_json, field)
    assert back == value
    assert type(back) is type(value)
    if not (value_type.name == "decimal" and field.places is None):
        # With fixed places the text is the same too; a plain decimal may lose trailing zeros (1500.50).
        assert value_type.to_json(back) == value_type.to_json(value)
    assert value_type.to_storage(back) == stored


def test_every_registered_type_has_a_round_trip_case():
    assert set(FIELD_TYPES.names()) - {"formula"} <= {FIELDS[name]["type"] for name, _ in ROUND_TRIPS}


def test_a_formula_is_stored_as_its_result_type(fields):
    formula = fields["formula"]
    assert formula.value_type.name == "integer"
    assert formula.value_type.from_storage(json.loads(json.dumps(formula.value_type.to_storage(84))), formula) == 84


def test_datetimes_are_stored_as_sortable_utc_text(fields):
    field = fields["datetime"]
    texts = [field.type.to_storage(accepted(field, raw)) for raw in
             ("0999-05-01T00:00:00Z", "2025-03-01T14:30:00+03:00", "2025-03-01T12:00:00Z", "9999-01-01T00:00:00Z")]
    assert texts == ["0999-05-01T00:00:00Z", "2025-03-01T11:30:00Z", "2025-03-01T12:00:00Z", "9999-01-01T00:00:00Z"]
    assert texts == sorted(texts)


def test_decimals_with_up_to_15_significant_digits_round_trip_exactly_as_json_numbers(fields):
    decimal_type = fields["decimal"].type
    rng = random.Random(20250301)
    for _ in range(2000):
        digits = rng.randint(1, 15)
        mantissa = rng.randrange(10 ** (digits - 1), 10**digits) * rng.choice((1, -1))
        value = Decimal(mantissa).scaleb(-rng.randint(0, digits + 10))
        assert accepted(fields["decimal"], format(value, "f")) == value
        stored = json.loads(json.dumps(decimal_type.to_storage(value)))
        assert isinstance(stored, int | float)
        back = decimal_type.from_storage(stored)
        assert back == value, value
        assert Decimal(decimal_type.to_json(back)) == value


def test_money_comes_back_with_its_places_and_as_exact_text(fields):
    money = fields["money"]
    value = accepted(money, "1 500,50")
    assert money.type.to_json(value) == "1500.50"
    assert money.type.to_json(money.type.from_storage(money.type.to_storage(value), money)) == "1500.50"
    assert money.type.to_json(accepted(money, "0.1")) == "0.10"


# --- what an edit form shows and reads: dates in the reader's order --------------------------------

@pytest.mark.parametrize(("language", "day", "moment", "with_seconds"), [
    ("ru", "01.03.2025", "01.03.2025 14:30", "01.03.2025 14:30:05"),
    ("en", "2025-03-01", "2025-03-01 14:30", "2025-03-01 14:30:05"),
    ("de", "2025-03-01", "2025-03-01 14:30", "2025-03-01 14:30:05"),  # ISO for any language without a pattern
])
def test_a_date_input_shows_the_date_as_the_readers_language_writes_it(fields, language, day, moment, with_seconds):
    date_field, datetime_field = fields["date"], fields["datetime"]
    assert date_field.type.localized_input_text(date(2025, 3, 1), date_field, {}, language) == day
    # A moment is shown in UTC (as a time typed without a zone is read), seconds only when it has some.
    shown = datetime_field.type.localized_input_text(
        datetime(2025, 3, 1, 17, 30, tzinfo=timezone(timedelta(hours=3))), datetime_field, {}, language)
    assert shown == moment
    assert datetime_field.type.localized_input_text(
        datetime(2025, 3, 1, 14, 30, 5, tzinfo=UTC), datetime_field, {}, language) == with_seconds
    assert date_field.type.localized_input_text(None, date_field, {}, language) == ""
    assert datetime_field.type.localized_input_text(None, datetime_field, {}, language) == ""
    assert date_field.type.localized_input_text(date(5, 1, 2), date_field, {}, language) in ("02.01.0005", "0005-01-02")


@pytest.mark.parametrize(("language", "typed", "read"), [
    ("ru", "01.03.2025", "2025-03-01"),
    ("ru", " 1.3.2025 ", "2025-03-01"),
    ("ru", "01/03/2025", "2025-03-01"),  # day first, whatever the separator, for a Russian reader
    ("ru", "2025-03-01", "2025-03-01"),
    ("en", "2025-03-01", "2025-03-01"),
    ("en", "2025-3-1", "2025-03-01"),
    ("en", "01.03.2025", "2025-03-01"),  # dots are day first in any language, as DateType.parse reads them
    ("en", "03/01/2025", "03/01/2025"),  # m/d/y or d/m/y: left as typed, for parse to refuse
    ("ru", "", ""),
    ("ru", "завтра", "завтра"),
])
def test_a_typed_date_is_read_in_the_readers_order(fields, language, typed, read):
    field = fields["date"]
    assert field.type.typed_text(typed, field, language) == read


@pytest.mark.parametrize(("language", "typed", "read"), [
    ("ru", "01.03.2025 14:30", "2025-03-01T14:30"),
    ("ru", "01.03.2025 14:30:05", "2025-03-01T14:30:05"),
    ("ru", "1.3.2025, 9:05", "2025-03-01T09:05"),
    ("ru", "01.03.2025", "2025-03-01"),  # midnight, as an ISO date alone is
    ("en", "2025-03-01 14:30", "2025-03-01T14:30"),
    ("en", "2025-03-01T14:30:05", "2025-03-01T14:30:05"),
    ("en", "2025-03-01T14:30:00+03:00", "2025-03-01T14:30:00+03:00"),  # a zone: ISO as typed
    ("en", "", ""),
    ("ru", "в обед", "в обед"),
])
def test_a_typed_date_and_time_is_read_in_the_readers_order(fields, language, typed, read):
    field = fields["datetime"]
    assert field.type.typed_text(typed, field, language) == read


def test_a_typed_date_that_names_no_day_is_refused_as_typed(fields):
    with pytest.raises(FieldValueError, match=r"'31\.02\.2025 10:00' is not a date that exists"):
        fields["datetime"].type.typed_text("31.02.2025 10:00", fields["datetime"], "ru")
    with pytest.raises(FieldValueError, match=r"'01\.03\.2025 25:00' is not a time that exists"):
        fields["datetime"].type.typed_text("01.03.2025 25:00", fields["datetime"], "ru")
    with pytest.raises(FieldValueError, match=r"'31\.02\.2025' is not a date that exists"):
        fields["date"].type.typed_text("31.02.2025", fields["date"], "ru")


@pytest.mark.parametrize("language", ["ru", "en"])
def test_a_date_shown_in_an_input_is_read_back_as_itself(fields, language):
    for name, value in (("date", date(2025, 3, 1)), ("datetime", datetime(2025, 3, 1, 9, 15, 37, tzinfo=UTC)),
                        ("datetime", datetime(2025, 3, 1, 9, 15, tzinfo=UTC))):
        field = fields[name]
        shown = field.type.localized_input_text(value, field, {}, language)
        assert accepted(field, field.type.typed_text(shown, field, language)) == value


@pytest.mark.parametrize("language", ["en", "ru", "de", "fr", "hi"])
def test_grouped_numbers_are_written_as_babel_writes_them(language):
    """An input's number is written by Python's grouping with the language's symbols where that is what Babel
    writes (groups of three), and by Babel where it is not (Hindi's lakh grouping): the same text either way."""
    import random
    from decimal import Decimal

    from babel.numbers import format_decimal

    from kartoteka.metadata.types.base import grouped_number

    rng = random.Random(language)
    for _ in range(2000):
        places = rng.choice([0, 1, 2, 2, 3, 6])
        value = Decimal(rng.randint(-10 ** rng.randint(1, 15), 10 ** rng.randint(1, 15))).scaleb(-places)
        pattern = "#,##0." + "0" * places if places else "#,##0"
        assert grouped_number(value, language) == format_decimal(value, format=pattern, locale=language,
                                                                  decimal_quantization=False)
