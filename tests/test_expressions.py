"""Expressions in metadata: what an admin is told when one is wrong, and what it computes on a record."""

from __future__ import annotations

import ast
import dataclasses
import decimal
import random
import sys
import time
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import simpleeval

from kartoteka.metadata.expressions import (
    FUNCTIONS,
    MAX_EXPRESSION_DEPTH,
    MAX_EXPRESSION_LENGTH,
    Clock,
    CompiledExpression,
    EvaluationError,
    Evaluator,
    ExpressionError,
    FunctionSpec,
    compile_expression,
    nesting_depth,
)

FIELDS = ("price", "quantity", "discount", "name", "stage", "close_date", "signed_at", "tags", "amount", "note")


def compiled(source: str):
    return compile_expression(source, FIELDS)


def interpreted(expression: CompiledExpression) -> CompiledExpression:
    """The same checked expression without its compiled program: the Evaluator interprets it."""
    return dataclasses.replace(expression, program=None)


def values(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "price": Decimal("10.50"), "quantity": 3, "discount": Decimal("10"), "name": "Иван",
        "stage": "new", "close_date": date(2026, 1, 31), "signed_at": datetime(2026, 3, 1, 18, 0, tzinfo=UTC),
        "tags": ["vip"], "amount": None, "note": None,
    }
    base.update(overrides)
    return base


@pytest.fixture
def evaluate(clock):
    def run(source: str, **overrides: Any) -> Any:
        return Evaluator(values(**overrides), clock).value(compiled(source))
    return run


# --- compile errors -------------------------------------------------------------------------------

COMPILE_ERRORS = [
    ("price * * 2", "syntax error at column 9 in 'price * * 2'"),
    ("quantity; 1", "syntax error at column 9"),
    ("x = 1", "syntax error at column 3"),
    ("(price", "syntax error at column 1 in '(price': '(' was never closed"),
    ("price +", "syntax error in 'price +'"),
    ("pricee * 2", "unknown name 'pricee' in 'pricee * 2'; did you mean 'price'?"),
    ("quantty > 1", "did you mean 'quantity'?"),
    ("zzz > 1", "unknown name 'zzz' in 'zzz > 1'"),
    ("todya()", "unknown function 'todya' in 'todya()'; did you mean 'today'?"),
    ("rount(price)", "did you mean 'round'?"),
    ("today", "'today' in 'today' is a function: call it as today()"),
    ("today(1)", "today() takes 0 argument(s), got 1"),
    ("add_months(close_date)", "add_months() takes 2 argument(s), got 1"),
    ("round(price, 2, 3)", "round() takes 1 to 2 argument(s), got 3"),
    ("max()", "max() takes 1 or more argument(s), got 0"),
    ("round(price, places=2)", "round() takes no keyword arguments"),
    ("price * 1e400", "the number 1e400 is too large"),
    ("name + '\\x00'", "'name + '\\x00'': a text in it holds a NUL character (U+0000), which cannot be stored"),
    ("concat(name, '\\N{NULL}')", "holds a NUL character (U+0000), which cannot be stored"),
    ("name == '\\ud800'", "holds an unpaired surrogate (U+D800, not a character), which cannot be stored"),
    ("['a', ('b\\udfff',)]", "holds an unpaired surrogate (U+DFFF"),
    ("quantity is 3", "'quantity is 3': 'is' compares with None, True or False only; use == or != to compare"),
    ("'a' is 'a'", "'is' compares with None, True or False only"),
    ("name is not stage", "'is not' compares with None, True or False only"),
    ("note is price is None", "'is' compares with None, True or False only"),
    ("", "expression is empty"),
    ("   ", "expression is empty"),
    ("price + " * 400 + "1", f"expression is longer than {MAX_EXPRESSION_LENGTH} characters"),
]


@pytest.mark.parametrize(("source", "message"), COMPILE_ERRORS, ids=[s[:30] for s, _ in COMPILE_ERRORS])
def test_compile_errors_say_what_and_where(source, message):
    with pytest.raises(ExpressionError) as raised:
        compiled(source)
    assert message in str(raised.value)


def test_a_suggestion_is_only_given_when_something_is_close():
    with pytest.raises(ExpressionError) as raised:
        compiled("xyzzy + 1")
    assert "did you mean" not in str(raised.value)


def test_system_names_are_known_only_when_passed():
    with pytest.raises(ExpressionError, match="unknown name 'created_at'"):
        compiled("now() - created_at")
    assert compile_expression("now() - created_at", [*FIELDS, "created_at"]).names == {"created_at"}


def test_a_compiled_expression_knows_the_fields_and_functions_it_uses():
    expression = compiled("round(quantity * price * (1 - discount / 100), 2) + len(name)")
    assert expression.names == {"quantity", "price", "discount", "name"}
    assert expression.functions == {"round", "len"}
    assert compiled("today() > close_date").names == {"close_date"}
    assert compiled("1 + 1").names == frozenset()


# --- hostile expressions --------------------------------------------------------------------------

