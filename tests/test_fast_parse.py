"""Shortcuts of the save path give exactly what the general code gives.

A save parses and checks every value sent, so the common inputs take shortcuts: plain decimal text ('9892.73')
and plain ISO dates skip the general parse, a select's parser knows its options ahead, text is stripped once,
and a field's checker is None or a length test when its options leave nothing else to check. These tests hold
each shortcut to the general code over generated inputs (as tests/test_email_parse.py does for e-mails), and the
pipeline's per-user plan of inputs to the per-field rules it gathers.
"""

from __future__ import annotations

import dataclasses
import random
import string
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

import pytest

from kartoteka.messages import Message
from kartoteka.metadata.expressions import Clock, compile_expression
from kartoteka.metadata.fieldtypes import FieldValueError, ParseContext
from kartoteka.metadata.loader import load_metadata
from kartoteka.metadata.model import FieldDef, Option
from kartoteka.metadata.types.base import _CONTROL, blank, require_str, unstorable
from kartoteka.metadata.types.scalar import (
    DateType,
    DecimalType,
    EmailType,
    MoneyType,
    PercentType,
    _formula_number,
    _plain_decimal,
)
from kartoteka.records import pipeline
from kartoteka.records.access import editable_fields, viewable_fields
from kartoteka.records.model import SYSTEM
from tests.conftest import write_config
from tests.test_email_parse import PIECES, _shaped
from tests.test_save_plan_equivalence import USERS

CTX = ParseContext()

FIELDS: dict[str, dict[str, Any]] = {
    "text": {"type": "text"},
    "textarea": {"type": "textarea"},
    "short": {"type": "text", "min_length": 2, "max_length": 5},
    "capped": {"type": "text", "max_length": 5},
    "code": {"type": "text", "pattern": "[A-Z]{3}-[0-9]+", "pattern_message": "Use a code like ABC-1."},
    "note": {"type": "textarea", "max_length": 10},
    "email": {"type": "email"},
    "work_email": {"type": "email", "max_length": 20},
    "url": {"type": "url"},
    "site": {"type": "url", "max_length": 30},
    "integer": {"type": "integer"},
    "qty": {"type": "integer", "min": 1, "max": 10},
    "at_most": {"type": "integer", "max": 5},
    "decimal": {"type": "decimal"},
    "rate": {"type": "decimal", "places": 3, "min": -1.5, "max": 1.5},
    "money": {"type": "money"},
    "price": {"type": "money", "min": 0},
    "whole_rubles": {"type": "money", "places": 0},
    "fine": {"type": "decimal", "places": 8},
    "percent": {"type": "percent"},
    "share": {"type": "percent", "min": 0, "max": 100},
    "date": {"type": "date"},
    "due": {"type": "date", "min": "2025-01-01", "max": "31.12.2025"},
    "datetime": {"type": "datetime"},
    "meeting": {"type": "datetime", "min": "2025-01-01T00:00:00Z"},
    "select": {"type": "select", "options": ["new", "won", {"value": "lost", "label": "Проиграна"}]},
    "rating": {"type": "rating"},
    "tags": {"type": "tags", "max_items": 2},
    "counts": {"type": "integer", "multiple": True, "min": 0},
}


@pytest.fixture(scope="module")
def fields(tmp_path_factory) -> dict[str, FieldDef]:
    root = write_config(tmp_path_factory.mktemp("fastparse"), {
        "probe": {"entity": "probe", "label": {"en": "Probe"}, "fields": FIELDS},
    })
    return dict(load_metadata(root).entity("probe").fields)


def _outcome(fn: Any, *args: Any) -> Any:
    """A value with its type and digits (Decimal('1.50') is not Decimal('1.5')), or the messages of a refusal."""
    try:
        value = fn(*args)
    except FieldValueError as exc:
        return "refused", [repr(m) for m in exc.messages]
    return "ok", type(value), value.as_tuple() if isinstance(value, Decimal) else value


# --- decimals -------------------------------------------------------------------------------------

DECIMAL_PIECES = [*string.digits, *"0123456789", ".", ".", ",", " ", "-", "+", "e", "E", "%", "_", "'", "\u00a0",
                  "\u0663", "\uff11", "0" * 8, "9" * 7, "1" * 16, "NaN", "Inf", "\n"]


def _decimal_text(rng: random.Random) -> str:
    """Mostly digits with a point somewhere, now and then something else."""
    if rng.random() < 0.6:
        whole = "".join(rng.choice(string.digits) for _ in range(rng.randint(0, 17)))
        text = whole + ("." + "".join(rng.choice(string.digits) for _ in range(rng.randint(0, 10)))
                        if rng.random() < 0.7 else "")
        if rng.random() < 0.1:
            text = rng.choice(["-", "+", " ", "0"]) + text
        return text
    return "".join(rng.choice(DECIMAL_PIECES) for _ in range(rng.randint(1, 10)))


