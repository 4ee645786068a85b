"""The edge of every request: input no handler can use is refused before any handler runs.

Two things are checked here, once for the whole app:

- **Ids in URLs.** Flask's `int` converter is replaced by one that matches 1 to 10^18-1 in ASCII
  digits (inside the database's BIGINT), so `/api/v1/records/deal/99999999999999999999` matches no
  route and is a 404 for every method, instead of an overflow in the database driver.
- **Text no database can store.** Every query parameter, form field (names and values), upload name
  and, for JSON bodies, every key and string value at any depth is checked for NUL (PostgreSQL refuses
  it in text and jsonb) and for unpaired UTF-16 surrogates (`"\\ud800"` in JSON: not a character;
  encoding it as UTF-8, for the database or the response, raises). Either is a 400 naming the
  parameter. The sizes that multiply work are bounded too: the number of query parameters and form
  values, the length of their names, and a JSON body's size, depth and number of values.

The field types refuse the same characters in their `parse` (a 422 per field), so imports and rules,
which do not come through HTTP, are safe as well.

Bodies are bounded before anything reads them: forms with files (multipart) by `MAX_CONTENT_LENGTH` and
Werkzeug's per-field limits, JSON by MAX_JSON_BYTES, and every other body (url-encoded forms, text) by
`KARTOTEKA_MAX_FORM_BYTES` (1 MiB; Werkzeug's form memory limit does not apply to url-encoded bodies, so a
20 MB one would otherwise be parsed whole). A declared Content-Length over the limit is a 413 at once; a form or
JSON body sent without one (chunked) is read to one byte past the limit and refused with the same 413. Nobody's
body is read when it cannot be used: an unsafe request to a page that needs a session, from a browser that never
signed in, is answered 401 unread, and an API request without a token is left to the API's own 401.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, current_app, request, session
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import IntegerConverter, Map, ValidationError

from kartoteka.errors import AuthenticationRequired, BadRequest
from kartoteka.messages import ByteSize, Message
from kartoteka.records.query import unstorable_problem

MAX_ID = 2**63 - 1  # PostgreSQL BIGINT and SQLite INTEGER
MAX_ID_DIGITS = 18  # ids in URLs: up to 10^18 - 1, which any BIGINT holds
MAX_QUERY_ARGS = 200
MAX_FORM_VALUES = 2_000
MAX_KEY_LENGTH = 200
MAX_JSON_BYTES = 2 * 1024 * 1024  # a record with a full 100,000-character textarea, escaped, fits
MAX_JSON_DEPTH = 20  # a record is flat: {"files": [{"id": "..."}]} is depth 3
MAX_JSON_VALUES = 20_000


class BoundedIntConverter(IntegerConverter):
    """`<int:...>` for ids: ASCII digits without a leading zero, 1 to 10^18-1 (inside BIGINT's 2^63-1).

    The bound is in the pattern itself, so a longer number matches no route for any method: a 404,
    never a database overflow, nor a 405 that werkzeug would infer from a route whose pattern matched
    before its conversion failed. No sequence comes near 10^18 ids.
    """

    regex = r"[1-9][0-9]{0,17}"

    def __init__(self, map: Map, fixed_digits: int = 0, min: int | None = 1,
                 max: int | None = MAX_ID, signed: bool = False) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)
        self.regex = type(self).regex  # `signed` would widen it

    def to_python(self, value: str) -> Any:
        if len(value) > MAX_ID_DIGITS:  # the pattern already says so; kept for a converter used alone
            raise ValidationError()
        return super().to_python(value)


def init_request_guard(app: Flask) -> None:
    """Install the bounded `int` converter and the input check; call before registering blueprints."""
    app.url_map.converters["int"] = BoundedIntConverter
    app.before_request(check_request)


def _short(name: str) -> str:
    return name if len(name) <= 60 else name[:57] + "..."


# Where a text no database can store was found: the refusal, given what was found (a nested Message).
Where = Callable[[Message], Message]


def _check_text(text: str, where: Where) -> None:
    problem = unstorable_problem(text)
    if problem is not None:
        raise BadRequest(where(problem))


def _address(problem: Message) -> Message:
    return Message("request.address_unstorable", "The address contains {problem}, which cannot be stored.",
                   problem=problem)


def _text_of(name: str) -> Where:
    """A refusal for the value of the parameter, form field or JSON key `name`."""
    return lambda problem: Message("request.text_unstorable", "The text of '{name}' contains {problem}, which "
                                   "cannot be stored.", name=_short(name), problem=problem)


def _param_name(problem: Message) -> Message:
    return Message("request.param_name_unstorable", "The name of a query parameter contains {problem}, which "
                   "cannot be stored.", problem=problem)


def _field_name(problem: Message) -> Message:
    return Message("request.field_name_unstorable", "The name of a form field contains {problem}, which cannot be "
                   "stored.", problem=problem)


def _check_pairs(pairs: list[tuple[str, Any]], form: bool, limit: int) -> None:
    """Query parameters (`form` false) or form fields: how many, their names and their texts."""
    if len(pairs) > limit:
        raise BadRequest(_too_many_fields(len(pairs), limit) if form else Message(
            "request.too_many_params", "The request has {count} query parameters; at most {limit} are accepted.",
            count=len(pairs), limit=limit))
    for key, value in pairs:
        _check_text(key, _field_name if form else _param_name)
        if len(key) > MAX_KEY_LENGTH:
            if form:
                raise BadRequest(Message("request.field_name_too_long", "The name of a form field is {length} "
                                         "characters long; at most {limit} are accepted.", length=len(key),
                                         limit=MAX_KEY_LENGTH))
            raise BadRequest(Message("request.param_name_too_long", "The name of a query parameter is {length} "
                                     "characters long; at most {limit} are accepted.", length=len(key),
                                     limit=MAX_KEY_LENGTH))
        if isinstance(value, str):
            _check_text(value, _text_of(key))


def _too_many_fields(count: int, limit: int) -> Message:
    return Message("request.too_many_fields", "The request has {count} form fields; at most {limit} are accepted.",
                   count=count, limit=limit)


def _json_too_large() -> RequestEntityTooLarge:
    return RequestEntityTooLarge(Message("request.json_too_large", "A JSON body may have at most {limit}.",
                                         limit=ByteSize.limit(MAX_JSON_BYTES), limit_bytes=MAX_JSON_BYTES))


def _json_too_deep() -> Message:
    return Message("request.json_too_deep", "The JSON body is nested too deeply (at most {limit} levels).",
                   limit=MAX_JSON_DEPTH)


def _check_json() -> None:
    length = request.content_length
    if length is not None and length > MAX_JSON_BYTES:
        raise _json_too_large()
    if len(request.get_data(cache=True)) > MAX_JSON_BYTES:
        raise _json_too_large()
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # the parser itself gives up on [[[[...]]]] nested a thousand deep
        raise BadRequest(_json_too_deep()) from None
    if body is None:
        return  # not JSON at all: the endpoint says so in its own words
    # Iterative, so that checking cannot exhaust the stack either: (value, path, depth).
    pending: list[tuple[Any, str, int]] = [(body, "", 1)]
    count = 0
    while pending:
        value, path, depth = pending.pop()
        count += 1
        if count > MAX_JSON_VALUES:
            raise BadRequest(Message("request.json_too_many_values", "The JSON body has more than {limit} values.",
                                     limit=MAX_JSON_VALUES))
        if depth > MAX_JSON_DEPTH:
            raise BadRequest(_json_too_deep())
        if isinstance(value, str):
            _check_text(value, _text_of(path) if path else _json_body)
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, _json_key)
                pending.append((item, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(value, list):
            pending.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))


def _json_body(problem: Message) -> Message:
    return Message("request.json_unstorable", "The JSON body contains {problem}, which cannot be stored.",
                   problem=problem)


def _json_key(problem: Message) -> Message:
    return Message("request.json_key_unstorable", "A key of the JSON body contains {problem}, which cannot be "
                   "stored.", problem=problem)


def _body_limit() -> tuple[int | None, str]:
    """The most bytes this request's body may have, and what kind of body it is (for the refusal)."""
    from kartoteka.rate_limits import request_limits

    if request.mimetype == "multipart/form-data":
        return current_app.config.get("MAX_CONTENT_LENGTH"), "multipart"
    if request.is_json:
        return MAX_JSON_BYTES, "json"
    if request.mimetype == "application/x-www-form-urlencoded":
        return request_limits().max_form_bytes, "form"
    return request_limits().max_form_bytes, "other"


def _too_large(limit: int, what: str, length: int | None = None) -> RequestEntityTooLarge:
    """413 for a body of kind `what` over `limit` bytes; `length`, when declared, is said too ({sent})."""
    sent: str = "" if length is None else Message("request.body_size", "; this one has {size}",
                                                   size=ByteSize.over(length, limit), size_bytes=length)
    sizes: dict[str, object] = {"limit": ByteSize.limit(limit), "limit_bytes": limit, "sent": sent}
    if length is not None:
        sizes["size_bytes"] = length  # JSON clients read the declared size here (`sent` is a nested message)
    if what == "multipart":
        message = Message("request.multipart_too_large", "A form with files may have at most {limit}{sent}.", **sizes)
    elif what == "json":
        message = Message("request.json_body_too_large", "A JSON body may have at most {limit}{sent}.", **sizes)
    elif what == "form":
        message = Message("request.form_too_large", "A form may have at most {limit}{sent}.", **sizes)
    else:
        message = Message("request.body_too_large", "A request body of this type may have at most {limit}{sent}.",
                          **sizes)
    return RequestEntityTooLarge(message)


def _bound_body() -> tuple[int | None, str]:
    """Refuse a declared length over the limit (413, unread); cut a body sent without a length at the limit."""
    limit, what = _body_limit()
    if limit is not None:
        request.max_content_length = limit  # Werkzeug stops reading a chunked body there, with a 413
        length = request.content_length
        if length is not None and length > limit:
            raise _too_large(limit, what, length)
    return limit, what


def _needs_session_without_one() -> bool:
    """An unsafe request to a page that needs a session, from a browser that never signed in.

    A browser that did keeps its session id, or (after the session ended) whose form it holds, `uid`: its form
    is read, to be carried through the sign-in page.
    """
    if request.method in ("GET", "HEAD", "OPTIONS") or request.endpoint is None:
        return False
    view = current_app.view_functions.get(request.endpoint)
    if not getattr(view, "needs_session", False):
        return False
    return not (isinstance(session.get("uid"), int) or "_user_id" in session or "sid" in session)


def check_request() -> None:
    """Refuse NUL and surrogates anywhere in the input, and inputs whose size multiplies work (400/413)."""
    _check_text(request.path, _address)
    _check_pairs(list(request.args.items(multi=True)), False, MAX_QUERY_ARGS)
    limit, what = _bound_body()
    if request.endpoint is None:
        return  # no route: a 404 or 405 whatever the body holds
    if _needs_session_without_one():
        raise AuthenticationRequired(Message("auth.required", "Please sign in to continue."))
    if request.blueprint == "api" and "Authorization" not in request.headers:
        return  # the API refuses it unread
    if limit is not None and request.content_length is None and (
            request.mimetype == "application/x-www-form-urlencoded" or request.is_json):
        # Sent without a length (chunked): read one byte past the limit, so that a longer body is refused
        # rather than parsed cut short (Werkzeug stops reading at the limit without a word).
        request.max_content_length = limit + 1
        if len(request.get_data(cache=True)) > limit:
            raise _too_large(limit, what)
    if request.mimetype == "application/x-www-form-urlencoded":
        # Counted before parsing: a megabyte of "&&&&" is half a million empty fields to build.
        separators = request.get_data(cache=True).count(b"&")
        if separators >= MAX_FORM_VALUES:
            raise BadRequest(_too_many_fields(separators + 1, MAX_FORM_VALUES))
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        _check_pairs(list(request.form.items(multi=True)), True, MAX_FORM_VALUES)
        for key, upload in request.files.items(multi=True):
            _check_text(key, _field_name)
            _check_text(upload.filename or "", _upload_text(key, content_type=False))
            _check_text(upload.mimetype, _upload_text(key, content_type=True))
    if request.is_json:
        _check_json()


def _upload_text(key: str, content_type: bool) -> Where:
    """A refusal for the file name or the content type of the upload in the form field `key`."""
    if content_type:
        return lambda problem: Message("request.content_type_unstorable", "The content type in '{name}' contains "
                                       "{problem}, which cannot be stored.", name=_short(key), problem=problem)
    return lambda problem: Message("request.file_name_unstorable", "The file name in '{name}' contains {problem}, "
                                   "which cannot be stored.", name=_short(key), problem=problem)
