"""Security headers on every response, a Secure session cookie over HTTPS, pages that need no inline code.

Before kartoteka/web/security.py no response had a Content-Security-Policy, X-Frame-Options, nosniff or a
Referrer-Policy, the session cookie was not Secure over HTTPS, and the card pages set option colours in
inline style attributes, which the policy forbids. tests/e2e/test_csp.py checks the same pages in Chromium.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from kartoteka import create_app
from kartoteka.config import Settings
from kartoteka.records.model import SYSTEM
from kartoteka.users import PAIR_LIMIT, start_session
from tests.test_web import CSRF, CSRF_RAW

EXPECTED = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def sign_in(app, client, user) -> None:
    state = app.extensions["kartoteka"]
    with client.session_transaction() as session:
        session.update(_user_id=start_session(state.engine, user.id, state.clock.now()), csrf_token=CSRF_RAW)


@pytest.fixture
def deal(service):
    company = service.create("company", {"name": "Northwind Trading Ltd", "country": "gb"}, SYSTEM)
    return service.create("deal", {"name": "Headers", "company": company.id, "stage": "proposal",
                                   "source": "referral"}, SYSTEM)


def test_every_kind_of_response_carries_the_security_headers(app, make_user, deal):
    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("an unexpected failure")

    admin, headers = make_user("boss", ["admin"])
    client = app.test_client()
    anonymous = {
        "sign-in page": client.get("/login"),
        "redirect to sign-in": client.get("/cards/"),
        "API answer": client.get("/api/v1/entities", headers=headers),
        "API record": client.get(f"/api/v1/records/deal/{deal.id}", headers=headers),
        "API 401": client.get("/api/v1/entities"),
        "API 404": client.get("/api/v1/records/deal/999999", headers=headers),
        "API 405": client.delete("/api/v1/entities", headers=headers),
        "static file": client.get("/static/app.css"),
        "vendor file": client.get("/vendor/htmx.min.js"),
        "option colours": client.get("/option-colors.css"),
        "HTML 404": client.get("/no/such/page", headers={"Accept": "text/html"}),
        "CSRF refusal": client.post("/cards/lead/new", data={}),
        "500": client.get("/boom", headers={"Accept": "text/html"}),
    }
    sign_in(app, client, admin)
    pages = {
        "card": client.get(f"/cards/deal/{deal.id}"),
        "HTML 403": client.get("/cards/nope/"),
    }
    for name, response in {**anonymous, **pages}.items():
        for header, value in EXPECTED.items():
            assert response.headers.get(header) == value, (name, response.status_code, header)
    assert anonymous["static file"].status_code == 200 and anonymous["500"].status_code == 500
    assert anonymous["API 405"].status_code == 405 and anonymous["HTML 404"].status_code == 404
    for response in {**anonymous, **pages}.values():
        response.close()  # files are streamed


def test_the_session_cookie_is_secure_over_https_only(app):
    over_https = app.test_client().get("/login", base_url="https://localhost").headers["Set-Cookie"]
    assert "kartoteka_session=" in over_https and "; Secure" in over_https
    assert "HttpOnly" in over_https and "SameSite=Lax" in over_https
    plain = app.test_client().get("/login", base_url="http://localhost").headers["Set-Cookie"]
    assert "; Secure" not in plain


def test_signing_in_over_https_sets_a_secure_cookie(app, make_user):
    make_user("anna", ["sales"], "sales", password="correct horse")
    client = app.test_client()
    page = client.get("/login", base_url="https://localhost").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = {"csrf_token": token, "username": "anna", "password": "correct horse"}
    # Over HTTPS the form must come from a page of this host (Flask-WTF's Referer check against cookie tossing);
    # browsers send the Referer, as Referrer-Policy: same-origin lets them.
    foreign = client.post("/login", base_url="https://localhost", data=form,
                          headers={"Referer": "https://evil.example/login"})
    assert foreign.status_code == 400 and "did not come from a page of this site" in foreign.text
    response = client.post("/login", base_url="https://localhost", data=form,
                           headers={"Referer": "https://localhost/login"})
    assert response.status_code == 302 and "; Secure" in response.headers["Set-Cookie"]


@pytest.fixture
def proxied_app(app):
    """The same app behind one trusted reverse proxy (KARTOTEKA_TRUSTED_PROXIES=1)."""
    state = app.extensions["kartoteka"]
    application = create_app(replace(state.settings, trusted_proxies=1), state.clock)
    yield application
    application.extensions["kartoteka"].engine.dispose()


def test_x_forwarded_proto_is_believed_only_from_trusted_proxies(app, proxied_app):
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
    assert "; Secure" in proxied_app.test_client().get("/login", headers=forwarded).headers["Set-Cookie"]
    assert "; Secure" not in app.test_client().get("/login", headers=forwarded).headers["Set-Cookie"]


def test_x_forwarded_for_is_the_sign_in_address_only_behind_trusted_proxies(app, proxied_app, make_user):
    make_user("anna", ["sales"], "sales", password="correct horse")

    def attempt(application, forwarded_for: str) -> int:
        client = application.test_client()
        page = client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        return client.post("/login", headers={"X-Forwarded-For": forwarded_for},
                           data={"csrf_token": token, "username": "anna", "password": "wrong horse"}).status_code

    assert [attempt(proxied_app, "203.0.113.7") for _ in range(PAIR_LIMIT + 1)] == [401] * PAIR_LIMIT + [429]
    assert attempt(proxied_app, "198.51.100.9") == 401  # another client behind the proxy
    # Without trust the header is the client's say-so: every attempt is the proxy's own address.
    assert [attempt(app, f"192.0.2.{i}") for i in range(PAIR_LIMIT + 1)] == [401] * PAIR_LIMIT + [429]


def test_trusted_proxies_come_from_the_environment(tmp_path):
    base = {"KARTOTEKA_INSTANCE_DIR": str(tmp_path), "KARTOTEKA_SECRET_KEY": "x"}
    assert Settings.from_env(base).trusted_proxies == 0
    assert Settings.from_env({**base, "KARTOTEKA_TRUSTED_PROXIES": "2"}).trusted_proxies == 2
    with pytest.raises(ValueError, match="KARTOTEKA_TRUSTED_PROXIES"):
        Settings.from_env({**base, "KARTOTEKA_TRUSTED_PROXIES": "yes"})


INLINE = [
    (re.compile(r"<[a-z][^>]*\sstyle\s*=", re.I), "a style attribute"),
    (re.compile(r"<style[\s>]", re.I), "a <style> element"),
    (re.compile(r"<script(?![^>]*\ssrc=)[^>]*>", re.I), "an inline <script>"),
    (re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I), "an on… event handler attribute"),
    (re.compile(r"<[a-z][^>]*\shx-on", re.I), "an hx-on attribute (htmx would need eval)"),
    (re.compile(r"javascript:", re.I), "a javascript: URL"),
]


def test_pages_need_no_inline_style_or_script(app, make_user, deal, service):
    """What the policy would block is not in any page: option colours come from classes instead."""
    admin, _ = make_user("boss", ["admin"])
    client = app.test_client()
    login = client.get("/login").get_data(as_text=True)
    sign_in(app, client, admin)
    service.update("deal", deal.id, {"tags": ["vip"]}, SYSTEM, expected_version=deal.version)
    pages = {"login": login}
    for path in ("/cards/", "/cards/deal/", f"/cards/deal/{deal.id}", f"/cards/deal/{deal.id}/edit",
                 "/cards/deal/new", "/cards/deal/kanban", "/cards/lead/", "/cards/lead/kanban", "/cards/lead/new",
                 "/cards/ticket/kanban", "/admin/users", "/logout"):
        response = client.get(path)
        assert response.status_code == 200, path
        pages[path] = response.get_data(as_text=True)
    live = client.post("/cards/deal/live", data={"csrf_token": CSRF, "name": "x", "stage": "lost", "_touched": "stage"})
    assert live.status_code == 200
    pages["live form answer"] = live.get_data(as_text=True)
    for name, html in pages.items():
        for pattern, what in INLINE:
            found = pattern.search(html)
            assert found is None, f"{name} has {what}: {found.group(0)[:120]}"
    assert '<meta name="htmx-config" content=\'{"includeIndicatorStyles": false, "allowEval": false}\'>' in login

    # Option colours: the classes the pages use are the ones the generated stylesheet defines.
    sheet = client.get("/option-colors.css")
    assert sheet.status_code == 200 and sheet.mimetype == "text/css"
    defined = dict(re.findall(r"\.(opt-[a-z]-[0-9a-z]+) \{ --opt: ([#0-9a-z]+); \}", sheet.get_data(as_text=True)))
    used = {name for html in pages.values() for name in re.findall(r'class="[^"]*\b(opt-[a-z]-[0-9a-z]+)', html)}
    assert used and used <= set(defined)
    assert defined["opt-h-1e88e5"] == "#1e88e5"  # deal stage "proposal"
    kanban = pages["/cards/deal/kanban"]
    assert re.search(r'<section class="kanban-col opt-h-1e88e5" data-stage="proposal"', kanban)
    card = pages[f"/cards/deal/{deal.id}"]
    assert re.search(r'<span class="badge opt-h-1e88e5">', card)
    form = pages[f"/cards/deal/{deal.id}/edit"]
    assert re.search(r'<select id="f-stage"[^>]*class="opt-h-1e88e5"', form)  # the chosen colour without JS


def test_the_option_stylesheet_is_cached_by_version(app, client):
    page = client.get("/login").get_data(as_text=True)
    href = re.search(r'<link rel="stylesheet" href="(/option-colors\.css\?v=[0-9a-f]+)">', page).group(1)
    versioned = client.get(href)
    assert versioned.headers["Cache-Control"] == "public, max-age=86400" and versioned.headers["ETag"]
    again = client.get(href, headers={"If-None-Match": versioned.headers["ETag"]})
    assert again.status_code == 304
    assert client.get("/option-colors.css?v=old").headers["Cache-Control"] == "public, max-age=0"
