"""Users and API tokens: creating them, and turning a bearer token back into a Principal."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from werkzeug.security import check_password_hash, generate_password_hash

from kartoteka.errors import BadRequest, Conflict, NotFound
from kartoteka.messages import Message
from kartoteka.records.model import Principal
from kartoteka.storage.reading import reader
from kartoteka.storage.tables import api_tokens, sign_in_attempts, user_sessions, users
from kartoteka.storage.times import utc

TOKEN_PREFIX = "kt_"  # noqa: S105 (a public marker of our tokens, not a secret)
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,149}$")
MIN_PASSWORD = 8
# Compared against when the user does not exist, so both cases take the same time.
_DUMMY_HASH = generate_password_hash("not a password of anybody")


def _principal(row: sa.Row) -> Principal:  # type: ignore[type-arg]
    return Principal(row.id, row.username, frozenset(row.roles or ()), row.department, row.language)


def create_user(engine: sa.Engine, username: str, roles: Iterable[str], now: datetime, *,
                password: str | None = None, display_name: str | None = None, department: str | None = None,
                language: str = "en", email: str | None = None, known_roles: Iterable[str] | None = None) -> Principal:
    """Add a user; BadRequest for a bad name, role or password, Conflict if the name is taken."""
    if not USERNAME.fullmatch(username):
        raise BadRequest(Message("user.invalid_name", "'{name}' is not a valid user name (letters, digits, . _ @ -).",
                                 name=username))
    roles = sorted(set(roles))
    if known_roles is not None:
        unknown = sorted(set(roles) - set(known_roles))
        if unknown:
            raise BadRequest(Message("user.unknown_roles", "Unknown role(s): {roles}; known: {known}.", roles=unknown,
                                     known=sorted(known_roles)))
    if password is not None and len(password) < MIN_PASSWORD:
        raise BadRequest(_password_too_short())
    with engine.begin() as conn:
        taken = conn.execute(sa.select(users.c.id).where(users.c.username == username)).scalar()
        if taken is not None:
            raise Conflict(Message("user.name_taken", "There is already a user named '{name}'.", name=username))
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
        raise NotFound(Message("user.inactive_or_unknown", "There is no active user {user}.", user=username or user_id))
    return _principal(row)


def _password_too_short() -> Message:
    return Message("user.password_too_short", "The password must have at least {count} characters.",
                   count=MIN_PASSWORD)


def _no_user(username: str) -> Message:
    return Message("user.not_found", "There is no user {name}.", name=username)


# --- browser sessions ----------------------------------------------------------------------------
# A session ends SESSION_LIFETIME after sign-in, or SESSION_IDLE after its last request, whichever is first;
# its last_seen_at is written at most every SESSION_TOUCH, not on every request.
SESSION_LIFETIME = timedelta(hours=12)
SESSION_IDLE = timedelta(hours=2)
SESSION_TOUCH = timedelta(minutes=5)
# A user's oldest sessions end when they sign in beyond this many (nobody fills the table by signing in).
MAX_SESSIONS_PER_USER = 30
# Expired sessions and forgotten sign-in counters removed per sign-in attempt (skipping rows in use).
CLEANUP_BATCH = 100


def session_stamp(password_hash: str | None) -> str:
    """A short digest of the password hash: sessions made before a password change stop working."""
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:16]


def start_session(engine: sa.Engine, user_id: int, now: datetime, *, address: str = "", user_agent: str = "") -> str:
    """A new session for the user; returns its id for the cookie (the database keeps only its hash)."""
    session_id = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        password_hash = conn.execute(sa.select(users.c.password_hash).where(users.c.id == user_id)).scalar()
        conn.execute(sa.delete(user_sessions).where(
            user_sessions.c.user_id == user_id,
            sa.or_(user_sessions.c.expires_at <= now, user_sessions.c.last_seen_at <= now - SESSION_IDLE)))
        conn.execute(sa.insert(user_sessions).values(
            token_hash=_hash_token(session_id), user_id=user_id, password_stamp=session_stamp(password_hash),
            created_at=now, last_seen_at=now, expires_at=now + SESSION_LIFETIME,
            address=(address or "")[:64], user_agent=(user_agent or "")[:300]))
        surplus = (sa.select(user_sessions.c.id).where(user_sessions.c.user_id == user_id)
                   .order_by(user_sessions.c.created_at.desc(), user_sessions.c.id.desc())
                   .offset(MAX_SESSIONS_PER_USER))
        conn.execute(sa.delete(user_sessions).where(user_sessions.c.id.in_(surplus.scalar_subquery())))
    return session_id


def _live_session(now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(user_sessions.c.expires_at > now, user_sessions.c.last_seen_at > now - SESSION_IDLE)


# Read on every request of the UI: built once, its values bound per call.
_SESSION_USER = (
    sa.select(users, user_sessions.c.id.label("session_id"), user_sessions.c.password_stamp,
              user_sessions.c.last_seen_at)
    .join(user_sessions, user_sessions.c.user_id == users.c.id)
    .where(user_sessions.c.token_hash == sa.bindparam("token_hash"), users.c.is_active,
           user_sessions.c.expires_at > sa.bindparam("now"), user_sessions.c.last_seen_at > sa.bindparam("idle_since")))


def session_user(engine: sa.Engine, session_id: str, now: datetime) -> Principal | None:
    """The active user of a live session made with their current password, else None."""
    if not isinstance(session_id, str) or not 20 <= len(session_id) <= 100:
        return None
    with reader(engine).connect() as conn:
        row = conn.execute(_SESSION_USER, {"token_hash": _hash_token(session_id), "now": now,
                                           "idle_since": now - SESSION_IDLE}).first()
    if row is None or not hmac.compare_digest(row.password_stamp, session_stamp(row.password_hash)):
        return None
    last_seen = utc(row.last_seen_at)
    if last_seen is None or now - last_seen >= SESSION_TOUCH:
        with engine.begin() as conn:
            conn.execute(sa.update(user_sessions).where(user_sessions.c.id == row.session_id)
                         .values(last_seen_at=now))
    return _principal(row)


def end_session(engine: sa.Engine, session_id: str) -> None:
    """Sign one session out: its cookie no longer works anywhere."""
    if isinstance(session_id, str):
        with engine.begin() as conn:
            conn.execute(sa.delete(user_sessions).where(user_sessions.c.token_hash == _hash_token(session_id)))


@dataclass(frozen=True)
class SignedOut:
    """What signing a user out everywhere ended: live browser sessions, and API tokens revoked."""

    sessions: int
    tokens: int


def _revoke_tokens(conn: sa.Connection, user_id: int, now: datetime) -> int:
    return conn.execute(sa.update(api_tokens).where(api_tokens.c.user_id == user_id, api_tokens.c.revoked_at.is_(None))
                        .values(revoked_at=now)).rowcount


def end_user_sessions(engine: sa.Engine, user_id: int, now: datetime) -> SignedOut:
    """Sign the user out everywhere: end every browser session and revoke every API token.

    Returns how many of the sessions ended were still live, and how many tokens were revoked.
    """
    with engine.begin() as conn:
        live = conn.execute(sa.select(sa.func.count()).select_from(user_sessions)
                            .where(user_sessions.c.user_id == user_id, _live_session(now))).scalar_one()
        conn.execute(sa.delete(user_sessions).where(user_sessions.c.user_id == user_id))
        tokens = _revoke_tokens(conn, user_id, now)
    return SignedOut(live, tokens)


def set_password(engine: sa.Engine, username: str, password: str, now: datetime | None = None) -> SignedOut:
    """Change a user's password: end all their sessions and revoke their API tokens (what was ended is returned)."""
    if len(password) < MIN_PASSWORD:
        raise BadRequest(_password_too_short())
    now = now or datetime.now(UTC)
    user = get_user(engine, username=username)
    with engine.begin() as conn:
        conn.execute(sa.update(users).where(users.c.id == user.id)
                     .values(password_hash=generate_password_hash(password)))
        live = conn.execute(sa.select(sa.func.count()).select_from(user_sessions)
                            .where(user_sessions.c.user_id == user.id, _live_session(now))).scalar_one()
        conn.execute(sa.delete(user_sessions).where(user_sessions.c.user_id == user.id))
        tokens = _revoke_tokens(conn, user.id, now)
    return SignedOut(live, tokens)


