"""Duplicate search over 100,000 contacts (issue 10 §7: the groups of the whole card in under 5 s).

    .venv/bin/python -m bench.bench_duplicates [--n 100000] [--database sqlite|postgresql|both] [--lookups 300]

For each database: N contacts of the shipped contact card (config/), of which about 4 % repeat an earlier one in a
known way (the same phone written otherwise, the same e-mail in other case, the same person at the same company
with ё for е, a typo or the names swapped). The contacts are written in bulk, as the record service writes them:
`records.data` is the JSON the service stores, which the bench checks first on a sample created through
`RecordService.create` (same data, same title), then `kartoteka init`'s index sync builds every index (the key
columns and the duplicates rules' `kdx_` ones) over the filled table, as it would on an existing database.

Measured, each after one untimed warm-up run:
- `groups`: the groups of likely duplicates over the whole card, as an administrator (every record) and as a sales
  rep (department scope), best of 3; with the recall of the repeats made on purpose (a pair counts as found when both
  records fall in one group);
- `candidates`: what a form's save asks before saving: `--lookups` saves of new contacts, half repeating a stored
  phone or e-mail, half a close name at a stored contact's company; median and 95th percentile.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from kartoteka.metadata.expressions import Clock
from kartoteka.metadata.fieldtypes import ParseContext
from kartoteka.metadata.loader import load_metadata
from kartoteka.records.duplicates import candidates, groups
from kartoteka.records.model import SYSTEM
from kartoteka.records.service import RecordService
from kartoteka.storage.database import create_engine, upgrade
from kartoteka.storage.indexes import sync_indexes
from kartoteka.storage.tables import records
from kartoteka.users import create_user, get_user

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
BATCH = 5_000
TARGET_S = 5.0

FIRST = ["Александр", "Алексей", "Анна", "Андрей", "Артём", "Валерия", "Виктор", "Дарья", "Дмитрий", "Екатерина",
         "Елена", "Иван", "Ирина", "Кирилл", "Ксения", "Мария", "Михаил", "Наталья", "Никита", "Ольга", "Павел",
         "Пётр", "Светлана", "Сергей", "Татьяна", "Фёдор", "Юлия", "Яна"]
LAST = ["Иванов", "Смирнов", "Кузнецов", "Попов", "Васильев", "Петров", "Соколов", "Михайлов", "Новиков", "Фёдоров",
        "Морозов", "Волков", "Алексеев", "Лебедев", "Семёнов", "Егоров", "Павлов", "Козлов", "Степанов", "Николаев",
        "Орлов", "Андреев", "Макаров", "Никитин", "Захаров", "Зайцев", "Соловьёв", "Борисов", "Яковлев", "Григорьев",
        "Романов", "Воробьёв", "Сергеев", "Кузьмин", "Фролов", "Александров", "Дмитриев", "Королёв", "Гусев", "Киселёв"]
FEMININE = ("Анна", "Валерия", "Дарья", "Екатерина", "Елена", "Ирина", "Ксения", "Мария", "Наталья", "Ольга",
            "Светлана", "Татьяна", "Юлия", "Яна")
POSITIONS = ["Директор", "Бухгалтер", "Менеджер", "Инженер", "Юрист", "Закупщик"]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _last(first: str, rng: random.Random) -> str:
    last = rng.choice(LAST)
    return last + "а" if first in FEMININE else last


def _phone(number: int) -> str:
    return f"+7916{number:07d}"


def _typed_phone(stored: str) -> str:
    """The stored E.164 number as someone types it: 8 916 123-45-67."""
    digits = stored[2:]
    return f"8 {digits[:3]} {digits[3:6]}-{digits[6:8]}-{digits[8:]}"


def _variant(first: str, last: str, rng: random.Random) -> tuple[str, str]:
    """The same person written otherwise: ё as е, a typo in the last name, or the names swapped."""
    kind = rng.randrange(3)
    if kind == 0 and ("ё" in first + last):
        return first.replace("ё", "е"), last.replace("ё", "е")
    if kind == 1 and len(last) > 5:
        at = rng.randrange(2, len(last) - 1)
        return first, last[:at] + last[at + 1:]
    return last, first


def _earlier(contacts: Sequence[dict[str, Any]], before: int, key: str, rng: random.Random) -> int:
    """An earlier contact holding `key` (the first hundred all do, with a company four times in five)."""
    while True:
        j = rng.randrange(before)
        if key in contacts[j]:
            return j


def make_contacts(n: int, companies: int, seed: int) -> tuple[list[dict[str, Any]], list[tuple[int, int]]]:
    """N contacts' input values, and the pairs (by position) made to repeat one another."""
    rng = random.Random(seed)
    contacts: list[dict[str, Any]] = []
    pairs: list[tuple[int, int]] = []
    for i in range(n):
        roll = rng.random()
        if i > 100 and roll < 0.015:  # the same phone, typed otherwise
            j = _earlier(contacts, i, "phones", rng)
            first = rng.choice(FIRST)
            stored = "+7" + "".join(c for c in contacts[j]["phones"][0] if c.isdigit())[1:]
            contacts.append({"first_name": first, "last_name": _last(first, rng), "phones": [_typed_phone(stored)]})
            pairs.append((j, i))
            continue
        if i > 100 and roll < 0.025:  # the same e-mail in other case
            j = _earlier(contacts, i, "emails", rng)
            first = rng.choice(FIRST)
            contacts.append({"first_name": first, "last_name": _last(first, rng),
                             "emails": [contacts[j]["emails"][0].upper()]})
            pairs.append((j, i))
            continue
        if i > 100 and roll < 0.04:  # the same person at the same company, written otherwise
            j = _earlier(contacts, i, "company", rng)
            first, last = _variant(contacts[j]["first_name"], contacts[j]["last_name"], rng)
            contacts.append({"first_name": first, "last_name": last, "company": contacts[j]["company"],
                             "emails": [f"other{i}@example.org"]})
            pairs.append((j, i))
            continue
        first = rng.choice(FIRST)
        values: dict[str, Any] = {"first_name": first, "last_name": _last(first, rng),
                                  "phones": [_typed_phone(_phone(i))], "emails": [f"c{i}@example.com"],
                                  "position": rng.choice(POSITIONS), "city": rng.choice(["Москва", "Казань", "Омск"])}
        if rng.random() < 0.8:
            values["company"] = rng.randrange(1, companies + 1)  # ids of the companies written first
        contacts.append(values)
    return contacts, pairs


