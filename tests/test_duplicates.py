"""The duplicates finder (kartoteka/records/duplicates.py) on the shipped cards: exact rules on normalised values
through indexes, fuzzy rules within their block, the read scope, and groups over existing data."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from kartoteka.records import duplicates
from kartoteka.records.duplicates import candidates, groups
from kartoteka.records.model import SYSTEM
from kartoteka.records.query import QueryBuilder
from kartoteka.records.scopes import readable_where
from kartoteka.storage.indexes import existing_indexes
from kartoteka.storage.tables import records


@pytest.fixture
def company(service):
    return service.create("company", {"name": "Ромашка", "country": "kz"}, SYSTEM)


@pytest.fixture
def other_company(service):
    return service.create("company", {"name": "Лютик", "country": "kz"}, SYSTEM)


def _contact(service, last, first, owner=None, **values):
    return service.create("contact", {"last_name": last, "first_name": first, **values}, SYSTEM, owner=owner)


def _ids(found):
    return [c.id for c in found]


def test_the_same_phone_or_email_as_stored_is_found_however_it_is_typed(service, company):
    anna = _contact(service, "Петрова", "Анна", phones=["8 912 345-67-89"], emails=["Anna@Example.com"])
    _contact(service, "Сидоров", "Олег", phones=["+7 916 000-00-01"])
    found = candidates(service, "contact", {"last_name": "Другая", "first_name": "Фамилия",
                                            "phones": "+7 (912) 345 67 89"}, SYSTEM)
    assert _ids(found) == [anna.id]
    (match,) = found[0].matches
    assert (match.rule, match.kind, match.score, match.values) == ("phones", "exact", 100, ("+79123456789",))
    by_mail = candidates(service, "contact", {"last_name": "X", "first_name": "Y", "emails": [" ANNA@example.COM "]},
                         SYSTEM)
    assert _ids(by_mail) == [anna.id] and by_mail[0].matches[0].values == ("anna@example.com",)
    assert candidates(service, "contact", {"last_name": "X", "first_name": "Y", "phones": "+7 916 000-00-02"},
                      SYSTEM) == []


def test_a_phone_past_the_indexed_positions_is_found_too(service):
    many = [f"+7 916 000-00-{i:02d}" for i in range(1, 7)]
    holder = _contact(service, "Многономерный", "Иван", phones=many)
    for phone in many:  # the first three by their position indexes (SQLite), the others through the overflow
        assert _ids(candidates(service, "contact", {"last_name": "A", "first_name": "B", "phones": phone},
                               SYSTEM)) == [holder.id], phone


def test_close_names_are_candidates_only_within_the_same_company(service, company, other_company):
    same = _contact(service, "Иванов", "Пётр", company=company.id, emails=["p1@x.ru"])
    _contact(service, "Иванов", "Пётр", company=other_company.id, emails=["p2@x.ru"])
    _contact(service, "Смирнова", "Ольга", company=company.id, emails=["o@x.ru"])
    alone = _contact(service, "Иванов", "Пётр", emails=["p3@x.ru"])
    typed = {"last_name": "Иванов", "first_name": "Петр", "company": company.id, "emails": "new@x.ru"}
    found = candidates(service, "contact", typed, SYSTEM)
    assert _ids(found) == [same.id]  # the other company's namesake is in another block; Ольга scores too low
    (match,) = found[0].matches
    assert (match.rule, match.kind, match.fields) == ("~full_name", "fuzzy", ("full_name",))
    assert match.score >= 88  # ё read as е, and word order does not matter either:
    reversed_order = {**typed, "last_name": "Пётр", "first_name": "Иванов"}
    assert _ids(candidates(service, "contact", reversed_order, SYSTEM)) == [same.id]
    # Without a company there is no block: the rule compares nobody (the exact rules still do).
    assert candidates(service, "contact", {**typed, "company": None}, SYSTEM) == []
    assert alone.id not in _ids(candidates(service, "contact", typed, SYSTEM))


def test_a_fuzzy_rule_without_same_blocks_on_the_first_letters(service):
    romashka = service.create("company", {"name": "Ромашка", "country": "kz"}, SYSTEM)
    service.create("company", {"name": "Альфа Ромашка", "country": "kz"}, SYSTEM)
    found = candidates(service, "company", {"name": "ромашка!", "country": "kz"}, SYSTEM)
    assert _ids(found) == [romashka.id]  # lower case typed, capitalised stored: the same block
    # Another first letter is another block: the name is never compared with every company.
    assert candidates(service, "company", {"name": "Ромашка", "country": "kz"}, SYSTEM)[0].id == romashka.id
    assert candidates(service, "company", {"name": "Фромашка", "country": "kz"}, SYSTEM) == []


def test_the_record_itself_deleted_records_and_unchanged_fields_are_not_candidates(service, company):
    first = _contact(service, "Петрова", "Анна", phones=["+7 912 345-67-89"])
    second = _contact(service, "Петрова", "Анна", phones=["+7 912 345-67-89"], company=company.id)
    # A change that does not touch a rule's fields asks nothing, even of a card known to repeat another...
    assert candidates(service, "contact", {"position": "CEO"}, SYSTEM, second.id) == []
    # ...while its duplicates are there to be listed (a merge screen asks so), never the record itself.
    assert _ids(candidates(service, "contact", {}, SYSTEM, second.id, changed_only=False)) == [first.id]
    third = _contact(service, "Ким", "Юна", phones=["+7 999 000-00-00"])
    assert _ids(candidates(service, "contact", {"phones": ["+7 912 345 67 89"]}, SYSTEM, third.id)) == \
        [first.id, second.id]
    service.delete("contact", first.id, SYSTEM, expected_version=first.version)
    assert _ids(candidates(service, "contact", {"phones": ["+7 912 345 67 89"]}, SYSTEM, third.id)) == [second.id]


def test_values_a_save_would_refuse_find_nothing(service):
    _contact(service, "Петрова", "Анна", phones=["+7 912 345-67-89"])
    # No first name (required): the save answers with its errors, not with duplicates.
    assert candidates(service, "contact", {"last_name": "Петрова", "phones": "+7 912 345-67-89"}, SYSTEM) == []


def test_candidates_are_ordered_best_first_and_show_the_fields_that_tell_them_apart(service, company):
    exact = _contact(service, "Петрова", "Анна", phones=["+7 912 345-67-89"], company=company.id,
                     position="Бухгалтер", city="Казань")
    close = _contact(service, "Петрова", "Ана", company=company.id, emails=["a@x.ru"])  # a typo
    found = candidates(service, "contact", {"last_name": "Петрова", "first_name": "Анна", "company": company.id,
                                            "phones": "+7 912 345-67-89"}, SYSTEM)
    assert _ids(found) == [exact.id, close.id]
    assert {m.rule for m in found[0].matches} == {"phones", "~full_name"} and 88 <= found[1].score < 100
    assert found[0].show == {"company": company.id, "position": "Бухгалтер", "city": "Казань"}
    as_json = found[0].as_json(service.entity("contact"))
    assert as_json["show"] == {"company": company.id, "position": "Бухгалтер", "city": "Казань"}
    assert as_json["matches"][0] == {"rule": "phones", "kind": "exact", "fields": ["phones"], "score": 100,
                                     "values": ["+79123456789"]}


def test_a_rep_never_learns_of_a_record_outside_their_read_scope(service, make_user, company):
    anna = make_user("anna", ["sales"], department="sales")[0]
    boris = make_user("boris", ["sales"], department="sales")[0]
    gleb = make_user("gleb", ["support"], department="support")[0]
    colleague = _contact(service, "Петрова", "Анна", owner=boris.id, phones=["+7 912 345-67-89"],
                         company=company.id)
    outsider = _contact(service, "Петрова", "Анна", owner=gleb.id, phones=["+7 912 345-67-89"], company=company.id)
    typed = {"last_name": "Петрова", "first_name": "Анна", "phones": "+7 912 345-67-89", "company": company.id}
    assert _ids(candidates(service, "contact", typed, anna)) == [colleague.id]  # contacts: department scope
    assert set(_ids(candidates(service, "contact", typed, gleb))) == {colleague.id, outsider.id}  # support: all
    # Over existing data: Anna sees one of the two, which repeats nothing she may read; support sees the pair.
    assert groups(service, "contact", anna) == []
    (group,) = groups(service, "contact", gleb)
    assert [m.id for m in group.members] == [colleague.id, outsider.id]
    third = _contact(service, "Петрова", "Анна", owner=anna.id, phones=["+7 912 345-67-89"], company=company.id)
    (group,) = groups(service, "contact", anna)
    assert [m.id for m in group.members] == [colleague.id, third.id]
    assert outsider.id not in {i for ids, _ in group.links for i in ids}


def test_groups_join_records_by_each_rule_without_comparing_every_pair(service, company, other_company,
                                                                       monkeypatch):
    a = _contact(service, "Иванов", "Пётр", company=company.id, phones=["+7 912 000-00-01"])
    b = _contact(service, "Иванов", "Петр", company=company.id, emails=["b@x.ru"])
    c = _contact(service, "Кузнецов", "Иван", phones=["+7 912 000-00-01", "+7 912 000-00-02"])
    d = _contact(service, "Попов", "Сергей", phones=["+7 912 000-00-02"])
    _contact(service, "Иванов", "Пётр", company=other_company.id, emails=["e@x.ru"])  # another block
    _contact(service, "Совсем", "Другой", company=company.id, emails=["f@x.ru"])
    compared = []
    real = duplicates.process.extract

    def counting(query, choices, **kwargs):
        compared.append(len(choices))
        return real(query, choices, **kwargs)

    monkeypatch.setattr(duplicates.process, "extract", counting)
    found = groups(service, "contact", SYSTEM)
    assert [[m.id for m in g.members] for g in found] == [[a.id, b.id, c.id, d.id]]
    links = {(ids, match.rule) for ids, match in found[0].links}
    assert ((a.id, c.id), "phones") in links and ((c.id, d.id), "phones") in links
    assert ((a.id, b.id), "~full_name") in links
    # Three contacts at Ромашка, one at Лютик: within the block 2 + 1 comparisons, never the 6 * 5 / 2 pairs.
    assert sum(compared) == 3
    assert found[0].as_json(service.entity("contact"))["ids"] == [a.id, b.id, c.id, d.id]
    assert groups(service, "contact", SYSTEM, limit=0) == []


def test_rule_lookups_read_an_index(service, engine, metadata):
    entity = metadata.entity("contact")
    with engine.connect() as conn:
        names = existing_indexes(conn)
    if engine.dialect.name == "sqlite":
        assert {"kdx_contact__phones__0", "kdx_contact__phones__1", "kdx_contact__phones__2",
                "kdx_contact__phones__len", "kdx_contact__emails__0"} <= names
    else:
        assert {"kdx_contact__phones__g", "kdx_contact__emails__g"} <= names
    # company (the fuzzy rule's block) is indexed on its own key column already; lead has the same lists.
    assert not any(n.startswith("kdx_contact__company") for n in names)
    assert "kdx_lead__phones__0" in names or "kdx_lead__phones__g" in names
    query = QueryBuilder(entity, engine.dialect.name, service.ctx, entity.fields, service.key_columns(entity))
    clauses = duplicates._equal(query, entity.fields["phones"], ["+79123456789"])
    expected = ["0", "1", "2", "len"] if engine.dialect.name == "sqlite" else ["g"]
    assert len(clauses) == len(expected)
    for clause, suffix in zip(clauses, expected, strict=True):
        statement = sa.select(records.c.id).where(*readable_where(metadata, SYSTEM, entity), clause)
        sql = str(statement.compile(engine, compile_kwargs={"literal_binds": True}))
        index = f"kdx_contact__phones__{suffix}"
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                # INDEXED BY makes SQLite fail outright when the index cannot serve the query.
                sql = sql.replace("FROM records", f"FROM records INDEXED BY {index}")
                plan = " ".join(str(r) for r in conn.execute(sa.text("EXPLAIN QUERY PLAN " + sql)))
            else:  # in a transaction rolled back: without the card's other partial indexes (an empty table's plan
                # takes any of them), the rule's own must serve the query, or the plan reads the table
                with conn.begin() as transaction:
                    every = conn.execute(sa.text("SELECT indexname FROM pg_indexes WHERE tablename = 'records' AND "
                                                 "schemaname = current_schema() AND indexname NOT LIKE 'pk%'"))
                    for other in set(every.scalars()) - {index}:
                        conn.execute(sa.text(f'DROP INDEX "{other}"'))
                    conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
                    plan = " ".join(str(r) for r in conn.execute(sa.text("EXPLAIN " + sql)))
                    transaction.rollback()
        assert index in plan, plan


def test_a_save_asks_only_when_it_sets_a_field_the_rules_depend_on_and_it_parses(service, metadata):
    contact = metadata.entity("contact")
    # full_name is a formula: its inputs count.
    assert duplicates.rule_inputs(contact) == {"phones", "emails", "full_name", "company", "first_name",
                                               "middle_name", "last_name"}
    ctx = service.ctx
    assert duplicates.worth_asking(contact, {"phones": ["8 912 345-67-89"]}, ctx)
    assert duplicates.worth_asking(contact, {"first_name": "Анна"}, ctx)
    assert not duplicates.worth_asking(contact, {"position": "CFO", "city": "Омск"}, ctx)
    # A value the save refuses: it answers with its own errors, in its one pipeline run.
    assert not duplicates.worth_asking(contact, {"emails": ["not an address"]}, ctx)
    # An edit form says which fields changed: sent but unchanged, they ask nothing.
    assert not duplicates.worth_asking(contact, {"phones": ["+79123456789"], "position": "CFO"}, ctx, {"position"})
    assert not duplicates.worth_asking(metadata.entity("deal"), {"name": "X"}, ctx)


def test_shown_texts_stay_texts_whatever_they_look_like(service):
    holder = _contact(service, "Цифров", "Ян", phones=["+7 912 345-67-89"], position="2024", city="true")
    (found,) = candidates(service, "contact", {"last_name": "A", "first_name": "B", "phones": "+79123456789"}, SYSTEM)
    assert found.id == holder.id and found.show == {"position": "2024", "city": "true"}
