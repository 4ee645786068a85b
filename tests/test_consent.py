"""The consent archive: every decision recorded with its channel, append-only, kept after the card is purged, and
exported for an inspector (shipped config)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from kartoteka.config import Settings
from kartoteka.records.consent import purge_expired, write_csv
from kartoteka.records.hooks import Origin
from kartoteka.records.trash import purge
from kartoteka.storage.tables import consents


def _archive(engine):
    with engine.connect() as conn:
        return conn.execute(sa.select(consents).order_by(consents.c.id)).all()


@pytest.fixture
def manager(make_user):
    return make_user("manager", ["admin"])[0]


def test_every_decision_is_archived_with_who_when_how_and_which_policy(service, engine, manager, fixed_clock):
    contact = service.create("contact", {"first_name": "Olga", "last_name": "K", "phones": ["+7 916 123-45-67"],
                                         "pd_consent": True}, manager, origin=Origin("ui"))
    service.update("contact", contact.id, {"position": "CEO"}, manager, expected_version=None)  # no decision
    fixed_clock.advance(days=3)
    service.update("contact", contact.id, {"pd_consent": False}, manager, expected_version=None, origin=Origin("api"))
    service.update("contact", contact.id, {"pd_consent": False}, manager, expected_version=None)  # the same: nothing
    rows = _archive(engine)
    assert [(r.given, r.channel, r.field, r.user_name) for r in rows] == [
        (True, "ui", "pd_consent", "manager"), (False, "api", "pd_consent", "manager")]
    assert rows[0].subject.startswith("Olga") and rows[0].record_id == contact.id
    assert rows[0].policy_version == "2026-01" and rows[0].policy_url == "https://kartoteka.dev/privacy/2026-01"
    assert rows[0].purpose == "Consent to personal data processing"
    assert rows[1].decided_at.replace(tzinfo=UTC) - rows[0].decided_at.replace(tzinfo=UTC) == timedelta(days=3)
    # A contact created without the box ticked records nothing: nobody was asked.
    service.create("contact", {"first_name": "Petr", "last_name": "N", "phones": ["+7 916 123-45-68"]}, manager)
    assert len(_archive(engine)) == 2


def test_the_archive_refuses_changes_and_outlives_a_purged_card(service, engine, manager, fixed_clock):
    contact = service.create("contact", {"first_name": "Olga", "last_name": "K", "phones": ["+7 916 123-45-67"],
                                         "pd_consent": True}, manager)
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as conn:
        conn.execute(sa.update(consents).values(given=False))
    with pytest.raises(sa.exc.DatabaseError, match="six years"), engine.begin() as conn:
        conn.execute(sa.delete(consents))
    service.delete("contact", contact.id, manager)
    assert purge(service, fixed_clock.now() + timedelta(days=1), timedelta(0)) == 1
    assert [r.record_id for r in _archive(engine)] == [contact.id]
    # Older than the retention and its card gone: then, and only then, it may go.
    with engine.begin() as conn:
        conn.execute(sa.insert(consents).values(
            entity="contact", record_id=contact.id + 1000, subject="Old", field="pd_consent", purpose="PD",
            given=True, decided_at=datetime(2015, 1, 1, tzinfo=UTC), channel="import",
            created_at=datetime(2015, 1, 1, tzinfo=UTC)))
    assert purge_expired(engine, datetime.now(UTC), 6) == 1
    assert [r.record_id for r in _archive(engine)] == [contact.id]
    with pytest.raises(ValueError):
        purge_expired(engine, datetime.now(UTC), 5)


def test_the_export_writes_every_decision_for_an_inspector(service, engine, manager, runner, tmp_path):
    contact = service.create("contact", {"first_name": "Olga", "last_name": "K", "phones": ["+7 916 123-45-67"],
                                         "pd_consent": True}, manager)
    service.update("contact", contact.id, {"pd_consent": False}, manager, expected_version=None)
    out = io.StringIO()
    assert write_csv(engine, out) == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["state"] for r in rows] == ["given", "withdrawn"] and rows[0]["record_id"] == str(contact.id)
    target = tmp_path / "consents.csv"
    done = runner.invoke("consent", "export", str(target), "--entity", "contact")
    assert done.exit_code == 0 and "Wrote 2 decisions" in done.output, done.output
    assert target.read_text("utf-8").splitlines()[0].startswith("id,entity,record_id,subject")
    assert runner.invoke("consent", "export", str(target), "--since", "yesterday").exit_code == 1
    assert runner.invoke("consent", "export", str(target), "--entity", "contacts").exit_code == 1


def test_retention_is_at_least_six_years(tmp_path):
    with pytest.raises(ValueError, match="6 or more"):
        Settings.from_env({"KARTOTEKA_CONSENT_YEARS": "5", "KARTOTEKA_SECRET_KEY": "x",
                           "KARTOTEKA_INSTANCE_DIR": str(tmp_path)})
    assert Settings.from_env({"KARTOTEKA_CONSENT_YEARS": "10", "KARTOTEKA_SECRET_KEY": "x",
                              "KARTOTEKA_INSTANCE_DIR": str(tmp_path)}).consent_years == 10

