"""create_many (an import's batch) makes the same records, journal rows, links and consent decisions as one create
per item, and refuses the same items for the same reasons (shipped config)."""

from __future__ import annotations

import sqlalchemy as sa

from kartoteka.errors import RecordValidationError
from kartoteka.records.bulk import create_many
from kartoteka.records.hooks import Origin
from kartoteka.records.model import SYSTEM
from kartoteka.storage.tables import consents, journal, record_links, records

IMPORT = Origin("import", automation=False, batch="import:1")


def _codes(error: RecordValidationError) -> dict[str, list[str]]:
    return {name: [m.code for m in messages] for name, messages in error.errors.items()}


def _stored(engine, record_id):
    with engine.connect() as conn:
        row = conn.execute(sa.select(records).where(records.c.id == record_id)).one()
        entries = conn.execute(sa.select(journal.c.action, journal.c.source, journal.c.batch, journal.c.changes,
                                         journal.c.version).where(journal.c.record_id == record_id)).all()
        links = conn.execute(sa.select(record_links.c.field, record_links.c.target_id)
                             .where(record_links.c.source_id == record_id)).all()
        decided = conn.execute(sa.select(consents.c.given, consents.c.channel, consents.c.field)
                               .where(consents.c.record_id == record_id)).all()
    keys = {c: getattr(row, c) for c in row._mapping if c.startswith(("kt_", "kn_"))}
    return (dict(row.data), row.title, row.owner, row.version, row.flags, keys, [tuple(e) for e in entries],
            sorted(tuple(link) for link in links), [tuple(d) for d in decided])


def test_a_batch_makes_what_one_create_per_item_makes(service, engine, make_user):
    manager = make_user("manager", ["admin"])[0]
    company = service.create("company", {"name": "Roga Ltd", "country": "gb", "inn": "7707083893"}, SYSTEM)
    items = [
        {"first_name": "Olga", "last_name": "K", "phones": ["+7 916 123-45-67"], "company": company.id,
         "pd_consent": True, "nps": "9", "birthday": "1990-05-01"},
        {"first_name": "Petr", "last_name": "N", "emails": ["petr@example.com"], "tags": ["vip", "new"]},
    ]
    with engine.begin() as conn:
        batch = create_many(service, "contact", items, manager, connection=conn, origin=IMPORT)
    with engine.begin() as conn:
        single = [service.create("contact", item, manager, connection=conn, origin=IMPORT) for item in items]
    assert all(not isinstance(r, RecordValidationError) for r in batch)
    for made, one in zip(batch, single, strict=True):
        assert made.values == one.values and made.title == one.title and made.version == one.version
        assert (made.owner, made.created_at, made.created_by) == (one.owner, one.created_at, one.created_by)
        assert _stored(engine, made.id) == _stored(engine, one.id)


def test_a_batch_refuses_the_same_items_for_the_same_reasons(service, engine, make_user):
    manager = make_user("manager", ["admin"])[0]
    service.create("company", {"name": "Roga Ltd", "country": "gb", "inn": "7707083893"}, SYSTEM)
    items = [
        {"name": "Taken Ltd", "country": "gb", "inn": "7707083893"},   # unique value of a stored record
        {"name": "Fine Ltd", "country": "gb", "inn": "500100732259"},
        {"name": "Twin Ltd", "country": "gb", "inn": "500100732259"},  # the same value as the row before
        {"name": "", "country": "zz"},                                  # invalid values
    ]
    with engine.begin() as conn:
        outcomes = create_many(service, "company", items, manager, connection=conn, origin=IMPORT)
    assert [type(o).__name__ for o in outcomes] == ["RecordValidationError", "Record", "RecordValidationError",
                                                    "RecordValidationError"]
    assert list(_codes(outcomes[0])) == ["inn"]
    assert _codes(outcomes[2]) == {"inn": ["unique.in_batch"]}
    assert set(_codes(outcomes[3])) >= {"name", "country"}
    with engine.begin() as conn:
        orphan, = create_many(service, "contact", [{"first_name": "A", "last_name": "B", "phones": ["+79161234567"],
                                                    "company": 999999}], manager, connection=conn, origin=IMPORT)
    assert _codes(orphan) == {"company": ["reference.missing"]}
    with engine.begin() as conn:  # one create of the first refused item says the same
        try:
            service.create("company", items[0], manager, connection=conn, origin=IMPORT)
        except RecordValidationError as single:
            assert _codes(single) == _codes(outcomes[0])


def test_a_card_with_rules_falls_back_to_one_save_at_a_time(app, make_user):
    state = app.extensions["kartoteka"]
    rep = make_user("rep", ["sales"], "sales")[0]
    items = [{"contact_name": f"Lead {i}", "phones": [f"+7 916 123-45-6{i}"], "source": "website"}
             for i in range(3)]
    with state.engine.begin() as conn:
        made = create_many(state.service, "lead", items, rep, connection=conn, origin=Origin("import"))
    assert all(not isinstance(r, RecordValidationError) for r in made), made
    with state.engine.connect() as conn:
        follow_ups = conn.execute(sa.text("SELECT count(*) FROM tasks WHERE rule_key = 'follow_up'")).scalar()
    assert follow_ups == 3  # the shipped rule ran for each lead
