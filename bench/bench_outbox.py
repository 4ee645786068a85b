"""Outbox deliveries per second: signed webhooks from the outbox to a receiver on 127.0.0.1, by 1 and 2 workers.

The receiver runs in a process of its own (a ThreadingHTTPServer answering 204), so that it does not share the
workers' interpreter. Beside the outbox's figures, the same number of POSTs of the same signed body straight from one
process with http.client (no database) gives the floor: what the HTTP round trips alone cost here. Each run checks
that every delivery arrived once and is marked done; a run that did not stops the benchmark without figures.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from kartoteka.config import OutboxSettings, Settings
from kartoteka.metadata.expressions import Clock
from kartoteka.rules.delivery import Deliverer, sign, signing_key, webhook_body
from kartoteka.rules.outbox import enqueue
from kartoteka.rules.worker import OutboxJob, run_worker
from kartoteka.storage.database import create_engine, upgrade
from kartoteka.storage.tables import outbox

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PAYLOAD = {"type": "deal.won", "timestamp": "2026-03-02T09:30:00+00:00", "secret_env": "BENCH_WEBHOOK_SECRET",
           "data": {"id": 1234, "name": "Поставка оборудования", "amount": "1500000.00", "stage": "won",
                    "owner": {"id": 7, "name": "Anna Petrova"}, "company": {"id": 42, "name": "Northwind Trading"}}}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the receiver ---------------------------------------------------------------------------------


def _receive(port: Any, count: Synchronized, ready: Any) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with count.get_lock():
                count.value += 1
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.request_queue_size = 128
    port.value = server.server_address[1]
    ready.set()
    server.serve_forever()


@contextmanager
def receiver() -> Iterator[tuple[int, Synchronized]]:
    """A receiver process on 127.0.0.1: its port and the count of POSTs it got."""
    context = multiprocessing.get_context("spawn")
    port, count, ready = context.Value("i", 0), context.Value("i", 0), context.Event()
    process = context.Process(target=_receive, args=(port, count, ready), daemon=True)
    process.start()
    if not ready.wait(30):
        raise RuntimeError("the receiver did not start")
    try:
        yield port.value, count  # type: ignore[misc]
    finally:
        process.terminate()
        process.join(10)


# --- databases ------------------------------------------------------------------------------------


@contextmanager
def database(kind: str, pg_url: str) -> Iterator[str]:
    """The URL of a fresh migrated database (a temporary SQLite file, or a new PostgreSQL schema), removed after."""
    if kind == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="kartoteka-bench-outbox-"))
        url = f"sqlite:///{folder / 'bench.db'}"
        _migrate(url)
        try:
            yield url
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    schema = f"kt_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    url = f"{pg_url}{'&' if '?' in pg_url else '?'}options=-csearch_path%3D{schema}"
    _migrate(url)
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(sa.schema.DropSchema(schema, cascade=True))
        admin.dispose()


def _migrate(url: str) -> None:
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()


# --- the runs ---------------------------------------------------------------------------------------


def _settings(port: int, batch: int) -> OutboxSettings:
    return OutboxSettings(webhook_hosts=(f"127.0.0.1:{port}",), batch=batch)


def _work(url: str, port: int, batch: int, done: Synchronized, ready: Any, start: Any) -> None:
    """One worker (a process of its own): ready, then deliver until nothing is due."""
    engine = create_engine(url)
    settings = _settings(port, batch)
    job = OutboxJob(settings, deliverer=Deliverer(settings, environ={"BENCH_WEBHOOK_SECRET": SECRET}))
    with engine.connect():
        pass  # connected before the clock starts
    ready.release()
    start.wait()
    total = run_worker(engine, Settings("", Path(), "", Path()), Clock(lambda: datetime.now(UTC)), once=True,
                       jobs=[job])
    with done.get_lock():
        done.value += total
    engine.dispose()


def _enqueue(url: str, port: int, n: int) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(outbox.delete())
    with engine.begin() as conn:
        now = datetime.now(UTC)
        for _ in range(n):
            enqueue(conn, kind="webhook", destination=f"http://127.0.0.1:{port}/hook", payload=PAYLOAD, now=now)
    engine.dispose()


def deliver(url: str, port: int, count: Synchronized, n: int, workers: int, batch: int) -> float:
    """Deliveries per second of `workers` processes over n deliveries (timed from when all are started and connected);
    checked: each arrived once and is marked done."""
    _enqueue(url, port, n)
    context = multiprocessing.get_context("spawn")
    done, ready, start = context.Value("i", 0), context.Semaphore(0), context.Event()
    with count.get_lock():
        count.value = 0
    processes = [context.Process(target=_work, args=(url, port, batch, done, ready, start)) for _ in range(workers)]
    for process in processes:
        process.start()
    for _ in processes:
        if not ready.acquire(timeout=60):
            raise SystemExit("a worker did not start")
    started = time.perf_counter()
    start.set()
    for process in processes:
        process.join()
    seconds = time.perf_counter() - started
    engine = create_engine(url)
    with engine.connect() as conn:
        states = dict(conn.execute(sa.select(outbox.c.state, sa.func.count()).group_by(outbox.c.state)).all())
    engine.dispose()
    if states != {"done": n} or count.value != n or done.value != n:
        raise SystemExit(f"cross-check failed: states {states}, received {count.value}, "
                         f"workers did {done.value} of {n}")
    return n / seconds


def floor(port: int, count: Synchronized, n: int) -> float:
    """POSTs per second of the same signed body from one process, a new connection each (as the worker makes)."""
    body, key = webhook_body(PAYLOAD), signing_key(SECRET)
    with count.get_lock():
        count.value = 0
    started = time.perf_counter()
    for i in range(n):
        stamp = int(time.time())
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("POST", "/hook", body=body, headers={
            "Content-Type": "application/json", "webhook-id": f"msg_{i}", "webhook-timestamp": str(stamp),
            "webhook-signature": sign(key, f"msg_{i}", stamp, body)})
        connection.getresponse().read()
        connection.close()
    seconds = time.perf_counter() - started
    if count.value != n:
        raise SystemExit(f"cross-check failed: the receiver got {count.value} of {n}")
    return n / seconds


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="deliveries per run (default 2000)")
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--pg-url", default=os.environ.get("KARTOTEKA_BENCH_DATABASE_URL", DEFAULT_PG_URL))
    parser.add_argument("--batch", type=int, default=OutboxSettings().batch, help="deliveries a worker claims at once")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each measurement; the median is shown")
    args = parser.parse_args(argv)
    kinds = ("sqlite", "postgresql") if args.database == "both" else (args.database,)
    rows: list[tuple[str, float]] = []
    with receiver() as (port, count):
        say(f"receiver on 127.0.0.1:{port}; {args.n} deliveries per run, {args.rounds} rounds")
        rows.append(("http.client alone, 1 process (no database)", _median(floor(port, count, args.n)
                                                                           for _ in range(args.rounds))))
        for kind in kinds:
            with database(kind, args.pg_url) as url:
                for workers in (1, 2):
                    rate = _median(deliver(url, port, count, args.n, workers, args.batch) for _ in range(args.rounds))
                    rows.append((f"outbox on {kind}, {workers} worker{'s' if workers > 1 else ''}", rate))
                    say(f"{rows[-1][0]}: {rate:,.0f}/s")
    print(f"| run ({args.n} webhooks, batch {args.batch}, median of {args.rounds}) | deliveries/s |")
    print("|---|---:|")
    for name, rate in rows:
        print(f"| {name} | {rate:,.0f} |")
    return 0


def _median(values: Iterator[float] | Any) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


if __name__ == "__main__":
    sys.exit(main())
