"""A field whose own visible_if is false is emptied by the save, whatever the channel (issue 8).

A won deal must not carry a lost reason: hidden values would live on unseen and come back when the
condition holds again. `keep_when_hidden: true` keeps them; tab and group conditions only hide.
"""

from __future__ import annotations

import pytest

from kartoteka.errors import RecordValidationError
from kartoteka.metadata.fieldtypes import ParseContext
from kartoteka.metadata.loader import MetadataError, load_metadata
from kartoteka.records.model import SYSTEM
from kartoteka.records.service import RecordService
from tests.conftest import write_config
from tests.test_web import CSRF, sign_in


@pytest.fixture
def company(service):
    return service.create("company", {"name": "Northwind Trading Ltd", "country": "gb"}, SYSTEM)


@pytest.fixture
def lost_deal(service, company):
    return service.create("deal", {"name": "Поставка", "company": company.id, "stage": "lost",
                                   "lost_reason": "competitor", "competitor": "Acme", "lost_comment": "Cheaper"},
                          SYSTEM)


def test_leaving_lost_empties_the_lost_fields(service, lost_deal):
    saved = service.update("deal", lost_deal.id, {"stage": "new"}, SYSTEM, expected_version=1)
    assert (saved["lost_reason"], saved["competitor"], saved["lost_comment"]) == (None, None, None)
    assert saved.version == 2
    # Moving it to lost again asks for the reason anew (the kanban opens the form for it).
    with pytest.raises(RecordValidationError) as refused:
        service.update("deal", lost_deal.id, {"stage": "lost"}, SYSTEM, expected_version=2)
    assert "lost_reason" in refused.value.errors


def test_a_chain_of_conditions_empties_every_field_it_hides(service, lost_deal):
    """competitor shows only for the reason 'competitor': changing the reason empties it, the rest stays."""
    saved = service.update("deal", lost_deal.id, {"lost_reason": "price"}, SYSTEM, expected_version=1)
    assert (saved["lost_reason"], saved["competitor"], saved["lost_comment"]) == ("price", None, "Cheaper")


def test_values_sent_for_a_hidden_field_are_not_stored_and_not_refused(service, company):
    deal = service.create("deal", {"name": "Поставка", "company": company.id, "stage": "new",
                                   "lost_reason": "not even an option", "won_date": "2026-03-01"}, SYSTEM)
    assert deal["lost_reason"] is None and deal["won_date"] is None


def test_a_won_deal_keeps_no_lost_reason_through_the_api(client, service, lost_deal, make_user):
    _, headers = make_user("boss", ["admin"])
    response = client.patch(f"/api/v1/records/deal/{lost_deal.id}", headers={**headers, "If-Match": '"1"'},
                            json={"stage": "won", "won_date": "2026-03-01", "amount": "1000"})
    assert response.status_code == 200, response.get_json()["errors"]
    body = response.get_json()
    assert body["lost_reason"] is None and body["competitor"] is None and body["won_date"] == "2026-03-01"


def test_the_form_and_the_kanban_empty_them_too(client, service, lost_deal, make_user):
    boss, _ = make_user("boss", ["admin"])
    sign_in(client, boss)
    moved = client.post(f"/cards/deal/{lost_deal.id}/move", data={"csrf_token": CSRF, "version": "1",
                                                                  "board": "stage", "to": "proposal"})
    assert moved.status_code == 302
    assert service.get("deal", lost_deal.id, SYSTEM)["lost_reason"] is None
    # The edit form posts the hidden inputs too (they are only hidden by the page): still emptied.
    form = client.post(f"/cards/deal/{lost_deal.id}/edit", data={
        "csrf_token": CSRF, "version": "2", "name": "Поставка", "stage": "new", "lost_reason": "price",
        "_present": ["name", "stage", "lost_reason"]})
    assert form.status_code == 302
    assert service.get("deal", lost_deal.id, SYSTEM)["lost_reason"] is None


KEPT = {
    "entity": "lead",
    "label": "Lead",
    "fields": {
        "name": {"type": "text", "required": True},
        "source": {"type": "select", "options": ["website", "call"]},
        "utm_campaign": {"type": "text", "visible_if": "source == 'website'", "keep_when_hidden": True},
        "landing": {"type": "text", "visible_if": "source == 'website'"},
    },
    "layout": {"tabs": [{"groups": [{"fields": ["name", "source", "utm_campaign"]},
                                     {"label": "Web", "visible_if": "source == 'website'", "fields": ["landing"]}]}]},
}


def test_keep_when_hidden_keeps_the_value(tmp_path, engine, clock):
    config = write_config(tmp_path, {"lead": KEPT})
    metadata = load_metadata(config, ParseContext())
    from kartoteka.storage.indexes import sync_indexes

    sync_indexes(engine, metadata)
    service = RecordService(metadata, engine, clock, ParseContext())
    lead = service.create("lead", {"name": "A", "source": "website", "utm_campaign": "spring",
                                   "landing": "/promo"}, SYSTEM)
    saved = service.update("lead", lead.id, {"source": "call"}, SYSTEM, expected_version=1)
    assert saved["utm_campaign"] == "spring" and saved["landing"] is None


def test_keep_when_hidden_without_a_condition_is_a_problem(tmp_path):
    spec = {**KEPT, "fields": {**KEPT["fields"], "name": {"type": "text", "keep_when_hidden": True}}}
    with pytest.raises(MetadataError, match="'keep_when_hidden' has no effect without 'visible_if'"):
        load_metadata(write_config(tmp_path, {"lead": spec}), ParseContext())