@pytest.mark.parametrize("places", range(9))
def test_plain_decimal_text_is_what_the_general_parse_gives(places):
    rng = random.Random(20261201 + places)
    general = DecimalType()
    shortcut = 0
    for _ in range(20_000):
        text = _decimal_text(rng)
        plain = _plain_decimal(text, places)
        if plain is None:
            continue
        shortcut += 1
        expected = general._parse_any(text, places)
        assert type(plain) is Decimal and plain.as_tuple() == expected.as_tuple(), (text, places)
    assert shortcut > 1000  # the generator does reach the shortcut


def test_no_shortcut_without_places_or_for_other_inputs():
    for raw in ("12.5", Decimal("12.5"), 12, 12.5, None, "", " 12", "12 ", "-1", "+1", "1e3", "1,5", "\u0663"):
        assert _plain_decimal(raw, None) is None
    for raw in (Decimal("12.5"), 12, 12.5, None, "", " 12", "12 ", "-1", "+1", "1e3", "1,5", "\u0663", "1.", ".5",
                "1.234", "1" * 14, True):
        assert _plain_decimal(raw, 2) is None, raw


@pytest.mark.parametrize("name", ["decimal", "rate", "money", "price", "whole_rubles", "fine", "percent", "share"])
def test_decimal_fields_parse_as_the_general_way(fields, name):
    field = fields[name]
    value_type = field.type
    assert isinstance(value_type, DecimalType)
    places = value_type.places(field)
    rng = random.Random(name)
    parser = value_type.parser(field)
    for number in range(3000):
        text = _decimal_text(rng) if number % 10 else rng.choice(["12.5%", " 7 % ", 12, 2.5, Decimal("1.005"), None])
        raw = text.strip().removesuffix("%") if isinstance(value_type, PercentType) and isinstance(text, str) else text
        expected = _outcome(value_type._parse_any, raw, places)
        assert _outcome(value_type.parse, text, field, CTX) == expected, text
        assert _outcome(parser, text, field, CTX) == expected, text
    assert isinstance(MoneyType(), DecimalType)


def _from_formula_before(value_type: DecimalType, value: Any, field: FieldDef) -> Any:
    """DecimalType.from_formula before a Decimal result skipped _formula_number's copy."""
    number = _formula_number(value)
    places = value_type.places(field)
    if places is not None:
        return number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    with localcontext() as context:
        context.prec = 15
        return (+number).normalize()


@pytest.mark.parametrize("name", ["decimal", "rate", "money", "whole_rubles", "fine", "percent"])
def test_a_formulas_decimal_result_is_coerced_as_before(fields, name):
    field = fields[name]
    rng = random.Random(name)
    values: list[Any] = [Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-Infinity"), Decimal("1E+15"),
                         Decimal("999999999999999.9999999999999999"), Decimal("-999999999999999.99"), Decimal("-0"),
                         Decimal("0E-30"), 7, 2.5, True, "1", None]
    for _ in range(3000):
        digits = "".join(rng.choice(string.digits) for _ in range(rng.randint(1, 34)))
        values.append(Decimal(rng.choice(["", "-"]) + digits).scaleb(-rng.randint(0, 20)))
    for value in values:
        assert _outcome(field.type.from_formula, value, field) == _outcome(_from_formula_before, field.type, value,
                                                                          field), value


# --- e-mails --------------------------------------------------------------------------------------

def test_plain_emails_parse_as_the_general_way():
    rng = random.Random(20261205)
    email = EmailType()
    samples: list[Any] = [None, "", " ", 5, ["a@b.com"], "a" * 250 + "@b.com", "a" * 245 + "@b.com",
                          " a@b.com", "a@b.com ", "A@B.COM"]
    pieces = [*PIECES, " ", "\t"]
    for number in range(20_000):
        samples.append(_shaped(rng) if number % 2 else "".join(rng.choice(pieces) for _ in range(rng.randint(1, 8))))
    for raw in samples:
        assert _outcome(email.parse, raw, None, CTX) == _outcome(email._parse_any, raw), raw


# --- dates ----------------------------------------------------------------------------------------

def _date_text(rng: random.Random) -> str:
    digits = "0123456789" if rng.random() < 0.9 else "0123456789\u0663"
    parts = ["".join(rng.choice(digits) for _ in range(n)) for n in (4, 2, 2)]
    if rng.random() < 0.5:  # a likely date
        parts = [str(rng.randint(1, 9999)).zfill(4), str(rng.randint(0, 13)).zfill(2), str(rng.randint(0, 32)).zfill(2)]
    text = "-".join(parts)
    if rng.random() < 0.1:
        text = rng.choice([" ", "\t", "T", "x"]) + text if rng.random() < 0.5 else text + rng.choice([" ", "Z"])
    if rng.random() < 0.05:
        text = f"{parts[2]}.{parts[1]}.{parts[0]}"
    return text


