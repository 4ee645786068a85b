"""Expressions in metadata: parsed once at load, checked statically, then compiled once into a Python function.

`compile_expression` parses the source and walks the tree against an allow-list (names the entity knows,
the registered functions, arithmetic, comparisons, `and`/`or`/`not`, `x if c else y`, list and tuple
literals). Only a tree that passed is compiled: every operator becomes a call of a Decimal-aware function
passed in explicitly, every name a lookup in the record's values, every call one of the registered
functions; the function runs with no builtins and no attribute access. Decimal arithmetic names
DECIMAL_CONTEXT explicitly (`DECIMAL_CONTEXT.multiply(a, b)`), so a program never reads or switches the
thread's decimal context on its common paths. `Evaluator.interpret` keeps the
reference evaluation (simpleeval walking the same checked tree): the compiled one gives the same results
and the same errors (tests/test_expressions.py compares them over a corpus).
"""

from __future__ import annotations

import ast
import calendar
import decimal
import difflib
import operator
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from types import ModuleType
from typing import Any

import simpleeval

from kartoteka.metadata.types.base import unstorable

NoneType = type(None)

MAX_EXPRESSION_LENGTH = 2000
# Levels of nesting an expression may have (`a + b + c` is 3 deep: each operator nests the one before).
# Evaluation recurses once per level, so this also bounds the stack an expression can take.
MAX_EXPRESSION_DEPTH = 50
# Whole numbers with more bits are refused (far beyond any money or count), whatever made them.
MAX_POWER_BITS = 10_000
# Characters and items a value built by an expression may hold (a list inside a list counts with
# its contents, each time it appears): what simpleeval allows for one `+` or `*` of texts.
MAX_VALUE_SIZE = simpleeval.MAX_STRING_LENGTH
# Whole-number arguments of functions (days, months, places) beyond this are refused before use.
MAX_FUNCTION_COUNT = 10**9
# The decimal context every evaluation runs in (Python's default, pinned against changes elsewhere).
DECIMAL_CONTEXT = decimal.Context(
    prec=28, rounding=decimal.ROUND_HALF_EVEN, Emin=-999_999, Emax=999_999,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)


class ExpressionError(ValueError):
    """An expression cannot be compiled; the message says why and where."""


class EvaluationError(ValueError):
    """An expression failed on this record's data in a way the data cannot explain."""


@dataclass(frozen=True)
class Clock:
    """The current moment, passed in explicitly so tests and rules can fix it."""

    now: Callable[[], datetime]
    # The functions expressions call, made from this clock when first called (a save makes a new Evaluator, not new
    # functions): a cache, not part of the clock's value.
    functions: _Functions = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "functions", _Functions(self))  # frozen: set once, here

    def today(self) -> date:
        """Today's date in the clock's timezone."""
        return self.now().date()


@dataclass(frozen=True)
class FunctionSpec:
    """A function expressions may call."""

    name: str
    min_args: int
    max_args: int | None
    doc: str
    make: Callable[[Clock], Callable[..., Any]]


def _to_decimal(value: Any) -> Any:
    return Decimal(repr(value)) if isinstance(value, float) else value


def _numeric(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Keep arithmetic in Decimal: floats (from int division or powers) would break money maths.

    Whole numbers are bounded too: a product of big powers would otherwise grow without limit, and
    turning a huge one into a Decimal (for `/`) or dividing it takes seconds.
    """

    def apply(left: Any, right: Any) -> Any:
        result = _to_decimal(op(_to_decimal(left), _to_decimal(right)))
        if isinstance(result, int) and result.bit_length() > MAX_POWER_BITS:
            raise simpleeval.NumberTooHigh(f"the result has more than {MAX_POWER_BITS} bits")
        return result

    return apply


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal)


def _numbers_only(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """`%` is the remainder of numbers; on a text it would be printf formatting ('%*s' % (10**9, 'x'))."""

    def apply(left: Any, right: Any) -> Any:
        if not (_is_number(left) and _is_number(right)):
            raise TypeError("% works on numbers only")
        return op(left, right)

    return apply


def _no_zero(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Division by zero is ZeroDivisionError for every number type (Decimal 0/0 is InvalidOperation)."""

    def apply(left: Any, right: Any) -> Any:
        if isinstance(right, int | float | Decimal) and not isinstance(right, bool) and right == 0:
            raise ZeroDivisionError("division by zero")
        return op(left, right)

    return apply


def _divide(left: Any, right: Any) -> Any:
    if isinstance(left, int | Decimal) and isinstance(right, int | Decimal) and not (
        isinstance(left, bool) or isinstance(right, bool)
    ):
        return Decimal(left) / Decimal(right)
    return _to_decimal(operator.truediv(_to_decimal(left), _to_decimal(right)))


def _power(left: Any, right: Any) -> Any:
    # simpleeval only bounds each operand: 4000000 ** 4000000 would take a minute of whole-number maths.
    if (isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1
            and right * abs(left).bit_length() > MAX_POWER_BITS):
        raise simpleeval.NumberTooHigh(f"{left} ** {right} is too large")
    return simpleeval.safe_power(left, right)


OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: _numeric(simpleeval.safe_add),
    ast.Sub: _numeric(operator.sub),
    ast.Mult: _numeric(simpleeval.safe_mult),
    ast.Div: _no_zero(_divide),
    ast.FloorDiv: _no_zero(_numeric(operator.floordiv)),
    ast.Mod: _numbers_only(_no_zero(_numeric(operator.mod))),
    ast.Pow: _numeric(_power),
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Gt: operator.gt,
    ast.Lt: operator.lt,
    ast.GtE: operator.ge,
    ast.LtE: operator.le,
    ast.Not: operator.not_,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.In: lambda a, b: a in b if b is not None else False,
    ast.NotIn: lambda a, b: a not in b if b is not None else True,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}

