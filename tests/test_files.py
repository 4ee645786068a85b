"""Files: upload, attach to a file field, download; bad uploads are refused clearly."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import MultiDict

from kartoteka.config import UploadLimits
from kartoteka.storage.tables import files
from tests.conftest import CRM_CONFIG


@pytest.fixture
def config_dir():
    return CRM_CONFIG


def upload(client, headers, content: bytes, name: str, content_type: str = "application/octet-stream"):
    return client.post("/api/v1/files", headers=headers,
                       data={"file": (io.BytesIO(content), name, content_type)}, content_type="multipart/form-data")


def test_upload_attach_and_download(client, admin):
    response = upload(client, admin, b"\x89PNG fake", "../../logo.png", "image/png")
    assert response.status_code == 201
    info = response.get_json()
    assert info["name"] == "logo.png" and info["size"] == 9 and info["content_type"] == "image/png"
    company = client.post("/api/v1/records/company", headers=admin,
                          json={"name": "Acme", "logo": info["id"], "documents": [info["id"]]}).get_json()
    assert company["logo"] == info and company["documents"] == [info]
    with client.get(response.headers["Location"], headers=admin) as download:
        assert download.status_code == 200 and download.data == b"\x89PNG fake"
        assert "attachment" in download.headers["Content-Disposition"]


def test_file_constraints_and_unknown_files(client, admin):
    text = upload(client, admin, b"hello", "notes.txt", "text/plain").get_json()
    response = client.post("/api/v1/records/company", headers=admin,
                           json={"name": "Acme", "logo": text["id"], "documents": ["0" * 32, "nope"]})
    errors = response.get_json()["errors"]
    assert response.status_code == 422
    assert "not an accepted file type" in errors["logo"][0]
    assert errors["documents"] == ["Value 2: Must be the id of an uploaded file."]
    response = client.post("/api/v1/records/company", headers=admin, json={"name": "Acme", "documents": ["0" * 32]})
    assert response.get_json()["errors"]["documents"] == [f"There is no uploaded file with id {'0' * 32}."]


def test_bad_uploads(client, admin):
    assert upload(client, admin, b"", "empty.txt").status_code == 400
    response = client.post("/api/v1/files", headers=admin, data={"other": "x"})
    assert response.status_code == 400 and "part named 'file'" in response.get_json()["detail"]
    assert client.get("/api/v1/files/" + "a" * 32, headers=admin).status_code == 404
    assert client.get("/api/v1/files/../../etc/passwd", headers=admin).status_code == 404


# --- who may read a file ---------------------------------------------------------------------------

def status(client, url, headers=None) -> int:
    with client.get(url, headers=headers) as response:
        return response.status_code


SCOPED = {
    "case": {"entity": "case", "label": "Case", "title": "{name}",
             "fields": {"name": {"type": "text", "required": True},
                        "scan": {"type": "file"},
                        "secret_scan": {"type": "file", "access": {"view": ["admin", "lawyer"]}},
                        # Clerks see the stamp but only lawyers put it there.
                        "stamp": {"type": "file", "access": {"edit": ["admin", "lawyer"]}},
                        "attachments": {"type": "file", "multiple": True},
                        "sealed": {"type": "file", "read_only_if": "name == 'Sealed'"}},
             "list": {"columns": ["name", "scan", "attachments"]}},
}
SCOPED_ROLES = {
    "roles": {"admin": {"label": "Admin"}, "clerk": {"label": "Clerk"}, "lawyer": {"label": "Lawyer"}},
    "permissions": {"admin": {"*": "all"}, "clerk": {"case": "own"}, "lawyer": {"case": "all"}},
}


@pytest.fixture
def scoped_config(tmp_path):
    from tests.conftest import write_config

    return write_config(tmp_path / "scoped", SCOPED, SCOPED_ROLES)


@pytest.fixture
def upload_limits():
    """The upload limits of the `scoped` app (a test may parametrize its own)."""
    return UploadLimits()


@pytest.fixture
def scoped(scoped_config, engine, database_url, clock, fixed_clock, tmp_path, make_user, upload_limits):
    """An app whose clerks see only their own cases; lawyers see all, and the secret scan."""
    from kartoteka import create_app
    from kartoteka.config import Settings
    from kartoteka.storage.indexes import sync_indexes

    settings = Settings(database_url=database_url, config_dir=scoped_config, secret_key="test-secret",
                        instance_dir=tmp_path / "instance", testing=True, uploads=upload_limits)
    app = create_app(settings, clock)
    sync_indexes(engine, app.extensions["kartoteka"].metadata)
    people = {name: make_user(name, [role]) for name, role in
              (("anna", "clerk"), ("boris", "clerk"), ("lena", "lawyer"))}
    yield app.test_client(), people, fixed_clock, tmp_path / "instance" / "files"
    app.extensions["kartoteka"].engine.dispose()


def test_a_file_is_readable_by_whoever_may_read_a_record_holding_it_and_no_one_else(scoped):
    client, people, _, _ = scoped
    (_, anna), (_, boris), (_, lena) = people["anna"], people["boris"], people["lena"]
    scan = upload(client, anna, b"%PDF-1.4 contract", "contract.pdf", "application/pdf").get_json()
    url = f"/api/v1/files/{scan['id']}"
    assert status(client, url, headers=anna) == 200  # the uploader, before any record holds it
    assert status(client, url, headers=boris) == 404  # knowing the id is not enough
    assert status(client, url, headers=lena) == 404
    # Nobody may attach a file they cannot read to a record of their own to read it that way.
    stolen = client.post("/api/v1/records/case", headers=boris, json={"name": "Mine", "scan": scan["id"]})
    assert stolen.status_code == 422
    assert stolen.get_json()["errors"]["scan"] == [f"There is no uploaded file with id {scan['id']}."]
    case = client.post("/api/v1/records/case", headers=anna, json={"name": "Anna's", "scan": scan["id"]})
    assert case.status_code == 201
    assert status(client, url, headers=anna) == 200
    assert status(client, url, headers=lena) == 200  # lawyers read every case
    assert status(client, url, headers=boris) == 404  # clerks only their own
    # Once attached, the uploader reads it only as far as the record lets them.
    record = case.get_json()
    client.patch(f"/api/v1/records/case/{record['id']}", headers=anna,
                 json={"version": record["version"], "scan": None})
    assert status(client, url, headers=anna) == 404


def test_a_file_in_a_field_the_reader_may_not_view_is_not_theirs(scoped):
    client, people, _, _ = scoped
    (_, lena), (anna_user, anna) = people["lena"], people["anna"]
    secret = upload(client, lena, b"%PDF secret", "secret.pdf", "application/pdf").get_json()
    case = client.post("/api/v1/records/case", headers=lena,
                       json={"name": "Shared", "secret_scan": secret["id"], "owner": anna_user.id})
    assert case.status_code == 201, case.get_data(as_text=True)
    assert status(client, f"/api/v1/records/case/{case.get_json()['id']}", headers=anna) == 200
    assert status(client, f"/api/v1/files/{secret['id']}", headers=anna) == 404
    assert status(client, f"/api/v1/files/{secret['id']}", headers=lena) == 200


def test_a_file_held_in_a_hidden_field_cannot_be_copied_into_a_visible_one(scoped):
    """Anna may edit her case but not view its secret scan: copying its id into the scan field must not work."""
    client, people, _, _ = scoped
    (_, lena), (anna_user, anna) = people["lena"], people["anna"]
    secret = upload(client, lena, b"%PDF secret", "secret.pdf", "application/pdf").get_json()
    case = client.post("/api/v1/records/case", headers=lena,
                       json={"name": "Shared", "secret_scan": secret["id"], "owner": anna_user.id}).get_json()
    url = f"/api/v1/records/case/{case['id']}"
    copied = client.patch(url, headers=anna, json={"version": case["version"], "scan": secret["id"]})
    assert copied.status_code == 422
    assert copied.get_json()["errors"] == {"scan": [f"There is no uploaded file with id {secret['id']}."]}
    assert status(client, f"/api/v1/files/{secret['id']}", headers=anna) == 404
    # The same answer as for an id that was never uploaded: the hidden field's content stays unknown.
    unknown = client.patch(url, headers=anna, json={"version": case["version"], "scan": "f" * 32})
    assert unknown.get_json()["errors"] == {"scan": [f"There is no uploaded file with id {'f' * 32}."]}
    # Lena, who views both fields, may copy it.
    lena_copy = client.patch(url, headers=lena, json={"version": case["version"], "scan": secret["id"]})
    assert lena_copy.status_code == 200, lena_copy.get_data(as_text=True)


def test_downloads_never_run_in_the_browser(scoped):
    client, people, _, _ = scoped
    _, lena = people["lena"]
    page = upload(client, lena, b"<script>alert(1)</script>", "evil.html", "text/html").get_json()
    with client.get(f"/api/v1/files/{page['id']}", headers=lena) as download:
        assert download.status_code == 200
        assert download.headers["Content-Type"] == "application/octet-stream"
        assert download.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in download.headers["Content-Security-Policy"]
        assert download.headers["Content-Disposition"].startswith("attachment")
    pdf = upload(client, lena, b"%PDF-1.4", "a.pdf", "application/pdf").get_json()
    with client.get(f"/api/v1/files/{pdf['id']}", headers=lena) as download:
        assert download.headers["Content-Type"] == "application/pdf"


def test_uploads_no_record_holds_are_removed_after_a_day(scoped):
    client, people, clock, folder = scoped
    _, anna = people["anna"]
    kept = upload(client, anna, b"kept", "kept.txt", "text/plain").get_json()
    abandoned = upload(client, anna, b"abandoned", "abandoned.txt", "text/plain").get_json()
    client.post("/api/v1/records/case", headers=anna, json={"name": "Kept", "scan": kept["id"]})
    clock.advance(hours=25)
    upload(client, anna, b"fresh", "fresh.txt", "text/plain")  # each upload sweeps the abandoned ones
    assert not (folder / abandoned["id"]).exists() and (folder / kept["id"]).exists()
    assert status(client, f"/api/v1/files/{abandoned['id']}", headers=anna) == 404
    assert status(client, f"/api/v1/files/{kept['id']}", headers=anna) == 200


def test_the_card_links_its_files_for_download(scoped):
    from tests.test_web import sign_in

    client, people, _, _ = scoped
    anna_user, anna = people["anna"]
    boris_user, _ = people["boris"]
    scan = upload(client, anna, b"%PDF-1.4", "scan.pdf", "application/pdf").get_json()
    case = client.post("/api/v1/records/case", headers=anna, json={"name": "Linked", "scan": scan["id"]}).get_json()
    assert status(client, f"/files/{scan['id']}") == 302  # signed out: to the sign-in page
    sign_in(client, anna_user)
    card = client.get(f"/cards/case/{case['id']}").get_data(as_text=True)
    assert f'href="/files/{scan["id"]}"' in card
    with client.get(f"/files/{scan['id']}") as download:
        assert download.data == b"%PDF-1.4"
    sign_in(client, boris_user)
    assert status(client, f"/files/{scan['id']}") == 404


def test_the_purge_command_removes_abandoned_uploads(runner, engine, tmp_path):
    from datetime import UTC, datetime

    import sqlalchemy as sa

    from kartoteka.files import store_file
    from kartoteka.storage.tables import files

    folder = tmp_path / "instance" / "files"
    now = datetime.now(UTC)  # the command runs on the real clock
    old = store_file(engine, folder, io.BytesIO(b"old"), "old.txt", "text/plain", None, now - timedelta(days=2))
    new = store_file(engine, folder, io.BytesIO(b"new"), "new.txt", "text/plain", None, now)
    result = runner.invoke("files", "purge")
    assert result.exit_code == 0 and "Removed 1 abandoned upload." in result.output
    with engine.connect() as conn:
        assert set(conn.execute(sa.select(files.c.id)).scalars()) == {new["id"]}
    assert not (folder / old["id"]).exists() and (folder / new["id"]).exists()


# --- how much one user may upload ------------------------------------------------------------------

def stored(client, user_id: int | None = None) -> tuple[int, int]:
    """(rows in the files table, files on disk), of one user's uploads or all of them."""
    state = client.application.extensions["kartoteka"]
    query = sa.select(sa.func.count()).select_from(files)
    if user_id is not None:
        query = query.where(files.c.created_by == user_id)
    with state.engine.connect() as conn:
        rows = conn.execute(query).scalar()
    folder = state.settings.instance_dir / "files"
    return rows, len(list(folder.iterdir())) if folder.exists() else 0


