"""Card form rows compiled once per shape (kartoteka/web/formrows.py) show each form's own values, escaped.

The app under test checks every compiled row against the macros rendering it directly (FormRows.verify), so each
form any test opens proves the shape holds every flag its row depends on; these tests add what that cannot see.
"""

from __future__ import annotations

from html import unescape

import pytest
from jinja2 import DictLoader, Environment, FileSystemLoader

from kartoteka.records.model import SYSTEM
from kartoteka.web.fieldview import consent_given, offered
from kartoteka.web.formrows import MAX_ROWS, FieldView, FormRows, HoleMisused
from tests.test_web import sign_in

DEALS = [
    {"name": "Первая сделка", "amount": "1500.50", "stage": "new", "tags": ["vip"]},
    {"name": "Second <b>deal</b> & \"quotes\"", "amount": "99", "stage": "proposal", "tags": ["a", "b"]},
]


@pytest.fixture
def seller(make_user, client):
    user, _ = make_user("sofia", ["admin"])
    sign_in(client, user)
    return user


def _edit_page(client, service, values: dict) -> str:
    company = service.create("company", {"name": f"Company of {values['name']}", "country": "gb"}, SYSTEM)
    record = service.create("deal", {**values, "company": company.id}, SYSTEM)
    response = client.get(f"/cards/deal/{record.id}/edit")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_a_form_of_a_compiled_shape_shows_its_own_values(client, service, seller):
    """The second deal's form reuses the rows compiled for the first: its own texts fill them, escaped."""
    first = _edit_page(client, service, DEALS[0])
    rows = client.application.extensions["kartoteka.form_rows"]
    compiled = len(rows._compiled)
    second = _edit_page(client, service, DEALS[1])
    assert 'value="Первая сделка"' in first
    assert "Первая сделка" not in second
    assert 'value="Second &lt;b&gt;deal&lt;/b&gt; &amp; &#34;quotes&#34;"' in second
    assert "<b>deal</b>" not in second
    assert 'value="1,500.50"' in first and 'value="99.00"' in second
    # The stage select is shaped by its choice; the other rows were compiled once for both forms.
    assert len(rows._compiled) - compiled <= 3


def test_options_chosen_in_a_crafted_post_add_no_shapes(app, client, service, seller):
    """Values a select does not offer are not part of a row's shape: a flood of them compiles nothing new."""
    company = service.create("company", {"name": "Acme", "country": "gb"}, SYSTEM)
    record = service.create("deal", {"name": "Acme deal", "amount": "10", "stage": "new", "company": company.id},
                            SYSTEM)
    client.get(f"/cards/deal/{record.id}/edit")
    rows = app.extensions["kartoteka.form_rows"]
    shapes = []
    for bogus in ("nope-1", "nope-2", "nope-3"):
        with app.test_request_context():
            from kartoteka.web.cardform import CardForm

            state = service.evaluate("deal", {"stage": bogus}, SYSTEM)
            form = CardForm(service.entity("deal"), SYSTEM, state, frozenset(state.values) | {"stage"},
                            frozenset(), language="en")
            shapes.append(FieldView(form, service.entity("deal").fields["stage"], (), errors=[]).shape())
    assert shapes[0] == shapes[1] == shapes[2]
    assert len(rows._compiled) < MAX_ROWS


class _Form:
    """The little of a CardForm a row reads, for macros written in a test."""

    language = "en"
    editable = frozenset()
    theirs: dict = {}

    def required(self, name):
        return False

    read_only = required

    def shown(self, name):
        return True

    def chosen(self, name):
        return set()

    def text(self, name):
        return "typed"


def test_a_macro_that_branches_on_a_text_is_refused(shipped_metadata):
    """A macro testing a form's text (rather than a flag) would compile a row for one value: it raises instead."""
    env = Environment(autoescape=True, loader=DictLoader({"macros/fields.html": (
        "{% macro field_row(v, widget) %}{% if v.text %}<b>{{ v.text }}</b>{% endif %}{% endmacro %}"
        "{% macro text_input(v) %}{% endmacro %}")}))
    rows = FormRows(env)

    field = shipped_metadata.entities["deal"].fields["name"]
    with pytest.raises(HoleMisused):
        rows.render(FieldView(_Form(), field, (), errors=[]))


