"""The administrators' run log page (/cards/rule-runs): filters by card type, rule key, record and result in the query
string, checked (a bad value is said on the page, never a 500), and pages of 50 that keep the filters."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from kartoteka.storage.tables import rule_runs
from tests.test_web import sign_in, text_of


@pytest.fixture
def runs(engine, fixed_clock):
    """130 runs: deal_won on deals 1-3 (done, failed, stopped in turn), then 10 ticket runs (blocked)."""
    rows = []
    for i in range(120):
        rows.append({"entity": "deal", "rule_key": "deal_won", "record_id": 1 + i % 3, "trigger": "updated",
                     "source": "ui", "result": ("done", "failed", "stopped")[i % 3],
                     "actions": [{"action": "create_task"}, {"action": "notify"}],
                     "error": "boom" if i % 3 == 1 else None, "created_at": fixed_clock.now() + timedelta(seconds=i)})
    for i in range(10):
        rows.append({"entity": "ticket", "rule_key": "urgent_ticket", "record_id": 7, "trigger": "created",
                     "source": "api", "result": "blocked", "actions": [], "error": None,
                     "created_at": fixed_clock.now() + timedelta(minutes=5, seconds=i)})
    with engine.begin() as conn:
        conn.execute(sa.insert(rule_runs), rows)
    return rows


@pytest.fixture
def root_client(client, make_user):
    sign_in(client, make_user("root", ["admin"])[0])
    return client


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr class="run-[^"]*">.*?</tr>', html, re.S)


def test_filters_by_card_rule_record_and_result_together(root_client, runs):
    page = text_of(root_client.get("/cards/rule-runs?entity=deal&rule=deal_won&record=2&result=failed"))
    rows = _rows(page)
    assert len(rows) == 40 and all('class="run-failed"' in r and 'href="/cards/deal/2"' in r for r in rows)
    assert "create a task, notify" in rows[0] and "create_task" not in rows[0]  # actions in words
    assert 'value="deal_won"' in page and 'value="2"' in page  # the form shows what was asked
    assert re.search(r'<option value="failed" selected>', page)
    tickets = _rows(text_of(root_client.get("/cards/rule-runs?entity=ticket&result=blocked")))
    assert len(tickets) == 10 and all("urgent_ticket" in r for r in tickets)
    assert _rows(text_of(root_client.get("/cards/rule-runs?record=%2399"))) == []  # "#99" is a record's number too
    assert "No run matches these filters." in text_of(root_client.get("/cards/rule-runs?record=99"))


def test_pages_of_fifty_keep_the_filters(root_client, runs):
    first = text_of(root_client.get("/cards/rule-runs?entity=deal"))
    assert len(_rows(first)) == 50
    older = re.search(r'<a href="([^"]+)" rel="next">Older runs</a>', first).group(1)
    assert "entity=deal" in older and "before=" in older
    second = text_of(root_client.get(older))
    third = text_of(root_client.get(re.search(r'<a href="([^"]+)" rel="next">Older runs</a>', second).group(1)))
    assert len(_rows(second)) == 50 and len(_rows(third)) == 20 and "Older runs" not in third
    assert "Newest runs" in third and "ticket" not in "".join(_rows(first) + _rows(second) + _rows(third)).lower()
    seen = [re.search(r'href="/cards/deal/(\d)"', r).group(1) for r in _rows(first) + _rows(second) + _rows(third)]
    assert len(seen) == 120


@pytest.mark.parametrize(("query", "message"), [
    ("entity=nope", "There is no card type «nope»; choose one from the list."),
    ("rule=drop%20table", "«drop table» is not a rule key"),
    ("record=abc", "The record must be a card's number, such as 42, not «abc»."),
    ("record=99999999999999999999999", "The record must be a card's number"),
    ("result=exploded", "«exploded» is not a result of a run; choose one from the list."),
    ("before=-1", "The page link is broken; start from the newest runs."),
])
def test_a_bad_filter_is_said_on_the_page_not_a_500(root_client, runs, query, message):
    answer = root_client.get(f"/cards/rule-runs?{query}")
    page = text_of(answer)
    assert answer.status_code == 400 and message in page and 'role="alert"' in page
    assert _rows(page) == [] and "Correct the filters above to see runs." in page and "Clear filters" in page


def test_the_page_stays_for_administrators(client, make_user, runs):
    sign_in(client, make_user("rep", ["sales"], "sales")[0])
    assert client.get("/cards/rule-runs?entity=deal").status_code == 403
    assert client.get("/cards/rule-runs?entity=nope").status_code == 403
