"""Signing in and out with a password; server-side sessions, CSRF tokens, sign-in delays, user administration.

The session user is Flask-Login's: the signed cookie holds, as Flask-Login's user id, the random id of a row
in `user_sessions` (its "alternative token" pattern), so signing out, "sign out everywhere", a password change
and deactivation end every copy of the cookie. CSRF is Flask-WTF's CSRFProtect (the hidden `csrf_token` field
or the `X-CSRF-Token` header htmx sends), checked here after the user is known and never for the API.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

import flask_login
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError, CSRFProtect, generate_csrf
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RoutingException

from kartoteka.errors import BadRequest, CsrfError, KartotekaError
from kartoteka.extensions import platform
from kartoteka.i18n import LANGUAGES, pick_language, refresh_language, t, tn, translate
from kartoteka.messages import Message
from kartoteka.metadata.fieldtypes import PICKER_TEXT_SUFFIX
from kartoteka.records.model import Principal
from kartoteka.users import (
    SESSION_LIFETIME,
    address_blocks,
    clear_address_block,
    end_session,
    end_user_sessions,
    forget_name_failures,
    get_user,
    live_sessions,
    name_blocks_at,
    session_user,
    set_language,
    sign_in,
    sign_in_blocks,
    start_session,
)

auth = Blueprint("auth", __name__)
csrf = CSRFProtect()

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf_token"  # the hidden field of every form, and the session key of the visitor's raw token
# What a visitor keeps when their session ends or they sign out: the language, the CSRF token (a form left open
# in another tab is then carried through the sign-in page rather than called expired) and whose form it was.
VISITOR_KEYS = ("language", CSRF_FIELD)


class SessionUser(UserMixin):  # type: ignore[misc]
    """The signed-in user as Flask-Login knows them: the Principal, with the session's random id as the login id."""

    def __init__(self, principal: Principal, session_id: str) -> None:
        self.principal = principal
        self.session_id = session_id

    def get_id(self) -> str:
        return self.session_id


def init_auth(app: Flask) -> None:
    """Session cookie settings, Flask-Login's session user, Flask-WTF's CSRF check, request-rate limits."""
    from kartoteka.rate_limits import init_rate_limits

    settings = app.config["KARTOTEKA"]
    app.config.update(
        SESSION_COOKIE_NAME="kartoteka_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Always Secure when configured; otherwise Secure whenever the request came over HTTPS (web/security.py).
        SESSION_COOKIE_SECURE=bool(settings.extra.get("secure_cookies", False)),
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        # Flask-WTF: checked by check_csrf (after the session user is known, never for the API); a token holds as
        # long as the visitor's session does (sessions end after 12 hours; signing in makes a new token), so a
        # form left open for hours is carried through the sign-in page rather than refused as expired.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_FIELD_NAME=CSRF_FIELD,
        WTF_CSRF_TIME_LIMIT=None,
        # Flask-Login: no remember-me cookie and no pinning to an address (sessions are rows we can end).
        SESSION_PROTECTION=None,
    )
    manager = LoginManager()
    manager.session_protection = None
    manager.user_loader(_load_session_user)
    manager.unauthorized_handler(_sign_in_first)
    manager.init_app(app, add_context_processor=False)
    csrf.init_app(app)
    app.before_request(load_user)
    app.before_request(check_csrf)
    app.jinja_env.globals.update(csrf_token=generate_csrf)
    app.register_blueprint(auth)
    init_rate_limits(app)


def _load_session_user(session_id: Any) -> SessionUser | None:
    """Flask-Login's user_loader: the active user of a live session made with their current password."""
    state = platform.state
    principal = session_user(state.engine, session_id, state.clock.now()) if isinstance(session_id, str) else None
    return SessionUser(principal, session_id) if principal is not None else None


def load_user() -> None:
    """Put the signed-in user (a Principal, or None) and their language on `g`."""
    if "_user_id" not in session and isinstance(session.get("sid"), str):
        session["_user_id"] = session.pop("sid")  # a cookie from before Flask-Login: the same session id
    user = current_user
    g.user = user.principal if user.is_authenticated else None
    if g.user is None and "_user_id" in session:
        # Signed out elsewhere or expired: the visitor stays, so a form posted now asks them to sign in
        # again (its CSRF token still holds) instead of calling the form expired.
        _keep_visitor()
    g.language = g.user.language if g.user is not None else pick_language(session.get("language"),
                                                                           request.accept_languages)


