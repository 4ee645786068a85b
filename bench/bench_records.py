"""Kartoteka's record service vs a hand-written fixed-schema table, side by side on one database.

    .venv/bin/python -m bench.bench_records [--n 10000] [--database sqlite|postgresql|both]

For each database the same N deal cards are written twice, interleaved in blocks: through
RecordService (JSON column, metadata from bench/config) and through SQLAlchemy Core into
`bench_deals`, a typed table with the same indexes, where plain Python does the checks and the
total by hand. Then both sides are read, updated and listed the same way. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import shutil
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from importlib import metadata as dist
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from kartoteka.metadata.expressions import Clock
from kartoteka.metadata.fieldtypes import ParseContext
from kartoteka.metadata.loader import load_metadata
from kartoteka.records.model import SYSTEM, Filter, ListQuery, Record
from kartoteka.records.service import RecordService
from kartoteka.storage.database import create_engine, read_engine, upgrade
from kartoteka.storage.indexes import sync_indexes
from kartoteka.storage.tables import records

CONFIG_DIR = Path(__file__).resolve().parent / "config"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
STAGES = ("new", "qualified", "proposal", "won", "lost")
PAGE_SIZE = 50
BLOCK = 250          # operations per interleaved block (kartoteka, fixed, fixed, kartoteka, ...)
WARMUP = 25          # untimed operations of each kind per side before timing
CREATE_BUDGET_S = 120.0  # per database and side: above this the projected time is reported

# --- the fixed-schema table ------------------------------------------------------------------------

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Money = sa.Numeric(17, 2)
Timestamp = sa.DateTime(timezone=True)
fixed_schema = sa.MetaData()
bench_deals = sa.Table(
    "bench_deals", fixed_schema,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("company", sa.Text),
    sa.Column("stage", sa.String(20), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("price", Money),
    sa.Column("discount", sa.Numeric(5, 2), nullable=False),
    sa.Column("total", Money),
    sa.Column("close_date", sa.Date),
    sa.Column("lost_reason", sa.Text),
    sa.Column("owner_email", sa.String(254)),
    sa.Column("owner", Id),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("created_by", Id),
    sa.Column("updated_by", Id),
    sa.Column("deleted_at", Timestamp),
    # The same indexes as Kartoteka's: (value, id) for each `indexed` field, as sync_indexes builds them, and the
    # records table's own (entity, updated_at) and (entity, owner), here without the entity (one table per card).
    # Like Kartoteka's they are not partial on live rows. See "Index shapes" in bench/README.md.
    sa.Index("ix_bench_deals_stage", "stage", "id"),
    sa.Index("ix_bench_deals_company", "company", "id"),
    sa.Index("ix_bench_deals_close_date", "close_date", "id"),
    sa.Index("ix_bench_deals_updated_at", "updated_at"),
    sa.Index("ix_bench_deals_owner", "owner"),
)


class Invalid(ValueError):
    """The hand-written checks found problems (field → messages)."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


class Stale(Exception):
    """The hand-written optimistic lock failed."""


_EMAIL = re.compile(r"[^@\s\"<>,;:]+@[^@\s\"<>,;:]+\.[^@\s\"<>,;:.]{2,}")
_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
CENT = Decimal("0.01")
HUNDRED = Decimal(100)
MAX_AMOUNT = Decimal(10) ** 15