@pytest.mark.parametrize("upload_limits", [UploadLimits(pending_files=2, pending_bytes=0, user_bytes=0)])
def test_uploads_no_record_holds_are_limited_per_user(scoped):
    client, people, clock, _ = scoped
    (anna_user, anna), (_, boris) = people["anna"], people["boris"]
    first = upload(client, anna, b"one", "1.txt", "text/plain").get_json()
    assert upload(client, anna, b"two", "2.txt", "text/plain").status_code == 201
    clock.advance(hours=1)
    refused = upload(client, anna, b"three", "3.txt", "text/plain")
    assert refused.status_code == 429 and refused.mimetype == "application/problem+json"
    problem = refused.get_json()
    assert problem["title"] == "Too many unsaved uploads"
    assert problem["detail"].startswith("You have 2 uploads that no record holds yet, the most one user may have.")
    assert refused.headers["Retry-After"] == str(23 * 3600)  # when the oldest of them is removed
    assert stored(client) == (2, 2)  # nothing of the refused upload is kept
    assert upload(client, boris, b"his", "his.txt", "text/plain").status_code == 201  # per user
    # A saved card holds one of them: room for another.
    assert client.post("/api/v1/records/case", headers=anna, json={"name": "Kept", "scan": first["id"]}).status_code \
        == 201
    assert upload(client, anna, b"three", "3.txt", "text/plain").status_code == 201
    assert upload(client, anna, b"four", "4.txt", "text/plain").status_code == 429
    clock.advance(hours=25)  # the unsaved ones are gone after a day
    assert upload(client, anna, b"four", "4.txt", "text/plain").status_code == 201
    assert stored(client, anna_user.id) == (2, 2)  # the one the case holds and the new one (boris's expired too)


