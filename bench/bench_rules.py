"""A save of a card with ten rules vs the same card without rules, side by side on one database.

    .venv/bin/python -m bench.bench_rules [--n 2000] [--rounds 3] [--database sqlite|postgresql|both]

Two cards with the fields of bench/config's deal: `deal` has no rules, `ruled_deal` has ten (RULES below: before- and
after-save rules, a date rule, a webhook, a block, tasks and notifications, as a real card would). The same creates
and updates (bench_records' values) go through the record service with the rules engine attached, interleaved in
blocks; the report gives the median ratio of the per-round times (target of issue 9: <= 1.3x), and how many runs
the rules made. "create" and "update" fire rules (tasks, notifications, the outbox, timers and the run log are
written with the save); "quiet update" changes a field no rule watches: the cost of considering ten rules alone.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from bench.bench_records import (
    CONFIG_DIR,
    DEFAULT_PG_URL,
    database,
    deal_values,
    environment,
    server_version,
    update_values,
)
from kartoteka.metadata.expressions import Clock
from kartoteka.metadata.fieldtypes import ParseContext
from kartoteka.metadata.loader import load_metadata
from kartoteka.records.model import SYSTEM
from kartoteka.records.service import RecordService
from kartoteka.rules.engine import RuleEngine
from kartoteka.storage.database import upgrade
from kartoteka.storage.indexes import sync_indexes
from kartoteka.storage.tables import notifications, outbox, rule_runs, tasks
from kartoteka.users import create_user

BLOCK = 100
RULES: list[dict[str, Any]] = [
    {"name": "Won", "trigger": {"on": "changed", "field": "stage", "to": "won"},
     "actions": [{"set": {"field": "discount", "value": 0}},
                 {"notify": {"role": "finance", "message": "Deal {{ name }} won: {{ total }}"}}]},
    {"name": "Lost", "trigger": {"on": "changed", "field": "stage", "from": ["new", "qualified", "proposal"],
                                 "to": "lost"},
     "actions": [{"create_task": {"title": "Review lost deal {{ name }}", "due_in_days": 5}}]},
    {"name": "Big", "trigger": {"on": ["created", "updated"], "fields": ["price", "quantity"]},
     "condition": "total is not None and total > 5000000",
     "actions": [{"notify": {"role": "boss", "message": "Big deal {{ name }}: {{ total }}"}}]},
    {"name": "Follow up", "trigger": {"on": ["created"]},
     "actions": [{"create_task": {"title": "Call about {{ name }}", "due_in_working_days": 1}}]},
    {"name": "No huge discounts", "trigger": {"on": ["created", "updated"], "fields": ["discount"]},
     "condition": "discount is not None and discount > 50 and not has_role('boss')",
     "actions": [{"block": {"field": "discount", "message": "Discounts over 50 % need the boss"}}]},
    {"name": "Proposal odds", "trigger": {"on": "changed", "field": "stage", "to": "proposal"},
     "condition": "quantity is not None",
     "actions": [{"set": {"field": "quantity", "expr": "max(quantity, 1)"}}]},
    {"name": "Closing soon", "trigger": {"on": "date", "field": "close_date", "before": {"days": 3}},
     "condition": "stage not in ['won', 'lost']",
     "actions": [{"create_task": {"title": "{{ name }} closes soon", "due_in_days": 1}}]},
    {"name": "Tell the ad platform", "trigger": {"on": "changed", "field": "stage", "to": "won"},
     "actions": [{"webhook": {"url": "https://ads.example.com/deals", "event": "deal_won",
                              "fields": ["name", "total"]}}]},
    {"name": "Renamed", "trigger": {"on": ["updated"], "fields": ["name"]}, "condition": "prior('name') != name",
     "actions": [{"notify": {"owner": True, "message": "{{ name }} was renamed"}}]},
    {"name": "Deleted", "trigger": {"on": ["deleted"]},
     "actions": [{"notify": {"role": "boss", "message": "{{ name }} was deleted"}}]},
]


def quiet_values(rng: random.Random) -> dict[str, Any]:
    """An update no rule of RULES fires on (they watch other fields): the cost of considering ten rules."""
    return {"owner_email": f"someone{rng.randint(1, 10**6)}@example.com"}


def make_config(root: Path) -> Path:
    """bench/config's deal, and the same card with RULES as `ruled_deal`."""
    deal = yaml.safe_load((CONFIG_DIR / "entities" / "deal.yaml").read_text())
    deal.pop("rules", None)
    entities = root / "entities"
    entities.mkdir(parents=True)
    (entities / "deal.yaml").write_text(yaml.safe_dump(deal, allow_unicode=True, sort_keys=False))
    ruled = {**deal, "entity": "ruled_deal", "rules": RULES}
    (entities / "ruled_deal.yaml").write_text(yaml.safe_dump(ruled, allow_unicode=True, sort_keys=False))
    (root / "roles.yaml").write_text(yaml.safe_dump({
        "roles": {"admin": {"label": "Admin"}, "finance": {"label": "Finance"}, "boss": {"label": "Boss"}},
        # Finance and the boss read every deal: a notification goes only to whom may read the card.
        "permissions": {"admin": {"*": "all"}, "finance": {"*": {"read": "all"}},
                        "boss": {"*": {"read": "all"}}}}))
    return root