def stored_row(service: RecordService, values: dict[str, Any], owner: int | None) -> dict[str, Any]:
    """The row the record service writes for a contact of these input values (checked against it in `check`)."""
    entity = service.entity("contact")
    data: dict[str, Any] = {"last_name": values["last_name"], "first_name": values["first_name"]}
    full = " ".join(p for p in (values["first_name"], values["last_name"]) if p)
    data["full_name"] = full
    if "company" in values:
        data["company"] = values["company"]
    for key in ("position", "city"):
        if key in values:
            data[key] = values[key]
    if "phones" in values:
        data["phones"] = ["+7" + "".join(c for c in p if c.isdigit())[1:] for p in values["phones"]]
    if "emails" in values:
        data["emails"] = [e.lower() for e in values["emails"]]
    data.update({"segment": "potential", "funnel_stage": "lead", "marketing_opt_in": False})
    ordered = {name: data[name] for name in entity.fields if name in data}
    return {"entity": "contact", "data": ordered, "title": f"{values['first_name']} {values['last_name']}",
            "owner": owner, "version": 1, "created_at": NOW, "updated_at": NOW, "created_by": None,
            "updated_by": None}


def check(service: RecordService, engine: sa.Engine, contacts: Sequence[dict[str, Any]]) -> None:
    """The bulk rows equal what RecordService.create stores for the same input (a sample of each kind)."""
    for values in contacts:
        made = service.create("contact", values, SYSTEM)
        with engine.connect() as conn:
            row = conn.execute(sa.select(records.c.data, records.c.title).where(records.c.id == made.id)).one()
        expected = stored_row(service, values, None)
        if dict(row.data) != expected["data"] or row.title != expected["title"]:
            raise SystemExit(f"the bench's rows differ from the service's:\n{dict(row.data)}\n{expected['data']}")
    with engine.begin() as conn:
        conn.execute(sa.delete(records).where(records.c.entity == "contact"))


@contextmanager
def database(kind: str, pg_url: str) -> Iterator[sa.Engine]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            engine = create_engine(f"sqlite:///{Path(folder) / 'bench.db'}")
            try:
                yield engine
            finally:
                engine.dispose()
        return
    schema = f"kt_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in pg_url else "?"
    engine = create_engine(f"{pg_url}{separator}options=-csearch_path%3D{schema}")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def best_of(runs: int, work: Any) -> tuple[float, Any]:
    work()  # warm-up: caches, the operating system's pages
    best, result = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
    return best, result


