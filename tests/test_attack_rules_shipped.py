"""Attacks on the shipped automations (config/entities): who gets their work, and what converting a lead reveals
of records outside the converting rep's scope. xfail(strict=True) marks a defect proven by the test."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from kartoteka.records.model import SYSTEM
from kartoteka.storage.tables import tasks


@pytest.fixture
def platform_state(app):
    return app.extensions["kartoteka"]


@pytest.fixture
def people(make_user):
    return {name: make_user(name, roles, department) for name, roles, department in (
        ("sales1", ["sales"], "sales"), ("sales2", ["sales"], "sales"), ("sup1", ["support"], "support"),
        ("root", ["admin"], None))}


def _tasks(engine, *where):
    with engine.connect() as conn:
        return conn.execute(sa.select(tasks).where(*where).order_by(tasks.c.id)).all()


def test_the_urgent_tickets_response_task_goes_to_the_agent_it_was_given_to(platform_state, people):
    service = platform_state.service
    ticket = service.create("ticket", {"subject": "Down", "description": "All down", "priority": "urgent",
                                       "reporter_email": "a@example.com"}, people["sales1"][0])
    agent = service.get("ticket", ticket.id, SYSTEM)["assignee"]
    assert agent == people["sup1"][0].id
    made = _tasks(platform_state.engine, tasks.c.record_id == ticket.id)
    assert [t.assignee for t in made if t.title.startswith("Respond to urgent ticket")] == [agent]


def test_converting_a_lead_twice_is_refused_the_second_time(client, platform_state, people):
    """What holds: a converted lead cannot be converted again, and a rep outside its scope cannot convert it."""
    service = platform_state.service
    user, headers = people["sales1"]
    lead = service.create("lead", {"contact_name": "Ivan Petrov", "company_name": "Vector", "inn": "500100732259",
                                   "phones": ["+7 912 345-67-80"]}, user)
    assert client.post(f"/api/v1/records/lead/{lead.id}/rules/convert_lead",
                       headers=people["sales2"][1]).status_code == 404
    done = client.post(f"/api/v1/records/lead/{lead.id}/rules/convert_lead", headers=headers)
    assert done.status_code == 200, done.get_json()
    assert client.post(f"/api/v1/records/lead/{lead.id}/rules/convert_lead", headers=headers).status_code == 422
    with platform_state.engine.connect() as conn:
        deals = conn.execute(sa.text("SELECT count(*) FROM records WHERE entity = 'deal'")).scalar()
    assert deals == 1


def test_a_lead_of_an_organisation_converts(client, platform_state, people):
    service = platform_state.service
    user, headers = people["sales1"]
    lead = service.create("lead", {"contact_name": "Olga Sidorova", "company_name": "Sberbank",
                                   "inn": "7707083893", "kpp": "773601001", "phones": ["+7 912 345-67-81"]}, user)
    done = client.post(f"/api/v1/records/lead/{lead.id}/rules/convert_lead", headers=headers)
    assert done.status_code == 200, done.get_json()["detail"]
    assert service.get("lead", lead.id, SYSTEM)["converted"] is True


def test_convert_lead_links_no_contact_outside_the_converting_reps_scope(client, platform_state, people):
    service = platform_state.service
    service.create("contact", {"first_name": "Hidden", "last_name": "Person", "emails": ["vip@secret.example"],
                               "phones": ["+7 912 000-00-01"]}, people["sup1"][0])
    user, headers = people["sales1"]
    lead = service.create("lead", {"contact_name": "Someone Else", "company_name": "Vector", "inn": "500100732259",
                                   "emails": ["vip@secret.example"]}, user)
    done = client.post(f"/api/v1/records/lead/{lead.id}/rules/convert_lead", headers=headers)
    assert done.status_code == 200, done.get_json()
    assert "matched" not in str(done.get_json()["run"]["actions"])
    contact = service.get("lead", lead.id, SYSTEM)["converted_contact"]
    assert client.get(f"/api/v1/records/contact/{contact}", headers=headers).status_code == 200