@dataclass(frozen=True)
class ActiveChange:
    """The outcome of activating or deactivating a user."""

    username: str
    changed: bool  # False: the user already was so
    sessions: int  # live sessions ended (deactivating)
    tokens: int  # unrevoked API tokens, refused while the user is inactive


def set_active(engine: sa.Engine, username: str, active: bool, now: datetime) -> ActiveChange:
    """Activate or deactivate a user. A deactivated user cannot sign in, their sessions end and their API tokens
    are refused (not revoked: they work again if the user is activated); NotFound for no such user."""
    with engine.begin() as conn:
        row = conn.execute(sa.select(users.c.id, users.c.username, users.c.is_active)
                           .where(users.c.username == username)).first()
        if row is None:
            raise NotFound(_no_user(username))
        changed = conn.execute(sa.update(users).where(users.c.id == row.id, users.c.is_active != active)
                               .values(is_active=active)).rowcount > 0
        live = 0
        if not active:
            live = conn.execute(sa.select(sa.func.count()).select_from(user_sessions)
                                .where(user_sessions.c.user_id == row.id, _live_session(now))).scalar_one()
            conn.execute(sa.delete(user_sessions).where(user_sessions.c.user_id == row.id))
        tokens = conn.execute(sa.select(sa.func.count()).select_from(api_tokens).where(
            api_tokens.c.user_id == row.id, api_tokens.c.revoked_at.is_(None))).scalar_one()
    return ActiveChange(row.username, changed, live, tokens)