HOSTILE = [
    ("__import__('os')", "unknown function '__import__'"),
    ("__import__('os').system('id')", "only plain function calls such as today() are allowed"),
    ("().__class__", "attribute access (a.b) is not allowed in expressions"),
    ("name.__class__.__mro__", "attribute access (a.b) is not allowed"),
    ("name.upper()", "only plain function calls such as today() are allowed"),
    ("tags[0]", "indexing (a[b]) is not allowed in expressions"),
    ("name[1:2]", "indexing (a[b]) is not allowed"),
    ("lambda: 1", "lambda is not allowed in expressions"),
    ("(lambda x: x)(1)", "only plain function calls"),
    ("[x for x in tags]", "a comprehension is not allowed in expressions"),
    ("{x for x in tags}", "a comprehension is not allowed"),
    ("{k: 1 for k in tags}", "a comprehension is not allowed"),
    ("(x for x in tags)", "a generator is not allowed"),
    ("f'{name}'", "an f-string is not allowed in expressions"),
    ("f'{name.__class__}'", "an f-string is not allowed"),
    ("(x := 1)", "assignment (:=) is not allowed in expressions"),
    ("{'a': 1}", "a dict literal is not allowed"),
    ("{1, 2}", "a set literal is not allowed"),
    ("concat(*tags)", "unpacking (*x) is not allowed"),
    ("await price", "await is not allowed"),
    ("b'bytes'", "this kind of literal is not allowed"),
    ("1j", "this kind of literal is not allowed"),
    ("quantity & 1", "the & operator is not allowed"),
    ("quantity | 1", "the | operator is not allowed"),
    ("quantity ^ 1", "the ^ operator is not allowed"),
    ("quantity << 2", "the << operator is not allowed"),
    ("~quantity", "the ~ operator is not allowed"),
    ("open('/etc/passwd')", "unknown function 'open'"),
    ("eval('1')", "unknown function 'eval'"),
    ("getattr(name, 'upper')", "unknown function 'getattr'"),
    ("type(name)", "unknown function 'type'"),
    ("__builtins__", "unknown name '__builtins__'"),
    ("1 if True else __import__", "unknown name '__import__'"),
    ("import os", "syntax error"),
    ("yield 1", "syntax error"),
]


@pytest.mark.parametrize(("source", "message"), HOSTILE, ids=[s for s, _ in HOSTILE])
def test_hostile_expressions_are_refused_when_metadata_loads(source, message):
    with pytest.raises(ExpressionError) as raised:
        compiled(source)
    assert message in str(raised.value)


RUNAWAY = [
    "9**9**9",
    "4000000 ** 4000000",
    "quantity ** 4000000",
    "2 ** 100000",
    "(10 ** 6) ** 4000000",
    "'a' * 10**10",
    "name * 100000000",
    "concat(name) * 10**9",
    "tags * 10**9",
    "'x' * 100001",
    "'a' + 'b' * 100000",
]


@pytest.mark.parametrize("source", RUNAWAY)
def test_runaway_computations_stop_with_an_error_instead_of_hanging(clock, source):
    expression = compiled(source)  # allowed by the static checks, stopped when evaluated
    with pytest.raises(EvaluationError, match="cannot compute"):
        Evaluator(values(), clock).value(expression)


def test_runaway_computations_make_a_condition_false(clock):
    assert Evaluator(values(), clock).condition(compiled("quantity ** 4000000 > 1")) is False


def test_modest_powers_still_work(evaluate):
    assert evaluate("2 ** 10") == 1024
    assert evaluate("quantity ** 2") == 9
    assert evaluate("(-2) ** 3") == -8
    assert evaluate("1 ** 4000000") == 1
    assert evaluate("price ** 2") == Decimal("110.2500")
    assert evaluate("2 ** -1") == Decimal("0.5")


# --- evaluation -----------------------------------------------------------------------------------

RESULTS = [
    ("price * 0.9", {}, Decimal("9.450")),
    ("round(price * 0.9, 2)", {}, Decimal("9.45")),
    ("0.1 + 0.2", {}, Decimal("0.3")),
    ("0.1 + 0.2 == 0.3", {}, True),
    ("price - 0.5", {}, Decimal("10.00")),
    ("quantity * price * (1 - discount / 100)", {}, Decimal("28.3500")),
    ("7 / 2", {}, Decimal("3.5")),
    ("quantity / 4", {}, Decimal("0.75")),
    ("1 / 3", {}, Decimal(1) / Decimal(3)),
    ("quantity // 2", {}, 1),
    ("quantity % 2", {}, 1),
    ("-price", {}, Decimal("-10.50")),
    ("abs(-price)", {}, Decimal("10.50")),
    ("min(quantity, price)", {}, 3),
    ("max(quantity, 2.5)", {}, 3),
    ("round(price)", {"price": Decimal("10.49")}, Decimal("10")),
    ("round(price)", {"price": Decimal("10.5")}, Decimal("11")),
    ("round(price, 1)", {"price": Decimal("-0.25")}, Decimal("-0.3")),
    ("stage == 'new' and quantity > 2", {}, True),
    ("stage in ['new', 'won']", {}, True),
    ("'vip' in tags", {}, True),
    ("1 < quantity < 5", {}, True),
    ("quantity if quantity > 5 else 0", {}, 0),
    ("len(name)", {}, 4),
    ("upper(name)", {}, "ИВАН"),
    ("lower('ÀÉ')", {}, "àé"),
    ("concat(name, ' ', quantity, note)", {}, "Иван 3"),
    ("coalesce(note, amount, name)", {}, "Иван"),
    ("coalesce(note, '', name)", {}, "Иван"),
    ("is_empty(note)", {}, True),
    ("is_empty(tags)", {"tags": []}, True),
    ("is_empty(quantity)", {"quantity": 0}, False),
    ("len(note)", {}, 0),
    ("year(close_date)", {}, 2026),
    ("month(close_date)", {}, 1),
    ("note is None", {}, True),
]


@pytest.mark.parametrize(("source", "overrides", "expected"), RESULTS, ids=[s for s, _, _ in RESULTS])
def test_evaluation(evaluate, source, overrides, expected):
    result = evaluate(source, **overrides)
    assert result == expected
    assert type(result) is type(expected)


