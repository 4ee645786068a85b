"""Reads share one connection per request and run in autocommit on PostgreSQL; writes stay in transactions."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from kartoteka.records.model import SYSTEM
from kartoteka.storage.database import read_engine
from kartoteka.storage.reading import read_scope, reader
from kartoteka.storage.tables import saved_views
from tests.test_web import sign_in


def test_reads_have_a_pool_of_their_own(engine):
    if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
        pytest.skip("an in-memory database exists once per connection")
    assert read_engine(engine) is not engine and read_engine(engine).pool is not engine.pool


def test_reads_within_a_scope_share_one_connection_and_give_it_back(engine):
    assert reader(engine) is reader(engine)  # made once per engine
    with reader(engine).connect() as first, reader(engine).connect() as second:
        assert first is not second  # no scope: a connection of their own each
    with read_scope(engine):
        with reader(engine).connect() as first:
            assert first.execute(sa.text("SELECT 1")).scalar() == 1
        with reader(engine).connect() as second:
            assert second is first and not second.closed  # left open for the next read
    assert first.closed  # the scope's end gave it back


def test_a_failed_read_leaves_the_scope_usable(engine):
    with read_scope(engine):
        with pytest.raises(sa.exc.DBAPIError), reader(engine).connect() as conn:
            conn.execute(sa.text("SELECT * FROM no_such_table"))
        with reader(engine).connect() as conn:
            assert conn.execute(sa.text("SELECT 2")).scalar() == 2


def test_postgresql_reads_in_autocommit_and_the_pool_stays_transactional(engine, make_user):
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only (SQLite's driver begins transactions only for writes)")
    user, _ = make_user("anna", ["sales"])
    for _ in range(3):  # the pool hands the same connections to readers and writers alike
        with reader(engine).connect() as conn:
            assert conn.connection.dbapi_connection.autocommit is True
            assert conn.execute(sa.text("SELECT count(*) FROM saved_views")).scalar() == 0
        with pytest.raises(RuntimeError), engine.begin() as conn:
            assert conn.connection.dbapi_connection.autocommit is False
            conn.execute(sa.insert(saved_views).values(user_id=user.id, entity="deal", name="Half-written",
                                                       query="", shared=False, created_at=sa.func.now()))
            raise RuntimeError("the write fails half-way")
        with engine.connect() as conn:  # rolled back: the write was a transaction, not autocommitted
            assert conn.execute(sa.select(sa.func.count()).select_from(saved_views)).scalar() == 0


def test_a_page_reads_on_one_connection(client, service, make_user):
    rep, _ = make_user("rep", ["sales"], "sales")
    company = service.create("company", {"name": "Northwind Trading Ltd", "country": "gb"}, SYSTEM)
    deal = service.create("deal", {"name": "Alpha", "company": company.id, "stage": "new"}, rep)
    sign_in(client, rep)
    engine = client.application.extensions["kartoteka"].engine
    checkouts: list[object] = []

    def checked_out(*args: object) -> None:
        checkouts.append(args)

    pools = {engine.pool, read_engine(engine).pool}  # writes' pool and reads' pool
    for pool in pools:
        sa.event.listen(pool, "checkout", checked_out)
    try:
        for url in ("/cards/deal/", f"/cards/deal/{deal.id}/edit", f"/cards/deal/{deal.id}", "/cards/deal/kanban"):
            checkouts.clear()
            response = client.get(url)
            assert response.status_code == 200, url
            # The session's user, the record, pickers, users, views: one connection (a count may take another).
            assert len(checkouts) <= 2, (url, len(checkouts))
    finally:
        for pool in pools:
            sa.event.remove(pool, "checkout", checked_out)
