"""Refusals of lists, filters, the API, files and users carry a code and their values, not only English text.

The exceptions are looked at on the Python side (the API's JSON body is another test's business): each
handler of the app is wrapped so that a request through the test client leaves its exception behind.
"""

from __future__ import annotations

import io
from datetime import timedelta

import pytest

from kartoteka import create_app
from kartoteka.config import Settings, UploadLimits
from kartoteka.errors import BadRequest, Conflict, NotFound, PermissionDenied
from kartoteka.files import FileTooLarge, PendingUploadsFull, UploadQuotaFull, store_file
from kartoteka.messages import Message, json_params, localize, message_of
from kartoteka.records.model import Filter, ListQuery
from kartoteka.records.scopes import forbidden
from kartoteka.records.views import delete_view, save_view
from kartoteka.storage.indexes import sync_indexes
from kartoteka.users import create_user, get_user
from tests.conftest import CRM_CONFIG


@pytest.fixture
def config_dir():
    return CRM_CONFIG


def _caught(app):
    """The exceptions the app's error handlers are given, in order."""
    seen: list[BaseException] = []
    for by_code in app.error_handler_spec[None].values():
        for kind, handler in list(by_code.items()):
            def spy(error, handler=handler):
                seen.append(error)
                return handler(error)
            by_code[kind] = spy
    return seen


@pytest.fixture
def caught(app):
    return _caught(app)


def _message(error: BaseException) -> Message:
    detail = getattr(error, "detail", None)
    message = detail if isinstance(detail, Message) else getattr(error, "description", None)
    if not isinstance(message, Message):
        message = message_of(error)
    assert isinstance(message, Message), repr(error)
    return message


class _Russian:
    """A catalogue that marks what it translated, to see that nested messages are translated too."""

    def gettext(self, message: str) -> str:
        return f"<{message}>"

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return f"<{singular if n == 1 else plural}>"


def test_an_unknown_filter_field_is_refused_with_its_code_and_a_nested_hint(service, make_user):
    user, _ = make_user("anna", ["admin"])
    with pytest.raises(BadRequest) as refused:
        service.list("deal", user, ListQuery((Filter("stag", "eq", "won"),)))
    message = refused.value.detail
    assert isinstance(message, Message) and message.code == "filter.unknown_field"
    assert message == "Cannot filter by unknown field 'stag'; did you mean 'stage'?"  # the English text as before
    assert message.template == "Cannot filter by unknown field '{name}'{hint}"
    assert message.params["name"] == "stag" and message.params["hint"].code == "hint.did_you_mean"
    assert localize(message, _Russian(), "ru") == "<Cannot filter by unknown field '{name}'{hint}>".replace(
        "{name}", "stag").replace("{hint}", "<; did you mean '{name}'?>".replace("{name}", "stage"))
    with pytest.raises(BadRequest) as refused:
        service.list("deal", user, ListQuery(sort="-nothing_alike"))
    assert refused.value.detail.code == "sort.unknown_field" and str(refused.value.detail).endswith("'.")


def test_refused_filter_values_keep_the_field_types_message_nested(service, make_user):
    user, _ = make_user("anna", ["admin"])
    with pytest.raises(BadRequest) as refused:
        service.list("deal", user, ListQuery((Filter("quantity", "gte", "12abc"),)))
    message = refused.value.detail
    assert message.code == "filter.invalid" and message.params["name"] == "quantity__gte"
    inner = message.params["message"]
    assert str(message) == f"Filter 'quantity__gte': {inner}"
    with pytest.raises(BadRequest) as refused:
        service.list("deal", user, ListQuery((Filter("id", "eq", "x" * 100),)))
    inner = refused.value.detail.params["message"]
    assert inner.code == "filter.system_number" and inner.params["text"] == "x" * 40
    assert json_params(inner)["text"] == "x" * 40 and isinstance(json_params(inner)["high"], int)


