"""Who may see and retry the outbox: administrators through the API and the admin page; other users are refused
(403) and anonymous visitors asked to authenticate. A dead delivery retried there is delivered by the worker."""

from __future__ import annotations

import re
from html import unescape

import pytest
import sqlalchemy as sa

from kartoteka.config import OutboxSettings
from kartoteka.rules import outbox as ob
from kartoteka.rules.delivery import Deliverer
from kartoteka.rules.worker import OutboxJob
from kartoteka.storage.tables import outbox
from tests.outbox_support import Receiver
from tests.test_web import CSRF, sign_in


def _dead(engine, now, url="https://hooks.example.com/in", error="HTTP 503 Service Unavailable") -> ob.Delivery:
    with engine.begin() as conn:
        delivery_id = ob.enqueue(conn, kind="webhook", destination=url, now=now, entity="deal", record_id=None,
                                 rule_key="deal_won", payload={"type": "deal.won", "timestamp": now.isoformat(),
                                                               "data": {}, "secret_env": None})
        conn.execute(sa.update(outbox).where(outbox.c.delivery_id == delivery_id)
                     .values(state="dead", attempts=8, last_error=error))
    return ob.get_delivery(engine, delivery_id)


@pytest.fixture
def people(make_user):
    """API headers of an administrator and of a sales manager (no superuser role)."""
    return {"admin": make_user("root", ["admin"])[1], "manager": make_user("manager", ["sales_manager"])[1],
            "anonymous": {}}


EXPECTED = {"admin": 200, "manager": 403, "anonymous": 401}


@pytest.mark.parametrize("who", EXPECTED)
def test_the_outbox_api_is_for_administrators(client, engine, clock, people, who):
    dead = _dead(engine, clock.now())
    listed = client.get("/api/v1/outbox?state=dead", headers=people[who])
    one = client.get(f"/api/v1/outbox/{dead.delivery_id}", headers=people[who])
    retried = client.post(f"/api/v1/outbox/{dead.id}/retry", headers=people[who])
    assert (listed.status_code, one.status_code, retried.status_code) == (EXPECTED[who],) * 3
    if who != "admin":
        assert listed.mimetype == retried.mimetype == "application/problem+json"
        assert ob.get_delivery(engine, dead.id).state == "dead"  # nothing changed
        if who == "manager":
            assert retried.get_json()["code"] == "outbox.admin_only"
        return
    [item] = listed.get_json()["items"]
    assert item["delivery_id"] == dead.delivery_id and item["state"] == "dead" and item["last_error"].startswith("HTTP")
    assert listed.get_json()["counts"] == {"pending": 0, "done": 0, "dead": 1}
    assert one.get_json()["payload"]["type"] == "deal.won"
    body = retried.get_json()
    assert (body["state"], body["attempts"], body["delivery_id"]) == ("pending", 0, dead.delivery_id)


def test_the_api_pages_newest_first_and_refuses_bad_parameters(client, engine, clock, people):
    ids = [_dead(engine, clock.now()).delivery_id for _ in range(3)]
    first = client.get("/api/v1/outbox?state=dead&limit=2", headers=people["admin"])
    assert [i["delivery_id"] for i in first.get_json()["items"]] == ids[:0:-1]
    link = re.match(r"<([^>]+)>; rel=\"next\"", first.headers["Link"]).group(1)
    second = client.get(link, headers=people["admin"]).get_json()
    assert [i["delivery_id"] for i in second["items"]] == ids[:1] and second["next_cursor"] is None
    assert client.get("/api/v1/outbox?state=pending", headers=people["admin"]).get_json()["items"] == []
    for query, code in [("state=lost", "outbox.state_invalid"), ("limit=0", "outbox.param_invalid"),
                        ("limit=abc", "outbox.param_invalid"), ("cursor=-1", "outbox.param_invalid")]:
        refused = client.get(f"/api/v1/outbox?{query}", headers=people["admin"])
        assert refused.status_code == 400 and refused.get_json()["code"] == code, query