@pytest.mark.parametrize("upload_limits", [UploadLimits(pending_files=0, pending_bytes=10, user_bytes=0)])
def test_bytes_of_uploads_no_record_holds_are_limited(scoped):
    client, people, _, _ = scoped
    _, anna = people["anna"]
    assert upload(client, anna, b"123456", "a.txt", "text/plain").status_code == 201
    refused = upload(client, anna, b"123456", "b.txt", "text/plain")
    assert refused.status_code == 429
    assert refused.get_json()["detail"].startswith("The file does not fit: uploads that no record holds yet may "
                                                   "take 10 bytes per user, and yours take 6 bytes.")
    too_big = upload(client, anna, b"x" * (1 << 17), "big.bin")  # more than one chunk: stops writing early
    assert too_big.status_code == 413 and too_big.mimetype == "application/problem+json"
    assert too_big.get_json()["detail"] == "The file is larger than 10 bytes, the most one user's unsaved uploads " \
                                           "may take."
    assert upload(client, anna, b"1234", "c.txt", "text/plain").status_code == 201  # exactly up to the limit
    assert stored(client) == (2, 2)


@pytest.mark.parametrize("upload_limits", [UploadLimits(pending_files=0, pending_bytes=0, user_bytes=20)])
def test_what_one_user_may_store_is_limited(scoped):
    client, people, _, _ = scoped
    (_, anna), (_, boris) = people["anna"], people["boris"]
    for name in ("a", "b"):
        held = upload(client, anna, b"12345678", f"{name}.txt", "text/plain").get_json()
        assert client.post("/api/v1/records/case", headers=anna, json={"name": name, "scan": held["id"]}) \
            .status_code == 201
    refused = upload(client, anna, b"12345678", "c.txt", "text/plain")
    assert refused.status_code == 413
    assert refused.get_json()["title"] == "Upload quota exceeded"
    assert refused.get_json()["detail"] == ("The file does not fit: one user's files may take 20 bytes, and yours "
                                            "take 16 bytes. Ask an administrator for more room.")
    assert upload(client, anna, b"1234", "d.txt", "text/plain").status_code == 201
    assert upload(client, boris, b"12345678", "e.txt", "text/plain").status_code == 201
    assert stored(client) == (4, 4)


