"""Security headers on every response, a Secure session cookie over HTTPS, trusted proxies, option colours.

Every response (pages, the API, static files, errors) gets a Content-Security-Policy that allows only the
app's own scripts and styles, no framing, no MIME sniffing and a same-origin Referer. No page needs an
inline style or script under that policy: option colours come from a stylesheet generated from the
metadata (a class per colour, see `option_class`), and htmx is told not to inject its indicator styles.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from flask import Flask, Response, has_request_context, request
from flask.sessions import SecureCookieSessionInterface
from markupsafe import Markup, escape
from werkzeug.middleware.proxy_fix import ProxyFix

from kartoteka.metadata.model import Metadata

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
# The metadata schema allows "#rrggbb" or a CSS colour name; anything else gets no class.
HEX_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
NAMED_COLOR = re.compile(r"[a-z]+")


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie, marked Secure whenever the request came over HTTPS (or always, if configured)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return super().get_cookie_secure(app) or (has_request_context() and request.is_secure)


def init_security(app: Flask) -> None:
    """Headers on every response, the session interface, X-Forwarded-* if trusted, the option colour sheet."""
    settings = app.config["KARTOTEKA"]
    if settings.trusted_proxies:
        # Client address (sign-in limits, session list) and scheme (Secure cookie) as the proxies saw them.
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    app.session_interface = SessionInterface()
    app.after_request(add_security_headers)

    metadata: Metadata = app.extensions["kartoteka"].metadata
    stylesheet = option_stylesheet(metadata)
    version = hashlib.sha256(stylesheet.encode()).hexdigest()[:12]

    @app.get("/option-colors.css")
    def option_colors() -> Response:
        """`--opt` for every option colour in the metadata, one class per colour."""
        response = Response(stylesheet, mimetype="text/css")
        response.set_etag(version)
        response.cache_control.public = True
        response.cache_control.max_age = 86400 if request.args.get("v") == version else 0
        return response.make_conditional(request)

    app.jinja_env.globals.update(option_class=option_class, option_colors_version=version)


def add_security_headers(response: Response) -> Response:
    """The headers every response carries; a view may set a stricter value of its own first."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def option_class(color: str | None) -> str:
    """The class giving an element its option's colour as `--opt` (empty for no or an unusable colour)."""
    if not color:
        return ""
    if HEX_COLOR.fullmatch(color):
        return "opt-h-" + color[1:].lower()
    if NAMED_COLOR.fullmatch(color):
        return "opt-n-" + color
    return ""


def option_stylesheet(metadata: Metadata) -> str:
    """One rule per distinct option colour of every field of every entity."""
    colors = {option.color.lower() if option.color.startswith("#") else option.color
              for entity in metadata.entities.values() for field in entity.fields.values()
              for option in field.options if option.color and option_class(option.color)}
    lines = ["/* Option colours from the metadata: a class per colour sets --opt (see templates). */"]
    lines += [f".{option_class(color)} {{ --opt: {color}; }}" for color in sorted(colors)]
    return "\n".join(lines) + "\n"


def escaped(value: Any) -> str:
    """What `{{ value }}` writes (markupsafe's escape), as a plain str: a compiled page's hole makes no Markup."""
    if value.__class__ is str:
        if "&" in value or "<" in value or ">" in value or '"' in value or "'" in value:
            return (value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;")
                    .replace("'", "&#39;"))
        return value
    if value.__class__ is Markup:  # safe already (a compiled row)
        return value
    return str(escape(value))