def _keep_visitor(**values: Any) -> None:
    """Empty the session but for what a visitor keeps (VISITOR_KEYS and `uid`, whose forms a post carries)."""
    kept: dict[str, Any] = {key: session[key] for key in VISITOR_KEYS if isinstance(session.get(key), str)}
    if isinstance(session.get("uid"), int):
        kept["uid"] = session["uid"]
    session.clear()
    session.update(kept, **values)


def check_csrf() -> None:
    """Flask-WTF's check of unsafe requests of the web UI (the API uses bearer tokens; no route: its 404/405)."""
    if request.endpoint is None or request.blueprint == "api":
        return
    try:
        csrf.protect()
    except CSRFError as error:
        if "referrer" in (error.description or ""):  # over HTTPS the Referer must name this host too
            raise BadRequest(Message("csrf.referer", "This form did not come from a page of this site (its Referer "
                                     "header is missing or names another host). Reload the page and send it "
                                     "again.")) from None
        raise CsrfError from None


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Flask-Login's login_required; anonymous visitors go to /login (see _sign_in_first).

    The view is marked `needs_session`, so the request guard answers an unsafe request to it from a browser
    that never signed in without reading its body.
    """
    wrapped = flask_login.login_required(view)
    wrapped.needs_session = True  # type: ignore[attr-defined]
    return wrapped  # type: ignore[no-any-return]


def _sign_in_first() -> Any:
    """Flask-Login's unauthorized handler: the sign-in page, coming back here afterwards.

    A form posted after its session ended (signed out elsewhere, idle, expired) is not lost: the sign-in
    page comes up in its place, carrying what was sent, and after signing in the user may send it again.
    """
    if request.method == "POST" and "HX-Request" not in request.headers:
        return _sign_in_to_resend()
    flash(t("Please sign in to continue."), "info")
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def _local_path(target: str | None) -> str | None:
    """`target` if it is a path on this site, else None: never an open redirect to another host."""
    if not target:
        return None
    try:
        parts = urlsplit(target)
    except ValueError:  # an unclosed or empty IPv6 bracket: "//[::1"
        return None
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(ord(c) < 32 or ord(c) == 127 for c in target):  # browsers read /\ as //
        return None
    return target


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect to another host."""
    return _local_path(target) or url_for("cards.index")


# --- a form posted after its session ended: sign in again, then send it again with one click -------------
# Nothing is stored on the server or in the cookie: what was sent travels in the sign-in page (one hidden
# field of JSON) and then in a page of hidden fields that posts to the same address with a new CSRF token,
# only when the user presses its button. Files cannot be carried; the page says so.
CARRIED_FIELD = "carried"
MAX_CARRIED_VALUES = 2000


@dataclass(frozen=True)
class Carried:
    """A form that reached a page needing a session after its session ended."""

    path: str
    fields: list[tuple[str, str]]
    had_files: bool

    def as_json(self) -> str:
        return json.dumps({"path": self.path, "fields": self.fields, "files": self.had_files}, ensure_ascii=False)


def _storable(text: Any) -> bool:
    if not isinstance(text, str) or "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate from a hand-made \ud800
        return False
    return True


def _resend_target(path: str) -> tuple[str, str | None] | None:
    """The URL to post a carried form to, rebuilt from the route it matches, and a page to go to instead.

    Only a site path matching a route that takes POST, other than signing in or out; None otherwise.
    """
    local = _local_path(path)
    if local is None:
        return None
    parts = urlsplit(local)
    adapter = current_app.create_url_adapter(request)
    if adapter is None:
        return None
    try:
        endpoint, values = adapter.match(parts.path, method="POST")
    except (HTTPException, RoutingException):
        return None
    if endpoint in ("auth.login", "auth.logout"):
        return None
    action = url_for(endpoint, **values) + (f"?{parts.query}" if parts.query else "")
    try:
        adapter.match(parts.path, method="GET")
        page = action
    except (HTTPException, RoutingException):
        page = None
    return action, page