@pytest.mark.parametrize("upload_limits", [UploadLimits(pending_files=3, pending_bytes=0, user_bytes=0)])
def test_parallel_uploads_keep_to_the_limit(scoped):
    """The count is taken from the database inside the transaction that adds the file: no two workers overshoot."""
    import threading

    client, people, _, _ = scoped
    _, anna = people["anna"]
    app = client.application
    statuses: list[int] = []
    start = threading.Barrier(8)

    def send(number: int) -> None:
        own = app.test_client()
        start.wait()
        statuses.append(upload(own, anna, f"file {number}".encode(), f"{number}.txt", "text/plain").status_code)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] * 3 + [429] * 5
    assert stored(client) == (3, 3)


def test_the_limits_come_from_the_environment():
    from kartoteka.config import Settings

    env = {"KARTOTEKA_UPLOAD_PENDING_FILES": "5", "KARTOTEKA_UPLOAD_PENDING_BYTES": "50M",
           "KARTOTEKA_UPLOAD_USER_BYTES": "2G", "KARTOTEKA_SECRET_KEY": "x"}
    assert Settings.from_env(env).uploads == UploadLimits(5, 50 << 20, 2 << 30)
    assert Settings.from_env({"KARTOTEKA_SECRET_KEY": "x"}).uploads == UploadLimits(100, 200 << 20, 10 << 30)
    assert Settings.from_env({**env, "KARTOTEKA_UPLOAD_USER_BYTES": "0"}).uploads.user_bytes == 0  # no limit
    with pytest.raises(ValueError, match="KARTOTEKA_UPLOAD_PENDING_BYTES must be a number of bytes"):
        Settings.from_env({**env, "KARTOTEKA_UPLOAD_PENDING_BYTES": "lots"})


def test_uploads_through_the_card_form_are_limited_too(scoped, monkeypatch):
    from dataclasses import replace

    from tests.test_web import CSRF, sign_in

    client, people, _, _ = scoped
    state = client.application.extensions["kartoteka"]
    monkeypatch.setattr(state, "settings", replace(state.settings, uploads=UploadLimits(1, 0, 0)))
    anna_user, _ = people["anna"]
    sign_in(client, anna_user)

    def post_form(name: str):
        return client.post("/cards/case/new", content_type="multipart/form-data",
                           data={"csrf_token": CSRF, "name": "", "scan": (io.BytesIO(b"%PDF"), f"{name}.pdf")})

    assert post_form("first").status_code == 422  # the name is missing: the upload waits for the next save
    refused = post_form("second")
    assert refused.status_code == 422 and 'id="e-scan"' in refused.get_data(as_text=True)
    assert re.search(r'id="e-scan"[^>]*>[^<]*that no record holds yet', refused.get_data(as_text=True), re.I)
    assert stored(client, anna_user.id) == (1, 1)


# --- uploads through the card form ---------------------------------------------------------------


def _post_company(client, **fields):
    from tests.test_web import CSRF

    return client.post("/cards/company/new", content_type="multipart/form-data",
                       data={"csrf_token": CSRF, **fields})


@pytest.fixture
def boss_client(client, make_user):
    from tests.test_web import sign_in

    boss, _ = make_user("boss", ["admin"])
    sign_in(client, boss)
    return client, boss


@pytest.mark.parametrize(("upload_as", "message"), [
    ((b"%PDF-1.4", "scan.pdf", "application/pdf"),
     "'scan.pdf' is not an accepted file type (accepted: image/png, .jpg)."),
    ((b"\x89PNG" + b"0" * 100_000, "big.png", "image/png"), "'big.png' is larger than 97.6 KiB, the most this field "
                                                          "takes."),
])
def test_a_file_the_field_does_not_take_is_refused_before_it_is_kept(boss_client, upload_as, message):
    client, boss = boss_client
    content, name, kind = upload_as
    response = _post_company(client, name="Acme", logo=(io.BytesIO(content), name, kind))
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and re.search(r'id="e-logo"[^>]*>' + re.escape(message.replace("'", "&#39;")),
                                                     page)
    assert stored(client, boss.id) == (0, 0)  # nothing waits as an unsaved upload


def test_a_refused_form_names_the_file_it_keeps_and_every_other_error(boss_client):
    client, boss = boss_client
    response = _post_company(client, name="", employees="-5",
                             documents=(io.BytesIO(b"minutes"), "minutes.txt", "text/plain"),
                             logo=(io.BytesIO(b"%PDF"), "scan.pdf", "application/pdf"))
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    for field in ("name", "employees", "logo"):  # the refused upload does not hide the others
        assert re.search(rf'id="e-{field}"[^>]*>[^<]+', page), field
    assert "minutes.txt" in page  # the kept upload shows by its name
    assert stored(client, boss.id) == (1, 1)


# --- file fields on the card form, the API and lists ------------------------------------------------


def _stamped_case(client, people, **values):
    """A case of Anna's, made by Lena, holding a stamp (which Anna sees but may not change)."""
    (anna_user, _), (_, lena) = people["anna"], people["lena"]
    stamp = upload(client, lena, b"%PDF stamp", "stamp.pdf", "application/pdf").get_json()
    case = client.post("/api/v1/records/case", headers=lena,
                       json={"name": "Stamped", "stamp": stamp["id"], "owner": anna_user.id, **values})
    assert case.status_code == 201, case.get_data(as_text=True)
    return case.get_json(), stamp


