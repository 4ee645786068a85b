"""`kartoteka worker` as processes and threads: killed with SIGKILL mid-delivery (again and again) it loses nothing and
repeats a delivery under the same webhook-id; stopped with SIGTERM it gives back what it had not started; two
workers deliver each delivery once. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from kartoteka.config import OutboxSettings, Settings
from kartoteka.metadata.expressions import Clock
from kartoteka.rules import outbox as ob
from kartoteka.rules.delivery import Deliverer
from kartoteka.rules.worker import OutboxJob, run_worker
from kartoteka.storage.database import create_engine
from kartoteka.storage.tables import outbox
from tests.conftest import CONFIG_DIR
from tests.outbox_support import Receiver, verify_standard_webhook, wait_for

SECRET = "whsec_" + base64.b64encode(b"worker test key").decode()


def _enqueue(engine, url: str, count: int, now: datetime) -> list[str]:
    with engine.begin() as conn:
        return [ob.enqueue(conn, kind="webhook", destination=url, now=now,
                           payload={"type": "deal.won", "timestamp": now.isoformat(), "data": {"n": n},
                                    "secret_env": "KT_HOOK_SECRET"}) for n in range(count)]


def _worker(database_url: str, tmp_path, receiver: Receiver, *args: str) -> subprocess.Popen:
    """`kartoteka worker` in a process of its own; its log in tmp_path/worker.log."""
    env = {**os.environ, "KARTOTEKA_DATABASE_URL": database_url, "KARTOTEKA_CONFIG_DIR": str(CONFIG_DIR),
           "KARTOTEKA_INSTANCE_DIR": str(tmp_path / "instance"), "KARTOTEKA_WEBHOOK_HOSTS": receiver.host,
           "KT_HOOK_SECRET": SECRET, "KARTOTEKA_OUTBOX_BACKOFF": "1"}
    with (tmp_path / "worker.log").open("a") as log:
        return subprocess.Popen([sys.executable, "-m", "kartoteka.cli", "worker", *args], env=env,  # noqa: S603
                                stdout=subprocess.DEVNULL, stderr=log)


def _log(tmp_path) -> str:
    return (tmp_path / "worker.log").read_text()


def _states(engine) -> Counter:
    with engine.connect() as conn:
        return Counter(conn.execute(sa.select(outbox.c.state)).scalars())


def test_a_worker_killed_mid_delivery_again_and_again_loses_nothing(engine, database_url, tmp_path):
    held, arrived = threading.Event(), threading.Event()
    hold_at: list[int] = []

    def status(item) -> int:
        if len(receiver.received) in hold_at:  # hold this request open: the worker dies while it waits
            arrived.set()
            held.wait(30)
        return 200

    with Receiver(status=status) as receiver:
        now = datetime.now(UTC)
        ids = _enqueue(engine, receiver.url(), 45, now)
        for kill in range(3):
            hold_at.append(len(receiver.received) + 4)  # the fourth request of this worker's life
            arrived.clear()
            held.clear()
            worker = _worker(database_url, tmp_path, receiver)
            try:
                assert arrived.wait(60), _log(tmp_path)
            finally:
                worker.send_signal(signal.SIGKILL)
                worker.wait(30)
                held.set()
            assert worker.returncode == -signal.SIGKILL, kill
        interrupted = {receiver.received[n - 1].headers["webhook-id"] for n in hold_at}
        assert len(interrupted) == 3
        assert _states(engine)["done"] < 45
        # Past the killed workers' leases, one more worker delivers everything that is left.
        later = Clock(lambda: now + timedelta(hours=1))
        settings = OutboxSettings(webhook_hosts=(receiver.host,))
        job = OutboxJob(settings, deliverer=Deliverer(settings, environ={"KT_HOOK_SECRET": SECRET}))
        run_worker(engine, Settings("", CONFIG_DIR, "", tmp_path), later, once=True, jobs=[job])
    assert _states(engine) == Counter({"done": 45})
    received = Counter(receiver.ids())
    assert set(received) == set(ids)  # none lost
    assert {i for i, n in received.items() if n > 1} >= interrupted  # each interrupted one came again...
    by_id: dict[str, set[bytes]] = {}
    for item in receiver.received:  # ...under the same id, with the same body, signed
        assert verify_standard_webhook(SECRET, item.headers, item.body)
        by_id.setdefault(item.headers["webhook-id"], set()).add(item.body)
    assert all(len(bodies) == 1 for bodies in by_id.values())


def test_sigterm_finishes_the_delivery_in_progress_and_gives_back_the_rest(engine, database_url, tmp_path):
    arrived, held = threading.Event(), threading.Event()

    def status(item) -> int:
        if len(receiver.received) == 2:
            arrived.set()
            held.wait(30)
        return 200

    with Receiver(status=status) as receiver:
        ids = _enqueue(engine, receiver.url(), 10, datetime.now(UTC))
        worker = _worker(database_url, tmp_path, receiver)
        try:
            assert arrived.wait(60)
            worker.send_signal(signal.SIGTERM)
            assert wait_for(lambda: "stopping (SIGTERM)" in _log(tmp_path)), _log(tmp_path)
        finally:
            held.set()
            worker.wait(60)
    assert worker.returncode == 0, _log(tmp_path)
    assert "worker stopped: 2 done" in _log(tmp_path)
    with engine.connect() as conn:
        rows = {r.delivery_id: r for r in conn.execute(sa.select(outbox))}
    assert receiver.ids() == ids[:2]
    assert [rows[i].state for i in ids[:2]] == ["done", "done"]  # the held one too: it was finished, not dropped
    assert all((rows[i].state, rows[i].attempts, rows[i].leased_until) == ("pending", 0, None) for i in ids[2:])


def test_two_workers_deliver_each_delivery_once(engine, database_url):
    with Receiver(delay=0.01) as receiver:
        now = datetime.now(UTC)
        ids = _enqueue(engine, receiver.url(), 60, now)
        settings = OutboxSettings(webhook_hosts=(receiver.host,), batch=3)
        done: dict[str, int] = {}
        errors: list[BaseException] = []

        def work(name: str) -> None:
            own = create_engine(database_url)  # its own pool and connections, as another process would have
            try:
                job = OutboxJob(settings, deliverer=Deliverer(settings, environ={"KT_HOOK_SECRET": SECRET}))
                done[name] = run_worker(own, Settings("", CONFIG_DIR, "", CONFIG_DIR), Clock(lambda: now),
                                        once=True, jobs=[job])
            except BaseException as exc:
                errors.append(exc)
            finally:
                own.dispose()

        first = threading.Thread(target=work, args=("a",))
        first.start()
        assert wait_for(lambda: len(receiver.received) >= 1)
        second = threading.Thread(target=work, args=("b",))
        second.start()
        first.join(120)
        second.join(120)
    assert errors == []
    assert done["a"] > 0 and done["b"] > 0 and done["a"] + done["b"] == 60
    assert sorted(receiver.ids()) == sorted(ids)  # each exactly once
    assert _states(engine) == Counter({"done": 60})


def test_the_worker_command_delivers_once_and_exits(engine, runner, tmp_path):
    with Receiver() as receiver:
        [delivery_id] = _enqueue(engine, receiver.url(), 1, datetime.now(UTC))
        result = runner.invoke("worker", "--once", env={"KARTOTEKA_WEBHOOK_HOSTS": receiver.host,
                                                        "KT_HOOK_SECRET": SECRET})
    assert result.exit_code == 0, result.output
    assert receiver.ids() == [delivery_id] and _states(engine) == Counter({"done": 1})


def test_the_worker_command_refuses_settings_it_cannot_use(runner):
    result = runner.invoke("worker", "--once", env={"KARTOTEKA_SMTP_URL": "http://mail"})
    assert result.exit_code == 1 and "KARTOTEKA_SMTP_URL must be smtp://" in result.output
    result = runner.invoke("worker", "--once", env={"KARTOTEKA_WEBHOOK_TIMEOUT": "soon"})
    assert result.exit_code == 1 and "KARTOTEKA_WEBHOOK_TIMEOUT" in result.output


def test_jobs_run_each_pass_until_none_has_anything_due(engine, fixed_clock):
    calls: list[str] = []
    left = {"timers": 2, "schedules": 1}

    def job(name):
        def run(_engine, now) -> int:
            calls.append(name)
            if left[name]:
                left[name] -= 1
                return 1
            return 0
        return run

    total = run_worker(engine, Settings("", CONFIG_DIR, "", CONFIG_DIR), Clock(fixed_clock.now), once=True,
                       jobs=[job("timers"), job("schedules")])
    assert total == 3 and calls == ["timers", "schedules"] * 3


def test_a_stop_ends_the_loop(engine, fixed_clock):
    stop = threading.Event()
    passes: list[datetime] = []

    def job(_engine, now) -> int:
        passes.append(now)
        if len(passes) == 3:
            stop.set()
        return 0

    run_worker(engine, Settings("", CONFIG_DIR, "", CONFIG_DIR), Clock(fixed_clock.now), jobs=[job], idle=0.01,
               stop=stop)
    assert len(passes) == 3


def test_a_failing_job_does_not_stop_the_others(engine, fixed_clock, caplog):
    stop = threading.Event()
    ran: list[str] = []

    def broken(_engine, now) -> int:
        ran.append("broken")
        raise RuntimeError("timers table on fire")

    def outbox_job(_engine, now) -> int:
        ran.append("outbox")
        if ran.count("outbox") == 3:
            stop.set()
        return 0

    settings = Settings("", CONFIG_DIR, "", CONFIG_DIR)
    run_worker(engine, settings, Clock(fixed_clock.now), jobs=[broken, outbox_job], idle=0.001, stop=stop)
    assert ran == ["broken", "outbox"] * 3
    assert "job broken failed: timers table on fire" in caplog.text
    with pytest.raises(RuntimeError):  # --once reports it (exit status 1) instead
        run_worker(engine, settings, Clock(fixed_clock.now), once=True, jobs=[broken, outbox_job])
