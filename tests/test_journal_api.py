"""The journal, revert, trash and restore through the JSON API (shipped config)."""

from __future__ import annotations

import pytest

from kartoteka.records.model import SYSTEM

COMPANY = {"name": "Northwind Trading Ltd", "country": "gb"}


@pytest.fixture
def people(make_user):
    return {name: make_user(name, roles, department) for name, roles, department in
            (("rep", ["sales"], "sales"), ("other", ["sales"], "sales"), ("fin", ["finance"], "finance"),
             ("boss", ["admin"], None))}


@pytest.fixture
def card(app, people):
    service = app.extensions["kartoteka"].service
    company = service.create("company", COMPANY, SYSTEM)
    return service.create("deal", {"name": "Rollout", "company": company.id, "amount": "1000"}, people["rep"][0])


def _patch(client, who, card_id, version, values):
    response = client.patch(f"/api/v1/records/deal/{card_id}", json=values,
                            headers={**who[1], "If-Match": f'"{version}"'})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_history_lists_each_save_with_only_the_fields_the_caller_may_view(client, people, card):
    _patch(client, people["rep"], card.id, 1, {"amount": "2000", "next_step": "Call"})
    _patch(client, people["fin"], card.id, 2, {"margin": "37.5"})
    rep = client.get(f"/api/v1/records/deal/{card.id}/history", headers=people["rep"][1]).get_json()
    assert [e["version"] for e in rep["entries"]] == [3, 2, 1] and rep["version"] == 3
    assert rep["entries"][0]["changes"] == {} and rep["entries"][0]["hidden_changes"] >= 1
    assert rep["entries"][0]["user"]["name"] == "fin" and rep["entries"][2]["action"] == "created"
    assert rep["entries"][1]["changes"]["next_step"] == {"old": None, "new": "Call"}
    assert "37.5" not in str(rep)
    fin = client.get(f"/api/v1/records/deal/{card.id}/history?limit=1", headers=people["fin"][1]).get_json()
    assert fin["entries"][0]["changes"]["margin"] == {"old": None, "new": 37.5}
    assert fin["entries"][0]["token"] is not None  # the API token it was saved with
    more = client.get(fin["next"], headers=people["fin"][1]).get_json()
    assert [e["version"] for e in more["entries"]] == [2]
    assert client.get(f"/api/v1/records/deal/{card.id}/history", headers=people["other"][1]).status_code == 404
    bad = client.get(f"/api/v1/records/deal/{card.id}/history?limit=0", headers=people["rep"][1])
    assert bad.status_code == 400 and bad.get_json()["code"] == "page.limit_invalid"


def test_revert_brings_values_back_as_a_journalled_save(client, people, card):
    _patch(client, people["rep"], card.id, 1, {"amount": "2000", "next_step": "Call"})
    url = f"/api/v1/records/deal/{card.id}/revert"
    one = client.post(url, json={"version": 1, "fields": ["amount"]}, headers=people["rep"][1])
    assert one.status_code == 200, one.get_json()
    assert one.get_json()["record"]["amount"] == "1000.00" and one.get_json()["record"]["next_step"] == "Call"
    assert one.get_json()["reverted"] == ["amount"]
    stale = client.post(url, json={"version": 1}, headers={**people["rep"][1], "If-Match": '"2"'})
    assert stale.status_code == 409
    whole = client.post(url, json={"version": 1}, headers={**people["rep"][1], "If-Match": '"3"'})
    assert whole.status_code == 200 and whole.get_json()["record"]["next_step"] is None
    history = client.get(f"/api/v1/records/deal/{card.id}/history", headers=people["rep"][1]).get_json()
    assert (history["entries"][0]["action"], history["entries"][0]["reverts"]) == ("reverted", 1)
    for body, code in (({}, "journal.revert_body"), ({"version": 99}, "journal.version_unknown"),
                       ({"version": "1"}, "journal.version_unknown"),
                       ({"version": 1, "fields": "amount"}, "journal.fields_not_list")):
        refused = client.post(url, json=body, headers=people["rep"][1])
        assert refused.status_code == 400 and refused.get_json()["code"] == code, (body, refused.get_json())
    unknown = client.post(url, json={"version": 1, "fields": ["margin"]}, headers=people["rep"][1])
    assert unknown.status_code == 422  # a field the rep may not view does not exist for them


def test_the_trash_and_restore(client, people, card):
    assert client.get("/api/v1/trash/deal", headers=people["rep"][1]).status_code == 403  # may not delete deals
    gone = client.delete(f"/api/v1/records/deal/{card.id}", headers={**people["boss"][1], "If-Match": '"1"'})
    assert gone.status_code == 204
    assert client.get(f"/api/v1/records/deal/{card.id}", headers=people["boss"][1]).status_code == 404
    trash = client.get("/api/v1/trash/deal", headers=people["boss"][1]).get_json()
    assert [(t["id"], t["deleted_by"]["name"], t["version"]) for t in trash["items"]] == [(card.id, "boss", 2)]
    back = client.post(f"/api/v1/records/deal/{card.id}/restore", headers=people["boss"][1])
    assert back.status_code == 200 and back.get_json()["id"] == card.id and back.headers["ETag"] == '"3"'
    assert client.get("/api/v1/trash/deal", headers=people["boss"][1]).get_json()["items"] == []
    again = client.post(f"/api/v1/records/deal/{card.id}/restore", headers=people["boss"][1])
    assert again.status_code == 409 and again.get_json()["code"] == "record.not_deleted"
    history = client.get(f"/api/v1/records/deal/{card.id}/history", headers=people["rep"][1]).get_json()
    assert [e["action"] for e in history["entries"]] == ["restored", "deleted", "created"]


def test_merge_and_its_undo_through_the_api(client, app, people):
    service = app.extensions["kartoteka"].service
    company = service.create("company", COMPANY, SYSTEM)
    first = service.create("contact", {"first_name": "Ann", "last_name": "Lee", "company": company.id,
                                       "phones": ["+44 20 7946 0958"]}, SYSTEM)
    second = service.create("contact", {"first_name": "Anne", "last_name": "Lee", "company": company.id,
                                        "phones": ["+44 20 7946 0959"]}, SYSTEM)
    boss = people["boss"][1]
    assert client.post("/api/v1/records/contact/merge", json=[1], headers=boss).status_code == 400
    refused = client.post("/api/v1/records/contact/merge", json={"survivor": first.id, "others": [second.id],
                                                                  "values": {"emails": ["nope"]}}, headers=boss)
    assert refused.status_code == 422 and "emails" in refused.get_json()["errors"]
    done = client.post("/api/v1/records/contact/merge", json={
        "survivor": first.id, "others": [second.id], "values": {"phones": ["+44 20 7946 0958", "+44 20 7946 0959"]}},
        headers=boss)
    assert done.status_code == 200, done.get_json()
    body = done.get_json()
    assert body["merged"] == [second.id] and body["survivor"]["phones"] == ["+442079460958", "+442079460959"]
    assert client.get(f"/api/v1/records/contact/{second.id}", headers=boss).status_code == 404
    assert client.post(body["undo"], headers=people["rep"][1]).status_code == 403
    undone = client.post(body["undo"], headers=boss)
    assert undone.status_code == 200 and undone.get_json()["restored"] == [second.id]
    assert client.get(f"/api/v1/records/contact/{second.id}", headers=boss).status_code == 200
    assert client.post(body["undo"], headers=boss).status_code == 409
