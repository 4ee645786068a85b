"""Import of CSV and XLSX files through the record service: matching, encodings, broken files, dry run, all or
nothing, skip_invalid, upsert keys, undo (updates included), permissions; run on SQLite and PostgreSQL."""

from __future__ import annotations

import codecs
import io
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from openpyxl import Workbook

from kartoteka.errors import Conflict, PermissionDenied, RecordValidationError
from kartoteka.imports.errors import ImportFileError
from kartoteka.imports.matching import fold, match_columns
from kartoteka.imports.reader import cell_text, open_table
from kartoteka.imports.runner import ImportOptions, run_import
from kartoteka.imports.undo import undo_import
from kartoteka.records.model import ListQuery
from kartoteka.storage.tables import imports, journal, records

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "imports"
HEADER_RU = "Контактное лицо;Телефоны;Электронная почта;Температура;Бюджет;Источник;Цвет глаз\n"


@pytest.fixture
def admin_user(make_user):
    return make_user("boss", ["admin"])[0]


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def leads(service, user):
    return service.list("lead", user, ListQuery(limit=500, sort="id")).items


def test_a_russian_excel_csv_in_cp1251_with_semicolons_imports_by_labels(service, admin_user, tmp_path):
    path = write(tmp_path, "leads.csv", HEADER_RU + "Иван Петров;8 912 345-67-89;ivan@example.ru;Горячий;1 500 000;"
                 "Выставка;карие\nАнна Смирнова;;anna@example.ru, a.smirnova@example.ru;тёплый;;;\n", "cp1251")
    with open_table(path) as table:
        assert (table.encoding, table.separator) == ("cp1251", ";")
    outcome = run_import(service, "lead", path, "leads.csv", admin_user, ImportOptions())
    assert outcome.status == "done", outcome.errors
    assert (outcome.counts.created, outcome.counts.invalid) == (2, 0)
    ivan, anna = leads(service, admin_user)
    assert ivan["contact_name"] == "Иван Петров" and ivan["phones"] == ["+79123456789"]
    assert ivan["rating"] == "hot" and str(ivan["budget"]) == "1500000.00" and ivan["source"] == "exhibition"
    assert ivan["score"] == 40 + 30 + 15 + 10  # formulas ran
    assert anna["emails"] == ["anna@example.ru", "a.smirnova@example.ru"] and anna["rating"] == "warm"
    unmatched = outcome.mapping.unmatched()
    assert [c.name for c in unmatched] == ["Цвет глаз"]
    with service.engine.connect() as conn:
        batches = set(conn.execute(sa.select(journal.c.batch).where(journal.c.entity == "lead")).scalars())
        row = conn.execute(sa.select(imports)).one()
    assert batches == {f"import:{outcome.import_id}"}
    assert (row.status, row.created, row.rows, row.user_id) == ("done", 2, 2, admin_user.id)


@pytest.mark.parametrize("bom", [True, False])
def test_utf8_with_or_without_a_bom_and_commas(service, admin_user, tmp_path, bom):
    text = "contact_name,emails,Rating\nJohn Smith,john@example.com,Cold\n"
    path = tmp_path / "leads.csv"
    path.write_bytes((codecs.BOM_UTF8 if bom else b"") + text.encode())
    with open_table(path) as table:
        assert table.header == ["contact_name", "emails", "Rating"]  # the BOM is not part of the first name
        assert table.encoding == ("utf-8-sig" if bom else "utf-8") and table.separator == ","
    outcome = run_import(service, "lead", path, "leads.csv", admin_user, ImportOptions())
    assert outcome.counts.created == 1
    assert leads(service, admin_user)[0]["rating"] == "cold"


def test_tab_separated_text_is_sniffed(tmp_path):
    path = write(tmp_path, "leads.txt", "contact_name\temails\nA, B\ta@example.com\n")
    with open_table(path) as table:
        assert table.separator == "\t"
        assert list(table.rows) == [(2, ["A, B", "a@example.com"])]