def test_russian_forms_compile_their_own_rows(client, service, make_user):
    """The language is part of a row's key: an English and a Russian reader get their own labels and numbers."""
    english, _ = make_user("eve", ["admin"])
    russian, _ = make_user("ivan", ["admin"], language="ru")
    company = service.create("company", {"name": "Acme", "country": "gb"}, SYSTEM)
    record = service.create("deal", {"name": "Deal", "amount": "1500.5", "stage": "new", "company": company.id},
                            SYSTEM)
    sign_in(client, english)
    page_en = unescape(client.get(f"/cards/deal/{record.id}/edit").get_data(as_text=True))
    sign_in(client, russian)
    page_ru = unescape(client.get(f"/cards/deal/{record.id}/edit").get_data(as_text=True))
    assert 'value="1,500.50"' in page_en and "Choose…" in page_en
    assert 'value="1\u00a0500,50"' in page_ru or 'value="1 500,50"' in page_ru
    assert "Choose…" not in page_ru


def test_an_edited_macro_shows_on_the_next_form_where_templates_reload(tmp_path, shipped_metadata):
    """In development (templates auto-reload) rows compiled from an older macros file are not kept."""
    import os
    import time

    macros = tmp_path / "macros"
    macros.mkdir()
    source = macros / "fields.html"
    source.write_text("{% macro field_row(v, widget) %}old {{ v.text }}{% endmacro %}"
                      "{% macro text_input(v) %}{% endmacro %}")
    env = Environment(autoescape=True, loader=FileSystemLoader(str(tmp_path)), auto_reload=True)
    rows = FormRows(env)

    field = shipped_metadata.entities["deal"].fields["name"]
    rows.refresh()
    assert rows.render(FieldView(_Form(), field, (), errors=[])) == "old typed"
    source.write_text("{% macro field_row(v, widget) %}new {{ v.text }}{% endmacro %}"
                      "{% macro text_input(v) %}{% endmacro %}")
    later = time.time() + 5
    os.utime(source, (later, later))
    rows.refresh()
    assert rows.render(FieldView(_Form(), field, (), errors=[])) == "new typed"


@pytest.mark.parametrize("read", ["g.user.username", "request.path", "session.get('uid')", "csrf_token()",
                                  "current_user.id"])
def test_field_macros_cannot_read_the_request(read, shipped_metadata):
    """A row compiled for one person is filled in for everyone: a macro reading the request or the signed-in user
    would show one person's data to all, so it raises instead."""
    env = Environment(autoescape=True, loader=DictLoader({"macros/fields.html": (
        "{% macro field_row(v, widget) %}{{ " + read + " }}{{ v.text }}{% endmacro %}"
        "{% macro text_input(v) %}{% endmacro %}")}))
    env.globals.update(g=object(), request=object(), session={}, csrf_token=lambda: "x", current_user=object())
    rows = FormRows(env)
    with pytest.raises(HoleMisused, match="compiled once for everyone"):
        rows.render(FieldView(_Form(), shipped_metadata.entities["deal"].fields["name"], (), errors=[]))


def test_compiled_rows_stay_within_their_size(app, client, service, seller, monkeypatch):
    """The compiled rows' text is bounded as a whole (ever new lists of users, odd shapes): past it they start again,
    and the forms are the same."""
    from kartoteka.web import formrows

    monkeypatch.setattr(formrows, "MAX_CHARS", 6000)
    rows = app.extensions["kartoteka.form_rows"]
    for values in DEALS:
        page = _edit_page(client, service, values)
        assert f'value="{values["name"][:5]}' in page
        assert rows._chars <= 6000 or len(rows._compiled) == 1
    assert 0 < len(rows._compiled) < 60


def test_the_options_a_field_offers_are_what_option_finds(metadata):
    """offered(f), worked out once per field, holds exactly what FieldDef.option finds, for every shipped field."""
    for entity in metadata.entities.values():
        for f in entity.fields.values():
            assert offered(f) == {o.value for o in f.options if f.option(o.value) is not None}
            assert offered(f) is offered(f)
            assert not offered(f) & {"", "nope", None}


@pytest.mark.parametrize("value, given", [(None, False), ("yes", False), (1, False), (True, False), ([], False),
                                          ({"given": True}, True), ({"given": False}, False), ({}, False)])
def test_consent_is_given_only_by_a_mapping_saying_so(value, given):
    assert consent_given(value) is given
