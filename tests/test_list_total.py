"""The total of a list: exact up to a cap, "more than" beyond it, exact on request; web and API alike."""

from __future__ import annotations

import re
from html import unescape

import pytest
import sqlalchemy as sa

from kartoteka import create_app
from kartoteka.config import Settings
from kartoteka.records.model import SYSTEM, Filter, ListQuery
from kartoteka.records.query import DEFAULT_COUNT_CAP, Total, count_records
from kartoteka.storage.indexes import sync_indexes
from kartoteka.users import start_session

CAP = 3
CSRF = "test-csrf-token"


@pytest.fixture
def app(engine, database_url, metadata, config_dir, clock, tmp_path):
    """The app with a list count cap of 3, so a handful of records is "many"."""
    sync_indexes(engine, metadata)
    settings = Settings(database_url=database_url, config_dir=config_dir, secret_key="test-secret",
                        instance_dir=tmp_path / "instance", testing=True, list_count_cap=CAP)
    application = create_app(settings, clock)
    yield application
    application.extensions["kartoteka"].engine.dispose()


@pytest.fixture
def deals(service, make_user):
    """5 deals of a rep (3 new, 2 proposal) and 2 of another rep."""
    rep, headers = make_user("rep", ["sales"], "sales")
    other, _ = make_user("other", ["sales"], "sales")
    company = service.create("company", {"name": "Northwind Trading Ltd", "country": "gb"}, SYSTEM)
    for i, stage in enumerate(["new", "new", "new", "proposal", "proposal"]):
        service.create("deal", {"name": f"Deal {i}", "company": company.id, "stage": stage,
                                "amount": 100 + i}, rep)
    for i in range(2):
        service.create("deal", {"name": f"Theirs {i}", "company": company.id}, other)
    return rep, headers


def sign_in(client, user) -> None:
    state = client.application.extensions["kartoteka"]
    with client.session_transaction() as session:
        session.update(sid=start_session(state.engine, user.id, state.clock.now()), csrf=CSRF)


def total_of(client, url: str) -> tuple[str, str | None]:
    """The list's total as shown, and the address of its "Count all" link (None without one)."""
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    shown = re.search(r'<p class="total" id="total">(.*?)</p>', response.get_data(as_text=True), re.S).group(1)
    link = re.search(r'<a href="([^"]+)">', shown)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", shown)).split()), unescape(link.group(1)) if link else None


def test_a_list_beyond_the_cap_says_more_than_and_counts_all_on_request(client, make_user, deals):
    admin, _ = make_user("boss", ["admin"])
    sign_in(client, admin)
    shown, link = total_of(client, "/cards/deal/?sort=-amount")
    assert shown == "More than 3 records Count all"
    assert link == "?sort=-amount&total=exact"
    assert total_of(client, "/cards/deal/" + link) == ("7 records", None)


def test_a_list_within_the_cap_is_counted_exactly_with_its_filters_and_scope(client, deals):
    rep, _ = deals
    sign_in(client, rep)
    assert total_of(client, "/cards/deal/?stage__in=proposal") == ("2 records", None)
    assert total_of(client, "/cards/deal/?stage__in=new") == ("3 records", None)  # exactly the cap: exact
    assert total_of(client, "/cards/deal/")[0] == "More than 3 records Count all"  # their 5, not the 7
    assert total_of(client, "/cards/deal/?total=exact") == ("5 records", None)


def test_the_exact_count_keeps_the_page_and_is_not_saved_into_a_view(client, deals):
    rep, _ = deals
    sign_in(client, rep)
    page = client.get("/cards/deal/?sort=name&limit=2&total=exact").get_data(as_text=True)
    assert "5 records" in page
    assert 'name="query" value="sort=name&amp;limit=2"' in page  # what "Save this view" keeps
    following = re.search(r'<a href="([^"]+)" rel="next"', page).group(1)
    assert "total=exact" in unescape(following)  # the next page is counted the same way
    assert "<details open" not in client.get("/cards/deal/?total=exact").get_data(as_text=True)  # not a filter


def test_the_total_speaks_russian(client, make_user, deals):
    user, _ = make_user("olga", ["admin"], language="ru")
    sign_in(client, user)
    assert total_of(client, "/cards/deal/")[0] == "Записей: больше 3 Посчитать все"
    assert total_of(client, "/cards/deal/?total=exact")[0] == "Записей: 7"


