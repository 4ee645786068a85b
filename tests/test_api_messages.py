"""The API says every refusal by code, with parameters, in the language of Accept-Language (en, ru)."""

from __future__ import annotations

import pytest

from tests.conftest import CRM_CONFIG


@pytest.fixture
def config_dir():
    return CRM_CONFIG


def _invalid_deal(client, admin, language=None, **values):
    headers = {**admin, **({"Accept-Language": language} if language else {})}
    response = client.post("/api/v1/records/deal", json={"name": "", "quantity": "12abc", "price": "-5",
                                                          "emails": ["a@example.com", "x@"], **values},
                           headers=headers)
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    return response


def test_field_errors_come_with_codes_and_parameters(client, admin):
    body = _invalid_deal(client, admin).get_json()
    assert body["errors"]["name"] == ["Required."]  # readable, as before
    assert body["details"]["name"] == [{"code": "required", "message": "Required.", "params": {}}]
    assert body["details"]["quantity"] == [{"code": "integer.invalid", "message": "'12abc' is not a whole number.",
                                            "params": {"text": "12abc"}}]
    (limit,) = body["details"]["price"]
    assert limit == {"code": "value.min", "message": "Must be at least 0.", "params": {"limit": "0"}}
    (item,) = body["details"]["emails"]
    assert item["code"] == "list.item" and item["params"]["position"] == 2
    assert item["params"]["message"] == "'x@' is not a valid e-mail address."
    assert body["code"] == "record.invalid" and body["params"] == {"count": 4}
    assert body["detail"] == "The record has 4 invalid values."


def test_every_code_in_a_refusal_is_documented(client, admin):
    documented = "".join(path.read_text(encoding="utf-8") for path in (CRM_CONFIG.parent.parent.parent / "docs")
                         .glob("message-codes*.md"))
    body = _invalid_deal(client, admin).get_json()
    codes = {body["code"]} | {item["code"] for items in body["details"].values() for item in items}
    assert all(f"`{code}`" in documented for code in codes), codes


@pytest.mark.parametrize(("language", "required", "detail", "content_language"), [
    ("ru", "Обязательное поле.", "В записи 4 неверных значения.", "ru"),
    ("ru-RU,ru;q=0.9,en;q=0.8", "Обязательное поле.", "В записи 4 неверных значения.", "ru"),
    ("en-GB", "Required.", "The record has 4 invalid values.", "en"),
    ("de", "Required.", "The record has 4 invalid values.", "en"),
    (None, "Required.", "The record has 4 invalid values.", "en"),
])
def test_the_api_speaks_the_language_of_accept_language(client, admin, language, required, detail, content_language):
    response = _invalid_deal(client, admin, language)
    body = response.get_json()
    assert response.headers["Content-Language"] == content_language
    assert body["errors"]["name"] == [required] and body["detail"] == detail
    assert body["details"]["name"][0]["code"] == "required"  # the code is the same in every language


def test_russian_parameters_are_written_as_russian_writes_them(client, admin):
    body = _invalid_deal(client, admin, "ru", price="-1500.5").get_json()
    assert body["errors"]["price"] == ["Не меньше 0."]
    assert body["errors"]["emails"] == ["Значение 2: «x@» — неверный адрес электронной почты."]
    assert body["details"]["price"][0]["params"] == {"limit": "0"}  # params stay plain for programs


def test_a_session_language_does_not_change_what_the_api_speaks(client, admin):
    with client.session_transaction() as session:
        session["language"] = "ru"
    body = _invalid_deal(client, admin).get_json()
    assert body["errors"]["name"] == ["Required."]


@pytest.mark.parametrize(("path", "code"), [
    ("/api/v1/records/deal?nothing=1", "filter.unknown_field"),
    ("/api/v1/records/deal?cursor=garbage", "cursor.invalid"),
])
def test_bad_requests_carry_their_code(client, admin, path, code):
    english = client.get(path, headers=admin)
    russian = client.get(path, headers={**admin, "Accept-Language": "ru"})
    assert english.status_code == russian.status_code == 400
    assert english.get_json()["code"] == russian.get_json()["code"] == code
    assert english.get_json()["detail"] != russian.get_json()["detail"]


def test_an_unauthenticated_call_is_refused_by_code_in_russian(client):
    body = client.get("/api/v1/entities", headers={"Accept-Language": "ru"}).get_json()
    assert body["code"].startswith("auth.") and "kartoteka token create" in body["detail"]
    assert body["detail"].startswith("Передайте")


def test_an_unknown_option_and_a_bad_reference_are_named_by_their_labels(client, admin):
    sent = {"name": "Big deal", "stage": "open", "company": "abc"}
    russian = client.post("/api/v1/records/deal", json=sent, headers={**admin, "Accept-Language": "ru"}).get_json()
    english = client.post("/api/v1/records/deal", json=sent, headers=admin).get_json()
    assert russian["errors"]["stage"] == ["«open» — нет среди вариантов: Новая, Выиграна, Проиграна."]
    assert english["errors"]["stage"] == ["'open' is not one of the options: New, Won, Lost."]
    (stage,) = russian["details"]["stage"]
    assert stage["params"] == {"text": "open", "options": ["New", "Won", "Lost"], "values": ["new", "won", "lost"]}
    assert russian["errors"]["company"] == ["Нужен номер (тип: запись «Компания») — целое положительное число."]
    assert english["errors"]["company"] == ["Must be a Company record id (a positive whole number)."]
