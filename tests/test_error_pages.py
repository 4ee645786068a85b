"""Error pages and problems are in the reader's language, with a code, whoever raised them (Werkzeug included)."""

from __future__ import annotations

import re

import pytest

RU = {"Accept-Language": "ru"}


@pytest.mark.parametrize(("method", "path", "status", "title", "detail"), [
    ("get", "/no-such-page", 404, "Не найдено", "По этому адресу страницы нет."),
    ("get", "/cards/deal/abc", 404, "Не найдено", "По этому адресу страницы нет."),
    ("put", "/login", 405, "Метод не разрешён", "Этот адрес не принимает такой запрос."),
])
def test_framework_errors_read_in_russian(client, method, path, status, title, detail):
    response = getattr(client, method)(path, headers={**RU, "Accept": "text/html"})
    page = response.get_data(as_text=True)
    assert response.status_code == status
    assert f"{status} · {title}" in page and detail in page and '<html lang="ru">' in page
    assert "The requested URL" not in page and "not allowed for the requested URL" not in page


def test_api_framework_errors_have_a_code_and_a_translated_title(client):
    body = client.get("/api/v1/no-such-thing", headers=RU).get_json()
    assert body["code"] == "http.not_found" and body["title"] == "Не найдено"
    assert body["detail"] == "По этому адресу страницы нет."
    english = client.get("/api/v1/no-such-thing").get_json()
    assert english["title"] == "Not found" and english["detail"] == "There is no page at this address."


def test_a_problem_title_is_translated_like_its_detail(client, admin):
    body = client.post("/api/v1/records/deal", json={}, headers={**admin, **RU}).get_json()
    assert body["title"] == "Запись не сохранена" and body["code"] == "record.invalid"


def test_a_request_refused_before_the_user_is_known_still_names_its_language(client):
    page = client.get("/cards/?q=a%00b", headers={**RU, "Accept": "text/html"}).get_data(as_text=True)
    assert re.search(r'<html lang="ru">', page)
    english = client.get("/cards/?q=a%00b", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert '<html lang="en">' in english