def test_list_refusals_through_the_api_carry_their_codes(client, admin, caught):
    cases = {
        "/api/v1/records/deal?nope=1": "filter.unknown_field",
        "/api/v1/records/deal?name__bogus=1": "filter.unknown_operator",
        "/api/v1/records/deal?cursor=abc": "cursor.invalid",
        "/api/v1/records/deal?limit=ten": "limit.not_a_number",
        "/api/v1/records/deal?limit=5000": "limit.out_of_range",
        "/api/v1/records/deal?q=" + "x" * 300: "search.q_too_long",
        "/api/v1/records/deal?name__contains=%20": "filter.contains_empty",
        "/api/v1/records/deal?stage__isnull=maybe": "filter.isnull_value",
    }
    for url, code in cases.items():
        caught.clear()
        assert client.get(url, headers=admin).status_code == 400, url
        assert _message(caught[-1]).code == code, url
    caught.clear()
    client.get("/api/v1/records/deal?q=" + "x" * 300, headers=admin)
    assert _message(caught[-1]).params == {"count": 200, "has": 300}


def test_api_requests_without_a_version_or_a_token_carry_their_codes(client, admin, caught):
    created = client.post("/api/v1/records/deal", json={"name": "Supply"}, headers=admin).get_json()
    client.patch(f"/api/v1/records/deal/{created['id']}", json={"name": "Other"}, headers=admin)
    assert _message(caught[-1]).code == "version.missing"
    client.patch(f"/api/v1/records/deal/{created['id']}", json={"name": "Other"},
                 headers={**admin, "If-Match": "three"})
    message = _message(caught[-1])
    assert message.code == "version.if_match_invalid" and message.params["header"] == "'three'"
    client.get("/api/v1/entities", headers={"Authorization": "Bearer kt_unknown"})
    assert _message(caught[-1]).code == "auth.token_invalid"
    client.post("/api/v1/records/deal", data="{", headers={**admin, "Content-Type": "application/json"})
    assert _message(caught[-1]).code == "body.invalid_json"


def test_a_request_with_a_nul_is_refused_with_what_was_found_nested(client, admin, caught):
    assert client.get("/api/v1/records/deal?name=a%00b", headers=admin).status_code == 400
    message = _message(caught[-1])
    assert message.code == "request.text_unstorable" and message.params["name"] == "name"
    assert message.params["problem"].code == "unstorable.nul"
    assert message == "The text of 'name' contains a NUL character (U+0000), which cannot be stored."
    caught.clear()
    assert client.post("/api/v1/records/deal", data='{"name": "a\\ud800"}', headers=admin,
                       content_type="application/json").status_code == 400
    message = _message(caught[-1])
    assert message.code == "request.text_unstorable" and message.params["problem"].code == "unstorable.surrogate"
    assert message.params["problem"].params == {"char": "U+D800"}


