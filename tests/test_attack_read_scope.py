"""Attack on 3ec5715/b96279b (storage/reading.py): a request's read scope keeps a pool connection checked out for the
whole request, and the request then takes a *second* connection for its writes (engine.begin()) and for the reads that
do not go through the reader (count_records, service.get: engine.connect(); service.list until the uncommitted
change that moves it to the reader).

Every signed-in request reads the session's user through the scope first (users.session_user), so every save and
every list page now holds one connection while it waits for another: hold-and-wait. When as many requests run at once
as the pool has connections (QueuePool 5 + 10 overflow by default; `kartoteka serve --threads` allows up to 256 per
worker), each holds its scope's connection and waits for a second one that never comes: all of them fail after
pool_timeout (30 s by default) with "QueuePool limit ... reached". Before the scope, a read gave its connection back at
once and the same load only queued.
"""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from kartoteka.metadata.fieldtypes import ParseContext
from kartoteka.records.model import SYSTEM, ListQuery
from kartoteka.records.query import count_records
from kartoteka.records.service import RecordService
from kartoteka.storage.database import create_engine
from kartoteka.storage.indexes import sync_indexes
from kartoteka.storage.reading import read_scope
from kartoteka.users import user_names

POOL = 2  # connections; as many concurrent "requests" as connections


def _requests_at_once(engine: sa.Engine, service: RecordService, work, scoped: bool) -> list[BaseException]:
    """POOL threads, each a request: a read through the reader (the session's user), then `work` (a save, a list)."""
    barrier = threading.Barrier(POOL, timeout=20)
    errors: list[BaseException] = []

    def request() -> None:
        try:
            if scoped:
                with read_scope(engine):
                    user_names(engine, [1])  # load_user: the first read opens the scope's connection
                    barrier.wait()  # every request is past its first read
                    work(service)
            else:
                user_names(engine, [1])
                barrier.wait()
                work(service)
        except BaseException as exc:  # collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=request) for _ in range(POOL)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


def _service(database_url: str, metadata, clock) -> tuple[sa.Engine, RecordService]:
    engine = create_engine(database_url, pool_size=POOL, max_overflow=0, pool_timeout=3)
    sync_indexes(engine, metadata)
    return engine, RecordService(metadata, engine, clock, ParseContext())


def _save(service: RecordService) -> None:
    service.create("company", {"name": "Northwind Trading Ltd", "country": "gb"}, SYSTEM)


def _list(service: RecordService) -> None:
    """A list page of more than one page: the page, then its count (count_records: engine.connect(), a transaction
    of its own for PostgreSQL's SET LOCAL), and a card (service.get)."""
    service.list("company", SYSTEM, ListQuery(limit=10))
    count_records(service, "company", SYSTEM, ListQuery(limit=10), 10_000)


def test_without_the_read_scope_concurrent_requests_only_queue(engine, database_url, metadata, clock):
    """The control: the same load with reads that give their connection back succeeds."""
    own, service = _service(database_url, metadata, clock)
    try:
        assert _requests_at_once(own, service, _save, scoped=False) == []
        assert _requests_at_once(own, service, _list, scoped=False) == []
    finally:
        own.dispose()


@pytest.mark.parametrize("work", [_save, _list], ids=["saves", "list pages"])
def test_concurrent_requests_as_many_as_the_pool_holds_do_not_time_out(work, engine, database_url, metadata, clock):
    own, service = _service(database_url, metadata, clock)
    try:
        errors = _requests_at_once(own, service, work, scoped=True)
        assert errors == [], [f"{type(e).__name__}: {str(e)[:90]}" for e in errors]
    finally:
        own.dispose()


def test_a_single_request_needs_two_connections_at_once(engine, database_url, metadata, clock):
    """The same in one thread: a pool of one connection can no longer serve a request that reads then writes."""
    own = create_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=1)
    sync_indexes(own, metadata)
    service = RecordService(metadata, own, clock, ParseContext())
    try:
        with read_scope(own):
            user_names(own, [1])
            _save(service)  # sqlalchemy.exc.TimeoutError: QueuePool limit of size 1 overflow 0 reached
    finally:
        own.dispose()
