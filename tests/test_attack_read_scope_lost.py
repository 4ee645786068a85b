"""Attack on 3ec5715 (storage/reading.py ReadScope): the engine's pool_pre_ping checks a connection when it is checked
out; before the scope every read was a checkout, so a connection the server had dropped (a restart, a failover,
idle_session_timeout, an administrator's pg_terminate_backend) was found dead and replaced without the page noticing.
The scope checks out once per request and then keeps an idle autocommit connection for the rest of it, across slow
work (a password hash, an upload, rendering): if the server drops it meanwhile, the request's next read fails
(a 500) instead of reconnecting. ReadScope.connection() replaces a connection only after it was invalidated, i.e.
after a read already failed.
"""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from kartoteka.storage.reading import read_scope, reader


def test_a_read_after_the_server_dropped_the_scopes_connection_reconnects(engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only")
    with read_scope(engine):
        with reader(engine).connect() as conn:
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        with engine.begin() as admin:  # the server drops the idle connection (restart, idle_session_timeout, ...)
            assert admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        _gone(engine, pid)
        with reader(engine).connect() as conn:  # OperationalError: the connection is closed
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1


def _gone(engine, pid: int) -> None:
    """Wait until the server has ended the backend: pg_terminate_backend only asks it to (the backend then says
    goodbye and closes its socket on its own time), and the scenario is a connection dropped before the next read."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            running = conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid})
            if not running.scalar():
                return
        time.sleep(0.01)
    raise AssertionError(f"backend {pid} still running")


def test_without_the_scope_the_same_read_reconnects(engine):
    """The control: a read of its own is checked out, pinged, and replaced."""
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only")
    with reader(engine).connect() as conn:
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
    with engine.begin() as admin:
        assert admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    _gone(engine, pid)
    with reader(engine).connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1