def test_the_wrong_encoding_given_names_the_line(service, admin_user, tmp_path):
    path = write(tmp_path, "leads.csv", "contact_name;emails\nАнна;a@example.ru\n", "cp1251")
    with pytest.raises(ImportFileError) as caught:
        run_import(service, "lead", path, "leads.csv", admin_user, ImportOptions(encoding="utf-8"))
    assert caught.value.detail.code == "import.encoding_wrong"
    assert "Line 2" in caught.value.detail and "utf-8" in caught.value.detail
    with pytest.raises(ImportFileError) as unknown:
        run_import(service, "lead", path, "leads.csv", admin_user, ImportOptions(encoding="klingon"))
    assert unknown.value.detail.code == "import.encoding_unknown"
    with service.engine.connect() as conn:
        statuses = list(conn.execute(sa.select(imports.c.status, imports.c.detail)).all())
    assert [s.status for s in statuses] == ["failed", "failed"]
    assert statuses[0].detail["code"] == "import.encoding_wrong"


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("hello.txt", "not a workbook")
    return buffer.getvalue()


@pytest.mark.parametrize(("name", "content", "code"), [
    ("empty.csv", b"", "import.empty_file"),
    ("only-blank-lines.csv", b"\r\n\r\n  \r\n", "import.no_header"),
    ("workbook.csv", _zip_bytes(), "import.csv_is_zip"),
    ("picture.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "import.csv_binary"),
    ("text.xlsx", b"contact_name,emails\nA,a@example.com\n", "import.xlsx_is_text"),
    ("old.xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00\x00", "import.xlsx_not_zip"),
    ("archive.xlsx", _zip_bytes(), "import.xlsx_broken"),
    ("leads.pdf", b"%PDF-1.4", "import.format_unknown"),
    ("twice.csv", b"Name,emails,name\nA,a@example.com,B\n", "import.column_repeated"),
    ("gap.csv", b"contact_name,,emails\nA,,a@example.com\n", "import.column_unnamed"),
    ("quote.csv", b'contact_name,emails\n"A,a@example.com\n' + b"x" * 140_000 + b"\n", "import.csv_broken"),
])
def test_broken_files_are_refused_with_a_specific_error(service, admin_user, tmp_path, name, content, code):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImportFileError) as caught:
        run_import(service, "lead", path, name, admin_user, ImportOptions())
    assert caught.value.detail.code == code, caught.value.detail
    assert caught.value.status == 400
    assert leads(service, admin_user) == ()


def test_a_required_field_no_column_fills_and_a_field_filled_twice_are_refused(service, admin_user, tmp_path):
    path = write(tmp_path, "leads.csv", "Company name,emails\nNorthwind,a@example.com\n")
    with pytest.raises(RecordValidationError) as caught:
        run_import(service, "lead", path, "leads.csv", admin_user, ImportOptions())
    assert caught.value.errors["mapping"][0].code == "import.required_missing"
    assert "Contact name (contact_name)" in caught.value.errors["mapping"][0]
    path = write(tmp_path, "twice.csv", "contact_name,Contact name\nA,B\n")
    with pytest.raises(RecordValidationError) as twice:
        run_import(service, "lead", path, "twice.csv", admin_user, ImportOptions())
    assert twice.value.errors["mapping"][0].code == "import.field_twice"


def test_columns_match_by_name_and_label_in_either_language_and_suggest(shipped_metadata, admin_user):
    entity = shipped_metadata.entities["lead"]
    mapping = match_columns(entity, ["CONTACT NAME", "e-mails", "Контактное-лицо ", "Lead score", "Buget", "id"],
                            admin_user, {"Контактное-лицо ": ""})
    fields = [(c.name, c.field if c.matched else None) for c in mapping.columns]
    assert fields == [("CONTACT NAME", "contact_name"), ("e-mails", "emails"), ("Контактное-лицо ", None),
                      ("Lead score", None), ("Buget", None), ("id", "id")]
    assert mapping.columns[3].ignored.code == "import.column_computed"
    assert mapping.columns[4].suggestion == "budget"
    assert fold("Ёлка, «Ромашка»") == "елкаромашка"
    with pytest.raises(RecordValidationError) as caught:
        match_columns(entity, ["Name"], admin_user, {"Name": "no_such_field", "Missing": "city"})
    assert {m.code for m in caught.value.errors["mapping"]} == {"import.mapping_field_unknown",
                                                                "import.mapping_column_unknown"}