def _edit_form(client, entity: str, record_id: int) -> MultiDict:
    from tests.test_web import CSRF, _form_fields

    page = client.get(f"/cards/{entity}/{record_id}/edit")
    assert page.status_code == 200
    return MultiDict([*_form_fields(page.get_data(as_text=True)), ("csrf_token", CSRF)])


def test_a_file_field_the_user_may_view_but_not_edit_leaves_the_card_saveable(scoped):
    from tests.test_web import sign_in

    client, people, _, _ = scoped
    anna_user, anna = people["anna"]
    case, stamp = _stamped_case(client, people)
    sign_in(client, anna_user)
    page = client.get(f"/cards/case/{case['id']}/edit").get_data(as_text=True)
    assert not re.search(r'<input[^>]*name="stamp"', page)  # the form posts nothing of it
    assert f'href="/files/{stamp["id"]}"' in page and "stamp.pdf" in page  # shown as a download link
    form = _edit_form(client, "case", case["id"])
    form["name"] = "Stamped again"
    saved = client.post(f"/cards/case/{case['id']}/edit", data=form)
    assert saved.status_code == 302, saved.get_data(as_text=True)
    after = client.get(f"/api/v1/records/case/{case['id']}", headers=anna).get_json()
    assert after["name"] == "Stamped again" and after["stamp"] == stamp


def test_a_form_posting_back_a_file_the_user_may_not_change_is_saved(scoped):
    """A form of before (posting the file's id back, as its checkbox did) is fine; another file is refused."""
    from tests.test_web import sign_in

    client, people, _, _ = scoped
    anna_user, _ = people["anna"]
    case, stamp = _stamped_case(client, people)
    sign_in(client, anna_user)
    form = _edit_form(client, "case", case["id"])
    form["stamp"] = stamp["id"]
    assert client.post(f"/cards/case/{case['id']}/edit", data=form).status_code == 302
    after = client.get(f"/api/v1/records/case/{case['id']}", headers=people["anna"][1]).get_json()
    assert after["version"] == case["version"] and after["stamp"] == stamp  # nothing changed
    form["stamp"] = "f" * 32
    refused = client.post(f"/cards/case/{case['id']}/edit", data=form)
    assert refused.status_code == 422
    assert re.search(r'id="e-stamp"[^>]*>You may not change this field\.', refused.get_data(as_text=True))


def test_an_api_patch_may_send_back_the_file_values_it_read(scoped):
    client, people, _, _ = scoped
    _, anna = people["anna"]
    scan = upload(client, anna, b"%PDF scan", "scan.pdf", "application/pdf").get_json()
    case, stamp = _stamped_case(client, people)
    url = f"/api/v1/records/case/{case['id']}"
    read = client.get(url, headers=anna).get_json()
    sent = client.patch(url, headers=anna, json={"version": read["version"], "name": "Renamed",
                                                 "stamp": read["stamp"], "scan": scan["id"]})
    assert sent.status_code == 200, sent.get_data(as_text=True)
    body = sent.get_json()
    assert body["stamp"] == stamp and body["scan"] == scan
    # The whole value sent back unchanged (an id, or the object read) is no change: the version stays.
    again = client.patch(url, headers=anna, json={"version": body["version"], "stamp": body["stamp"],
                                                  "scan": body["scan"], "attachments": None})
    assert again.status_code == 200 and again.get_json()["version"] == body["version"]
    assert client.patch(url, headers=anna, json={"version": body["version"], "stamp": stamp["id"],
                                                 "scan": scan["id"]}).get_json()["version"] == body["version"]
    refused = client.patch(url, headers=anna, json={"version": body["version"], "stamp": scan["id"]})
    assert refused.status_code == 422 and refused.get_json()["errors"] == {"stamp": ["You may not change this field."]}


def _conflicting_save(client, case_id: int, form: MultiDict):
    response = client.post(f"/cards/case/{case_id}/edit", data=form)
    assert response.status_code == 409
    return response.get_data(as_text=True)


