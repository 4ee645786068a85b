"""Reads on PostgreSQL run in autocommit (no BEGIN/ROLLBACK round trips); writes stay in transactions."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from kartoteka.storage.reading import reader
from kartoteka.storage.tables import saved_views


def test_sqlite_reads_on_the_engine_itself(engine):
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's driver begins transactions only for writes")
    assert reader(engine) is engine


def test_postgresql_reads_in_autocommit_and_the_pool_stays_transactional(engine, make_user):
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only")
    assert reader(engine) is reader(engine)  # made once per engine
    user, _ = make_user("anna", ["sales"])
    for _ in range(3):  # the pool hands the same connections to readers and writers alike
        with reader(engine).connect() as conn:
            assert conn.connection.dbapi_connection.autocommit is True
            # No transaction is open between statements: each sees what was committed before it.
            assert conn.execute(sa.text("SELECT count(*) FROM saved_views")).scalar() == 0
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        with pytest.raises(RuntimeError), engine.begin() as conn:
            assert conn.connection.dbapi_connection.autocommit is False
            conn.execute(sa.insert(saved_views).values(user_id=user.id, entity="deal", name="Half-written",
                                                       query="", shared=False, created_at=sa.func.now()))
            raise RuntimeError("the write fails half-way")
        with engine.connect() as conn:  # rolled back: the write was a transaction, not autocommitted
            assert conn.execute(sa.select(sa.func.count()).select_from(saved_views)).scalar() == 0