_ALLOWED_NODES = (
    ast.Expression, ast.Expr, ast.Constant, ast.Name, ast.Load, ast.BinOp, ast.UnaryOp, ast.BoolOp,
    ast.Compare, ast.IfExp, ast.Call, ast.List, ast.Tuple, ast.And, ast.Or,
    *OPERATORS.keys(),
)


def _bounded(value: Any, what: str) -> Any:
    """A number argument, refused beyond MAX_FUNCTION_COUNT before use: int() of Decimal('1E+999999')
    alone takes half a minute. A text is read as a number, as int() and float() read it."""
    if isinstance(value, str):
        value = Decimal(value.strip(), DECIMAL_CONTEXT) if len(value) <= 100 else value
    if not _is_number(value):
        raise TypeError(f"{what} must be a number, not {type(value).__name__}")
    if isinstance(value, Decimal) and not value.is_finite():  # 'nan' or 'inf' as text: ordering a NaN would signal
        raise ValueError(f"{what} must be a number, not {value}")
    size = DECIMAL_CONTEXT.abs(value) if isinstance(value, Decimal) else abs(value)
    if not size <= MAX_FUNCTION_COUNT:  # also false for a float NaN
        raise ValueError(f"{what} must be between -{MAX_FUNCTION_COUNT} and {MAX_FUNCTION_COUNT}")
    return value


def _count(value: Any, what: str) -> int:
    """A whole-number argument; a fraction is truncated."""
    return int(_bounded(value, what))


def _add_days(day: date, days: Any) -> date:
    return day + timedelta(days=_count(days, "the number of days"))


def _add_hours(moment: date, hours: Any) -> date:
    return moment + timedelta(hours=float(_bounded(hours, "the number of hours")))


def _add_months(day: date, months: int) -> date:
    month_index = day.month - 1 + _count(months, "the number of months")
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return day.replace(year=year, month=month, day=min(day.day, calendar.monthrange(year, month)[1]))


_QUANTA = {places: Decimal(1).scaleb(-places, DECIMAL_CONTEXT) for places in range(11)}  # 2 -> Decimal('0.01')


def _round(value: Any, places: int = 0) -> Any:
    """Half away from zero, as people and accountants round (not Python's banker's rounding)."""
    if value is None:
        return None
    number = Decimal(value) if isinstance(value, int) else _to_decimal(value)
    quantum = _QUANTA.get(places) if type(places) is int else None
    if quantum is None:
        quantum = Decimal(1).scaleb(-_count(places, "places"), DECIMAL_CONTEXT)
    return number.quantize(quantum, rounding=ROUND_HALF_UP, context=DECIMAL_CONTEXT)


def _days_between(start: date, end: date) -> int:
    if isinstance(start, datetime):
        start = start.date()
    if isinstance(end, datetime):
        end = end.date()
    return (end - start).days


def _text(value: Any) -> str:
    """`value` as text, as str() writes it in DECIMAL_CONTEXT (whose exponent is a capital E) in any context."""
    kind = type(value)
    if kind is str:
        return str(value)  # the same object back, typed
    if kind is Decimal:
        return str(value).replace("e", "E")  # the only letter of a finite Decimal's text is its exponent's
    if kind is list or kind is tuple or kind is dict:  # repr() of Decimals inside reads the context's capitals
        with decimal.localcontext(DECIMAL_CONTEXT):
            return str(value)
    return str(value)


def _concat(*values: Any) -> str:
    """The arguments as text; refused beyond MAX_VALUE_SIZE. Each argument is a value of the record or the result of
    an expression, itself bounded so: the text is checked once joined (at most a few times the bound)."""
    try:
        text = "".join(values)  # texts alone, the common case; None or anything else is a TypeError
    except TypeError:
        text = "".join([_text(value) for value in values if value is not None])
    if len(text) > MAX_VALUE_SIZE:
        raise simpleeval.IterableTooLong(f"the text would be longer than {MAX_VALUE_SIZE} characters")
    return text