def test_a_conflict_merges_file_fields_by_their_files(scoped):
    """A file field changed on one side only keeps that side; changed on both, the user chooses."""
    from tests.test_web import _form_fields, sign_in

    client, people, _, _ = scoped
    lena_user, lena = people["lena"]
    first = upload(client, lena, b"%PDF first", "first.pdf", "application/pdf").get_json()
    second = upload(client, lena, b"%PDF second", "second.pdf", "application/pdf").get_json()
    third = upload(client, lena, b"%PDF third", "third.pdf", "application/pdf").get_json()
    case = client.post("/api/v1/records/case", headers=lena,
                       json={"name": "Shared", "scan": first["id"], "attachments": [first["id"]]}).get_json()
    url = f"/api/v1/records/case/{case['id']}"
    sign_in(client, lena_user)
    # Someone else replaces the scan while the form changes only the name.
    form = _edit_form(client, "case", case["id"])
    form["name"] = "Renamed in the form"
    client.patch(url, headers=lena, json={"version": case["version"], "scan": second["id"]})
    page = _conflicting_save(client, case["id"], form)
    assert 'id="e-scan" class="field-error"></small>' in page  # not the user's change: no clash
    scan_field = re.search(r'id="field-scan".*?id="e-scan"', page, re.S).group()
    assert f'value="{second["id"]}" checked' in scan_field and first["id"] not in scan_field
    assert client.post(f"/cards/case/{case['id']}/edit",
                       data=MultiDict([*_form_fields(page), ("csrf_token", "test-csrf-token")])).status_code == 302
    saved = client.get(url, headers=lena).get_json()
    assert saved["name"] == "Renamed in the form" and saved["scan"] == second
    # The form drops the scan while someone else renames the card: the scan stays dropped.
    form = _edit_form(client, "case", case["id"])
    form.poplist("scan")
    client.patch(url, headers=lena, json={"version": saved["version"], "name": "Renamed elsewhere"})
    page = _conflicting_save(client, case["id"], form)
    assert 'id="e-scan" class="field-error"></small>' in page
    client.post(f"/cards/case/{case['id']}/edit",
                data=MultiDict([*_form_fields(page), ("csrf_token", "test-csrf-token")]))
    saved = client.get(url, headers=lena).get_json()
    assert saved["name"] == "Renamed elsewhere" and saved["scan"] is None and saved["attachments"] == [first]
    # Both change the attachments: the form asks which to keep.
    form = _edit_form(client, "case", case["id"])
    form.poplist("attachments")
    client.patch(url, headers=lena, json={"version": saved["version"], "attachments": [first["id"], third["id"]]})
    page = _conflicting_save(client, case["id"], form)
    assert re.search(r'id="e-attachments"[^>]*>Meanwhile «first\.pdf, third\.pdf» was saved here', page)
    assert re.search(r'id="e-scan" class="field-error"></small>', page)
    # The form keeps one of the two while someone else renames the card: the one kept shows by its name.
    version = client.get(url, headers=lena).get_json()["version"]
    form = _edit_form(client, "case", case["id"])
    form.setlist("attachments", [third["id"]])
    client.patch(url, headers=lena, json={"version": version, "name": "Renamed again"})
    page = _conflicting_save(client, case["id"], form)
    kept = re.search(r'id="field-attachments".*?id="e-attachments"', page, re.S).group()
    assert re.search(rf'value="{third["id"]}" checked> Current file: third\.pdf<', kept) and first["id"] not in kept


def test_file_fields_filter_by_emptiness_only(scoped):
    from tests.test_web import sign_in

    client, people, _, _ = scoped
    lena_user, lena = people["lena"]
    held = upload(client, lena, b"%PDF", "held.pdf", "application/pdf").get_json()
    client.post("/api/v1/records/case", headers=lena, json={"name": "Held", "attachments": [held["id"]]})
    client.post("/api/v1/records/case", headers=lena, json={"name": "Empty"})
    for name in ("attachments", "scan", "attachments__in", "scan__ne"):
        refused = client.get(f"/api/v1/records/case?{name}={held['id']}", headers=lena)
        assert refused.status_code == 400, (name, refused.get_data(as_text=True))
        field = name.partition("__")[0]
        assert refused.get_json()["detail"] == f"'{field}' holds files; filter it with {field}__isnull only."
    listed = client.get("/api/v1/records/case?attachments__isnull=false", headers=lena).get_json()
    assert [r["name"] for r in listed["items"]] == ["Held"]
    sign_in(client, lena_user)
    page = client.get(f"/cards/case/?attachments={held['id']}")
    assert page.status_code == 400 and "filter it with attachments__isnull only" in page.get_data(as_text=True)
    listed = client.get("/cards/case/?attachments__isnull=false").get_data(as_text=True)
    assert "Held" in listed and "Empty" not in listed.split("</table>")[0].split("<table")[-1]
    # The list offers what the API takes: empty or not, no text to match.
    assert 'name="attachments__isnull"' in listed and 'name="scan__isnull"' in listed
    assert 'name="attachments__contains"' not in listed and 'name="attachments"' not in listed


def test_the_form_names_only_file_fields_the_user_may_see(scoped):
    from tests.test_web import sign_in

    client, people, _, _ = scoped
    for name, wanted in (("anna", "scan,stamp,attachments,sealed"),
                         ("lena", "scan,secret_scan,stamp,attachments,sealed")):
        sign_in(client, people[name][0])
        page = client.get("/cards/case/new").get_data(as_text=True)
        assert f'hx-params="not {wanted}"' in page
    sign_in(client, people["anna"][0])
    assert "secret_scan" not in client.get("/cards/case/new").get_data(as_text=True)


def test_an_upload_into_a_field_the_user_may_not_change_is_refused_before_it_is_kept(scoped):
    from tests.test_web import CSRF, sign_in

    client, people, _, _ = scoped
    anna_user, _ = people["anna"]
    case, _ = _stamped_case(client, people)
    sign_in(client, anna_user)
    new = client.post("/cards/case/new", content_type="multipart/form-data",
                      data={"csrf_token": CSRF, "name": "Mine", "stamp": (io.BytesIO(b"%PDF"), "mine.pdf")})
    assert new.status_code == 422
    assert re.search(r'id="e-stamp"[^>]*>You may not change this field\.', new.get_data(as_text=True))
    form = _edit_form(client, "case", case["id"])
    form.add("stamp", (io.BytesIO(b"%PDF"), "other.pdf"))
    edit = client.post(f"/cards/case/{case['id']}/edit", data=form, content_type="multipart/form-data")
    assert edit.status_code == 422
    assert re.search(r'id="e-stamp"[^>]*>You may not change this field\.', edit.get_data(as_text=True))
    assert stored(client, anna_user.id)[0] == 0 and stored(client) == (1, 1)  # only Lena's stamp is kept
    # A field the card locks now (read_only_if over the card as saved) takes no upload either.
    sealed = client.post("/api/v1/records/case", headers=people["anna"][1], json={"name": "Sealed"}).get_json()
    form = _edit_form(client, "case", sealed["id"])
    form.add("sealed", (io.BytesIO(b"%PDF"), "seal.pdf"))
    edit = client.post(f"/cards/case/{sealed['id']}/edit", data=form, content_type="multipart/form-data")
    assert edit.status_code == 422
    assert re.search(r'id="e-sealed"[^>]*>Is read-only\.', edit.get_data(as_text=True))
    assert stored(client, anna_user.id)[0] == 0