def test_float_literals_become_decimals_so_money_maths_works(evaluate):
    assert isinstance(evaluate("price * 0.9"), Decimal)
    assert isinstance(evaluate("0.1"), Decimal)
    assert evaluate("0.1") == Decimal("0.1")  # not 0.1000000000000000055511151231257827


def test_division_of_whole_numbers_is_exact_decimal(evaluate):
    assert evaluate("10 / 4") == Decimal("2.5")
    assert isinstance(evaluate("10 / 5"), Decimal)


EMPTY_INPUTS = [
    "amount * 2",
    "amount + price",
    "price / amount",
    "amount > 5",
    "price > amount",
    "-amount",
    "abs(amount)",
    "round(amount, 2)",
    "upper(note)",
    "year(amount)",
    "add_days(amount, 3)",
    "add_months(amount, 1)",
    "days_between(amount, today())",
    "note + name",
]


@pytest.mark.parametrize("source", EMPTY_INPUTS)
def test_an_empty_input_gives_an_empty_result(evaluate, source):
    assert evaluate(source) is None


@pytest.mark.parametrize("source", ["price / 0", "quantity / 0", "quantity // 0", "quantity % 0",
                                    "price / (quantity - 3)"])
def test_division_by_zero_gives_an_empty_result(evaluate, source):
    assert evaluate(source) is None


TYPE_ERRORS = [
    "quantity + name",
    "name + 1",
    "quantity < name",
    "-name",
    "len(quantity)",
    "days_between(close_date, 'x')",
    "add_months(name, 1)",
    "today() + 1",
    "add_days(close_date, 10 ** 10)",
    "round(price, 1000000)",
]


@pytest.mark.parametrize("source", TYPE_ERRORS)
def test_present_inputs_the_expression_cannot_use_raise_an_evaluation_error(clock, source):
    with pytest.raises(EvaluationError) as raised:
        Evaluator(values(), clock).value(compiled(source))
    assert str(raised.value).startswith(f"cannot compute '{source}': ")


CONDITIONS = [
    ("stage == 'new'", {}, True),
    ("stage == 'lost'", {}, False),
    ("amount > 5", {}, False),
    ("amount < 5", {}, False),
    ("not amount", {}, True),
    ("note == 'x'", {}, False),
    ("name + 1", {}, False),  # a type error is not a reason to show or require a field
    ("price / 0 > 1", {}, False),
    ("len(tags) > 0", {}, True),
    ("len(tags) > 0", {"tags": None}, False),
    ("tags", {"tags": []}, False),
]


@pytest.mark.parametrize(("source", "overrides", "expected"), CONDITIONS, ids=[s for s, o, _ in CONDITIONS])
def test_conditions_are_plain_booleans_and_false_on_empty_or_unusable_data(clock, source, overrides, expected):
    assert Evaluator(values(**overrides), clock).condition(compiled(source)) is expected


def test_conditions_on_a_completely_empty_record_are_false(clock):
    empty = dict.fromkeys(FIELDS)
    for source in ("price > 0", "stage == 'new'", "quantity * price > 100", "close_date < today()", "name"):
        assert Evaluator(empty, clock).condition(compiled(source)) is False, source


# --- functions ------------------------------------------------------------------------------------

def test_today_and_now_come_from_the_clock(fixed_clock, clock):
    assert Evaluator({}, clock).value(compile_expression("today()", [])) == date(2026, 3, 2)
    assert Evaluator({}, clock).value(compile_expression("now()", [])) == datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    fixed_clock.advance(days=30)
    assert Evaluator({}, clock).value(compile_expression("today()", [])) == date(2026, 4, 1)


def test_a_clock_in_another_timezone_changes_today():
    late_evening_utc = datetime(2026, 3, 1, 22, 30, tzinfo=UTC)
    moscow = Clock(lambda: late_evening_utc.astimezone(timezone(timedelta(hours=3))))
    assert Evaluator({}, moscow).value(compile_expression("today()", [])) == date(2026, 3, 2)


ADD_MONTHS = [
    (date(2026, 1, 31), 1, date(2026, 2, 28)),
    (date(2024, 1, 31), 1, date(2024, 2, 29)),
    (date(2026, 3, 31), 1, date(2026, 4, 30)),
    (date(2026, 1, 31), -2, date(2025, 11, 30)),
    (date(2026, 1, 15), 12, date(2027, 1, 15)),
    (date(2026, 1, 31), 13, date(2027, 2, 28)),
    (date(2026, 12, 31), 2, date(2027, 2, 28)),
    (date(2026, 3, 31), -1, date(2026, 2, 28)),
    (date(2026, 5, 10), 0, date(2026, 5, 10)),
]


@pytest.mark.parametrize(("start", "months", "expected"), ADD_MONTHS, ids=[f"{s}{m:+d}" for s, m, _ in ADD_MONTHS])
def test_add_months_clamps_to_the_end_of_the_month(clock, start, months, expected):
    expression = compile_expression("add_months(day, n)", ["day", "n"])
    assert Evaluator({"day": start, "n": months}, clock).value(expression) == expected


DAYS_BETWEEN = [
    (date(2026, 1, 1), date(2026, 3, 2), 60),
    (date(2026, 3, 2), date(2026, 1, 1), -60),
    (date(2024, 2, 28), date(2024, 3, 1), 2),
    (date(2026, 3, 2), date(2026, 3, 2), 0),
    (datetime(2026, 3, 1, 23, 59, tzinfo=UTC), datetime(2026, 3, 2, 0, 1, tzinfo=UTC), 1),
    (datetime(2026, 3, 1, 0, 1, tzinfo=UTC), date(2026, 3, 1), 0),
]