def test_a_dry_run_reports_every_invalid_row_with_its_number_column_and_message(service, admin_user, tmp_path):
    path = write(tmp_path, "leads.csv",
                 "contact_name,emails,budget,Rating\n"
                 "Good One,good@example.com,100,hot\n"
                 '"Multi\nline",not-an-email,200,warm\n'  # rows 3-4 in the file: a quoted line break
                 "No Contact,,,\n"
                 "Bad Budget,b@example.com,много,lukewarm,extra\n")
    errors = []
    outcome = run_import(service, "lead", path, "leads.csv", admin_user, ImportOptions(dry_run=True),
                         on_error=errors.append)
    assert outcome.status == "invalid"
    assert (outcome.counts.rows, outcome.counts.created, outcome.counts.invalid) == (4, 1, 3)
    found = {(e.row, e.column, e.field, e.message.code if hasattr(e.message, "code") else None) for e in errors}
    assert (3, "emails", "emails", "list.item") in found
    assert (5, None, None, "validation.failed") in {(r, c, f, code) for r, c, f, code in found if r == 5} or \
        any(e.row == 5 and e.field == "phones" for e in errors)
    assert any(e.row == 6 and e.message.code == "import.extra_cells" for e in errors)
    assert leads(service, admin_user) == ()  # nothing saved
    with service.engine.connect() as conn:
        row = conn.execute(sa.select(imports)).one()
    assert row.options["dry_run"] is True and row.invalid == 3 and len(row.errors) == len(errors)
    with pytest.raises(Conflict):
        undo_import(service, row.id, admin_user)


def test_an_invalid_row_imports_nothing_unless_skip_invalid(service, admin_user, tmp_path):
    path = write(tmp_path, "leads.csv", "contact_name,emails\nA,a@example.com\nB,broken\nC,c@example.com\n")
    failed = run_import(service, "lead", path, "leads.csv", admin_user, ImportOptions(batch_size=1))
    assert failed.status == "failed" and failed.counts.invalid == 1
    assert failed.detail.code == "import.invalid_rows"
    assert leads(service, admin_user) == ()
    done = run_import(service, "lead", path, "leads.csv", admin_user, ImportOptions(skip_invalid=True, batch_size=2))
    assert done.status == "done"
    assert (done.counts.created, done.counts.invalid) == (2, 1)
    assert {e.row for e in done.errors} == {3}
    assert [r["contact_name"] for r in leads(service, admin_user)] == ["A", "C"]


def test_a_batch_failing_during_the_import_undoes_the_batches_before_it(service, admin_user, tmp_path):
    """The dry run checks each batch alone (rolled back), so two rows of one file with the same unique INN pass it;
    the import proper then fails on the second: the batches already committed are undone."""
    path = write(tmp_path, "companies.csv", "name,country,inn\nOne,kz,1234567890\nTwo,kz,2234567890\n"
                 "Three,kz,1234567890\n")
    outcome = run_import(service, "company", path, "companies.csv", admin_user, ImportOptions(batch_size=1))
    assert outcome.status == "failed"
    assert outcome.detail.code == "import.failed_rolled_back"
    assert outcome.errors[0].row == 4 and outcome.errors[0].field == "inn"
    assert service.list("company", admin_user, ListQuery()).items == ()
    with service.engine.connect() as conn:
        trashed = conn.execute(sa.select(sa.func.count()).select_from(records)
                               .where(records.c.entity == "company", records.c.deleted_at.is_not(None))).scalar()
        row = conn.execute(sa.select(imports)).one()
    assert trashed == 2 and row.status == "failed"


