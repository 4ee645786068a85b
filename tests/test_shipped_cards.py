"""The shipped cards under config/ and the demo data seeded on them."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import phonenumbers
import pytest
import sqlalchemy as sa

from kartoteka.demo import DEMO_PASSWORD, DEMO_USERS, DemoData, seed_demo
from kartoteka.errors import PermissionDenied, RecordValidationError
from kartoteka.metadata.loader import check_config
from kartoteka.records.model import SYSTEM, Principal
from kartoteka.storage.tables import records, rule_timers, tasks, users
from kartoteka.users import check_password, create_user

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
SHIPPED = ("lead", "contact", "company", "deal", "ticket", "hr_record")
ROLES = {"admin", "sales_manager", "sales", "support", "hr", "finance", "marketing"}
DEPARTMENTS = {"sales", "support", "hr", "finance", "marketing"}


# --- the metadata -------------------------------------------------------------------------------


def test_shipped_config_loads_without_problems():
    metadata, problems = check_config(CONFIG_DIR)
    assert [str(p) for p in problems] == []
    assert metadata is not None
    assert set(metadata.entities) == set(SHIPPED)
    assert set(metadata.roles) == ROLES
    assert set(metadata.departments) == DEPARTMENTS
    for role in metadata.roles.values():
        assert set(role.label.texts) == {"en", "ru"}
        assert role.description
    for label in metadata.departments.values():
        assert set(label.texts) == {"en", "ru"}


def _labels(entity):
    yield entity.name, entity.label
    for name, field in entity.fields.items():
        yield name, field.label
        yield from ((f"{name}={o.value}", o.label) for o in field.options)
    for tab in entity.layout.tabs:
        yield "tab", tab.label
        yield from (("group", g.label) for g in tab.groups if g.label is not None)
    yield from (("validation", v.message) for v in entity.validations)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_card_has_tabs_groups_conditions_formulas_and_access(metadata, name):
    entity = metadata.entity(name)
    fields = entity.fields.values()

    assert len(entity.layout.tabs) >= 2
    assert all(tab.groups for tab in entity.layout.tabs)
    assert any(g.columns == 2 for tab in entity.layout.tabs for g in tab.groups)
    # Every field has a place on the default form.
    assert sorted(entity.layout.field_names()) == sorted(entity.fields)

    assert any(f.visible_if is not None for f in fields), "no conditional field"
    assert any(f.is_formula for f in fields), "no formula"
    assert any(f.access.view is not None or f.access.edit is not None for f in fields), "no role-based access"
    assert any(f.indexed for f in fields)
    assert all(not f.is_list for f in fields if f.indexed or f.unique), "indexed/unique on a list field"

    assert entity.title.names and entity.list.columns and entity.list.search
    assert entity.rules and entity.validations
    for where, label in _labels(entity):
        assert label is not None and {"en", "ru"} <= set(label.texts), f"{name}.{where} needs en and ru"


def test_layout_variants_place_every_required_field(metadata):
    assert "finance" in metadata.entity("deal").variants
    assert "marketing" in metadata.entity("contact").variants
    for entity in metadata.entities.values():
        required = {n for n, f in entity.fields.items() if f.required and f.default is None}
        for department, layout in entity.variants.items():
            assert department in metadata.departments
            assert required <= set(layout.field_names()), f"{entity.name}/{department}"


def test_consents_are_never_pre_ticked(metadata):
    consents = [f for e in metadata.entities.values() for f in e.fields.values() if f.type.name == "consent"]
    assert len(consents) >= 3
    for field in consents:
        assert field.default is None
        assert field.policy_version and field.policy_url


def test_restricted_fields(metadata):
    deal = metadata.entity("deal")
    assert deal.field("margin").access.view == {"finance", "admin"}
    assert deal.field("margin").access.edit == {"finance", "admin"}
    hr = metadata.entity("hr_record")
    for name in ("salary", "passport_series", "passport_number", "snils", "birth_date"):
        assert hr.field(name).access.view == {"hr", "admin"}, name
    company = metadata.entity("company")
    assert company.field("inn").unique and company.field("inn").indexed
    assert company.field("kpp").pattern.fullmatch("773601001")
    assert company.field("inn").pattern.fullmatch("7707083893")
    assert company.field("inn").pattern.fullmatch("500100732259")
    assert not company.field("inn").pattern.fullmatch("77070838931")


# --- behaviour through the record service ------------------------------------------------------------


def _principal(engine, clock, username, roles, department=None):
    return create_user(engine, username, roles, clock.now(), department=department)


def _company(service, **values):
    return service.create("company", {"name": "Northwind Trading Ltd", "country": "gb", **values}, SYSTEM)


def test_deal_expected_revenue_and_lost_reason(service, clock):
    company = _company(service)
    deal = service.create("deal", {"name": "CRM rollout", "company": company.id, "amount": "1 500 000",
                                   "probability": 25, "stage": "proposal"}, SYSTEM)
    assert deal["expected_revenue"] == Decimal("375000.00")

    deal = service.update("deal", deal.id, {"probability": "60%"}, SYSTEM, expected_version=deal.version)
    assert deal["expected_revenue"] == Decimal("900000.00")

    form = service.evaluate("deal", {"stage": "negotiation"}, SYSTEM, record_id=deal.id)
    assert form.visible["lost_reason"] is False and form.required["lost_reason"] is False
    form = service.evaluate("deal", {"stage": "lost"}, SYSTEM, record_id=deal.id)
    assert form.visible["lost_reason"] is True and form.required["lost_reason"] is True

    with pytest.raises(RecordValidationError) as caught:
        service.update("deal", deal.id, {"stage": "lost"}, SYSTEM, expected_version=deal.version)
    assert "lost_reason" in caught.value.errors

    lost = service.update("deal", deal.id, {"stage": "lost", "lost_reason": "price"}, SYSTEM,
                          expected_version=deal.version)
    assert lost["stage"] == "lost" and lost["lost_reason"] == "price"


def test_deal_close_date_cannot_be_in_the_past_while_open(service, clock):
    company = _company(service)
    yesterday = clock.today() - timedelta(days=1)
    with pytest.raises(RecordValidationError) as caught:
        service.create("deal", {"name": "Old", "company": company.id, "stage": "proposal",
                                "close_date": yesterday}, SYSTEM)
    assert "close_date" in caught.value.errors
    won = service.create("deal", {"name": "Done", "company": company.id, "stage": "won", "amount": 1000,
                                  "close_date": yesterday, "won_date": yesterday}, SYSTEM)
    assert won["close_date"] == yesterday


def test_deal_margin_is_for_finance_only(service, engine, clock):
    sales = _principal(engine, clock, "sales_rep", ["sales"], "sales")
    finance = _principal(engine, clock, "controller", ["finance"], "finance")
    company = _company(service)

    with pytest.raises(RecordValidationError) as caught:
        service.create("deal", {"name": "Sneaky", "company": company.id, "margin": 50}, sales)
    assert "margin" in caught.value.errors

    with pytest.raises(PermissionDenied, match="may not create Deals"):
        service.create("deal", {"name": "Priced", "company": company.id}, finance)
    deal = service.create("deal", {"name": "Priced", "company": company.id, "amount": 200000}, sales)
    deal = service.update("deal", deal.id, {"margin": "30"}, finance, expected_version=deal.version)
    assert deal["margin"] == Decimal("30.00") and deal["margin_amount"] == Decimal("60000.00")

    seen_by_sales = service.get("deal", deal.id, sales)
    assert "margin" not in seen_by_sales.values and "margin_amount" not in seen_by_sales.values
    assert "cost" not in seen_by_sales.values
    assert seen_by_sales["expected_revenue"] == Decimal("20000.00")  # default probability 10 %
    assert service.metadata.entity("deal").layout_for("finance").tabs[0].groups[1].fields[:2] == (
        "amount", "probability")


def test_company_requisites(service):
    with pytest.raises(RecordValidationError) as caught:
        service.create("company", {"name": "ООО «Ромашка»", "inn": "12345", "kpp": "1234"}, SYSTEM)
    assert {"inn", "kpp"} <= caught.value.errors.keys()
    with pytest.raises(RecordValidationError) as caught:
        service.create("company", {"name": "ООО «Ромашка»"}, SYSTEM)  # Russian by default: INN required
    assert "inn" in caught.value.errors
    with pytest.raises(RecordValidationError) as caught:
        service.create("company", {"name": "ООО «Ромашка»", "inn": "7707083893"}, SYSTEM)
    assert "kpp" in caught.value.errors  # an organisation needs a KPP

    first = service.create("company", {"name": "ООО «Ромашка»", "inn": "7707083893", "kpp": "773601001",
                                       "bik": "044525225", "bank_account": "40702810938000000001",
                                       "employees": 120, "annual_revenue": "60000000"}, SYSTEM)
    assert first["revenue_per_employee"] == Decimal("500000.00")
    with pytest.raises(RecordValidationError) as caught:
        service.create("company", {"name": "Ромашка-2", "inn": "7707083893", "kpp": "773601001"}, SYSTEM)
    assert "inn" in caught.value.errors
    sole = service.create("company", {"name": "ИП Петров А. А.", "inn": "500100732259"}, SYSTEM)
    assert sole["kpp"] is None


def test_ticket_sla_and_resolution(service, clock):
    urgent = service.create("ticket", {"subject": "CRM is down", "description": "Nobody can log in.",
                                       "priority": "urgent", "reporter_email": "it@northwind.co.uk"}, SYSTEM)
    assert urgent["sla_due"] == clock.now() + timedelta(hours=4)
    low = service.create("ticket", {"subject": "Typo", "description": "Typo on the invoice page.",
                                    "priority": "low", "reporter_phone": "+7 916 123-45-67"}, SYSTEM)
    assert low["sla_due"] == clock.now() + timedelta(hours=72)
    assert low["reporter_phone"] == "+79161234567"

    with pytest.raises(RecordValidationError) as caught:
        service.update("ticket", urgent.id, {"status": "resolved"}, SYSTEM, expected_version=urgent.version)
    assert "resolution" in caught.value.errors
    done = service.update("ticket", urgent.id, {"status": "resolved", "resolution": "Restarted the service.",
                                                "satisfaction": 5}, SYSTEM, expected_version=urgent.version)
    assert done["satisfaction"] == 5

    with pytest.raises(RecordValidationError) as caught:
        service.create("ticket", {"subject": "Anonymous", "description": "?"}, SYSTEM)
    assert "contact" in caught.value.errors  # somebody must be reachable


def test_hr_record_probation_and_personal_data(service, engine, clock):
    hr = _principal(engine, clock, "hr_officer", ["hr"], "hr")
    sales = _principal(engine, clock, "sales_rep", ["sales"], "sales")
    record = service.create("hr_record", {
        "employee_name": "Смирнова Анна Сергеевна", "position": "Бухгалтер", "department": "finance",
        "hire_date": "31.01.2026", "probation_months": 1, "salary": "150 000", "bonus_percent": 10,
        "passport_series": "4510", "passport_number": "123456", "pd_consent": True,
    }, hr)
    assert record["probation_end"] == date(2026, 2, 28)
    assert record["annual_cost"] == Decimal("1980000.00")
    assert record["pd_consent"]["given"] is True and record["pd_consent"]["policy_version"] == "2026-01-hr"

    with pytest.raises(PermissionDenied, match="may not open Employee records"):
        service.get("hr_record", record.id, sales)

    with pytest.raises(RecordValidationError) as caught:
        service.create("hr_record", {"employee_name": "John Carter", "position": "Support Engineer",
                                     "department": "support", "hire_date": "2026-02-01",
                                     "status": "dismissed"}, hr)
    assert "dismissal_date" in caught.value.errors


def test_contact_needs_a_way_to_reach_and_computes_nps_category(service):
    with pytest.raises(RecordValidationError) as caught:
        service.create("contact", {"first_name": "Анна", "last_name": "Смирнова"}, SYSTEM)
    assert "phones" in caught.value.errors
    contact = service.create("contact", {"first_name": "Анна", "last_name": "Смирнова", "middle_name": "Петровна",
                                         "phones": ["+7 916 123-45-67", "8 (495) 123-45-67"], "nps": 6}, SYSTEM)
    assert contact["phones"] == ["+79161234567", "+74951234567"]
    assert contact["nps_category"] == "detractor"
    assert contact["full_name"] == "Анна Петровна Смирнова"
    assert contact["segment"] == "potential" and contact["pd_consent"] is None


# --- demo data ------------------------------------------------------------------------------------


def _live(engine):
    with engine.connect() as conn:
        rows = conn.execute(sa.select(records.c.id, records.c.entity, records.c.data, records.c.owner)
                            .where(records.c.deleted_at.is_(None))).all()
    return {row.id: row for row in rows}


def test_seed_demo_creates_consistent_records_once(service, engine, clock):
    counts = seed_demo(service, engine, clock.now())
    assert set(counts) == set(SHIPPED)
    assert all(count >= 50 for count in counts.values()), counts

    with engine.connect() as conn:
        user_ids = dict(conn.execute(sa.select(users.c.username, users.c.id)).all())
    assert {u.username for u in DEMO_USERS} <= user_ids.keys()
    assert check_password(engine, "sales1", DEMO_PASSWORD) is not None
    languages = {u.language for u in DEMO_USERS}
    assert languages == {"ru", "en"}

    live = _live(engine)
    by_entity = {name: {i: r.data for i, r in live.items() if r.entity == name} for name in SHIPPED}
    assert {name: len(rows) for name, rows in by_entity.items()} == counts
    assert all(row.owner in user_ids.values() for row in live.values())

    # Every reference points at a live record of the right card.
    for entity in service.metadata.entities.values():
        for field in entity.reference_fields:
            for record_id, data in by_entity[entity.name].items():
                target = data.get(field.name)
                if target is not None:
                    assert target in live, f"{entity.name} #{record_id}.{field.name} -> {target}"
                    assert live[target].entity == field.to
    contacts, companies = by_entity["contact"], by_entity["company"]
    assert all(c["company"] in companies for c in contacts.values())
    for deal in by_entity["deal"].values():
        assert contacts[deal["contact"]]["company"] == deal["company"]
    for ticket in by_entity["ticket"].values():
        assert contacts[ticket["contact"]]["company"] == ticket.get("company")
    for lead in by_entity["lead"].values():
        if lead.get("converted"):
            assert contacts[lead["converted_contact"]]["company"] == lead["converted_company"]

    # A realistic spread: the whole funnel, both languages, valid phones.
    assert {d["stage"] for d in by_entity["deal"].values()} >= {"new", "proposal", "won", "lost"}
    assert {c["country"] for c in companies.values()} >= {"ru", "gb", "us"}
    names = [c["name"] for c in companies.values()]
    assert any("«" in n for n in names) and any(n.endswith(("Ltd", "LLC", "Inc.")) for n in names)
    phones = [p for rows in by_entity.values() for data in rows.values()
              for key in ("phones", "reporter_phone", "work_phone", "personal_phone")
              for p in ([data[key]] if isinstance(data.get(key), str) else data.get(key) or [])]
    assert len(phones) > 200
    assert all(phonenumbers.is_valid_number(phonenumbers.parse(p, None)) for p in phones)
    inns = [c["inn"] for c in companies.values() if "inn" in c]
    assert len(inns) == len(set(inns)) > 20

    # A second run adds nothing.
    with engine.connect() as conn:
        total_users = conn.execute(sa.select(sa.func.count()).select_from(users)).scalar()
    assert seed_demo(service, engine, clock.now()) == counts
    assert _live(engine).keys() == live.keys()
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(users)).scalar() == total_users


def test_seed_demo_skips_cards_that_have_records(service, engine, clock):
    mine = _company(service, name="Existing Client Ltd")
    counts = seed_demo(service, engine, clock.now(), per_entity=5)
    assert counts == {"company": 1, "contact": 5, "deal": 5, "lead": 5, "ticket": 5, "hr_record": 5}
    live = _live(engine)
    assert {r.data["company"] for r in live.values() if r.entity == "contact"} == {mine.id}
    assert seed_demo(service, engine, clock.now(), per_entity=5) == counts


def test_demo_data_is_deterministic(clock):
    users = {u.username: Principal(i, u.username, frozenset(u.roles)) for i, u in enumerate(DEMO_USERS, 1)}
    first = DemoData(clock.now(), users, seed=7)
    again = DemoData(clock.now(), users, seed=7)
    other = DemoData(clock.now(), users, seed=8)
    assert first.companies(10) == again.companies(10)
    assert first.hr_records(10) == again.hr_records(10)
    assert first.companies(10) != other.companies(10)


def test_seed_demo_enters_history_without_automation_and_todays_leads_with_it(app, clock):
    """The demo's past records fire no rules (no onboarding task for staff hired years ago), but date timers are
    set, and the leads that arrive "today" get their owners' follow-up tasks from the shipped rule."""
    state = app.extensions["kartoteka"]
    counts = seed_demo(state.service, state.engine, clock.now(), per_entity=20)
    assert counts["lead"] == 20
    with state.engine.connect() as conn:
        task_rows = conn.execute(sa.select(tasks.c.entity, tasks.c.rule_key, tasks.c.assignee)).all()
        timers = conn.execute(sa.select(rule_timers.c.entity, rule_timers.c.rule_key)).all()
    assert [(t.entity, t.rule_key) for t in task_rows] == [("lead", "follow_up")] * 2
    assert all(t.assignee is not None for t in task_rows)
    assert {(t.entity, t.rule_key) for t in timers} >= {("hr_record", "probation_ends")}
