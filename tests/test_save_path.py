"""One straight save path (issue 8 §4): an edit in the browser or the API reads the card once, writes it
once and runs the pipeline once; a refused edit answers from that same run.

Statements are counted with a SQLAlchemy event listener; the session and CSRF checks of the request
(the sessions and users tables) are the sign-in's, not the save's, and are counted apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import MultiDict

from kartoteka.records import pipeline
from kartoteka.records.model import SYSTEM
from kartoteka.storage.database import read_engine
from tests.test_files import scoped, scoped_config, stored, upload_limits  # noqa: F401  (fixtures)
from tests.test_web import CSRF, _form_fields, sign_in


class Counted:
    """SQL statements and pipeline runs seen while the block ran."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.pipeline_runs = 0

    def on(self, table: str, verb: str) -> list[str]:
        """Statements of `verb` (SELECT, UPDATE, INSERT) that touch `table` (the header's count of the user's tasks
        and notifications, on every page, reads records for the tasks' cards: not the save's)."""
        return [s for s in self.statements if s.lstrip().upper().startswith(verb)
                and re.search(rf"\b{table}\b", s) and not re.search(r"\bFROM notifications\b", s)]

    def outside_sign_in(self) -> list[str]:
        """Statements that are not the request's session check."""
        sign_in = re.compile(r"\b(user_sessions|sign_in_attempts|api_tokens)\b")
        return [s for s in self.statements if not sign_in.search(s)]


@contextmanager
def counting(engine: sa.Engine, monkeypatch) -> Iterator[Counted]:
    counted = Counted()

    def record(conn, cursor, statement, parameters, context, executemany):
        counted.statements.append(statement)

    original = pipeline.Pipeline.run

    def run(self, *args, **kwargs):
        counted.pipeline_runs += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pipeline.Pipeline, "run", run)
    engines = {engine, read_engine(engine)}  # writes' engine and reads' (storage/reading.py)
    for one in engines:
        sa.event.listen(one, "before_cursor_execute", record)
    try:
        yield counted
    finally:
        for one in engines:
            sa.event.remove(one, "before_cursor_execute", record)
        monkeypatch.setattr(pipeline.Pipeline, "run", original)


def _engine(client) -> sa.Engine:
    return client.application.extensions["kartoteka"].engine


@pytest.fixture
def contact_form(client, service, make_user):
    rep, headers = make_user("rep", ["sales"], "sales")
    contact = service.create("contact", {"first_name": "Анна", "last_name": "Петрова", "city": "Пермь",
                                         "emails": ["anna@example.org"]}, rep)
    sign_in(client, rep)
    fields = _form_fields(client.get(f"/cards/contact/{contact.id}/edit").get_data(as_text=True))
    return contact, fields, headers


def _post(client, contact, fields, **changes):
    data = MultiDict([*((k, changes.get(k, v)) for k, v in fields), ("csrf_token", CSRF)])
    return client.post(f"/cards/contact/{contact.id}/edit", data=data)


def test_a_successful_edit_reads_once_writes_once_and_runs_the_pipeline_once(client, service, contact_form,
                                                                             monkeypatch):
    contact, fields, _ = contact_form
    with counting(_engine(client), monkeypatch) as counted:
        response = _post(client, contact, fields, position="CFO")
    assert response.status_code == 302
    assert service.get("contact", contact.id, SYSTEM)["position"] == "CFO"
    assert len(counted.on("records", "SELECT")) == 1, counted.outside_sign_in()
    assert len(counted.on("records", "UPDATE")) == 1, counted.outside_sign_in()
    assert len(counted.on("journal", "INSERT")) == 1, counted.outside_sign_in()  # its journal row, same transaction
    assert counted.pipeline_runs == 1
    assert len(counted.outside_sign_in()) <= 3, "\n".join(counted.outside_sign_in())


def test_a_refused_edit_answers_from_the_same_run(client, service, contact_form, monkeypatch):
    contact, fields, _ = contact_form
    with counting(_engine(client), monkeypatch) as counted:
        response = _post(client, contact, fields, emails="not an address")
    assert response.status_code == 422
    assert "not an address" in response.get_data(as_text=True)
    assert len(counted.on("records", "SELECT")) == 1, counted.outside_sign_in()
    assert counted.on("records", "UPDATE") == []
    assert counted.pipeline_runs == 1


def test_an_api_edit_reads_once_writes_once_and_parses_once(client, service, contact_form, monkeypatch):
    contact, _, headers = contact_form
    with counting(_engine(client), monkeypatch) as counted:
        response = client.patch(f"/api/v1/records/contact/{contact.id}", json={"position": "CFO"},
                                headers={**headers, "If-Match": f'"{contact.version}"'})
    assert response.status_code == 200
    assert len(counted.on("records", "SELECT")) == 1, counted.outside_sign_in()
    assert len(counted.on("records", "UPDATE")) == 1, counted.outside_sign_in()
    assert counted.pipeline_runs == 1


def test_a_refused_api_edit_runs_the_pipeline_once(client, service, contact_form, monkeypatch):
    contact, _, headers = contact_form
    with counting(_engine(client), monkeypatch) as counted:
        response = client.patch(f"/api/v1/records/contact/{contact.id}",
                                json={"emails": ["nope"], "no_such_field": 1},
                                headers={**headers, "If-Match": f'"{contact.version}"'})
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert set(errors) == {"emails", "no_such_field"}
    assert counted.pipeline_runs == 1
    assert len(counted.on("records", "SELECT")) == 1, counted.outside_sign_in()


def test_an_upload_to_a_card_the_user_may_not_change_stores_nothing(scoped, service):  # noqa: F811
    import io

    client, people, _, _ = scoped
    (anna, _), (boris, _) = people["anna"], people["boris"]
    case = client.application.extensions["kartoteka"].service.create("case", {"name": "Boris's"}, boris)
    sign_in(client, anna)
    response = client.post(f"/cards/case/{case.id}/edit", content_type="multipart/form-data",
                           data={"csrf_token": CSRF, "version": "1", "name": "Mine now",
                                 "scan": (io.BytesIO(b"%PDF"), "scan.pdf")})
    assert response.status_code == 404
    assert stored(client, anna.id) == (0, 0)


def test_saving_a_ticket_unchanged_makes_no_new_version(client, service, make_user, fixed_clock):
    """Its sla_due formula gave microseconds that storage drops: every save counted it as changed."""
    fixed_clock.advance(microseconds=123456)  # a real clock has them
    _, headers = make_user("boss", ["admin"])
    ticket = service.create("ticket", {"subject": "Cannot log in", "description": "Password reset fails",
                                       "reporter_email": "a@example.org"}, SYSTEM)
    for _ in range(2):
        response = client.patch(f"/api/v1/records/ticket/{ticket.id}", json={}, headers={**headers, "If-Match": '"1"'})
        assert response.status_code == 200 and response.get_json()["version"] == 1
