"""Conventions that were hard-coded and are metadata now: `board:`, `badges:`, `picker:` and a role's `superuser:`.

check-config explains each with the file, the line and a suggestion; cards without the keys behave as before
(a board by stage or status summing the first money field, stage-like selects and tags as badges, `admin` as
the superuser when roles.yaml names none).
"""

from __future__ import annotations

import re

import pytest
from werkzeug.datastructures import MultiDict

from kartoteka.metadata.loader import check_config
from kartoteka.records.model import SYSTEM, ListQuery
from tests.conftest import CONFIG_DIR, write_config
from tests.test_web import CSRF, sign_in, text_of

DEAL = {
    "entity": "deal", "label": "Deal",
    "fields": {
        "name": {"type": "text", "required": True},
        "stage": {"type": "select", "options": ["new", "won", "lost"], "default": "new"},
        "region": {"type": "select", "options": ["north", "south"]},
        "amount": {"type": "money"},
        "cost": {"type": "money", "access": {"view": ["finance"]}},
        "seats": {"type": "integer"},
        "tags": {"type": "tags"},
    },
}
ROLES = {"roles": {"admin": {}, "boss": {"superuser": True}, "sales": {}, "finance": {}}}


def _problems(tmp_path, changes: dict, roles: dict | None = None) -> list[str]:
    root = write_config(tmp_path, {"deal": {**DEAL, **changes}}, roles)
    return [str(p) for p in check_config(root)[1]]


@pytest.mark.parametrize(("changes", "message"), [
    ({"board": {"group": "stag"}}, "deal.yaml:{line}: board.group: unknown field 'stag'; did you mean 'stage'?"),
    ({"board": {"group": "amount"}}, "deal.yaml:{line}: board.group: a board groups by a field of type select (one "
                                     "value, not a formula); 'amount' is not one; one of: stage, region"),
    ({"board": {"sum": "name"}}, "deal.yaml:{line}: board.sum: a board sums a field of type decimal, integer, money "
                                 "(one value); 'name' is not one; one of: amount, cost, seats"),
    ({"board": {"show": ["amout"]}}, "deal.yaml:{line}: board.show[0]: unknown field 'amout'; did you mean 'amount'?"),
    ({"board": {"grup": "stage"}}, "deal.yaml:{line}: board.grup: unknown key 'grup'; did you mean 'group'?"),
    ({"badges": ["stage", "regoin"]}, "deal.yaml:{line}: badges[1]: unknown field 'regoin'; did you mean 'region'?"),
    ({"picker": ["regon"]}, "deal.yaml:{line}: picker[0]: unknown field 'regon'; did you mean 'region'?"),
    ({"bagdes": ["stage"]}, "deal.yaml:{line}: bagdes: unknown key 'bagdes'; did you mean 'badges'?"),
])
def test_check_config_explains_wrong_board_badges_and_picker(tmp_path, changes, message):
    problems = _problems(tmp_path, changes)
    assert len(problems) == 1, problems
    assert re.fullmatch(re.escape(message).replace(re.escape("{line}"), r"\d+"), problems[0].split("entities/")[1])


def test_check_config_finds_a_misspelt_superuser_and_a_wrong_value(tmp_path):
    roles = {"finance": {}}
    problems = _problems(tmp_path / "typo", {}, {"roles": {**roles, "admin": {"superusr": True}}})
    assert [p.split("roles.yaml:")[1] for p in problems] == [
        "4: roles.admin.superusr: unknown key 'superusr'; did you mean 'superuser'?"]
    problems = _problems(tmp_path / "value", {}, {"roles": {**roles, "admin": {"superuser": "yes"}}})
    assert [p.split("roles.yaml:")[1] for p in problems] == [
        "4: roles.admin.superuser: must be of type boolean, not str"]
    assert _problems(tmp_path / "other", {}, {"roles": {**roles, "admin": {"colour": "red"}}}) == []  # ignored