def _carried(text: str | None) -> Carried | None:
    """The form carried through the sign-in page, or None if there is none or it is not a well-formed one."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not _storable(data.get("path")) or _resend_target(data["path"]) is None:
        return None
    fields = data.get("fields")
    if not isinstance(fields, list) or len(fields) > MAX_CARRIED_VALUES:
        return None
    if not all(isinstance(item, list) and len(item) == 2 and all(_storable(x) for x in item) for item in fields):
        return None
    return Carried(data["path"], [(name, value) for name, value in fields if name != CSRF_FIELD],
                   data.get("files") is True)


def _sign_in_to_resend() -> Any:
    """The sign-in page in place of a form posted without a live session (its CSRF token was checked)."""
    carried = Carried(request.full_path.rstrip("?"),
                      [(name, value) for name, value in request.form.items(multi=True) if name != CSRF_FIELD],
                      any(f.filename for f in request.files.values()))
    if _resend_target(carried.path) is None or len(carried.fields) > MAX_CARRIED_VALUES:
        flash(t("Please sign in to continue."), "info")
        return redirect(url_for("auth.login"))
    return _login_page(None, carried), 401


def _login_page(error: str | None, carried: Carried | None) -> str:
    return render_template("auth/login.html", error=error, username=request.form.get("username", "").strip(),
                           next="" if carried else request.values.get("next", ""),
                           carried=carried.as_json() if carried else "")


@auth.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """The sign-in form. An unknown name, a wrong password and a name that must wait answer alike for every name."""
    if g.user is not None and request.method == "GET":
        return redirect(_safe_next(request.args.get("next")))
    error, status, headers = None, 200, {}
    carried = _carried(request.form.get(CARRIED_FIELD)) if request.method == "POST" else None
    if request.method == "POST":
        state = platform.state
        now = state.clock.now()
        username = request.form.get("username", "").strip()
        result = sign_in(state.engine, username, request.form.get("password", ""), now, request.remote_addr)
        if result.user is not None:
            language, previous = session.get("language"), session.get("uid")
            session.clear()
            g.pop(CSRF_FIELD, None)  # Flask-WTF's token of this request: signing in makes a new one
            session.permanent = True
            session_id = start_session(state.engine, result.user.id, now, address=request.remote_addr or "",
                                       user_agent=request.user_agent.string)
            login_user(SessionUser(result.user, session_id))
            session.pop("_id", None)  # Flask-Login's digest of address and browser: unused (no session protection)
            session["uid"] = result.user.id
            if carried is not None and isinstance(previous, int) and previous != result.user.id:
                # Typed in someone else's session on this browser: not theirs to send, nor to read.
                carried = None
                flash(t("A form sent in another user's session was waiting on the sign-in page; it was not "
                        "offered to you."), "info")
            if language in LANGUAGES and language != result.user.language:
                set_language(state.engine, result.user.id, language)
            if carried is not None:
                g.user, g.language = result.user, result.user.language
                refresh_language()
                return _resend_page(carried)
            return redirect(_safe_next(request.form.get("next")))
        if result.retry_after is not None:
            seconds = max(1, math.ceil((result.retry_after - now).total_seconds()))
            error = t("Too many failed sign-in attempts. Try again in {minutes} min.", minutes=math.ceil(seconds / 60))
            status, headers = 429, {"Retry-After": str(seconds)}
        else:
            error, status = t("Wrong user name or password."), 401
    return _login_page(error, carried), status, headers


def _resend_page(carried: Carried) -> str:
    """After signing in: what was sent before, ready to go again when the user presses the button."""
    action, page = _resend_target(carried.path)  # type: ignore[misc]  (checked when carried was read)
    return render_template("auth/resend.html", action=action, page=page, fields=carried.fields,
                           shown=_what_changed(carried), had_files=carried.had_files)


def _what_changed(carried: Carried) -> list[tuple[str, str]]:
    """The carried values to show, by their labels: on a card form only those that differ from what it loaded."""
    sent: dict[str, list[str]] = {}
    for name, value in carried.fields:
        if not name.startswith("_") and name not in ("version", "csrf_token"):
            sent.setdefault(name, []).append(value)
    entity = None
    try:
        _endpoint, values = current_app.create_url_adapter(request).match(  # type: ignore[union-attr]
            urlsplit(carried.path).path, method="POST")
        entity = platform.state.metadata.entities.get(values.get("entity_name", ""))
    except (HTTPException, RoutingException, ValueError):
        pass
    base: Any = None
    try:
        base = json.loads(dict(carried.fields).get("_base", "null"))
    except (ValueError, RecursionError):
        base = None
    parsed = _parsed(entity, base, carried.fields)

    def unchanged(name: str, filled: list[str]) -> bool:
        if parsed is not None:  # nothing loaded and nothing sent are one: "", [] and None
            return (parsed[0].get(name) or None) == (parsed[1].get(name) or None)
        return isinstance(base[name], list) and [x for x in base[name] if x] == filled

    shown = []
    for name, texts in sent.items():
        if name.endswith(PICKER_TEXT_SUFFIX):
            continue  # a reference picker's text: shown for its field (whose own value is the hidden id)
        filled = [text for text in texts if text]
        if isinstance(base, dict) and (name not in base or unchanged(name, filled)):
            continue  # not editable here, or loaded like this: not the user's change
        label = entity.fields[name].label.get(g.language) if entity is not None and name in entity.fields else name
        readable = [text for text in sent.get(name + PICKER_TEXT_SUFFIX, texts) if text]
        shown.append((label, ", ".join(readable) or "—"))
    return shown


def _parsed(entity: Any, base: Any, fields: list[tuple[str, str]]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The card form's values as loaded (`_base`) and as sent, parsed as a save parses them (as the merge of a
    stale edit compares them): a reference shown by its title and loaded as its id is one value."""
    if entity is None or not isinstance(base, dict):
        return None
    from werkzeug.datastructures import MultiDict

    from kartoteka.web.forms import form_values
    from kartoteka.web.pickers import resolve

    try:
        texts = MultiDict([(k, v) for k, values in base.items() for v in values])
        loaded = form_values(entity, texts, MultiDict(), set(base), resolve=resolve).values
        now = form_values(entity, MultiDict(fields), MultiDict(), set(base), resolve=resolve,
                          language=g.language).values
    except (ValueError, TypeError, AttributeError, KartotekaError):
        return None  # not a snapshot this card's form made: compare the texts
    return loaded, now


