"""Signing in and out with a password; the session cookie, CSRF tokens and sign-in rate limits."""

from __future__ import annotations

import hmac
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from kartoteka.errors import CsrfError
from kartoteka.extensions import platform
from kartoteka.users import session_user, set_language, sign_in
from kartoteka.web.i18n import LANGUAGES, pick_language, translate

auth = Blueprint("auth", __name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Sign-in attempts one client address may make per window, whatever the user names (password spraying).
ATTEMPTS_PER_ADDRESS = 20
ATTEMPT_WINDOW = 60.0


class AttemptLimiter:
    """A sliding window of sign-in attempts per client address, kept in this process."""

    def __init__(self, limit: int = ATTEMPTS_PER_ADDRESS, window: float = ATTEMPT_WINDOW,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.monotonic = limit, window, monotonic
        self.attempts: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, address: str) -> bool:
        """Count an attempt from `address`; False once it has used up its window."""
        now = self.monotonic()
        seen = self.attempts[address]
        while seen and now - seen[0] > self.window:
            seen.popleft()
        if len(seen) >= self.limit:
            return False
        seen.append(now)
        return True


def init_auth(app: Flask) -> None:
    """Session cookie settings, the per-request user, CSRF checks and the sign-in limiter."""
    settings = app.config["KARTOTEKA"]
    app.config.update(
        SESSION_COOKIE_NAME="kartoteka_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=bool(settings.extra.get("secure_cookies", False)),
        PERMANENT_SESSION_LIFETIME=12 * 3600,
    )
    app.extensions["kartoteka_login_limiter"] = AttemptLimiter()
    app.before_request(load_user)
    app.before_request(check_csrf)
    app.jinja_env.globals.update(csrf_token=csrf_token, languages=LANGUAGES)
    app.register_blueprint(auth)


def load_user() -> None:
    """Put the signed-in user (or None) and their language on `g`."""
    g.user = None
    user_id, stamp = session.get("uid"), session.get("stamp")
    if isinstance(user_id, int) and isinstance(stamp, str):
        g.user = session_user(platform.state.engine, user_id, stamp)
        if g.user is None:
            session.clear()
    g.language = g.user.language if g.user is not None else pick_language(session.get("language"),
                                                                           request.accept_languages)


def t(message: str, **values: Any) -> str:
    """`message` in the current user's language."""
    return translate(getattr(g, "language", "en"), message, **values)


def csrf_token() -> str:
    """The session's CSRF token, made on first use; every form posts it back."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def check_csrf() -> None:
    """Refuse unsafe requests of the web UI that do not carry the token (the API uses bearer tokens)."""
    # The API authenticates every call with a bearer token; a URL that matches no route gets its 404/405.
    if request.method in SAFE_METHODS or request.path.startswith("/api/") or request.url_rule is None:
        return
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    expected = session.get("csrf")
    if not isinstance(expected, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfError


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Send anonymous visitors to /login, coming back here afterwards."""
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if g.user is None:
            flash(t("Please sign in to continue."), "info")
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)
    return wrapped


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect to another host."""
    if not target:
        return url_for("cards.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("cards.index")
    return target


@auth.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """The sign-in form; a wrong password or a locked account says so plainly."""
    if g.user is not None and request.method == "GET":
        return redirect(_safe_next(request.args.get("next")))
    error, status = None, 200
    username = request.form.get("username", "").strip()
    if request.method == "POST":
        limiter: AttemptLimiter = current_app.extensions["kartoteka_login_limiter"]
        if not limiter.allow(request.remote_addr or "?"):
            error, status = t("Too many sign-in attempts from your address; wait a minute and try again."), 429
        else:
            state = platform.state
            result = sign_in(state.engine, username, request.form.get("password", ""), state.clock.now())
            if result.user is not None:
                language = session.get("language")
                session.clear()
                session.permanent = True
                session.update(uid=result.user.id, stamp=result.stamp)
                if language in LANGUAGES and language != result.user.language:
                    set_language(state.engine, result.user.id, language)
                return redirect(_safe_next(request.form.get("next")))
            if result.locked_until is not None:
                until = result.locked_until.strftime("%Y-%m-%d %H:%M")
                error = t("Too many failed attempts: the account is locked until {until} (UTC). Try again later "
                          "or ask an administrator.", until=until)
                status = 423
            else:
                error, status = t("Wrong user name or password."), 401
    response = render_template("auth/login.html", error=error, username=username,
                               next=request.values.get("next", ""))
    return response, status


@auth.route("/logout", methods=["GET", "POST"])
def logout() -> Any:
    """POST signs out; GET shows the button (signing out by a link would be a CSRF target)."""
    if request.method == "POST":
        language = g.language
        session.clear()
        session["language"] = language
        flash(translate(language, "You have signed out."), "info")
        return redirect(url_for("auth.login"))
    if g.user is None:
        return redirect(url_for("auth.login"))
    return render_template("auth/logout.html")


@auth.post("/language")
def choose_language() -> Response:
    """Switch the interface language (remembered for the user, or in the session before sign-in)."""
    language = pick_language(request.form.get("language"))
    session["language"] = language
    if g.user is not None:
        set_language(platform.state.engine, g.user.id, language)
    return redirect(_safe_next(request.form.get("next")))