@pytest.mark.parametrize(("content", "name", "message"), [
    (b"", "empty.pdf", "The file is empty."),
    (b"%PDF", "..", "The file needs a name."),
    (b"%PDF", "../..", "The file needs a name."),
])
def test_an_upload_without_content_or_name_comes_back_on_the_form(scoped, content, name, message):
    from tests.test_web import CSRF, sign_in

    client, people, _, _ = scoped
    anna_user, _ = people["anna"]
    sign_in(client, anna_user)
    response = client.post("/cards/case/new", content_type="multipart/form-data",
                           data={"csrf_token": CSRF, "name": "Typed by Anna",
                                 "scan": (io.BytesIO(content), name, "application/pdf")})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert re.search(r'id="e-scan"[^>]*>' + re.escape(message), page)
    assert 'value="Typed by Anna"' in page
    assert stored(client, anna_user.id) == (0, 0)


@pytest.mark.parametrize("control", ["\u202e", "\u202d", "\u202a", "\u202b", "\u202c", "\u200e", "\u200f",
                                     "\u2066", "\u2067", "\u2068", "\u2069", "\u061c"])
def test_file_names_lose_bidirectional_controls(control):
    from kartoteka.files import clean_name

    assert clean_name(f"invoice{control}fdp.exe") == "invoicefdp.exe"


def test_an_uploaded_name_cannot_hide_its_extension(scoped):
    from tests.test_web import CSRF, sign_in

    client, people, _, _ = scoped
    anna_user, anna = people["anna"]
    info = upload(client, anna, b"MZ", "invoice\u202efdp.exe", "application/pdf").get_json()
    assert info["name"] == "invoicefdp.exe"
    sign_in(client, anna_user)
    client.post("/cards/case/new", content_type="multipart/form-data",
                data={"csrf_token": CSRF, "name": "Bidi", "scan": (io.BytesIO(b"MZ"), "scan\u2067\u202eexe.pdf")})
    with client.application.extensions["kartoteka"].engine.connect() as conn:
        names = set(conn.execute(sa.select(files.c.name)).scalars())
    assert names == {"invoicefdp.exe", "scanexe.pdf"}


# --- files no record holds ---------------------------------------------------------------------------


@pytest.mark.parametrize("upload_limits", [UploadLimits(pending_files=0, pending_bytes=0, user_bytes=20)])
def test_a_file_no_record_holds_any_more_does_not_count_against_the_user(scoped):
    client, people, _, _ = scoped
    _, anna = people["anna"]
    held = upload(client, anna, b"12345678", "a.txt", "text/plain").get_json()
    case = client.post("/api/v1/records/case", headers=anna, json={"name": "a", "scan": held["id"]}).get_json()
    assert upload(client, anna, b"1234567890123", "b.txt", "text/plain").status_code == 413
    client.patch(f"/api/v1/records/case/{case['id']}", headers=anna, json={"version": case["version"], "scan": None})
    assert upload(client, anna, b"1234567890123", "b.txt", "text/plain").status_code == 201


def test_how_long_an_unsaved_upload_waits_is_configurable(scoped, monkeypatch):
    from dataclasses import replace

    client, people, clock, _ = scoped
    _, anna = people["anna"]
    state = client.application.extensions["kartoteka"]
    limits = UploadLimits(pending_files=1, pending_bytes=0, user_bytes=0, pending_lifetime=timedelta(hours=2))
    monkeypatch.setattr(state, "settings", replace(state.settings, uploads=limits))
    assert upload(client, anna, b"one", "1.txt", "text/plain").status_code == 201
    refused = upload(client, anna, b"two", "2.txt", "text/plain")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == str(2 * 3600)
    clock.advance(hours=2, seconds=1)
    assert upload(client, anna, b"two", "2.txt", "text/plain").status_code == 201


def test_the_upload_lifetime_comes_from_the_environment():
    from kartoteka.config import Settings

    base = {"KARTOTEKA_SECRET_KEY": "x"}
    assert Settings.from_env(base).uploads.pending_lifetime == timedelta(hours=24)
    assert Settings.from_env({**base, "KARTOTEKA_UPLOAD_PENDING_HOURS": "1.5"}).uploads.pending_lifetime \
        == timedelta(hours=1.5)
    with pytest.raises(ValueError, match="KARTOTEKA_UPLOAD_PENDING_HOURS must be a number of hours"):
        Settings.from_env({**base, "KARTOTEKA_UPLOAD_PENDING_HOURS": "0"})


