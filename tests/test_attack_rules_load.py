"""Attack on the shipped 'Urgent ticket' rule's least-loaded assignment (config/entities/ticket.yaml,
kartoteka/rules/recipients.py pick). xfail(strict=True) marks a defect proven by the test."""

from __future__ import annotations

import pytest

from kartoteka.records.model import SYSTEM


@pytest.fixture
def people(make_user):
    return {name: make_user(name, roles, department)[0] for name, roles, department in (
        ("sup1", ["support"], "support"), ("sup2", ["support"], "support"), ("root", ["admin"], None))}


def test_the_least_loaded_agent_is_the_one_with_least_open_work(app, people):
    service = app.extensions["kartoteka"].service
    sup1, sup2, root = people["sup1"], people["sup2"], people["root"]
    for number in range(3):  # sup1's past work, all closed
        service.create("ticket", {"subject": f"Old {number}", "description": "done", "status": "closed",
                                  "resolution": "Fixed", "assignee": sup1.id, "reporter_email": "a@example.com"},
                       root)
    service.create("ticket", {"subject": "Busy", "description": "open", "status": "in_progress",
                              "assignee": sup2.id, "reporter_email": "b@example.com"}, root)
    urgent = service.create("ticket", {"subject": "Down", "description": "All down", "priority": "urgent",
                                       "reporter_email": "c@example.com"}, root)
    assert service.get("ticket", urgent.id, SYSTEM)["assignee"] == sup1.id
