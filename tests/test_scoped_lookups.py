"""Titles and picker texts of given records, read by statements built once per scope: each user gets exactly the
records their read scope allows (own, department, all, none), never another's, never a deleted one."""

from __future__ import annotations

import pytest

from kartoteka.records.lookup import picker_rows, record_titles
from kartoteka.records.model import SYSTEM, ListQuery


@pytest.fixture
def people(make_user):
    """Users of every kind of read scope on contacts (sales: department) and deals (sales: own)."""
    made = {name: make_user(name, roles, department=department)[0] for name, roles, department in (
        ("anna", ["sales"], "sales"), ("boris", ["sales"], "sales"), ("vera", ["sales"], None),
        ("gleb", ["support"], "support"), ("dina", ["marketing"], "marketing"), ("egor", ["hr"], "hr"),
        ("root", ["admin"], None))}
    return made


def _readable_ids(service, entity: str, user) -> set[int]:
    """What the user's list shows: the reference the lookups are checked against."""
    try:
        return {r.id for r in service.list(entity, user, ListQuery(limit=200)).items}
    except Exception:  # PermissionDenied: the role may not open the list at all
        return set()


@pytest.mark.parametrize("entity", ["contact", "deal"])
def test_titles_and_picker_rows_follow_each_users_read_scope(service, people, entity):
    company = service.create("company", {"name": "Northwind Trading Ltd", "country": "gb"}, SYSTEM)
    values = ({"first_name": "Анна", "last_name": "Петрова", "phones": ["+7 916 123-45-67"]} if entity == "contact"
              else {"name": "Поставка", "company": company.id, "stage": "new"})
    made = [service.create(entity, {**values}, SYSTEM, owner=owner.id)
            for owner in people.values() for _ in range(2)]
    gone = service.create(entity, {**values}, SYSTEM, owner=people["anna"].id)
    service.delete(entity, gone.id, SYSTEM, expected_version=gone.version)
    ids = [r.id for r in made] + [gone.id, 10**9]
    for name, user in people.items():
        expected = _readable_ids(service, entity, user)
        titles = record_titles(service, entity, ids, user)
        assert set(titles) == expected, name
        assert {r.id for r in picker_rows(service, entity, user, ids=ids)} == expected, name
        assert gone.id not in titles
    # The kinds differ as the roles say: own, department, all and none all occurred.
    sizes = {name: len(_readable_ids(service, entity, user)) for name, user in people.items()}
    assert sizes["root"] == len(made) and sizes["egor"] == 0
    assert 0 < sizes["anna"] < len(made)


def test_a_user_without_a_department_reads_only_their_own_under_a_department_scope(service, people):
    contacts = {name: service.create("contact", {"first_name": "Ivan", "last_name": name,
                                                 "phones": ["+7 916 123-45-67"]}, SYSTEM, owner=u.id)
                for name, u in people.items()}
    vera = people["vera"]  # sales (contacts: department) with no department
    ids = [c.id for c in contacts.values()]
    assert set(record_titles(service, "contact", ids, vera)) == {contacts["vera"].id}
    anna = people["anna"]
    assert set(record_titles(service, "contact", ids, anna)) == {contacts["anna"].id, contacts["boris"].id}