def _money(raw: Any, name: str, errors: dict[str, list[str]], lo: Decimal | None, hi: Decimal | None) -> Decimal | None:
    """What a careful app does by hand for an amount with two decimals."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int | float | Decimal):
        errors.setdefault(name, []).append("Must be a number.")
        return None
    if isinstance(raw, str):
        text = raw.strip().removesuffix("%").replace(" ", "").replace(",", ".")
        if not _DECIMAL.fullmatch(text):
            errors.setdefault(name, []).append("Not a number.")
            return None
        raw = text
    try:
        number = Decimal(repr(raw)) if isinstance(raw, float) else Decimal(raw)
        if number != number.quantize(CENT):
            errors.setdefault(name, []).append("At most 2 digits after the point.")
            return None
        number = number.quantize(CENT)
    except InvalidOperation:
        errors.setdefault(name, []).append("Not a number.")
        return None
    if abs(number) >= MAX_AMOUNT:
        errors.setdefault(name, []).append("Too large.")
    elif lo is not None and number < lo:
        errors.setdefault(name, []).append(f"Must be at least {lo}.")
    elif hi is not None and number > hi:
        errors.setdefault(name, []).append(f"Must be at most {hi}.")
    return number


def _text(raw: Any, name: str, errors: dict[str, list[str]], max_length: int, single_line: bool = True) -> str | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if not isinstance(raw, str):
        errors.setdefault(name, []).append("Must be text.")
        return None
    text = raw.strip()
    if single_line and ("\n" in text or "\r" in text):
        errors.setdefault(name, []).append("Must be a single line.")
    elif len(text) > max_length:
        errors.setdefault(name, []).append(f"Must be at most {max_length} characters.")
    return text


def check_deal(incoming: dict[str, Any], stored: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fixed-schema app's hand-written version of the deal card's rules; Invalid lists problems."""
    errors: dict[str, list[str]] = {}
    row = dict(stored) if stored is not None else {"stage": "new", "quantity": 1, "discount": Decimal("0.00")}
    for name, raw in incoming.items():
        if name == "name":
            row["name"] = _text(raw, name, errors, 200)
        elif name == "company":
            row["company"] = _text(raw, name, errors, 10_000)
        elif name == "stage":
            value = None if raw is None or raw == "" else str(raw).strip()
            if value is not None and value not in STAGES:
                errors.setdefault(name, []).append("Not one of the options.")
            row["stage"] = value
        elif name == "quantity":
            if isinstance(raw, str) and raw.strip().lstrip("+-").isdigit():
                raw = int(raw)
            if raw is None or raw == "":
                row["quantity"] = None
            elif isinstance(raw, bool) or not isinstance(raw, int):
                errors.setdefault(name, []).append("Must be a whole number.")
            elif raw < 1 or raw > 2**53 - 1:
                errors.setdefault(name, []).append("Must be at least 1.")
            else:
                row["quantity"] = raw
        elif name == "price":
            row["price"] = _money(raw, name, errors, Decimal(0), None)
        elif name == "discount":
            row["discount"] = _money(raw, name, errors, Decimal(0), HUNDRED)
        elif name == "close_date":
            if raw is None or raw == "":
                row["close_date"] = None
            else:
                try:
                    row["close_date"] = raw if isinstance(raw, date) else date.fromisoformat(raw)
                except (TypeError, ValueError):
                    errors.setdefault(name, []).append("Not a date.")
        elif name == "lost_reason":
            row["lost_reason"] = _text(raw, name, errors, 100_000, single_line=False)
        elif name == "owner_email":
            text = _text(raw, name, errors, 254)
            if text is not None and (not _EMAIL.fullmatch(text) or ".." in text):
                errors.setdefault(name, []).append("Not a valid e-mail address.")
            row["owner_email"] = text.lower() if text else None
        else:
            errors.setdefault(name, []).append("Unknown field.")
    if not row.get("name"):
        errors.setdefault("name", []).append("Required.")
    if row.get("stage") is None:
        errors.setdefault("stage", []).append("Required.")
    if row.get("quantity") is None:
        errors.setdefault("quantity", []).append("Required.")
    if row.get("discount") is None:
        row["discount"] = Decimal("0.00")
    if row.get("stage") != "lost":  # a field hidden by its visible_if is emptied on save, as Kartoteka does
        row["lost_reason"] = None
        errors.pop("lost_reason", None)
    elif not row.get("lost_reason"):
        errors.setdefault("lost_reason", []).append("Required.")
    if errors:
        raise Invalid(errors)
    price = row.get("price")
    row["total"] = None if price is None else (
        row["quantity"] * price * (1 - row["discount"] / HUNDRED)).quantize(CENT, rounding=ROUND_HALF_UP)
    return row


