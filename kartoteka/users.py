"""Users and API tokens: creating them, and turning a bearer token back into a Principal."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from kartoteka.errors import BadRequest, Conflict, NotFound
from kartoteka.records.model import Principal
from kartoteka.storage.tables import api_tokens, users

TOKEN_PREFIX = "kt_"  # noqa: S105 (a public marker of our tokens, not a secret)
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,149}$")
MIN_PASSWORD = 8
# After this many wrong passwords in a row the account is locked for LOCK_DURATION.
MAX_FAILED_LOGINS = 5
LOCK_DURATION = timedelta(minutes=15)
# Compared against when the user does not exist, so both cases take the same time.
_DUMMY_HASH = generate_password_hash("not a password of anybody")


def _principal(row: sa.Row) -> Principal:  # type: ignore[type-arg]
    return Principal(row.id, row.username, frozenset(row.roles or ()), row.department, row.language)


def create_user(engine: sa.Engine, username: str, roles: Iterable[str], now: datetime, *,
                password: str | None = None, display_name: str | None = None, department: str | None = None,
                language: str = "en", email: str | None = None, known_roles: Iterable[str] | None = None) -> Principal:
    """Add a user; BadRequest for a bad name, role or password, Conflict if the name is taken."""
    if not USERNAME.fullmatch(username):
        raise BadRequest(f"'{username}' is not a valid user name (letters, digits, . _ @ -).")
    roles = sorted(set(roles))
    if known_roles is not None:
        unknown = sorted(set(roles) - set(known_roles))
        if unknown:
            raise BadRequest(f"Unknown role(s): {', '.join(unknown)}; known: {', '.join(sorted(known_roles))}.")
    if password is not None and len(password) < MIN_PASSWORD:
        raise BadRequest(f"The password must have at least {MIN_PASSWORD} characters.")
    with engine.begin() as conn:
        taken = conn.execute(sa.select(users.c.id).where(users.c.username == username)).scalar()
        if taken is not None:
            raise Conflict(f"There is already a user named '{username}'.")
        user_id = conn.execute(sa.insert(users).values(
            username=username, display_name=display_name or username, email=email,
            password_hash=generate_password_hash(password) if password else None,
            roles=roles, department=department, language=language, created_at=now,
        ).returning(users.c.id)).scalar_one()
    return Principal(user_id, username, frozenset(roles), department, language)


def get_user(engine: sa.Engine, *, user_id: int | None = None, username: str | None = None) -> Principal:
    """An active user by id or name, or NotFound."""
    query = sa.select(users).where(users.c.is_active)
    query = query.where(users.c.id == user_id) if user_id is not None else query.where(users.c.username == username)
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"There is no active user {username or user_id}.")
    return _principal(row)


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in: the user, or why not (a wrong password or a lock until a time)."""

    user: Principal | None
    stamp: str = ""
    locked_until: datetime | None = None


def session_stamp(password_hash: str | None) -> str:
    """A short digest of the password hash: sessions made before a password change stop working."""
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:16]


def sign_in(engine: sa.Engine, username: str, password: str, now: datetime) -> SignIn:
    """Check a password, counting failures and locking the account after MAX_FAILED_LOGINS of them."""
    with engine.begin() as conn:
        row = conn.execute(sa.select(users).where(users.c.username == username, users.c.is_active)
                           .with_for_update()).first()
        if row is None:
            check_password_hash(_DUMMY_HASH, password)
            return SignIn(None)
        locked_until = _aware(row.locked_until)
        if locked_until is not None and locked_until > now:
            return SignIn(None, locked_until=locked_until)
        if row.password_hash and check_password_hash(row.password_hash, password):
            conn.execute(sa.update(users).where(users.c.id == row.id)
                         .values(failed_logins=0, locked_until=None, last_login_at=now))
            return SignIn(_principal(row), session_stamp(row.password_hash))
        failures = row.failed_logins + 1
        lock = now + LOCK_DURATION if failures >= MAX_FAILED_LOGINS else None
        conn.execute(sa.update(users).where(users.c.id == row.id)
                     .values(failed_logins=0 if lock else failures, locked_until=lock))
        return SignIn(None, locked_until=lock)


def session_user(engine: sa.Engine, user_id: int, stamp: str) -> Principal | None:
    """The active user of a session, if the session was made with their current password."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(users).where(users.c.id == user_id, users.c.is_active)).first()
    if row is None or session_stamp(row.password_hash) != stamp:
        return None
    return _principal(row)


def set_language(engine: sa.Engine, user_id: int, language: str) -> None:
    """Remember the interface language a user chose."""
    with engine.begin() as conn:
        conn.execute(sa.update(users).where(users.c.id == user_id).values(language=language))


def user_names(engine: sa.Engine, ids: Iterable[int]) -> dict[int, str]:
    """Display names of users by id (for owners and assignees shown on pages)."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(sa.select(users.c.id, users.c.display_name).where(users.c.id.in_(wanted)))
        return {row.id: row.display_name for row in rows}


def list_users(engine: sa.Engine, search: str = "", limit: int = 20) -> list[tuple[int, str]]:
    """Active users (id, display name) whose name or login contains `search`, for user pickers."""
    query = sa.select(users.c.id, users.c.display_name).where(users.c.is_active)
    if search.strip():
        text = search.strip().lower()
        query = query.where(sa.or_(sa.func.lower(users.c.display_name).contains(text, autoescape=True),
                                   sa.func.lower(users.c.username).contains(text, autoescape=True)))
    with engine.connect() as conn:
        return [(r.id, r.display_name) for r in conn.execute(query.order_by(users.c.display_name).limit(limit))]


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def check_password(engine: sa.Engine, username: str, password: str) -> Principal | None:
    """The user if the password matches, else None."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(users).where(users.c.username == username, users.c.is_active)).first()
    if row is None or not row.password_hash or not check_password_hash(row.password_hash, password):
        return None
    return _principal(row)


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(engine: sa.Engine, username: str, name: str, now: datetime) -> str:
    """A new API token for the user; only its hash is stored, so it is shown once."""
    user = get_user(engine, username=username)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(sa.insert(api_tokens).values(
            user_id=user.id, name=name, token_hash=_hash_token(token), prefix=token[:10], created_at=now))
    return token


def user_for_token(engine: sa.Engine, token: str, now: datetime) -> Principal | None:
    """The active user owning an unrevoked token, else None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    with engine.begin() as conn:
        row = conn.execute(
            sa.select(users, api_tokens.c.id.label("token_id"))
            .join(api_tokens, api_tokens.c.user_id == users.c.id)
            .where(api_tokens.c.token_hash == _hash_token(token), api_tokens.c.revoked_at.is_(None),
                   users.c.is_active)
        ).first()
        if row is None:
            return None
        conn.execute(sa.update(api_tokens).where(api_tokens.c.id == row.token_id).values(last_used_at=now))
    return _principal(row)


def ensure_user(engine: sa.Engine, username: str, roles: Iterable[str], now: datetime, **kwargs: object) -> Principal:
    """The existing user of that name, or a new one (for idempotent demo setup)."""
    try:
        return get_user(engine, username=username)
    except NotFound:
        return create_user(engine, username, roles, now, **kwargs)  # type: ignore[arg-type]


def new_secret() -> str:
    """A random secret, for passwords printed by the demo."""
    return secrets.token_urlsafe(12)