def per_op(fn: Callable[[Any], Any], items: Sequence[Any]) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - start) / len(items)


def bench(kind: str, engine: sa.Engine, config: Path, n: int, rounds: int, seed: int) -> dict[str, list[float]]:
    metadata = load_metadata(config, ParseContext())
    sync_indexes(engine, metadata)
    clock = Clock(lambda: datetime.now(UTC))
    service = RecordService(metadata, engine, clock, ParseContext())
    RuleEngine(metadata, clock, engine).attach(service)
    for name, roles in (("fin", ["finance"]), ("boss", ["boss"])):
        create_user(engine, f"{name}_{seed}", roles, clock.now())
    rng = random.Random(seed)
    ratios: dict[str, list[float]] = {"create": [], "update": [], "quiet update": []}
    ids: dict[str, list[int]] = {"deal": [], "ruled_deal": []}
    for number in range(rounds):
        values = [deal_values(rng, i) for i in range(n)]
        times = {"deal": [0.0, 0], "ruled_deal": [0.0, 0]}
        for start in range(0, n, BLOCK):
            block = values[start:start + BLOCK]
            order = ("deal", "ruled_deal") if (start // BLOCK + number) % 2 == 0 else ("ruled_deal", "deal")
            for entity in order:
                made: list[int] = []
                spent = per_op(lambda v, e=entity, m=made: m.append(service.create(e, v, SYSTEM).id), block)
                ids[entity].extend(made)
                times[entity][0] += spent * len(block)
                times[entity][1] += len(block)
        ratios["create"].append((times["ruled_deal"][0] / times["ruled_deal"][1])
                                / (times["deal"][0] / times["deal"][1]))
        for label, changes in (("update", [update_values(rng) for _ in range(n)]),
                               ("quiet update", [quiet_values(rng) for _ in range(n)])):
            times = {"deal": [0.0, 0], "ruled_deal": [0.0, 0]}
            for start in range(0, n, BLOCK):
                block = list(range(start, min(start + BLOCK, n)))
                order = ("deal", "ruled_deal") if (start // BLOCK + number) % 2 == 0 else ("ruled_deal", "deal")
                for entity in order:
                    targets = ids[entity][-n:]
                    spent = per_op(lambda i, e=entity, t=targets, c=changes: service.update(
                        e, t[i], c[i], SYSTEM, expected_version=None), block)
                    times[entity][0] += spent * len(block)
                    times[entity][1] += len(block)
            ratios[label].append((times["ruled_deal"][0] / times["ruled_deal"][1])
                                 / (times["deal"][0] / times["deal"][1]))
        print(f"  {kind} round {number + 1}: " + ", ".join(f"{k} {v[-1]:.2f}x" for k, v in ratios.items()),
              file=sys.stderr, flush=True)
    with engine.connect() as conn:
        counts = {table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
                  for table in (rule_runs, tasks, notifications, outbox)}
    print(f"  {kind}: the rules made {counts}", file=sys.stderr)
    return ratios


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="creates and updates per card and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    args = parser.parse_args(argv)
    kinds = ("sqlite", "postgresql") if args.database == "both" else (args.database,)
    root = Path(tempfile.mkdtemp(prefix="kartoteka-bench-rules-"))
    try:
        config = make_config(root / "config")
        lines = []
        versions = []
        for kind in kinds:
            with database(kind, args.pg_url, keep=False) as (engine, _where):
                upgrade(engine)
                versions.append(server_version(engine))
                ratios = bench(kind, engine, config, args.n, args.rounds, seed=7)
            lines.append(f"{kind:<11} " + "   ".join(
                f"{label} {statistics.median(values):.2f}x ({', '.join(f'{r:.2f}' for r in values)})"
                for label, values in ratios.items()))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"A save of a card with ten rules / the same card without rules, {args.n} creates and updates per card, "
          f"{args.rounds} rounds, medians (per-round ratios)")
    print(environment(versions))
    print()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
