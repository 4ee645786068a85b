"""Import 100,000 leads from a CSV through the record service against PostgreSQL's COPY of the same rows.

    .venv/bin/python -m bench.bench_import [--rows 100000] [--database-url postgresql://...] [--automation]
                                           [--all-or-nothing] [--profile 5000] [--keep]
    .venv/bin/python -m bench.bench_import --read-mb 200     # the reader alone over a 200 MB CSV: peak memory

One CSV of `--rows` leads with the shipped card's columns (contact name, company, city, phones, e-mails, budget,
rating, source, status, request), written to a temporary file. Then, in a fresh schema of the PostgreSQL database:

- **import**: `kartoteka.imports.runner.run_import` as `kartoteka import lead FILE --skip-invalid` runs it (no dry-run
  pass; `--all-or-nothing` adds the dry run that the default mode makes first), batches of 500 rows per transaction,
  each row saved by `RecordService.create` (parsing, formulas, conditions, validation, key columns, the journal,
  automation off unless `--automation`, which attaches the rules engine with the shipped lead rules);
- **COPY**: `COPY lead_copy FROM STDIN (FORMAT csv, HEADER)` of the same file into a table of text columns: the floor
  of loading those bytes into PostgreSQL, with no parsing, validation or JSON.

It reports rows per second of each and their ratio (target of issue 10: the import at >= 25 % of COPY's rows/s), the
process's peak resident memory (ru_maxrss) and the file's size; with `--profile N`, where the time of an import of
N rows goes (cProfile, by function, cumulative).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import resource
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from bench.bench_records import DEFAULT_PG_URL, environment, server_version
from kartoteka.imports.runner import ImportOptions, run_import
from kartoteka.metadata.expressions import Clock
from kartoteka.metadata.fieldtypes import ParseContext
from kartoteka.metadata.loader import load_metadata
from kartoteka.records.model import SYSTEM
from kartoteka.records.service import RecordService
from kartoteka.storage.database import create_engine, upgrade
from kartoteka.storage.indexes import sync_indexes

ROOT = Path(__file__).resolve().parent.parent
HEADER = ["Контактное лицо", "Название компании", "Город", "Телефоны", "E-mails", "Бюджет", "Температура",
          "Источник", "Статус", "Запрос клиента"]
FIRST = ["Иван", "Анна", "Пётр", "Мария", "Олег", "Елена", "Сергей", "Ольга", "Dmitry", "Kate"]
LAST = ["Петров", "Смирнова", "Иванов", "Кузнецова", "Соколов", "Попова", "Lebedev", "Novak"]
CITIES = ["Москва", "Санкт-Петербург", "Казань", "Новосибирск", "Екатеринбург", "Тула", "Омск"]
RATINGS = ["Горячий", "Тёплый", "Холодный", "hot", "warm", "cold"]
SOURCES = ["Форма на сайте", "Входящий звонок", "Выставка", "website", "referral", "Реклама"]
STATUSES = ["Новый", "В работе", "new", "in_progress"]


def write_csv(path: Path, rows: int, seed: int = 10) -> None:
    """`rows` leads as Russian Excel would save them: UTF-8 with a BOM, semicolons."""
    import csv

    rng = random.Random(seed)
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out, delimiter=";")
        writer.writerow(HEADER)
        for n in range(rows):
            writer.writerow([
                f"{rng.choice(FIRST)} {rng.choice(LAST)} {n}", f"ООО «Ромашка {n % 5000}»", rng.choice(CITIES),
                f"+7 9{rng.randrange(10, 99)} {rng.randrange(100, 999)}-{rng.randrange(10, 99)}-{n % 100:02d}",
                f"lead{n}@example.ru", f"{rng.randrange(0, 5_000_000):,}".replace(",", " "), rng.choice(RATINGS),
                rng.choice(SOURCES), rng.choice(STATUSES),
                "Нужны лицензии и внедрение" if n % 3 else "Просим счёт на поддержку, 20 рабочих мест",
            ])


def read_only(megabytes: int) -> None:
    """Generate a CSV of `megabytes` MB and read every row of it with the import's reader (matching included), as
    an import's first pass does: the peak of Python memory (tracemalloc) against the file's size."""
    import tracemalloc

    from kartoteka.imports.matching import match_columns

    folder = Path(tempfile.mkdtemp(prefix="kartoteka-read-bench-"))
    path = folder / "big.csv"
    try:
        line = ("Иван Петров;ООО «Ромашка»;Москва;+7 912 345-67-89;lead@example.ru;1 500 000;Горячий;Выставка;Новый;"
                + "Нужны лицензии и внедрение. " * 8 + "\n")
        rows = megabytes * 1_000_000 // len(line.encode())
        with path.open("w", encoding="utf-8") as out:
            out.write(";".join(HEADER) + "\n")
            for _ in range(rows // 1000):
                out.write(line * 1000)
        size = path.stat().st_size
        metadata = load_metadata(ROOT / "config", ParseContext())
        from kartoteka.imports.reader import open_table

        tracemalloc.start()
        started = time.perf_counter()
        count = 0
        with open_table(path) as table:
            match_columns(metadata.entities["lead"], table.header, SYSTEM)
            for _number, _cells in table.rows:
                count += 1
        took = time.perf_counter() - started
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"read {count:,} rows of a {size / 1e6:.0f} MB CSV in {took:.1f} s ({count / took:,.0f} rows/s); peak "
              f"Python memory {peak / 1e6:.2f} MB ({peak / size:.3%} of the file)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _copy(engine: sa.Engine, path: Path) -> float:
    columns = ", ".join(f"c{i} text" for i in range(len(HEADER)))
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE lead_copy ({columns})")
    raw = engine.raw_connection()
    try:
        started = time.perf_counter()
        with raw.cursor() as cursor, path.open("rb") as data:  # type: ignore[attr-defined]
            data.read(3)  # the BOM
            with cursor.copy("COPY lead_copy FROM STDIN (FORMAT csv, HEADER true, DELIMITER ';')") as copy:
                while chunk := data.read(1024 * 1024):
                    copy.write(chunk)
        raw.commit()
        took = time.perf_counter() - started
    finally:
        raw.close()
    return took


def _service(engine: sa.Engine, automation: bool) -> RecordService:
    metadata = load_metadata(ROOT / "config", ParseContext())
    sync_indexes(engine, metadata)
    service = RecordService(metadata, engine, Clock(lambda: datetime.now(UTC)), ParseContext())
    if automation:
        from kartoteka.rules.engine import RuleEngine

        RuleEngine(metadata, service.clock, engine).attach(service)
    return service


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database-url", default=DEFAULT_PG_URL)
    parser.add_argument("--automation", action="store_true", help="attach the rules engine (shipped lead rules)")
    parser.add_argument("--all-or-nothing", action="store_true", help="the default mode: a dry run of the whole "
                        "file first, then the import")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="profile an import of N rows")
    parser.add_argument("--keep", action="store_true", help="keep the schema and the file")
    parser.add_argument("--read-mb", type=int, default=0, metavar="MB", help="only read a generated CSV of MB "
                        "megabytes with the import's reader and report its peak memory (no database)")
    args = parser.parse_args(argv)
    if args.read_mb:
        read_only(args.read_mb)
        return 0

    folder = Path(tempfile.mkdtemp(prefix="kartoteka-import-bench-"))
    path = folder / "leads.csv"
    write_csv(path, args.rows)
    size = path.stat().st_size
    schema = f"kt_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(args.database_url)
    with admin.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    engine = create_engine(args.database_url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        upgrade(engine)
        service = _service(engine, args.automation)
        print(environment([server_version(engine), f"openpyxl/rapidfuzz from {sys.prefix}"]))
        print(f"file: {args.rows:,} leads, {size / 1e6:.1f} MB ({path})")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        options = ImportOptions(skip_invalid=not args.all_or_nothing, automation=args.automation)
        started = time.perf_counter()
        outcome = run_import(service, "lead", path, path.name, SYSTEM, options)
        imported = time.perf_counter() - started
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        counts = outcome.counts
        if counts.created != args.rows:
            print(f"!! {counts.created} created of {args.rows}; first errors: "
                  f"{[e.as_json() for e in outcome.errors[:3]]}")
        copy_seconds = _copy(engine, path)
        with engine.connect() as conn:
            copied = conn.exec_driver_sql("SELECT count(*) FROM lead_copy").scalar_one()
        service_rate, copy_rate = args.rows / imported, copied / copy_seconds
        mode = "all or nothing (dry run + import)" if args.all_or_nothing else "skip-invalid (one pass)"
        print(f"import through the record service, {mode}, automation {'on' if args.automation else 'off'}: "
              f"{imported:.1f} s, {service_rate:,.0f} rows/s ({counts.created:,} created, {counts.invalid} invalid)")
        print(f"COPY of the same file into text columns: {copy_seconds:.2f} s, {copy_rate:,.0f} rows/s")
        print(f"import / COPY: {service_rate / copy_rate:.1%} of COPY's rows/s (target >= 25 %)")
        print(f"peak resident memory: {rss_after / 1024:.0f} MB after the import ({rss_before / 1024:.0f} MB before "
              f"it); the file is {size / 1e6:.1f} MB")
        if args.profile:
            small = folder / "profile.csv"
            write_csv(small, args.profile, seed=11)
            with engine.begin() as conn:
                conn.exec_driver_sql("DELETE FROM journal")
                conn.exec_driver_sql("DELETE FROM records")
            profiler = cProfile.Profile()
            profiler.enable()
            run_import(service, "lead", small, small.name, SYSTEM, options)
            profiler.disable()
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("cumulative").print_stats(28)
            print(f"--- where an import of {args.profile:,} rows spends its time (cumulative) ---")
            print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:6000])
    finally:
        engine.dispose()
        if not args.keep:
            with admin.begin() as conn:
                conn.execute(sa.schema.DropSchema(schema, cascade=True))
            shutil.rmtree(folder, ignore_errors=True)
        admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
