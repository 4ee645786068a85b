"""The JSON API v1 end to end: auth, round trips, validation, conflicts, lists, problem+json."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from kartoteka.errors import Conflict
from kartoteka.records.model import SYSTEM
from kartoteka.records.query import encode_cursor
from kartoteka.records.service import RecordService
from kartoteka.storage.tables import records
from tests.conftest import CRM_CONFIG


@pytest.fixture
def config_dir():
    return CRM_CONFIG


def _problem(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"].startswith("https://")
    return body


def create(client, headers, entity="deal", **values):
    response = client.post(f"/api/v1/records/{entity}", json=values, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nope", "Basic abc", "Bearer kt_unknown"])
def test_requests_without_a_valid_token_get_401(client, header):
    headers = {"Authorization": header} if header else {}
    body = _problem(client.get("/api/v1/entities", headers=headers), 401)
    assert "token" in body["detail"].lower() or "bearer" in body["detail"].lower()


def test_entities_list_and_compiled_schema(client, admin):
    names = [e["name"] for e in client.get("/api/v1/entities", headers=admin).get_json()["items"]]
    assert names == ["company", "deal"]
    schema = client.get("/api/v1/entities/deal", headers=admin).get_json()
    fields = {f["name"]: f for f in schema["fields"]}
    assert fields["total"]["expr"] == "quantity * price * (1 - discount / 100)"
    assert fields["stage"]["options"][1] == {"value": "won", "label": {"en": "Won", "ru": "Выиграна"}, "color": None}
    assert fields["lost_reason"]["visible_if"] == "stage == 'lost'"
    assert schema["layout"]["tabs"][0]["label"] == {"en": "Main", "ru": "Основное"}
    assert schema["json_schema"]["required"] == ["name"]
    _problem(client.get("/api/v1/entities/nothing", headers=admin), 404)


def test_round_trip_of_every_kind_of_value(client, admin, make_user):
    manager, _ = make_user("maria", ["sales"])
    company = create(client, admin, "company", name="ООО Ромашка", inn="7707083893")
    deal = create(client, admin, name="Поставка 🚚", company=company["id"], partners=[company["id"]],
                  price="1 500,50", quantity=3, discount=10, phones=["8 912 345-67-89", "+44 20 7946 0958"],
                  emails=["Anna@Example.COM"], tags=["VIP", "vip", " опт "], close_date="31.12.2026",
                  signed=True, manager=manager.id, consent=True)
    assert deal["price"] == "1500.50" and deal["total"] == "4051.35" and deal["discount"] == "10.00"
    assert deal["phones"] == ["+79123456789", "+442079460958"]
    assert deal["emails"] == ["anna@example.com"]
    assert deal["tags"] == ["VIP", "опт"]
    assert deal["close_date"] == "2026-12-31" and deal["signed"] is True
    assert deal["consent"]["given"] is True and deal["consent"]["policy_version"] == "2026-01"
    assert deal["title"] == "Поставка 🚚" and deal["version"] == 1 and deal["entity"] == "deal"
    again = client.get(f"/api/v1/records/deal/{deal['id']}", headers=admin)
    assert again.headers["ETag"] == '"1"'
    assert again.get_json() == deal


def test_invalid_records_get_422_with_every_error(client, admin):
    response = client.post("/api/v1/records/deal", headers=admin, json={
        "name": "  ", "price": "abc", "quantity": 0, "stage": "maybe", "phones": ["12"],
        "unknown": 1, "total": 5, "id": 3, "close_date": "2020-01-01", "company": 999,
    })
    body = _problem(response, 422)
    errors = body["errors"]
    assert "is not a number" in errors["price"][0]
    assert "not one of the options" in errors["stage"][0]
    assert errors["phones"][0].startswith("Value 1:")
    assert errors["unknown"] == ["Unknown field."]
    assert errors["id"] == ["Is set by the system and cannot be changed."]
    assert "computed" in errors["total"][0]
    # what parses is validated by the service too, and reported in the same response
    assert errors["company"] == ["There is no Company with id 999."]
    assert errors["close_date"] == ["Close date is in the past"]
    assert errors["quantity"] == ["Must be at least 1."] and errors["name"] == ["Required."]
    response = client.post("/api/v1/records/deal", headers=admin, json={
        "name": "", "quantity": 0, "close_date": "2020-01-01", "company": 999, "stage": "lost"})
    errors = _problem(response, 422)["errors"]
    assert errors == {
        "name": ["Required."], "quantity": ["Must be at least 1."], "lost_reason": ["Required."],
        "close_date": ["Close date is in the past"], "company": ["There is no Company with id 999."],
    }


@pytest.mark.parametrize("body,content_type", [("not json", "application/json"), ("[]", "application/json"),
                                               ("[" * 100_000, "application/json"),
                                               ("name=x", "application/x-www-form-urlencoded")])
def test_malformed_bodies_are_refused_clearly(client, admin, body, content_type):
    response = client.post("/api/v1/records/deal", data=body, headers={**admin, "Content-Type": content_type})
    assert response.status_code in (400, 422)
    assert response.mimetype == "application/problem+json"


def test_patch_needs_a_version_and_refuses_stale_ones(client, admin):
    deal = create(client, admin, name="A", price=100)
    url = f"/api/v1/records/deal/{deal['id']}"
    _problem(client.patch(url, json={"price": 200}, headers=admin), 428)
    first = client.patch(url, json={"price": 200}, headers={**admin, "If-Match": '"1"'})
    assert first.status_code == 200 and first.get_json()["version"] == 2 and first.headers["ETag"] == '"2"'
    stale = _problem(client.patch(url, json={"price": 300, "version": 1}, headers=admin), 409)
    assert stale["current_version"] == 2
    assert client.get(url, headers=admin).get_json()["price"] == "200.00"
    ok = client.patch(url, json={"price": 300, "version": 2}, headers=admin)
    assert ok.get_json()["total"] == "300.00"
    _problem(client.patch(url, json={"price": 1}, headers={**admin, "If-Match": "abc"}), 400)


def test_delete_hides_the_record(client, admin):
    deal = create(client, admin, name="Gone")
    url = f"/api/v1/records/deal/{deal['id']}"
    _problem(client.delete(url, headers={**admin, "If-Match": '"7"'}), 409)
    missing = _problem(client.delete(url, headers=admin), 428)  # a delete, too, says which version it saw
    assert "If-Match" in missing["detail"]
    assert client.delete(url, headers={**admin, "If-Match": '"1"'}).status_code == 204
    _problem(client.get(url, headers=admin), 404)
    _problem(client.delete(url, headers={**admin, "If-Match": '"2"'}), 404)
    assert client.get("/api/v1/records/deal", headers=admin).get_json()["items"] == []


def test_list_filters_sort_and_cursor(client, admin):
    for i in range(7):
        create(client, admin, name=f"Deal {i}", quantity=i + 1, price=100 * (i % 3),
               stage=["lost", "won"][i % 2], lost_reason="price" if i % 2 == 0 else None,
               tags=["vip"] if i % 3 == 0 else [])
    get = lambda query: client.get(f"/api/v1/records/deal?{query}", headers=admin)  # noqa: E731
    assert [d["quantity"] for d in get("quantity__gte=3&sort=-quantity").get_json()["items"]] == [7, 6, 5, 4, 3]
    assert [d["name"] for d in get("stage=won&sort=name").get_json()["items"]] == ["Deal 1", "Deal 3", "Deal 5"]
    assert len(get("stage__in=won,lost").get_json()["items"]) == 7
    assert len(get("tags=vip").get_json()["items"]) == 3
    assert len(get("tags__isnull=true").get_json()["items"]) == 4
    assert len(get("name__contains=DEAL 1").get_json()["items"]) == 1
    assert len(get("price__lt=150.5").get_json()["items"]) == 5
    assert get("stage__ne=won&total=true").get_json()["total"] == 4
    seen, url = [], "/api/v1/records/deal?sort=price&limit=3"
    while url:
        response = client.get(url, headers=admin)
        page = response.get_json()
        seen += [d["id"] for d in page["items"]]
        link = response.headers.get("Link")
        url = link[1:link.index(">")] if link else None
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 7


@pytest.mark.parametrize("query,fragment", [
    ("nope=1", "unknown field 'nope'"),
    ("stage__between=1", "Unknown filter operator 'between'"),
    ("quantity=abc", "is not a whole number"),
    ("sort=-nope", "Cannot sort by unknown field"),
    ("limit=0", "limit must be between"),
    ("limit=x", "limit must be a whole number"),
    ("cursor=zzz", "cursor is malformed"),
    ("sort=price&cursor=" + encode_cursor("price", "abc", 1), "cursor is malformed"),
    ("sort=-created_at&cursor=" + encode_cursor("-created_at", "yesterday", 1), "cursor is malformed"),
    ("cursor=" + encode_cursor("name", "x", 1), "belongs to another sort order"),
    ("tags__gt=1", "does not apply"),
    ("margin=1", "unknown field 'margin'"),
    ("id=--5", "is not a whole number"),
    ("owner__in=1,--2", "is not a whole number"),
    ("id=99999999999999999999999", "is not a whole number"),
    ("cursor=" + encode_cursor("-id", None, 10**25), "cursor is malformed"),
    ("sort=price&cursor=" + encode_cursor("price", "NaN", 1), "cursor is malformed"),
    ("sort=price&cursor=" + encode_cursor("price", "1e999", 1), "cursor is malformed"),
    ("consent=true", "holds a structured value"),
    ("sort=consent", "Cannot sort by 'consent'"),
    ("stage__in=,", "needs at least one value"),
    ("name__contains=", "needs some text"),
])
def test_bad_list_queries_get_400(client, make_user, query, fragment):
    _, headers = make_user("sam", ["sales"])
    body = _problem(client.get(f"/api/v1/records/deal?{query}", headers=headers), 400)
    assert fragment.lower() in body["detail"].lower()


def test_restricted_fields_never_reach_other_roles(client, admin, make_user):
    _, sales = make_user("sasha", ["sales"])
    _, finance = make_user("fina", ["finance"], department="finance")
    deal = create(client, admin, name="Secret", price=1000, margin=30)
    assert deal["margin"] == "30.00" and deal["margin_amount"] == "300.00"
    url = f"/api/v1/records/deal/{deal['id']}"
    seen = client.get(url, headers=sales).get_json()
    assert "margin" not in seen and "margin_amount" not in seen
    names = {f["name"] for f in client.get("/api/v1/entities/deal", headers=sales).get_json()["fields"]}
    assert "margin" not in names and "margin_amount" not in names
    refused = _problem(client.patch(url, json={"margin": 50, "version": 1}, headers=sales), 422)
    assert refused["errors"] == {"margin": ["Unknown field."]}
    assert client.get(url, headers=finance).get_json()["margin"] == "30.00"
    changed = client.patch(url, json={"margin": 10, "version": 1}, headers=finance).get_json()
    assert changed["margin_amount"] == "100.00"
    layout = client.get("/api/v1/entities/deal", headers=finance).get_json()["layout"]
    assert layout["tabs"][0]["groups"][0]["label"] == {"en": "Money"}


def test_unique_values_are_enforced(client, admin):
    create(client, admin, "company", name="A", inn="7707083893")
    response = client.post("/api/v1/records/company", json={"name": "B", "inn": "7707083893"}, headers=admin)
    assert "Must be unique" in _problem(response, 422)["errors"]["inn"][0]


def test_unknown_routes_and_methods_are_problems(client, admin):
    _problem(client.get("/api/v1/records/nothing", headers=admin), 404)
    _problem(client.put("/api/v1/records/deal/1", json={}, headers=admin), 405)
    _problem(client.get("/api/v1/records/deal/999", headers=admin), 404)


@pytest.mark.parametrize("text", ["bell\u0007", "esc\u001b[31m"])
def test_control_characters_are_refused_not_a_500(client, admin, text):
    body = _problem(client.post("/api/v1/records/deal", json={"name": text}, headers=admin), 422)
    assert body["errors"]["name"] == ["Contains control characters; remove them."]


def test_nul_is_refused_at_the_edge_with_the_field_named(client, admin):
    # NUL cannot be stored at all (PostgreSQL refuses it), so the request guard answers before any handler.
    body = _problem(client.post("/api/v1/records/deal", json={"name": "nul\u0000byte"}, headers=admin), 400)
    assert body["detail"] == "The text of 'name' contains a NUL character (U+0000), which cannot be stored."


def test_the_root_url_points_at_the_api(client):
    body = client.get("/").get_json()
    assert body["api"] == "/api/v1/entities" and body["records"] == "/api/v1/records/<entity>"
    assert "deal" not in str(body) and "hr_record" not in str(body)  # anyone may ask: no card names


def test_json_keeps_cyrillic_and_the_card_order(client, admin):
    response = client.post("/api/v1/records/deal", json={"name": "Сделка", "price": 1}, headers=admin)
    text = response.get_data(as_text=True)
    assert "Сделка" in text
    keys = list(response.get_json())
    assert keys[:3] == ["id", "entity", "version"] and keys.index("name") < keys.index("stage") < keys.index("price")


def test_a_check_on_hidden_fields_never_refuses_and_flags_the_record_for_those_who_see_them(client, admin, make_user):
    _, sales = make_user("sasha", ["sales"])
    deal = create(client, admin, name="Quiet", price=100, margin=60)
    url = f"/api/v1/records/deal/{deal['id']}"
    # Refusing would tell the rep which way the check over `margin` went: the save goes through.
    saved = client.patch(url, json={"price": 5, "version": 1}, headers=sales)
    assert saved.status_code == 200, saved.get_data(as_text=True)
    assert "margin" not in saved.get_data(as_text=True) and "needs_attention" not in saved.get_json()
    assert "needs_attention" not in client.get(url, headers=sales).get_json()
    # Whoever can see the fields sees the flag, and their next save must fix it.
    seen = client.get(url, headers=admin).get_json()
    cheap = "A cheap deal cannot have a margin of 50% or more"
    assert seen["needs_attention"] == [{"field": None, "code": "validation.failed", "message": cheap,
                                        "params": {"label": cheap}}]
    body = _problem(client.patch(url, json={"name": "Quiet deal", "version": 2}, headers=admin), 422)
    assert body["errors"] == {"_record": ["A cheap deal cannot have a margin of 50% or more"]}
    fixed = client.patch(url, json={"margin": 10, "version": 2}, headers=admin)
    assert fixed.status_code == 200 and "needs_attention" not in fixed.get_json()


def response_text(body):
    import json

    return json.dumps(body)


def test_a_record_read_can_be_sent_back_whole(client, admin, make_user):
    _, sales = make_user("sasha", ["sales"])
    deal = create(client, admin, name="Whole", price=100, quantity=2, margin=10)
    url = f"/api/v1/records/deal/{deal['id']}"
    seen = client.get(url, headers=sales).get_json()
    fields = {k: v for k, v in seen.items() if k not in ("id", "entity", "title", "created_at", "updated_at",
                                                         "created_by", "updated_by")}
    fields["quantity"] = 3
    response = client.patch(url, json=fields, headers=sales)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["total"] == "300.00" and response.get_json()["version"] == 2
    fields.update(total="1.00", version=2)
    errors = _problem(client.patch(url, json=fields, headers=sales), 422)["errors"]
    assert errors == {"total": ["Is computed by a formula and cannot be set."]}


def test_the_next_link_keeps_repeated_filters(client, admin):
    for i, stage in enumerate(["new", "won", "lost", "new", "new", "won"]):
        create(client, admin, name=f"D{i}", stage=stage, lost_reason="x" if stage == "lost" else None)
    url, seen = "/api/v1/records/deal?stage__ne=won&stage__ne=lost&limit=1", []
    while url:
        response = client.get(url, headers=admin)
        seen += [d["stage"] for d in response.get_json()["items"]]
        link = response.headers.get("Link")
        url = link[1:link.index(">")] if link else None
    assert seen == ["new", "new", "new"]


def test_contains_matches_fragments_of_emails_phones_and_names(client, admin):
    create(client, admin, name="Ёлка Соловьёв", emails=["boss@romashka.ru"], phones=["+7 912 345-67-89"])
    get = lambda query: client.get(f"/api/v1/records/deal?{query}", headers=admin).get_json()  # noqa: E731
    assert len(get("emails__contains=romashka")["items"]) == 1
    assert len(get("phones__contains=912345")["items"]) == 1
    assert len(get("name__contains=соловьев")["items"]) == 1
    assert len(get("q=елка")["items"]) == 1


def test_if_match_and_version_must_agree(client, admin):
    deal = create(client, admin, name="A")
    response = client.patch(f"/api/v1/records/deal/{deal['id']}", json={"name": "B", "version": 2},
                            headers={**admin, "If-Match": '"1"'})
    assert "send one" in _problem(response, 400)["detail"]


def test_a_delete_loses_to_a_save_that_landed_after_it_read_the_card(app, service, monkeypatch):
    """SQLite takes no row lock: the delete's write must still check the version it read."""
    if service.dialect == "postgresql":
        pytest.skip("PostgreSQL locks the row on reading it: no save can land in between")
    deal = service.create("deal", {"name": "Contested"}, SYSTEM)
    original = RecordService._values
    calls = []

    def save_in_between(self, entity, data):
        if not calls:  # the delete has read the card; someone saves it now
            calls.append(1)
            with self.engine.begin() as conn:
                conn.execute(sa.update(records).where(records.c.id == deal.id)
                             .values(version=records.c.version + 1))
        return original(self, entity, data)

    monkeypatch.setattr(RecordService, "_values", save_in_between)
    with pytest.raises(Conflict):
        service.delete("deal", deal.id, SYSTEM, expected_version=1)
    monkeypatch.undo()
    assert service.get("deal", deal.id, SYSTEM).version == 2  # still there, with the other save