@pytest.mark.parametrize(("start", "end", "expected"), DAYS_BETWEEN)
def test_days_between_counts_calendar_days(clock, start, end, expected):
    expression = compile_expression("days_between(a, b)", ["a", "b"])
    assert Evaluator({"a": start, "b": end}, clock).value(expression) == expected


def test_date_functions_against_the_clock(evaluate):
    assert evaluate("days_between(close_date, today())") == 30
    assert evaluate("add_days(close_date, 1)") == date(2026, 2, 1)
    assert evaluate("add_hours(signed_at, 1.5)") == datetime(2026, 3, 1, 19, 30, tzinfo=UTC)
    assert evaluate("close_date < today()") is True
    assert evaluate("signed_at < now()") is True


def test_every_function_is_documented_and_checked_for_arity():
    for name, spec in FUNCTIONS.items():
        assert spec.doc, name
        too_many = spec.max_args is not None
        if too_many:
            with pytest.raises(ExpressionError, match=f"{name}\\(\\) takes"):
                compile_expression(f"{name}({', '.join(['1'] * (spec.max_args + 1))})", [])
        if spec.min_args:
            with pytest.raises(ExpressionError, match=f"{name}\\(\\) takes"):
                compile_expression(f"{name}()", [])


def test_an_evaluator_reads_the_values_it_was_given_not_a_copy(clock):
    data = values()
    evaluator = Evaluator(data, clock)
    expression = compiled("quantity * 2")
    assert evaluator.value(expression) == 6
    data["quantity"] = 5
    assert evaluator.value(expression) == 10


# --- nothing in an expression crashes or exhausts the server -------------------------------------

def nested(prefix: str, depth: int, leaf: str = "price") -> str:
    """`prefix` repeated: `not not price` is 3 levels deep."""
    return prefix * (depth - 1) + leaf


TOO_DEEP = [
    nested("not ", 490),
    nested("-", 999, "1"),
    nested("+", 999, "1"),
    nested("-", MAX_EXPRESSION_DEPTH + 1, "1"),
    " + ".join(["price"] * (MAX_EXPRESSION_DEPTH + 1)),
    "[" * MAX_EXPRESSION_DEPTH + "1" + "]" * MAX_EXPRESSION_DEPTH,
    "abs(" * MAX_EXPRESSION_DEPTH + "price" + ")" * MAX_EXPRESSION_DEPTH,
]


@pytest.mark.parametrize("source", TOO_DEEP, ids=lambda s: f"{s[:12]}...{len(s)}")
def test_expressions_nested_beyond_the_limit_are_refused_at_load(source):
    with pytest.raises(ExpressionError) as raised:
        compiled(source)
    message = str(raised.value)
    assert f"levels deep; at most {MAX_EXPRESSION_DEPTH} levels are allowed" in message
    assert len(message) < 200, "a long source is shortened in the message"


def test_nesting_is_measured_in_expression_levels():
    assert nesting_depth(ast.parse("price", mode="eval")) == 1
    assert nesting_depth(ast.parse("-price", mode="eval")) == 2
    assert nesting_depth(ast.parse("price + quantity + 1", mode="eval")) == 3
    assert nesting_depth(ast.parse("round(price, 2)", mode="eval")) == 2
    assert nesting_depth(ast.parse("(((price)))", mode="eval")) == 1  # parentheses are not levels


def test_an_expression_at_the_depth_limit_evaluates_even_on_a_deep_stack(clock):
    """The limit leaves room: a save runs inside Flask, SQLAlchemy and the service, far from the top."""
    sources = [nested("not ", MAX_EXPRESSION_DEPTH, "quantity"), " + ".join(["quantity"] * MAX_EXPRESSION_DEPTH),
               nested("-", MAX_EXPRESSION_DEPTH, "quantity")]
    expressions = [compiled(source) for source in sources]

    def at_depth(frames: int) -> list[Any]:
        if frames > 0:
            return at_depth(frames - 1)
        return [Evaluator(values(), clock).value(e) for e in expressions]

    assert at_depth(sys.getrecursionlimit() - 250) == [False, 3 * MAX_EXPRESSION_DEPTH, -3]


def test_any_other_parser_failure_is_a_problem_not_a_crash(monkeypatch):
    def fail(*args, **kwargs):
        raise OverflowError("too many digits")

    monkeypatch.setattr(ast, "parse", fail)
    with pytest.raises(ExpressionError, match="'price \\* 2' cannot be read: too many digits"):
        compiled("price * 2")


@pytest.mark.parametrize("error", [RecursionError("maximum recursion depth exceeded during compilation"),
                                   MemoryError()])
def test_a_parser_that_gives_up_is_a_problem_not_a_crash(monkeypatch, error):
    def give_up(*args, **kwargs):
        raise error

    monkeypatch.setattr(ast, "parse", give_up)
    with pytest.raises(ExpressionError, match=f"too deeply nested or too complex to read; at most "
                                              f"{MAX_EXPRESSION_DEPTH} levels of nesting are allowed"):
        compiled("price * 2")


def test_a_nul_character_is_a_syntax_error():
    with pytest.raises(ExpressionError, match="syntax error"):
        compiled("price\x00 * 2")


TEXT_FORMATTING = ["'%*s' % (10**9, 'x')", "'%0*d' % (2*10**9, 1)", "'%s' % name", "'%d%%' % quantity",
                   "'a' % ()"]


@pytest.mark.parametrize("source", TEXT_FORMATTING)
def test_percent_on_a_text_literal_is_refused_at_load(source):
    with pytest.raises(ExpressionError, match="% on a text would format it, which is not allowed; "
                                              "% works on numbers only"):
        compiled(source)


@pytest.mark.parametrize("source", ["name % quantity", "name % (quantity, price)", "stage % ()",
                                    "(name + '%s') % name", "concat('%0*d') % (2 * 10 ** 9, 1)",
                                    "tags % 2", "quantity % name"])