def _coalesce(*values: Any) -> Any:
    for value in values:
        kind = type(value)
        if kind is Decimal or kind is int:  # the common case, never empty: no comparison with '' and [] to make
            return value
        if value is not None and value != "" and value != []:
            return value
    return None


def _abs(value: Any) -> Any:
    return DECIMAL_CONTEXT.abs(value) if type(value) is Decimal else abs(value)


def _const(fn: Callable[..., Any]) -> Callable[[Clock], Callable[..., Any]]:
    return lambda clock: fn


FUNCTIONS: dict[str, FunctionSpec] = {
    spec.name: spec
    for spec in (
        FunctionSpec("today", 0, 0, "today's date", lambda clock: clock.today),
        FunctionSpec("now", 0, 0, "the current date and time (UTC)", lambda clock: clock.now),
        FunctionSpec("add_days", 2, 2, "add_days(date, n): n days later", _const(_add_days)),
        FunctionSpec("add_hours", 2, 2, "add_hours(datetime, n): n hours later", _const(_add_hours)),
        FunctionSpec("add_months", 2, 2, "add_months(date, n): same day n months later", _const(_add_months)),
        FunctionSpec("days_between", 2, 2, "days_between(a, b): whole days from a to b", _const(_days_between)),
        FunctionSpec("round", 1, 2, "round(x, places=0)", _const(_round)),
        FunctionSpec("abs", 1, 1, "abs(x)", _const(_abs)),
        FunctionSpec("min", 1, None, "the smallest argument", _const(min)),
        FunctionSpec("max", 1, None, "the largest argument", _const(max)),
        FunctionSpec("len", 1, 1, "the length of a text or list (0 when empty)",
                     _const(lambda v: 0 if v is None else len(v))),
        FunctionSpec("lower", 1, 1, "text in lower case", _const(lambda s: None if s is None else str(s).lower())),
        FunctionSpec("upper", 1, 1, "text in upper case", _const(lambda s: None if s is None else str(s).upper())),
        FunctionSpec("coalesce", 1, None, "the first non-empty argument", _const(_coalesce)),
        FunctionSpec("is_empty", 1, 1, "true when the value is empty",
                     _const(lambda v: v is None or v == "" or v == [])),
        FunctionSpec("concat", 1, None, "the arguments joined as text, empty ones skipped",
                     _const(_concat)),
        FunctionSpec("year", 1, 1, "the year of a date", _const(lambda d: None if d is None else d.year)),
        FunctionSpec("month", 1, 1, "the month of a date", _const(lambda d: None if d is None else d.month)),
        FunctionSpec("day", 1, 1, "the day of the month of a date", _const(lambda d: None if d is None else d.day)),
    )
}


class _DecimalLiterals(ast.NodeTransformer):
    """Float literals become Decimal so that `price * 0.9` works on money."""

    def __init__(self, source: str) -> None:
        self.source = source

    def visit_Constant(self, node: ast.Constant) -> ast.Constant:
        if isinstance(node.value, float):
            if node.value != node.value or node.value in (float("inf"), float("-inf")):
                raise ExpressionError(f"the number {ast.get_source_segment(self.source, node) or ''} is too large")
            # simpleeval reads the Decimal and _Translator lifts it out; typeshed's ast.Constant allows no Decimal.
            return ast.copy_location(ast.Constant(value=Decimal(repr(node.value))), node)  # type: ignore[arg-type]
        return node


@dataclass(frozen=True)
class CompiledExpression:
    """A parsed, checked expression; `names` are the field names it reads.

    `program` is the checked tree compiled into a Python function (`program(values, functions)`), made by
    `compile_expression` after the checks passed; an expression built by hand without one is interpreted.
    """

    source: str
    tree: ast.AST = field(repr=False, compare=False)
    names: frozenset[str]
    functions: frozenset[str]
    program: Callable[[Mapping[str, Any], Mapping[str, Callable[..., Any]] | None], Any] | None = field(
        default=None, repr=False, compare=False)


