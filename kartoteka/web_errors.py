"""The one place where platform errors become HTTP responses (RFC 9457 problem+json)."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, g, json, render_template, request, session
from werkzeug.exceptions import HTTPException

from kartoteka.errors import Conflict, KartotekaError, RecordValidationError
from kartoteka.i18n import current_language, localized
from kartoteka.messages import N_, Message, json_params, message_code

PROBLEM_TYPE = "https://kartoteka.dev/problems/"
SLUGS = {400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
         409: "conflict", 413: "too-large", 415: "unsupported-media-type", 422: "invalid-record",
         428: "precondition-required", 429: "too-many-requests", 500: "internal-error"}


# What people read for the HTTP errors Werkzeug raises (an unknown address, a wrong method...): its own texts are
# English only. A description an `abort(404, ...)` gave is kept; these stand in for Werkzeug's defaults.
HTTP_TEXTS: dict[int, tuple[str, Message]] = {
    400: (N_("Bad request"), Message("http.bad_request", "The request could not be understood.")),
    401: (N_("Authentication required"), Message("http.unauthorized", "Sign in to see this page.")),
    403: (N_("Forbidden"), Message("http.forbidden", "You may not open this page.")),
    404: (N_("Not found"), Message("http.not_found", "There is no page at this address.")),
    405: (N_("Method not allowed"), Message("http.method_not_allowed",
                                             "This address does not take this kind of request.")),
    413: (N_("Too large"), Message("http.too_large", "The request is larger than this site takes.")),
    415: (N_("Unsupported media type"), Message("http.unsupported_media_type",
                                                 "This address does not take content of this type.")),
}


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    """An application/problem+json response in the request's language; `code` and `params` say it to programs."""
    body = {"type": PROBLEM_TYPE + SLUGS.get(status, "error"), "title": localized(title), "status": status,
            "detail": localized(detail), "code": message_code(detail), "params": json_params(detail),
            "instance": request.path, **extra}
    response = Response(json.dumps(body, ensure_ascii=False), status=status,
                        mimetype="application/problem+json")
    response.headers["Content-Language"] = current_language()
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="kartoteka"'
    return response


def _wants_html() -> bool:
    """Pages of the web UI get an HTML error page; the API and its clients get problem+json."""
    if request.path.startswith("/api/"):
        return False
    return request.blueprint not in (None, "home") or request.accept_mimetypes.accept_html


def error_page(status: int, title: str, detail: str) -> Response:
    """An HTML error page in the user's language, with the detail as the platform phrased it."""
    from kartoteka.i18n import pick_language, t

    # Refused before the user was loaded (the request guard: a NUL in the address): the visitor's language still.
    g.setdefault("language", pick_language(session.get("language"), request.accept_languages))
    html = render_template("error.html", status=status, title=t(title), detail=t(detail))
    return Response(html, status=status, mimetype="text/html")


def _platform_error(error: KartotekaError) -> Response:
    if _wants_html():
        return error_page(error.status, error.title, error.detail)
    extra: dict[str, Any] = {}
    if isinstance(error, RecordValidationError):
        # `errors` stays readable ({field: [messages]}); `details` says the same to programs, by code.
        extra["errors"] = {name: [localized(m) for m in messages] for name, messages in error.errors.items()}
        extra["details"] = {name: [{"code": message_code(m), "message": localized(m), "params": json_params(m)}
                                   for m in messages] for name, messages in error.errors.items()}
    if isinstance(error, Conflict) and error.current_version is not None:
        extra["current_version"] = error.current_version
    return problem(error.status, error.title, error.detail, **extra)


def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    title, default = HTTP_TEXTS.get(status, (error.name, error.name))
    described = error.description and error.description != type(error).description
    detail = error.description if described and error.description else default
    response = error_page(status, title, detail) if _wants_html() else problem(status, title, detail)
    # The exception's own headers stay: a 405 names the methods that work (Allow), a 416 its range.
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _unexpected(error: Exception) -> Response:
    current_app.logger.exception("Unhandled error on %s %s", request.method, request.path)
    if _wants_html():
        return error_page(500, N_("Internal error"), _INTERNAL)
    return problem(500, N_("Internal error"), _INTERNAL)


_INTERNAL = Message("internal", "Something went wrong on our side; the error has been logged.")


def register_error_handlers(app: Flask) -> None:
    """Map KartotekaError, HTTP errors and anything unexpected to problem+json."""
    app.register_error_handler(KartotekaError, _platform_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
