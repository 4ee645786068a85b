"""The card's history page with its revert buttons, and the trash page with restore and purge (shipped config)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from kartoteka.records.model import SYSTEM
from kartoteka.storage.tables import journal, records
from tests.test_web import CSRF, sign_in, text_of

COMPANY = {"name": "Northwind Trading Ltd", "country": "gb"}


@pytest.fixture
def people(make_user):
    return {name: make_user(name, roles, department)[0] for name, roles, department in
            (("rep", ["sales"], "sales"), ("fin", ["finance"], "finance"), ("boss", ["admin"], None))}


@pytest.fixture
def card(app, people):
    service = app.extensions["kartoteka"].service
    company = service.create("company", COMPANY, SYSTEM)
    deal = service.create("deal", {"name": "Rollout", "company": company.id, "amount": "1000"}, people["rep"])
    service.update("deal", deal.id, {"amount": "2500", "next_step": "Send the offer"}, people["rep"],
                   expected_version=1)
    service.update("deal", deal.id, {"margin": "37.5"}, people["fin"], expected_version=2)
    return deal


def test_the_history_page_shows_changes_the_reader_may_view_and_undoes_one(client, app, people, card):
    sign_in(client, people["rep"])
    card_page = text_of(client.get(f"/cards/deal/{card.id}"))
    assert f"/cards/deal/{card.id}/history" in card_page
    page = text_of(client.get(f"/cards/deal/{card.id}/history"))
    assert "Version 3" in page and "Version 1" in page and "Send the offer" in page
    assert "37.5" not in page and "Margin" not in page
    assert "1 more field changed that you may not view." in page or "more fields changed" in page
    done = client.post(f"/cards/deal/{card.id}/revert", data={"csrf_token": CSRF, "version": "3",
                                                                "to_version": "1", "field": "amount"})
    assert done.status_code == 302
    service = app.extensions["kartoteka"].service
    saved = service.get("deal", card.id, SYSTEM)
    assert saved["amount"] == 1000 and saved["next_step"] == "Send the offer" and saved.version == 4
    followed = text_of(client.get(done.headers["Location"]))
    assert "Back to version 1: Amount." in followed and "brought back to version 1" in followed
    stale = client.post(f"/cards/deal/{card.id}/revert", data={"csrf_token": CSRF, "version": "3", "to_version": "1"},
                        follow_redirects=True)
    assert "Nothing was changed" in text_of(stale)
    assert service.get("deal", card.id, SYSTEM).version == 4


def test_the_trash_page_restores_and_an_admin_purges(client, app, people, card):
    service = app.extensions["kartoteka"].service
    sign_in(client, people["rep"])
    assert client.get("/cards/deal/trash").status_code == 403  # reps may not delete deals
    sign_in(client, people["boss"])
    assert 'href="/cards/deal/trash"' in text_of(client.get("/cards/deal/"))
    client.post(f"/cards/deal/{card.id}/delete", data={"csrf_token": CSRF, "version": "3"})
    trash = text_of(client.get("/cards/deal/trash"))
    assert "Rollout" in trash and "boss" in trash
    back = client.post(f"/cards/deal/{card.id}/restore", data={"csrf_token": CSRF})
    assert back.status_code == 302 and back.headers["Location"].endswith(f"/cards/deal/{card.id}")
    assert service.get("deal", card.id, SYSTEM)["name"] == "Rollout"
    assert "The trash is empty." in text_of(client.get("/cards/deal/trash"))

    service.delete("deal", card.id, people["boss"])
    gone = client.post(f"/cards/deal/{card.id}/purge", data={"csrf_token": CSRF}, follow_redirects=True)
    assert "Removed for good." in text_of(gone)
    with app.extensions["kartoteka"].engine.connect() as conn:
        assert conn.execute(sa.select(records.c.id).where(records.c.id == card.id)).first() is None
        assert conn.execute(sa.select(journal.c.id).where(journal.c.record_id == card.id)).first() is None


def test_a_reference_to_a_card_in_the_trash_shows_it_as_deleted(client, app, people):
    service = app.extensions["kartoteka"].service
    company = service.create("company", COMPANY | {"name": "Gone Ltd"}, SYSTEM)
    contact = service.create("contact", {"first_name": "Ann", "last_name": "Lee", "company": company.id,
                                         "phones": ["+44 20 7946 0958"]}, SYSTEM, owner=people["boss"].id)
    service.delete("company", company.id, SYSTEM)
    sign_in(client, people["boss"])
    page = client.get(f"/cards/contact/{contact.id}").get_data(as_text=True)
    assert '<span class="deleted-reference">Gone Ltd (deleted)</span>' in page
    assert f'href="/cards/company/{company.id}"' not in page
    service.restore("company", company.id, SYSTEM)
    assert f'href="/cards/company/{company.id}"' in client.get(f"/cards/contact/{contact.id}").get_data(as_text=True)


def test_the_merge_screen_merges_field_by_field_and_the_survivor_page_undoes_it(client, app, people):
    service = app.extensions["kartoteka"].service
    company = service.create("company", COMPANY, SYSTEM)
    first = service.create("contact", {"first_name": "Ann", "last_name": "Lee", "company": company.id,
                                       "phones": ["+44 20 7946 0958"], "position": "CFO"}, SYSTEM)
    second = service.create("contact", {"first_name": "Anne", "last_name": "Lee", "company": company.id,
                                        "phones": ["+44 20 7946 0959"], "city": "Leeds"}, SYSTEM)
    sign_in(client, people["rep"])
    assert client.get(f"/cards/contact/merge?ids={first.id},{second.id}").status_code == 403
    sign_in(client, people["boss"])
    screen = text_of(client.get(f"/cards/contact/merge?ids={first.id},{second.id}"))
    assert "Keep this card" in screen and "Leeds" in screen and "every value" in screen
    assert client.get(f"/cards/contact/merge?ids={first.id}").status_code == 400
    done = client.post("/cards/contact/merge", data={
        "csrf_token": CSRF, "ids": f"{first.id},{second.id}", "survivor": str(first.id),
        "pick-first_name": str(second.id), "pick-phones": "all", "pick-city": str(second.id)})
    assert done.status_code == 302 and f"/cards/contact/{first.id}?merged=" in done.headers["Location"]
    kept = service.get("contact", first.id, SYSTEM)
    assert (kept["first_name"], kept["city"], kept["position"]) == ("Anne", "Leeds", "CFO")
    assert kept["phones"] == ["+442079460958", "+442079460959"]
    page = text_of(client.get(done.headers["Location"]))
    assert "Merged 1 card into this one." in page and "Undo the merge" in page
    merge_id = done.headers["Location"].rsplit("=", 1)[1]
    undone = client.post(f"/cards/merges/{merge_id}/undo", data={"csrf_token": CSRF,
                                                                   "next": f"/cards/contact/{first.id}"})
    assert undone.status_code == 302 and undone.headers["Location"].endswith(f"/cards/contact/{first.id}")
    assert service.get("contact", second.id, SYSTEM)["city"] == "Leeds"
    assert service.get("contact", first.id, SYSTEM)["first_name"] == "Ann"


def test_the_cards_timeline_shows_its_changes_as_the_reader_may_see_them(client, app, people, card):
    sign_in(client, people["rep"])
    page = text_of(client.get(f"/cards/deal/{card.id}"))
    assert "Card created" in page and "Changed" in page and "Send the offer" in page
    assert "37.5" not in page and "more fields changed that you may not view." in page  # margin and its amount
    assert f'/cards/deal/{card.id}/history#version-2' in page
    sign_in(client, people["fin"])
    assert "37.5" in text_of(client.get(f"/cards/deal/{card.id}"))


def test_a_cards_likely_duplicates_lead_to_the_merge_screen_and_its_history_undoes_the_merge(client, app, people):
    service = app.extensions["kartoteka"].service
    company = service.create("company", COMPANY, SYSTEM)
    first = service.create("contact", {"first_name": "Ann", "last_name": "Lee", "company": company.id,
                                       "phones": ["+44 20 7946 0958"]}, SYSTEM)
    second = service.create("contact", {"first_name": "Ann", "last_name": "Lee", "company": company.id,
                                        "phones": ["+44 20 7946 0958"], "city": "Leeds"}, SYSTEM)
    sign_in(client, people["boss"])
    page = text_of(client.get(f"/cards/contact/{first.id}"))
    assert "This card looks like 1 other:" in page
    assert f"/cards/contact/merge?ids={first.id}%2C{second.id}" in page or \
        f"/cards/contact/merge?ids={first.id},{second.id}" in page
    screen = client.get(f"/cards/contact/merge?ids={first.id},{second.id}").get_data(as_text=True)
    assert f'name="ids" value="{first.id},{second.id}"' in screen
    done = client.post("/cards/contact/merge", data={"csrf_token": CSRF, "ids": f"{first.id},{second.id}",
                                                     "survivor": str(first.id), "pick-city": str(second.id)})
    assert done.status_code == 302
    history = text_of(client.get(f"/cards/contact/{first.id}/history"))
    assert "Undo the merge" in history
    merge_id = done.headers["Location"].rsplit("=", 1)[1]
    undone = client.post(f"/cards/merges/{merge_id}/undo", data={
        "csrf_token": CSRF, "next": f"/cards/contact/{first.id}/history"}, follow_redirects=True)
    assert "The merge was undone: 1 card is back." in text_of(undone)
    again = client.post(f"/cards/merges/{merge_id}/undo", data={
        "csrf_token": CSRF, "next": f"/cards/contact/{first.id}/history"}, follow_redirects=True)
    assert "The merge was not undone" in text_of(again)
    sign_in(client, people["rep"])  # may not merge contacts: no offer
    assert "looks like" not in text_of(client.get(f"/cards/contact/{first.id}"))
