"""The browser UI through Flask's test client: sign-in, lists, cards, forms, live checks, kanban, saved views."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from html import unescape

import pytest
from itsdangerous import URLSafeTimedSerializer
from werkzeug.datastructures import MultiDict

from kartoteka.errors import RecordValidationError
from kartoteka.records.model import SYSTEM, ListQuery
from kartoteka.users import start_session


def csrf_token_for(raw: str, secret_key: str = "test-secret") -> str:  # noqa: S107 (conftest's app secret)
    """The form value Flask-WTF accepts for a session holding the raw token `raw` (the app's secret signs it)."""
    return URLSafeTimedSerializer(secret_key, salt="wtf-csrf-token").dumps(raw)


CSRF_RAW = "test-csrf-token"  # what a test session holds
CSRF = csrf_token_for(CSRF_RAW)  # what its forms post
COMPANY = {"name": "Northwind Trading Ltd", "country": "gb"}


def sign_in(client, user) -> None:
    """Start a session for `user` without the password round trip (scrypt is slow on purpose)."""
    state = client.application.extensions["kartoteka"]
    with client.session_transaction() as session:
        session.update(_user_id=start_session(state.engine, user.id, state.clock.now()), csrf_token=CSRF_RAW,
                       uid=user.id)


def text_of(response) -> str:
    return unescape(response.get_data(as_text=True))


@pytest.fixture
def company(service):
    return service.create("company", COMPANY, SYSTEM)


# --- signing in ----------------------------------------------------------------------------------


def _login_token(client) -> str:
    page = client.get("/login").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_sign_in_and_out(client, make_user):
    make_user("anna", ["sales"], "sales", password="correct horse")
    assert client.get("/cards/").status_code == 302
    token = _login_token(client)
    wrong = client.post("/login", data={"csrf_token": token, "username": "anna", "password": "wrong horse"})
    assert wrong.status_code == 401 and "Wrong user name or password." in text_of(wrong)
    ok = client.post("/login", data={"csrf_token": token, "username": "anna", "password": "correct horse",
                                     "next": "/cards/deal/"})
    assert ok.status_code == 302 and ok.headers["Location"] == "/cards/deal/"
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert client.get("/cards/deal/").status_code == 200
    page = client.get("/cards/").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/cards/deal/").status_code == 302


def test_sign_in_never_redirects_to_another_site(client, make_user):
    make_user("anna", ["sales"], "sales", password="correct horse")
    token = _login_token(client)
    response = client.post("/login", data={"csrf_token": token, "username": "anna", "password": "correct horse",
                                           "next": "//evil.example/steal"})
    assert response.headers["Location"] == "/cards/"


def test_sign_in_attempts_are_limited_per_address(client, app):
    token = _login_token(client)
    statuses = [client.post("/login", data={"csrf_token": token, "username": f"nobody{i}", "password": "x" * 9}
                            ).status_code for i in range(21)]
    assert statuses[:20] == [401] * 20 and statuses[20] == 429


def test_forms_without_the_csrf_token_are_refused(client, make_user):
    user, _ = make_user("anna", ["sales"], "sales")
    sign_in(client, user)
    response = client.post("/cards/lead/new", data={"contact_name": "X"})
    assert response.status_code == 400 and "The form has expired" in text_of(response)
    assert client.post("/login", data={"username": "anna", "password": "x"}).status_code == 400


def test_interface_language_follows_the_user(client, make_user):
    user, _ = make_user("olga", ["sales"], "sales", language="ru")
    sign_in(client, user)
    page = text_of(client.get("/cards/deal/"))
    assert "Сделки" in page and "Выйти" in page
    client.post("/language", data={"csrf_token": CSRF, "language": "en", "next": "/cards/deal/"})
    page = text_of(client.get("/cards/deal/"))
    assert "Deals" in page and "Sign out" in page


# --- lists ---------------------------------------------------------------------------------------


def test_list_shows_only_records_in_scope_with_filters_sort_and_search(client, service, make_user, company):
    rep, _ = make_user("rep", ["sales"], "sales")
    other, _ = make_user("other", ["sales"], "sales")
    for name, amount, stage in [("Alpha", 100, "new"), ("Bravo", 300, "qualification"), ("Charlie", 200, "new")]:
        service.create("deal", {"name": name, "company": company.id, "amount": amount, "stage": stage}, rep)
    service.create("deal", {"name": "Theirs", "company": company.id}, other)
    sign_in(client, rep)
    page = text_of(client.get("/cards/deal/"))
    assert "Alpha" in page and "Bravo" in page and "Theirs" not in page
    assert "3 records" in page
    filtered = text_of(client.get("/cards/deal/?stage__in=new&sort=-amount"))
    assert filtered.index("Charlie") < filtered.index("Alpha") and "Bravo" not in filtered
    assert "2 records" in filtered
    assert "Alpha" in text_of(client.get("/cards/deal/?q=alph")) and "Bravo" not in text_of(
        client.get("/cards/deal/?q=alph"))
    ranged = text_of(client.get("/cards/deal/?amount__gte=150&amount__lte=250"))
    assert "Charlie" in ranged and "Alpha" not in ranged


def test_list_pages_with_a_cursor_keep_the_filters(client, service, make_user, company):
    rep, _ = make_user("rep", ["sales"], "sales")
    for i in range(5):
        service.create("deal", {"name": f"Deal {i}", "company": company.id, "stage": "new"}, rep)
    sign_in(client, rep)
    first = client.get("/cards/deal/?stage__in=new&limit=2").get_data(as_text=True)
    next_url = unescape(re.search(r'href="(\?[^"]*cursor=[^"]*)" rel="next"', first).group(1))
    assert "stage__in=new" in next_url
    second = text_of(client.get("/cards/deal/" + next_url))
    assert "Deal 2" in second and "Deal 4" not in second


def test_a_hidden_field_is_no_column_filter_or_sort(client, service, make_user, company):
    rep, _ = make_user("rep", ["sales"], "sales")
    service.create("deal", {"name": "Alpha", "company": company.id}, rep)
    sign_in(client, rep)
    page = client.get("/cards/deal/").get_data(as_text=True)
    assert "margin" not in page and "cost" not in page
    refused = client.get("/cards/deal/?margin__gte=10")
    assert refused.status_code == 400 and "unknown field 'margin'" in text_of(refused)
    assert client.get("/cards/deal/?sort=cost").status_code == 400


def test_saved_views_per_user_and_shared(client, make_user):
    anna, _ = make_user("anna", ["sales"], "sales")
    boris, _ = make_user("boris", ["sales"], "sales")
    sign_in(client, anna)
    saved = client.post("/cards/deal/views", data={"csrf_token": CSRF, "name": "My new deals",
                                                    "query": "stage__in=new&sort=-amount&cursor=abc"})
    assert saved.status_code == 302 and "cursor" not in saved.headers["Location"]
    client.post("/cards/deal/views", data={"csrf_token": CSRF, "name": "Team pipeline", "query": "stage__in=proposal",
                                           "shared": "true"})
    page = text_of(client.get("/cards/deal/"))
    assert "My new deals" in page and "Team pipeline" in page
    sign_in(client, boris)
    page = text_of(client.get("/cards/deal/"))
    assert "Team pipeline" in page and "My new deals" not in page


# --- a card and its form --------------------------------------------------------------------------


def test_card_page_shows_fields_by_tab_and_related_records(client, service, make_user, company):
    manager, _ = make_user("boss", ["sales_manager"], "sales")
    deal = service.create("deal", {"name": "CRM rollout", "company": company.id, "tags": ["vip"]}, manager)
    contact = service.create("contact", {"first_name": "Анна", "last_name": "Петрова", "company": company.id,
                                         "emails": ["anna@example.org"]}, manager)
    sign_in(client, manager)
    page = text_of(client.get(f"/cards/company/{company.id}"))
    assert "Northwind Trading Ltd" in page
    assert f'href="/cards/deal/{deal.id}"' in page and f'href="/cards/contact/{contact.id}"' in page
    card = text_of(client.get(f"/cards/deal/{deal.id}"))
    assert 'role="tablist"' in card and "#vip" in card
    assert f'href="/cards/company/{company.id}"' in card


@pytest.mark.parametrize(("language", "amount", "symbol"), [("en", "RUB\u00a010,000,000.00", "RUB"),
                                                          ("ru", "10\u00a0000\u00a0000,00\u00a0₽", "₽")])
def test_pages_write_phones_and_amounts_as_people_do(client, service, make_user, company, language, amount, symbol):
    manager, _ = make_user("boss", ["sales_manager"], "sales", language=language)
    contact = service.create("contact", {"first_name": "Анна", "last_name": "Петрова", "company": company.id,
                                         "phones": ["+79123456789", "+12025550123"]}, manager)
    deal = service.create("deal", {"name": "Big", "company": company.id, "amount": 10_000_000}, manager)
    sign_in(client, manager)
    card = text_of(client.get(f"/cards/contact/{contact.id}"))
    assert '<a href="tel:+79123456789">+7 912 345-67-89</a>, <a href="tel:+12025550123">+1 202-555-0123</a>' in card
    assert amount in text_of(client.get(f"/cards/deal/{deal.id}"))
    assert amount in text_of(client.get("/cards/deal/"))
    form = text_of(client.get(f"/cards/deal/{deal.id}/edit"))
    assert f'<span class="suffix" aria-hidden="true">{symbol}</span>' in form  # the amount's input


@pytest.mark.parametrize(("role", "department", "sees_margin"), [
    ("finance", "finance", True), ("sales_manager", "sales", False), ("admin", None, True)])
def test_role_hidden_fields_never_reach_the_page(client, service, make_user, company, role, department,
                                                 sees_margin):
    user, _ = make_user("someone", [role], department)
    deal = service.create("deal", {"name": "Priced", "company": company.id, "amount": 1000, "margin": 40}, SYSTEM)
    sign_in(client, user)
    card = client.get(f"/cards/deal/{deal.id}").get_data(as_text=True)
    assert ('id="view-margin"' in card) == sees_margin
    assert ('id="view-margin_amount"' in card) == sees_margin
    if role != "finance":  # finance may not edit deals' other fields but may open the form
        form = client.get(f"/cards/deal/{deal.id}/edit").get_data(as_text=True)
        assert ('name="margin"' in form) == sees_margin


def test_create_through_the_form_and_errors_next_to_fields(client, service, make_user, company):
    rep, _ = make_user("rep", ["sales"], "sales")
    sign_in(client, rep)
    form = client.get("/cards/deal/new").get_data(as_text=True)
    assert 'name="name"' in form and 'id="f-company"' in form and "Required." not in form
    bad = client.post("/cards/deal/new", data={"csrf_token": CSRF, "name": "", "amount": "12abc",
                                               "_present": ["name", "amount"]})
    page = text_of(bad)
    assert bad.status_code == 422
    assert re.search(r'id="e-name"[^>]*>Required\.', page)
    assert re.search(r'id="e-amount"[^>]*>[^<]+', page)
    assert 'value="12abc"' in page  # what the user typed comes back
    good = client.post("/cards/deal/new", data={"csrf_token": CSRF, "name": "From the form",
                                                "company": f"{company.title} #{company.id}", "amount": "1 500,50",
                                                "stage": "new", "_present": ["name", "company", "amount", "stage"]})
    assert good.status_code == 302
    record_id = int(good.headers["Location"].rsplit("/", 1)[1])
    deal = service.get("deal", record_id, SYSTEM)
    assert deal["name"] == "From the form" and str(deal["amount"]) == "1500.50" and deal.owner == rep.id


def test_a_crafted_post_with_a_field_the_user_may_not_edit_is_refused(client, service, make_user, company):
    rep, _ = make_user("rep", ["sales"], "sales")
    sign_in(client, rep)
    # A field sales may not even view is ignored like a made-up name (an error would say it exists).
    crafted = client.post("/cards/deal/new", data={"csrf_token": CSRF, "name": "Sneaky", "company": str(company.id),
                                                   "margin": "50"})
    assert crafted.status_code == 302
    (sneaky,) = service.list("deal", SYSTEM, ListQuery()).items
    assert sneaky["margin"] is None
    service.delete("deal", sneaky.id, SYSTEM)
    deal = service.create("deal", {"name": "Mine", "company": company.id}, rep)
    crafted = client.post(f"/cards/deal/{deal.id}/edit", data={"csrf_token": CSRF, "version": str(deal.version),
                                                               "responsible": str(rep.id)})
    assert crafted.status_code == 422 and "You may not change this field." in text_of(crafted)
    assert service.get("deal", deal.id, SYSTEM)["responsible"] is None


def test_a_stale_edit_keeps_the_typed_values_and_says_why(client, service, make_user, company):
    rep, _ = make_user("rep", ["sales"], "sales")
    deal = service.create("deal", {"name": "Original", "company": company.id}, rep)
    service.update("deal", deal.id, {"next_step": "Call"}, rep, expected_version=deal.version)
    sign_in(client, rep)
    response = client.post(f"/cards/deal/{deal.id}/edit", data={"csrf_token": CSRF, "version": str(deal.version),
                                                                "name": "My edit", "_present": ["name"]})
    page = text_of(response)
    assert response.status_code == 409 and "You saved this card in another tab meanwhile." in page
    assert 'value="My edit"' in page and 'name="version" value="2"' in page
    assert service.get("deal", deal.id, SYSTEM)["name"] == "Original"


def test_live_check_recomputes_formulas_and_conditions(client, make_user, company):
    rep, _ = make_user("rep", ["sales"], "sales")
    sign_in(client, rep)
    response = client.post("/cards/deal/live", data={
        "csrf_token": CSRF, "name": "Live", "company": str(company.id), "amount": "200000", "probability": "25",
        "stage": "lost", "_touched": "amount"}, headers={"HX-Request": "true"})
    page = text_of(response)
    assert response.status_code == 200
    assert re.search(r'<output id="calc-expected_revenue"[^>]*hx-swap-oob="true">0\.00', page) or \
        'id="calc-expected_revenue"' in page
    state = re.search(r'id="form-state"[^>]*data-state="([^"]*)"', response.get_data(as_text=True)).group(1)
    state = unescape(state)
    assert '"lost_reason"' in state.split('"required"')[1].split("]")[0]
    assert '"lost_reason"' not in state.split('"hidden"')[1].split("]")[0]
    # Untouched fields show no errors yet; the touched one would.
    assert re.search(r'id="e-lost_reason"[^>]*>\s*</small>', page)


def test_reference_lookup_suggests_only_readable_records(client, service, make_user):
    rep, _ = make_user("rep", ["sales"], "sales")
    stranger, _ = make_user("stranger", ["sales"], "support")
    service.create("contact", {"first_name": "Анна", "last_name": "Своя", "emails": ["a@example.org"]}, rep)
    service.create("contact", {"first_name": "Анна", "last_name": "Чужая", "emails": ["b@example.org"]}, stranger)
    sign_in(client, rep)
    options = text_of(client.get("/cards/contact/lookup?field=contact&contact=анна"))
    assert "Своя" in options and "Чужая" not in options


# --- kanban --------------------------------------------------------------------------------------


def test_kanban_counts_sums_and_moves(client, service, make_user, company):
    rep, _ = make_user("rep", ["sales"], "sales")
    deal = service.create("deal", {"name": "Alpha", "company": company.id, "amount": 1000, "stage": "new"}, rep)
    service.create("deal", {"name": "Bravo", "company": company.id, "amount": 500, "stage": "new"}, rep)
    sign_in(client, rep)
    board = text_of(client.get("/cards/deal/kanban"))
    assert re.search(r'data-stage="new".*?data-count>2<', board, re.S)
    assert "1,500.00" in board
    moved = client.post(f"/cards/deal/{deal.id}/move", data={"csrf_token": CSRF, "to": "qualification",
                                                             "version": str(deal.version), "board": "stage"})
    assert moved.status_code == 302
    assert service.get("deal", deal.id, SYSTEM)["stage"] == "qualification"
    fresh = service.get("deal", deal.id, SYSTEM)
    refused = client.post(f"/cards/deal/{deal.id}/move", data={"csrf_token": CSRF, "to": "lost",
                                                               "version": str(fresh.version), "board": "stage"},
                          headers={"HX-Request": "true"})
    assert refused.status_code == 204
    target = refused.headers["HX-Redirect"]
    assert target.startswith(f"/cards/deal/{deal.id}/edit") and "stage=lost" in target
    form = text_of(client.get(target))
    assert re.search(r'id="e-lost_reason"[^>]*>[^<]*Required', form)
    assert service.get("deal", deal.id, SYSTEM)["stage"] == "qualification"


# --- access to whole cards through the UI ---------------------------------------------------------


@pytest.mark.parametrize(("role", "department", "entity", "list_status", "new_status"), [
    ("sales", "sales", "deal", 200, 200),
    ("sales", "sales", "hr_record", 403, 403),
    ("support", "support", "deal", 200, 403),
    ("support", "support", "lead", 403, 403),
    ("hr", "hr", "hr_record", 200, 200),
    ("hr", "hr", "company", 403, 403),
    ("finance", "finance", "deal", 200, 403),
    ("marketing", "marketing", "lead", 200, 200),
])
def test_whole_cards_follow_the_role(client, make_user, role, department, entity, list_status, new_status):
    user, _ = make_user("someone", [role], department)
    sign_in(client, user)
    assert client.get(f"/cards/{entity}/").status_code == list_status
    assert client.get(f"/cards/{entity}/new").status_code == new_status
    nav = client.get("/cards/").get_data(as_text=True)
    assert (f'href="/cards/{entity}/"' in nav) == (list_status == 200)


def test_a_record_outside_the_scope_is_not_found(client, service, make_user, company):
    rep, _ = make_user("rep", ["sales"], "sales")
    other, _ = make_user("other", ["sales"], "sales")
    theirs = service.create("deal", {"name": "Theirs", "company": company.id}, other)
    sign_in(client, rep)
    for path in (f"/cards/deal/{theirs.id}", f"/cards/deal/{theirs.id}/edit"):
        response = client.get(path)
        assert response.status_code == 404 and "Theirs" not in text_of(response)


def test_a_readable_record_the_user_may_not_change_has_no_edit(client, service, make_user, company):
    agent, _ = make_user("agent", ["support"], "support")
    deal = service.create("deal", {"name": "Visible", "company": company.id}, SYSTEM)
    sign_in(client, agent)
    card = text_of(client.get(f"/cards/deal/{deal.id}"))
    assert "Visible" in card and f"/cards/deal/{deal.id}/edit" not in card and "Delete" not in card
    assert client.get(f"/cards/deal/{deal.id}/edit").status_code == 403
    moved = client.post(f"/cards/deal/{deal.id}/move", data={"csrf_token": CSRF, "to": "lost", "board": "stage"})
    assert moved.status_code == 302 and service.get("deal", deal.id, SYSTEM)["stage"] != "lost"


def test_consent_is_never_pre_ticked_and_links_the_policy(client, service, make_user):
    rep, _ = make_user("rep", ["sales"], "sales")
    sign_in(client, rep)
    form = client.get("/cards/contact/new").get_data(as_text=True)
    box = re.search(r'<input type="checkbox" value="true" id="f-pd_consent"[^>]*>', form).group(0)
    assert "checked" not in box
    field = service.metadata.entity("contact").field("pd_consent")
    assert field.policy_url and f'href="{field.policy_url}"' in form


def test_a_department_gets_its_layout_variant(client, service, make_user, company):
    finance, _ = make_user("controller", ["finance"], "finance")
    manager, _ = make_user("boss", ["sales_manager"], "sales")
    deal = service.create("deal", {"name": "Variant", "company": company.id}, SYSTEM)
    finance_tabs = service.metadata.entity("deal").layout_for("finance").tabs
    sign_in(client, finance)
    card = text_of(client.get(f"/cards/deal/{deal.id}"))
    first_tab = re.search(r'id="tab-t0"[^>]*>([^<]+)<', card).group(1)
    assert first_tab == finance_tabs[0].label.get("en")
    sign_in(client, manager)
    card = text_of(client.get(f"/cards/deal/{deal.id}"))
    assert re.search(r'id="tab-t0"[^>]*>([^<]+)<', card).group(1) == \
        service.metadata.entity("deal").layout.tabs[0].label.get("en")


class _AttributeChecker(__import__("html.parser").parser.HTMLParser):
    """Collects tags with a repeated attribute and attribute values that carry escaped markup."""

    def __init__(self):
        super().__init__()
        self.problems = []

    def handle_starttag(self, tag, attrs):
        names = [name for name, _ in attrs]
        if len(names) != len(set(names)):
            self.problems.append((tag, attrs))
        self.problems += [(tag, name, value) for name, value in attrs if value and '="' in value]


@pytest.mark.parametrize("entity", ["lead", "contact", "company", "deal", "ticket", "hr_record"])
def test_generated_forms_are_well_formed(client, service, make_user, entity):
    admin, _ = make_user("root", ["admin"])
    sign_in(client, admin)
    for path in (f"/cards/{entity}/new", f"/cards/{entity}/"):
        checker = _AttributeChecker()
        checker.feed(client.get(path).get_data(as_text=True))
        assert checker.problems == []
    form = client.get(f"/cards/{entity}/new").get_data(as_text=True)
    ids = re.findall(r' id="([^"]+)"', form)
    assert len(ids) == len(set(ids)), "element ids must be unique"
    for label_for in re.findall(r'<label for="([^"]+)"', form):
        assert f'id="{label_for}"' in form, f"label for a missing input: {label_for}"


def _form_fields(html: str) -> list[tuple[str, str]]:
    """The (name, value) pairs a browser would submit from the card form (inputs, selects, text areas)."""
    start = html.index('id="card-form"')
    form = html[start:html.index("</form>", start)]
    pairs = []
    for tag in re.findall(r"<input [^>]*>", form):
        name = re.search(r'name="([^"]+)"', tag)
        kind = re.search(r'type="([^"]+)"', tag)
        if not name or (kind and kind.group(1) == "file") or re.search(r"\sdisabled\b", tag):
            continue  # a browser sends no disabled control
        if kind and kind.group(1) in ("checkbox", "radio") and not re.search(r"\schecked\b", tag):
            continue
        value = re.search(r'value="([^"]*)"', tag)
        pairs.append((name.group(1), unescape(value.group(1)) if value else ""))
    for name, options in re.findall(r'<select (?![^>]*\sdisabled\b)[^>]*name="([^"]+)"[^>]*>(.*?)</select>', form,
                                    re.S):
        pairs += [(name, unescape(v)) for v in re.findall(r'<option value="([^"]*)"[^>]* selected', options)]
    for name, text in re.findall(r'<textarea (?![^>]*\sdisabled\b)[^>]*name="([^"]+)"[^>]*>(.*?)</textarea>', form,
                                 re.S):
        pairs.append((name, unescape(text)))
    return pairs


def test_two_people_editing_one_card_keep_both_changes(client, service, make_user):
    rep, _ = make_user("rep", ["sales"], "sales")
    contact = service.create("contact", {"first_name": "Анна", "last_name": "Петрова", "position": "Head of QA",
                                         "city": "Пермь", "emails": ["anna@example.org"]}, rep)
    sign_in(client, rep)
    tab_a = _form_fields(client.get(f"/cards/contact/{contact.id}/edit").get_data(as_text=True))
    tab_b = list(tab_a)
    a = [(k, "Director of QA" if k == "position" else v) for k, v in tab_a]
    first = client.post(f"/cards/contact/{contact.id}/edit", data=MultiDict([*a, ("csrf_token", CSRF)]))
    assert first.status_code == 302
    b = [(k, "Казань" if k == "city" else v) for k, v in tab_b]
    conflict = client.post(f"/cards/contact/{contact.id}/edit", data=MultiDict([*b, ("csrf_token", CSRF)]))
    assert conflict.status_code == 409
    page = text_of(conflict)
    assert 'value="Director of QA"' in page and 'value="Казань"' in page
    assert "was saved here" not in page  # no field was changed by both
    assert "check the marked fields" not in page and "none of the fields you changed was changed there" in page
    again = _form_fields(conflict.get_data(as_text=True))
    resaved = client.post(f"/cards/contact/{contact.id}/edit", data=MultiDict([*again, ("csrf_token", CSRF)]))
    assert resaved.status_code == 302
    saved = service.get("contact", contact.id, SYSTEM)
    assert saved["position"] == "Director of QA" and saved["city"] == "Казань"


def test_a_field_both_people_changed_is_marked(client, service, make_user):
    rep, _ = make_user("rep", ["sales"], "sales")
    contact = service.create("contact", {"first_name": "Анна", "last_name": "Петрова", "city": "Пермь",
                                         "emails": ["anna@example.org"]}, rep)
    sign_in(client, rep)
    loaded = _form_fields(client.get(f"/cards/contact/{contact.id}/edit").get_data(as_text=True))
    service.update("contact", contact.id, {"city": "Омск"}, rep, expected_version=contact.version)
    mine = [(k, "Казань" if k == "city" else v) for k, v in loaded]
    page = text_of(client.post(f"/cards/contact/{contact.id}/edit", data=MultiDict([*mine, ("csrf_token", CSRF)])))
    assert 'value="Казань"' in page
    assert re.search(r'id="e-city"[^>]*>Meanwhile «Омск» was saved here \(you, in another tab\)', page)


def test_a_reference_typed_by_its_exact_name_needs_no_suggestion(client, service, make_user, company):
    rep, _ = make_user("rep", ["sales"], "sales")
    sign_in(client, rep)
    data = {"csrf_token": CSRF, "name": "Typed", "stage": "new", "_present": ["name", "company", "stage"]}
    created = client.post("/cards/deal/new", data={**data, "company": "northwind trading ltd"})
    assert created.status_code == 302
    deal_id = int(created.headers["Location"].rsplit("/", 1)[1])
    assert service.get("deal", deal_id, SYSTEM)["company"] == company.id
    unknown = text_of(client.post("/cards/deal/new", data={**data, "company": "Nowhere Ltd"}))
    message = re.search(r'id="e-company"[^>]*>([^<]*)<', unknown).group(1)
    assert message == "Nothing is called 'Nowhere Ltd'; pick a record from the suggestions (or type its number as #12)."
    listed = text_of(client.get("/cards/deal/?company=Northwind Trading Ltd"))
    assert "Typed" in listed and "1 records" in listed


@pytest.mark.parametrize(("entity", "field", "raw", "english", "russian"), [
    ("deal", "name", "", "Required.", "Обязательное поле."),
    ("deal", "amount", "12abc", "'12abc' is not a number.", "«12abc» — не число."),
    ("contact", "emails", ["a@example.com", "x@"], "Value 2: 'x@' is not a valid e-mail address.",
     "Значение 2: «x@» — неверный адрес электронной почты."),
    ("deal", "amount", "1.555", "Must have at most 2 digits after the decimal point.",
     "Не больше 2 знаков после запятой."),
    ("deal", "amount", "-1500.50", "Must be at least 0.", "Не меньше 0."),  # was "0.00"
    ("deal", "probability", "150", "Must be at most 100.", "Не больше 100."),
])
def test_service_messages_read_in_russian(service, entity, field, raw, english, russian):
    """A refusal of the record service is a Message: English as text, Russian from the catalogue by its code."""
    from kartoteka.i18n import translate

    values = {"deal": {"name": "Deal"}, "contact": {"first_name": "Anna", "last_name": "Lee"}}[entity]
    with pytest.raises(RecordValidationError) as refused:
        service.create(entity, {**values, field: raw}, SYSTEM)
    (message,) = refused.value.errors[field]
    assert message == english and translate("en", message) == english
    assert translate("ru", message) == russian


def test_a_text_without_a_translation_stays_as_it_is():
    from kartoteka.i18n import translate

    assert translate("ru", "An unknown message stays as it is.") == "An unknown message stays as it is."


def test_form_errors_in_the_users_language(client, make_user, company):
    olga, _ = make_user("olga", ["sales"], "sales", language="ru")
    sign_in(client, olga)
    page = text_of(client.post("/cards/deal/new", data={"csrf_token": CSRF, "name": "", "amount": "12abc",
                                                        "_present": ["name", "amount"]}))
    assert re.search(r'id="e-amount"[^>]*>«12abc» — не число\.<', page)
    assert re.search(r'id="e-name"[^>]*>Обязательное поле\.<', page)


def _deal_typed_by(client, make_user, company, language: str, **typed: str) -> int:
    """The id of a deal a sales rep reading `language` created through the form with these typed values."""
    rep, _ = make_user("rep", ["sales"], "sales", language=language)
    sign_in(client, rep)
    created = client.post("/cards/deal/new", data={"csrf_token": CSRF, "company": str(company.id), **typed})
    assert created.status_code == 302, text_of(created)
    return int(created.headers["Location"].rsplit("/", 1)[1])


@pytest.mark.parametrize(("language", "typed", "stored", "shown"), [
    ("ru", "10 000 000,50", "10000000.50", "10\u00a0000\u00a0000,50"),
    ("ru", "1500.5", "1500.50", "1\u00a0500,50"),  # a dot typed by a Russian reader is a decimal point
    ("en", "1,500,000.50", "1500000.50", "1,500,000.50"),
    ("en", "1500", "1500.00", "1,500.00"),
])
def test_edit_forms_take_and_show_numbers_as_the_readers_language_writes_them(
        client, service, make_user, company, language, typed, stored, shown):
    deal_id = _deal_typed_by(client, make_user, company, language, name="Typed amount", amount=typed)
    assert str(service.get("deal", deal_id, SYSTEM)["amount"]) == stored
    form = text_of(client.get(f"/cards/deal/{deal_id}/edit"))
    assert re.search(r'<input type="text" inputmode="decimal" id="f-amount" name="amount"[^>]* value="'
                     + re.escape(shown) + '"', form)


@pytest.mark.parametrize(("language", "typed", "shown", "hint"), [
    ("ru", "01.03.2025", "01.03.2025", "ДД.ММ.ГГГГ"),
    ("ru", "2025-03-01", "01.03.2025", "ДД.ММ.ГГГГ"),  # ISO is read from anyone
    ("en", "2025-03-01", "2025-03-01", "YYYY-MM-DD"),
    ("en", "01.03.2025", "2025-03-01", "YYYY-MM-DD"),
])
def test_edit_forms_take_and_show_dates_as_the_readers_language_writes_them(
        client, service, make_user, company, language, typed, shown, hint):
    deal_id = _deal_typed_by(client, make_user, company, language, name="Typed date", next_step_date=typed)
    assert service.get("deal", deal_id, SYSTEM)["next_step_date"] == date(2025, 3, 1)
    form = text_of(client.get(f"/cards/deal/{deal_id}/edit"))
    date_input = re.search(r'<input type="text" id="f-next_step_date" name="next_step_date"[^>]*>', form)
    assert date_input, form
    assert f'value="{shown}"' in date_input.group() and f'placeholder="{hint}"' in date_input.group()
    assert "inputmode" not in date_input.group()
    # The calendar: a button named for the field, and the browser's picker, hidden and without a name.
    calendar = {"ru": "Выбрать в календаре: Дата следующего шага",
                "en": "Choose in a calendar: Next step date"}[language]
    assert re.search(r'<button type="button" class="[^"]*calendar-button[^"]*" data-calendar aria-label="'
                     + re.escape(calendar) + '"', form)
    assert re.search(r'<input type="date" class="calendar-picker js-only" tabindex="-1" aria-hidden="true">', form)
    # Saved unchanged, the date stays (and the edit makes no new version).
    version = service.get("deal", deal_id, SYSTEM).version
    saved = client.post(f"/cards/deal/{deal_id}/edit", data=MultiDict([*_form_fields(form), ("csrf_token", CSRF)]))
    assert saved.status_code == 302, text_of(saved)
    again = service.get("deal", deal_id, SYSTEM)
    assert (again["next_step_date"], again.version) == (date(2025, 3, 1), version)


def test_a_russian_reader_types_a_date_and_time_in_the_russian_order(client, service, make_user, company):
    agent, _ = make_user("agent", ["admin"], language="ru")
    sign_in(client, agent)
    contact = service.create("contact", {"first_name": "Анна", "last_name": "Петрова", "company": company.id,
                                         "emails": ["anna@example.org"]}, SYSTEM)
    moment = "last_contacted_at"
    form = text_of(client.get(f"/cards/contact/{contact.id}/edit"))
    fields = MultiDict([*_form_fields(form), ("csrf_token", CSRF)])
    fields.setlist(moment, ["01.03.2025 14:30:05"])
    saved = client.post(f"/cards/contact/{contact.id}/edit", data=fields)
    assert saved.status_code == 302, text_of(saved)
    assert service.get("contact", contact.id, SYSTEM)[moment] == datetime(2025, 3, 1, 14, 30, 5, tzinfo=UTC)
    form = text_of(client.get(f"/cards/contact/{contact.id}/edit"))
    assert re.search(rf'<input type="text" id="f-{moment}" name="{moment}"[^>]* value="01\.03\.2025 14:30:05"'
                     r'[^>]* placeholder="ДД\.ММ\.ГГГГ чч:мм"', form)


def test_an_english_number_grouped_unclearly_is_refused_with_what_it_could_mean(client, make_user, company):
    rep, _ = make_user("rep", ["sales"], "sales", language="en")
    sign_in(client, rep)
    page = text_of(client.post("/cards/deal/new", data={"csrf_token": CSRF, "name": "Unclear", "amount": "12,3456",
                                                        "company": str(company.id)}))
    assert re.search(r'id="e-amount"[^>]*>\'12,3456\' is unclear: did you mean 123,456 or 12\.3456\?<', page)


@pytest.mark.parametrize(("language", "typed", "message"), [
    ("en", "1 500,500", "'1 500,500' is unclear: write numbers like 1,234.5."),  # was read as 1500.50
    ("en", "1,", "'1,' is unclear: write numbers like 1,234.5."),  # was "did you mean 1 or 1?"
    ("ru", "1.500", "«1.500» — неясно: вы имели в виду 1\u00a0500 или 1,5?"),  # was read as 1.5
    ("en", "1 500,50", None),  # a comma before two digits can only be a decimal comma
    ("ru", "31", None),
])
def test_numbers_that_read_two_ways_are_asked_about_in_the_readers_language(client, make_user, company, language,
                                                                            typed, message):
    rep, _ = make_user("rep", ["sales"], "sales", language=language)
    sign_in(client, rep)
    response = client.post("/cards/deal/new", data={"csrf_token": CSRF, "name": "Unclear", "amount": typed,
                                                     "company": str(company.id)})
    if message is None:
        assert response.status_code == 302
        return
    page = text_of(response)
    assert re.search(r'id="e-amount"[^>]*>' + re.escape(message) + "<", page), page[page.find('id="e-amount"'):][:300]


def test_errors_found_reading_a_form_are_in_the_readers_language(client, make_user, company):
    """Refusals made while the form is read (a number's grouping, a date that does not exist) keep their codes."""
    rep, _ = make_user("rep", ["sales"], "sales", language="ru")
    sign_in(client, rep)
    page = text_of(client.post("/cards/deal/new", data={"csrf_token": CSRF, "name": "X", "company": str(company.id),
                                                        "amount": "1,5,5", "next_step_date": "31.02.2030"}))
    assert re.search(r'id="e-next_step_date"[^>]*>«31\.02\.2030» — такой даты нет \(проверьте день и месяц\)\.<',
                     page)
    assert "is unclear" not in page and "is not a" not in page


def test_a_crafted_owner_outside_the_scope_is_refused(client, service, make_user, company):
    rep, _ = make_user("rep", ["sales"], "sales")
    other, _ = make_user("other", ["sales"], "sales")
    sign_in(client, rep)
    assert 'name="owner"' not in client.get("/cards/deal/new").get_data(as_text=True)
    response = client.post("/cards/deal/new", data={"csrf_token": CSRF, "name": "Gift", "company": str(company.id),
                                                    "owner": str(other.id)})
    assert response.status_code == 422 and "You may assign records only to yourself." in text_of(response)


def test_a_field_only_the_other_person_filled_comes_through_a_conflict(client, service, make_user):
    """Empty city: A sets it, B (loaded before) sets the position; B's second save keeps A's city."""
    rep, _ = make_user("rep", ["sales"], "sales")
    lead = service.create("lead", {"contact_name": "Иван Петров", "source": "website",
                                   "phones": ["+7 912 345-67-89"]}, rep)
    sign_in(client, rep)
    tab_a = _form_fields(client.get(f"/cards/lead/{lead.id}/edit").get_data(as_text=True))
    tab_b = list(tab_a)
    a = [(k, "Москва" if k == "city" else v) for k, v in tab_a]
    assert client.post(f"/cards/lead/{lead.id}/edit", data=MultiDict([*a, ("csrf_token", CSRF)])).status_code == 302
    b = [(k, "CFO" if k == "position" else v) for k, v in tab_b]
    conflict = client.post(f"/cards/lead/{lead.id}/edit", data=MultiDict([*b, ("csrf_token", CSRF)]))
    assert conflict.status_code == 409
    again = _form_fields(conflict.get_data(as_text=True))
    assert dict(again)["city"] == "Москва" and dict(again)["position"] == "CFO"
    assert "was saved here" not in text_of(conflict)  # only A changed the city: nothing to choose
    resaved = client.post(f"/cards/lead/{lead.id}/edit", data=MultiDict([*again, ("csrf_token", CSRF)]))
    assert resaved.status_code == 302
    saved = service.get("lead", lead.id, SYSTEM)
    assert saved["city"] == "Москва" and saved["position"] == "CFO"


def test_a_save_landing_while_the_conflict_form_is_built_is_not_taken_for_the_users(
        client, app, service, make_user, monkeypatch):
    """The merged form's version, base and shown values come from one read, so a later save still merges."""
    rep, _ = make_user("rep", ["sales"], "sales")
    lead = service.create("lead", {"contact_name": "Иван Петров", "source": "website", "city": "Пермь",
                                   "phones": ["+7 912 345-67-89"]}, rep)
    sign_in(client, rep)
    loaded = _form_fields(client.get(f"/cards/lead/{lead.id}/edit").get_data(as_text=True))
    service.update("lead", lead.id, {"city": "Омск"}, rep, expected_version=1)
    app_service = app.extensions["kartoteka"].service
    evaluate = app_service.evaluate
    landed: list[int] = []
    calls: list[int] = []

    def racing_evaluate(*args, **kwargs):  # another tab saves the city just before the merged form is evaluated
        calls.append(1)
        if len(calls) == 1:  # the save itself evaluates nothing: this is the merged form's
            landed.append(service.update("lead", lead.id, {"city": "Томск"}, rep, expected_version=2).version)
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(app_service, "evaluate", racing_evaluate)
    mine = [(k, "CFO" if k == "position" else v) for k, v in loaded]
    conflict = client.post(f"/cards/lead/{lead.id}/edit", data=MultiDict([*mine, ("csrf_token", CSRF)]))
    monkeypatch.setattr(app_service, "evaluate", evaluate)
    assert conflict.status_code == 409 and landed == [3]
    again = _form_fields(conflict.get_data(as_text=True))
    assert dict(again)["city"] == "Томск" and dict(again)["version"] == "3"
    service.update("lead", lead.id, {"city": "Сочи"}, rep, expected_version=3)  # and one more after it
    resaved = client.post(f"/cards/lead/{lead.id}/edit", data=MultiDict([*again, ("csrf_token", CSRF)]))
    assert resaved.status_code == 409 and "was saved here" not in text_of(resaved)  # the city is not hers
    final = client.post(f"/cards/lead/{lead.id}/edit",
                        data=MultiDict([*_form_fields(resaved.get_data(as_text=True)), ("csrf_token", CSRF)]))
    assert final.status_code == 302
    saved = service.get("lead", lead.id, SYSTEM)
    assert saved["city"] == "Сочи" and saved["position"] == "CFO"


def test_a_prefilled_change_counts_as_the_users_in_a_conflict(client, service, company, make_user):
    """A kanban move opens the form with the new stage filled in; a concurrent save must not swallow it."""
    rep, _ = make_user("rep", ["sales"], "sales")
    deal = service.create("deal", {"name": "Поставка", "company": company.id, "stage": "new"}, rep)
    sign_in(client, rep)
    page = client.get(f"/cards/deal/{deal.id}/edit?stage=negotiation")
    loaded = _form_fields(page.get_data(as_text=True))
    assert dict(loaded)["stage"] == "negotiation"
    service.update("deal", deal.id, {"name": "Поставка труб"}, rep, expected_version=deal.version)
    conflict = client.post(f"/cards/deal/{deal.id}/edit", data=MultiDict([*loaded, ("csrf_token", CSRF)]))
    assert conflict.status_code == 409
    again = dict(_form_fields(conflict.get_data(as_text=True)))
    assert again["stage"] == "negotiation" and again["name"] == "Поставка труб"


def test_a_field_both_changed_offers_theirs_in_one_click(client, service, make_user):
    rep, _ = make_user("rep", ["sales"], "sales")
    lead = service.create("lead", {"contact_name": "Иван Петров", "source": "website", "city": "Пермь",
                                   "phones": ["+7 912 345-67-89"]}, rep)
    sign_in(client, rep)
    loaded = _form_fields(client.get(f"/cards/lead/{lead.id}/edit").get_data(as_text=True))
    service.update("lead", lead.id, {"city": "Омск"}, rep, expected_version=lead.version)
    mine = [(k, "Казань" if k == "city" else v) for k, v in loaded]
    page = client.post(f"/cards/lead/{lead.id}/edit", data=MultiDict([*mine, ("csrf_token", CSRF)]))
    html = text_of(page)
    assert page.status_code == 409 and 'value="Казань"' in html and "«Омск»" in html
    take = re.search(r'<button[^>]*name="_take_theirs"[^>]*value="city"[^>]*>([^<]+)</button>', html)
    assert take and "Омск" in take.group(1)
    # The button re-shows the form with their value in the box (nothing saved yet); saving keeps it.
    theirs = client.post(f"/cards/lead/{lead.id}/edit",
                         data=MultiDict([*_form_fields(page.get_data(as_text=True)), ("_take_theirs", "city"),
                                         ("csrf_token", CSRF)]))
    assert theirs.status_code == 200
    fields = _form_fields(theirs.get_data(as_text=True))
    assert dict(fields)["city"] == "Омск" and service.get("lead", lead.id, SYSTEM)["city"] == "Омск"
    saved = client.post(f"/cards/lead/{lead.id}/edit", data=MultiDict([*fields, ("csrf_token", CSRF)]))
    assert saved.status_code == 302 and service.get("lead", lead.id, SYSTEM)["city"] == "Омск"


@pytest.mark.parametrize("version", [None, "", "abc", "1.0", "99999999999999999999999"])
def test_every_browser_write_carries_its_version(client, service, make_user, company, version):
    rep, _ = make_user("rep", ["sales"], "sales")
    deal = service.create("deal", {"name": "Versioned", "company": company.id, "stage": "new"}, rep)
    sign_in(client, rep)
    data = {"csrf_token": CSRF} if version is None else {"csrf_token": CSRF, "version": version}
    edit = client.post(f"/cards/deal/{deal.id}/edit", data={**data, "name": "Overwritten"})
    assert edit.status_code == 409 and "Overwritten" in text_of(edit)  # what was typed is kept
    move = client.post(f"/cards/deal/{deal.id}/move", data={**data, "to": "qualification"})
    assert move.status_code in (302, 409)
    sign_in(client, make_user("boss", ["sales_manager"], "sales")[0])
    delete = client.post(f"/cards/deal/{deal.id}/delete", data=data)
    assert delete.status_code == 409
    stored = service.get("deal", deal.id, SYSTEM)
    assert stored.version == 1 and stored["name"] == "Versioned" and stored["stage"] == "new"


def test_concurrent_browser_edits_lose_no_write(client, service, make_user):
    """Tabs that each add one tag and save, retrying after every conflict: every tag ends up stored."""
    rep, _ = make_user("rep", ["sales"], "sales")
    lead = service.create("lead", {"contact_name": "Иван Петров", "source": "website",
                                   "phones": ["+7 912 345-67-89"]}, rep)
    sign_in(client, rep)
    tabs = {f"t{i}": _form_fields(client.get(f"/cards/lead/{lead.id}/edit").get_data(as_text=True))
            for i in range(6)}
    pending = {tag: [(k, tag if k == "tags" else v) for k, v in fields] for tag, fields in tabs.items()}
    for _ in range(20):
        if not pending:
            break
        for tag, fields in list(pending.items()):  # a conflict shows the merged card: saved again as shown
            response = client.post(f"/cards/lead/{lead.id}/edit", data=MultiDict([*fields, ("csrf_token", CSRF)]))
            if response.status_code == 302:
                del pending[tag]
            else:
                assert response.status_code == 409
                pending[tag] = _form_fields(response.get_data(as_text=True))
    assert not pending
    assert sorted(service.get("lead", lead.id, SYSTEM)["tags"]) == sorted(tabs)


def test_parallel_browser_tabs_lose_no_write(app, service, make_user):
    """Four tabs in four threads each keep changing their own field; every saved value survives."""
    import threading

    rep, _ = make_user("rep", ["sales"], "sales")
    lead = service.create("lead", {"contact_name": "Иван Петров", "source": "website",
                                   "phones": ["+7 912 345-67-89"]}, rep)
    owned = ("position", "city", "company_name", "request")
    saves: dict[str, list[str]] = {name: [] for name in owned}
    failures: list[str] = []

    def tab(name: str) -> None:
        client = app.test_client()
        sign_in(client, rep)
        fields = _form_fields(client.get(f"/cards/lead/{lead.id}/edit").get_data(as_text=True))
        for round_ in range(6):
            value = f"{name} {round_}"
            fields = [(k, value if k == name else v) for k, v in fields]
            for _ in range(30):  # a conflict shows the merged card, which is simply saved again
                response = client.post(f"/cards/lead/{lead.id}/edit", data=MultiDict([*fields, ("csrf_token", CSRF)]))
                if response.status_code == 302:
                    saves[name].append(value)
                    fields = _form_fields(client.get(f"/cards/lead/{lead.id}/edit").get_data(as_text=True))
                    break
                if response.status_code != 409:
                    failures.append(f"{name}: {response.status_code}")
                    return
                fields = _form_fields(response.get_data(as_text=True))

    threads = [threading.Thread(target=tab, args=(name,)) for name in owned]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    stored = service.get("lead", lead.id, SYSTEM)
    assert all(len(values) == 6 for values in saves.values()), saves
    assert {name: stored[name] for name in owned} == {name: f"{name} 5" for name in owned}
    assert stored.version == 1 + sum(len(values) for values in saves.values())


@pytest.mark.parametrize("channel", ["edit", "new", "live_edit", "live_new", "edit_prefill", "new_prefill"])
def test_a_hidden_field_name_is_answered_like_a_name_no_card_has(client, service, company, make_user, channel):
    """Sales may not view a deal's cost: sending `cost` must look exactly like sending a made-up name."""
    rep, _ = make_user("rep", ["sales"], "sales")
    deal = service.create("deal", {"name": "Поставка", "company": company.id, "stage": "new"}, rep)
    sign_in(client, rep)
    loaded = _form_fields(client.get(f"/cards/deal/{deal.id}/edit").get_data(as_text=True))

    def answer(name: str):
        extra = [(name, "5")]
        if channel == "edit":
            fields = _form_fields(client.get(f"/cards/deal/{deal.id}/edit").get_data(as_text=True))
            response = client.post(f"/cards/deal/{deal.id}/edit", data=MultiDict([*fields, *extra,
                                                                                   ("csrf_token", CSRF)]))
        elif channel == "new":
            response = client.post("/cards/deal/new", data=MultiDict([("name", "x"), *extra, ("csrf_token", CSRF)]))
        elif channel == "live_edit":
            response = client.post(f"/cards/deal/{deal.id}/live", data=MultiDict(
                [*loaded, *extra, ("_touched", f"amount,{name}"), ("csrf_token", CSRF)]))
        elif channel == "live_new":
            response = client.post("/cards/deal/live", data=MultiDict(
                [("name", "x"), *extra, ("_touched", f"name,{name}"), ("csrf_token", CSRF)]))
        elif channel == "edit_prefill":
            response = client.get(f"/cards/deal/{deal.id}/edit?{name}=5")
        else:
            response = client.get(f"/cards/deal/new?{name}=5")
        body = re.sub(r'(/cards/deal/|version" value=")\d+', r"\1N", text_of(response)).replace(name, "NAME")
        # Flask-WTF signs the same CSRF token with the time on every page: mask it, or two seconds differ.
        body = re.sub(re.escape(CSRF.split(".")[0]) + r"\.[\w-]+\.[\w-]+", "CSRF", body)
        return response.status_code, re.sub(r'"_base" value="[^"]*"', "", body)

    assert answer("cost") == answer("no_such_field")


def test_the_edit_form_shows_a_flagged_field_before_any_save(client, service, company, make_user):
    """A check a sales rep could not see failed on their save: finance's edit form marks it on opening."""
    rep, _ = make_user("rep", ["sales"], "sales")
    money, _ = make_user("money", ["finance"], "finance")
    deal = service.create("deal", {"name": "Big one", "company": company.id, "amount": "1000000", "cost": "900000"},
                          SYSTEM, owner=rep.id)
    service.update("deal", deal.id, {"amount": "100000"}, rep, expected_version=1)
    sign_in(client, rep)
    assert "need" not in text_of(client.get(f"/cards/deal/{deal.id}/edit")).lower()
    sign_in(client, money)
    page = text_of(client.get(f"/cards/deal/{deal.id}/edit"))
    assert "1 field needs attention:" in page
    assert re.search(r'id="e-cost"[^>]*>The cost is more than three times the amount', page)
    assert not re.search(r'id="e-amount"[^>]*>[^<]', page)  # only the flagged field speaks before a save


def test_a_field_the_other_person_emptied_is_offered_as_empty(client, service, make_user):
    rep, _ = make_user("rep", ["sales"], "sales")
    lead = service.create("lead", {"contact_name": "Иван Петров", "source": "website", "city": "Пермь",
                                   "phones": ["+7 912 345-67-89"]}, rep)
    sign_in(client, rep)
    loaded = _form_fields(client.get(f"/cards/lead/{lead.id}/edit").get_data(as_text=True))
    service.update("lead", lead.id, {"city": None}, rep, expected_version=lead.version)
    mine = [(k, "Казань" if k == "city" else v) for k, v in loaded]
    page = text_of(client.post(f"/cards/lead/{lead.id}/edit", data=MultiDict([*mine, ("csrf_token", CSRF)])))
    assert "Meanwhile this field was emptied" in page and "«—»" not in page
    assert re.search(r'name="_take_theirs"[^>]*value="city"[^>]*>Take the saved value: empty<', page)
    assert "check the marked fields" in page


def test_the_kanban_offers_moves_only_on_cards_the_user_may_change(client, service, make_user):
    """Sales read every ticket but change only their own: other tickets show without a move form."""
    rep, _ = make_user("rep", ["sales"], "sales")
    other, _ = make_user("other", ["sales"], "sales")
    values = {"subject": "Cannot log in", "description": "Password reset fails", "reporter_email": "a@example.org"}
    mine = service.create("ticket", values, rep)
    theirs = service.create("ticket", {**values, "subject": "Printer"}, other)
    sign_in(client, rep)
    board = text_of(client.get("/cards/ticket/kanban"))
    assert f'action="/cards/ticket/{mine.id}/move"' in board
    assert f'id="card-{theirs.id}"' in board and f'action="/cards/ticket/{theirs.id}/move"' not in board
    assert re.search(rf'draggable="false" data-id="{theirs.id}"', board)


def test_tab_and_group_conditions_reach_the_form(client, make_user):
    """A new ticket is not resolved: its "Resolution" group is hidden until the status says so."""
    agent, _ = make_user("agent", ["support"], "support")
    sign_in(client, agent)
    page = text_of(client.get("/cards/ticket/new"))
    group = re.search(r'<fieldset class="group" data-section="[^"]+"( hidden)?>\s*<legend>Resolution</legend>', page)
    assert group and group.group(1) == " hidden"
    live = client.post("/cards/ticket/live", data={"csrf_token": CSRF, "status": "resolved", "_touched": "status"})
    state = json.loads(unescape(re.search(r'data-state="([^"]*)"', live.get_data(as_text=True)).group(1)))
    assert state["hiddenSections"] == []


def test_a_refused_form_shows_its_fields_as_the_save_saw_them(client, service, make_user):
    """A taken INN (a valid value) must not hide the KPP whose error the summary lists."""
    boss, _ = make_user("boss", ["admin"])
    service.create("company", {"name": "Ромашка", "country": "ru", "inn": "7707083893", "kpp": "773601001"}, SYSTEM)
    sign_in(client, boss)
    response = client.post("/cards/company/new", data={
        "csrf_token": CSRF, "name": "Ромашка-2", "country": "ru", "inn": "7707083893", "kpp": "123"})
    page = text_of(response)
    assert response.status_code == 422 and "KPP must have 9 digits." in page
    kpp_row = re.search(r'<div class="field[^"]*" id="field-kpp"[^>]*>', page)
    assert kpp_row and " hidden" not in kpp_row.group(0)
    assert 'value="7707083893"' in page


def test_a_conflict_names_who_saved_meanwhile(client, service, make_user):
    rep, _ = make_user("rep", ["sales"], "sales")
    boss, _ = make_user("boss", ["sales_manager"], "sales")
    lead = service.create("lead", {"contact_name": "Иван Петров", "source": "website", "city": "Пермь",
                                   "phones": ["+7 912 345-67-89"]}, rep)
    sign_in(client, rep)
    loaded = _form_fields(client.get(f"/cards/lead/{lead.id}/edit").get_data(as_text=True))
    service.update("lead", lead.id, {"city": "Омск"}, boss, expected_version=lead.version)
    mine = [(k, "Казань" if k == "city" else v) for k, v in loaded]
    page = text_of(client.post(f"/cards/lead/{lead.id}/edit", data=MultiDict([*mine, ("csrf_token", CSRF)])))
    assert "boss saved this card while you were editing it." in page
    assert "Meanwhile «Омск» was saved here (boss)" in page and "another tab" not in page


def test_a_stale_kanban_move_says_what_happened_in_the_users_words(client, service, company, make_user):
    rep, _ = make_user("rep", ["sales"], "sales")
    deal = service.create("deal", {"name": "Поставка", "company": company.id}, rep)
    service.update("deal", deal.id, {"stage": "proposal"}, rep, expected_version=1)
    sign_in(client, rep)
    moved = client.post(f"/cards/deal/{deal.id}/move", data={"csrf_token": CSRF, "version": "1", "board": "stage",
                                                              "to": "negotiation"}, follow_redirects=True)
    page = text_of(moved)
    assert "The card was saved meanwhile (in another tab or by someone else)" in page
    assert "you edited version" not in page
    assert service.get("deal", deal.id, SYSTEM)["stage"] == "proposal"