@dataclass(frozen=True)
class SessionInfo:
    """A live session as an administrator sees it (never its id)."""

    created_at: datetime
    last_seen_at: datetime
    address: str
    user_agent: str


def live_sessions(engine: sa.Engine, now: datetime) -> dict[int, list[SessionInfo]]:
    """The live sessions of every user who has any, most recently used first."""
    found: dict[int, list[SessionInfo]] = {}
    with engine.connect() as conn:
        rows = conn.execute(sa.select(user_sessions).where(_live_session(now))
                            .order_by(user_sessions.c.last_seen_at.desc(), user_sessions.c.id.desc()))
        for row in rows:
            found.setdefault(row.user_id, []).append(SessionInfo(
                utc(row.created_at), utc(row.last_seen_at), row.address, row.user_agent))  # type: ignore[arg-type]
    return found


# --- signing in: failures counted per (user name as typed, address) and per address -----------------
# After PAIR_LIMIT failures of one name from one address, that pair waits FIRST_DELAY, doubling with each
# further failure up to MAX_DELAY; an address gets the same after ADDRESS_LIMIT failures over any names.
# Attempts refused while waiting are not counted. Counters restart FORGET_AFTER after their last failure.
#
# Every attempt is first counted as *pending* on its pair and its address (in one short transaction), and
# only then is its password checked; it ends as a failure (failures + 1, maybe a wait) or a success (it
# clears its pair, and the address forgets its pending attempt and that pair's failures — the user's own
# typos — never those over other names; the address's last failure and wait stay as they were). So a
# success takes back exactly its own attempt, however many run in parallel. An attempt that would be over
# a limit if every pending attempt ahead of it failed waits (up to CONGESTION_WAIT) for them to end before
# it is let in or refused: a burst of guesses gets no more password checks than the limit, and parallel
# successes never refuse each other nor leave a wait behind.
PAIR_LIMIT = 5
ADDRESS_LIMIT = 20
FIRST_DELAY = timedelta(minutes=1)
MAX_DELAY = timedelta(minutes=15)
FORGET_AFTER = timedelta(hours=1)
ANY_NAME = ""  # the username of an address's own counter (never a valid user name)
# A pending attempt older than this was abandoned (its worker died between counting and ending it).
PENDING_STALE = timedelta(seconds=30)
# How long (real seconds) an attempt waits for pending attempts ahead of it before it is refused for a second.
CONGESTION_WAIT = 3.0
CONGESTION_POLL = 0.02


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in: the user, or None; retry_after when the attempt was refused unchecked."""

    user: Principal | None
    retry_after: datetime | None = None


def delay_after(failures: int, limit: int) -> timedelta | None:
    """How long a pair (limit PAIR_LIMIT) or an address (ADDRESS_LIMIT) waits after its failures-th failure."""
    if failures < limit:
        return None
    return min(FIRST_DELAY * 2 ** min(failures - limit, 10), MAX_DELAY)


def attempt_name(username: str) -> str:
    """The counter key of a typed user name: the name itself, or a digest of a name no user can have."""
    if USERNAME.fullmatch(username):
        return username
    return "!" + hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def attempt_address(address: str | None) -> str:
    """The counter key of a client address: IPv4 as is, IPv6 by its /64 (one host usually holds a whole /64)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return "?"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def sign_in(engine: sa.Engine, username: str, password: str, now: datetime, address: str | None = None) -> SignIn:
    """Check a password, unless this name from this address (or this address) must wait first.

    Existing and unknown names take the same path: the attempt is counted as pending before the password is
    checked (so parallel guesses cannot slip past the limit), one password hash is always checked (a dummy
    one for unknown names and users without a password), and the attempt then ends as a failure or a success.
    """
    name, where = attempt_name(username), attempt_address(address)
    _clean_up(engine, now)
    counted = _count_attempt(engine, name, where, now)
    if counted.retry_after is not None:
        return SignIn(None, retry_after=counted.retry_after)
    outcome = "abandoned"  # an error while checking counts neither way
    try:
        row = None
        if USERNAME.fullmatch(username):
            with engine.connect() as conn:
                row = conn.execute(sa.select(users).where(users.c.username == username, users.c.is_active)).first()
        password_hash = row.password_hash if row is not None and row.password_hash else None
        matches = check_password_hash(password_hash or _DUMMY_HASH, password)
        outcome = "succeeded" if row is not None and password_hash is not None and matches else "failed"
    finally:
        _end_attempt(engine, counted, outcome, now)
    if outcome != "succeeded":
        return SignIn(None)
    with engine.begin() as conn:
        conn.execute(sa.update(users).where(users.c.id == row.id).values(last_login_at=now))
    return SignIn(_principal(row))