def test_an_upload_over_the_limits_carries_its_code_and_the_byte_counts(engine, database_url, clock, tmp_path,
                                                                          make_user):
    limits = UploadLimits(pending_files=1, pending_bytes=1024, user_bytes=4096,
                          pending_lifetime=timedelta(hours=36))
    settings = Settings(database_url=database_url, config_dir=CRM_CONFIG, secret_key="test-secret",
                        instance_dir=tmp_path / "instance", testing=True, uploads=limits)
    app = create_app(settings, clock)
    sync_indexes(engine, app.extensions["kartoteka"].metadata)
    seen = _caught(app)
    client = app.test_client()
    _, headers = make_user("anna", ["admin"])

    def upload(content: bytes):
        return client.post("/api/v1/files", headers=headers, content_type="multipart/form-data",
                           data={"file": (io.BytesIO(content), "notes.txt", "text/plain")})

    try:
        seen.clear()
        assert upload(b"x" * 2000).status_code == 413
        larger = _message(seen[-1])
        assert isinstance(seen[-1], UploadQuotaFull) and larger.code == "uploads.file_too_large"
        assert larger.params["limit_bytes"] == 1024 and json_params(larger)["limit"] == 1024  # bytes in JSON
        assert larger == "The file is larger than 1 KiB, the most one user's unsaved uploads may take."
        assert upload(b"first").status_code == 201
        # The second upload is refused with a 429 the files route renders itself: ask store_file the same.
        user = get_user(engine, username="anna")
        with pytest.raises(PendingUploadsFull) as refused:
            store_file(engine, tmp_path / "files", io.BytesIO(b"second"), "b.txt", None, user.id, clock.now(),
                       limits)
        full = message_of(refused.value)
        assert full.code == "uploads.too_many" and full.params["count"] == 1
        assert full.params["lifetime"].code == "duration.hours" and full.params["lifetime"].params == {"count": 36}
        assert "removed 36 hours after upload" in full
    finally:
        app.extensions["kartoteka"].engine.dispose()

    with pytest.raises(FileTooLarge) as refused:
        store_file(engine, tmp_path / "files", io.BytesIO(b"x" * 3000), "c.txt", None, None, clock.now(),
                   UploadLimits(0, 0, 0), max_size=2048)
    assert message_of(refused.value).code == "file.too_large"
    assert json_params(message_of(refused.value)) == {"limit": 2048, "limit_bytes": 2048}
    assert message_of(refused.value) == "The file is larger than 2 KiB."
    with pytest.raises(UploadQuotaFull) as refused:
        store_file(engine, tmp_path / "files", io.BytesIO(b"x" * 3000), "d.txt", None, user.id, clock.now(),
                   UploadLimits(0, 0, 2048))
    quota = message_of(refused.value)
    assert quota.code == "file.quota" and quota.params["used_bytes"] >= 0 and quota.params["limit_bytes"] == 2048


def test_user_saved_view_and_scope_refusals_carry_their_codes(engine, clock, service, make_user):
    with pytest.raises(BadRequest) as refused:
        create_user(engine, "bad name", ["admin"], clock.now())
    assert refused.value.detail.code == "user.invalid_name" and refused.value.detail.params == {"name": "bad name"}
    with pytest.raises(BadRequest) as refused:
        create_user(engine, "olga", ["chief"], clock.now(), known_roles=["admin", "sales"])
    assert refused.value.detail.code == "user.unknown_roles" and refused.value.detail.params["roles"] == ["chief"]
    anna, _ = make_user("anna", ["admin"])
    with pytest.raises(Conflict) as refused:
        create_user(engine, "anna", ["admin"], clock.now())
    assert refused.value.detail.code == "user.name_taken"
    with pytest.raises(NotFound) as refused:
        get_user(engine, username="nobody")
    assert refused.value.detail.code == "user.inactive_or_unknown"

    with pytest.raises(BadRequest) as refused:
        save_view(engine, anna, "deal", "x" * 101, "stage=won", False, clock.now())
    assert refused.value.detail.code == "view.name_too_long"
    assert refused.value.detail.params == {"limit": 100, "count": 101}
    view = save_view(engine, anna, "deal", "Won", "stage=won", True, clock.now())
    boris, _ = make_user("boris", ["admin"])
    with pytest.raises(PermissionDenied) as refused:
        delete_view(engine, boris, view.id)
    assert refused.value.detail.code == "view.not_author"

    deal = service.entity("deal")
    for action, verb in (("create", "create"), ("read", "open"), ("update", "change"), ("delete", "delete")):
        message = forbidden(deal, action)  # what require() raises when the role's scope is none
        assert message.code == f"entity.forbidden.{action}"
        assert message == f"Your role may not {verb} {deal.label_plural.get('en')}."
        assert message.params["what"] is deal.label_plural  # each language names it


def test_board_totals_refuse_a_field_a_board_cannot_group_by(service, make_user):
    from kartoteka.records.board import board_totals

    user, _ = make_user("anna", ["admin"])
    with pytest.raises(BadRequest) as refused:
        board_totals(service, "deal", user, "name", None, ListQuery())
    message = refused.value.detail
    assert message.code == "board.group_invalid" and message.params["entity"] == "deal"
    assert "stage" in message.params["fields"]
    with pytest.raises(BadRequest) as refused:
        board_totals(service, "deal", user, "stage", "name", ListQuery())
    assert refused.value.detail.code == "board.sum_invalid"
