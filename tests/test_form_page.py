"""The card form's page compiled once per shape (kartoteka/web/formpage.py) shows each request's own texts.

The app under test checks every compiled page against the template rendering it directly (FormPages.verify), so each
form page any test opens proves the shape holds every flag the page depends on; these tests add what that cannot see:
that the compiled path is taken, that people of one shape share a page but not their names, tokens or paths, and that
the skeleton refuses what is not its own.
"""

from __future__ import annotations

import re

import pytest
from jinja2 import ChoiceLoader, DictLoader
from markupsafe import Markup, escape
from werkzeug.datastructures import MultiDict

from kartoteka.records.model import SYSTEM
from kartoteka.web import formpage
from kartoteka.web.formrows import HoleMisused
from kartoteka.web.security import escaped
from tests.test_web import CSRF, sign_in

ENTITIES = ("lead", "contact", "company", "deal", "ticket", "hr_record")


def _pages(app):
    return app.extensions["kartoteka.form_pages"]


def _company(service, name: str = "Acme <b>&\" Ltd", country: str = "gb"):
    return service.create("company", {"name": name, "country": country}, SYSTEM)


def _csrf_tokens(page: str) -> set[str]:
    return set(re.findall(r'name="csrf-token" content="([^"]+)"', page)
               + re.findall(r'name="csrf_token" value="([^"]+)"', page)
               + re.findall(r'"X-CSRF-Token": "([^"]+)"', page))


@pytest.mark.parametrize("language", ["en", "ru"])
def test_new_forms_of_every_shipped_card_are_compiled_and_match_the_template(app, client, make_user, language):
    user, _ = make_user("sofia", ["admin"], language=language)
    sign_in(client, user)
    for name in ENTITIES:
        response = client.get(f"/cards/{name}/new")
        assert response.status_code == 200, name
    assert len(_pages(app)._compiled) == len(ENTITIES)


def test_roles_departments_and_languages_each_get_their_own_page(app, client, service, make_user):
    """An administrator, a finance user (the deal's layout for their department) and a Russian reader."""
    deal = service.create("deal", {"name": "Big deal", "stage": "new", "company": _company(service).id}, SYSTEM)
    pages = {}
    for username, roles, department, language in (("anna", ["admin"], None, "en"),
                                                  ("fedor", ["finance"], "finance", "en"),
                                                  ("olga", ["admin"], None, "ru")):
        user, _ = make_user(username, roles, department=department, language=language)
        sign_in(client, user)
        response = client.get(f"/cards/deal/{deal.id}/edit")
        assert response.status_code == 200
        pages[username] = response.get_data(as_text=True)
    assert len(_pages(app)._compiled) == 3
    finance_first = 'data-section="t0">Finance</a>'  # the finance department's layout of the deal
    assert finance_first in pages["fedor"] and finance_first not in pages["anna"]
    assert "Сохранить" in pages["olga"] and "Сохранить" not in pages["anna"]


def test_people_of_one_shape_share_a_page_but_not_their_names_tokens_or_paths(app, service, make_user):
    company = _company(service)
    people = {username: make_user(username, ["admin"])[0] for username in ("anna", "boris")}
    views = []
    for username, raw in (("anna", "token-of-anna"), ("boris", "token-of-boris")):
        user = people[username]
        client = app.test_client()
        sign_in(client, user)
        with client.session_transaction() as session:
            session["csrf_token"] = raw
        page = client.get(f"/cards/company/{company.id}/edit?from={username}").get_data(as_text=True)
        views.append((username, page))
    assert len(_pages(app)._compiled) == 1  # compiled for anna, filled in for boris
    (anna, anna_page), (boris, boris_page) = views
    assert re.findall(r'<span class="who" title="admin">([^<]*)</span>', anna_page) == [anna]
    assert re.findall(r'<span class="who" title="admin">([^<]*)</span>', boris_page) == [boris]
    anna_tokens, boris_tokens = _csrf_tokens(anna_page), _csrf_tokens(boris_page)
    assert len(anna_tokens) == len(boris_tokens) == 1 and anna_tokens != boris_tokens
    assert f'name="next" value="/cards/company/{company.id}/edit?from=anna"' in anna_page
    assert f'name="next" value="/cards/company/{company.id}/edit?from=boris"' in boris_page


def test_each_record_shows_its_own_title_url_version_and_snapshot_escaped(app, client, service, make_user):
    user, _ = make_user("sofia", ["admin"])
    sign_in(client, user)
    first, second = _company(service, "First & Co"), _company(service, "Second <b>\"Ltd\"</b>")
    service.update("company", second.id, {"city": "Leeds"}, SYSTEM, expected_version=second.version)
    one = client.get(f"/cards/company/{first.id}/edit").get_data(as_text=True)
    two = client.get(f"/cards/company/{second.id}/edit").get_data(as_text=True)
    assert len(_pages(app)._compiled) == 1
    assert "<title>Edit: First &amp; Co · Kartoteka</title>" in one
    assert "<title>Edit: Second &lt;b&gt;&#34;Ltd&#34;&lt;/b&gt; · Kartoteka</title>" in two
    assert "<b>" not in two.split("<body", 1)[1].split('id="card-form"', 1)[0]
    assert f'href="/cards/company/{second.id}">Second' in two and f"/cards/company/{first.id}" not in two
    assert 'name="version" value="1"' in one and 'name="version" value="2"' in two
    assert '&#34;city&#34;: [&#34;Leeds&#34;]' in two and "Leeds" not in one
    assert f'hx-post="/cards/company/{second.id}/live"' in two