@dataclass(frozen=True)
class _Counted:
    """An attempt counted as pending (or refused: retry_after), with the counters it was counted on."""

    retry_after: datetime | None
    name: str = ""
    address: str = ""
    pair_id: int = 0
    address_id: int = 0


_CONGESTED = _Counted(None)


def _count_attempt(engine: sa.Engine, name: str, where: str, now: datetime) -> _Counted:
    """Count an attempt as pending on its pair and address, once no pending attempt ahead of it could make it wait.

    Refused (retry_after) while the pair or the address waits, or, after CONGESTION_WAIT, for a second when
    pending attempts ahead of it still have not ended.
    """
    deadline = time.monotonic() + CONGESTION_WAIT
    while True:
        counted = _try_count(engine, name, where, now)
        if counted is not _CONGESTED:
            return counted
        if time.monotonic() >= deadline:
            return _Counted(now + timedelta(seconds=1))
        time.sleep(CONGESTION_POLL)


def _upsert(engine: sa.Engine) -> Any:
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


def _try_count(engine: sa.Engine, name: str, where: str, now: datetime) -> _Counted:
    """One try of _count_attempt in one transaction: the counted attempt, a refusal, or _CONGESTED (undone)."""
    table = sign_in_attempts
    insert = _upsert(engine)
    abandoned = sa.or_(table.c.pending_since.is_(None), table.c.pending_since < now - PENDING_STALE)
    with engine.connect() as conn, conn.begin() as transaction:
        counts = []
        for username in (name, ANY_NAME):
            statement = insert(table).values(username=username, address=where, failures=0, last_failure_at=now,
                                             pending=1, pending_since=now)
            statement = statement.on_conflict_do_update(
                index_elements=[table.c.username, table.c.address],
                set_={"failures": sa.case((table.c.last_failure_at < now - FORGET_AFTER, 0), else_=table.c.failures),
                      "pending": sa.case((abandoned, 1), else_=table.c.pending + 1),
                      "pending_since": now},
            ).returning(table.c.id, table.c.failures, table.c.pending, table.c.blocked_until)
            counts.append(conn.execute(statement).one())
        pair, address = counts
        waits = [until for until in (utc(row.blocked_until) for row in counts) if until is not None and until > now]
        if waits:
            transaction.rollback()
            return _Counted(max(waits))
        for row, limit in ((pair, PAIR_LIMIT), (address, ADDRESS_LIMIT)):
            ahead = row.pending - 1
            if ahead > 0 and delay_after(row.failures + ahead, limit) is not None:
                transaction.rollback()  # if those ahead fail, this one must wait: let them end first
                return _CONGESTED
    return _Counted(None, name, where, pair.id, address.id)