def test_retrying_what_cannot_be_retried(client, engine, clock, people):
    dead = _dead(engine, clock.now())
    with engine.begin() as conn:
        conn.execute(sa.update(outbox).where(outbox.c.id == dead.id).values(state="done"))
    done = client.post(f"/api/v1/outbox/{dead.delivery_id}/retry", headers=people["admin"])
    assert done.status_code == 409 and done.get_json()["code"] == "outbox.retry_done"
    missing = client.post("/api/v1/outbox/msg_nope/retry", headers=people["admin"])
    assert missing.status_code == 404 and missing.get_json()["code"] == "outbox.not_found"
    leased = _dead(engine, clock.now())
    ob.retry(engine, leased.id, clock.now())
    ob.claim(engine, clock.now())
    busy = client.post(f"/api/v1/outbox/{leased.id}/retry", headers=people["admin"])
    assert busy.status_code == 409 and busy.get_json()["code"] == "outbox.retry_leased"


@pytest.fixture
def browsers(app, make_user):
    """Web clients: an administrator's, a sales manager's and an anonymous one."""
    clients = {}
    for who, roles in [("admin", ["admin"]), ("manager", ["sales_manager"])]:
        clients[who] = app.test_client()
        sign_in(clients[who], make_user(f"web_{who}", roles)[0])
    clients["anonymous"] = app.test_client()
    return clients


@pytest.mark.parametrize("who", EXPECTED)
def test_the_outbox_page_is_for_administrators(browsers, engine, clock, who):
    dead = _dead(engine, clock.now(), error="HTTP 500 <script>alert(1)</script>")
    page = browsers[who].get("/admin/outbox/")
    retried = browsers[who].post(f"/admin/outbox/{dead.id}/retry", data={"csrf_token": CSRF, "state": "dead"})
    if who == "anonymous":
        assert page.status_code == 302 and "/login" in page.headers["Location"]
        assert retried.status_code in (302, 401) and ob.get_delivery(engine, dead.id).state == "dead"
        return
    if who == "manager":
        assert (page.status_code, retried.status_code) == (403, 403)
        assert ob.get_delivery(engine, dead.id).state == "dead"
        return
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    row = re.search(rf'<tr id="delivery-{dead.id}" data-state="dead">(.*?)</tr>', text, re.S).group(1)
    assert dead.delivery_id in row and "hooks.example.com" in row and "Retry" in row
    assert "<script>alert" not in row and "&lt;script&gt;" in row  # the receiver's words are escaped
    assert retried.status_code == 302 and ob.get_delivery(engine, dead.id).state == "pending"


def test_the_page_retry_needs_the_csrf_token_and_says_what_it_did(browsers, engine, clock):
    dead = _dead(engine, clock.now())
    admin = browsers["admin"]
    assert admin.post(f"/admin/outbox/{dead.id}/retry").status_code == 400
    assert ob.get_delivery(engine, dead.id).state == "dead"
    done = admin.post(f"/admin/outbox/{dead.id}/retry", data={"csrf_token": CSRF, "state": "dead"},
                      follow_redirects=True)
    assert f"{dead.delivery_id} will be sent again in a moment." in unescape(done.get_data(as_text=True))
    again = admin.post(f"/admin/outbox/{dead.id}/retry", data={"csrf_token": CSRF}, follow_redirects=True)
    assert again.status_code == 200  # a pending one may be hurried along too
    waiting = admin.get("/admin/outbox/?state=pending").get_data(as_text=True)
    assert f'id="delivery-{dead.id}" data-state="pending"' in waiting


def test_a_dead_letter_retried_from_the_api_is_delivered(client, engine, fixed_clock, people):
    with Receiver() as receiver:
        dead = _dead(engine, fixed_clock.now(), url=receiver.url())
        settings = OutboxSettings(webhook_hosts=(receiver.host,))
        job = OutboxJob(settings, deliverer=Deliverer(settings, environ={}))
        assert job(engine, fixed_clock.now()) == 0
        assert client.post(f"/api/v1/outbox/{dead.delivery_id}/retry", headers=people["admin"]).status_code == 200
        assert job(engine, fixed_clock.now()) == 1
    assert receiver.ids() == [dead.delivery_id]
    assert ob.get_delivery(engine, dead.id).state == "done"