def suggest(word: str, candidates: Iterable[str]) -> str:
    """A "; did you mean 'x'?" suffix, or an empty string."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def compile_expression(source: str, known_names: Iterable[str],
                       functions: Mapping[str, FunctionSpec] = FUNCTIONS) -> CompiledExpression:
    """Parse and statically check `source`; raise ExpressionError naming the first problem.

    `functions` are those it may call (rule conditions have more: kartoteka/metadata/rules.py).

    Nothing else escapes: a source the parser cannot cope with (too deeply nested, too complex) is an
    ExpressionError too, so a bad expression is a problem line in check-config, never a traceback.
    """
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("expression is empty")
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(f"expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        return _compile(source, known_names, functions)
    except (RecursionError, MemoryError):
        raise ExpressionError(f"'{_shown(source)}' is too deeply nested or too complex to read; "
                              f"at most {MAX_EXPRESSION_DEPTH} levels of nesting are allowed") from None


def _compile(source: str, known_names: Iterable[str], registry: Mapping[str, FunctionSpec]) -> CompiledExpression:
    try:
        module = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        column = f" at column {exc.offset}" if exc.offset else ""
        raise ExpressionError(f"syntax error{column} in '{source}': {exc.msg}") from None
    except ValueError as exc:  # a NUL character (a SyntaxError from Python 3.12 on)
        raise ExpressionError(f"syntax error in '{_shown(source)}': {exc}") from None
    except (RecursionError, MemoryError):
        raise
    except Exception as exc:  # whatever else the parser may raise is a problem of this expression too
        raise ExpressionError(f"'{_shown(source)}' cannot be read: {exc or type(exc).__name__}") from None
    depth = nesting_depth(module)
    if depth > MAX_EXPRESSION_DEPTH:
        raise ExpressionError(f"'{_shown(source)}' is nested {depth} levels deep; at most "
                              f"{MAX_EXPRESSION_DEPTH} levels are allowed")
    known = set(known_names)
    names: set[str] = set()
    functions: set[str] = set()
    call_targets = {id(n.func) for n in ast.walk(module) if isinstance(n, ast.Call)}
    for node in ast.walk(module):
        if not isinstance(node, _ALLOWED_NODES):
            raise ExpressionError(f"'{source}': {_describe(node)} is not allowed in expressions")
        if isinstance(node, ast.Call):
            functions.add(_check_call(node, source, registry))
        elif isinstance(node, ast.Name) and id(node) not in call_targets:
            if node.id not in known and node.id in registry:
                raise ExpressionError(f"'{node.id}' in '{source}' is a function: call it as {node.id}()")
            if node.id not in known:
                hint = suggest(node.id, known | registry.keys())
                raise ExpressionError(f"unknown name '{node.id}' in '{source}'{hint}")
            names.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, bytes | complex):
            raise ExpressionError(f"'{source}': this kind of literal is not allowed")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and unstorable(node.value):
            # '\x00' or '\ud800' written as an escape: a formula or a rule would hand it to the database.
            raise ExpressionError(f"'{_shown(source)}': a text in it holds {unstorable(node.value)}, which cannot "
                                  "be stored")
        elif (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod)
              and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str)):
            raise ExpressionError(f"'{source}': % on a text would format it, which is not allowed; "
                                  "% works on numbers only")
        elif isinstance(node, ast.Compare):
            _check_identity(node, source)
    tree = ast.fix_missing_locations(_DecimalLiterals(source.strip()).visit(module)).body
    # Only now, with every node checked, is the tree turned into code.
    return CompiledExpression(source, tree, frozenset(names), frozenset(functions), _program(tree, source))


def nesting_depth(tree: ast.AST) -> int:
    """How deeply expressions nest in `tree` (`a` is 1, `-a` 2, `a + b + c` 3), measured without recursion."""
    deepest = 0
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, ast.expr):
            depth += 1
            deepest = max(deepest, depth)
        stack.extend((child, depth) for child in ast.iter_child_nodes(node))
    return deepest


def _shown(source: str, limit: int = 80) -> str:
    """The source for a message, shortened when it is long."""
    return source if len(source) <= limit else source[:limit - 3] + "..."


def _check_call(node: ast.Call, source: str, registry: Mapping[str, FunctionSpec]) -> str:
    """The name of the registered function `node` calls; ExpressionError for any other call or wrong arguments."""
    if not isinstance(node.func, ast.Name):
        raise ExpressionError(f"'{source}': only plain function calls such as today() are allowed")
    spec = registry.get(node.func.id)
    if spec is None:
        raise ExpressionError(f"unknown function '{node.func.id}' in '{source}'{suggest(node.func.id, registry)}")
    if node.keywords:
        raise ExpressionError(f"'{source}': {spec.name}() takes no keyword arguments")
    count = len(node.args)
    if count < spec.min_args or (spec.max_args is not None and count > spec.max_args):
        expected = (str(spec.min_args) if spec.min_args == spec.max_args
                    else f"{spec.min_args} or more" if spec.max_args is None
                    else f"{spec.min_args} to {spec.max_args}")
        raise ExpressionError(f"'{source}': {spec.name}() takes {expected} argument(s), got {count}")
    return node.func.id


def _check_identity(node: ast.Compare, source: str) -> None:
    """`is` and `is not` compare with None, True or False only: whether two other values are the same object
    is an accident of how they were made (`'a' is 'a'`), not something a formula may depend on."""
    operands = [node.left, *node.comparators]
    for number, op in enumerate(node.ops):
        if isinstance(op, ast.Is | ast.IsNot) and not any(
                isinstance(o, ast.Constant) and (o.value is None or isinstance(o.value, bool))
                for o in operands[number:number + 2]):
            word = "is not" if isinstance(op, ast.IsNot) else "is"
            raise ExpressionError(f"'{_shown(source)}': '{word}' compares with None, True or False only; "
                                  "use == or != to compare values")


def _describe(node: ast.AST) -> str:
    kinds = {
        ast.Attribute: "attribute access (a.b)", ast.Subscript: "indexing (a[b])",
        ast.Lambda: "lambda", ast.ListComp: "a comprehension", ast.GeneratorExp: "a generator",
        ast.DictComp: "a comprehension", ast.SetComp: "a comprehension", ast.Dict: "a dict literal",
        ast.NamedExpr: "assignment (:=)", ast.JoinedStr: "an f-string", ast.Starred: "unpacking (*x)",
        ast.Await: "await", ast.Yield: "yield", ast.BitAnd: "the & operator", ast.BitOr: "the | operator",
        ast.BitXor: "the ^ operator", ast.LShift: "the << operator", ast.RShift: "the >> operator",
        ast.Invert: "the ~ operator", ast.MatMult: "the @ operator", ast.Set: "a set literal",
    }
    return kinds.get(type(node), type(node).__name__)


class _Engine(simpleeval.EvalWithCompoundTypes):  # type: ignore[misc]  # simpleeval ships no types
    """simpleeval with a bound on every value an expression builds.

    simpleeval bounds one `+` or `*` of texts and lists, but a list repeated inside a list
    (`[[name] * 99999] * 99999`) is small for it and ten billion items for `str()`, `concat()` or its
    own recursive check of results. Here every value built by an operator, a call or a list literal
    is measured, a repeated list counting each time it appears, and refused past MAX_VALUE_SIZE.
    Field values (names) are the record's own and are not measured; constants come from the source.
    """

    _sizes: dict[int, tuple[Any, int]]

    def eval(self, expr: str, previously_parsed: Any = None) -> Any:
        self._sizes = {}  # id -> (value, size) of lists measured in this evaluation (kept alive here)
        try:
            return super().eval(expr, previously_parsed)
        finally:
            self._sizes = {}

    def _eval(self, node: ast.AST) -> Any:
        try:
            handler = self.nodes[type(node)]
        except KeyError:
            raise simpleeval.FeatureNotAvailable(f"{type(node).__name__} is not available") from None
        result = handler(node)
        if not isinstance(node, ast.Name | ast.Constant) and _size(result, self._sizes) > MAX_VALUE_SIZE:
            raise simpleeval.IterableTooLong(TOO_BIG)
        return result

    def _eval_name(self, node: ast.Name) -> Any:
        """A field's value; a name missing from the values is not defined (never one of the functions)."""
        try:
            return self.names[node.id]
        except KeyError:
            raise simpleeval.NameNotDefined(node.id, self.expr) from None