def test_the_api_total_is_capped_unless_exact_is_asked_for(client, deals, make_user):
    _rep, headers = deals
    _, admin = make_user("boss", ["admin"])

    def body(query: str, who=admin):
        response = client.get(f"/api/v1/records/deal?{query}", headers=who)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    assert (body("total=true")["total"], body("total=true")["total_exact"]) == (CAP, False)
    assert (body("total=exact")["total"], body("total=exact")["total_exact"]) == (7, True)
    assert (body("stage=proposal&total=true")["total"], body("stage=proposal&total=true")["total_exact"]) == (2, True)
    assert (body("total=exact", headers)["total"], body("total=true", headers)["total_exact"]) == (5, False)
    assert "total" not in body("limit=1") and "total_exact" not in body("limit=1")


def test_count_records_stops_after_the_cap_and_reads_no_further(service, engine, deals):
    statements: list[str] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    query = ListQuery(filters=(Filter("stage", "in", ["new", "proposal"]),))
    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        assert count_records(service, "deal", SYSTEM, query, cap=4) == Total(4, exact=False)
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    # One statement reads rows (PostgreSQL's capped count of an indexed filter is preceded by a SET LOCAL that
    # has it use the index, see count_records).
    reading = [s for s in statements if not s.startswith("SET LOCAL ")]
    assert len(reading) == 1 and "LIMIT" in reading[0].upper()
    assert count_records(service, "deal", SYSTEM, query, cap=6) == Total(6, exact=False)
    assert count_records(service, "deal", SYSTEM, query, cap=7) == Total(7, exact=True)
    assert count_records(service, "deal", SYSTEM, query, cap=None) == Total(7, exact=True)
    assert count_records(service, "deal", SYSTEM, query, cap=0) == Total(7, exact=True)
    assert count_records(service, "deal", SYSTEM, ListQuery(search="nothing like it")) == Total(0, exact=True)


def test_the_cap_comes_from_the_environment():
    assert Settings.from_env({"KARTOTEKA_SECRET_KEY": "x"}).list_count_cap == DEFAULT_COUNT_CAP == 10_000
    assert Settings.from_env({"KARTOTEKA_SECRET_KEY": "x", "KARTOTEKA_LIST_COUNT_CAP": "500"}).list_count_cap == 500
    assert Settings.from_env({"KARTOTEKA_SECRET_KEY": "x", "KARTOTEKA_LIST_COUNT_CAP": "0"}).list_count_cap == 0
    with pytest.raises(ValueError, match="KARTOTEKA_LIST_COUNT_CAP must be a whole number"):
        Settings.from_env({"KARTOTEKA_SECRET_KEY": "x", "KARTOTEKA_LIST_COUNT_CAP": "lots"})


def test_a_capped_count_of_an_indexed_filter_uses_its_index_on_postgresql(service, engine, deals):
    """PostgreSQL would rather scan the table until the cap than read the filter's index (it does not price reading
    each row's JSON): the count of an indexed filter turns sequential scans off for its own transaction only."""
    statements: list[str] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        indexed = count_records(service, "deal", SYSTEM, ListQuery(filters=(Filter("stage", "in", ["new"]),)), cap=4)
        searched = len(statements)
        count_records(service, "deal", SYSTEM, ListQuery(search="Deal"), cap=4)
        count_records(service, "deal", SYSTEM, ListQuery(filters=(Filter("stage", "in", ["new"]),)), cap=None)
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    hinted = [s for s in statements if s.startswith("SET LOCAL ")]
    if engine.dialect.name == "postgresql":
        assert hinted == ["SET LOCAL enable_seqscan = off"] and statements.index(hinted[0]) < searched
    else:
        assert hinted == []
    assert indexed.count >= 1
    with engine.connect() as conn:  # the setting went with the count's transaction
        if engine.dialect.name == "postgresql":
            assert conn.exec_driver_sql("SHOW enable_seqscan").scalar() == "on"


def test_a_list_on_one_page_is_counted_without_a_count(client, deals):
    rep, _ = deals
    engine = client.application.extensions["kartoteka"].engine
    sign_in(client, rep)
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, many):
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        assert total_of(client, "/cards/deal/?stage=proposal")[0] == "2 records"  # one page, within the cap
        one_page = [s for s in statements if "count(" in s.lower()]
        statements.clear()
        assert total_of(client, "/cards/deal/")[0] == "More than 3 records Count all"  # one page, over the cap
        beyond = [s for s in statements if "count(" in s.lower()]
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    assert one_page == [] and len(beyond) == 1