class FixedDeals:
    """The hand-written data access of a fixed-schema app: one transaction per save, like the API."""

    columns = ("name", "company", "stage", "quantity", "price", "discount", "total", "close_date",
               "lost_reason", "owner_email")

    def __init__(self, engine: sa.Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self.dialect = engine.dialect.name
        t = bench_deals
        # Statements built once, values passed as parameters (what a careful hand-written app does). The new id
        # comes as Kartoteka's does: the cursor's lastrowid on SQLite, an implicit RETURNING id on PostgreSQL (an
        # explicit RETURNING cost SQLite 20-30 µs a create, which is no part of what the two sides compare).
        self.insert = sa.insert(t)
        self.select = sa.select(t).where(t.c.id == sa.bindparam("deal_id"), t.c.deleted_at.is_(None))
        self.current = sa.select(*(t.c[n] for n in self.columns), t.c.version).where(
            t.c.id == sa.bindparam("deal_id"), t.c.deleted_at.is_(None))
        # SET gets the columns present in the parameters.
        self.update_stmt = sa.update(t).where(t.c.id == sa.bindparam("deal_id"),
                                             t.c.version == sa.bindparam("expected_version"))

    def create(self, values: dict[str, Any], user_id: int | None = None) -> dict[str, Any]:
        row = check_deal(values)
        now = self.clock.now()
        row.update(version=1, owner=user_id, created_at=now, updated_at=now, created_by=user_id, updated_by=user_id)
        with self.engine.begin() as conn:
            inserted = conn.execute(self.insert, row).inserted_primary_key
            assert inserted is not None  # a single-row INSERT always has one
            row["id"] = inserted[0]
        return row

    def get(self, deal_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(self.select, {"deal_id": deal_id}).mappings().first()
        if row is None:
            raise LookupError(deal_id)
        return dict(row)

    def update(self, deal_id: int, values: dict[str, Any], expected_version: int,
               user_id: int | None = None) -> dict[str, Any]:
        now = self.clock.now()
        with self.engine.begin() as conn:
            current = conn.execute(self.current, {"deal_id": deal_id}).mappings().first()
            if current is None:
                raise LookupError(deal_id)
            if current["version"] != expected_version:
                raise Stale(deal_id)
            stored = {n: current[n] for n in self.columns}
            row = check_deal(values, stored)
            changes = {n: row[n] for n in self.columns if row[n] != stored[n]}
            if not changes:
                return {**row, "id": deal_id, "version": expected_version}
            result = conn.execute(self.update_stmt, {
                **changes, "version": expected_version + 1, "updated_at": now, "updated_by": user_id,
                "deal_id": deal_id, "expected_version": expected_version})
            if result.rowcount != 1:
                raise Stale(deal_id)
        return {**row, "id": deal_id, "version": expected_version + 1}

    def page(self, stage: str, cursor: tuple[date | None, int] | None, limit: int = PAGE_SIZE
             ) -> tuple[list[dict[str, Any]], tuple[date | None, int] | None]:
        """One page of deals in `stage`, newest close date first (NULLs where the database puts them)."""
        t = bench_deals
        where = [t.c.stage == stage, t.c.deleted_at.is_(None)]
        if cursor is not None:
            value, last_id = cursor
            nulls_first = self.dialect == "postgresql"  # DESC: PostgreSQL puts NULLs first, SQLite last
            if value is None:
                tie = sa.and_(t.c.close_date.is_(None), t.c.id < last_id)
                where.append(sa.or_(tie, t.c.close_date.isnot(None)) if nulls_first else tie)
            else:
                clause = sa.and_(t.c.close_date <= value, sa.or_(t.c.close_date < value, t.c.id < last_id))
                where.append(clause if nulls_first else sa.or_(clause, t.c.close_date.is_(None)))
        query = sa.select(t).where(*where).order_by(t.c.close_date.desc(), t.c.id.desc()).limit(limit + 1)
        with self.engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = (rows[-1]["close_date"], rows[-1]["id"])
        return rows, next_cursor


# --- cross-checks --------------------------------------------------------------------------------

FIELDS = FixedDeals.columns
CREATE_COLUMNS = (*FIELDS, "version", "owner", "created_by", "updated_by")
UPDATE_COLUMNS = (*FIELDS, "version")
READ_COLUMNS = (*FIELDS, "version", "owner", "created_by", "updated_by", "deleted_at")


class CheckFailed(SystemExit):
    """The two sides disagree: the figures would compare different work, so the bench stops."""


def _columns(item: Record | dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    if isinstance(item, Record):
        system = {"version": item.version, "owner": item.owner, "created_by": item.created_by,
                  "updated_by": item.updated_by, "deleted_at": item.deleted_at}
        return {n: system[n] if n in system else item.values.get(n) for n in names}
    return {n: item.get(n) for n in names}


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type (Decimal('10') and Decimal('10.00') are the same amount; 1 and True are not)."""
    return type(a) is type(b) and a == b


def cross_check(kind: str, operation: str, k_items: Sequence[Record], f_items: Sequence[dict[str, Any]],
                names: Sequence[str], *, deal_of: tuple[dict[int, int], dict[int, int]] | None = None) -> None:
    """Every named column of every item, pairwise; stops the bench with the first differences found.

    `deal_of` maps each side's ids to the input deal's number, for lists: both must show the same deals in order.
    """
    problems = []
    if len(k_items) != len(f_items):
        problems.append(f"kartoteka returned {len(k_items)} items, fixed schema {len(f_items)}")
    for number, (k_item, f_item) in enumerate(zip(k_items, f_items, strict=False)):
        k, f = _columns(k_item, names), _columns(f_item, names)
        differ = [f"{n}: {k[n]!r} vs {f[n]!r}" for n in names if not _same(k[n], f[n])]
        k_id, f_id = k_item.id, f_item.get("id")
        if deal_of is not None and deal_of[0].get(k_id) != deal_of[1].get(f_id):
            differ.append(f"not the same deal: input {deal_of[0].get(k_id)} vs {deal_of[1].get(f_id)}")
        if differ:
            problems.append(f"item {number} (kartoteka id {k_id}, fixed id {f_id}): " + "; ".join(differ))
        if len(problems) >= 5:
            break
    if problems:
        raise CheckFailed(f"[{kind}] CROSS-CHECK FAILED after {operation}: the two sides differ, so the timings "
                          "would compare different work and are not reported:\n  " + "\n  ".join(problems))


# --- data ----------------------------------------------------------------------------------------

COMPANIES = [f"{a} {b}" for a in ("Alfa", "Beta", "Gamma", "Delta", "Omega", "Sever", "Vostok", "Ural", "Volga",
                                  "Neva", "Baikal", "Altai", "Amur", "Kama", "Oka")
             for b in ("Trade", "Steel", "Soft", "Logistics", "Foods", "Energy", "Bank", "Media", "Build",
                       "Pharma", "Retail", "Agro", "Telecom", "Systems", "Group", "Holding", "Motors",
                       "Textile", "Chem", "Wood")]
PEOPLE = ("Ivan.Petrov", "Olga.Smirnova", "Anna.Kuznetsova", "Pavel.Sokolov", "Maria.Popova", "Oleg.Lebedev")


def deal_values(rng: random.Random, i: int) -> dict[str, Any]:
    """The JSON an API client would send for a new deal (numbers as strings, dates as ISO text)."""
    stage = rng.choice(STAGES)
    values: dict[str, Any] = {
        "name": f"Deal {i:06d} for {rng.choice(COMPANIES)}",
        "company": rng.choice(COMPANIES),
        "stage": stage,
        "quantity": rng.randint(1, 20),
        "price": f"{rng.randint(100, 5_000_000) / 100:.2f}",
        "discount": rng.choice(("0", "5", "10", "12.5", "20")),
        "owner_email": f"{rng.choice(PEOPLE)}@Example.com",
    }
    if rng.random() < 0.95:  # a few deals have no close date yet
        values["close_date"] = (date(2026, 1, 1) + timedelta(days=rng.randint(0, 729))).isoformat()
    if stage == "lost":
        values["lost_reason"] = rng.choice(("Price too high", "Went with a competitor", "No budget\nthis year"))
    return values


def update_values(rng: random.Random) -> dict[str, Any]:
    stage = rng.choice(STAGES)
    values: dict[str, Any] = {"stage": stage, "price": f"{rng.randint(100, 5_000_000) / 100:.2f}"}
    if stage == "lost":
        values["lost_reason"] = "Lost in the benchmark"
    return values


# --- measuring -----------------------------------------------------------------------------------

@dataclass
class Timing:
    ops: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0


@dataclass
class Result:
    operation: str
    kartoteka: Timing = field(default_factory=Timing)
    fixed: Timing = field(default_factory=Timing)
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.kartoteka.seconds / self.kartoteka.ops / (self.fixed.seconds / self.fixed.ops)


def timed(fn: Callable[[Any], Any], items: Sequence[Any], timing: Timing) -> list[Any]:
    out = []
    perf = time.perf_counter
    start = perf()
    for item in items:
        out.append(fn(item))
    timing.seconds += perf() - start
    timing.ops += len(items)
    return out


def interleaved(items: Sequence[Any], result: Result, kartoteka: Callable[[Any], Any], fixed: Callable[[Any], Any],
                block: int = BLOCK, progress: Callable[[Result], None] | None = None) -> tuple[list[Any], list[Any]]:
    """Run both sides over `items` in alternating blocks (K F F K ...) so drift hits both alike."""
    k_out: list[Any] = []
    f_out: list[Any] = []
    for number, start in enumerate(range(0, len(items), block)):
        chunk = items[start:start + block]
        if number % 2 == 0:
            k_out += timed(kartoteka, chunk, result.kartoteka)
            f_out += timed(fixed, chunk, result.fixed)
        else:
            f_out += timed(fixed, chunk, result.fixed)
            k_out += timed(kartoteka, chunk, result.kartoteka)
        if progress is not None:
            progress(result)
    return k_out, f_out


# --- databases -----------------------------------------------------------------------------------

@contextmanager
def database(kind: str, pg_url: str, keep: bool) -> Iterator[tuple[sa.Engine, str]]:
    """A fresh engine with the core tables, the bench metadata's indexes and bench_deals."""
    if kind == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="kartoteka-bench-"))
        engine = create_engine(f"sqlite:///{folder / 'bench.db'}")
        where = str(folder / "bench.db")
        try:
            yield engine, where
        finally:
            engine.dispose()
            if not keep:
                shutil.rmtree(folder, ignore_errors=True)
        return
    schema = f"kt_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    engine = create_engine(pg_url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield engine, f"schema {schema}"
    finally:
        engine.dispose()
        if not keep:
            with admin.begin() as conn:
                conn.execute(sa.schema.DropSchema(schema, cascade=True))
        admin.dispose()


def server_version(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            return "PostgreSQL " + conn.exec_driver_sql("SHOW server_version").scalar_one().split()[0]
        return "SQLite " + conn.exec_driver_sql("SELECT sqlite_version()").scalar_one()


def environment(versions: Sequence[str]) -> str:
    def version(name: str) -> str:
        try:
            return dist.version(name)
        except dist.PackageNotFoundError:
            return "?"

    parts = [f"Python {platform.python_version()}", f"SQLAlchemy {sa.__version__}", f"psycopg {version('psycopg')}",
             f"simpleeval {version('simpleeval')}", *versions,
             f"{platform.system()} {platform.release()} {platform.machine()}", f"{os.cpu_count()} CPUs"]
    return " | ".join(parts)


# --- one database --------------------------------------------------------------------------------

@dataclass
class Run:
    kind: str
    version: str
    results: list[Result]
    notes: list[str]
    seconds: float
    plans: list[str] = field(default_factory=list)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bench_database(kind: str, engine: sa.Engine, n: int, pages: int, seed: int, explain: bool) -> Run:
    began = time.perf_counter()
    notes: list[str] = []
    clock = Clock(lambda: datetime.now(UTC))
    ctx = ParseContext()
    metadata = load_metadata(CONFIG_DIR, ctx)
    upgrade(engine)
    sync_indexes(engine, metadata)
    fixed_schema.create_all(engine)
    service = RecordService(metadata, engine, clock, ctx)
    fixed = FixedDeals(engine, clock)
    version = server_version(engine)
    rng = random.Random(seed)
    results: list[Result] = []

    # Warm up: pool connections, SQLAlchemy's compiled-statement cache, imports; then forget the rows.
    for i in range(WARMUP):
        values = deal_values(rng, -1 - i)
        record = service.create("deal", values, SYSTEM)
        service.get("deal", record.id, SYSTEM)
        service.update("deal", record.id, update_values(rng), SYSTEM, expected_version=record.version)
        row = fixed.create(values)
        fixed.get(row["id"])
        fixed.update(row["id"], update_values(rng), expected_version=row["version"])
    with engine.begin() as conn:
        conn.execute(sa.delete(records).where(records.c.entity == "deal"))
        conn.execute(sa.delete(bench_deals))

    # create
    inputs = [deal_values(rng, i) for i in range(n)]
    create = Result("create (1 tx each)")
    say(f"[{kind}] creating {n} deals on each side ...")
    warned = []

    def check_budget(result: Result) -> None:
        done = result.kartoteka.ops
        if warned or done < min(1000, n):
            return
        projected = max(result.kartoteka.seconds, result.fixed.seconds) / done * n
        if projected > CREATE_BUDGET_S:
            warned.append(projected)
            note = (f"create is slow here: {n} creates are projected to take {projected:.0f} s on the slower side "
                    f"(budget {CREATE_BUDGET_S:.0f} s); N was NOT lowered, use --n to choose a smaller run")
            notes.append(note)
            say(f"[{kind}] NOTE: {note}")

    created, fixed_rows = interleaved(inputs, create, lambda v: service.create("deal", v, SYSTEM), fixed.create,
                                      progress=check_budget)
    results.append(create)
    cross_check(kind, "create", created, fixed_rows, CREATE_COLUMNS)
    k_ids = [r.id for r in created]
    f_ids = [r["id"] for r in fixed_rows]
    k_version = {r.id: r.version for r in created}
    f_version = {r["id"]: r["version"] for r in fixed_rows}
    with engine.begin() as conn:
        # PostgreSQL's autovacuum would do this soon after 10,000 inserts; on SQLite Kartoteka keeps statistics on
        # records itself (storage/statistics.py) and a hand-written application would have to run ANALYZE: do it
        # now for both, so that both planners know their tables.
        conn.exec_driver_sql("ANALYZE records")
        conn.exec_driver_sql("ANALYZE bench_deals")
    notes.append("ANALYZE ran on records and bench_deals after the creates (on PostgreSQL as autovacuum would; on "
                 "SQLite as Kartoteka's statistics upkeep does for records)")

    # read
    count = max(1, n // 10)
    picks = [rng.randrange(n) for _ in range(count)]
    read = Result(f"read by id ({count})")
    say(f"[{kind}] reading {count} deals on each side ...")
    k_got, f_got = interleaved(picks, read, lambda i: service.get("deal", k_ids[i], SYSTEM),
                               lambda i: fixed.get(f_ids[i]))
    results.append(read)
    cross_check(kind, "read", k_got, f_got, READ_COLUMNS)

    # update
    picks = [(rng.randrange(n), update_values(rng)) for _ in range(count)]
    update = Result(f"update stage+price ({count})")
    say(f"[{kind}] updating {count} deals on each side ...")

    def k_update(item: tuple[int, dict[str, Any]]) -> Any:
        record_id = k_ids[item[0]]
        record = service.update("deal", record_id, item[1], SYSTEM, expected_version=k_version[record_id])
        k_version[record_id] = record.version
        return record

    def f_update(item: tuple[int, dict[str, Any]]) -> Any:
        deal_id = f_ids[item[0]]
        row = fixed.update(deal_id, item[1], expected_version=f_version[deal_id])
        f_version[deal_id] = row["version"]
        return row

    k_new, f_new = interleaved(picks, update, k_update, f_update)
    results.append(update)
    cross_check(kind, "update", k_new, f_new, UPDATE_COLUMNS)
    k_after = [service.get("deal", k_ids[i], SYSTEM) for i, _ in picks]  # what each update stored (untimed)
    f_after = [fixed.get(f_ids[i]) for i, _ in picks]
    cross_check(kind, "update, read back", k_after, f_after, READ_COLUMNS)

    # list
    listing = Result(f"list page of {PAGE_SIZE} ({pages})")
    say(f"[{kind}] listing {pages} pages on each side ...")
    k_rows, f_rows, walks = list_pages(service, fixed, pages, listing)
    results.append(listing)
    listing.note = walks
    deal_of = ({k: i for i, k in enumerate(k_ids)}, {f: i for i, f in enumerate(f_ids)})
    cross_check(kind, "list", k_rows, f_rows, READ_COLUMNS, deal_of=deal_of)
    notes.append(f"cross-checked: every field and system column of the {n} creates, {count} reads, {count} updates "
                 f"(as returned and as read back) and {len(k_rows)} listed rows (in order) is the same on both sides")
    seconds = time.perf_counter() - began
    plans = explain_list(service, fixed, engine) if explain else []
    return Run(kind, version, results, notes, seconds, plans)


def list_pages(service: RecordService, fixed: FixedDeals, pages: int, result: Result
               ) -> tuple[list[Record], list[dict[str, Any]], str]:
    """Walk each stage's deals page by page, cycling through the stages, until `pages` pages are read."""
    k_rows: list[Record] = []
    f_rows: list[dict[str, Any]] = []
    for _ in range(3):  # warm up both sides
        service.list("deal", SYSTEM, ListQuery(filters=(Filter("stage", "eq", "won"),), sort="-close_date"))
        fixed.page("won", None)
    walks = 0
    done = 0
    stage_index = 0
    while done < pages:
        stage = STAGES[stage_index % len(STAGES)]
        stage_index += 1
        walks += 1
        k_cursor: str | None = None
        f_cursor: tuple[date | None, int] | None = None
        while done < pages:
            query = ListQuery(filters=(Filter("stage", "eq", stage),), sort="-close_date", limit=PAGE_SIZE,
                              cursor=k_cursor)
            perf = time.perf_counter
            if done % 2 == 0:
                start = perf()
                page = service.list("deal", SYSTEM, query)
                middle = perf()
                rows, f_cursor = fixed.page(stage, f_cursor)
                end = perf()
                result.kartoteka.seconds += middle - start
                result.fixed.seconds += end - middle
            else:
                start = perf()
                rows, f_cursor = fixed.page(stage, f_cursor)
                middle = perf()
                page = service.list("deal", SYSTEM, query)
                end = perf()
                result.fixed.seconds += middle - start
                result.kartoteka.seconds += end - middle
            result.kartoteka.ops += 1
            result.fixed.ops += 1
            done += 1
            k_rows += page.items
            f_rows += rows
            k_cursor = page.next_cursor
            if k_cursor is None or f_cursor is None:
                break
    return k_rows, f_rows, f"{walks} keyset walks over the stages"


def explain_list(service: RecordService, fixed: FixedDeals, engine: sa.Engine, page: int = 5) -> list[str]:
    """The plan of page `page` of each side's list (stage=won), for the SQL exactly as the driver got it."""
    stage = "won"
    k_cursor: str | None = None
    f_cursor: tuple[date | None, int] | None = None
    for number in range(2, page + 1):
        k_next = service.list("deal", SYSTEM, ListQuery(filters=(Filter("stage", "eq", stage),),
                                                        sort="-close_date", cursor=k_cursor)).next_cursor
        _, f_next = fixed.page(stage, f_cursor)
        if k_next is None or f_next is None:
            page = number - 1  # fewer pages than asked for (a small --n)
            break
        k_cursor, f_cursor = k_next, f_next
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        captured.append((statement, parameters))

    listened = {engine, read_engine(engine)}  # the record service reads on an engine of its own
    for one in listened:
        sa.event.listen(one, "before_cursor_execute", capture)
    try:
        service.list("deal", SYSTEM, ListQuery(filters=(Filter("stage", "eq", stage),), sort="-close_date",
                                               cursor=k_cursor))
        fixed.page(stage, f_cursor)
    finally:
        for one in listened:
            sa.event.remove(one, "before_cursor_execute", capture)
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN "
    lines = []
    for label, (statement, parameters) in zip(("kartoteka", "fixed-schema"), captured, strict=True):
        lines.append(f"{label} list query, page {page} of stage={stage}:")
        lines.append("    " + " ".join(statement.split()))
        lines.append(f"    parameters: {parameters}")
        with engine.connect() as conn:
            for row in conn.exec_driver_sql(prefix + statement, parameters):
                lines.append("    " + " | ".join(str(c) for c in row))
    return lines


# --- output --------------------------------------------------------------------------------------

def table(runs: Sequence[Run]) -> str:
    header = ("database", "operation", "kartoteka ops/s", "fixed-schema ops/s", "ratio (k time / fixed time)")
    rows = [header]
    for run in runs:
        for result in run.results:
            rows.append((run.version, result.operation, f"{result.kartoteka.rate:,.0f}", f"{result.fixed.rate:,.0f}",
                         f"{result.ratio:.2f}x"))
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    align = ("<", "<", ">", ">", ">")
    lines = []
    for number, row in enumerate(rows):
        lines.append("  ".join(f"{cell:{a}{w}}" for cell, a, w in zip(row, align, widths, strict=True)).rstrip())
        if number == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="deals created on each side (default 10000)")
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--pg-url", default=os.environ.get("KARTOTEKA_BENCH_DATABASE_URL", DEFAULT_PG_URL),
                        help="PostgreSQL URL; a schema is created for the run and dropped after it")
    parser.add_argument("--pages", type=int, default=200, help="list pages read on each side (default 200)")
    parser.add_argument("--seed", type=int, default=20260302)
    parser.add_argument("--explain", action="store_true", help="also print the plans of both list queries")
    parser.add_argument("--keep", action="store_true", help="keep the SQLite file / PostgreSQL schema")
    args = parser.parse_args(argv)
    if args.n < 10:
        parser.error("--n must be at least 10")
    warnings.filterwarnings("ignore", message=".*does \\*not\\* support Decimal objects natively.*")

    kinds = ("sqlite", "postgresql") if args.database == "both" else (args.database,)
    runs = []
    started = time.perf_counter()
    for kind in kinds:
        with database(kind, args.pg_url, args.keep) as (engine, where):
            say(f"[{kind}] {where}")
            runs.append(bench_database(kind, engine, args.n, args.pages, args.seed, args.explain))
    total = time.perf_counter() - started

    print(f"Kartoteka RecordService vs fixed-schema SQLAlchemy Core: N={args.n} deals per side, "
          f"{len(kinds)} database(s), seed {args.seed}")
    print(environment([run.version for run in runs]))
    print()
    print(table(runs))
    print()
    for run in runs:
        listing = next(r for r in run.results if r.operation.startswith("list"))
        print(f"{run.version}: {run.seconds:.0f} s; list: {listing.note}")
        for note in run.notes:
            print(f"  - {note}")
    print(f"total {total:.0f} s")
    for run in runs:
        if run.plans:
            print()
            print(f"Query plans on {run.version}:")
            print("\n".join(run.plans))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