def _end_attempt(engine: sa.Engine, counted: _Counted, outcome: str, now: datetime) -> None:
    """End a pending attempt: "failed" counts it (and sets a wait at a limit); "succeeded" clears its pair and
    takes from the address its own attempt and the pair's failures; "abandoned" only takes it off pending."""
    table = sign_in_attempts
    one_less = sa.case((table.c.pending > 0, table.c.pending - 1), else_=0)
    with engine.begin() as conn:
        if outcome == "failed":
            insert = _upsert(engine)
            for username, limit in ((counted.name, PAIR_LIMIT), (ANY_NAME, ADDRESS_LIMIT)):
                statement = insert(table).values(username=username, address=counted.address, failures=1,
                                                 last_failure_at=now, pending=0)
                statement = statement.on_conflict_do_update(
                    index_elements=[table.c.username, table.c.address],
                    set_={"failures": table.c.failures + 1, "pending": one_less, "last_failure_at": now},
                ).returning(table.c.id, table.c.failures)
                row = conn.execute(statement).one()
                delay = delay_after(row.failures, limit)
                if delay is not None:
                    conn.execute(sa.update(table).where(table.c.id == row.id).values(blocked_until=now + delay))
        elif outcome == "succeeded":
            own = conn.execute(sa.delete(table).where(table.c.id == counted.pair_id)
                               .returning(table.c.failures)).scalar() or 0
            left = table.c.failures - own
            conn.execute(sa.update(table).where(table.c.id == counted.address_id)
                         .values(failures=sa.case((left > 0, left), else_=0), pending=one_less))
        else:
            conn.execute(sa.update(table).where(table.c.id.in_([counted.pair_id, counted.address_id]))
                         .values(pending=one_less))


def _clean_up(engine: sa.Engine, now: datetime) -> None:
    """Drop a batch of expired sessions and forgotten sign-in counters, skipping rows others hold."""
    stale_sessions = (sa.select(user_sessions.c.id).where(sa.not_(_live_session(now)))
                      .limit(CLEANUP_BATCH).with_for_update(skip_locked=True))
    stale_counters = (sa.select(sign_in_attempts.c.id)
                      .where(sign_in_attempts.c.last_failure_at < now - FORGET_AFTER,
                             sa.or_(sign_in_attempts.c.blocked_until.is_(None),
                                    sign_in_attempts.c.blocked_until < now),
                             sa.or_(sign_in_attempts.c.pending == 0,
                                    sign_in_attempts.c.pending_since < now - PENDING_STALE))
                      .limit(CLEANUP_BATCH).with_for_update(skip_locked=True))
    with engine.begin() as conn:
        conn.execute(sa.delete(user_sessions).where(user_sessions.c.id.in_(stale_sessions.scalar_subquery())))
        conn.execute(sa.delete(sign_in_attempts).where(sign_in_attempts.c.id.in_(stale_counters.scalar_subquery())))


def clear_sign_in_failures(engine: sa.Engine, username: str) -> int:
    """Unlock a user name: forget its failures from every address; returns how many counters went."""
    return len(forget_name_failures(engine, username))


def forget_name_failures(engine: sa.Engine, username: str) -> list[str]:
    """Forget the failures of a user name (any case) from every address; returns the counters' addresses.

    Addresses' own counters (failures over all names) stay: see clear_address_block.
    """
    with engine.begin() as conn:
        rows = conn.execute(sa.delete(sign_in_attempts).where(
            sa.func.lower(sign_in_attempts.c.username) == username.lower(),
            sign_in_attempts.c.username != ANY_NAME).returning(sign_in_attempts.c.address)).all()
    return [row.address for row in rows]