def test_upsert_by_key_skip_update_create_and_undo_restores_updated_rows(service, admin_user, tmp_path):
    first = write(tmp_path, "first.csv", "contact_name,emails,city,rating\nAnna,anna@example.com,Moscow,warm\n"
                  "Boris,boris@example.com,Kazan,cold\n")
    run_import(service, "lead", first, "first.csv", admin_user, ImportOptions())
    anna, _boris = leads(service, admin_user)
    second = write(tmp_path, "second.csv", "contact_name,city,rating\nAnna,Saint Petersburg,hot\nBoris,,\n"
                   "Vera,Omsk,\n")
    skipped = run_import(service, "lead", second, "second.csv", admin_user,
                         ImportOptions(key="contact_name", on_duplicate="skip", skip_invalid=True))
    assert (skipped.counts.skipped, skipped.counts.created, skipped.counts.invalid) == (2, 0, 1)  # Vera: no contact
    updated = run_import(service, "lead", second, "second.csv", admin_user,
                         ImportOptions(key="contact_name", on_duplicate="update", skip_invalid=True))
    assert (updated.counts.updated, updated.counts.skipped, updated.counts.invalid) == (1, 1, 1)  # Boris: no change
    anna_now = service.get("lead", anna.id, admin_user)
    assert (anna_now["city"], anna_now["rating"], anna_now.version) == ("Saint Petersburg", "hot", 2)
    assert anna_now["emails"] == ["anna@example.com"]  # an empty cell keeps the stored value
    result = undo_import(service, updated.import_id, admin_user)
    assert (result.reverted, result.deleted, result.kept) == (1, 0, [])
    back = service.get("lead", anna.id, admin_user)
    assert (back["city"], back["rating"]) == ("Moscow", "warm")
    with service.engine.connect() as conn:
        row = conn.execute(sa.select(imports).where(imports.c.id == updated.import_id)).one()
    assert row.status == "undone" and row.undone_at is not None
    with pytest.raises(Conflict):
        undo_import(service, updated.import_id, admin_user)
    created = run_import(service, "lead", first, "first.csv", admin_user,
                         ImportOptions(key="contact_name", on_duplicate="create"))
    assert created.counts.created == 2 and len(leads(service, admin_user)) == 4
    with pytest.raises(Exception) as unusable:
        run_import(service, "lead", first, "first.csv", admin_user, ImportOptions(key="emails"))
    assert unusable.value.detail.code == "import.key_unusable"


def test_undo_deletes_created_records_and_leaves_one_changed_since(service, admin_user, tmp_path):
    path = write(tmp_path, "leads.csv", "contact_name,emails\nA,a@example.com\nB,b@example.com\n")
    outcome = run_import(service, "lead", path, "leads.csv", admin_user, ImportOptions())
    _a, b = leads(service, admin_user)
    service.update("lead", b.id, {"city": "Tver"}, admin_user, expected_version=1)
    result = undo_import(service, outcome.import_id, admin_user)
    assert result.deleted == 1 and [k.record_id for k in result.kept] == [b.id]
    assert result.kept[0].reason.code == "import.undo_changed"
    assert [r.id for r in leads(service, admin_user)] == [b.id]
    assert service.get("lead", b.id, admin_user)["city"] == "Tver"  # not overwritten


def test_update_by_id_and_an_unknown_id(service, admin_user, tmp_path):
    run_import(service, "lead", write(tmp_path, "a.csv", "contact_name,emails\nA,a@example.com\n"), "a.csv",
               admin_user, ImportOptions())
    (lead,) = leads(service, admin_user)
    path = write(tmp_path, "b.csv", f"id,city\n#{lead.id},Perm\n999999,Ufa\n")
    outcome = run_import(service, "lead", path, "b.csv", admin_user,
                         ImportOptions(key="id", on_duplicate="update", skip_invalid=True))
    assert outcome.counts.updated == 1 and outcome.errors[0].message.code == "import.id_unknown"
    assert service.get("lead", lead.id, admin_user)["city"] == "Perm"