def test_plain_dates_parse_as_the_general_way():
    rng = random.Random(20261202)
    parse = DateType().parse
    general = DateType()._parse_any
    kept = 0
    for _ in range(30_000):
        text = _date_text(rng)
        got = _outcome(parse, text, None, CTX)
        assert got == _outcome(general, text), text
        kept += got[0] == "ok"
    assert kept > 5000


def test_dates_other_than_text_are_the_general_way():
    for raw in (None, "", " ", date(2026, 3, 2), 20260302, ["2026-03-02"], "2026-02-29", "2028-02-29", "02.03.2026"):
        assert _outcome(DateType().parse, raw, None, CTX) == _outcome(DateType()._parse_any, raw), raw


# --- text -----------------------------------------------------------------------------------------

TEXT_PIECES = ["a", "Я", " ", "  ", "\t", "\n", "\r", "\r\n", "\x00", "\x01", "\x0b", "\x1f", "\x7f", "\u00a0",
               "\u2028", "\ud800", "\udfff", "😀", "x" * 3, ""]


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(TEXT_PIECES) for _ in range(rng.randint(0, 6)))


def _require_str_before(text: str) -> str:
    """require_str of a text before it searched once for either kind of character."""
    problem = unstorable(text)
    if problem is not None:
        raise FieldValueError(Message("text.unstorable", "Contains {problem}, which cannot be stored.",
                                      problem=problem))
    if _CONTROL.search(text):
        raise FieldValueError(Message("text.control_chars", "Contains control characters; remove them."))
    return text


def _text_before(raw: Any) -> Any:
    """TextType.parse before it stripped once."""
    if blank(raw):
        return None
    text = require_str(raw).strip()
    if "\n" in text or "\r" in text:
        raise FieldValueError(Message("text.single_line", "Must be a single line."))
    return text


def _textarea_before(raw: Any) -> Any:
    if blank(raw):
        return None
    return require_str(raw).strip().replace("\r\n", "\n")


def test_text_parses_as_before(fields):
    rng = random.Random(20261203)
    samples = [_text(rng) for _ in range(20_000)] + [None, 5, 2.5, True, [], ["a"], {"a": 1}]
    for raw in samples:
        if isinstance(raw, str):
            assert _outcome(require_str, raw) == _outcome(_require_str_before, raw), repr(raw)
        assert _outcome(fields["text"].type.parse, raw, fields["text"], CTX) == _outcome(_text_before, raw), repr(raw)
        assert _outcome(fields["textarea"].type.parse, raw, fields["textarea"], CTX) == \
            _outcome(_textarea_before, raw), repr(raw)


# --- selects --------------------------------------------------------------------------------------

def test_a_selects_parser_is_its_parse(fields):
    select = fields["select"]
    odd = dataclasses.replace(select, options=(*select.options, Option(" spaced ", "Spaced"), Option("two words",
                                                                                                     "Two")))
    raws = ["new", "won", "lost", " new", "new ", "New", "", " ", "spaced", " spaced ", "two words", "two  words",
            "Проиграна", None, 0, 1, True, 2.5, ["new"], {"value": "new"}]
    for field in (select, odd):
        parse = field.type.parser(field)
        for raw in raws:
            assert _outcome(parse, raw, field, CTX) == _outcome(field.type.parse, raw, field, CTX), (raw, field.options)


# --- checkers -------------------------------------------------------------------------------------

def _checked_values(field: FieldDef, rng: random.Random) -> list[Any]:
    """Parsed values of the field's kind, some within its options, some beyond."""
    kind = field.value_type.name
    if kind in ("text", "textarea", "email", "url"):
        return ["", "a", "ab", "abcde", "abcdef", "ABC-1", "abc-1", "x" * 20, "x" * 21, "x" * 254, "x" * 255,
                "x" * 2000, "x" * 2001, "x" * 10_000, "x" * 10_001, "x" * 100_001]
    if kind == "integer":
        return [-5, 0, 1, 10, 11, 2**53 - 1]
    if kind in ("decimal", "money", "percent"):
        return [Decimal(text) for text in ("-2", "-1.5", "0", "0.01", "1.5", "1.6", "100", "100.01", "1000.50")]
    if kind == "date":
        return [date(2024, 12, 31), date(2025, 1, 1), date(2025, 12, 31), date(2026, 1, 1)]
    if kind == "datetime":
        return [field.type.parse(text, field, CTX) for text in ("2024-12-31 23:59", "2025-01-01 00:00", "2026-06-01")]
    if kind == "rating":
        return [0, 1, 5, 6, 10, 11]
    if kind == "tags":
        return [["a"], ["a", "b"], ["a", "b", "c"]]
    return [rng.random()]