TOO_BIG = f"a value holding more than {MAX_VALUE_SIZE} characters and items"


def _size(value: Any, known: dict[int, tuple[Any, int]]) -> int:
    """Characters and items in `value`; stops counting once past MAX_VALUE_SIZE.

    `known` remembers the lists measured (id -> (list, size), the list kept alive), so a list repeated
    inside a list is measured once.
    """
    if isinstance(value, str):
        return len(value)
    if isinstance(value, int):
        return value.bit_length() // 3 + 1  # about its decimal digits
    if isinstance(value, list | tuple | dict):
        seen = known.get(id(value))
        if seen is not None:
            return seen[1]
        total = len(value)
        for item in (value.values() if isinstance(value, dict) else value):
            if total > MAX_VALUE_SIZE:
                break
            total += _size(item, known)  # nesting is bounded by MAX_EXPRESSION_DEPTH
        known[id(value)] = (value, total)
        return total
    if isinstance(value, ModuleType) or callable(value):
        raise simpleeval.FeatureNotAvailable("functions and modules are not values")
    return 1


# --- the compiled form --------------------------------------------------------------------------------
#
# The checked tree becomes `lambda _v, _fn: <expression>`, compiled once. Names are `_v["name"]`, calls
# `_fn["name"](...)` (the registered functions, made per clock by the Evaluator), operators calls of the
# functions below; comparisons, `and`, `or`, `not` and `x if c else y` stay Python's own, which is what
# the interpreter's operator table does for them. Every value the interpreter measures against
# MAX_VALUE_SIZE is measured here too, at the same points: results of arithmetic, calls, list and tuple
# literals, and of `-x`, `and`/`or` and `x if c else y` when they pass a field's value on unmeasured.

_SMALL = frozenset({Decimal, bool, NoneType, float, date, datetime})


def _checked(value: Any) -> Any:
    """`value`, unless it holds more than MAX_VALUE_SIZE characters and items (as the interpreter measures)."""
    kind = type(value)
    if kind in _SMALL:
        return value
    if kind is str:
        size = len(value)
    elif kind is int:
        size = value.bit_length() // 3 + 1
    else:
        size = _size(value, {})
    if size > MAX_VALUE_SIZE:
        raise simpleeval.IterableTooLong(TOO_BIG)
    return value