def test_users_and_references_by_name(service, admin_user, make_user, tmp_path):
    rep = make_user("sales7", ["sales_manager"])[0]
    company = service.create("company", {"name": "Northwind", "country": "kz"}, admin_user)
    path = write(tmp_path, "deals.csv", "name,company,responsible,amount\n"
                 f"Big deal,Northwind,sales7,1000\nSmall deal,#{company.id},{rep.username.upper()},10\n"
                 "Lost deal,Nowhere Ltd,nobody,1\n")
    outcome = run_import(service, "deal", path, "deals.csv", admin_user, ImportOptions(skip_invalid=True))
    assert outcome.counts.created == 2
    codes = {e.message.code for e in outcome.errors}
    assert codes == {"import.reference_unknown", "import.user_unknown"}
    deals = service.list("deal", admin_user, ListQuery(sort="id")).items
    assert [(d["company"], d["responsible"]) for d in deals] == [(company.id, rep.id)] * 2


def test_xlsx_typed_cells_and_blank_rows(service, admin_user, tmp_path):
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["Contact name", "E-mails", "Budget", "Next contact", "Converted"])
    sheet.append(["Xenia", "x@example.com", 1500000.5, __import__("datetime").datetime(2026, 4, 1), False])
    sheet.append([])
    sheet.append(["Yuri", "y@example.com", 12, None, None])
    path = tmp_path / "leads.xlsx"
    workbook.save(path)
    with open_table(path) as table:
        rows = list(table.rows)
    assert [r[0] for r in rows] == [2, 4]  # row numbers as Excel shows them, the blank row skipped
    outcome = run_import(service, "lead", path, "leads.xlsx", admin_user, ImportOptions())
    assert outcome.counts.created == 2, outcome.errors
    xenia, yuri = leads(service, admin_user)
    assert str(xenia["budget"]) == "1500000.50" and str(xenia["next_contact_date"]) == "2026-04-01"
    assert str(yuri["budget"]) == "12.00"


def test_cell_text_writes_numbers_and_dates_as_parsers_read_them():
    from datetime import date, datetime

    assert [cell_text(v) for v in (None, 3.0, 0.1, 10, True, date(2026, 1, 2), datetime(2026, 1, 2, 10, 30))] == [
        "", "3", "0.1", "10", "true", "2026-01-02", "2026-01-02T10:30:00"]


def test_permissions_create_update_and_undo(service, make_user, admin_user, tmp_path):
    support = make_user("support9", ["support"])[0]  # may not create leads
    path = write(tmp_path, "leads.csv", "contact_name,emails\nA,a@example.com\n")
    with pytest.raises(PermissionDenied):
        run_import(service, "lead", path, "leads.csv", support, ImportOptions())
    finance = make_user("fin9", ["finance"])[0]  # finance: reads companies, creates none
    with pytest.raises(PermissionDenied):
        run_import(service, "company", path, "c.csv", finance, ImportOptions())
    rep = make_user("rep9", ["sales"])[0]
    outcome = run_import(service, "lead", path, "leads.csv", rep, ImportOptions())
    other = make_user("rep10", ["sales"])[0]
    with pytest.raises(PermissionDenied) as caught:
        undo_import(service, outcome.import_id, other)
    assert caught.value.detail.code == "import.undo_forbidden"
    assert undo_import(service, outcome.import_id, admin_user).deleted == 1


def test_a_file_of_20_mb_imports_in_bounded_memory(service, admin_user, tmp_path):
    """4,000 leads of 5 KB each (a long request text): the import's peak of Python memory stays far below the
    file's size, as the file is read row by row and saved a batch at a time (a batch's rows, their stored JSON and
    journal rows are held together: memory follows the batch size, not the file's)."""
    if service.engine.dialect.name != "sqlite":
        pytest.skip("memory does not depend on the database; once is enough")
    import tracemalloc

    path = tmp_path / "big.csv"
    text = "Запрос клиента " * 330  # ~5 KB of Cyrillic (2 bytes a letter)
    with path.open("w", encoding="utf-8") as out:
        out.write("contact_name,emails,request\n")
        for number in range(4000):
            out.write(f"Lead {number},lead{number}@example.com,{text[:4990]}\n")
    size = path.stat().st_size
    assert size > 20_000_000
    tracemalloc.start()
    try:
        outcome = run_import(service, "lead", path, "big.csv", admin_user, ImportOptions(batch_size=100,
                                                                                         skip_invalid=True))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert outcome.counts.created == 4000, outcome.errors[:3]
    assert peak < size / 4, f"peak {peak} bytes for a file of {size}"


