"""The JSON API of timelines, tasks and notifications: contract, permissions, versions, pages."""

from __future__ import annotations

import pytest

from kartoteka.activity.store import add_entry, create_task, notify
from kartoteka.records.model import SYSTEM

COMPANY = {"name": "Northwind Trading Ltd", "country": "gb"}


@pytest.fixture
def people(make_user):
    """A sales rep, another sales rep of the same department, a manager, support, HR and an admin."""
    return {name: make_user(name, [role], department) for name, role, department in [
        ("rep", "sales", "sales"), ("other", "sales", "sales"), ("manager", "sales_manager", "sales"),
        ("agent", "support", "support"), ("hr", "hr", "hr"), ("boss", "admin", None)]}


@pytest.fixture
def deals(service, people):
    """A deal of the rep and one of the other rep."""
    company = service.create("company", COMPANY, SYSTEM)
    return {who: service.create("deal", {"name": f"Deal of {who}", "company": company.id}, SYSTEM,
                                owner=people[who][0].id) for who in ("rep", "other")}


def test_a_note_is_added_and_read_back_newest_first(client, people, deals, fixed_clock):
    headers = people["rep"][1]
    deal = deals["rep"]
    url = f"/api/v1/records/deal/{deal.id}"
    first = client.post(f"{url}/notes", json={"body": "Called, no answer"}, headers=headers)
    assert first.status_code == 201, first.get_json()
    assert first.get_json()["kind"] == "note" and first.get_json()["user"]["name"] == "rep"
    fixed_clock.advance(minutes=5)
    call = client.post(f"{url}/notes", json={"kind": "call", "body": "Talked to the CFO", "outcome": "interested",
                                             "duration_minutes": 15}, headers=headers)
    assert call.status_code == 201, call.get_json()
    timeline = client.get(f"{url}/timeline", headers=headers)
    assert timeline.status_code == 200
    items = timeline.get_json()["items"]
    assert [i["kind"] for i in items] == ["call", "note", "change"]  # the card's creation, from the journal
    assert items[0]["payload"] == {"outcome": "interested", "duration_minutes": 15}


def test_notes_are_checked_and_need_json(client, people, deals):
    headers = people["rep"][1]
    url = f"/api/v1/records/deal/{deals['rep'].id}/notes"
    empty = client.post(url, json={"body": ""}, headers=headers)
    assert empty.status_code == 422 and empty.get_json()["errors"]["body"] == ["Write what the note says."]
    assert client.post(url, json={"kind": "rule", "body": "forged"}, headers=headers).status_code == 400
    assert client.post(url, data="body=x", headers=headers).status_code == 400
    assert client.post(url, json=["x"], headers=headers).status_code == 400


@pytest.mark.parametrize(("who", "status"), [("rep", 200), ("other", 404), ("manager", 200), ("agent", 200),
                                             ("hr", 403), ("boss", 200)])
def test_the_timeline_follows_the_read_scope_of_the_card(who, status, client, people, deals, service):
    """The rep's deal: another rep of the department may not read it (404), HR may not open deals at all (403)."""
    with service.engine.begin() as conn:
        add_entry(conn, entity="deal", record_id=deals["rep"].id, kind="note", now=service.clock.now(), body="hi")
    url = f"/api/v1/records/deal/{deals['rep'].id}"
    headers = people[who][1]
    answer = client.get(f"{url}/timeline", headers=headers)
    assert answer.status_code == status
    if status != 200:
        assert answer.mimetype == "application/problem+json"
        assert client.post(f"{url}/notes", json={"body": "x"}, headers=headers).status_code == status
    else:
        assert [(i["kind"], i["body"]) for i in answer.get_json()["items"]] == [("note", "hi"), ("change", "")]


