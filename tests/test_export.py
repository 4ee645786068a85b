"""Export of a list as CSV or XLSX: its filters and sort, only the records in the user's read scope and only the
fields they may view; values an import reads back; nothing a spreadsheet would run."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from openpyxl import load_workbook

from kartoteka.imports.export import safe_text
from kartoteka.imports.runner import ImportOptions, run_import
from kartoteka.records.model import ListQuery


@pytest.fixture
def deals(service, make_user):
    """Two companies and three deals: one of them owned by a sales rep; costs only finance and admins may view."""
    admin = make_user("boss", ["admin"])[0]
    rep, rep_headers = make_user("rep", ["sales"])
    _manager, manager_headers = make_user("manager", ["sales_manager"])
    company = service.create("company", {"name": "Northwind", "country": "kz"}, admin)
    service.create("deal", {"name": "=HYPERLINK(\"http://evil\")", "company": company.id, "amount": "100",
                            "cost": "60", "stage": "new"}, admin)
    service.create("deal", {"name": "Big one", "company": company.id, "amount": "5000", "cost": "1000",
                            "stage": "won", "won_date": "2026-02-01"}, admin)
    service.create("deal", {"name": "Rep's deal", "company": company.id, "amount": "10", "stage": "new"}, rep)
    return {"admin": admin, "rep": rep_headers, "manager": manager_headers, "company": company}


def _csv(response):
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "text/csv"
    raw = response.get_data()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel reads the Cyrillic right
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))


def test_export_keeps_the_filters_and_sort_and_hides_fields_the_user_may_not_view(client, deals):
    rows = _csv(client.get("/api/v1/records/deal/export?format=csv&stage__in=new,won&sort=-amount",
                           headers=deals["manager"]))
    header = rows[0]
    assert "Cost" not in header and "Margin" not in header and "Amount" in header
    names = [r[header.index("Name")] for r in rows[1:]]
    assert names == ["Big one", "'=HYPERLINK(\"http://evil\")", "Rep's deal"]  # by amount, descending
    big = rows[1]
    assert big[header.index("Company")] == f"Northwind #{deals['company'].id}"
    assert big[header.index("Amount")] == "5000.00" and big[header.index("Stage")] == "Won"
    filtered = _csv(client.get("/api/v1/records/deal/export?stage=won", headers=deals["manager"]))
    assert len(filtered) == 2
    admin_rows = _csv(client.get("/api/v1/records/deal/export", headers={
        "Authorization": deals["manager"]["Authorization"], "Accept-Language": "ru"}))
    assert admin_rows[0][:2] == ["id", "Название"]


def test_export_only_holds_records_in_the_read_scope(client, deals):
    rows = _csv(client.get("/api/v1/records/deal/export", headers=deals["rep"]))
    assert [r[1] for r in rows[1:]] == ["Rep's deal"]


def test_export_xlsx_is_typed_and_safe(client, deals):
    response = client.get("/api/v1/records/deal/export?format=xlsx&sort=amount", headers=deals["manager"])
    assert response.status_code == 200
    assert response.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert "attachment" in response.headers["Content-Disposition"]
    sheet = load_workbook(io.BytesIO(response.get_data()), read_only=True).worksheets[0]
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    header = rows[0]
    assert "Cost" not in header
    names = [r[header.index("Name")] for r in rows[1:]]
    assert names == ["Rep's deal", "=HYPERLINK(\"http://evil\")", "Big one"]  # a text, not a formula
    big = rows[3]
    assert big[header.index("Amount")] == 5000 and big[header.index("Won on")].year == 2026
    workbook = load_workbook(io.BytesIO(response.get_data()))  # not read-only: cell types
    cell = workbook.worksheets[0].cell(row=3, column=header.index("Name") + 1)
    assert cell.data_type == "s"


def test_export_refusals(client, deals, make_user):
    _user, hr = make_user("hr", ["hr"])
    refused = client.get("/api/v1/records/deal/export", headers=hr)
    assert refused.status_code == 403 and refused.mimetype == "application/problem+json"
    bad = client.get("/api/v1/records/deal/export?format=pdf", headers=deals["manager"])
    assert bad.status_code == 400 and bad.json["code"] == "export.format_unknown"
    bad_filter = client.get("/api/v1/records/deal/export?nosuch=1", headers=deals["manager"])
    assert bad_filter.status_code == 400


def test_an_export_imports_back(service, deals, tmp_path, client):
    """What an export writes, an import reads: labels, references by title and number, money, dates."""
    response = client.get("/api/v1/records/deal/export?format=csv&sort=id", headers=deals["manager"])
    path = tmp_path / "deals.csv"
    path.write_bytes(response.get_data())
    before = service.list("deal", deals["admin"], ListQuery(sort="id")).items
    outcome = run_import(service, "deal", path, "deals.csv", deals["admin"], ImportOptions(dry_run=True))
    assert outcome.counts.invalid == 0, [e.as_json() for e in outcome.errors]
    run_import(service, "deal", path, "deals.csv", deals["admin"], ImportOptions())
    after = service.list("deal", deals["admin"], ListQuery(sort="id", limit=10)).items
    copies = after[len(before):]
    assert [(c["name"], c["company"], c["amount"], c["stage"]) for c in copies] == [
        (b["name"].join(["'", ""]) if b["name"].startswith("=") else b["name"], b["company"], b["amount"], b["stage"])
        for b in before]


@pytest.mark.parametrize(("text", "written"), [
    ("=1+2", "'=1+2"), ("@SUM(A1)", "'@SUM(A1)"), ("+7 912 345-67-89", "+7 912 345-67-89"), ("-5", "-5"),
    ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"), ("plain", "plain"), (Decimal("1.5"), Decimal("1.5")),
])
def test_safe_text(text, written):
    assert safe_text(text) == written


def test_export_of_the_lists_own_columns(client, deals):
    rows = _csv(client.get("/api/v1/records/deal/export?columns=list&sort=amount", headers=deals["manager"]))
    assert rows[0][:2] == ["id", "Deal"]
    assert "Description" not in rows[0] and "Cost" not in rows[0] and "Amount" in rows[0]
    assert rows[1][1] == "Rep's deal"
    bad = client.get("/api/v1/records/deal/export?columns=some", headers=deals["manager"])
    assert bad.status_code == 400 and bad.json["code"] == "export.columns_unknown"