def test_without_the_keys_cards_keep_their_conventions(tmp_path):
    metadata, _ = check_config(write_config(tmp_path, {"deal": DEAL}))
    deal = metadata.entity("deal")
    assert deal.board.group == "stage" and deal.board.sums == ("amount", "cost") and deal.board.show == ()
    assert deal.badges == ("stage", "tags") and deal.picker == ()
    assert metadata.superusers == frozenset({"admin"})


def test_superusers_are_the_roles_marked_so(tmp_path):
    metadata, problems = check_config(write_config(tmp_path, {"deal": DEAL}, ROLES))
    assert problems == [] and metadata.superusers == frozenset({"boss"})
    assert metadata.entity("deal").superusers == frozenset({"boss"})


# --- the pages, on a card that says how --------------------------------------------------------------


@pytest.fixture
def config_dir(tmp_path_factory):
    deal = {**DEAL, "board": {"group": "region", "sum": "seats", "show": ["amount"]}, "badges": ["region", "stage"]}
    return write_config(tmp_path_factory.mktemp("cards"), {"deal": deal}, {
        **ROLES, "permissions": {"sales": {"deal": "all"}, "finance": {"deal": "all"}}})


def test_the_board_groups_sums_and_shows_what_metadata_says(client, service, make_user):
    rep, _ = make_user("rep", ["sales"])
    for name, region, seats in (("Alpha", "north", 3), ("Bravo", "north", 4), ("Charlie", "south", 10)):
        service.create("deal", {"name": name, "region": region, "seats": seats, "amount": 1000}, SYSTEM)
    sign_in(client, rep)
    board = text_of(client.get("/cards/deal/kanban"))
    assert re.search(r'data-stage="north".*?data-count>2<.*?class="sum">7<', board, re.S)
    assert re.search(r'data-stage="south".*?data-count>1<.*?class="sum">10<', board, re.S)
    assert len(re.findall(r'class="board-line">RUB\s1,000\.00<', board)) == 3
    listing = text_of(client.get("/cards/deal/"))
    assert 'href="/cards/deal/kanban"' in listing


def test_the_card_header_shows_the_badges_metadata_names_in_order(client, service, make_user):
    rep, _ = make_user("rep", ["sales"])
    deal = service.create("deal", {"name": "Alpha", "region": "south", "stage": "won", "tags": ["vip"]}, SYSTEM)
    sign_in(client, rep)
    card = text_of(client.get(f"/cards/deal/{deal.id}"))
    badges = card[card.index('class="badges"'):]
    badges = badges[:badges.index("</p>")]
    assert re.findall(r'<span class="badge[^"]*">([^<]+)</span>', badges) == ["Region: south", "Stage: won"]
    assert "#vip" not in badges  # tags are not listed in `badges:`


def test_a_superuser_role_sees_everything_and_manages_users_and_admin_is_a_role_like_others(
        client, service, make_user):
    deal = service.create("deal", {"name": "Alpha", "cost": 500}, SYSTEM)
    boss, _ = make_user("boss", ["boss"])
    sign_in(client, boss)
    assert "500.00" in text_of(client.get(f"/cards/deal/{deal.id}"))
    assert 'href="/admin/users"' in text_of(client.get("/cards/"))
    assert client.get("/admin/users").status_code == 200

    named_admin, headers = make_user("root", ["admin"])
    client.get("/logout")
    sign_in(client, named_admin)
    assert client.get("/admin/users").status_code == 403  # `admin` is no superuser here: `boss` is
    assert client.get(f"/cards/deal/{deal.id}").status_code == 403  # and roles.yaml gives it no deals
    assert client.get(f"/api/v1/records/deal/{deal.id}", headers=headers).status_code == 403


# --- the reference picker ----------------------------------------------------------------------------------


