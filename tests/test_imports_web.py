"""The import pages as a person uses them: upload, preview with the columns' mapping, check, import, progress of a
queued import, undo; and the list's Export buttons keeping its filters."""

from __future__ import annotations

import csv
import io
import re

import pytest
import sqlalchemy as sa

from kartoteka.imports.service import ImportJob
from kartoteka.storage.tables import imports, records
from tests.test_web import CSRF, sign_in, text_of

LEADS = "Контактное лицо;E-mails;Температура;Цвет\nИван;ivan@example.ru;Горячий;red\nАнна;плохо;;\n"


@pytest.fixture
def people(make_user):
    return {name: make_user(name, roles, department)[0] for name, roles, department in
            (("rep", ["sales"], "sales"), ("boss", ["admin"], None), ("sam", ["support"], "support"))}


def _live(app):
    with app.extensions["kartoteka"].engine.connect() as conn:
        return conn.execute(sa.select(records.c.data).where(records.c.entity == "lead",
                                                            records.c.deleted_at.is_(None))).scalars().all()


def _upload(client, text=LEADS, name="leads.csv", **form):
    data = {"csrf_token": CSRF, "file": (io.BytesIO(text.encode("cp1251")), name), **form}
    return client.post("/cards/lead/import", data=data, content_type="multipart/form-data")


def test_upload_preview_remap_check_and_import_then_undo(client, app, people):
    sign_in(client, people["rep"])
    listing = text_of(client.get("/cards/lead/"))
    assert "/cards/lead/import" in listing
    form = text_of(client.get("/cards/lead/import"))
    assert 'type="file"' in form and "Run the card's rules" in form
    uploaded = _upload(client, skip_invalid="true")
    assert uploaded.status_code == 302
    preview_url = uploaded.headers["Location"]
    token = re.search(r"/import/(upload-[^?]+)", preview_url).group(1)
    preview = text_of(client.get(preview_url))
    assert "Цвет" in preview and "No field has this name." in preview
    assert "Иван" in preview and "New record" in preview and "Invalid" in preview  # row 3: a bad e-mail
    assert _live(app) == []  # a preview saves nothing
    # Map the colour column to the city and look again.
    remapped = client.post(f"/cards/lead/import/{token}", data={
        "csrf_token": CSRF, "name": "leads.csv", "skip_invalid": "true", "remap": "1",
        "map.Контактное лицо": "contact_name", "map.E-mails": "emails", "map.Температура": "rating",
        "map.Цвет": "city"})
    assert remapped.status_code == 302 and "map.%D0%A6%D0%B2%D0%B5%D1%82=city" in remapped.headers["Location"]
    again = text_of(client.get(remapped.headers["Location"]))
    assert "red" in again
    mapping = {"map.Контактное лицо": "contact_name", "map.E-mails": "emails", "map.Температура": "rating",
               "map.Цвет": "city"}
    checked = client.post(f"/cards/lead/import/{token}", data={
        "csrf_token": CSRF, "name": "leads.csv", "skip_invalid": "true", "dry_run": "true", **mapping})
    assert checked.status_code == 302
    status = text_of(client.get(checked.headers["Location"]))
    assert "Check #1 of leads.csv" in status and "Import it now" in status
    assert _live(app) == []
    done = client.post(f"/cards/lead/import/{token}", data={
        "csrf_token": CSRF, "name": "leads.csv", "skip_invalid": "true", "dry_run": "false", **mapping})
    assert done.status_code == 302
    page = text_of(client.get(done.headers["Location"]))
    assert "Import #2 of leads.csv" in page and "Done" in page
    assert "1 created" in page and "1 invalid" in page and "Undo this import" in page
    assert [d["city"] for d in _live(app)] == ["red"]
    undone = client.post(done.headers["Location"] + "/undo", data={"csrf_token": CSRF})
    assert undone.status_code == 302
    assert "Import undone: 1 created records deleted" in text_of(client.get(undone.headers["Location"]))
    assert _live(app) == []