def sign_in_blocks(engine: sa.Engine, now: datetime) -> dict[str, tuple[datetime, int]]:
    """User names (lower case) that must wait from some address: (until when at the latest, from how many)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(sa.func.lower(sign_in_attempts.c.username).label("name"),
                      sa.func.max(sign_in_attempts.c.blocked_until).label("until"), sa.func.count().label("n"))
            .where(sign_in_attempts.c.blocked_until > now, sign_in_attempts.c.username != ANY_NAME)
            .group_by(sa.func.lower(sign_in_attempts.c.username)))
        return {row.name: (utc(row.until), row.n) for row in rows}  # type: ignore[misc]


@dataclass(frozen=True)
class AddressBlock:
    """An address that must wait before any name is tried from it (too many failures over all names)."""

    address: str
    failures: int
    blocked_until: datetime


def address_blocks(engine: sa.Engine, now: datetime, limit: int = 100) -> tuple[list[AddressBlock], int]:
    """Addresses waiting now, the latest to end first (at most `limit`), and how many wait in all."""
    table = sign_in_attempts
    waiting = sa.and_(table.c.username == ANY_NAME, table.c.blocked_until > now)
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(table).where(waiting)).scalar_one()
        rows = conn.execute(sa.select(table.c.address, table.c.failures, table.c.blocked_until).where(waiting)
                            .order_by(table.c.blocked_until.desc(), table.c.address).limit(limit)).all()
    return [AddressBlock(row.address, row.failures, utc(row.blocked_until)) for row in rows], total  # type: ignore[arg-type]


def clear_address_block(engine: sa.Engine, address: str) -> int | None:
    """Forget an address's failures over all names (its wait ends); how many there were, None if it had none.

    Counters of single names from that address stay (unlock those names).
    """
    with engine.begin() as conn:
        row = conn.execute(sa.delete(sign_in_attempts).where(
            sign_in_attempts.c.username == ANY_NAME, sign_in_attempts.c.address == address)
            .returning(sign_in_attempts.c.failures)).first()
    return row.failures if row is not None and row.failures else None


def name_blocks_at(engine: sa.Engine, address: str, now: datetime) -> int:
    """How many users' names must still wait at an address because of their own failures there."""
    table = sign_in_attempts
    with engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count(sa.distinct(users.c.id)))
            .select_from(table.join(users, sa.func.lower(users.c.username) == sa.func.lower(table.c.username)))
            .where(table.c.address == address, table.c.username != ANY_NAME, table.c.blocked_until > now)
        ).scalar_one()


def set_language(engine: sa.Engine, user_id: int, language: str) -> None:
    """Remember the interface language a user chose."""
    with engine.begin() as conn:
        conn.execute(sa.update(users).where(users.c.id == user_id).values(language=language))