@pytest.mark.parametrize("config_dir", [CONFIG_DIR])
def test_the_picker_tells_namesakes_apart_by_city_and_inn_then_number(client, service, make_user, config_dir):
    rep, _ = make_user("rep", ["sales"], "sales")
    moscow = service.create("company", {"name": "ООО «Ромашка»", "city": "Москва", "inn": "7707083893",
                                        "kpp": "770701001"}, SYSTEM)
    service.create("company", {"name": "ООО «Ромашка»", "city": "Казань", "inn": "1655000000", "kpp": "165501001"},
                   SYSTEM)
    london = service.create("company", {"name": "ООО «Ромашка»", "country": "gb", "city": "London"}, SYSTEM)
    twin = service.create("company", {"name": "ООО «Ромашка»", "country": "gb", "city": "London"}, SYSTEM)
    service.create("company", {"name": "Northwind", "country": "gb"}, SYSTEM)
    sign_in(client, rep)

    option = re.compile(r'<option value="([^"]+)" data-id="(\d+)">')
    options = option.findall(text_of(client.get("/cards/company/lookup?q=ромашка")))
    kazan = next(r for r in service.list("company", SYSTEM, ListQuery(limit=50)).items if r["city"] == "Казань")
    northwind = next(r for r in service.list("company", SYSTEM, ListQuery(limit=50)).items if r.title == "Northwind")
    assert sorted(options) == sorted([  # the id rides beside the text; the text holds a number only to tell twins
        ("ООО «Ромашка» — Москва, 7707083893", str(moscow.id)),
        ("ООО «Ромашка» — Казань, 1655000000", str(kazan.id)),
        (f"ООО «Ромашка» — London #{london.id}", str(london.id)),  # the same city and no INN: only the number
        (f"ООО «Ромашка» — London #{twin.id}", str(twin.id)),
    ])
    assert option.findall(text_of(client.get("/cards/company/lookup?q=north"))) == [("Northwind", str(northwind.id))]

    new = {"csrf_token": CSRF, "name": "Поставка", "stage": "new", "owner": str(rep.id)}
    created = client.post("/cards/deal/new", data={**new, "company": "ООО «Ромашка» — Москва, 7707083893"})
    assert created.status_code == 302, text_of(created)
    deal_id = int(created.headers["Location"].rsplit("/", 1)[1])
    assert service.get("deal", deal_id, SYSTEM)["company"] == moscow.id

    form = text_of(client.get(f"/cards/deal/{deal_id}/edit"))  # no number in what people read; the id hidden
    assert re.search(r'<input type="text" value="ООО «Ромашка» — Москва, 7707083893" list="dl-company"', form)
    assert re.search(rf'<input type="hidden" name="company" value="{moscow.id}" data-picker-id>', form)

    ambiguous = client.post("/cards/deal/new", data={**new, "company": "ООО «Ромашка»"})
    assert ambiguous.status_code == 422
    assert "Several records are called 'ООО «Ромашка»'; pick one from the suggestions." in text_of(ambiguous)
    by_number = client.post("/cards/deal/new", data={**new, "company": f"ООО «Ромашка» — London #{twin.id}"})
    assert by_number.status_code == 302
    assert service.get("deal", int(by_number.headers["Location"].rsplit("/", 1)[1]), SYSTEM)["company"] == twin.id
    picked = client.post("/cards/deal/new", data={**new, "company__text": "ООО «Ромашка» — London",
                                                   "company": str(london.id)})  # as the page posts a suggestion
    assert picked.status_code == 302
    assert service.get("deal", int(picked.headers["Location"].rsplit("/", 1)[1]), SYSTEM)["company"] == london.id
    listing = text_of(client.get(f"/cards/deal/?company={moscow.id}"))
    assert 'value="ООО «Ромашка» — Москва, 7707083893"' in listing  # the company, not just a number


