"""The rating field type (kartoteka/metadata/types/rating.py) as admins, API clients and users meet it.

The shipped ticket rates the answer with `satisfaction: {type: rating}` (1 to 5 stars): it is stored as a
whole number, indexed like an integer, filtered (equals, at least, at most) and sorted; the card, the list and
the board show stars with "4 of 5" ("4 из 5") for screen readers; the form is a group of radio buttons that
needs no JavaScript.
"""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from kartoteka.metadata.fieldtypes import FIELD_TYPES
from kartoteka.metadata.loader import check_config
from kartoteka.records.model import SYSTEM, ListQuery
from kartoteka.storage.indexes import existing_indexes
from kartoteka.storage.tables import records
from tests.conftest import write_config
from tests.test_web import CSRF, sign_in, text_of

RESOLVED = {"subject": "Printer", "description": "It jams.", "reporter_email": "a@example.com",
            "status": "resolved", "resolution": "Cleaned the rollers."}


def _ticket(service, satisfaction, subject="Printer", owner=None):
    return service.create("ticket", {**RESOLVED, "subject": subject, "satisfaction": satisfaction}, SYSTEM,
                          owner=owner)


# --- metadata ------------------------------------------------------------------------------------


def _rating_config(tmp_path, **options):
    return write_config(tmp_path, {"probe": {"entity": "probe", "label": "Probe", "fields": {
        "name": {"type": "text"}, "score": {"type": "rating", **options}}}})


def test_a_rating_has_five_stars_unless_max_says_up_to_ten(tmp_path):
    metadata, problems = check_config(_rating_config(tmp_path / "five"))
    assert problems == []
    score = metadata.entity("probe").fields["score"]
    assert score.type.stars(score) == 5 and score.max == 5
    metadata, _ = check_config(_rating_config(tmp_path / "ten", max=10, default=7))
    assert metadata.entity("probe").fields["score"].type.stars(metadata.entity("probe").fields["score"]) == 10
    assert metadata.entity("probe").fields["score"].default == 7


@pytest.mark.parametrize(("options", "message"), [
    ({"max": 11}, "fields.score.max: 11 is greater than the maximum of 10"),
    ({"max": 1}, "fields.score.max: 1 is less than the minimum of 2"),
    ({"max": "5"}, "fields.score.max: must be of type integer, not str"),
    ({"min": 1}, "fields.score.min: 'min' does not apply to a field of type rating"),
    ({"unique": True}, "fields.score.unique: 'unique' does not apply to a field of type rating"),
    ({"multiple": True}, "fields.score.multiple: 'multiple' does not apply to a field of type rating"),
    ({"default": 6}, "fields.score.default: default 6 violates a constraint: Must be a whole number of stars "
                     "from 1 to 5."),
    ({"mx": 4}, "fields.score.mx: unknown key 'mx'; did you mean 'max'?"),
])
def test_check_config_explains_a_wrong_rating(tmp_path, options, message):
    _, problems = check_config(_rating_config(tmp_path, **options))
    assert any(message in str(p) and re.search(r"entities/probe\.yaml:\d+: fields", str(p)) for p in problems), problems


def test_the_rating_type_lives_in_one_module_and_describes_its_options():
    rating = FIELD_TYPES.get("rating")
    assert type(rating).__module__ == "kartoteka.metadata.types.rating"
    schema = rating.options_schema()
    assert schema["properties"]["max"] == {"type": "integer", "minimum": 2, "maximum": 10, "default": 5,
                                           "description": "How many stars: the best rating."}
    assert rating.storage == "number" and rating.filter_kind == "range"
    assert not rating.sums_board and not rating.groups_board


# --- storage, index, filters, sort ------------------------------------------------------------------


def test_a_rating_is_stored_as_a_whole_number_and_indexed_like_an_integer(service, engine):
    ticket = _ticket(service, "4")
    assert ticket["satisfaction"] == 4
    with engine.connect() as conn:
        stored = conn.execute(sa.select(records.c.data).where(records.c.id == ticket.id)).scalar_one()
        assert stored["satisfaction"] == 4
        # Indexed as numbers are: on a number key column (storage/keys.py), which holds the value too.
        index = next(n for n in existing_indexes(conn) if n.startswith("kkx_ticket__satisfaction__kn"))
        column = index.rsplit("__", 1)[1]
        assert conn.execute(sa.select(records.c[column]).where(records.c.id == ticket.id)).scalar_one() == 4


def test_lists_filter_a_rating_by_equal_at_least_and_at_most_and_sort_by_it(service):
    for stars in (2, 5, 4, 1):
        _ticket(service, stars, subject=f"Rated {stars}")

    def stars_of(**query):
        page = service.list("ticket", SYSTEM, ListQuery(**query))
        return [r["satisfaction"] for r in page.items]

    from kartoteka.records.model import Filter

    assert stars_of(filters=(Filter("satisfaction", "eq", "4"),)) == [4]
    assert sorted(stars_of(filters=(Filter("satisfaction", "gte", "4"),))) == [4, 5]
    assert sorted(stars_of(filters=(Filter("satisfaction", "lte", "2"),))) == [1, 2]
    assert stars_of(sort="satisfaction") == [1, 2, 4, 5]
    assert stars_of(sort="-satisfaction") == [5, 4, 2, 1]


