"""Attack on 3ec5715 (storage/reading.py ReadScope): the engine's pool_pre_ping checks a connection when it is checked
out; before the scope every read was a checkout, so a connection the server had dropped (a restart, a failover,
idle_session_timeout, an administrator's pg_terminate_backend) was found dead and replaced without the page noticing.
The scope checks out once per request and then keeps an idle autocommit connection for the rest of it, across slow
work (a password hash, an upload, rendering): if the server drops it meanwhile, the request's next read fails
(a 500) instead of reconnecting. ReadScope.connection() replaces a connection only after it was invalidated, i.e.
after a read already failed.
"""

from __future__ import annotations

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
        with reader(engine).connect() as conn:  # OperationalError: the connection is closed
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1


def test_without_the_scope_the_same_read_reconnects(engine):
    """The control: a read of its own is checked out, pinged, and replaced."""
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only")
    with reader(engine).connect() as conn:
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()
    with engine.begin() as admin:
        assert admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    with reader(engine).connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1
