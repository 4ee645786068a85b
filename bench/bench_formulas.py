"""Formula evaluation vs the same formula written as a plain Python function, side by side in one process.

    .venv/bin/python -m bench.bench_formulas [--rounds 9] [--seconds 0.2]

For each formula of the table below: the hand-written function, and Kartoteka's expression (compiled by
`compile_expression` as the metadata loader does) evaluated the ways the record pipeline uses it. Before
timing, every way must give exactly the plain function's result on every record, or the bench stops.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from importlib import metadata as dist
from typing import Any

from kartoteka.metadata.expressions import Clock, CompiledExpression, Evaluator, compile_expression

CENT = Decimal("0.01")
ZERO = Decimal(0)
CLOCK = Clock(lambda: datetime(2026, 3, 2, 9, 30, tzinfo=UTC))
TODAY = CLOCK.today


@dataclass(frozen=True)
class Formula:
    name: str
    source: str
    native: Callable[[Mapping[str, Any]], Any]  # what a developer writes by hand for the same result
    records: tuple[Mapping[str, Any], ...]


def _deal(**values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"quantity": 3, "price": Decimal("1499.90"), "discount": Decimal("7.50"), "stage": "lost",
                            "lost_reason": "other", "amount": Decimal("250000.00"), "probability": Decimal("60.00"),
                            "close_date": date(2026, 6, 30), "first_name": "Анна", "last_name": "Петрова",
                            "salary": Decimal("180000.00"), "bonus_percent": None, "nps": 8}
    base.update(values)
    return base


RECORDS = (_deal(), _deal(stage="won", discount=Decimal("0"), close_date=None, nps=None, bonus_percent=Decimal("15")),
           _deal(stage="new", quantity=12, nps=10, close_date=date(2025, 12, 1)))

FORMULAS = (
    Formula("deal total (money)", "quantity * price * (1 - discount / 100)",
            lambda v: v["quantity"] * v["price"] * (1 - v["discount"] / 100), RECORDS),
    Formula("expected revenue, rounded", "round(amount * probability / 100, 2)",
            lambda v: (v["amount"] * v["probability"] / 100).quantize(CENT, rounding=ROUND_HALF_UP), RECORDS),
    Formula("annual pay with bonus", "salary * 12 * (1 + coalesce(bonus_percent, 0) / 100)",
            lambda v: v["salary"] * 12 * (1 + (v["bonus_percent"] if v["bonus_percent"] is not None else ZERO) / 100),
            RECORDS),
    Formula("condition (visible_if)", "stage == 'lost' and lost_reason == 'other'",
            lambda v: v["stage"] == "lost" and v["lost_reason"] == "other", RECORDS),
    Formula("check with today()", "stage in ['won', 'lost'] or close_date is None or close_date >= today()",
            lambda v: v["stage"] in ["won", "lost"] or v["close_date"] is None or v["close_date"] >= TODAY(),
            RECORDS),
    Formula("category (nested if)",
            "None if nps is None else 'promoter' if nps >= 9 else 'passive' if nps >= 7 else 'detractor'",
            lambda v: None if v["nps"] is None else "promoter" if v["nps"] >= 9 else "passive" if v["nps"] >= 7
            else "detractor", RECORDS),
    Formula("full name (text)", "concat(first_name, ' ', last_name)",
            lambda v: f"{v['first_name']} {v['last_name']}", RECORDS),
)

# One save of bench/config's deal card evaluates its formula and the lost reason's two conditions.
SAVE = ("one save: total + visible_if + required_if", FORMULAS[0], FORMULAS[3], FORMULAS[3])


# --- ways to evaluate ----------------------------------------------------------------------------------

def ways(expression: CompiledExpression, values: Mapping[str, Any]) -> dict[str, Callable[[], Any]]:
    """What is timed: the pipeline's way (a new Evaluator per save), a reused Evaluator, the compiled program
    alone and the interpreter, where this version of Kartoteka has them."""
    reused = Evaluator(values, CLOCK)
    found: dict[str, Callable[[], Any]] = {
        "Evaluator per save": lambda: Evaluator(values, CLOCK).value(expression),
        "Evaluator reused": lambda: reused.value(expression),
    }
    program = getattr(expression, "program", None)
    if program is not None:
        functions = reused.functions() if expression.functions else None
        found["program alone"] = lambda: program(values, functions)
    if hasattr(reused, "interpret"):
        found["interpreted"] = lambda: reused.interpret(expression)
    return found


def per_loop(call: Callable[[], Any], seconds: float) -> float:
    """Seconds per call: loops sized to take about `seconds`."""
    loops = 1
    perf = time.perf_counter
    while True:
        start = perf()
        for _ in range(loops):
            call()
        spent = perf() - start
        if spent >= seconds / 4 or loops >= 1 << 24:
            break
        loops *= 4
    loops = max(1, int(loops * seconds / max(spent, 1e-9)))
    start = perf()
    for _ in range(loops):
        call()
    return (perf() - start) / loops


@dataclass
class Row:
    formula: str
    native_us: list[float] = field(default_factory=list)
    ways_us: dict[str, list[float]] = field(default_factory=dict)
    ratios: dict[str, list[float]] = field(default_factory=dict)


def measure(label: str, native: Callable[[], Any], timed: Mapping[str, Callable[[], Any]], rounds: int,
            seconds: float) -> Row:
    """Each round times the plain function and every way right after it; ratios are taken per round."""
    row = Row(label)
    names = list(timed)
    for number in range(rounds):
        order = names if number % 2 == 0 else names[::-1]
        base = per_loop(native, seconds)
        row.native_us.append(base * 1e6)
        for name in order:
            spent = per_loop(timed[name], seconds)
            row.ways_us.setdefault(name, []).append(spent * 1e6)
            row.ratios.setdefault(name, []).append(spent / base)
    return row


class CheckFailed(SystemExit):
    """A way of evaluating gave something else than the plain function: timing it would be meaningless."""


def same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def cross_check() -> list[CompiledExpression]:
    expressions = []
    problems = []
    for formula in FORMULAS:
        expression = compile_expression(formula.source, list(RECORDS[0]))
        expressions.append(expression)
        for values in formula.records:
            expected = formula.native(values)
            for name, call in ways(expression, values).items():
                got = call()
                if not same(got, expected):
                    problems.append(f"{formula.name}, {name}: {got!r} vs the plain function's {expected!r}")
    if problems:
        raise CheckFailed("CROSS-CHECK FAILED, nothing was timed:\n  " + "\n  ".join(problems))
    return expressions


def table(rows: Sequence[Row]) -> str:
    names = [n for n in ("Evaluator per save", "Evaluator reused", "program alone", "interpreted")
             if any(n in r.ways_us for r in rows)]
    header = ("formula", "plain µs", *(f"{n} µs (ratio)" for n in names))
    lines_ = [header]
    for r in rows:
        cells = [r.formula, f"{statistics.median(r.native_us):.2f}"]
        for n in names:
            if n in r.ways_us:
                cells.append(f"{statistics.median(r.ways_us[n]):.2f} ({statistics.median(r.ratios[n]):.1f}x)")
            else:
                cells.append("-")
        lines_.append(tuple(cells))
    widths = [max(len(line[i]) for line in lines_) for i in range(len(header))]
    out = []
    for number, line in enumerate(lines_):
        out.append("  ".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}" for i, (c, w) in enumerate(zip(line, widths,
                                                                                                  strict=True))))
        if number == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="rounds per formula; medians are reported")
    parser.add_argument("--seconds", type=float, default=0.2, help="time per measurement (default 0.2 s)")
    args = parser.parse_args(argv)
    expressions = cross_check()
    print("every way gave exactly the plain function's result (value and type) on every record", file=sys.stderr)
    gc.collect()
    gc.freeze()
    rows = []
    values = RECORDS[0]
    for formula, expression in zip(FORMULAS, expressions, strict=True):
        print(f"timing {formula.name} ...", file=sys.stderr, flush=True)
        rows.append(measure(formula.name, lambda f=formula: f.native(values), ways(expression, values),
                            args.rounds, args.seconds))
    label, *parts = SAVE
    compiled = [expressions[FORMULAS.index(p)] for p in parts]

    def native_save() -> Any:
        return [p.native(values) for p in parts]

    def kartoteka_save() -> Any:
        evaluator = Evaluator(values, CLOCK)  # the pipeline makes one per save
        return [evaluator.value(compiled[0]), evaluator.condition(compiled[1]), evaluator.condition(compiled[2])]

    rows.append(measure(label, native_save, {"Evaluator per save": kartoteka_save}, args.rounds, args.seconds))

    def version(name: str) -> str:
        try:
            return dist.version(name)
        except dist.PackageNotFoundError:
            return "?"

    print(f"Formulas: Kartoteka expressions vs plain Python functions, {args.rounds} rounds of "
          f"{args.seconds} s per measurement, medians")
    print(f"Python {platform.python_version()} | simpleeval {version('simpleeval')} | "
          f"{platform.system()} {platform.release()} {platform.machine()}")
    print()
    print(table(rows))
    print()
    print("ratio = time per evaluation / the plain function's, median of the per-round ratios (target: <= 5x). "
          "'Evaluator per save': a new Evaluator, then value() (as the pipeline does once per save); 'reused': "
          "value() on one Evaluator; 'program alone': the compiled function without value()'s error handling; "
          "'interpreted': simpleeval walking the checked tree (the evaluation before compiling)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
