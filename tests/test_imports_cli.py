"""`kartoteka import`, `kartoteka undo-import` and `kartoteka export` as a person runs them."""

from __future__ import annotations

import csv
import io

import sqlalchemy as sa

from kartoteka.storage.tables import imports, records


def _live(engine, entity="lead"):
    with engine.connect() as conn:
        return conn.execute(sa.select(records.c.id, records.c.data, records.c.owner).where(
            records.c.entity == entity, records.c.deleted_at.is_(None)).order_by(records.c.id)).all()


def test_import_dry_run_lists_every_invalid_row_and_exits_1(runner, engine, tmp_path):
    path = tmp_path / "leads.csv"
    path.write_text("Контактное лицо;E-mails;Бюджет;Цвет\nА;a@example.ru;100;\nБ;плохой;много;\nВ;;;\n",
                    encoding="cp1251")
    result = runner.invoke("import", "lead", str(path), "--dry-run")
    assert result.exit_code == 1, result.output
    assert "row 3, column 'E-mails'" in result.stderr and "row 3, column 'Бюджет'" in result.stderr
    assert "row 4" in result.stderr
    assert "column 'Цвет' fills no field" in result.stderr
    assert "Dry run of import #1, nothing saved. 3 rows: 1 created, 0 updated, 0 skipped, 2 invalid" in result.stdout
    assert _live(engine) == []


def test_import_all_or_nothing_then_skip_invalid_then_undo(runner, engine, make_user, tmp_path):
    make_user("anna", ["sales"])
    path = tmp_path / "leads.csv"
    path.write_text("contact_name,emails\nA,a@example.com\nB,broken\n", encoding="utf-8")
    failed = runner.invoke("import", "lead", str(path), "--user", "anna")
    assert failed.exit_code == 1
    assert "Import #1 failed: 1 row is invalid: nothing was imported." in failed.stderr
    assert _live(engine) == []
    done = runner.invoke("import", "lead", str(path), "--user", "anna", "--skip-invalid", "--no-automation")
    assert done.exit_code == 0, done.output
    assert "Import #2 done. 2 rows: 1 created, 0 updated, 0 skipped, 1 invalid" in done.stdout
    assert "rows/s" in done.stdout
    (lead,) = _live(engine)
    with engine.connect() as conn:
        row = conn.execute(sa.select(imports).where(imports.c.id == 2)).one()
    assert row.options["automation"] is False and lead.owner == row.user_id  # anna's record
    undone = runner.invoke("undo-import", "2", "--user", "anna")
    assert undone.exit_code == 0, undone.output
    assert "1 created records deleted" in undone.stdout
    assert _live(engine) == []
    again = runner.invoke("undo-import", "2")
    assert again.exit_code == 1 and "was undone already" in again.stderr


def test_import_with_a_key_and_a_mapping(runner, engine, tmp_path):
    path = tmp_path / "leads.csv"
    path.write_text("Who,Mail\nA,a@example.com\n", encoding="utf-8")
    unmapped = runner.invoke("import", "lead", str(path))
    assert unmapped.exit_code == 1 and "No column fills the required field Contact name" in unmapped.stderr
    mapped = runner.invoke("import", "lead", str(path), "--map", "Who=contact_name", "--map", "Mail=emails")
    assert mapped.exit_code == 0, mapped.output
    path.write_text("Who,Mail,Город\nA,a@example.com,Тула\n", encoding="utf-8")
    updated = runner.invoke("import", "lead", str(path), "--map", "Who=contact_name", "--map", "Mail=",
                            "--key", "contact_name", "--on-duplicate", "update")
    assert updated.exit_code == 0, updated.output
    assert "1 updated" in updated.stdout and "column 'Mail' left out" in updated.stderr
    (lead,) = _live(engine)
    assert lead.data["city"] == "Тула"
    bad = runner.invoke("import", "lead", str(path), "--map", "Who")
    assert bad.exit_code == 2 and "COLUMN=FIELD" in bad.output


def test_import_of_a_broken_file_says_why(runner, tmp_path):
    path = tmp_path / "leads.xlsx"
    path.write_text("contact_name\nA\n")
    result = runner.invoke("import", "lead", str(path))
    assert result.exit_code == 1
    assert "'leads.xlsx' is not an XLSX file but a text (a CSV renamed .xlsx?)" in result.stderr


def test_export_csv_with_filters_and_as_a_user(runner, engine, make_user, tmp_path):
    path = tmp_path / "leads.csv"
    path.write_text("contact_name,emails,rating\nA,a@example.com,hot\nB,b@example.com,cold\n", encoding="utf-8")
    assert runner.invoke("import", "lead", str(path)).exit_code == 0
    out = tmp_path / "out.csv"
    result = runner.invoke("export", "lead", str(out), "rating=hot", "--language", "ru")
    assert result.exit_code == 0, result.output
    assert "Exported 1 record of lead" in result.stdout
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][:3] == ["id", "Контактное лицо", "Название компании"]
    assert rows[1][1] == "A" and "Горячий" in rows[1]
    bad = runner.invoke("export", "lead", str(out), "nosuchfield=1")
    assert bad.exit_code == 1 and not out.exists()