def test_percent_on_anything_but_numbers_is_a_per_field_error(clock, source):
    started = time.monotonic()
    with pytest.raises(EvaluationError, match="% works on numbers only"):
        Evaluator(values(), clock).value(compiled(source))
    assert time.monotonic() - started < 1


def test_percent_still_gives_the_remainder_of_numbers(evaluate):
    assert evaluate("quantity % 2") == 1
    assert evaluate("price % 4") == Decimal("2.50")
    assert evaluate("-7 % 3") == 2
    assert evaluate("name % 2", name=None) is None  # an empty input still makes the result empty


HUGE = [
    "[[name] * 99999] * 99999",
    "concat([[name] * 99999] * 99999)",
    "upper([[name] * 99999] * 99999)",
    "len([[tags] * 99999] * 99999)",
    "[name * 99999, name * 99999]",
    "[tags * 50000] * 3",
    "concat(name * 20000, name * 20000)",
    "lower(tags * 50000)",
    "max(tags * 50000) == 1",
    "(2 ** 5000) * (2 ** 5000) * (2 ** 5000)",
    "(quantity ** 6000) * (quantity ** 6000) / 7",
    "add_days(close_date, 10.0 ** 999999)",
    "add_days(close_date, 10 ** 9 + 1)",
    "add_months(close_date, 10.0 ** 999999)",
    "add_months(close_date, 10 ** 12)",
    "add_hours(signed_at, 10.0 ** 999999)",
    "round(price, 10 ** 9)",
    "round(price, 10.0 ** 999999)",
    "10.0 ** 999999 * 10",
    "min(1, 'x')",
    "max([1, 'x'])",
    "min(quantity, name, close_date)",
    "max(tags, 1)",
]


@pytest.mark.parametrize("source", HUGE)
def test_nothing_builds_huge_texts_lists_or_numbers(clock, source):
    started = time.monotonic()
    with pytest.raises(EvaluationError, match="cannot compute"):
        Evaluator(values(), clock).value(compiled(source))
    assert time.monotonic() - started < 1


def test_big_but_bounded_values_still_work(evaluate):
    assert len(evaluate("name * 25000")) == 100_000
    assert len(evaluate("tags * 25000")) == 25_000  # 25,000 items of 3 characters
    assert evaluate("len(concat(name * 10000, name * 10000))") == 80_000
    assert evaluate("add_days(close_date, -365)") == date(2025, 1, 31)
    assert evaluate("add_days(close_date, '2')") == date(2026, 2, 2)
    assert evaluate("add_months(close_date, 13)") == date(2027, 2, 28)


EXCEPTIONS = [RecursionError("maximum recursion depth exceeded"), MemoryError(), OverflowError("too big"),
              KeyError("x"), IndexError("list index out of range"), RuntimeError("boom"),
              ArithmeticError("odd"), LookupError("no")]


@pytest.mark.parametrize("error", EXCEPTIONS, ids=lambda e: type(e).__name__)
def test_any_failure_while_evaluating_is_an_evaluation_error(monkeypatch, clock, error):
    def fail(*args):
        raise error

    monkeypatch.setitem(FUNCTIONS, "len", FunctionSpec("len", 1, 1, "fails", lambda clock: fail))
    evaluator = Evaluator(values(), clock)
    with pytest.raises(EvaluationError, match=r"^cannot compute 'len\(name\) > 1': "):
        evaluator.value(compiled("len(name) > 1"))
    assert evaluator.condition(compiled("len(name) > 1")) is False
    assert evaluator.value(compiled("len(note) > 1")) is None  # an empty input still gives an empty result


def _stack_depth() -> int:
    frame, depth = sys._getframe(1), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


@pytest.mark.parametrize(("how", "prefix"), [("compiled", "- "), ("interpreted", "- "), ("interpreted", "not ")])
def test_a_real_recursion_error_is_an_evaluation_error(clock, how, prefix):
    """However little stack is left, a RecursionError raised while evaluating is this field's error (the compiled
    form calls a helper for each `-`, one frame deep at a time; the interpreter takes one or two frames per level:
    both are tried at every depth)."""
    expression = compiled(nested(prefix, MAX_EXPRESSION_DEPTH - 1, "quantity"))
    if how == "interpreted":
        expression = interpreted(expression)
    evaluator = Evaluator(values(), clock)
    result = evaluator.value(expression)
    assert result in (3, True)
    outcomes = set()

    def at_depth(frames: int) -> Any:
        if frames > 0:
            return at_depth(frames - 1)
        try:
            return evaluator.value(expression)
        except EvaluationError as exc:
            return str(exc)

    for room in range(0, 120):
        try:
            outcomes.add(at_depth(sys.getrecursionlimit() - _stack_depth() - room))
        except RecursionError:  # the test's own frames ran out before evaluating began
            continue
    assert f"cannot compute '{expression.source}': it nests too deeply" in outcomes
    assert outcomes <= {result, f"cannot compute '{expression.source}': it nests too deeply"}


# --- the compiled form against the interpreter ------------------------------------------------------
# compile_expression compiles the checked tree into a Python function; Evaluator.interpret walks the same
# tree with simpleeval (the evaluation before compiling). Over a corpus of expressions and records both
# must give exactly the same results (value and type) and the same errors (type and message).

