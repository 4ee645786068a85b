"""Attacks on card form rows compiled once per shape (kartoteka/web/formrows.py) that FormRows.verify cannot see.

The check under TESTING compares a compiled row with the macros rendering the same FieldView directly, in the same
overlay environment: it cannot see what the shape costs in memory, nor that the overlay renders the macros unlike the
app's own environment.
"""

from __future__ import annotations

import pytest
from werkzeug.datastructures import MultiDict

from kartoteka.records.model import SYSTEM
from kartoteka.users import create_user
from tests.test_web import CSRF, sign_in


@pytest.fixture
def manager(make_user, client):
    user, _ = make_user("sofia", ["admin"])
    sign_in(client, user)
    return user


def _rows_of(app, name: str) -> list:
    rows = app.extensions["kartoteka.form_rows"]
    return [key for key, (f, _) in rows._compiled.items() if f.name == name]


def test_forms_naming_different_users_share_one_compiled_user_list(app, client, service, engine, clock, manager):
    """The users to choose are the same on every form of the moment: which one is selected is the form's own."""
    company = service.create("company", {"name": "Acme", "country": "gb"}, SYSTEM)
    people = [create_user(engine, f"rep{i}", ["sales"], clock.now(), display_name=f"Rep {i}") for i in range(6)]
    counts = []
    for person in people:
        deal = service.create("deal", {"name": f"Deal of {person.username}", "stage": "new", "company": company.id,
                                       "responsible": person.id}, SYSTEM)
        page = client.get(f"/cards/deal/{deal.id}/edit").get_data(as_text=True)
        assert f'<option value="{person.id}" selected>Rep {person.username[3:]}</option>' in page
        counts.append(len(_rows_of(app, "responsible")))
    assert counts[-1] == counts[0], counts


def test_crafted_failed_saves_naming_each_user_compile_no_new_rows(app, client, service, engine, clock, manager):
    company = service.create("company", {"name": "Acme", "country": "gb"}, SYSTEM)
    ids = [create_user(engine, f"rep{i}", ["sales"], clock.now()).id for i in range(8)]
    client.get("/cards/deal/new")
    first = None
    for user_id in ids:
        response = client.post("/cards/deal/new", data=MultiDict([("csrf_token", CSRF), ("name", ""),
                                                                  ("company", str(company.id)),
                                                                  ("responsible", str(user_id))]))
        assert response.status_code == 422
        first = first if first is not None else len(_rows_of(app, "responsible"))
    assert len(_rows_of(app, "responsible")) == first


def test_crafted_posts_with_ever_more_phones_do_not_compile_a_row_per_count(app, client, manager):
    client.get("/cards/company/new")
    for count in range(1, 41):
        response = client.post("/cards/company/new",
                               data=MultiDict([("csrf_token", CSRF), ("name", "")] + [("phones", "+1")] * count))
        assert response.status_code == 422
        assert response.get_data(as_text=True).count('name="phones" value="+1"') == count
    assert len(_rows_of(app, "phones")) < 20, len(_rows_of(app, "phones"))


def test_user_names_baked_into_a_compiled_row_are_escaped_and_not_carried_to_other_readers(
        app, client, service, engine, clock, make_user):
    """User display names are literals of a compiled row (not holes): escaped once, and the selection is per form."""
    evil = create_user(engine, "evil", ["sales"], clock.now(), display_name='"><script>alert(1)</script>',
                       department="sales")
    plain = create_user(engine, "plain", ["sales"], clock.now(), display_name="Plain")
    company = service.create("company", {"name": "Acme", "country": "gb"}, SYSTEM)
    one = service.create("deal", {"name": "One", "stage": "new", "company": company.id, "responsible": evil.id},
                         SYSTEM)
    two = service.create("deal", {"name": "Two", "stage": "new", "company": company.id, "responsible": plain.id},
                         SYSTEM)
    for reader in (make_user("boss", ["sales_manager"], "sales")[0], make_user("anna", ["admin"], language="ru")[0]):
        sign_in(client, reader)
        first = client.get(f"/cards/deal/{one.id}/edit").get_data(as_text=True)
        second = client.get(f"/cards/deal/{two.id}/edit").get_data(as_text=True)
        assert "<script>alert(1)</script>" not in first + second
        escaped = "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
        assert f'<option value="{evil.id}" selected>{escaped}</option>' in first
        assert f'<option value="{evil.id}">{escaped}</option>' in second
        assert f'<option value="{plain.id}" selected>Plain</option>' in second
        assert f'<option value="{plain.id}" selected>' not in first


def test_rows_render_as_the_apps_own_environment_renders_the_macros(app, service):
    from kartoteka.web.cardform import CardForm
    from kartoteka.web.formrows import FieldView

    rows = app.extensions["kartoteka.form_rows"]
    entity = service.entity("contact")
    with app.test_request_context():
        state = service.evaluate("contact", {}, SYSTEM)
        form = CardForm(entity, SYSTEM, state, frozenset(entity.fields), frozenset(entity.fields), language="en")
        macros = app.jinja_env.get_template("macros/fields.html").module
        for name in ("pd_consent", "first_name" if "first_name" in entity.fields else next(iter(entity.fields))):
            view = FieldView(form, entity.fields[name], (), errors=[])
            own = macros.field_row(view, getattr(macros, entity.fields[name].type.widget))
            assert str(rows.render(view)) == str(own), name
