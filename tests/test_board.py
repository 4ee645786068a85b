"""Kanban board totals: count and sum per option of a select, over exactly the records the list shows."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa

from kartoteka.errors import BadRequest, NotFound, PermissionDenied
from kartoteka.records.board import Column, board_totals
from kartoteka.records.model import SYSTEM, Filter, ListQuery
from kartoteka.storage.database import read_engine
from kartoteka.storage.keys import key_values
from kartoteka.storage.tables import records

STAGES = ["new", "qualification", "proposal", "negotiation", "contract", "won", "lost", None]


@pytest.fixture
def company(service):
    return service.create("company", {"name": "Northwind Trading Ltd", "country": "gb"}, SYSTEM)


@pytest.fixture
def deal(service, company):
    def make(name, stage="new", amount=None, user=SYSTEM, **values):
        values = {"name": name, "company": company.id, "stage": stage, **values}
        if amount is not None:
            values["amount"] = amount
        if stage == "won":
            values.setdefault("won_date", "2026-03-01")
        if stage == "lost":
            values.setdefault("lost_reason", "price")
        return service.create("deal", values, user)

    return make


@pytest.fixture
def pipeline(service, deal):
    """A small pipeline: three new deals (one without amount), two proposals, one won, one lost, one deleted."""
    made = [
        deal("Alpha licenses", "new", "1000.10"),
        deal("Beta support", "new", "250.05"),
        deal("Gamma pilot", "new"),
        deal("Delta small one", "proposal", "0.10"),
        deal("Epsilon small two", "proposal", "0.20"),
        deal("Zeta rollout", "won", "5000"),
        deal("Eta tender", "lost", "300"),
    ]
    gone = deal("Theta deleted", "new", "999")
    service.delete("deal", gone.id, SYSTEM)
    return made


def totals(result):
    """{value: (count, total as text)} for compact assertions."""
    return {key: (column.count, None if column.total is None else str(column.total)) for key, column in result.items()}


def test_counts_and_sums_per_stage_in_one_statement(service, pipeline):
    statements = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engines = {service.engine, read_engine(service.engine)}  # writes' engine and reads' (storage/reading.py)
    service.key_columns(service.entity("deal"))  # which key columns are filled: looked up once per process
    for one in engines:
        sa.event.listen(one, "before_cursor_execute", count)
    try:
        result = board_totals(service, "deal", SYSTEM, "stage", "amount", ListQuery())
    finally:
        for one in engines:
            sa.event.remove(one, "before_cursor_execute", count)

    assert len(statements) == 1 and "GROUP BY" in statements[0]
    assert list(result) == STAGES  # every option in its configured order, then the "no stage" column
    assert totals(result) == {
        "new": (3, "1250.15"),  # the deleted deal is not counted; the deal without amount counts but adds nothing
        "qualification": (0, None),
        "proposal": (2, "0.30"),  # exact, not 0.30000000000000004
        "negotiation": (0, None),
        "contract": (0, None),
        "won": (1, "5000.00"),
        "lost": (1, "300.00"),
        None: (0, None),
    }
    assert result["won"] == Column("won", 1, Decimal("5000.00"))
    assert all(isinstance(c.total, Decimal) for c in result.values() if c.total is not None)


def test_without_a_sum_field_only_counts(service, pipeline):
    result = board_totals(service, "deal", SYSTEM, "stage", None, ListQuery())
    assert {k: c.count for k, c in result.items()} == dict(zip(STAGES, [3, 0, 2, 0, 0, 1, 1, 0], strict=True))
    assert all(c.total is None for c in result.values())


def test_an_empty_board_has_every_column(service):
    result = board_totals(service, "deal", SYSTEM, "stage", "amount", ListQuery())
    assert result == {value: Column(value, 0, None) for value in STAGES}


def test_empty_and_unknown_values_are_counted_under_none(service, deal, engine):
    kept = deal("Kept", "proposal", "10.50")
    emptied = deal("No stage", "proposal", "1.25")
    retired = deal("Retired stage", "proposal", "2.25")
    with engine.begin() as conn:  # as data written before the options changed would look
        for record, stage in ((emptied, None), (retired, "archived")):
            data = conn.execute(sa.select(records.c.data).where(records.c.id == record.id)).scalar_one()
            data = {k: v for k, v in data.items() if k != "stage"}
            if stage is not None:
                data["stage"] = stage
            # The key columns as the service would have written them with that data (storage/keys.py).
            keys = key_values(service.entity("deal"), data)
            conn.execute(sa.update(records).where(records.c.id == record.id).values(data=data, **keys))

    result = board_totals(service, "deal", SYSTEM, "stage", "amount", ListQuery())
    assert result["proposal"] == Column("proposal", 1, Decimal("10.50"))
    assert result[None] == Column(None, 2, Decimal("3.50"))
    assert "archived" not in result
    assert kept.id


def test_filters_and_search_apply(service, pipeline):
    big = board_totals(service, "deal", SYSTEM, "stage", "amount",
                       ListQuery(filters=(Filter("amount", "gte", "1000"),)))
    assert totals(big) == {**dict.fromkeys(STAGES, (0, None)), "new": (1, "1000.10"), "won": (1, "5000.00")}

    small = board_totals(service, "deal", SYSTEM, "stage", "amount", ListQuery(search="small"))
    assert totals(small) == {**dict.fromkeys(STAGES, (0, None)), "proposal": (2, "0.30")}

    both = board_totals(service, "deal", SYSTEM, "stage", "amount",
                        ListQuery(filters=(Filter("stage", "in", "new,won"),), search="a"))
    names = {r.title for r in service.list("deal", SYSTEM, ListQuery(filters=(Filter("stage", "in", "new,won"),),
                                                                      search="a")).items}
    assert names == {"Alpha licenses", "Beta support", "Gamma pilot", "Zeta rollout"}
    assert totals(both) == {**dict.fromkeys(STAGES, (0, None)), "new": (3, "1250.15"), "won": (1, "5000.00")}

    # The cursor, sort and page size of the list do not narrow the totals.
    page = service.list("deal", SYSTEM, ListQuery(limit=2, sort="amount"))
    later = board_totals(service, "deal", SYSTEM, "stage", None, ListQuery(limit=2, sort="amount",
                                                                           cursor=page.next_cursor))
    assert sum(c.count for c in later.values()) == 7


@pytest.mark.parametrize("query", [ListQuery(), ListQuery(filters=(Filter("amount", "lt", "1000"),)),
                                   ListQuery(search="e"), ListQuery(filters=(Filter("amount", "isnull", "true"),))])
def test_counts_add_up_to_the_list_total(service, pipeline, query):
    result = board_totals(service, "deal", SYSTEM, "stage", "amount", query)
    assert sum(c.count for c in result.values()) == service.list("deal", SYSTEM, query, with_total=True).total


def test_a_sales_rep_sees_totals_of_their_own_deals_only(service, deal, make_user):
    rep, _ = make_user("rita", ["sales"], "sales")
    colleague, _ = make_user("sam", ["sales"], "sales")
    deal("Rita one", "new", "100.00", user=rep)
    deal("Rita two", "new", "20.00", user=rep)
    deal("Rita won", "won", "1000", user=rep)
    deal("Sam one", "new", "7000", user=colleague)
    deal("Nobody's", "new", "9000")

    mine = board_totals(service, "deal", rep, "stage", "amount", ListQuery())
    assert totals(mine) == {**dict.fromkeys(STAGES, (0, None)), "new": (2, "120.00"), "won": (1, "1000.00")}
    assert board_totals(service, "deal", SYSTEM, "stage", "amount", ListQuery())["new"].count == 4

    # Cost is for finance and admins: hidden from the rep, so it cannot be summed (nor filtered) by them.
    with pytest.raises(BadRequest, match="cost"):
        board_totals(service, "deal", rep, "stage", "cost", ListQuery())
    with pytest.raises(BadRequest, match="cost"):
        board_totals(service, "deal", rep, "stage", None, ListQuery(filters=(Filter("cost", "gt", "0"),)))
    assert board_totals(service, "deal", SYSTEM, "stage", "cost", ListQuery())["new"] == Column("new", 4, None)


def test_a_user_without_read_access_is_refused(service, pipeline, make_user):
    clerk, _ = make_user("hanna", ["hr"], "hr")
    with pytest.raises(PermissionDenied):
        board_totals(service, "deal", clerk, "stage", "amount", ListQuery())
    with pytest.raises(PermissionDenied):  # before the query is looked at, as the list does
        board_totals(service, "deal", clerk, "nope", "nope", ListQuery())


@pytest.mark.parametrize(("group", "summed", "message"), [
    ("nope", None, "unknown field 'nope'"),
    ("amount", None, "select field"),
    ("products", None, "select field"),  # a multiselect: a record would sit in several columns
    ("id", None, "select field"),
    ("stage", "nope", "unknown field 'nope'"),
    ("stage", "name", "money, decimal or integer"),
    ("stage", "probability", "money, decimal or integer"),  # a percent does not add up
    ("stage", "id", "money, decimal or integer"),
])
def test_bad_fields_are_bad_requests(service, group, summed, message):
    with pytest.raises(BadRequest, match=message):
        board_totals(service, "deal", SYSTEM, group, summed, ListQuery())


def test_unknown_entity_and_bad_filters(service):
    with pytest.raises(NotFound):
        board_totals(service, "nothing", SYSTEM, "stage", None, ListQuery())
    with pytest.raises(BadRequest):
        board_totals(service, "deal", SYSTEM, "stage", None, ListQuery(filters=(Filter("amount", "gte", "lots"),)))


def test_integer_and_formula_sums(service, deal):
    for name, country, employees in (("Alpha", "gb", 120), ("Beta", "gb", 30), ("Gamma", "de", None)):
        values = {"name": name, "country": country}
        if employees is not None:
            values["employees"] = employees
        service.create("company", values, SYSTEM)
    by_country = board_totals(service, "company", SYSTEM, "country", "employees", ListQuery())
    assert by_country["gb"] == Column("gb", 2 + 1, Decimal(150))  # the Northwind company of the fixture is British
    assert str(by_country["gb"].total) == "150"
    assert by_country["de"] == Column("de", 1, None)

    deal("Alpha", "new", "1000.10")  # expected revenue: 10 % of the amount
    deal("Beta", "new", "333.33")
    expected = board_totals(service, "deal", SYSTEM, "stage", "expected_revenue", ListQuery())
    assert str(expected["new"].total) == "133.34"


def test_sums_beyond_64_bit_integers_are_exact(service, deal, client, make_user):
    """The largest amount a money field takes, 100 times: 10^19 kopecks, past SQLite's integers (its SUM raised
    "integer overflow", a 500 on the board)."""
    from tests.test_web import sign_in, text_of

    largest = "999999999999999"  # 15 significant digits: MAX_DECIMAL_DIGITS
    for i in range(100):
        deal(f"Huge {i}", "new", largest)
    deal("Cents", "new", "0.01")
    deal("Big won", "won", "9999999999999.99")
    result = board_totals(service, "deal", SYSTEM, "stage", "amount", ListQuery())
    assert result["new"] == Column("new", 101, Decimal("99999999999999900.01"))
    assert str(result["new"].total) == "99999999999999900.01"
    assert result["won"] == Column("won", 1, Decimal("9999999999999.99"))

    admin, _ = make_user("admin", ["admin"])
    sign_in(client, admin)
    page = client.get("/cards/deal/kanban")
    assert page.status_code == 200, text_of(page)[:500]
    assert "99,999,999,999,999,900.01" in text_of(page).replace("\xa0", ",").replace(" ", ",")


def test_sums_of_many_decimal_places_are_exact(engine, clock, tmp_path):
    """A decimal with 8 places scales 10^14 to 10^22, past what SQLite's CAST to INTEGER keeps (it saturates)."""
    from kartoteka.metadata.fieldtypes import ParseContext
    from kartoteka.metadata.loader import load_metadata
    from kartoteka.records.service import RecordService
    from kartoteka.storage.indexes import sync_indexes
    from tests.conftest import write_config

    write_config(tmp_path, {"lot": {"entity": "lot", "label": "Lot", "title": "{name}", "fields": {
        "name": {"type": "text", "label": "Name", "required": True},
        "state": {"type": "select", "label": "State", "options": ["open", "closed"]},
        "weight": {"type": "decimal", "label": "Weight", "places": 8},
        "free": {"type": "decimal", "label": "Free"},
    }}})
    metadata = load_metadata(tmp_path, ParseContext())
    sync_indexes(engine, metadata)
    service = RecordService(metadata, engine, clock, ParseContext())
    for name, weight, free in [("a", "100000000000000", "100000000000000"), ("b", "0.00000001", "0.1"),
                               ("c", "1234567.12345678", "0.2"), ("d", "-99999999999999.9", "-0.05")]:
        service.create("lot", {"name": name, "state": "open", "weight": weight, "free": free}, SYSTEM)
    weights = board_totals(service, "lot", SYSTEM, "state", "weight", ListQuery())
    assert weights["open"] == Column("open", 4, Decimal("1234567.22345679"))
    assert str(weights["open"].total) == "1234567.22345679"
    free = board_totals(service, "lot", SYSTEM, "state", "free", ListQuery())
    # Without places a sum of doubles kept 15 digits (100000000000000); the sum is exact on both databases.
    assert str(free["open"].total) == "100000000000000.25"