SHIPPED = [  # the shipped cards' formulas and conditions, on this module's fields
    "amount * quantity / 100", "round(amount / quantity, 2)", "stage == 'lost' and name == 'other'",
    "stage in ['contract', 'won']", "stage in ['won', 'lost'] or close_date is None or close_date >= today()",
    "stage != 'won' or amount is not None", "close_date is None or close_date <= today()",
    "price is None or amount is None or price <= amount * 3", "len(name) == 10 and stage == 'ru'",
    "concat(name, ' ', note, ' ' if note else '', stage)",
    "None if quantity is None else 'promoter' if quantity >= 9 else 'passive' if quantity >= 7 else 'detractor'",
    "len(tags) > 0 or len(name) > 0 or note is not None", "not stage or len(tags) > 0",
    "add_months(close_date, quantity)", "price * 12 * (1 + coalesce(discount, 0) / 100)",
    "days_between(close_date, signed_at) >= 16 * 365", "(name is None) == (note is None)",
]
ARITHMETIC = [
    "price * quantity", "quantity * price * (1 - discount / 100)", "price / quantity", "quantity / 3",
    "quantity / 4", "7 / 2", "1 / 3 * 3", "quantity // 2", "price // 4", "quantity % 2", "price % 4", "-7 % 3",
    "price / 0", "quantity / 0", "price // 0", "price % 0", "0 / 0", "price / (quantity - 3)", "0.0 / 0",
    "-price", "+quantity", "-quantity", "--price", "quantity ** 2", "price ** 2", "2 ** -1", "quantity ** 0.5",
    "(-2) ** 3", "2 ** 10", "price * 0.9", "price + 1.5", "0.1 + 0.2", "0.1 + 0.2 == 0.3", "quantity - price",
    "price - 0.5", "quantity + quantity", "quantity * quantity * quantity", "discount / 100 * price",
    "price * discount", "quantity * discount / 3", "price + quantity + discount", "1 + 2 * 3 - 4 / 5",
    "(2 ** 5000) * (2 ** 5000)", "10.0 ** 999999 * 10", "quantity ** 6000 * quantity ** 6000 / 7",
    "9**9**9", "quantity ** 4000000", "True + 1", "True * price", "price / True", "quantity / False",
    "price * None", "amount - 1", "-amount", "+amount", "amount / 0",
]
TEXT = [
    "name + '!'", "name * 3", "3 * name", "name * 0", "name * -1", "upper(name)", "lower(name) == 'иван'",
    "concat(name, ' ', stage, quantity, price)", "name + quantity", "'x' * quantity", "len(name) > 3",
    "name < stage", "name in tags", "stage in ['new', 'won']", "stage not in ('new',)", "'vip' in tags",
    "'a' in note", "'a' not in note", "note in ['x']", "tags + ['x']", "tags * 2", "[tags] * 2", "[name, stage]",
    "(name, stage)", "len([1, 2, 3])", "len((1, 2))", "[]", "()", "[[name] * 3] * 2", "name * 25000",
    "tags * 25000", "name % quantity", "tags % 2", "quantity % name", "name + note", "note + name",
    "name * 25001", "[name * 99999, name * 99999]", "[tags * 50000] * 3", "concat(name * 20000, name * 20000)",
    "lower(tags * 50000)", "max(tags * 50000) == 1", "[[name] * 99999] * 99999", "len([[tags] * 99999] * 99999)",
    "'a' * 10**10", "concat(name) * 10**9", "'x' * 100001", "'a' + 'b' * 100000",
]
LOGIC = [
    "1 < quantity < 5", "1 < quantity < price < 100", "0 < quantity < 2 < price", "quantity in [1, 2, 3] == True",
    "stage in tags in [[], ['vip']]", "quantity in [3] in [[3]]", "price < name", "close_date < today()",
    "close_date > signed_at", "quantity is True", "quantity is not None", "None is note", "False is not stage",
    "note is None is price", "price == 10.5", "price != 10.50",
    "price if stage == 'new' else 0", "name if quantity else note", "'a' if amount else 'b'", "not stage",
    "not not name", "quantity and price", "amount or price", "note or name", "amount and price",
    "name and tags and stage", "note or amount or 0", "quantity > 1 and name", "stage == 'new' and quantity > 2",
    "name if amount is None else 1", "amount > 5", "amount < 5", "not amount", "note == 'x'", "amount == None",
    "amount > 1", "tags", "quantity if quantity > 5 else 0", "(quantity > 1) + (price > 1)",
    "stage in note", "stage not in note", "None in tags", "1 < amount < 3", "amount < 1 < 3",
]
FUNCTION_CALLS = [
    "today()", "now()", "add_days(close_date, 3)", "add_days(close_date, '2')", "add_days(close_date, name)",
    "add_days(amount, 3)", "add_days(close_date, -365)", "add_days(close_date, 10 ** 9 + 1)",
    "add_days(close_date, 10.0 ** 999999)", "add_days(close_date, 10 ** 9)", "add_hours(signed_at, 1.5)",
    "add_hours(signed_at, 10.0 ** 999999)",
    "add_months(close_date, 13)", "add_months(close_date, 10 ** 12)", "add_months(name, 1)",
    "days_between(close_date, signed_at)", "days_between(amount, close_date)", "days_between(close_date, 'x')",
    "round(price)", "round(price, 1)", "round(quantity / 3, 2)", "round(2.5)", "round(-2.5)", "round(amount, 2)",
    "round(price, 10 ** 9)", "round(price, 1000000)", "round(price, 10.0 ** 999999)", "round(name)",
    "abs(-price)", "abs(name)", "abs(amount)", "min(price, quantity)", "max(quantity, 2.5)", "max(tags)",
    "min(1, 'x')", "max([1, 'x'])", "min(quantity, name, close_date)", "max(tags, 1)", "min(tags)",
    "len(tags)", "len(quantity)", "len(note)", "coalesce(note, '', [], 5)", "coalesce(note, amount)",
    "is_empty(note)", "is_empty(tags)", "is_empty(quantity)", "year(close_date)", "month(signed_at)",
    "year(name)", "month(amount)", "upper(note)", "lower(quantity)", "concat(note)", "concat(tags, tags)",
    "today() + 1", "today() - close_date", "now() - signed_at", "upper([[name] * 99999] * 99999)",
    "concat([[name] * 99999] * 99999)", "add_days(today(), quantity) > close_date",
]
CORPUS = SHIPPED + ARITHMETIC + TEXT + LOGIC + FUNCTION_CALLS