@pytest.mark.parametrize("config_dir", [CONFIG_DIR])
def test_an_unchanged_form_keeps_its_references_whatever_the_records_are_called(client, service, make_user,
                                                                                 config_dir):
    """A name ending in "#3", or one written like another record's picker text, must not capture the reference."""
    from tests.test_web import _form_fields

    rep, _ = make_user("rep", ["sales"], "sales")
    decoy = service.create("company", {"name": "Decoy", "country": "gb"}, SYSTEM)
    branch = service.create("company", {"name": f"Branch #{decoy.id}", "country": "gb"}, SYSTEM)
    acme = service.create("company", {"name": "Acme", "country": "gb", "city": "London"}, SYSTEM)
    deals = [service.create("deal", {"name": f"D{n}", "company": c.id, "stage": "new"}, rep)
             for n, c in enumerate((branch, acme))]
    service.create("company", {"name": "Acme — London", "country": "gb"}, SYSTEM)  # someone else's impostor
    sign_in(client, rep)
    for deal in deals:
        loaded = _form_fields(client.get(f"/cards/deal/{deal.id}/edit").get_data(as_text=True))
        saved = client.post(f"/cards/deal/{deal.id}/edit", data=MultiDict([*loaded, ("csrf_token", CSRF)]))
        assert saved.status_code == 302
        assert service.get("deal", deal.id, SYSTEM)["company"] == deal["company"]
    typed = client.post("/cards/deal/new", data={"csrf_token": CSRF, "name": "X", "stage": "new",
                                                 "company": "Acme — London"})
    assert typed.status_code == 422 and "Several records are called" in text_of(typed)  # typed by hand: ask


@pytest.mark.parametrize("config_dir", [CONFIG_DIR])
def test_a_picked_reference_follows_its_text_without_javascript(client, service, make_user, config_dir):
    """The hidden id holds while the text still names its record (whatever its details now say); text typed over
    it names another record; a made-up id is never taken on its own say."""
    from tests.test_web import _form_fields

    rep, _ = make_user("rep", ["sales"], "sales")
    acme = service.create("company", {"name": "Acme", "country": "gb", "city": "London"}, SYSTEM)
    globex = service.create("company", {"name": "Globex", "country": "gb", "city": "Leeds"}, SYSTEM)
    deal = service.create("deal", {"name": "D", "company": acme.id, "stage": "new"}, rep)
    sign_in(client, rep)
    loaded = MultiDict(_form_fields(client.get(f"/cards/deal/{deal.id}/edit").get_data(as_text=True)))
    assert loaded["company"] == str(acme.id) and loaded["company__text"] == "Acme — London"
    service.update("company", acme.id, {"city": "Paris"}, SYSTEM, expected_version=1)  # details change meanwhile
    kept = client.post(f"/cards/deal/{deal.id}/edit", data=MultiDict([*loaded.items(multi=True),
                                                                      ("csrf_token", CSRF)]))
    assert kept.status_code == 302 and service.get("deal", deal.id, SYSTEM)["company"] == acme.id

    loaded = MultiDict(_form_fields(client.get(f"/cards/deal/{deal.id}/edit").get_data(as_text=True)))
    loaded["company__text"] = "Globex"  # typed over, no script to empty the hidden id
    moved = client.post(f"/cards/deal/{deal.id}/edit", data=MultiDict([*loaded.items(multi=True),
                                                                       ("csrf_token", CSRF)]))
    assert moved.status_code == 302 and service.get("deal", deal.id, SYSTEM)["company"] == globex.id

    base = {"csrf_token": CSRF, "name": "X", "stage": "new"}
    forged = client.post("/cards/deal/new", data={**base, "company__text": "Globex", "company": str(acme.id)})
    assert forged.status_code == 302  # the text decides when it does not name the record of the id
    assert service.get("deal", int(forged.headers["Location"].rsplit("/", 1)[1]), SYSTEM)["company"] == globex.id
    unknown = client.post("/cards/deal/new", data={**base, "company__text": "Acme", "company": "999999"})
    assert unknown.status_code == 302  # a made-up id: the text names Acme
    assert service.get("deal", int(unknown.headers["Location"].rsplit("/", 1)[1]), SYSTEM)["company"] == acme.id
    nothing = client.post("/cards/deal/new", data={**base, "company__text": "Initech", "company": str(acme.id)})
    assert nothing.status_code == 422 and "Nothing is called 'Initech'" in text_of(nothing)