def _in_context(op: Callable[..., Any]) -> Callable[..., Any]:
    """`op` from OPERATORS with its result measured, run in DECIMAL_CONTEXT when a Decimal or a float (made a
    Decimal by `op`) takes part: the rare operands the shortcuts below leave to it."""

    def apply(left: Any, right: Any) -> Any:
        kind_l, kind_r = type(left), type(right)
        if kind_l is Decimal or kind_r is Decimal or kind_l is float or kind_r is float:
            with decimal.localcontext(DECIMAL_CONTEXT):
                return _checked(op(left, right))
        return _checked(op(left, right))

    return apply


def _arithmetic(op: Callable[[Any, Any], Any], fast: Callable[[Any, Any], Any],
                whole: Callable[[int, int], int]) -> Callable[[Any, Any], Any]:
    """`op` as `_in_context` runs it, with two shortcuts that change no result and no error: `fast` (a DECIMAL_CONTEXT
    method) for a Decimal with a Decimal or a whole number, which is what `op` does for them in DECIMAL_CONTEXT; and
    `whole` (Python's operator) for two whole numbers, bounded as `_numeric` bounds them."""
    other = _in_context(op)

    def apply(left: Any, right: Any) -> Any:
        kind = type(left)
        if kind is Decimal:
            kind = type(right)
            if kind is Decimal or kind is int:
                return fast(left, right)
        elif kind is int:
            kind = type(right)
            if kind is Decimal:
                return fast(left, right)
            if kind is int:
                result = whole(left, right)
                if result.bit_length() > MAX_POWER_BITS:
                    raise simpleeval.NumberTooHigh(f"the result has more than {MAX_POWER_BITS} bits")
                return result
        return other(left, right)

    return apply


_DIVIDE_OTHER = _in_context(OPERATORS[ast.Div])


def _divide_checked(left: Any, right: Any) -> Any:
    kind_l, kind_r = type(left), type(right)
    if (kind_l is Decimal or kind_l is int) and (kind_r is Decimal or kind_r is int):
        if right == 0:
            raise ZeroDivisionError("division by zero")
        return DECIMAL_CONTEXT.divide(left, right)  # as _divide: Decimal(left) / Decimal(right)
    return _DIVIDE_OTHER(left, right)


def _negative(value: Any) -> Any:
    return DECIMAL_CONTEXT.minus(value) if type(value) is Decimal else -value


def _positive(value: Any) -> Any:
    return DECIMAL_CONTEXT.plus(value) if type(value) is Decimal else +value


def _list(*items: Any) -> list[Any]:
    built = list(items)
    _checked(built)  # raises when it is too large
    return built


def _tuple(*items: Any) -> tuple[Any, ...]:
    _checked(items)  # raises when it is too large
    return items


# What a compiled program may call besides the registered functions: nothing else is in its namespace.
_RUNTIME: dict[str, Any] = {
    "_add": _arithmetic(OPERATORS[ast.Add], DECIMAL_CONTEXT.add, operator.add),
    "_sub": _arithmetic(OPERATORS[ast.Sub], DECIMAL_CONTEXT.subtract, operator.sub),
    "_mul": _arithmetic(OPERATORS[ast.Mult], DECIMAL_CONTEXT.multiply, operator.mul),
    "_div": _divide_checked,
    "_floordiv": _in_context(OPERATORS[ast.FloorDiv]),
    "_mod": _in_context(OPERATORS[ast.Mod]),
    "_pow": _in_context(OPERATORS[ast.Pow]),
    "_neg": _negative,
    "_pos": _positive,
    "_in": OPERATORS[ast.In],
    "_not_in": OPERATORS[ast.NotIn],
    "_checked": _checked,
    "_list": _list,
    "_tuple": _tuple,
}
_BINARY = {ast.Add: "_add", ast.Sub: "_sub", ast.Mult: "_mul", ast.Div: "_div", ast.FloorDiv: "_floordiv",
           ast.Mod: "_mod", ast.Pow: "_pow"}
_PYTHON_COMPARISONS = (ast.Eq, ast.NotEq, ast.Gt, ast.Lt, ast.GtE, ast.LtE, ast.Is, ast.IsNot)