RECORDS: dict[str, dict[str, Any]] = {
    "typical": values(),
    "empty": dict.fromkeys(FIELDS),
    "zeros": values(quantity=0, price=Decimal("0"), discount=Decimal("100"), name="", tags=[], stage=""),
    "floats": values(price=10.5, discount=0.1, quantity=2.5),  # Decimal × float, as a value from elsewhere
    "texts": values(name="x" * 60_000, stage="won", note="note", tags=["a", "b", "vip"]),
    "negative": values(price=Decimal("-3.25"), quantity=-7, discount=Decimal("-1")),
    "big": values(quantity=10**30, price=Decimal("1E+20"), amount=Decimal("99999999999999.99")),
    "booleans": values(quantity=True, price=False, name=True),
    "missing": {"price": Decimal("1.5"), "quantity": 2},  # a record stored before the other fields existed
}


def outcome(call: Any) -> tuple[Any, ...]:
    """What a call gives, comparable: the result's type and repr, or the error's type and message."""
    try:
        result = call()
    except Exception as exc:  # every error is an outcome to compare
        return ("error", type(exc), str(exc))
    return ("ok", type(result), repr(result))


@pytest.mark.parametrize("source", CORPUS)
def test_the_compiled_form_gives_what_the_interpreter_gives(clock, source):
    expression = compiled(source)
    assert expression.program is not None
    reference = interpreted(expression)
    for name, record in RECORDS.items():
        compiled_evaluator, interpreter = Evaluator(record, clock), Evaluator(record, clock)
        for how in ("evaluate", "value", "condition"):
            got = outcome(lambda e=compiled_evaluator, h=how: getattr(e, h)(expression))
            expected = outcome(lambda e=interpreter, h=how: getattr(e, h)(reference))
            assert got == expected, f"{source} on {name}, {how}"
        assert outcome(lambda e=compiled_evaluator: e.evaluate(expression)) == outcome(
            lambda e=compiled_evaluator: e.interpret(expression)), f"{source} on {name}, one evaluator"


def test_the_corpus_covers_results_and_every_kind_of_error(clock):
    """The differential test above means something only if the corpus reaches every path."""
    kinds = set()
    for source in CORPUS:
        for record in RECORDS.values():
            kinds.add(outcome(lambda r=record, s=source: Evaluator(r, clock).evaluate(compiled(s)))[1])
    assert {Decimal, int, str, bool, list, tuple, date, datetime, type(None), ZeroDivisionError, TypeError,
            decimal.InvalidOperation, simpleeval.NumberTooHigh, simpleeval.IterableTooLong,
            simpleeval.NameNotDefined, ValueError, OverflowError} <= kinds


def _random_expression(rng: random.Random, depth: int) -> str:
    """An expression the checker accepts most of the time, built from every kind of node it allows."""
    if depth <= 0 or rng.random() < 0.25:
        return rng.choice([*FIELDS, "0", "1", "2", "3", "0.5", "1.25", "-1", "100", "''", "'vip'", "'new'",
                           "None", "True", "False", "[]", "[1, 2]", "('a',)"])
    sub = lambda: _random_expression(rng, depth - 1)  # noqa: E731
    kind = rng.randrange(8)
    if kind == 0:
        return f"({sub()} {rng.choice(['+', '-', '*', '/', '//', '%', '**'])} {sub()})"
    if kind == 1:
        return f"({rng.choice(['-', '+', 'not '])}{sub()})"
    if kind == 2:
        ops = [rng.choice(["==", "!=", "<", "<=", ">", ">=", "in", "not in", "is", "is not"])
               for _ in range(rng.randint(1, 3))]
        return "(" + sub() + "".join(f" {op} {sub()}" for op in ops) + ")"
    if kind == 3:
        return f"({sub()} {rng.choice(['and', 'or'])} {sub()})"
    if kind == 4:
        return f"({sub()} if {sub()} else {sub()})"
    if kind == 5:
        return f"[{', '.join(sub() for _ in range(rng.randint(0, 3)))}]"
    name, spec = rng.choice(sorted(FUNCTIONS.items()))
    count = rng.randint(spec.min_args, spec.max_args if spec.max_args is not None else spec.min_args + 2)
    return f"{name}({', '.join(sub() for _ in range(count))})"


def test_the_compiled_form_gives_what_the_interpreter_gives_on_random_expressions(clock):
    rng = random.Random(20260302)
    checked = 0
    for _ in range(3000):
        source = _random_expression(rng, rng.randint(1, 5))
        try:
            expression = compiled(source)
        except ExpressionError:
            continue
        checked += 1
        reference = interpreted(expression)
        for name in ("typical", "empty", "floats", "texts", "missing"):
            record = RECORDS[name]
            got = outcome(lambda r=record, e=expression: Evaluator(r, clock).evaluate(e))
            expected = outcome(lambda r=record, e=reference: Evaluator(r, clock).evaluate(e))
            assert got == expected, f"{source} on {name}"
            with decimal.localcontext(_hostile_context()):  # in any caller's context (results compared outside it)
                try:
                    result: Any = ("ok", Evaluator(record, clock).evaluate(expression))
                except Exception as exc:  # every error is an outcome to compare
                    result = ("error", exc)
            shown = (result[0], type(result[1]), str(result[1]) if result[0] == "error" else repr(result[1]))
            assert shown == expected, f"{source} on {name} in another decimal context"
    assert checked > 2000


