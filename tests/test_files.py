"""Files: upload, attach to a file field, download; bad uploads are refused clearly."""

from __future__ import annotations

import io

import pytest

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
