"""Field access and duplicates: a rule reading a field the user may not view never matches for them (it would tell
them that some record holds the value they typed), and a candidate never shows such a field."""

from __future__ import annotations

import pytest

from kartoteka.records.duplicates import candidates, groups, readable_rules
from kartoteka.records.model import SYSTEM
from tests.conftest import write_config

ENTITIES = {
    "person": {
        "entity": "person",
        "label": "Person",
        "fields": {
            "full_name": {"type": "text", "required": True, "max_length": 200},
            "phones": {"type": "phone", "multiple": True},
            "passport": {"type": "text", "access": {"view": ["boss"]}},
            "team": {"type": "reference", "to": "team"},
            "note": {"type": "text"},
            "codes": {"type": "integer", "multiple": True},
        },
        "duplicates": {
            "rules": [{"match": ["phones"]}, {"match": ["passport"]}, {"fuzzy": "full_name", "same": ["team"]},
                      {"match": ["codes"]}],
            "show": ["team", "passport", "note"],
        },
    },
    "team": {"entity": "team", "label": "Team", "fields": {"team_name": {"type": "text", "required": True}}},
}
ROLES = {"roles": {"boss": {"superuser": True}, "rep": {}},
         "permissions": {"boss": {"*": "all"}, "rep": {"*": "all"}}}


@pytest.fixture
def config_dir(tmp_path_factory):
    return write_config(tmp_path_factory.mktemp("dup_access"), ENTITIES, ROLES)


@pytest.fixture
def people(make_user):
    return make_user("boss", ["boss"])[0], make_user("rep", ["rep"])[0]


def test_a_rule_on_a_hidden_field_never_matches_for_those_who_may_not_view_it(service, people):
    boss, rep = people
    first = service.create("person", {"full_name": "Анна Петрова", "passport": "4510 123456"}, SYSTEM)
    second = service.create("person", {"full_name": "Олег Иванов", "passport": "4510 123456"}, SYSTEM)
    assert [r.key for r in readable_rules(service.entity("person"), rep)] == ["phones", "~full_name", "codes"]
    assert [[m.id for m in g.members] for g in groups(service, "person", boss)] == [[first.id, second.id]]
    assert groups(service, "person", rep) == []  # the shared passport is not theirs to learn of
    found = candidates(service, "person", {"full_name": "Кто-то", "passport": "4510 123456"}, boss)
    assert [c.id for c in found] == [first.id, second.id]


def test_a_candidate_shows_only_the_fields_the_reader_may_view(service, people, client, make_user):
    boss, rep = people
    team = service.create("team", {"team_name": "Север"}, SYSTEM)
    holder = service.create("person", {"full_name": "Анна Петрова", "phones": ["+7 912 345-67-89"],
                                       "passport": "4510 123456", "team": team.id, "note": "VIP"}, SYSTEM)
    typed = {"full_name": "Анна Петрова", "phones": "+7 912 345 67 89", "team": team.id}
    (as_boss,) = candidates(service, "person", typed, boss)
    assert as_boss.show == {"team": team.id, "passport": "4510 123456", "note": "VIP"}
    (as_rep,) = candidates(service, "person", typed, rep)
    assert as_rep.id == holder.id and as_rep.show == {"team": team.id, "note": "VIP"}
    # Through the API too: nothing of the passport in the 409's body.
    _user, headers = make_user("rep2", ["rep"])
    response = client.post("/api/v1/records/person", json={"full_name": "Анна Петрова",
                                                           "phones": ["+7 912 345-67-89"]}, headers=headers)
    assert response.status_code == 409
    assert "passport" not in response.get_data(as_text=True) and "4510" not in response.get_data(as_text=True)
    (group,) = groups(service, "person", rep) or [None]
    assert group is None  # one record only: no group


def test_the_form_shows_a_candidate_without_the_fields_the_reader_may_not_view(service, people, client):
    from tests.test_web import CSRF, sign_in, text_of

    boss, rep = people
    holder = service.create("person", {"full_name": "Анна Петрова", "phones": ["+7 912 345-67-89"],
                                       "passport": "4510 123456", "note": "VIP"}, SYSTEM)
    sign_in(client, rep)
    page = client.post("/cards/person/new", data={"csrf_token": CSRF, "full_name": "Другая Анна",
                                                  "phones": "+7 912 345 67 89"})
    assert page.status_code == 409
    html = text_of(page)
    assert f"/cards/person/{holder.id}" in html and "VIP" in html
    assert "4510" not in html and "Passport" not in html
    sign_in(client, boss)
    page = client.post("/cards/person/new", data={"csrf_token": CSRF, "full_name": "Другая Анна",
                                                  "phones": "+7 912 345 67 89"})
    assert page.status_code == 409 and "4510 123456" in text_of(page) and "Passport" in text_of(page)


def test_a_list_of_numbers_is_matched_as_numbers_at_any_position(service, people):
    boss, _rep = people
    first = service.create("person", {"full_name": "Первый", "codes": [7]}, SYSTEM)
    fourth = service.create("person", {"full_name": "Четвёртый", "codes": [1, 2, 3, 12]}, SYSTEM)
    service.create("person", {"full_name": "Другой", "codes": [70, 120]}, SYSTEM)
    found = candidates(service, "person", {"full_name": "Новый", "codes": ["7", "12"]}, boss)
    assert [c.id for c in found] == [first.id, fourth.id]
    assert [c.matches[0].values for c in found] == [(7,), (12,)]