def test_the_api_takes_and_gives_a_rating_as_a_number(client, admin, service):
    created = client.post("/api/v1/records/ticket", json={**RESOLVED, "satisfaction": 5}, headers=admin)
    assert created.status_code == 201, created.get_data(as_text=True)
    assert created.get_json()["satisfaction"] == 5
    refused = client.post("/api/v1/records/ticket", json={**RESOLVED, "satisfaction": 6}, headers=admin)
    assert refused.status_code == 422
    assert refused.get_json()["errors"]["satisfaction"] == ["Must be a whole number of stars from 1 to 5."]
    found = client.get("/api/v1/records/ticket?satisfaction__gte=5", headers=admin).get_json()["items"]
    assert [t["satisfaction"] for t in found] == [5]
    schema = client.get("/api/v1/entities/ticket", headers=admin).get_json()
    described = next(f for f in schema["fields"] if f["name"] == "satisfaction")
    assert described["type"] == "rating" and described["max"] == 5
    assert described["value_schema"] == {"type": "integer", "minimum": 1, "maximum": 10}


# --- the pages -------------------------------------------------------------------------------------


def _stars(html: str) -> list[str]:
    """The stars of each star row on the page: '★★★★☆' for 4 of 5."""
    rows = re.findall(r'<span class="stars"[^>]*><span aria-hidden="true">((?:<span class="star[^"]*"></span>)*)',
                      html)
    return ["".join("★" if "on" in star else "☆" for star in re.findall(r'class="star[^"]*"', row)) for row in rows]


@pytest.mark.parametrize(("language", "text"), [("en", "4 of 5"), ("ru", "4 из 5")])
def test_card_list_and_board_show_stars_with_a_text_for_screen_readers(client, service, make_user, language, text):
    user, _ = make_user("sasha", ["support"], "support", language=language)
    sign_in(client, user)
    ticket = _ticket(service, 4, owner=user.id)

    card = client.get(f"/cards/ticket/{ticket.id}").get_data(as_text=True)
    assert "★★★★☆" in _stars(card)
    view = card[card.index('id="view-satisfaction"'):]
    assert f'<span class="visually-hidden">{text}</span>' in view[:view.index("</dd>")]
    header = card[card.index('class="badges"'):]
    header = header[:header.index("</p>")]
    assert f'<span class="visually-hidden">{text}</span>' in header  # `badges:` names satisfaction

    listing = client.get("/cards/ticket/").get_data(as_text=True)
    assert _stars(listing) == ["★★★★☆"]
    assert f'<span class="visually-hidden">{text}</span>' in listing

    board = client.get("/cards/ticket/kanban").get_data(as_text=True)
    assert _stars(board) == ["★★★★☆"]  # `board: {show: [..., satisfaction]}`
    assert f'<span class="visually-hidden">{text}</span>' in board


def test_the_form_is_a_radio_group_of_stars_that_saves_without_javascript(client, service, make_user):
    user, _ = make_user("sasha", ["support"], "support")
    sign_in(client, user)
    ticket = _ticket(service, 2, owner=user.id)
    form = text_of(client.get(f"/cards/ticket/{ticket.id}/edit"))
    group = form[form.index('<fieldset class="rating-input"'):]
    group = group[:group.index("</fieldset>")]
    assert 'role="radiogroup"' in group and 'aria-labelledby="l-satisfaction"' in group
    radios = re.findall(r'<input type="radio" name="satisfaction" value="(\d*)"[^>]*?( checked)?>', group)
    assert radios == [("", ""), ("1", ""), ("2", " checked"), ("3", ""), ("4", ""), ("5", "")]
    assert [label for label in re.findall(r'<span class="visually-hidden">([^<]+)</span>', group)] == [
        "1 of 5", "2 of 5", "3 of 5", "4 of 5", "5 of 5"]
    assert "No rating" in group

    def save(value: str):
        version = service.get("ticket", ticket.id, SYSTEM).version
        return client.post(f"/cards/ticket/{ticket.id}/edit", data={
            "csrf_token": CSRF, "version": str(version), "_present": "satisfaction", "satisfaction": value})

    assert save("5").status_code == 302
    assert service.get("ticket", ticket.id, SYSTEM)["satisfaction"] == 5
    refused = save("7")
    assert refused.status_code == 422
    assert "Must be a whole number of stars from 1 to 5." in text_of(refused)
    assert save("").status_code == 302  # "No rating"
    assert service.get("ticket", ticket.id, SYSTEM)["satisfaction"] is None


def test_the_list_filters_ratings_with_number_inputs_from_one_to_max(client, service, make_user):
    user, _ = make_user("sasha", ["support"], "support")
    sign_in(client, user)
    for stars in (3, 5):
        _ticket(service, stars, subject=f"Rated {stars}", owner=user.id)
    page = text_of(client.get("/cards/ticket/?satisfaction__gte=4"))
    assert _stars(page) == ["★★★★★"]
    assert re.search(r'<input id="flt-satisfaction-from" +type="number" step="1" min="1" max="5" +'
                     r'name="satisfaction__gte" value="4"', page)
