"""The pages of timelines, tasks and notifications through Flask's test client, with and without htmx."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from kartoteka.activity.model import TaskQuery
from kartoteka.activity.store import add_entry, create_task, notify
from kartoteka.activity.tasks import get_task, list_tasks, new_task
from kartoteka.records.model import SYSTEM
from tests.test_web import CSRF, sign_in, text_of

HTMX = {"HX-Request": "true"}
COMPANY = {"name": "Northwind Trading Ltd", "country": "gb"}


@pytest.fixture
def rep(make_user):
    return make_user("rep", ["sales"], "sales")[0]


@pytest.fixture
def deal(service):
    def make(owner, name="CRM rollout"):
        company = service.create("company", COMPANY | {"name": f"{name} Ltd"}, SYSTEM)
        return service.create("deal", {"name": name, "company": company.id}, SYSTEM, owner=owner.id)
    return make


def test_a_note_added_without_javascript_comes_back_on_the_card(client, rep, deal):
    card = deal(rep)
    sign_in(client, rep)
    url = f"/cards/deal/{card.id}"
    page = text_of(client.get(url))
    assert 'id="timeline"' in page and "Card created" in page
    posted = client.post(f"{url}/entries", data={"csrf_token": CSRF, "kind": "note", "body": "Asked for a discount"})
    assert posted.status_code == 302 and posted.headers["Location"].endswith(f"{url}#timeline")
    page = text_of(client.get(url))
    assert "Added to the timeline." in page and "Asked for a discount" in page


def test_a_call_added_with_htmx_swaps_the_timeline_section(client, rep, deal):
    card = deal(rep)
    sign_in(client, rep)
    answer = client.post(f"/cards/deal/{card.id}/entries", headers=HTMX, data={
        "csrf_token": CSRF, "kind": "call", "body": "Talked to the CFO", "outcome": "interested",
        "duration_minutes": "15"})
    html = text_of(answer)
    assert answer.status_code == 200 and html.lstrip().startswith("{#") is False
    assert 'id="timeline"' in html and "Talked to the CFO" in html and "Outcome: interested" in html
    assert "15 minutes" in html and "<html" not in html


def test_a_refused_entry_keeps_what_was_typed_and_says_why(client, rep, deal):
    card = deal(rep)
    sign_in(client, rep)
    answer = text_of(client.post(f"/cards/deal/{card.id}/entries", headers=HTMX, data={
        "csrf_token": CSRF, "kind": "meeting", "body": "Lunch", "duration_minutes": "100000"}))
    assert "The duration must be a whole number of minutes from 0 to 1440." in answer
    assert ">Lunch</textarea>" in answer and 'aria-invalid="true"' in answer


def test_posting_without_the_csrf_token_is_refused(client, rep, deal):
    card = deal(rep)
    sign_in(client, rep)
    assert client.post(f"/cards/deal/{card.id}/entries", data={"kind": "note", "body": "x"}).status_code == 400


def test_a_sales_rep_cannot_open_or_write_the_timeline_of_anothers_deal(client, rep, make_user, deal, service):
    other = make_user("other", ["sales"], "sales")[0]
    theirs = deal(other)
    task = new_task(service, other, title="Secret plan", assignee=other.id, entity="deal", record_id=theirs.id)
    sign_in(client, rep)
    assert client.get(f"/cards/deal/{theirs.id}/timeline").status_code == 404
    assert client.post(f"/cards/deal/{theirs.id}/entries", data={"csrf_token": CSRF, "body": "x"}).status_code == 404
    assert client.post(f"/cards/deal/{theirs.id}/tasks", data={"csrf_token": CSRF, "title": "x"}).status_code == 404
    assert client.post(f"/tasks/{task.id}/done", data={"csrf_token": CSRF, "done": "1", "version": "1"}
                       ).status_code == 404
    assert "Secret plan" not in text_of(client.get("/tasks?show=all"))


def test_adding_a_task_on_the_card_and_ticking_it_done_in_my_tasks(client, rep, deal, service, fixed_clock):
    card = deal(rep)
    sign_in(client, rep)
    answer = client.post(f"/cards/deal/{card.id}/tasks", headers=HTMX, data={
        "csrf_token": CSRF, "title": "Send the offer", "assignee": str(rep.id), "due": "2026-03-01"})
    assert "Send the offer" in text_of(answer) and "Task added." in text_of(answer)
    task = list_tasks(service, rep, TaskQuery(assignee=rep.id)).items[0]
    page = text_of(client.get("/tasks"))
    row = re.search(rf'<li id="task-{task.id}".*?</li>', page, re.S).group(0)
    assert "is-overdue" in row and "Overdue" in row and "CRM rollout" in row  # due yesterday (fixed clock: 2 March)
    ticked = client.post(f"/tasks/{task.id}/done", headers=HTMX, data={
        "csrf_token": CSRF, "done": "1", "version": str(task.version), "next": "/tasks", "show_card": "1"})
    html = text_of(ticked)
    assert ticked.status_code == 200 and "checked" in html and "is-done" in html and "Overdue" not in html
    assert f'href="/cards/deal/{card.id}"' in html and 'name="show_card"' in html  # as My tasks shows it
    assert get_task(service, task.id, rep).done
    assert "Send the offer" not in text_of(client.get("/tasks"))
    assert "Send the offer" in text_of(client.get("/tasks?show=done"))


def test_a_stale_tick_shows_the_task_as_saved_and_says_so(client, rep, service):
    task = new_task(service, rep, title="Prepare", assignee=rep.id)
    sign_in(client, rep)
    client.post(f"/tasks/{task.id}/done", data={"csrf_token": CSRF, "done": "1", "version": "1"})
    stale = text_of(client.post(f"/tasks/{task.id}/done", headers=HTMX, data={
        "csrf_token": CSRF, "version": "1"}))  # unticked in a tab loaded before
    assert "Someone changed this task meanwhile" in stale and "checked" in stale
    assert get_task(service, task.id, rep).done
    without_js = client.post(f"/tasks/{task.id}/done", data={"csrf_token": CSRF, "version": "1",
                                                             "next": "https://evil.example/"})
    assert without_js.headers["Location"] == "/tasks"


def test_the_header_counts_open_and_overdue_tasks_and_unread_notifications(client, rep, service, fixed_clock, deal):
    sign_in(client, rep)
    page = text_of(client.get("/cards/"))
    assert re.search(r'My tasks</span> <span class="count">0</span></a>', page)
    new_task(service, rep, title="Later", assignee=rep.id, due_at=fixed_clock.now() + timedelta(minutes=30))
    new_task(service, rep, title="Late", assignee=rep.id, due_at=fixed_clock.now() - timedelta(minutes=1))
    with service.engine.begin() as conn:
        notify(conn, user_id=rep.id, text="A deal was won", now=fixed_clock.now())
    for url in ("/cards/", "/cards/deal/", "/cards/deal/new", f"/cards/deal/{deal(rep).id}/edit", "/tasks"):
        page = text_of(client.get(url))
        assert '<span class="count">2</span>' in page, url
        assert '<strong class="overdue-count">1 overdue</strong>' in page, url
        assert re.search(r'Notifications</span> <span class="count">1</span>', page), url
    fixed_clock.advance(hours=1)
    assert "2 overdue" in text_of(client.get("/cards/deal/new"))  # the compiled form page fills the counts anew


def test_the_notification_page_lists_marks_one_and_all_read(client, rep, make_user, service, fixed_clock, deal):
    other = make_user("other", ["sales"], "sales")[0]
    card = deal(rep)
    with service.engine.begin() as conn:
        first = notify(conn, user_id=rep.id, text="First news", now=fixed_clock.now(), entity="deal",
                       record_id=card.id)
        notify(conn, user_id=rep.id, text="Second news", now=fixed_clock.now())
        theirs = notify(conn, user_id=other.id, text="Not yours", now=fixed_clock.now())
    sign_in(client, rep)
    page = text_of(client.get("/notifications"))
    assert "First news" in page and "Second news" in page and "Not yours" not in page
    assert f'href="/cards/deal/{card.id}"' in page
    assert client.post(f"/notifications/{theirs}/read", data={"csrf_token": CSRF}).status_code == 404
    assert client.post(f"/notifications/{first}/read", data={"csrf_token": CSRF}).status_code == 302
    assert re.search(r'Notifications</span> <span class="count">1</span>', text_of(client.get("/notifications")))
    client.post("/notifications/read", data={"csrf_token": CSRF})
    page = text_of(client.get("/notifications"))
    assert re.search(r'Notifications</span> <span class="count">0</span>', page) and "Mark all as read" not in page
    sign_in(client, other)
    assert re.search(r'Notifications</span> <span class="count">1</span>', text_of(client.get("/notifications")))


@pytest.mark.parametrize(("role", "sees_value"), [("sales", False), ("finance", True)])
def test_a_rule_run_shows_as_a_line_and_hides_fields_the_reader_may_not_view(role, sees_value, client, make_user,
                                                                            service, deal, fixed_clock):
    owner = make_user("owner", ["sales"], "sales")[0]
    reader = owner if role == "sales" else make_user("reader", [role], role)[0]
    card = deal(owner)
    with service.engine.begin() as conn:
        add_entry(conn, entity="deal", record_id=card.id, kind="rule", now=fixed_clock.now(),
                  body="cost set to 777", payload={
                      "rule_key": "deal_won", "rule": {"en": "Deal won", "ru": "Сделка выиграна"}, "result": "done",
                      "actions": [{"type": "set", "field": "cost", "value": 777}, {"type": "notify"}]})
        create_task(conn, title="Review", now=fixed_clock.now(), entity="deal", record_id=card.id, rule_key="x")
    sign_in(client, reader)
    page = text_of(client.get(f"/cards/deal/{card.id}"))
    assert "Rule «Deal won» ran: done (set a field, notify)" in page, page[page.find("timeline-entries"):][:1500]
    assert ("777" in page) is sees_value
    headers = make_user("api_" + role, [role], "sales" if role == "sales" else role)[1]
    if role == "sales":
        return  # a second sales rep would not read the owner's deal; the page above is the reader's view
    body = client.get(f"/api/v1/records/deal/{card.id}/timeline", headers=headers).get_json()
    rule = next(i for i in body["items"] if i["kind"] == "rule")
    assert rule["payload"]["actions"][0] == {"type": "set", "field": "cost", "value": 777}


def test_without_javascript_a_refused_task_shows_the_card_again_with_what_was_typed(client, rep, deal):
    card = deal(rep)
    sign_in(client, rep)
    refused = client.post(f"/cards/deal/{card.id}/tasks", data={"csrf_token": CSRF, "title": " ", "due": "2026-03-09",
                                                                "assignee": "999999"})
    page = text_of(refused)
    assert refused.status_code == 422 and "Please correct the highlighted fields." in page
    assert "Give the task a title." in page and "There is no active user #999999." in page
    assert 'value="2026-03-09"' in page and "CRM rollout" in page  # the card around it
    refused = client.post(f"/cards/deal/{card.id}/entries", data={"csrf_token": CSRF, "kind": "call", "body": "Lunch",
                                                                  "duration_minutes": "-5"})
    page = text_of(refused)
    assert refused.status_code == 422 and ">Lunch</textarea>" in page and 'value="call" checked' in page