def bench(kind: str, engine: sa.Engine, n: int, lookups: int, seed: int) -> dict[str, Any]:
    upgrade(engine)
    metadata = load_metadata(CONFIG_DIR, ParseContext())
    service = RecordService(metadata, engine, Clock(lambda: NOW), ParseContext())
    companies = max(1, n // 5)
    contacts, pairs = make_contacts(n, companies, seed)
    sync_indexes(engine, metadata)
    rep_roles = ["sales"]
    create_user(engine, "rep", rep_roles, NOW, department="sales")
    create_user(engine, "rep2", rep_roles, NOW, department="sales")
    create_user(engine, "other", ["support"], NOW, department="support")
    owners = [get_user(engine, username=u).id for u in ("rep", "rep2", "other")]
    say(f"{kind}: writing {companies:,} companies and {n:,} contacts")
    start = time.perf_counter()
    with engine.begin() as conn:
        company_rows = [{"entity": "company", "data": {"name": f"Компания {i}", "country": "kz",
                                                       "company_type": "prospect"},
                         "title": f"Компания {i}", "owner": None, "version": 1, "created_at": NOW,
                         "updated_at": NOW} for i in range(1, companies + 1)]
        for at in range(0, len(company_rows), BATCH):
            conn.execute(sa.insert(records), company_rows[at:at + BATCH])
    check(service, engine, [contacts[i] for i in range(0, min(n, 400), 7)] + [contacts[j] for _, j in pairs[:30]])
    with engine.begin() as conn:
        rows = [stored_row(service, values, owners[i % 3]) for i, values in enumerate(contacts)]
        for at in range(0, len(rows), BATCH):
            conn.execute(sa.insert(records), rows[at:at + BATCH])
    with engine.connect() as conn:
        first_id = conn.execute(sa.select(sa.func.min(records.c.id)).where(records.c.entity == "contact")).scalar()
    # The indexes are built over the filled table (and the key columns filled), as `kartoteka init` does.
    with engine.begin() as conn:
        for name in [r[0] for r in conn.execute(sa.text(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'records' AND indexname LIKE 'k_x\\_%' "
                "AND schemaname = current_schema()" if kind == "postgresql" else
                "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'k_x\\_%' ESCAPE '\\'"))]:
            conn.execute(sa.text(f'DROP INDEX "{name}"'))
    created, _ = sync_indexes(engine, metadata)
    if kind == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE records"))
    service.refresh_key_columns()
    write_s = time.perf_counter() - start
    say(f"{kind}: written and indexed in {write_s:.1f} s ({len(created)} indexes)")

    admin_s, found = best_of(3, lambda: groups(service, "contact", SYSTEM, limit=None))
    member_of = {m.id: g for g, group in enumerate(found) for m in group.members}
    recalled = sum(1 for a, b in pairs
                   if member_of.get(first_id + a) is not None and member_of.get(first_id + a) ==
                   member_of.get(first_id + b))
    rep = get_user(engine, username="rep")
    rep_s, rep_found = best_of(3, lambda: groups(service, "contact", rep, limit=None))
    say(f"{kind}: groups {admin_s:.2f} s (admin), {rep_s:.2f} s (rep)")

    rng = random.Random(seed + 1)
    stored = [(first_id + i, c) for i, c in enumerate(contacts)]
    times = []
    hits = 0
    for k in range(lookups + 20):
        record_id, original = rng.choice(stored)
        if k % 2 == 0 and original.get("phones"):
            values = {"first_name": "Новый", "last_name": "Контакт", "phones": [original["phones"][0]]}
        elif k % 2 == 0:
            values = {"first_name": "Новый", "last_name": "Контакт", "emails": [original["emails"][0]]}
        else:
            while "company" not in original:
                record_id, original = rng.choice(stored)
            first, last = _variant(original["first_name"], original["last_name"], rng)
            values = {"first_name": first, "last_name": last, "company": original["company"],
                      "emails": [f"new{k}@example.net"]}
        start = time.perf_counter()
        found_now = candidates(service, "contact", values, SYSTEM)
        elapsed = time.perf_counter() - start
        if k >= 20:  # the first ones warm up
            times.append(elapsed)
            hits += any(c.id == record_id for c in found_now)
    times.sort()
    return {"database": kind, "n": n, "companies": companies, "write_s": write_s, "groups_s": admin_s,
            "groups": len(found), "in_groups": sum(len(g.members) for g in found), "pairs": len(pairs),
            "recalled": recalled, "rep_s": rep_s, "rep_groups": len(rep_found),
            "lookup_median_ms": 1000 * statistics.median(times),
            "lookup_p95_ms": 1000 * times[int(0.95 * (len(times) - 1))], "lookups": len(times), "hits": hits}


def report(results: Sequence[dict[str, Any]]) -> str:
    lines = [f"Duplicate search, {platform.python_implementation()} {platform.python_version()}, "
             f"{os.cpu_count()} CPUs", "",
             "| database | contacts | groups of the card (admin) | as a rep (department) | groups / records in them "
             "| repeats made / found | candidates of a save: median / p95 (found) |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        verdict = "under" if r["groups_s"] < TARGET_S else "OVER"
        lines.append(f"| {r['database']} | {r['n']:,} | {r['groups_s']:.2f} s ({verdict} the {TARGET_S:.0f} s target) "
                     f"| {r['rep_s']:.2f} s ({r['rep_groups']:,} groups) | {r['groups']:,} / {r['in_groups']:,} "
                     f"| {r['pairs']:,} / {r['recalled']:,} | {r['lookup_median_ms']:.1f} ms / "
                     f"{r['lookup_p95_ms']:.1f} ms ({r['hits']} of {r['lookups']}) |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg-url", default=os.environ.get("KARTOTEKA_BENCH_DATABASE_URL", DEFAULT_PG_URL))
    parser.add_argument("--lookups", type=int, default=300)
    parser.add_argument("--seed", type=int, default=10)
    args = parser.parse_args(argv)
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    results = []
    for kind in kinds:
        with database(kind, args.pg_url) as engine:
            results.append(bench(kind, engine, args.n, args.lookups, args.seed))
    print(report(results))
    return 0 if all(r["groups_s"] < TARGET_S for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