def test_an_upload_is_its_users_alone_and_import_needs_create(client, app, people):
    sign_in(client, people["rep"])
    token = re.search(r"/import/(upload-[^?]+)", _upload(client).headers["Location"]).group(1)
    other = app.test_client()
    sign_in(other, people["boss"])
    assert other.get(f"/cards/lead/import/{token}").status_code == 404
    assert other.get("/cards/lead/import/..%2F..%2Fsecret_key").status_code == 404
    support = app.test_client()
    sign_in(support, people["sam"])
    assert support.get("/cards/lead/import").status_code == 403
    assert "/cards/lead/import" not in text_of(support.get("/cards/lead/"))


def test_a_broken_file_goes_back_to_the_form_with_why(client, people):
    sign_in(client, people["rep"])
    response = client.post("/cards/lead/import", data={"csrf_token": CSRF, "file": (io.BytesIO(b""), "x.csv")},
                           content_type="multipart/form-data", follow_redirects=True)
    assert "'x.csv' is empty." in text_of(response)
    bad = _upload(client, "just text", "leads.xlsx")
    assert "/cards/lead/import" in bad.headers["Location"]
    preview = client.get(bad.headers["Location"], follow_redirects=True)
    assert "is not an XLSX file" in text_of(preview)


def test_a_queued_import_shows_progress_until_the_worker_is_done(client, app, people):
    app.config["KARTOTEKA_IMPORT_INLINE_BYTES"] = 10
    sign_in(client, people["boss"])
    token = re.search(r"/import/(upload-[^?]+)", _upload(client, skip_invalid="true").headers["Location"]).group(1)
    started = client.post(f"/cards/lead/import/{token}", data={"csrf_token": CSRF, "name": "leads.csv",
                                                               "skip_invalid": "true", "dry_run": "false"})
    page = text_of(client.get(started.headers["Location"]))
    assert "Queued" in page and "Waiting for the worker" in page and 'hx-trigger="every 1s"' in page
    import_id = int(started.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    fragment = client.get(f"/cards/imports/{import_id}/progress")
    assert fragment.status_code == 200 and "HX-Refresh" not in fragment.headers
    state = app.extensions["kartoteka"]
    assert ImportJob(state.service, state.settings.instance_dir)(state.engine, state.clock.now()) == 1
    finished = client.get(f"/cards/imports/{import_id}/progress")
    assert finished.headers["HX-Refresh"] == "true" and "every 1s" not in text_of(finished)
    with state.engine.connect() as conn:
        assert conn.execute(sa.select(imports.c.status)).scalar() == "done"
    other = app.test_client()
    sign_in(other, people["rep"])
    assert other.get(f"/cards/imports/{import_id}").status_code == 404


def test_the_lists_export_buttons_keep_its_filters(client, app, people):
    service = app.extensions["kartoteka"].service
    for name, rating in (("Hot lead", "hot"), ("Cold lead", "cold")):
        service.create("lead", {"contact_name": name, "emails": [f"{rating}@example.com"], "rating": rating},
                       people["rep"])
    sign_in(client, people["rep"])
    listing = text_of(client.get("/cards/lead/?rating__in=hot&sort=contact_name"))
    link = re.search(r'href="([^"]*/cards/lead/export\?format=csv[^"]*)"', listing).group(1)
    assert "rating__in=hot" in link and "sort=contact_name" in link
    exported = client.get(link)
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(exported.get_data().decode("utf-8-sig"))))
    assert [r[1] for r in rows[1:]] == ["Hot lead"]
    xlsx = client.get("/cards/lead/export?format=xlsx&rating__in=cold")
    assert xlsx.status_code == 200 and xlsx.get_data()[:2] == b"PK"
    bad = client.get("/cards/lead/export?format=doc")
    assert bad.status_code == 400


def test_row_errors_are_shown_in_the_readers_language(client, app, make_user):
    reader = make_user("olga", ["admin"], language="ru")[0]
    sign_in(client, reader)
    token = re.search(r"/import/(upload-[^?]+)", _upload(client, skip_invalid="true").headers["Location"]).group(1)
    done = client.post(f"/cards/lead/import/{token}", data={"csrf_token": CSRF, "name": "leads.csv",
                                                            "skip_invalid": "true", "dry_run": "false"})
    page = text_of(client.get(done.headers["Location"]))
    cell = re.search(r"<td>3</td><td>E-mails</td><td>([^<]*)</td>", page).group(1)
    assert cell and "is not" not in cell and re.search("[а-я]", cell), cell