def test_a_move_without_javascript_comes_back_to_the_board_as_it_was(client, service, make_user):
    """The filters and grouping of the board survive a move made with its plain form."""
    import re
    from html import unescape

    from tests.test_web import CSRF, sign_in

    rep, _ = make_user("rep", ["sales"], "sales")
    company = service.create("company", {"name": "Northwind Trading Ltd", "country": "gb"}, rep)
    deal = service.create("deal", {"name": "Alpha", "company": company.id, "stage": "new"}, rep)
    sign_in(client, rep)
    board = client.get("/cards/deal/kanban", query_string={"q": "Alpha", "stage__ne": "lost"}).get_data(as_text=True)
    form = re.search(rf'<form [^>]*id="move-{deal.id}-form".*?</form>', board, re.S).group(0)
    sent = {name: unescape(value) for name, value in re.findall(r'name="([^"]+)" value="([^"]*)"', form)}
    moved = client.post(f"/cards/deal/{deal.id}/move", data={**sent, "to": "qualification", "csrf_token": CSRF})
    assert moved.status_code == 302
    assert moved.headers["Location"] == f"/cards/deal/kanban?q=Alpha&stage__ne=lost#card-{deal.id}"
    hostile = client.post(f"/cards/deal/{deal.id}/move", data={
        "csrf_token": CSRF, "to": "new", "version": "2", "board": "stage", "args": "//evil.example/x?a=1"})
    assert hostile.headers["Location"].startswith("/cards/deal/kanban?")  # only ever a query string of the board


@pytest.mark.parametrize("board", ["amount", "no_such_field", "margin"])
def test_a_move_changes_only_a_field_a_board_groups_by(client, service, make_user, board):
    """`board=amount&to=123456` set a deal's amount through the move: a move is a column change, nothing else."""
    from tests.test_web import CSRF, sign_in

    rep, _ = make_user("rep", ["sales"], "sales")
    company = service.create("company", {"name": "Northwind Trading Ltd", "country": "gb"}, rep)
    deal = service.create("deal", {"name": "Alpha", "company": company.id, "stage": "new", "amount": "10"}, rep)
    sign_in(client, rep)
    moved = client.post(f"/cards/deal/{deal.id}/move", data={"csrf_token": CSRF, "board": board, "to": "123456",
                                                             "version": "1"})
    assert moved.status_code == 400  # the same for a hidden field (margin) as for one no card has
    assert service.get("deal", deal.id, SYSTEM).version == 1