def test_compiled_code_names_nothing_but_its_helpers_and_has_no_builtins():
    """No builtins, no attribute access, no global but the operator helpers and its own constants."""
    from kartoteka.metadata import expressions

    for source in CORPUS:
        program = compiled(source).program
        assert program is not None
        assert program.__globals__["__builtins__"] == {}
        helpers = set(expressions._RUNTIME) | {n for n in program.__globals__ if n.startswith("_k")}
        code = program.__code__
        assert set(code.co_names) <= helpers, source  # LOAD_ATTR would name the attribute here
        assert set(code.co_varnames) <= {"_v", "_fn"} | {f"_t{i}" for i in range(MAX_EXPRESSION_DEPTH)}, source


def test_nothing_is_compiled_before_the_checks_pass(monkeypatch):
    from kartoteka.metadata import expressions

    made: list[str] = []
    real = expressions._program
    monkeypatch.setattr(expressions, "_program", lambda tree, source: made.append(source) or real(tree, source))
    for source, _ in HOSTILE:
        with pytest.raises(ExpressionError):
            compiled(source)
    assert made == []
    compiled("price * 2")
    assert made == ["price * 2"]


def test_an_expression_built_without_compiling_is_interpreted(clock):
    expression = CompiledExpression("price * 2", ast.parse("price * 2", mode="eval").body, frozenset({"price"}),
                                    frozenset())
    assert expression.program is None
    assert Evaluator(values(), clock).value(expression) == Decimal("21.00")


def test_a_field_missing_from_a_stored_record_is_not_defined_never_a_function(clock):
    """A name missing from the values is NameNotDefined in both forms, even one spelled like a function."""
    expression = compile_expression("year + 1", ["year"])
    for how in (expression, interpreted(expression)):
        with pytest.raises(simpleeval.NameNotDefined, match="'year' is not defined for expression 'year \\+ 1'"):
            Evaluator({}, Clock(lambda: datetime(2026, 3, 2, tzinfo=UTC))).evaluate(how)
        assert Evaluator({}, Clock(lambda: datetime(2026, 3, 2, tzinfo=UTC))).value(how) is None


def test_one_compiled_expression_serves_many_evaluators_at_once(clock):
    """The program holds no state of its own: threads may share it (the Evaluator is per save)."""
    import threading

    expression = compiled("round(quantity * price * (1 - discount / 100), 2)")
    results: list[Any] = []

    def work(quantity: int) -> None:
        for _ in range(200):
            results.append((quantity, Evaluator(values(quantity=quantity), clock).value(expression)))

    threads = [threading.Thread(target=work, args=(q,)) for q in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r == (Decimal(q) * Decimal("10.50") * Decimal("0.9")).quantize(Decimal("0.01")) for q, r in results)


def _hostile_context() -> decimal.Context:
    """A caller's context unlike DECIMAL_CONTEXT in every setting an evaluation could read."""
    return decimal.Context(prec=3, rounding=decimal.ROUND_DOWN, Emin=-5, Emax=5, capitals=0, clamp=1,
                           traps=[decimal.Inexact, decimal.Rounded, decimal.Subnormal, decimal.Clamped])


def test_the_decimal_context_of_the_caller_changes_nothing(clock):
    """Programs name DECIMAL_CONTEXT in their arithmetic: whatever context the caller's thread set, they give what
    the interpreter gives in DECIMAL_CONTEXT, and the caller's context is left as it was. (Ordering a float against a
    Decimal under a context that traps FloatOperation is the one thing left to the caller's context: no record value
    is a float.)"""
    def raw(call: Any) -> Any:
        try:
            return call()
        except Exception as exc:  # every error is an outcome to compare
            return exc

    def shown(result: Any) -> tuple[Any, ...]:  # written out in the default context, not the caller's
        if isinstance(result, Exception):
            return ("error", type(result), str(result))
        return ("ok", type(result), repr(result))

    with decimal.localcontext(_hostile_context()) as caller:
        for source in CORPUS:
            expression = compiled(source)
            for name, record in RECORDS.items():
                got = raw(lambda r=record, e=expression: Evaluator(r, clock).evaluate(e))
                with decimal.localcontext(decimal.Context()):
                    expected = outcome(lambda r=record, e=expression: Evaluator(r, clock).interpret(e))
                    assert shown(got) == expected, f"{source} on {name}"
        assert decimal.getcontext() is caller and caller.prec == 3 and not caller.flags[decimal.Inexact]
        money = Evaluator(values(), clock).value(compiled("quantity * price * (1 - discount / 100)"))
        assert money == Decimal("28.3500")
        assert Evaluator({"name": "x", "price": Decimal("1E+5")}, clock).value(compiled("concat(name, price)")) == \
            "x1E+5"
        assert Evaluator({"tags": [Decimal("1E+5")]}, clock).value(compiled("concat(tags)")) == "[Decimal('1E+5')]"


def test_a_clock_makes_its_functions_once_for_every_save(clock):
    first, second = Evaluator(values(), clock), Evaluator(values(), clock)
    assert first.functions() is second.functions() is clock.functions
    assert first.functions()["today"]() == clock.today()
    other = Clock(lambda: datetime(2030, 1, 1, tzinfo=UTC))
    assert Evaluator(values(), other).value(compiled("today()")) == date(2030, 1, 1)
    assert Evaluator(values(), clock).value(compiled("today()")) == clock.today()  # each clock its own