def test_a_hidden_section_is_part_of_the_shape(app, client, service, make_user):
    user, _ = make_user("sofia", ["admin"])
    sign_in(client, user)
    here = _company(service, "Here", "gb")
    there = service.create("company", {"name": "There", "inn": "7707083893", "kpp": "770701001"}, SYSTEM)
    gb = client.get(f"/cards/company/{here.id}/edit").get_data(as_text=True)
    ru = client.get(f"/cards/company/{there.id}/edit").get_data(as_text=True)
    assert len(_pages(app)._compiled) == 2
    bank = re.compile(r'<fieldset class="group" data-section="t1g2"( hidden)?>')
    assert bank.search(gb).group(1) == " hidden" and bank.search(ru).group(1) is None


def test_pages_with_messages_are_rendered_by_the_template(app, client, service, make_user):
    user, _ = make_user("sofia", ["admin"])
    sign_in(client, user)
    client.get("/cards/company/new")
    compiled = dict(_pages(app)._compiled)
    refused = client.post("/cards/company/new", data=MultiDict([("csrf_token", CSRF), ("name", "")]))
    assert refused.status_code == 422 and 'id="error-summary"' in refused.get_data(as_text=True)
    assert _pages(app)._compiled == compiled


def test_the_compiled_pages_are_bounded(app, client, service, make_user, monkeypatch):
    monkeypatch.setattr(formpage, "MAX_PAGES", 2)
    user, _ = make_user("sofia", ["admin"])
    sign_in(client, user)
    for name in ENTITIES:
        assert client.get(f"/cards/{name}/new").status_code == 200
        assert len(_pages(app)._compiled) <= 2


def _refused_by_the_skeleton(client, url: str, caplog) -> bool:
    """The page failed (500) because the skeleton refused what the template read."""
    response = client.get(url)
    return response.status_code == 500 and any(
        record.exc_info and isinstance(record.exc_info[1], HoleMisused) for record in caplog.records)


def test_a_template_reading_the_request_fails_to_compile(app, client, make_user, caplog):
    """Whatever the page template reads per request must be a hole: the request itself is not there to read."""
    user, _ = make_user("sofia", ["admin"])
    sign_in(client, user)
    app.jinja_env.loader = ChoiceLoader([DictLoader({"cards/form.html": "{{ request.path }}"}), app.jinja_env.loader])
    app.jinja_env.cache.clear()
    assert _refused_by_the_skeleton(client, "/cards/company/new", caplog)


@pytest.mark.parametrize("read", ["form.users", "form.record.id", "g.user.id", "form.text('name')"])
def test_the_skeleton_offers_only_what_the_page_may_share(app, client, service, make_user, read, caplog):
    user, _ = make_user("sofia", ["admin"])
    sign_in(client, user)
    company = _company(service)
    app.jinja_env.loader = ChoiceLoader([DictLoader({"cards/form.html": f"{{{{ {read} }}}}"}), app.jinja_env.loader])
    app.jinja_env.cache.clear()
    assert _refused_by_the_skeleton(client, f"/cards/company/{company.id}/edit", caplog)


def test_the_compiled_page_is_the_templates_own(app, client, service, make_user, monkeypatch):
    """Outside tests no page is checked: the compiled page equals the template's rendering of the same form."""
    user, _ = make_user("sofia", ["admin"])
    sign_in(client, user)
    company = _company(service)
    _pages(app).verify = False
    compiled = client.get(f"/cards/company/{company.id}/edit").get_data(as_text=True)
    assert len(_pages(app)._compiled) == 1
    monkeypatch.setattr(formpage.FormPages, "_compilable", staticmethod(lambda form: False))
    direct = client.get(f"/cards/company/{company.id}/edit").get_data(as_text=True)
    # The signed CSRF token carries the second it was made: the two requests may fall in different seconds.
    (token,), (direct_token,) = _csrf_tokens(compiled), _csrf_tokens(direct)
    assert direct.replace(direct_token, token) == compiled


@pytest.mark.parametrize("value", ["", "plain", "Ёлки & палки", "<b>\"it's\"</b>", "&amp;", "a'b\"c<d>e&f", 0, 12.5,
                                   None, Markup("<b>safe</b>"), Markup(""), Markup("x&amp;y")])
def test_a_holes_text_is_escaped_as_the_template_escapes_it(value):
    assert escaped(value) == str(escape(value))


class _Html:
    def __html__(self) -> str:
        return "<i>its own</i>"


def test_an_object_with_its_own_html_is_written_as_it_says():
    assert escaped(_Html()) == "<i>its own</i>" == str(escape(_Html()))
