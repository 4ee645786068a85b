"""The import API: POST /api/v1/imports/<entity>, GET /api/v1/imports/<id>, POST /api/v1/imports/<id>/undo; large
files queued for the worker; problems as problem+json."""

from __future__ import annotations

import io
import json

import sqlalchemy as sa

from kartoteka.imports.service import ImportJob
from kartoteka.storage.tables import records

LEADS = "contact_name,emails,Rating\nA,a@example.com,hot\nB,b@example.com,Тёплый\n".encode()


def _post(client, headers, content: bytes = LEADS, name: str = "leads.csv", **form):
    data = {"file": (io.BytesIO(content), name), **form}
    return client.post("/api/v1/imports/lead", data=data, headers=headers, content_type="multipart/form-data")


def _live(engine):
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(records).where(
            records.c.entity == "lead", records.c.deleted_at.is_(None))).scalar()


def test_import_dry_run_then_import_then_get_then_undo(client, engine, make_user):
    _user, headers = make_user("anna", ["sales_manager"])
    checked = _post(client, headers, dry_run="true")
    assert checked.status_code == 200, checked.json
    assert checked.json["status"] == "done" and checked.json["options"]["dry_run"] is True
    assert checked.json["counts"] == {"rows": 2, "created": 2, "updated": 0, "skipped": 0, "invalid": 0}
    assert [m["field"] for m in checked.json["mapping"]] == ["contact_name", "emails", "rating"]
    assert _live(engine) == 0
    done = _post(client, headers)
    assert done.status_code == 201 and done.json["status"] == "done"
    assert done.headers["Location"].endswith(f"/api/v1/imports/{done.json['id']}")
    assert _live(engine) == 2
    shown = client.get(done.headers["Location"], headers=headers)
    assert shown.status_code == 200 and shown.json["counts"]["created"] == 2
    _other, other_headers = make_user("boris", ["sales_manager"])
    assert client.get(done.headers["Location"], headers=other_headers).status_code == 404
    refused = client.post(done.headers["Location"] + "/undo", headers=other_headers)
    assert refused.status_code == 403 and refused.json["code"] == "import.undo_forbidden"
    undone = client.post(done.headers["Location"] + "/undo", headers=headers)
    assert undone.status_code == 200, undone.json
    assert undone.json["status"] == "undone" and undone.json["undo"]["deleted"] == 2
    assert _live(engine) == 0
    again = client.post(done.headers["Location"] + "/undo", headers=headers)
    assert again.status_code == 409 and again.json["code"] == "import.already_undone"


def test_invalid_rows_are_422_with_every_row_error(client, engine, admin):
    response = _post(client, admin, b"contact_name,emails\nA,broken\nB,\n")
    assert response.status_code == 422
    body = response.json
    assert body["status"] == "failed" and body["detail"]["code"] == "import.invalid_rows"
    found = {(e["row"], e["column"], e["field"]) for e in body["errors"]}
    assert found >= {(2, "emails", "emails"), (3, None, "phones")}  # row 3's problem is the missing phone or e-mail
    assert all({"code", "message", "params", "field"} <= e.keys() for e in body["errors"])
    assert _live(engine) == 0


def test_upsert_and_mapping_as_json(client, engine, admin):
    _post(client, admin)
    response = _post(client, admin, "Кто,Город\nA,Тверь\nC,Псков\n".encode(), key="contact_name",
                     on_duplicate="update", skip_invalid="true", mapping=json.dumps({"Кто": "contact_name"}))
    assert response.status_code == 201, response.json
    assert response.json["counts"]["updated"] == 1 and response.json["counts"]["invalid"] == 1  # C: no contact data


def test_broken_files_and_options_are_problem_json(client, admin):
    empty = _post(client, admin, b"")
    assert empty.status_code == 400 and empty.mimetype == "application/problem+json"
    assert empty.json["code"] == "import.empty_file"
    zipped = _post(client, admin, b"PK\x03\x04" + b"\x00" * 40)
    assert zipped.json["code"] == "import.csv_is_zip"
    missing = client.post("/api/v1/imports/lead", data={}, headers=admin, content_type="multipart/form-data")
    assert missing.status_code == 400 and missing.json["code"] == "import.file_missing"
    bad_flag = _post(client, admin, dry_run="maybe")
    assert bad_flag.status_code == 400 and bad_flag.json["code"] == "import.flag_invalid"
    bad_map = _post(client, admin, mapping="[1]")
    assert bad_map.json["code"] == "import.mapping_invalid"
    bad_mode = _post(client, admin, key="contact_name", on_duplicate="merge")
    assert bad_mode.json["code"] == "import.on_duplicate_unknown"
    no_key = _post(client, admin, key="city")
    assert no_key.json["code"] == "import.key_not_in_file"
    unmapped = _post(client, admin, b"Who\nA\n")
    assert unmapped.status_code == 422 and unmapped.json["details"]["mapping"][0]["code"] == "import.required_missing"
    assert client.post("/api/v1/imports/nothing", data={}, headers=admin,
                       content_type="multipart/form-data").status_code == 404


def test_import_needs_create_rights(client, make_user):
    _user, headers = make_user("sam", ["support"])
    response = _post(client, headers)
    assert response.status_code == 403 and response.json["code"] == "entity.forbidden.create"


def test_a_large_file_is_queued_for_the_worker_and_polled(app, client, engine, admin):
    app.config["KARTOTEKA_IMPORT_INLINE_BYTES"] = 10
    queued = _post(client, admin)
    assert queued.status_code == 202 and queued.json["status"] == "queued"
    location = queued.headers["Location"]
    state = app.extensions["kartoteka"]
    stored = state.settings.instance_dir / "imports" / f"{queued.json['id']}.csv"
    assert stored.is_file()
    job = ImportJob(state.service, state.settings.instance_dir)
    assert job(engine, state.clock.now()) == 1
    assert job(engine, state.clock.now()) == 0  # nothing else queued
    polled = client.get(location, headers=admin).json
    assert polled["status"] == "done" and polled["counts"]["created"] == 2 and polled["finished_at"]
    assert not stored.exists()  # the upload goes once imported
    assert _live(engine) == 2


def test_a_large_import_is_undone_by_the_worker(app, client, engine, admin, monkeypatch):
    import kartoteka.api.imports as api_imports

    done = _post(client, admin)
    location = done.headers["Location"]
    monkeypatch.setattr(api_imports, "UNDO_INLINE_SAVES", 1)  # two saves: more than that
    queued = client.post(location + "/undo", headers=admin)
    assert queued.status_code == 202 and queued.json["status"] == "queued"
    assert client.post(location + "/undo", headers=admin).status_code == 409  # asked once
    assert _live(engine) == 2
    state = app.extensions["kartoteka"]
    assert ImportJob(state.service, state.settings.instance_dir)(engine, state.clock.now()) == 1
    polled = client.get(location, headers=admin).json
    assert polled["status"] == "undone" and polled["detail"]["undo"]["deleted"] == 2
    assert _live(engine) == 0
