"""Likely duplicates where people meet them: the API's 409 and ?allow_duplicates=true, GET /api/v1/duplicates/<entity>,
the card form's candidates with "Save anyway", and `kartoteka duplicates ENTITY`."""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import MultiDict

from kartoteka.records.model import SYSTEM
from kartoteka.storage.tables import records
from tests.test_web import CSRF, _form_fields, sign_in, text_of

ANNA = {"last_name": "Петрова", "first_name": "Анна", "phones": ["8 912 345-67-89"], "position": "Бухгалтер",
        "city": "Казань"}


@pytest.fixture
def company(service):
    return service.create("company", {"name": "Ромашка", "country": "kz"}, SYSTEM)


@pytest.fixture
def anna(service, company):
    return service.create("contact", {**ANNA, "company": company.id}, SYSTEM)


def _count(engine, entity="contact") -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(records).where(
            records.c.entity == entity, records.c.deleted_at.is_(None))).scalar()


# --- API ------------------------------------------------------------------------------------------------------


def test_a_create_that_repeats_a_record_is_409_with_the_candidates(client, engine, admin, anna, company):
    sent = {"last_name": "Иванов", "first_name": "Олег", "phones": ["+7 (912) 345 67 89"]}
    response = client.post("/api/v1/records/contact", json=sent, headers=admin)
    assert response.status_code == 409 and response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["code"] == "duplicates.found" and body["params"]["count"] == 1
    assert "?allow_duplicates=true" in body["detail"]
    (candidate,) = body["candidates"]
    assert candidate["id"] == anna.id and candidate["title"] == "Анна Петрова" and candidate["score"] == 100
    assert candidate["show"] == {"company": company.id, "position": "Бухгалтер", "city": "Казань"}
    assert candidate["matches"] == [{"rule": "phones", "kind": "exact", "fields": ["phones"], "score": 100,
                                     "values": ["+79123456789"]}]
    assert _count(engine) == 1  # nothing saved
    again = client.post("/api/v1/records/contact?allow_duplicates=true", json=sent, headers=admin)
    assert again.status_code == 201 and _count(engine) == 2
    wrong = client.post("/api/v1/records/contact?allow_duplicates=maybe", json=sent, headers=admin)
    assert wrong.status_code == 400 and wrong.get_json()["code"] == "duplicates.allow_invalid"
    assert client.post("/api/v1/records/contact?allow_duplicates=false", json=sent, headers=admin).status_code == 409


def test_an_invalid_record_is_422_before_any_duplicate(client, admin, anna):
    response = client.post("/api/v1/records/contact", json={"last_name": "Петрова", "phones": ["+7 912 345-67-89"]},
                           headers=admin)
    assert response.status_code == 422 and "first_name" in response.get_json()["errors"]


def test_a_change_is_409_only_when_it_makes_the_record_repeat_another(client, service, admin, anna):
    other = service.create("contact", {"last_name": "Ким", "first_name": "Юна", "phones": ["+7 999 000-00-00"]},
                           SYSTEM)
    url = f"/api/v1/records/contact/{other.id}"
    refused = client.patch(url, json={"phones": ["+7 912 345-67-89"]}, headers={**admin, "If-Match": '"1"'})
    assert refused.status_code == 409 and refused.get_json()["code"] == "duplicates.found"
    assert [c["id"] for c in refused.get_json()["candidates"]] == [anna.id]
    assert service.get("contact", other.id, SYSTEM).version == 1
    saved = client.patch(url + "?allow_duplicates=1", json={"phones": ["+7 912 345-67-89"]},
                         headers={**admin, "If-Match": '"1"'})
    assert saved.status_code == 200
    # Now known to repeat Анна: a change of another field does not ask again.
    assert client.patch(url, json={"position": "CEO"}, headers={**admin, "If-Match": '"2"'}).status_code == 200


