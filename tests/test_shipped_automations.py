"""The automations shipped in config/entities run as written (issue 9 §4), through the app's record service."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from kartoteka.errors import RecordValidationError
from kartoteka.records.hooks import Origin
from kartoteka.records.model import SYSTEM, ListQuery
from kartoteka.rules.timers import fire_due_timers, run_schedules
from kartoteka.storage.tables import notifications, outbox, records, rule_runs, rule_timers, tasks


@pytest.fixture
def platform_state(app):
    return app.extensions["kartoteka"]


@pytest.fixture
def people(make_user):
    return {name: make_user(name, roles, department) for name, roles, department in (
        ("sales1", ["sales"], "sales"), ("boss", ["sales_manager"], "sales"), ("fin", ["finance"], "finance"),
        ("sup1", ["support"], "support"), ("sup2", ["support"], "support"), ("hr1", ["hr"], "hr"),
        ("root", ["admin"], None))}


def _rows(engine, table, *where):
    with engine.connect() as conn:
        return conn.execute(sa.select(table).where(*where).order_by(*table.primary_key.columns)).all()


def test_a_new_lead_gets_a_follow_up_task_for_the_next_working_day(platform_state, people, fixed_clock):
    service = platform_state.service
    lead = service.create("lead", {"contact_name": "Анна Петрова", "company_name": "Ромашка", "request": "Нужен CRM",
                                   "phones": ["+7 912 345-67-89"]}, people["sales1"][0], origin=Origin("ui"))
    task = _rows(platform_state.engine, tasks, tasks.c.record_id == lead.id)[0]
    assert task.title == "Contact Анна Петрова (Ромашка)" and task.description == "Нужен CRM"
    assert task.assignee == people["sales1"][0].id
    now = fixed_clock.now()
    due = task.due_at.replace(tzinfo=UTC)
    assert due.date() > now.date() and due.weekday() < 5 and (due.date() - now.date()).days <= 3


def test_convert_lead_creates_company_contact_and_deal_and_marks_it_converted(client, platform_state, people):
    service = platform_state.service
    user, headers = people["sales1"]
    lead = service.create("lead", {"contact_name": "Anna Petrova", "company_name": "Romashka LLC",
                                   "inn": "500100732259", "emails": ["anna@romashka.example"],
                                   "phones": ["+7 912 345-67-89"], "budget": "250000", "position": "CFO"}, user)
    response = client.post(f"/api/v1/records/lead/{lead.id}/rules/convert_lead", headers=headers)
    assert response.status_code == 200, response.get_json()
    converted = service.get("lead", lead.id, SYSTEM)
    assert converted["status"] == "converted" and converted["converted"] is True
    assert converted["converted_at"] is not None  # the "Mark converted" rule, fired by the conversion's save
    company = service.get("company", converted["converted_company"], SYSTEM)
    contact = service.get("contact", converted["converted_contact"], SYSTEM)
    deal = service.get("deal", converted["converted_deal"], SYSTEM)
    assert company["name"] == "Romashka LLC"
    assert (contact["first_name"], contact["last_name"], contact["company"]) == ("Anna", "Petrova", company.id)
    assert contact["emails"] == ["anna@romashka.example"] and contact["position"] == "CFO"
    assert (deal["company"], deal["contact"], str(deal["amount"])) == (company.id, contact.id, "250000.00")
    assert {company.owner, contact.owner, deal.owner} == {user.id}
    again = client.post(f"/api/v1/records/lead/{lead.id}/rules/convert_lead", headers=headers)
    assert again.status_code == 422  # converted already

    second = service.create("lead", {"contact_name": "Anna Petrova", "company_name": "Romashka LLC",
                                     "inn": "500100732259", "emails": ["anna@romashka.example"]}, user)
    assert client.post(f"/api/v1/records/lead/{second.id}/rules/convert_lead", headers=headers).status_code == 200
    linked = service.get("lead", second.id, SYSTEM)
    assert linked["converted_company"] == company.id and linked["converted_contact"] == contact.id  # matched
    assert linked["converted_deal"] != deal.id


def test_a_won_deal_opens_an_onboarding_ticket_and_notifies_finance(platform_state, people):
    service = platform_state.service
    company = service.create("company", {"name": "Northwind", "country": "gb"}, SYSTEM)
    contact = service.create("contact", {"first_name": "Ann", "last_name": "Lee", "company": company.id,
                                         "emails": ["ann@northwind.example"]}, SYSTEM, owner=people["sales1"][0].id)
    try:
        deal = service.create("deal", {"name": "Big one", "company": company.id, "contact": contact.id,
                                       "amount": "120000"}, people["sales1"][0])
    except RecordValidationError as exc:
        raise AssertionError(exc.errors) from None
    try:
        service.update("deal", deal.id, {"stage": "won", "won_date": date(2026, 3, 1).isoformat()}, people["root"][0],
                       expected_version=None)
    except RecordValidationError as exc:
        raise AssertionError(exc.errors) from None
    ticket = service.list("ticket", SYSTEM, ListQuery()).items[0]
    assert ticket["subject"] == "Onboarding: Big one" and ticket["company"] == company.id
    assert ticket["contact"] == contact.id
    assert ticket["category"] == "onboarding"
    told = _rows(platform_state.engine, notifications, notifications.c.user_id == people["fin"][0].id)
    assert told and "Big one" in told[0].text
    assert service.get("deal", deal.id, SYSTEM)["probability"] == 100


def test_an_urgent_ticket_goes_to_the_least_loaded_support_agent_with_its_sla(platform_state, people):
    service = platform_state.service
    first = service.create("ticket", {"subject": "Down", "description": "All down", "priority": "urgent",
                                      "reporter_email": "a@example.com"}, people["root"][0])
    second = service.create("ticket", {"subject": "Down again", "description": "Still", "priority": "urgent",
                                       "reporter_email": "b@example.com"}, people["root"][0])
    assignees = {service.get("ticket", t.id, SYSTEM)["assignee"] for t in (first, second)}
    assert assignees == {people["sup1"][0].id, people["sup2"][0].id}
    texts = [n.text for n in _rows(platform_state.engine, notifications,
                                   notifications.c.user_id == people["sup1"][0].id)]
    assert any(text.startswith("Urgent ticket: Down (due ") for text in texts)


def test_hr_hears_of_a_probation_ending_fourteen_days_ahead_within_working_hours(platform_state, people):
    service = platform_state.service
    record = service.create("hr_record", {"employee_name": "Ivan Ivanov", "position": "Engineer",
                                          "department": "sales", "status": "active", "hire_date": "2026-01-12",
                                          "probation_months": 3}, people["hr1"][0])
    timer = _rows(platform_state.engine, rule_timers, rule_timers.c.record_id == record.id)[0]
    due = timer.due_at.replace(tzinfo=UTC)
    assert due == datetime(2026, 3, 30, 9, 0, tzinfo=UTC)  # probation ends 12 April (a Sunday) - 14 days, Monday 09:00
    assert fire_due_timers(platform_state.service.hooks, due + timedelta(minutes=1)) == 1
    task = _rows(platform_state.engine, tasks, tasks.c.record_id == record.id, tasks.c.rule_key == "probation_ends")[0]
    assert task.title.startswith("Probation of Ivan Ivanov ends on") and task.assignee == people["hr1"][0].id


def test_leads_untouched_for_ninety_days_fall_asleep_at_night(platform_state, people, fixed_clock):
    service = platform_state.service
    old = service.create("lead", {"contact_name": "Old", "phones": ["+7 912 000-00-01"]}, people["sales1"][0])
    fresh = service.create("lead", {"contact_name": "Fresh", "phones": ["+7 912 000-00-02"]}, people["sales1"][0])
    with platform_state.engine.begin() as conn:
        conn.execute(sa.update(records).where(records.c.id == old.id)
                     .values(updated_at=fixed_clock.now() - timedelta(days=91)))
    rules = platform_state.service.hooks
    now = fixed_clock.now()
    run_schedules(rules, now)  # first sight: schedules the next runs
    fixed_clock.advance(days=1)
    run_schedules(rules, fixed_clock.now())
    assert service.get("lead", old.id, SYSTEM)["segment"] == "sleeping"
    assert service.get("lead", fresh.id, SYSTEM)["segment"] is None


def test_birthday_greetings_go_to_contacts_who_agreed_to_newsletters_and_consented(platform_state, people,
                                                                                     fixed_clock):
    service = platform_state.service
    today = fixed_clock.now().date()
    tomorrow = today + timedelta(days=1)
    born = date(1990, tomorrow.month, tomorrow.day)
    agreed = service.create("contact", {"first_name": "Olga", "last_name": "K", "birthday": born.isoformat(),
                                        "emails": ["olga@example.com"], "marketing_opt_in": True,
                                        "pd_consent": True}, people["root"][0])
    service.create("contact", {"first_name": "Petr", "last_name": "N", "birthday": born.isoformat(),
                               "emails": ["petr@example.com"], "marketing_opt_in": False, "pd_consent": True},
                   people["root"][0])
    withdrawn = service.create("contact", {"first_name": "Ivan", "last_name": "M", "birthday": born.isoformat(),
                                           "emails": ["ivan@example.com"], "marketing_opt_in": True,
                                           "pd_consent": True}, people["root"][0])
    service.update("contact", withdrawn.id, {"pd_consent": False}, people["root"][0], expected_version=None)
    rules = platform_state.service.hooks
    run_schedules(rules, fixed_clock.now())
    fixed_clock.advance(days=1)  # 09:30 tomorrow: the 09:00 run is due, and today is the birthday
    run_schedules(rules, fixed_clock.now())
    mails = _rows(platform_state.engine, outbox, outbox.c.kind == "email")
    assert [m.payload["to"] for m in mails] == [["olga@example.com"]]
    assert "Olga" in mails[0].payload["subject"]
    assert _rows(platform_state.engine, rule_runs, rule_runs.c.record_id == agreed.id,
                 rule_runs.c.rule_key == "birthday_greeting")[0].source == "schedule"
    skipped = _rows(platform_state.engine, rule_runs, rule_runs.c.record_id == withdrawn.id,
                    rule_runs.c.rule_key == "birthday_greeting")[0]
    assert skipped.actions == [{"action": "email", "skipped": "no consent", "field": "pd_consent"}]