class _Translator:
    """The checked tree as Python's own expression tree (see above); refuses any node the checker would."""

    def __init__(self) -> None:
        self.constants: dict[str, Any] = {}
        self.temporaries = 0

    def load(self, name: str) -> ast.Name:
        return ast.Name(id=name, ctx=ast.Load())

    def call(self, name: str, *args: ast.expr) -> ast.Call:
        return ast.Call(func=self.load(name), args=list(args), keywords=[])

    def checked(self, node: ast.expr, passes_names: bool) -> ast.expr:
        """Measured when a field's value may pass through unmeasured, as the interpreter measures it."""
        return self.call("_checked", node) if passes_names else node

    def expr(self, node: ast.AST) -> ast.expr:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, Decimal):  # Python's own constants cannot hold a Decimal
                name = f"_k{len(self.constants)}"
                self.constants[name] = node.value
                return self.load(name)
            if node.value is None or isinstance(node.value, bool | int | str):
                return ast.Constant(value=node.value)
        elif isinstance(node, ast.Name):
            return ast.Subscript(value=self.load("_v"), slice=ast.Constant(value=node.id), ctx=ast.Load())
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return self.call(_BINARY[type(node.op)], self.expr(node.left), self.expr(node.right))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ast.UnaryOp(op=ast.Not(), operand=self.expr(node.operand))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            constant = node.operand.value if isinstance(node.operand, ast.Constant) else None
            if type(constant) is int:  # -1: Python's own constant
                return ast.UnaryOp(op=type(node.op)(), operand=ast.Constant(value=constant))
            operand = self.call("_neg" if isinstance(node.op, ast.USub) else "_pos", self.expr(node.operand))
            return self.checked(operand, isinstance(node.operand, ast.Name))
        elif isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And | ast.Or):
            combined = ast.BoolOp(op=type(node.op)(), values=[self.expr(v) for v in node.values])
            return self.checked(combined, any(isinstance(v, ast.Name) for v in node.values))
        elif isinstance(node, ast.IfExp):
            chosen = ast.IfExp(test=self.expr(node.test), body=self.expr(node.body), orelse=self.expr(node.orelse))
            return self.checked(chosen, isinstance(node.body, ast.Name) or isinstance(node.orelse, ast.Name))
        elif isinstance(node, ast.Compare):
            return self.compare(node)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            function = ast.Subscript(value=self.load("_fn"), slice=ast.Constant(value=node.func.id), ctx=ast.Load())
            called = ast.Call(func=function, args=[self.expr(a) for a in node.args], keywords=[])
            return self.call("_checked", called)
        elif isinstance(node, ast.List | ast.Tuple):
            constant = _constant(node)
            if constant is not _NOT_CONSTANT and _size(constant, {}) <= MAX_VALUE_SIZE:
                # Written out in full (['won', 'lost']): its size is known now, a new one is built each time.
                kind = ast.List if isinstance(node, ast.List) else ast.Tuple
                return kind(elts=[self.expr(e) for e in node.elts], ctx=ast.Load())
            return self.call("_list" if isinstance(node, ast.List) else "_tuple", *(self.expr(e) for e in node.elts))
        raise ExpressionError(f"{_describe(node)} cannot be compiled")  # the checker let through what it should not

    def compare(self, node: ast.Compare) -> ast.expr:
        """`a < b < c` as Python does it when every operator is Python's own; with `in` (None-safe here),
        pairwise with each operand evaluated once, in order, stopping at the first false result."""
        if all(isinstance(op, _PYTHON_COMPARISONS) for op in node.ops):
            return ast.Compare(left=self.expr(node.left), ops=[type(op)() for op in node.ops],
                               comparators=[self.expr(c) for c in node.comparators])
        parts: list[ast.expr] = []
        left = self.expr(node.left)
        for number, (op, comparator) in enumerate(zip(node.ops, node.comparators, strict=True)):
            right = self.expr(comparator)
            following: ast.expr | None = None
            if number < len(node.ops) - 1:
                temporary = f"_t{self.temporaries}"
                self.temporaries += 1
                right = ast.NamedExpr(target=ast.Name(id=temporary, ctx=ast.Store()), value=right)
                following = self.load(temporary)
            if isinstance(op, ast.In | ast.NotIn):
                parts.append(self.call("_in" if isinstance(op, ast.In) else "_not_in", left, right))
            elif isinstance(op, _PYTHON_COMPARISONS):
                parts.append(ast.Compare(left=left, ops=[type(op)()], comparators=[right]))
            else:
                raise ExpressionError(f"{_describe(op)} cannot be compiled")
            if following is not None:
                left = following
        return parts[0] if len(parts) == 1 else ast.BoolOp(op=ast.And(), values=parts)


_NOT_CONSTANT = object()