def test_a_rep_is_never_told_of_a_record_outside_their_scope(client, service, engine, make_user, company):
    _rep, rep = make_user("anna", ["sales"], department="sales")
    gleb, _ = make_user("gleb", ["support"], department="support")
    boris, _ = make_user("boris", ["sales"], department="sales")
    hidden = service.create("contact", {**ANNA, "company": company.id}, SYSTEM, owner=gleb.id)
    sent = {**ANNA, "last_name": "Петрова", "company": company.id}
    # Gleb's contact (support) is outside the rep's read scope: the save goes through as if it were not there.
    created = client.post("/api/v1/records/contact", json=sent, headers=rep)
    assert created.status_code == 201
    mine = service.create("contact", {**ANNA, "phones": ["+7 916 111-11-11"]}, SYSTEM, owner=boris.id)
    refused = client.post("/api/v1/records/contact", json={**sent, "phones": ["+7 916 111-11-11"]}, headers=rep)
    # Boris's (same department) by the phone, her own by the name at the same company; never Gleb's.
    assert {c["id"] for c in refused.get_json()["candidates"]} == {mine.id, created.get_json()["id"]}
    assert hidden.id not in {c["id"] for c in refused.get_json()["candidates"]}
    # Finance reads contacts but may not create them: 403, never the candidates.
    _fin, finance = make_user("fina", ["finance"], department="finance")
    assert client.post("/api/v1/records/contact", json=sent, headers=finance).status_code == 403
    # A colleague's contact the rep may read but not change: 403 for the change, before any 409.
    colleague = client.patch(f"/api/v1/records/contact/{mine.id}", json={"phones": ["+7 912 345-67-89"]},
                             headers={**rep, "If-Match": '"1"'})
    assert colleague.status_code == 403


def test_the_duplicates_endpoint_lists_groups_and_candidates(client, service, admin, make_user, anna, company):
    twin = service.create("contact", {**ANNA, "phones": ["+7 912 345-67-89", "+7 916 000-00-01"]}, SYSTEM)
    groups = client.get("/api/v1/duplicates/contact", headers=admin)
    assert groups.status_code == 200
    body = groups.get_json()
    assert body["rules"] == ["phones", "emails", "~full_name"] and body["more"] is False
    (group,) = body["groups"]
    assert group["ids"] == [anna.id, twin.id]
    assert group["members"][0] == {"id": anna.id, "title": "Анна Петрова", "owner": None,
                                   "show": {"company": company.id, "position": "Бухгалтер", "city": "Казань"}}
    assert {"rule": "phones", "kind": "exact", "fields": ["phones"], "score": 100, "values": ["+79123456789"],
            "ids": [anna.id, twin.id]} in group["matches"]
    found = client.get("/api/v1/duplicates/contact?phones=%2B7%20916%20000-00-01", headers=admin).get_json()
    assert [c["id"] for c in found["candidates"]] == [twin.id]
    of_record = client.get(f"/api/v1/duplicates/contact?record={anna.id}", headers=admin).get_json()
    assert [c["id"] for c in of_record["candidates"]] == [twin.id]
    unknown = client.get("/api/v1/duplicates/contact?phone=1", headers=admin)
    assert unknown.status_code == 400 and unknown.get_json()["code"] == "duplicates.unknown_field"
    assert "did you mean 'phones'" in unknown.get_json()["detail"]
    assert client.get("/api/v1/duplicates/contact?limit=0", headers=admin).get_json()["code"] == \
        "duplicates.limit_invalid"
    assert client.get("/api/v1/duplicates/contact?record=x", headers=admin).status_code == 400
    assert client.get("/api/v1/duplicates/deal", headers=admin).get_json()["groups"] == []
    _hr, hr = make_user("egor", ["hr"], department="hr")
    assert client.get("/api/v1/duplicates/contact", headers=hr).status_code == 403
    _rep, rep = make_user("vera", ["sales"])  # reads her own contacts only: no group
    assert client.get("/api/v1/duplicates/contact", headers=rep).get_json()["groups"] == []


# --- the card form ----------------------------------------------------------------------------------------------


