"""Request-rate limits (Flask-Limiter) and the sizes of request bodies, shared by every worker when Redis is set.

- **Sign-in** (`POST /login`): at most `KARTOTEKA_SIGN_IN_RATE` requests per client address (default 60 per
  minute), whatever their outcome. This bounds the load one address can put on the sign-in page; who must
  wait after failed passwords is decided by the failure counters in the database (`kartoteka/users.py`),
  which Flask-Limiter cannot express (see docs/security.md).
- **API**: at most `KARTOTEKA_API_RATE` requests per token (default 3000 per minute), or per client address for
  requests without a token; and at most `KARTOTEKA_SIGN_IN_RATE` refused (401) requests per address, so guessing
  with made-up tokens is limited like guessing passwords.

The counts live in Redis when `KARTOTEKA_REDIS_URL` is set (every gunicorn worker and every server shares
them), in each worker's memory otherwise. A refused request is a 429 with `Retry-After`: the sign-in page
says so in the user's language, the API answers problem+json.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter, RequestLimit
from flask_limiter.errors import RateLimitExceeded

from kartoteka.config import _size
from kartoteka.messages import N_, Message
from kartoteka.users import attempt_address

MIB = 1 << 20


@dataclass(frozen=True)
class RequestLimits:
    """Limits on request rates and body sizes, from the environment when the app is created.

    Tests (and embedders) pass their own as `Settings.extra["request_limits"]`.
    """

    # Bodies that are neither multipart (forms with files, 20 MB) nor JSON (2 MB): url-encoded forms and the rest.
    max_form_bytes: int = MIB
    redis_url: str | None = None
    sign_in_rate: str = "60 per minute"
    api_rate: str = "3000 per minute"
    key_prefix: str = "kartoteka"  # of the counters in Redis (tests use their own)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RequestLimits:
        """KARTOTEKA_MAX_FORM_BYTES (K, M, G), KARTOTEKA_REDIS_URL, KARTOTEKA_SIGN_IN_RATE, KARTOTEKA_API_RATE."""
        default = cls()
        return cls(
            max_form_bytes=_size(env.get("KARTOTEKA_MAX_FORM_BYTES", str(default.max_form_bytes)),
                                 "KARTOTEKA_MAX_FORM_BYTES"),
            redis_url=env.get("KARTOTEKA_REDIS_URL") or None,
            sign_in_rate=env.get("KARTOTEKA_SIGN_IN_RATE") or default.sign_in_rate,
            api_rate=env.get("KARTOTEKA_API_RATE") or default.api_rate,
        )


def request_limits(app: Flask | None = None) -> RequestLimits:
    """The limits of `app` (the current one by default), read once when it was created."""
    app = app or current_app
    found = app.extensions.get("kartoteka_request_limits")
    if found is None:
        settings = app.config["KARTOTEKA"]
        found = settings.extra.get("request_limits") or RequestLimits.from_env(os.environ)
        app.extensions["kartoteka_request_limits"] = found
    return found  # type: ignore[no-any-return]


def _address() -> str:
    return "address:" + attempt_address(request.remote_addr)


def _token_or_address() -> str:
    """The bearer token's digest (never the token itself), or the client address without one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return "token:" + hashlib.sha256(token.strip().encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return _address()


def _remember_reset(limit: RequestLimit) -> None:
    g.rate_limit_reset = limit.reset_at


def init_rate_limits(app: Flask) -> Limiter:
    """A limiter for this app (Redis or memory), on POST /login and the API blueprint; call after both exist."""
    from kartoteka.api import api

    limits = request_limits(app)
    storage = limits.redis_url or "memory://"
    limiter = Limiter(_address, app=app, storage_uri=storage, strategy="moving-window",
                      key_prefix=limits.key_prefix, on_breach=_remember_reset,
                      # Redis down must not take the sign-in page and the API with it: count in memory meanwhile.
                      in_memory_fallback_enabled=limits.redis_url is not None)
    endpoint = "auth.login"
    app.view_functions[endpoint] = limiter.limit(
        limits.sign_in_rate, methods=["POST"], scope="sign-in",
        error_message=Message("rate.sign_in", "Too many sign-in requests from your address. Try again in a minute."),
    )(app.view_functions[endpoint])
    limiter.limit(limits.api_rate, key_func=_token_or_address, scope="api",
                  error_message=Message("rate.api", "Too many requests with this token; slow down."))(api)
    # Made-up tokens each have a counter of their own above: refused authentications count per address too,
    # as failed sign-ins do (only 401s are counted: good requests never use this up; once it is used up, the
    # address waits out the minute, good tokens included, as an address does after failed sign-ins).
    limiter.limit(limits.sign_in_rate, key_func=_address, scope="api-refused",
                  deduct_when=lambda response: response.status_code == 401,
                  error_message=Message("rate.unknown_tokens", "Too many requests with unknown tokens from your "
                                        "address. Try again in a minute."))(api)
    app.extensions["kartoteka_limiter"] = limiter
    app.register_error_handler(RateLimitExceeded, _too_many)
    return limiter


def _too_many(error: RateLimitExceeded) -> Response:
    """429 with Retry-After, as a page in the user's language or problem+json (through the app's error handler)."""
    from kartoteka.web_errors import error_page, problem

    reset = getattr(g, "rate_limit_reset", None)
    seconds = max(1, math.ceil(reset - time.time())) if reset is not None else 60  # reset: whole seconds
    detail = error.description or Message("rate.exceeded", "Too many requests.")
    title = N_("Too many requests")
    response = problem(429, title, detail) if request.path.startswith("/api/") else error_page(429, title, detail)
    response.headers["Retry-After"] = str(seconds)
    return response


def limiter_of(app: Flask) -> Any:
    """The app's Flask-Limiter (tests reset it)."""
    return app.extensions["kartoteka_limiter"]