def test_the_sweep_command_deletes_files_no_record_holds(runner, engine, service, tmp_path):
    from datetime import UTC, datetime

    from kartoteka.files import store_file
    from kartoteka.records.model import SYSTEM

    folder = tmp_path / "instance" / "files"
    now = datetime.now(UTC)  # the command runs on the real clock

    def put(content: bytes, name: str, age: timedelta = timedelta(0)) -> str:
        return store_file(engine, folder, io.BytesIO(content), name, "text/plain", None, now - age)["id"]

    old = put(b"old pending", "old.txt", timedelta(hours=25))
    fresh = put(b"fresh", "fresh.txt", timedelta(hours=23))
    live, trashed, dropped = put(b"live", "live.txt"), put(b"trashed", "trashed.txt"), put(b"dropped!", "dropped.txt")
    kept = service.create("company", {"name": "Live", "documents": [live, dropped]}, SYSTEM)
    service.update("company", kept.id, {"documents": [live]}, SYSTEM, expected_version=kept.version)
    gone = service.create("company", {"name": "Trashed", "documents": [trashed]}, SYSTEM)
    service.delete("company", gone.id, SYSTEM)  # a soft-deleted record may come back with its files

    def ids() -> set[str]:
        with engine.connect() as conn:
            return set(conn.execute(sa.select(files.c.id)).scalars())

    everything = {old, fresh, live, trashed, dropped}
    dry = runner.invoke("files", "sweep", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert old in dry.output and dropped in dry.output and "old.txt" in dry.output and "dropped.txt" in dry.output
    assert not {fresh, live, trashed} & set(re.findall(r"[0-9a-f]{32}", dry.output))
    assert "Would delete 2 files, freeing 19 bytes." in dry.output
    assert ids() == everything and all((folder / i).exists() for i in everything)
    result = runner.invoke("files", "sweep")
    assert result.exit_code == 0 and "Deleted 2 files, freed 19 bytes." in result.output
    assert ids() == {fresh, live, trashed}
    assert {p.name for p in folder.iterdir()} == {fresh, live, trashed}
    shorter = runner.invoke("files", "sweep", "--older-than", "12")  # hours; fresh is 23 hours old
    assert "Deleted 1 file, freed 5 bytes." in shorter.output and ids() == {live, trashed}


def test_a_sweep_keeps_a_file_a_save_attaches_meanwhile(engine, service, tmp_path):
    """The sweep waits for a save holding the file and then sees its link: the file stays, and so does the link."""
    import threading
    import time
    from datetime import UTC, datetime

    from kartoteka.files import store_file
    from kartoteka.records.files import sweep_files
    from kartoteka.records.model import SYSTEM
    from kartoteka.storage.tables import file_links

    folder = tmp_path / "files"
    now = datetime.now(UTC)
    late = store_file(engine, folder, io.BytesIO(b"late"), "late.txt", "text/plain", None, now - timedelta(hours=30))
    company = service.create("company", {"name": "Late"}, SYSTEM)
    swept: list = []
    with engine.connect() as saving:  # a save attaching the upload just as it expires, not committed yet
        transaction = saving.begin()
        saving.execute(sa.insert(file_links).values(file_id=late["id"], record_id=company.id, field="documents",
                                                    source_entity="company"))
        saving.execute(sa.update(files).where(files.c.id == late["id"]).values(attached_at=now))
        sweeper = threading.Thread(target=lambda: swept.extend(sweep_files(engine, folder, now)))
        sweeper.start()
        time.sleep(0.5)
        transaction.commit()
    sweeper.join(20)
    assert not sweeper.is_alive() and swept == []
    with engine.connect() as conn:
        assert conn.execute(sa.select(files.c.id)).scalars().all() == [late["id"]]
        assert conn.execute(sa.select(file_links.c.file_id)).scalars().all() == [late["id"]]
    assert (folder / late["id"]).exists()


@pytest.mark.parametrize("hours", [2, 48])
def test_each_upload_removes_unsaved_uploads_as_old_as_the_setting_says(scoped, monkeypatch, hours):
    from dataclasses import replace

    client, people, clock, folder = scoped
    _, anna = people["anna"]
    state = client.application.extensions["kartoteka"]
    monkeypatch.setattr(state, "settings", replace(state.settings, uploads=UploadLimits(
        pending_lifetime=timedelta(hours=hours))))
    waiting = upload(client, anna, b"waiting", "waiting.txt", "text/plain").get_json()
    clock.advance(hours=hours - 1)
    upload(client, anna, b"next", "next.txt", "text/plain")
    assert (folder / waiting["id"]).exists()  # not yet as old as the setting says
    clock.advance(hours=1, seconds=1)
    upload(client, anna, b"later", "later.txt", "text/plain")
    assert not (folder / waiting["id"]).exists()


@pytest.mark.parametrize(("language", "detail"), [
    ("ru", "Форма с файлами — не больше 20 МиБ; в этом — 20,03 МиБ."),
    ("en", "A form with files may have at most 20 MiB; this one has 20.03 MiB."),
])
def test_an_oversize_upload_is_refused_in_the_readers_language_and_never_reads_as_within_the_limit(
        client, admin, language, detail):
    """21,000,000 bytes used to read "at most 20 MiB; this one has 20 MiB", and in English to a Russian reader."""
    response = client.post("/api/v1/files", headers={**admin, "Accept-Language": language},
                           data=b"x" * 21_000_000, content_type="multipart/form-data; boundary=x")
    body = response.get_json()
    assert response.status_code == 413 and body["code"] == "request.multipart_too_large"
    assert body["detail"] == detail
    assert body["params"]["limit"] == body["params"]["limit_bytes"] == 20 * 1024 * 1024  # sizes are bytes in JSON
    assert body["params"]["size_bytes"] == 21_000_000