def test_the_form_shows_the_candidates_and_saves_anyway(client, engine, make_user, anna, company):
    user, _ = make_user("root", ["admin"])
    sign_in(client, user)
    typed = {"csrf_token": CSRF, "last_name": "Петрова", "first_name": "Анна", "phones": "+7 912 345 67 89",
             "company": str(company.id), "position": "Главбух"}
    page = client.post("/cards/contact/new", data=typed)
    assert page.status_code == 409
    html = text_of(page)
    section = html[html.index('id="duplicates"'):html.index("</section>", html.index('id="duplicates"'))]
    assert f'href="/cards/contact/{anna.id}"' in section and "Анна Петрова" in section
    assert "Same Phones: +7 912 345-67-89" in section or "Same Phones: +79123456789" in section
    assert re.search(r"Full name \d+% alike", section)
    # The fields that tell them apart, the company by its title.
    assert all(text in section for text in ("Ромашка", "Бухгалтер", "Казань", "Position", "City"))
    assert _count(engine) == 1
    # What was typed is still in the form, and "Save anyway" comes after Save (Enter presses Save).
    assert 'value="Главбух"' in html
    assert html.index('<button type="submit">') < html.index('name="_allow_duplicates"')
    saved = client.post("/cards/contact/new", data=MultiDict([*_form_fields(html), ("_allow_duplicates", "1")]))
    assert saved.status_code == 302, text_of(saved)
    assert _count(engine) == 2


def test_an_edit_that_makes_a_duplicate_shows_them_too(client, service, engine, make_user, anna):
    user, _ = make_user("root", ["admin"])
    sign_in(client, user)
    other = service.create("contact", {"last_name": "Ким", "first_name": "Юна", "phones": ["+7 999 000-00-00"]},
                           SYSTEM)
    form = text_of(client.get(f"/cards/contact/{other.id}/edit"))
    fields = MultiDict([(k, v) for k, v in _form_fields(form) if k != "phones"] + [("phones", "+7 912 345-67-89"),
                                                                                  ("csrf_token", CSRF)])
    page = client.post(f"/cards/contact/{other.id}/edit", data=fields)
    assert page.status_code == 409 and f"/cards/contact/{anna.id}" in text_of(page)
    assert service.get("contact", other.id, SYSTEM)["phones"] == ["+79990000000"]
    again = MultiDict([*_form_fields(text_of(page)), ("_allow_duplicates", "1")])
    assert client.post(f"/cards/contact/{other.id}/edit", data=again).status_code == 302
    assert service.get("contact", other.id, SYSTEM)["phones"] == ["+79123456789"]
    # Saved unchanged afterwards, nothing asks again.
    plain = MultiDict([*_form_fields(text_of(client.get(f"/cards/contact/{other.id}/edit"))), ("csrf_token", CSRF)])
    assert client.post(f"/cards/contact/{other.id}/edit", data=plain).status_code == 302


def test_a_form_without_duplicates_saves_at_once(client, engine, make_user, anna):
    user, _ = make_user("root", ["admin"])
    sign_in(client, user)
    response = client.post("/cards/contact/new", data={"csrf_token": CSRF, "last_name": "Новиков",
                                                       "first_name": "Лев", "phones": "+7 916 555-55-55"})
    assert response.status_code == 302 and _count(engine) == 2


# --- the command ------------------------------------------------------------------------------------------------


def test_kartoteka_duplicates_lists_the_groups(runner, service, make_user, anna, company):
    twin = service.create("contact", {**ANNA, "first_name": "Ана", "company": company.id,
                                      "emails": ["anna@x.ru"]}, SYSTEM)
    result = runner.invoke("duplicates", "contact")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Group 1: 2 records"
    assert f"  #{anna.id} Анна Петрова (Company: Ромашка; Position: Бухгалтер; City: Казань)" in lines
    assert f"    same phones +79123456789: #{anna.id}, #{twin.id}" in lines
    assert any(re.fullmatch(rf"    full_name \d+% alike: #{anna.id}, #{twin.id}", line) for line in lines)
    assert lines[-1] == "1 group of likely duplicates in contact (rules: phones, emails, ~full_name)."
    as_json = runner.invoke("duplicates", "contact", "--json")
    assert json.loads(as_json.output.splitlines()[0])["ids"] == [anna.id, twin.id]
    make_user("vera", ["sales"])
    as_rep = runner.invoke("duplicates", "contact", "--as", "vera")
    assert as_rep.exit_code == 0 and as_rep.output.startswith("0 groups")
    none = runner.invoke("duplicates", "deal")
    assert none.exit_code == 1 and "deal has no duplicates rules" in none.output
    assert runner.invoke("duplicates", "nothing").exit_code == 1