def test_utf16_with_a_bom_and_a_line_too_long(tmp_path):
    path = tmp_path / "unicode.txt"
    path.write_bytes("contact_name\temails\nЖанна\tz@example.com\n".encode("utf-16"))
    with open_table(path) as table:
        assert table.encoding == "utf-16" and table.separator == "\t"
        assert list(table.rows) == [(2, ["Жанна", "z@example.com"])]
    long = tmp_path / "long.csv"
    long.write_bytes(b"contact_name,emails\n" + b"x" * (1024 * 1024 + 10) + b"\n")
    with pytest.raises(ImportFileError) as caught, open_table(long) as table:
        list(table.rows)
    assert caught.value.detail.code == "import.line_too_long" and caught.value.detail.params["line"] == 2


def test_an_export_column_of_a_formula_is_left_out_of_the_import_and_said_so(service, admin_user, tmp_path):
    path = write(tmp_path, "leads.csv", "contact_name,emails,Lead score,Скоринг-2\nA,a@example.com,99,\n")
    outcome = run_import(service, "lead", path, "leads.csv", admin_user, ImportOptions())
    assert outcome.counts.created == 1
    assert leads(service, admin_user)[0]["score"] == 10  # computed, not the file's 99
    notes = {c.name: (c.ignored.code if c.ignored else None, c.suggestion) for c in outcome.mapping.columns}
    assert notes["Lead score"] == ("import.column_computed", None)
    assert notes["Скоринг-2"] == (None, "score")


def test_an_owner_column_assigns_records_and_export_times_are_left_out(service, admin_user, make_user, tmp_path):
    rep = make_user("sales3", ["sales"])[0]
    path = write(tmp_path, "leads.csv", "contact_name,emails,Владелец,Created (UTC)\n"
                 "A,a@example.com,sales3,2026-01-01T00:00:00Z\nB,b@example.com,nobody,\nC,c@example.com,,\n")
    outcome = run_import(service, "lead", path, "leads.csv", admin_user, ImportOptions(skip_invalid=True))
    assert outcome.counts.created == 2
    assert [(e.row, e.column, e.field, e.message.code) for e in outcome.errors] == [
        (3, "Владелец", "owner", "import.user_unknown")]
    a, c = leads(service, admin_user)
    assert (a.owner, c.owner) == (rep.id, admin_user.id)
    notes = {col.name: (col.field, col.ignored.code if col.ignored else None) for col in outcome.mapping.columns}
    assert notes["Created (UTC)"] == ("created_at", "import.column_system")
    # A sales rep may not give a record to someone else: the row says so, under the owner column.
    path = write(tmp_path, "mine.csv", f"contact_name,emails,owner\nD,d@example.com,{admin_user.username}\n")
    refused = run_import(service, "lead", path, "mine.csv", rep, ImportOptions(skip_invalid=True))
    assert refused.counts.invalid == 1 and refused.errors[0].column == "owner"


def test_undo_says_which_values_it_could_not_take_back(service, admin_user, tmp_path):
    """A consent an import gave cannot be emptied by a revert (the consent type keeps a value once given): the undo
    names it instead of counting it as taken back."""
    company = service.create("company", {"name": "Northwind", "country": "kz"}, admin_user)
    contact = service.create("contact", {"first_name": "Ann", "last_name": "Lee", "company": company.id,
                                         "emails": ["ann@example.com"]}, admin_user)
    path = write(tmp_path, "consents.csv", f"id,position,pd_consent\n{contact.id},CFO,yes\n")
    done = run_import(service, "contact", path, "consents.csv", admin_user,
                      ImportOptions(key="id", on_duplicate="update"))
    assert done.counts.updated == 1, [e.as_json() for e in done.errors]
    result = undo_import(service, done.import_id, admin_user)
    after = service.get("contact", contact.id, admin_user)
    assert after["position"] is None  # taken back
    if after["pd_consent"] is not None:
        assert [k.reason.code for k in result.kept] == ["import.undo_value_kept"]
        assert "Consent" in result.kept[0].reason
    else:
        assert result.kept == []