def test_checkers_say_what_check_says(fields):
    rng = random.Random(20261204)
    for name, field in fields.items():
        value_type = field.value_type
        checker = value_type.checker(field)
        for value in _checked_values(field, rng):
            expected = value_type.check(value, field)
            if checker is None:
                assert expected == [], (name, value)
            else:
                assert checker(value, field) == expected, (name, value)
    assert fields["text"].type.checker(fields["text"]) is not None  # the length limit stays
    for name in ("integer", "decimal", "money", "percent", "date", "datetime"):
        assert fields[name].value_type.checker(fields[name]) is None, name  # nothing to check without bounds


# --- the pipeline's plan --------------------------------------------------------------------------

def test_the_inputs_a_user_may_send_are_the_per_field_rules(shipped_metadata):
    for entity in shipped_metadata.entities.values():
        plan = pipeline._plan(entity)
        for user in USERS:
            viewable, editable = viewable_fields(entity, user), editable_fields(entity, user)
            for check_writes in (True, False):
                inputs = pipeline._inputs(entity, viewable, editable if check_writes else None)
                assert set(inputs) == {name for name in entity.fields if name in viewable}, entity.name
                for name, (field, parse, refusal, settles, compares) in inputs.items():
                    assert field is entity.fields[name]
                    expected = pipeline.Pipeline._refusal(field, editable, set()) if check_writes else None
                    assert refusal == expected, (entity.name, name)
                    assert parse is (plan.parsers.get(name) if refusal is None else None), (entity.name, name)
                    assert settles == (name in plan.settles) and compares == (name in plan.compares)


def test_fields_left_out_of_the_constraints_never_have_a_message(shipped_metadata):
    for entity in shipped_metadata.entities.values():
        constraints = {entry[0]: entry for entry in pipeline._plan(entity).constraints}
        assert list(constraints) == [name for name in entity.fields if name in constraints]  # in the fields' order
        for name, field in entity.fields.items():
            may_be_required = field.required or field.required_if is not None
            if name not in constraints:
                assert not may_be_required and not field.multiple and field.value_type.checker(field) is None
                continue
            _, entry_field, check, missing, multiple = constraints[name]
            assert entry_field is field and multiple == field.multiple
            assert (check is None) == (field.value_type.checker(field) is None)
            assert (missing is not None) == may_be_required


def _conditions_of_saves(metadata: Any) -> list[Any]:
    """(visible, required, errors) of saves setting each option of each select of every shipped card."""
    clock = Clock(lambda: datetime(2026, 3, 2, 10, tzinfo=UTC))
    outcomes = []
    for entity in metadata.entities.values():
        run = pipeline.Pipeline(entity, clock, CTX).run
        system = {"id": None, "owner": None, "created_at": clock.now(), "updated_at": clock.now()}
        for name, field in entity.fields.items():
            for option in field.options if field.type.name == "select" else ():
                prepared = run({name: option.value}, None, SYSTEM, system)
                outcomes.append((entity.name, name, option.value, prepared.visible, prepared.required,
                                 prepared.errors))
    return outcomes


def _clear_plans() -> None:
    for cached in (pipeline._plan, pipeline._inputs, pipeline._unconditional_conditions):
        cached.cache_clear()


def test_a_required_if_that_is_the_visible_if_is_not_evaluated_again(shipped_metadata, monkeypatch):
    shared = [(entity.name, name) for entity in shipped_metadata.entities.values()
              for name, *_, as_shown in pipeline._plan(entity).conditions if as_shown]
    assert ("deal", "lost_reason") in shared  # the shipped cards do use the shortcut
    shortcut = _conditions_of_saves(shipped_metadata)
    _clear_plans()
    monkeypatch.setattr(pipeline, "_same_condition", lambda first, second: False)
    try:
        assert _conditions_of_saves(shipped_metadata) == shortcut
    finally:
        _clear_plans()  # the plans built without the shortcut go with the monkeypatch


def test_conditions_calling_functions_are_evaluated_each_time():
    source = "days_between(today(), close_date) > 0"
    known = ["stage", "close_date"]
    first, second = compile_expression(source, known), compile_expression(source, known)
    assert first.functions and not pipeline._same_condition(first, second)
    plain = compile_expression("stage == 'lost'", known)
    assert pipeline._same_condition(plain, compile_expression("stage == 'lost'", known))
    assert not pipeline._same_condition(plain, compile_expression("stage == 'won'", known))
    assert not pipeline._same_condition(plain, None) and not pipeline._same_condition(None, None)