def test_tasks_are_created_listed_with_filters_and_changed_with_versions(client, people, deals, fixed_clock):
    headers = people["rep"][1]
    made = client.post("/api/v1/tasks", json={"title": "Send the offer", "assignee": "me", "due_at": "2026-03-01",
                                              "entity": "deal", "record": deals["rep"].id}, headers=headers)
    assert made.status_code == 201, made.get_json()
    task = made.get_json()
    assert made.headers["ETag"] == '"1"' and made.headers["Location"] == f"/api/v1/tasks/{task['id']}"
    assert task["overdue"] is True and task["due_at"] == "2026-03-01T23:59:59Z"
    assert task["record"] == {"entity": "deal", "id": deals["rep"].id, "title": "Deal of rep"}
    client.post("/api/v1/tasks", json={"title": "Later", "assignee": "me", "due_at": "2026-04-01T10:00:00+03:00"},
                headers=headers)
    listed = client.get("/api/v1/tasks?assignee=me&done=false&due__lte=2026-03-31", headers=headers).get_json()
    assert [t["title"] for t in listed["items"]] == ["Send the offer"]
    later = client.get("/api/v1/tasks?due__gte=2026-04-01", headers=headers).get_json()["items"]
    assert [t["due_at"] for t in later] == ["2026-04-01T07:00:00Z"]
    url = f"/api/v1/tasks/{task['id']}"
    assert client.patch(url, json={"done": True}, headers=headers).status_code == 428
    done = client.patch(url, json={"done": True}, headers={**headers, "If-Match": '"1"'})
    assert done.status_code == 200 and done.get_json()["done"] is True and done.headers["ETag"] == '"2"'
    stale = client.patch(url, json={"title": "Mine wins", "version": 1}, headers=headers)
    assert stale.status_code == 409 and stale.get_json()["current_version"] == 2
    assert stale.get_json()["code"] == "task.version_stale"
    invalid = client.patch(url, json={"title": " ", "version": 2}, headers=headers)
    assert invalid.status_code == 422 and "title" in invalid.get_json()["errors"]
    assert client.get("/api/v1/tasks?done=maybe", headers=headers).status_code == 400
    assert client.get("/api/v1/tasks?due__lte=tomorrow", headers=headers).status_code == 400
    assert client.get("/api/v1/tasks?cursor=zzz", headers=headers).status_code == 400


def test_a_rep_sees_neither_the_tasks_of_anothers_deal_nor_may_change_them(client, people, deals, service):
    with service.engine.begin() as conn:
        task_id = create_task(conn, title="Theirs", now=service.clock.now(), assignee=people["other"][0].id,
                              entity="deal", record_id=deals["other"].id, created_by=people["other"][0].id)
    headers = people["rep"][1]
    assert client.get("/api/v1/tasks", headers=headers).get_json()["items"] == []
    assert client.get(f"/api/v1/tasks/{task_id}", headers=headers).status_code == 404
    assert client.patch(f"/api/v1/tasks/{task_id}", json={"done": True, "version": 1},
                        headers=headers).status_code == 404
    refused = client.post("/api/v1/tasks", json={"title": "x", "entity": "deal", "record": deals["other"].id},
                          headers=headers)
    assert refused.status_code == 404
    manager = people["manager"][1]
    assert [t["title"] for t in client.get("/api/v1/tasks", headers=manager).get_json()["items"]] == ["Theirs"]


def test_the_task_list_pages_with_a_link(client, people):
    headers = people["rep"][1]
    for n in range(3):
        client.post("/api/v1/tasks", json={"title": f"task {n}", "assignee": "me"}, headers=headers)
    first = client.get("/api/v1/tasks?assignee=me&limit=2", headers=headers)
    assert len(first.get_json()["items"]) == 2 and 'rel="next"' in first.headers["Link"]
    next_url = first.headers["Link"].split(">")[0].lstrip("<")
    assert [t["title"] for t in client.get(next_url, headers=headers).get_json()["items"]] == ["task 2"]


def test_notifications_are_read_and_marked_by_their_user_only(client, people, service):
    rep, rep_headers = people["rep"]
    other, other_headers = people["other"]
    with service.engine.begin() as conn:
        mine = notify(conn, user_id=rep.id, text="Deal won", now=service.clock.now(), entity="deal", record_id=None)
        theirs = notify(conn, user_id=other.id, text="Not for rep", now=service.clock.now())
    listed = client.get("/api/v1/notifications", headers=rep_headers)
    assert [n["text"] for n in listed.get_json()["items"]] == ["Deal won"] and listed.headers["X-Unread-Count"] == "1"
    refused = client.post("/api/v1/notifications/read", json={"ids": [theirs]}, headers=rep_headers)
    assert refused.status_code == 404 and refused.get_json()["code"] == "notification.not_found"
    assert client.post("/api/v1/notifications/read", json={"ids": "all"}, headers=rep_headers).status_code == 400
    marked = client.post("/api/v1/notifications/read", json={"ids": [mine]}, headers=rep_headers).get_json()
    assert marked == {"marked": 1, "unread": 0}
    assert client.get("/api/v1/notifications?unread=true", headers=rep_headers).get_json()["items"] == []
    assert client.post("/api/v1/notifications/read", json={"all": True}, headers=other_headers).get_json() == {
        "marked": 1, "unread": 0}