def user_names(engine: sa.Engine, ids: Iterable[int]) -> dict[int, str]:
    """Display names of users by id (for owners and assignees shown on pages)."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    with reader(engine).connect() as conn:
        rows = conn.execute(sa.select(users.c.id, users.c.display_name).where(users.c.id.in_(wanted)))
        return {row.id: row.display_name for row in rows}


_ACTIVE_USERS = (sa.select(users.c.id, users.c.display_name).where(users.c.is_active)
                 .order_by(users.c.display_name).limit(sa.bindparam("limit", type_=sa.Integer)))


def list_users(engine: sa.Engine, search: str = "", limit: int = 20) -> list[tuple[int, str]]:
    """Active users (id, display name) whose name or login contains `search`, for user pickers."""
    if not search.strip():  # every form with a user field: one statement, built once
        with reader(engine).connect() as conn:
            return [(r.id, r.display_name) for r in conn.execute(_ACTIVE_USERS, {"limit": limit})]
    query = sa.select(users.c.id, users.c.display_name).where(users.c.is_active)
    text = search.strip().lower()
    query = query.where(sa.or_(sa.func.lower(users.c.display_name).contains(text, autoescape=True),
                               sa.func.lower(users.c.username).contains(text, autoescape=True)))
    with reader(engine).connect() as conn:
        return [(r.id, r.display_name) for r in conn.execute(query.order_by(users.c.display_name).limit(limit))]


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


@dataclass(frozen=True)
class TokenInfo:
    """An API token as `kartoteka token list` shows it (never the token itself: only its first characters)."""

    id: int
    username: str
    user_active: bool
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _token_query() -> sa.Select:  # type: ignore[type-arg]
    return (sa.select(api_tokens, users.c.username, users.c.is_active.label("user_active"))
            .join(users, users.c.id == api_tokens.c.user_id))


def _token_info(row: sa.Row) -> TokenInfo:  # type: ignore[type-arg]
    return TokenInfo(row.id, row.username, row.user_active, row.name, row.prefix, utc(row.created_at),  # type: ignore[arg-type]
                     utc(row.last_used_at), utc(row.revoked_at))


def list_tokens(engine: sa.Engine, username: str | None = None, *, revoked: bool = False) -> list[TokenInfo]:
    """API tokens (of one user, or everybody's), oldest first; revoked ones only when asked."""
    query = _token_query().order_by(api_tokens.c.id)
    if username is not None:
        query = query.where(users.c.username == username)
    if not revoked:
        query = query.where(api_tokens.c.revoked_at.is_(None))
    with engine.connect() as conn:
        return [_token_info(row) for row in conn.execute(query)]


def revoke_token(engine: sa.Engine, token_id: int, now: datetime) -> tuple[TokenInfo, bool]:
    """Revoke one token by its id: (the token as it is now, whether this call revoked it); NotFound if none."""
    with engine.begin() as conn:
        revoked = conn.execute(sa.update(api_tokens).where(api_tokens.c.id == token_id,
                                                           api_tokens.c.revoked_at.is_(None))
                               .values(revoked_at=now)).rowcount > 0
        row = conn.execute(_token_query().where(api_tokens.c.id == token_id)).first()
    if row is None:
        raise NotFound(Message("token.not_found", "There is no API token {id}.", id=token_id))
    return _token_info(row), revoked


def revoke_user_tokens(engine: sa.Engine, username: str, now: datetime) -> int:
    """Revoke every token of a user (active or not); how many were revoked. NotFound for no such user."""
    with engine.begin() as conn:
        user_id = conn.execute(sa.select(users.c.id).where(users.c.username == username)).scalar()
        if user_id is None:
            raise NotFound(_no_user(username))
        return _revoke_tokens(conn, user_id, now)


# A token's last_used_at is written at most this often, so reading through the API costs no write.
TOKEN_TOUCH = timedelta(minutes=1)


def user_for_token(engine: sa.Engine, token: str, now: datetime) -> Principal | None:
    """The active user owning an unrevoked token, else None.

    Reading is one SELECT; `last_used_at` is written only when it is a minute old or more, by a conditional
    UPDATE, so of many parallel requests with one token at most one writes (and reads never queue on the row).
    """
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(users, api_tokens.c.id.label("token_id"), api_tokens.c.last_used_at.label("token_used_at"))
            .join(api_tokens, api_tokens.c.user_id == users.c.id)
            .where(api_tokens.c.token_hash == _hash_token(token), api_tokens.c.revoked_at.is_(None),
                   users.c.is_active)
        ).first()
    if row is None:
        return None
    used = utc(row.token_used_at)
    if used is None or now - used >= TOKEN_TOUCH:
        with engine.begin() as conn:
            conn.execute(sa.update(api_tokens).where(
                api_tokens.c.id == row.token_id,
                sa.or_(api_tokens.c.last_used_at.is_(None), api_tokens.c.last_used_at <= now - TOKEN_TOUCH),
            ).values(last_used_at=now))
    return replace(_principal(row), token_id=row.token_id)


def ensure_user(engine: sa.Engine, username: str, roles: Iterable[str], now: datetime, **kwargs: object) -> Principal:
    """The existing user of that name, or a new one (for idempotent demo setup)."""
    try:
        return get_user(engine, username=username)
    except NotFound:
        return create_user(engine, username, roles, now, **kwargs)  # type: ignore[arg-type]


def new_secret() -> str:
    """A random secret, for passwords printed by the demo."""
    return secrets.token_urlsafe(12)