@auth.route("/logout", methods=["GET", "POST"])
def logout() -> Any:
    """POST signs out (ending the session in the database); GET shows the button (a link would be a CSRF target)."""
    if request.method == "POST":
        language = g.language
        session_id = session.get("_user_id")
        if isinstance(session_id, str):
            end_session(platform.state.engine, session_id)
        logout_user()
        # A form left open in another tab then asks to sign in again (and is hers to send), not "expired".
        _keep_visitor(language=language)
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


# --- user administration (admin role) -------------------------------------------------------------


def admin_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Signed-in administrators only: others get 403, anonymous visitors the sign-in page."""
    @wraps(view)
    @login_required
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not platform.state.metadata.is_superuser(g.user.roles):
            abort(403, Message("users.admin_only", "Only administrators may manage users."))
        return view(*args, **kwargs)
    return wrapped


@auth.get("/admin/users")
@admin_required
def admin_users() -> str:
    """Every user with their live sessions and whether a sign-in from somewhere must wait; addresses that wait."""
    from kartoteka.storage.tables import users

    state = platform.state
    now = state.clock.now()
    with state.engine.connect() as conn:
        rows = conn.execute(users.select().order_by(users.c.username)).all()
    sessions, blocks = live_sessions(state.engine, now), sign_in_blocks(state.engine, now)
    people = [{"id": row.id, "username": row.username, "display_name": row.display_name,
               "roles": _role_labels(row.roles or ()), "active": row.is_active,
               "sessions": sessions.get(row.id, []), "block": blocks.get(row.username.lower())} for row in rows]
    addresses, blocked_total = address_blocks(state.engine, now)
    return render_template("admin/users.html", people=people, addresses=addresses, blocked_total=blocked_total)


def _role_labels(codes: Iterable[str]) -> str:
    """A user's roles as roles.yaml labels them in the reader's language ('Администратор, Менеджер по продажам'), in
    the order of those labels; a role the metadata does not know (any more) by its code."""
    roles = platform.state.metadata.roles
    return ", ".join(sorted((roles[code].label.get(g.language) if code in roles else code for code in codes),
                            key=str.casefold))


def _admin_target(user_id: int) -> Any:
    if user_id > 2**63 - 1:
        abort(404, Message("user.not_active", "There is no such active user."))
    try:
        return get_user(platform.state.engine, user_id=user_id)
    except KartotekaError:
        abort(404, Message("user.not_active", "There is no such active user."))


@auth.post("/admin/users/<int:user_id>/sign-out")
@admin_required
def admin_sign_out(user_id: int) -> Response:
    """End every session of the user and revoke their API tokens."""
    user = _admin_target(user_id)
    ended = end_user_sessions(platform.state.engine, user.id, platform.state.clock.now())
    if ended.sessions == 0:
        flash(t("{name} had no active sessions.", name=user.username), "info")
    else:
        flash(tn("{name} is signed out everywhere (1 session ended).",
                 "{name} is signed out everywhere ({count} sessions ended).", ended.sessions, name=user.username),
              "info")
    if ended.tokens:
        flash(tn("1 API token of {name} is revoked.", "{count} API tokens of {name} are revoked.", ended.tokens,
                 name=user.username), "info")
    return redirect(url_for("auth.admin_users"))


def _address_list(addresses: list[str], most: int = 3) -> str:
    shown = ", ".join(addresses[:most])
    return shown if len(addresses) <= most else t("{addresses} and {count} more", addresses=shown,
                                                   count=len(addresses) - most)


@auth.post("/admin/users/<int:user_id>/unlock")
@admin_required
def admin_unlock(user_id: int) -> Response:
    """Forget the failed sign-ins of the user's name from every address, and say which waits remain.

    An address waiting after failures over all names still refuses the user there: the page says so rather
    than claiming the user may sign in from everywhere (clearing an address is its own action).
    """
    user = _admin_target(user_id)
    state = platform.state
    cleared = sorted(set(forget_name_failures(state.engine, user.username)))
    if not cleared:
        flash(t("{name} had no failed sign-ins to forget.", name=user.username), "info")
    else:
        flash(tn("Failed sign-ins of {name} are forgotten (from 1 address).",
                 "Failed sign-ins of {name} are forgotten (from {count} addresses).", len(cleared),
                 name=user.username),
              "success")
    blocked, _total = address_blocks(state.engine, state.clock.now(), limit=1000)
    if blocked:
        # The addresses the user failed from first: those are the ones that probably matter to them.
        ordered = sorted((b.address for b in blocked), key=lambda address: address not in cleared)
        flash(t("Sign-in from {addresses} still waits for every name (too many failed attempts over all names); "
                "clear the address under “Blocked addresses” to let it try again.",
                addresses=_address_list(ordered)), "error")
    return redirect(url_for("auth.admin_users"))


@auth.post("/admin/addresses/unblock")
@admin_required
def admin_unblock_address() -> Response:
    """End an address's wait: forget its failures over all names (single names' waits there stay)."""
    address = request.form.get("address", "")
    if not address or len(address) > 64:
        abort(400, "Say which address to clear.")
    state = platform.state
    forgotten = clear_address_block(state.engine, address)
    if forgotten is None:
        flash(t("{address} had no failed attempts to forget.", address=address), "info")
    else:
        flash(tn("{address} is no longer blocked (1 failed attempt forgotten).",
                 "{address} is no longer blocked ({count} failed attempts forgotten).", forgotten, address=address),
              "success")
    waiting = name_blocks_at(state.engine, address, state.clock.now())
    if waiting:
        flash(tn("From {address}, 1 name still waits after its own failed attempts; unlock it above.",
                 "From {address}, {count} names still wait after their own failed attempts; unlock them above.",
                 waiting, address=address), "error")
    return redirect(url_for("auth.admin_users"))