def _constant(node: ast.AST) -> Any:
    """The value of a literal made of constants only (lists and tuples of them), else _NOT_CONSTANT."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.List | ast.Tuple):
        items = [_constant(e) for e in node.elts]
        if any(item is _NOT_CONSTANT for item in items):
            return _NOT_CONSTANT
        return items if isinstance(node, ast.List) else tuple(items)
    return _NOT_CONSTANT


def _program(tree: ast.AST, source: str) -> Callable[[Mapping[str, Any], Mapping[str, Callable[..., Any]] | None], Any]:
    """The checked `tree` as a Python function of (values, functions), compiled once."""
    translator = _Translator()
    body = translator.expr(tree)
    function = ast.Lambda(args=ast.arguments(posonlyargs=[], args=[ast.arg(arg="_v"), ast.arg(arg="_fn")],
                                             kwonlyargs=[], kw_defaults=[], defaults=[]), body=body)
    module = ast.fix_missing_locations(ast.Expression(body=function))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)  # none expected from a checked tree; never into the log
        code = compile(module, f"<expression {_shown(source, 60)}>", "eval")
    namespace = {"__builtins__": {}, **_RUNTIME, **translator.constants}
    program: Callable[[Mapping[str, Any], Mapping[str, Callable[..., Any]] | None], Any] = eval(  # noqa: S307
        code, namespace)  # defines the lambda; its code is the checked tree, nothing else
    return program


class Evaluator:
    """Evaluates compiled expressions against one record's values (one instance per save, not shared).

    Making one costs nothing: the expressions were compiled when the metadata loaded, and the functions
    (which read the clock) are made the first time an expression calls one.
    """

    __slots__ = ("_engine", "_functions", "_values")
    _engine: _Engine

    def __init__(self, values: Mapping[str, Any], clock: Clock,
                 functions: Mapping[str, Callable[..., Any]] | None = None) -> None:
        self._values = values
        # The registered functions made for this clock, or more (a rule condition's is_changed() and the like).
        self._functions = clock.functions if functions is None else functions
        # _engine is set when first interpreting: a save that needs none pays nothing for it.

    def functions(self) -> Mapping[str, Callable[..., Any]]:
        """The functions expressions call: those of the clock, each made when first called (kept by the clock)."""
        return self._functions

    def evaluate(self, expression: CompiledExpression) -> Any:
        """The raw result; Python errors from the data propagate."""
        program = expression.program
        if program is None:
            return self.interpret(expression)
        try:
            return program(self._values, self._functions)
        except KeyError as exc:
            raise self._missing(exc, expression) from None

    def _missing(self, exc: KeyError, expression: CompiledExpression) -> Exception:
        """What a KeyError from a program means: a field missing from the values (a record stored before the
        field existed) is NameNotDefined, as the interpreter says; any other is itself."""
        name = exc.args[0] if len(exc.args) == 1 else None
        if isinstance(name, str) and name in expression.names and not self._has(name):
            missing: Exception = simpleeval.NameNotDefined(name, expression.source)
            return missing
        return exc

    def interpret(self, expression: CompiledExpression) -> Any:
        """The reference evaluation: simpleeval walking the checked tree (what `evaluate` did before compiling).

        Kept for expressions built without `compile_expression` and to test the compiled form against.
        """
        try:
            engine = self._engine
        except AttributeError:
            # The mapping itself (made on first use, kept by the clock): simpleeval looks a called name up in it.
            engine = self._engine = _Engine(operators=OPERATORS, names=self._values, functions=self._functions)
        with decimal.localcontext(DECIMAL_CONTEXT):
            return engine.eval(expression.source, previously_parsed=expression.tree)

    def _has(self, name: str) -> bool:
        try:
            self._values[name]
        except KeyError:
            return False
        return True

    def value(self, expression: CompiledExpression) -> Any:
        """The result, or None when an input is empty or a division by zero occurs.

        Raises EvaluationError when the inputs are present but the expression cannot use them, whatever
        went wrong (a type error, a value too large, even a RecursionError or MemoryError): an
        expression in metadata never turns a save into a server error.
        """
        program = expression.program
        try:
            if program is None:
                return self.interpret(expression)
            return program(self._values, self._functions)  # evaluate(), inlined: this runs on every save
        except ZeroDivisionError:
            return None
        except Exception as exc:  # every failure is this field's error, never a 500
            for name in expression.names:  # a loop, not any(<generator>): no frame more than the evaluation took
                if self._values.get(name) is None:
                    return None
            if isinstance(exc, KeyError):
                exc = self._missing(exc, expression)
            raise EvaluationError(f"cannot compute '{expression.source}': {_reason(exc)}") from None

    def condition(self, expression: CompiledExpression) -> bool:
        """A truth value; a condition on empty or unusable data is false."""
        try:
            return bool(self.value(expression))
        except EvaluationError:
            return False



class _Functions(dict[str, Callable[..., Any]]):
    """The registered functions for one clock, each made the first time an expression calls it."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    def __missing__(self, name: str) -> Callable[..., Any]:
        function = self[name] = FUNCTIONS[name].make(self.clock)
        return function



def _reason(exc: Exception) -> str:
    """What went wrong, in words (decimal's own messages are lists of exception classes)."""
    if isinstance(exc, RecursionError):
        return "it nests too deeply"
    if isinstance(exc, MemoryError):
        return "it needs too much memory"
    if isinstance(exc, decimal.Overflow):
        return "the number is too large"
    if isinstance(exc, decimal.DecimalException):
        return "the number is out of range or not a number"
    return str(exc) or type(exc).__name__
