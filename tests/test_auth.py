"""Sessions and sign-in: revocable server-side sessions, delays per (name, address) and per address, admin tools.

Each test here failed before sessions moved into the database and the per-account lock was replaced:
a cookie copied before /logout kept working, five wrong passwords from anyone locked any account, and the
423 answer appeared only for names that exist.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
from datetime import timedelta
from html import unescape

import pytest
import sqlalchemy as sa
from itsdangerous import URLSafeTimedSerializer
from werkzeug.datastructures import MultiDict

from kartoteka import create_app
from kartoteka.storage.database import read_engine
from kartoteka.storage.tables import sign_in_attempts, user_sessions, users
from kartoteka.users import (
    ADDRESS_LIMIT,
    MAX_SESSIONS_PER_USER,
    PAIR_LIMIT,
    attempt_address,
    delay_after,
    end_user_sessions,
    set_password,
    sign_in,
    start_session,
)
from tests.test_web import csrf_token_for

RAW = "t"  # the CSRF token a test session holds
T = csrf_token_for(RAW)  # and what its forms send
PASSWORD = "correct horse"
WRONG = "wrong horse"
ATTACKER = "10.66.0.1"
HOME = "10.0.0.5"


def raw_of(token: str) -> str:
    """The session token a form's CSRF token was made from (Flask-WTF signs the session's raw token)."""
    return URLSafeTimedSerializer("test-secret", salt="wtf-csrf-token").loads(token)


def _token(client) -> str:
    page = client.get("/login").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def _page_token(client, path: str = "/cards/") -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def attempt(client, username: str, password: str, address: str = "127.0.0.1"):
    """One sign-in through the form from `address`."""
    return client.post("/login", data={"csrf_token": _token(client), "username": username, "password": password},
                       environ_base={"REMOTE_ADDR": address})


def error_of(response) -> str:
    match = re.search(r'<p class="form-error"[^>]*>(.*?)</p>', response.get_data(as_text=True), re.S)
    return unescape(match.group(1)).strip() if match else ""


def signed_in(client) -> bool:
    return client.get("/cards/").status_code == 200


@pytest.fixture
def anna(make_user):
    return make_user("anna", ["sales"], "sales", password=PASSWORD)[0]


def _state(app):
    return app.extensions["kartoteka"]


def session_for(app, client, user) -> str:
    """A session for `user` in `client` without the password round trip; returns the session id."""
    state = _state(app)
    session_id = start_session(state.engine, user.id, state.clock.now(), address="127.0.0.1", user_agent="pytest")
    with client.session_transaction() as session:
        session.update(_user_id=session_id, csrf_token=RAW, uid=user.id)
    return session_id


# --- sessions -------------------------------------------------------------------------------------


def test_a_cookie_copied_before_sign_out_stops_working(app, anna):
    browser, thief = app.test_client(), app.test_client()
    assert attempt(browser, "anna", PASSWORD).status_code == 302
    cookie = browser.get_cookie("kartoteka_session")
    thief.set_cookie(cookie.key, cookie.value)
    assert signed_in(thief)
    assert browser.post("/logout", data={"csrf_token": _page_token(browser)}).status_code == 302
    assert not signed_in(browser)
    assert not signed_in(thief)
    with _state(app).engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(user_sessions)).scalar() == 0


def test_the_database_keeps_only_a_hash_of_the_session_id(app, client, anna):
    assert attempt(client, "anna", PASSWORD, address=HOME).status_code == 302
    with client.session_transaction() as session:
        session_id = session["_user_id"]
        assert set(session) <= {"_user_id", "_fresh", "_id", "uid", "csrf_token", "language", "_permanent",
                                "_flashes"}
    with _state(app).engine.connect() as conn:
        row = conn.execute(sa.select(user_sessions)).one()
    assert row.token_hash == hashlib.sha256(session_id.encode()).hexdigest() and session_id not in row.token_hash
    assert row.user_id == anna.id and row.address == HOME and row.user_agent.startswith("Werkzeug")
    assert row.expires_at.replace(tzinfo=None) - row.created_at.replace(tzinfo=None) == timedelta(hours=12)


def test_signing_in_starts_a_new_session(app, client, anna):
    """The session id is made at sign-in, never taken over from the visitor (no fixation)."""
    with client.session_transaction() as session:
        session["_user_id"] = "planted-by-an-attacker-0123456789"
    assert attempt(client, "anna", PASSWORD).status_code == 302
    with client.session_transaction() as session:
        assert session["_user_id"] != "planted-by-an-attacker-0123456789"


def test_sessions_end_after_twelve_hours_and_after_two_idle_hours(app, fixed_clock, anna):
    busy, idle = app.test_client(), app.test_client()
    session_for(app, busy, anna)
    session_for(app, idle, anna)
    for _ in range(6):  # busy keeps working every 110 minutes; idle does nothing
        fixed_clock.advance(minutes=110)
        assert signed_in(busy)
    assert not signed_in(idle)
    fixed_clock.advance(minutes=12 * 60 - 6 * 110 - 1)
    assert signed_in(busy)
    fixed_clock.advance(minutes=2)
    assert not signed_in(busy)


def test_a_form_posted_after_the_session_ended_asks_to_sign_in_again(app, client, fixed_clock, anna):
    session_for(app, client, anna)
    fixed_clock.advance(hours=3)
    response = client.post("/cards/lead/new", data={"csrf_token": T, "contact_name": "Иван"})
    assert response.status_code == 401 and 'action="/login"' in response.text and "Иван" in response.text
    with client.session_transaction() as session:
        assert "_user_id" not in session and session["csrf_token"] == RAW


def _hidden(page: str, name: str) -> str | None:
    match = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)">', page)
    return unescape(match.group(1)) if match else None


@pytest.fixture
def deal(service, anna):
    company = service.create("company", {"name": "Northwind Trading Ltd", "country": "gb"}, anna)
    return service.create("deal", {"name": "Old name", "company": company.id}, anna)


def _sign_out_everywhere(app, user) -> None:
    state = _state(app)
    assert end_user_sessions(state.engine, user.id, state.clock.now()).sessions >= 1


def test_a_form_sent_after_sign_out_everywhere_can_be_sent_again_after_signing_in(app, client, service, anna, deal):
    """Nothing typed is lost, nothing is saved without a session, and nothing is sent again without a click."""
    session_for(app, client, anna)
    _sign_out_everywhere(app, anna)
    typed = MultiDict([("csrf_token", T), ("version", str(deal.version)), ("name", "Новое имя <b>&\"'"),
                       ("_present", "name"), ("tags", "a"), ("tags", "b")])
    response = client.post(f"/cards/deal/{deal.id}/edit", data=typed)
    assert response.status_code == 401
    page = response.get_data(as_text=True)
    assert "Your session had ended (signed out elsewhere or idle too long), so the form you sent was not saved." \
        in unescape(page)
    carried = _hidden(page, "carried")
    assert carried and raw_of(_hidden(page, "csrf_token")) == RAW
    assert service.get("deal", deal.id, anna)["name"] == "Old name"
    # A wrong password keeps carrying the form.
    wrong = client.post("/login", data={"csrf_token": T, "username": "anna", "password": WRONG, "carried": carried})
    assert wrong.status_code == 401 and _hidden(wrong.text, "carried") == carried
    # Signing in shows the form ready to go again, with a new CSRF token; nothing is saved yet.
    signed = client.post("/login", data={"csrf_token": T, "username": "anna", "password": PASSWORD,
                                         "carried": carried})
    assert signed.status_code == 200 and signed_in(client)
    form = re.search(r'<form method="post" action="([^"]+)" id="resend-form" enctype="multipart/form-data">'
                     r'(.*?)</form>', signed.text, re.S)
    assert form.group(1) == f"/cards/deal/{deal.id}/edit"
    fields = [(name, unescape(value))
              for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(2))]
    assert fields[0][0] == "csrf_token" and raw_of(fields[0][1]) != RAW
    assert fields[1:] == [(k, v) for k, v in typed.items(multi=True) if k != "csrf_token"]
    assert f'href="/cards/deal/{deal.id}/edit">Don&#39;t send</a>' in signed.text
    assert service.get("deal", deal.id, anna)["name"] == "Old name"
    # The old token went with the old session; the button's form saves.
    assert client.post(form.group(1), data=typed).status_code == 400
    sent = client.post(form.group(1), data=MultiDict(fields))
    assert sent.status_code == 302 and service.get("deal", deal.id, anna)["name"] == "Новое имя <b>&\"'"


def test_a_form_left_open_in_another_tab_survives_signing_out_in_this_one(app, client, anna, deal):
    """Signing out keeps the visitor's CSRF token (signing in makes a new one), so the other tab's form is carried."""
    session_for(app, client, anna)
    assert client.post("/logout", data={"csrf_token": T}).status_code == 302
    response = client.post(f"/cards/deal/{deal.id}/edit", data={"csrf_token": T, "name": "Typed in tab 2"})
    assert response.status_code == 401 and "Typed in tab 2" in _hidden(response.text, "carried")
    signed = client.post("/login", data={"csrf_token": T, "username": "anna", "password": PASSWORD,
                                         "carried": _hidden(response.text, "carried")})
    assert signed.status_code == 200 and raw_of(_hidden(signed.text, "csrf_token")) != RAW


def test_a_form_sent_after_its_session_ended_still_needs_its_csrf_token(app, client, anna, deal):
    session_for(app, client, anna)
    _sign_out_everywhere(app, anna)
    response = client.post(f"/cards/deal/{deal.id}/edit", data={"csrf_token": "forged", "name": "x"})
    assert response.status_code == 400 and "carried" not in response.text


def test_files_cannot_be_carried_and_the_page_says_so(app, client, anna, deal):
    session_for(app, client, anna)
    _sign_out_everywhere(app, anna)
    response = client.post(f"/cards/deal/{deal.id}/delete", data={"csrf_token": T, "version": "1",
                                                                  "file": (io.BytesIO(b"data"), "a.txt")})
    assert response.status_code == 401
    signed = client.post("/login", data={"csrf_token": T, "username": "anna", "password": PASSWORD,
                                         "carried": _hidden(response.text, "carried")})
    assert "Files you had chosen could not be kept: add them again after sending." in signed.text
    assert 'href="/cards/">Don&#39;t send</a>' in signed.text  # the delete address has no page of its own
    assert f'action="/cards/deal/{deal.id}/delete"' in signed.text


def test_htmx_requests_after_the_session_ended_go_to_sign_in(app, client, anna):
    session_for(app, client, anna)
    _sign_out_everywhere(app, anna)
    response = client.post("/cards/lead/live", data={"csrf_token": T}, headers={"HX-Request": "true"})
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize("carried", [
    json.dumps({"path": "//evil.example/cards/deal/1/edit", "fields": []}),
    json.dumps({"path": "https://evil.example/cards/deal/1/edit", "fields": []}),
    json.dumps({"path": "/\\evil.example/", "fields": []}),
    json.dumps({"path": "/\tevil.example", "fields": []}),
    json.dumps({"path": "/login", "fields": [["username", "x"]]}),
    json.dumps({"path": "/logout", "fields": []}),
    json.dumps({"path": "/cards/", "fields": []}),  # takes no POST
    json.dumps({"path": "/cards/deal/1/edit", "fields": [["name"]]}),
    json.dumps({"path": "/cards/deal/1/edit", "fields": [["name", 5]]}),
    json.dumps({"path": "/cards/deal/1/edit", "fields": {"name": "x"}}),
    json.dumps({"path": "/cards/deal/1/edit", "fields": [["name", "x"]] * 2001}),
    '{"path": "/cards/deal/1/edit", "fields": [["name", "\\ud800"]]}',
    '{"path": "/cards/deal/1/edit", "fields": [["name", "\\u0000"]]}',
    "[" * 100_000,
    "not json",
    json.dumps(["/cards/deal/1/edit"]),
])
def test_a_crafted_carried_form_is_ignored(app, client, anna, carried):
    """Whatever comes in the carried field, signing in only ever sends the user to a page of this site."""
    signed = client.post("/login", data={"csrf_token": _token(client), "username": "anna", "password": PASSWORD,
                                         "carried": carried})
    assert signed.status_code == 302 and signed.headers["Location"] == "/cards/"


def test_last_seen_is_written_at_most_every_five_minutes(app, client, fixed_clock, anna):
    session_for(app, client, anna)
    started = fixed_clock.now()

    def last_seen():
        with _state(app).engine.connect() as conn:
            return conn.execute(sa.select(user_sessions.c.last_seen_at)).scalar_one().replace(tzinfo=None)

    fixed_clock.advance(minutes=4)
    assert signed_in(client) and last_seen() == started.replace(tzinfo=None)
    fixed_clock.advance(minutes=1)
    assert signed_in(client) and last_seen() == fixed_clock.now().replace(tzinfo=None)


def test_signing_in_again_and_again_keeps_at_most_thirty_sessions(app, fixed_clock, anna):
    state = _state(app)
    first = app.test_client()
    session_for(app, first, anna)
    for _ in range(MAX_SESSIONS_PER_USER):
        fixed_clock.advance(seconds=1)
        start_session(state.engine, anna.id, fixed_clock.now())
    with state.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(user_sessions)).scalar() == MAX_SESSIONS_PER_USER
    assert not signed_in(first)  # the oldest went


def test_a_password_change_ends_every_session(app, anna):
    first, second = app.test_client(), app.test_client()
    session_for(app, first, anna)
    session_for(app, second, anna)
    assert signed_in(first) and signed_in(second)
    set_password(_state(app).engine, "anna", "a new long password")
    assert not signed_in(first) and not signed_in(second)
    # A hash changed behind the app's back (another tool, a restore) ends sessions too.
    third = app.test_client()
    session_for(app, third, anna)
    with _state(app).engine.begin() as conn:
        conn.execute(sa.update(users).where(users.c.id == anna.id).values(password_hash="scrypt:changed"))
    assert not signed_in(third)


def test_a_deactivated_user_is_signed_out(app, client, anna):
    session_for(app, client, anna)
    with _state(app).engine.begin() as conn:
        conn.execute(sa.update(users).where(users.c.id == anna.id).values(is_active=False))
    assert not signed_in(client)


def test_an_unknown_or_forged_session_id_is_anonymous(app, client, anna):
    for forged in ("x" * 43, 12345, "", "a" * 5000):
        with client.session_transaction() as session:
            session["_user_id"] = forged
        assert not signed_in(client)


# --- signing in: delays per (name, address) and per address ------------------------------------------


def test_unknown_and_existing_names_answer_alike_at_every_step(app, anna):
    """Same status, message and Retry-After for an existing and an unknown name, wrong password or waiting."""
    steps = {}
    for name in ("anna", "ghost"):
        client = app.test_client()
        answers = []
        for _ in range(PAIR_LIMIT + 3):
            response = attempt(client, name, WRONG, address=ATTACKER)
            answers.append((response.status_code, error_of(response), response.headers.get("Retry-After")))
        steps[name] = answers
    assert steps["anna"] == steps["ghost"]
    statuses = [status for status, _, _ in steps["anna"]]
    assert statuses == [401] * PAIR_LIMIT + [429] * 3
    assert steps["anna"][-1][1] == "Too many failed sign-in attempts. Try again in 1 min."
    assert 423 not in statuses


def test_someone_elsewhere_cannot_lock_the_real_user_out(app, anna):
    attacker = app.test_client()
    for _ in range(PAIR_LIMIT * 3):
        attempt(attacker, "anna", WRONG, address=ATTACKER)
    assert attempt(attacker, "anna", PASSWORD, address=ATTACKER).status_code == 429  # the attacker waits
    user = app.test_client()
    assert attempt(user, "anna", PASSWORD, address=HOME).status_code == 302
    assert signed_in(user)


def test_delays_double_from_one_minute_up_to_fifteen(app, client, fixed_clock, anna):
    waits = []
    for _ in range(PAIR_LIMIT - 1):
        assert attempt(client, "anna", WRONG).status_code == 401
    for _ in range(6):
        assert attempt(client, "anna", WRONG).status_code == 401  # counted; the pair now waits
        refused = attempt(client, "anna", PASSWORD)  # not even the right password is checked meanwhile
        assert refused.status_code == 429
        waits.append(int(refused.headers["Retry-After"]))
        fixed_clock.advance(seconds=waits[-1] - 1)
        assert attempt(client, "anna", WRONG).status_code == 429  # still waiting, and not counted
        fixed_clock.advance(seconds=1)
    assert waits == [60, 120, 240, 480, 900, 900]
    assert [delay_after(n, PAIR_LIMIT).total_seconds() for n in range(PAIR_LIMIT, PAIR_LIMIT + 6)] == waits
    # The right password, once the wait is over, signs in and forgets the pair's failures.
    assert attempt(client, "anna", PASSWORD).status_code == 302
    with _state(app).engine.connect() as conn:
        names = conn.execute(sa.select(sign_in_attempts.c.username)).scalars().all()
    assert names == [""]  # only the address's own counter is left


def test_failures_are_forgotten_an_hour_after_the_last(app, client, fixed_clock, anna):
    for _ in range(PAIR_LIMIT - 1):
        attempt(client, "anna", WRONG)
    fixed_clock.advance(minutes=61)
    for _ in range(PAIR_LIMIT - 1):
        assert attempt(client, "anna", WRONG).status_code == 401
    assert attempt(client, "anna", WRONG).status_code == 401
    assert attempt(client, "anna", WRONG).status_code == 429


def test_an_address_failing_across_many_names_waits_and_others_do_not(app, anna):
    sprayer = app.test_client()
    statuses = [attempt(sprayer, f"name{i}", WRONG, address=ATTACKER).status_code for i in range(ADDRESS_LIMIT)]
    assert statuses == [401] * ADDRESS_LIMIT
    refused = attempt(sprayer, "anna", PASSWORD, address=ATTACKER)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"
    assert attempt(app.test_client(), "anna", PASSWORD, address=HOME).status_code == 302


def test_ipv6_addresses_are_counted_by_their_64_bit_prefix():
    assert attempt_address("2001:db8:1:2:aaaa::1") == attempt_address("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert attempt_address("::ffff:10.0.0.5") == "10.0.0.5"
    assert attempt_address(None) == attempt_address("not an address") == "?"


def test_a_success_gives_back_its_own_attempt_to_the_address(app, anna):
    client = app.test_client()
    for i in range(ADDRESS_LIMIT - 1):
        attempt(client, f"name{i}", WRONG, address=ATTACKER)
    assert attempt(client, "anna", PASSWORD, address=ATTACKER).status_code == 302
    other = app.test_client()
    assert attempt(other, "someone", WRONG, address=ATTACKER).status_code == 401  # the 20th failure
    assert attempt(other, "someone else", WRONG, address=ATTACKER).status_code == 429


def test_a_success_never_blocks_its_address(app, fixed_clock, anna, make_user):
    """An address past its limit whose wait is over: a right password signs in and leaves no wait behind."""
    make_user("boris", ["sales"], "sales", password=PASSWORD)
    sprayer = app.test_client()
    for i in range(ADDRESS_LIMIT + 1):  # the 20th failure makes the address wait 1 minute, the 21st 2 minutes
        attempt(sprayer, f"name{i}", WRONG, address=ATTACKER)
        fixed_clock.advance(minutes=2)
    assert attempt(app.test_client(), "anna", PASSWORD, address=ATTACKER).status_code == 302
    # Nothing waits now: a colleague behind the same address signs in at once.
    assert attempt(app.test_client(), "boris", PASSWORD, address=ATTACKER).status_code == 302
    with _state(app).engine.connect() as conn:
        row = conn.execute(sa.select(sign_in_attempts).where(sign_in_attempts.c.username == "")).one()
    assert row.failures == ADDRESS_LIMIT + 1  # the failures over other names are all still counted
    assert row.blocked_until is None or row.blocked_until.replace(tzinfo=None) <= fixed_clock.now().replace(tzinfo=None)
    # ...so the next failure over any name waits again, as it would have without the sign-ins.
    assert attempt(sprayer, "name99", WRONG, address=ATTACKER).status_code == 401
    assert attempt(sprayer, "name98", WRONG, address=ATTACKER).status_code == 429


def test_a_success_does_not_keep_the_address_counter_alive(app, fixed_clock, anna):
    """Failures are forgotten an hour after the last failure, however many sign-ins succeed meanwhile."""
    sprayer = app.test_client()
    for i in range(ADDRESS_LIMIT - 1):
        attempt(sprayer, f"name{i}", WRONG, address=ATTACKER)
    fixed_clock.advance(minutes=50)
    assert attempt(app.test_client(), "anna", PASSWORD, address=ATTACKER).status_code == 302
    fixed_clock.advance(minutes=11)
    assert [attempt(sprayer, f"other{i}", WRONG, address=ATTACKER).status_code for i in range(3)] == [401] * 3


def test_a_success_takes_back_its_own_names_failures_but_no_others(app, anna):
    """Mistyping one's own password before getting it right costs the address nothing; spraying other names does."""
    sprayer = app.test_client()
    for i in range(ADDRESS_LIMIT - 5):
        attempt(sprayer, f"name{i}", WRONG, address=ATTACKER)
    for _ in range(3):
        assert attempt(app.test_client(), "anna", WRONG, address=ATTACKER).status_code == 401
    assert attempt(app.test_client(), "anna", PASSWORD, address=ATTACKER).status_code == 302
    # 15 failures over other names remain: five more are answered, the next one waits.
    assert [attempt(sprayer, f"more{i}", WRONG, address=ATTACKER).status_code for i in range(6)] == [401] * 5 + [429]


def test_every_attempt_checks_one_password_hash_unless_it_must_wait(app, client, make_user, monkeypatch):
    """An unknown name and a user without a password cost the same hash check as a real one (the dummy hash)."""
    import kartoteka.users as module

    make_user("anna", ["sales"], "sales", password=PASSWORD)
    make_user("nopass", ["sales"], "sales")
    checks = []
    real = module.check_password_hash
    monkeypatch.setattr(module, "check_password_hash",
                        lambda stored, given: checks.append(stored) or real(stored, given))
    for name in ("anna", "ghost", "nopass", "x" * 500):
        checks.clear()
        assert attempt(client, name, WRONG, address=f"10.1.0.{len(name) % 250}").status_code == 401
        assert len(checks) == 1, name
    assert attempt(client, "nopass", "", address="10.2.0.1").status_code == 401  # no password is no way in
    assert attempt(client, "bad\x00name", WRONG, address="10.2.0.2").status_code in (400, 401)  # never a 500
    waiting = app.test_client()
    for _ in range(PAIR_LIMIT):
        attempt(waiting, "ghost", WRONG, address="10.3.0.1")
    checks.clear()
    assert attempt(waiting, "ghost", WRONG, address="10.3.0.1").status_code == 429
    assert checks == []


def test_parallel_guesses_cannot_slip_past_the_limit(app, engine, fixed_clock, anna, monkeypatch):
    """Each attempt is counted before its password is checked, so a burst gets no more guesses than the limit."""
    import kartoteka.users as module

    checked = []
    real = module.check_password_hash
    monkeypatch.setattr(module, "check_password_hash", lambda stored, given: checked.append(1) or real(stored, given))
    for _ in range(PAIR_LIMIT - 1):
        assert sign_in(engine, "anna", WRONG, fixed_clock.now(), ATTACKER).user is None
    checked.clear()
    results, start = [], threading.Barrier(8)

    def guess() -> None:
        start.wait()
        results.append(sign_in(engine, "anna", WRONG, fixed_clock.now(), ATTACKER))

    threads = [threading.Thread(target=guess) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(checked) == 1
    assert sorted(r.retry_after is None for r in results) == [False] * 7 + [True]


def test_counters_are_shared_by_every_process(app, anna):
    """Two app instances on one database (two workers) see the same failures."""
    settings = _state(app).settings
    other = create_app(settings, _state(app).clock)
    try:
        for _ in range(PAIR_LIMIT):
            attempt(app.test_client(), "anna", WRONG, address=ATTACKER)
        assert attempt(other.test_client(), "anna", PASSWORD, address=ATTACKER).status_code == 429
    finally:
        other.extensions["kartoteka"].engine.dispose()


# --- administration: the page and the command -----------------------------------------------------------


@pytest.fixture
def admin_client(app, make_user):
    admin = make_user("boss", ["admin"])[0]
    client = app.test_client()
    session_for(app, client, admin)
    return client


def test_admin_page_lists_sessions_and_locks_and_signs_out_everywhere(app, admin_client, anna):
    phones = [app.test_client(), app.test_client()]
    for phone in phones:
        session_for(app, phone, anna)
    for _ in range(PAIR_LIMIT):
        attempt(app.test_client(), "anna", WRONG, address=ATTACKER)
    page = admin_client.get("/admin/users")
    assert page.status_code == 200
    row = re.search(rf'<tr id="user-{anna.id}">(.*?)</tr>', page.get_data(as_text=True), re.S).group(1)
    assert re.search(r'<td data-sessions="2">\s*<details>\s*<summary>2</summary>', row)
    assert row.count("<li>127.0.0.1 · pytest · since 2026-03-02 09:30") == 2  # where and with what
    assert "Waits until" in row and "1 address" in row
    assert admin_client.post(f"/admin/users/{anna.id}/sign-out").status_code == 400  # no CSRF token
    assert all(signed_in(phone) for phone in phones)
    done = admin_client.post(f"/admin/users/{anna.id}/sign-out", data={"csrf_token": T}, follow_redirects=True)
    assert done.status_code == 200 and "anna is signed out everywhere (2 sessions ended)." in unescape(done.text)
    assert not any(signed_in(phone) for phone in phones)
    assert signed_in(admin_client)


def test_admin_unlocks_a_name(app, admin_client, anna):
    for _ in range(PAIR_LIMIT):
        attempt(app.test_client(), "anna", WRONG, address=ATTACKER)
    assert attempt(app.test_client(), "anna", PASSWORD, address=ATTACKER).status_code == 429
    assert admin_client.post(f"/admin/users/{anna.id}/unlock", data={"csrf_token": T}).status_code == 302
    assert "Not locked" in admin_client.get("/admin/users").get_data(as_text=True)
    assert attempt(app.test_client(), "anna", PASSWORD, address=ATTACKER).status_code == 302


def flashes(response) -> list[str]:
    page = response.get_data(as_text=True)
    return [unescape(m).strip() for m in re.findall(r'<p class="flash[^"]*">(.*?)</p>', page, re.S)]


def test_admin_tables_scroll_inside_their_box(app, admin_client, anna):
    """At phone width (390 px) the wide tables scroll sideways in a .table-wrap, like the card lists."""
    for i in range(ADDRESS_LIMIT):
        attempt(app.test_client(), f"name{i}", WRONG, address=ATTACKER)
    page = admin_client.get("/admin/users").get_data(as_text=True)
    assert page.count("<table") == 2
    assert len(re.findall(r'<div class="table-wrap">\s*<table', page)) == 2


def test_admin_page_shows_blocked_addresses_and_clears_one(app, admin_client, anna):
    for i in range(ADDRESS_LIMIT):
        attempt(app.test_client(), f"name{i}", WRONG, address=ATTACKER)
    assert attempt(app.test_client(), "anna", PASSWORD, address=ATTACKER).status_code == 429
    page = admin_client.get("/admin/users").get_data(as_text=True)
    row = re.search(r'<tr data-address="10.66.0.1">(.*?)</tr>', page, re.S).group(1)
    assert re.search(r"<td>20</td>\s*<td>2026-03-02 09:31:00</td>", row)
    # Unlocking anna forgets nothing of hers and says that the address still waits.
    done = admin_client.post(f"/admin/users/{anna.id}/unlock", data={"csrf_token": T}, follow_redirects=True)
    assert flashes(done) == [
        "anna had no failed sign-ins to forget.",
        "Sign-in from 10.66.0.1 still waits for every name (too many failed attempts over all names); "
        "clear the address under “Blocked addresses” to let it try again."]
    assert attempt(app.test_client(), "anna", PASSWORD, address=ATTACKER).status_code == 429
    # Clearing the address is a form with the CSRF token, and it says what it forgot.
    assert admin_client.post("/admin/addresses/unblock", data={"address": ATTACKER}).status_code == 400
    done = admin_client.post("/admin/addresses/unblock", data={"csrf_token": T, "address": ATTACKER},
                             follow_redirects=True)
    assert flashes(done) == ["10.66.0.1 is no longer blocked (20 failed attempts forgotten)."]
    assert "No address is blocked." in done.get_data(as_text=True)
    assert attempt(app.test_client(), "anna", PASSWORD, address=ATTACKER).status_code == 302
    again = admin_client.post("/admin/addresses/unblock", data={"csrf_token": T, "address": ATTACKER},
                              follow_redirects=True)
    assert flashes(again) == ["10.66.0.1 had no failed attempts to forget."]
    assert admin_client.post("/admin/addresses/unblock", data={"csrf_token": T}).status_code == 400


def test_clearing_an_address_says_which_names_still_wait_there(app, admin_client, anna):
    for _ in range(PAIR_LIMIT):
        attempt(app.test_client(), "anna", WRONG, address=ATTACKER)
    for i in range(ADDRESS_LIMIT - PAIR_LIMIT):
        attempt(app.test_client(), f"name{i}", WRONG, address=ATTACKER)
    done = admin_client.post("/admin/addresses/unblock", data={"csrf_token": T, "address": ATTACKER},
                             follow_redirects=True)
    assert flashes(done) == ["10.66.0.1 is no longer blocked (20 failed attempts forgotten).",
                             "From 10.66.0.1, 1 name still waits after its own failed attempts; unlock it above."]
    assert attempt(app.test_client(), "anna", PASSWORD, address=ATTACKER).status_code == 429
    done = admin_client.post(f"/admin/users/{anna.id}/unlock", data={"csrf_token": T}, follow_redirects=True)
    assert flashes(done) == ["Failed sign-ins of anna are forgotten (from 1 address)."]
    assert attempt(app.test_client(), "anna", PASSWORD, address=ATTACKER).status_code == 302


def test_admin_messages_count_right_and_say_when_nothing_was_done(app, admin_client, anna):
    done = admin_client.post(f"/admin/users/{anna.id}/sign-out", data={"csrf_token": T}, follow_redirects=True)
    assert flashes(done) == ["anna had no active sessions.", "1 API token of anna is revoked."]
    session_for(app, app.test_client(), anna)
    done = admin_client.post(f"/admin/users/{anna.id}/sign-out", data={"csrf_token": T}, follow_redirects=True)
    assert flashes(done) == ["anna is signed out everywhere (1 session ended)."]
    for address in (ATTACKER, HOME):
        for _ in range(PAIR_LIMIT):
            attempt(app.test_client(), "anna", WRONG, address=address)
    row = re.search(rf'<tr id="user-{anna.id}">(.*?)</tr>', admin_client.get("/admin/users").text, re.S).group(1)
    assert "Waits until 09:31 (UTC) from 2 addresses" in row
    done = admin_client.post(f"/admin/users/{anna.id}/unlock", data={"csrf_token": T}, follow_redirects=True)
    assert flashes(done) == ["Failed sign-ins of anna are forgotten (from 2 addresses)."]
    attempt(app.test_client(), "anna", WRONG, address=HOME)
    attempt(app.test_client(), "Anna", WRONG, address=HOME)  # two spellings, one address
    done = admin_client.post(f"/admin/users/{anna.id}/unlock", data={"csrf_token": T}, follow_redirects=True)
    assert flashes(done) == ["Failed sign-ins of anna are forgotten (from 1 address)."]
    for _ in range(PAIR_LIMIT):
        attempt(app.test_client(), "anna", WRONG, address=HOME)
    row = re.search(rf'<tr id="user-{anna.id}">(.*?)</tr>', admin_client.get("/admin/users").text, re.S).group(1)
    assert "Waits until 09:31 (UTC) from 1 address" in row and "address(es)" not in row


def test_admin_messages_are_in_russian_for_russian_admins(app, make_user, anna):
    admin = make_user("olga", ["admin"], language="ru")[0]
    client = app.test_client()
    session_for(app, client, admin)
    done = client.post(f"/admin/users/{anna.id}/sign-out", data={"csrf_token": T}, follow_redirects=True)
    assert flashes(done) == ["anna: активных сеансов не было.", "anna: отозвано API-токенов: 1."]
    done = client.post(f"/admin/users/{anna.id}/unlock", data={"csrf_token": T}, follow_redirects=True)
    assert flashes(done) == ["anna: неудачных попыток входа не было."]
    for i in range(ADDRESS_LIMIT):
        attempt(app.test_client(), f"name{i}", WRONG, address=ATTACKER)
    page = client.get("/admin/users").get_data(as_text=True)
    assert "Заблокированные адреса" in page and "Снять" in page
    done = client.post("/admin/addresses/unblock", data={"csrf_token": T, "address": ATTACKER},
                       follow_redirects=True)
    assert flashes(done) == ["10.66.0.1: блокировка снята (забыто неудачных попыток: 20)."]


def test_only_admins_manage_users(app, client, anna):
    assert client.get("/admin/users").status_code == 302  # anonymous: to the sign-in page
    session_for(app, client, anna)
    assert client.get("/admin/users").status_code == 403
    assert client.post(f"/admin/users/{anna.id}/sign-out", data={"csrf_token": T}).status_code == 403
    assert client.post(f"/admin/users/{anna.id}/unlock", data={"csrf_token": T}).status_code == 403
    assert signed_in(client)


def test_admin_page_answers_404_for_no_such_user(admin_client):
    for user_id in (999, 2**63, 2**70):
        assert admin_client.post(f"/admin/users/{user_id}/sign-out", data={"csrf_token": T}).status_code == 404


def test_admin_page_is_in_russian_for_russian_admins(app, make_user):
    admin = make_user("olga", ["admin"], language="ru")[0]
    client = app.test_client()
    session_for(app, client, admin)
    page = unescape(client.get("/admin/users").get_data(as_text=True))
    assert "Выйти на всех устройствах" in page and "Разблокировать" in page and "Активные сеансы" in page


def test_cli_signs_out_everywhere_and_unlocks(app, runner, anna):
    browser = app.test_client()
    session_for(app, browser, anna)
    for _ in range(PAIR_LIMIT):
        attempt(app.test_client(), "anna", WRONG, address=ATTACKER)
    result = runner.invoke("user", "signout", "anna")
    # (The command counts live sessions by the real clock; this one was made at the tests' fixed time.)
    assert result.exit_code == 0 and re.search(r"Signed 'anna' out everywhere \(\d+ sessions? ended\)\.|'anna' had "
                                               r"no active sessions\.", result.output)
    assert not signed_in(browser)
    again = runner.invoke("user", "signout", "anna")
    assert again.exit_code == 0 and "'anna' had no active sessions." in again.output
    result = runner.invoke("user", "unlock", "anna")
    assert result.exit_code == 0 and "Forgot the failed sign-ins of 'anna' (from 1 address)." in result.output
    assert "still wait" not in result.output
    assert attempt(app.test_client(), "anna", PASSWORD, address=ATTACKER).status_code == 302
    nothing = runner.invoke("user", "unlock", "anna")
    assert "'anna' had no failed sign-ins to forget." in nothing.output
    missing = runner.invoke("user", "signout", "nobody")
    assert missing.exit_code == 1 and "There is no active user nobody." in missing.stderr


def test_cli_password_change_ends_sessions(app, runner, anna):
    browser = app.test_client()
    session_for(app, browser, anna)
    result = runner.invoke("user", "password", "anna", "--password", "another long one")
    assert result.exit_code == 0, result.output
    assert not signed_in(browser)
    assert attempt(app.test_client(), "anna", "another long one").status_code == 302
    assert runner.invoke("user", "password", "anna", "--password", "short").exit_code == 1


def test_cli_lists_and_clears_blocked_addresses(app, runner, anna):
    from datetime import UTC, datetime

    engine = app.extensions["kartoteka"].engine
    for i in range(ADDRESS_LIMIT):  # by the real clock, which the command reads
        sign_in(engine, f"name{i}", WRONG, datetime.now(UTC), ATTACKER)
    assert runner.invoke("address", "list").output.startswith(f"{ATTACKER}\t{ADDRESS_LIMIT} failed attempts")
    unlock = runner.invoke("user", "unlock", "anna")  # unlocking a name does not pretend the address may try
    assert "1 address still waits for every name" in unlock.output and ATTACKER in unlock.output
    cleared = runner.invoke("address", "clear", ATTACKER)
    assert cleared.exit_code == 0
    assert f"{ATTACKER} is no longer blocked ({ADDRESS_LIMIT} failed attempts" in cleared.output
    assert runner.invoke("address", "list").output == "No address is blocked.\n"
    assert f"{ATTACKER} had no failed attempts to forget." in runner.invoke("address", "clear", ATTACKER).output
    assert sign_in(engine, "anna", PASSWORD, datetime.now(UTC), ATTACKER).user is not None


def test_a_carried_form_is_not_offered_to_another_user(app, client, make_user, anna, deal):
    """Anna's session ended with a form on screen; Boris signs in on that page: he is not offered her form."""
    make_user("boris", ["admin"], password=PASSWORD)
    session_for(app, client, anna)
    _sign_out_everywhere(app, anna)
    response = client.post(f"/cards/deal/{deal.id}/edit", data={"csrf_token": T, "name": "Anna's draft"})
    carried = _hidden(response.text, "carried")
    assert response.status_code == 401 and "Anna's draft" in carried
    signed = client.post("/login", data={"csrf_token": T, "username": "boris", "password": PASSWORD,
                                         "carried": carried}, follow_redirects=True)
    assert signed.status_code == 200 and "resend-form" not in signed.text and "Anna&#39;s draft" not in signed.text
    assert "it was not offered to you" in unescape(signed.text)
    # Anna herself, after Boris signs out, still gets her form back.
    client.post("/logout", data={"csrf_token": _hidden(signed.text, "csrf_token") or T})
    with client.session_transaction() as session:
        session.update(uid=anna.id, csrf_token=RAW)
    again = client.post("/login", data={"csrf_token": T, "username": "anna", "password": PASSWORD,
                                        "carried": carried})
    assert again.status_code == 200 and "resend-form" in again.text


def test_the_send_again_page_shows_what_the_user_changed_by_label(app, client, anna, deal):
    from tests.test_web import _form_fields

    session_for(app, client, anna)
    loaded = _form_fields(client.get(f"/cards/deal/{deal.id}/edit").get_data(as_text=True))
    _sign_out_everywhere(app, anna)
    typed = [(k, "New name" if k == "name" else v) for k, v in loaded]
    response = client.post(f"/cards/deal/{deal.id}/edit", data=MultiDict([*typed, ("csrf_token", T)]))
    signed = client.post("/login", data={"csrf_token": T, "username": "anna", "password": PASSWORD,
                                         "carried": _hidden(response.text, "carried")})
    shown = re.search(r'<dl class="resend-fields">(.*?)</dl>', signed.text, re.S).group(1)
    assert re.findall(r"<dt>([^<]*)</dt><dd>([^<]*)</dd>", shown) == [("Name", "New name")]


# --- API tokens ---------------------------------------------------------------------------------------


def _statements(engine):
    """Collect every SQL statement and commit the engine runs: (list of statements, list of commits)."""
    seen, commits = [], []
    for one in {engine, read_engine(engine)}:  # writes' engine and reads' (storage/reading.py)
        sa.event.listen(one, "before_cursor_execute", lambda *args: seen.append(args[2].lstrip().split()[0].upper()))
        sa.event.listen(one, "commit", lambda conn: commits.append(1))
    return seen, commits


def test_reading_through_the_api_writes_last_used_at_at_most_once_a_minute(app, client, fixed_clock, make_user):
    """A read is a read: only the first request of a minute stamps the token, with one conditional UPDATE."""
    from kartoteka.storage.tables import api_tokens

    _user, headers = make_user("anna", ["sales"], "sales")
    engine = _state(app).engine
    seen, commits = _statements(engine)
    assert client.get("/api/v1/records/deal", headers=headers).status_code == 200
    assert seen.count("UPDATE") == 1 and len(commits) == 1  # the first use is stamped
    for step in (0, 30, 29):  # reads 0, 30 and 59 seconds after the first: no write, no commit
        fixed_clock.advance(seconds=step)
        seen.clear(), commits.clear()
        assert client.get("/api/v1/records/deal", headers=headers).status_code == 200
        assert [s for s in seen if s in ("INSERT", "UPDATE", "DELETE")] == [] and commits == [], seen
    fixed_clock.advance(seconds=1)
    assert client.get("/api/v1/records/deal", headers=headers).status_code == 200
    assert seen.count("UPDATE") == 1 and len(commits) == 1
    with engine.connect() as conn:
        used = conn.execute(sa.select(api_tokens.c.last_used_at)).scalar_one()
    assert used.replace(tzinfo=None) == fixed_clock.now().replace(tzinfo=None)


def _api_works(client, headers) -> bool:
    return client.get("/api/v1/entities", headers=headers).status_code == 200


def test_signing_out_everywhere_revokes_the_users_api_tokens(app, admin_client, make_user):
    """"Sign out everywhere" (the admin page, the command) is for a stolen laptop: its API tokens go too."""
    anna, headers = make_user("anna", ["sales"], "sales")
    _boris, others = make_user("boris", ["sales"], "sales")
    client = app.test_client()
    assert _api_works(client, headers)
    done = admin_client.post(f"/admin/users/{anna.id}/sign-out", data={"csrf_token": T}, follow_redirects=True)
    assert flashes(done) == ["anna had no active sessions.", "1 API token of anna is revoked."]
    assert client.get("/api/v1/entities", headers=headers).status_code == 401
    assert _api_works(client, others)  # nobody else's
    again = admin_client.post(f"/admin/users/{anna.id}/sign-out", data={"csrf_token": T}, follow_redirects=True)
    assert flashes(again) == ["anna had no active sessions."]  # nothing more to revoke, and it says nothing of it


def test_a_password_change_revokes_the_users_api_tokens(app, runner, make_user):
    anna, headers = make_user("anna", ["sales"], "sales")
    client = app.test_client()
    session_for(app, client, anna)
    ended = set_password(_state(app).engine, "anna", "a new long password", _state(app).clock.now())
    assert (ended.sessions, ended.tokens) == (1, 1)
    assert not signed_in(client) and client.get("/api/v1/entities", headers=headers).status_code == 401
    _again, fresh = make_user("boris", ["sales"], "sales")
    result = runner.invoke("user", "password", "boris", "--password", "another long one")
    assert result.exit_code == 0
    assert result.output == "Password of 'boris' changed; 0 active sessions ended, 1 API token revoked.\n"
    assert client.get("/api/v1/entities", headers=fresh).status_code == 401


def test_cli_sign_out_says_it_revoked_tokens(app, runner, make_user):
    make_user("anna", ["sales"], "sales")
    result = runner.invoke("user", "signout", "anna")
    assert result.output == "'anna' had no active sessions.\nRevoked 1 API token of 'anna'.\n"
    assert runner.invoke("user", "signout", "anna").output == "'anna' had no active sessions.\n"


def test_cli_lists_and_revokes_tokens(app, runner, make_user):
    from kartoteka.users import create_token

    _anna, headers = make_user("anna", ["sales"], "sales")
    make_user("boris", ["sales"], "sales")
    engine = _state(app).engine
    second = create_token(engine, "anna", "import script", _state(app).clock.now())
    listed = runner.invoke("token", "list").output.splitlines()
    assert listed[0] == "id\tuser\tlabel\ttoken\tcreated\tlast used\tstate"
    rows = [line.split("\t") for line in listed[1:]]
    assert [(r[0], r[1], r[2], r[6]) for r in rows] == [("1", "anna", "tests", "live"), ("2", "boris", "tests", "live"),
                                                         ("3", "anna", "import script", "live")]
    assert rows[2][3] == second[:10] + "…" and second not in "\n".join(listed)  # never the token itself
    of_anna = runner.invoke("token", "list", "anna").output.splitlines()[1:]
    assert [line.split("\t")[0] for line in of_anna] == ["1", "3"]
    client = app.test_client()
    assert _api_works(client, headers)
    result = runner.invoke("token", "revoke", "1")
    assert result.exit_code == 0 and result.output.startswith("Revoked token 1 of 'anna' (tests, kt_")
    assert client.get("/api/v1/entities", headers=headers).status_code == 401
    assert _api_works(client, {"Authorization": f"Bearer {second}"})
    again = runner.invoke("token", "revoke", "1")
    assert again.exit_code == 0 and again.output.startswith("Token 1 of 'anna' was already revoked (")
    missing = runner.invoke("token", "revoke", "99")
    assert missing.exit_code == 1 and "No API token with id 99." in missing.stderr
    assert runner.invoke("token", "revoke").exit_code == 2  # says what to name
    everything = runner.invoke("token", "revoke", "--user", "anna")
    assert everything.output == "Revoked 1 API token of 'anna'.\n"
    assert runner.invoke("token", "revoke", "--user", "anna").output == "'anna' had no unrevoked API tokens.\n"
    assert client.get("/api/v1/entities", headers={"Authorization": f"Bearer {second}"}).status_code == 401
    assert runner.invoke("token", "list", "anna").output == "No unrevoked API tokens of 'anna'.\n"
    revoked = runner.invoke("token", "list", "anna", "--revoked").output.splitlines()[1:]
    assert [line.split("\t")[6].split(" ")[0] for line in revoked] == ["revoked", "revoked"]


def test_cli_deactivates_and_activates_a_user(app, runner, make_user):
    anna, headers = make_user("anna", ["sales"], "sales", password=PASSWORD)
    browser, api = app.test_client(), app.test_client()
    session_for(app, browser, anna)
    result = runner.invoke("user", "deactivate", "anna")
    assert result.exit_code == 0
    assert result.output.splitlines()[0] == "Deactivated 'anna': they can no longer sign in."
    assert "1 API token of 'anna' is refused while the user is inactive" in result.output
    assert not signed_in(browser)
    with _state(app).engine.connect() as conn:  # the session is gone, not merely refused
        assert conn.execute(sa.select(sa.func.count()).select_from(user_sessions)).scalar() == 0
    assert api.get("/api/v1/entities", headers=headers).status_code == 401
    assert attempt(app.test_client(), "anna", PASSWORD).status_code == 401
    again = runner.invoke("user", "deactivate", "anna")
    assert again.output.splitlines()[0] == "'anna' was already deactivated."
    listed = runner.invoke("token", "list", "anna").output.splitlines()[1]
    assert listed.endswith("\trefused: user inactive")
    back = runner.invoke("user", "activate", "anna")
    assert back.output == "Activated 'anna': they may sign in again.\n1 unrevoked API token of 'anna' works again.\n"
    assert _api_works(api, headers)
    assert attempt(app.test_client(), "anna", PASSWORD).status_code == 302
    assert runner.invoke("user", "activate", "anna").output == "'anna' was already active.\n"
    missing = runner.invoke("user", "deactivate", "nobody")
    assert missing.exit_code == 1 and "There is no user nobody." in missing.stderr


def _in_parallel(actions):
    """Run the callables at the same moment, each in its own thread; their results in order of finishing."""
    start, results = threading.Barrier(len(actions)), []

    def run(action) -> None:
        start.wait()
        results.append(action())

    threads = [threading.Thread(target=run, args=(action,)) for action in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _address_counter(engine, address: str = ATTACKER):
    with engine.connect() as conn:
        return conn.execute(sa.select(sign_in_attempts).where(sign_in_attempts.c.username == "",
                                                              sign_in_attempts.c.address == address)).one()


def test_parallel_sign_ins_take_back_exactly_their_own_attempts(app, engine, fixed_clock, anna):
    """Six tabs signing in at once from a sprayed address: the spray's ten failures all stay counted.

    (Each success used to take back the attempts of the others in flight as well: 6 + 15 for six at once.)
    """
    now = fixed_clock.now()
    for i in range(10):
        assert sign_in(engine, f"name{i}", WRONG, now, ATTACKER).user is None
    results = _in_parallel([lambda: sign_in(engine, "anna", PASSWORD, now, ATTACKER)] * 6)
    assert [result.user is not None for result in results] == [True] * 6
    counter = _address_counter(engine)
    assert counter.failures == 10
    assert counter.pending == 0
    # The spray goes on where it was: ten more failures, and the address waits.
    answers = [sign_in(engine, f"more{i}", WRONG, now, ATTACKER).retry_after is None for i in range(11)]
    assert answers == [True] * 10 + [False]


def test_parallel_sign_ins_near_the_address_limit_all_succeed_and_leave_no_wait(app, engine, fixed_clock, anna,
                                                                                 make_user):
    """Colleagues behind one address two failures short of its limit sign in at once: nobody is refused, no wait
    is left, and the address may still fail exactly twice before it waits."""
    make_user("boris", ["sales"], "sales", password=PASSWORD)
    now = fixed_clock.now()
    for i in range(ADDRESS_LIMIT - 2):
        sign_in(engine, f"name{i}", WRONG, now, ATTACKER)
    results = _in_parallel([lambda name=name: sign_in(engine, name, PASSWORD, now, ATTACKER)
                            for name in ("anna", "boris", "anna", "boris")])
    assert [(result.user is not None, result.retry_after) for result in results] == [(True, None)] * 4
    counter = _address_counter(engine)
    assert (counter.failures, counter.blocked_until) == (ADDRESS_LIMIT - 2, None)
    answers = [sign_in(engine, f"more{i}", WRONG, now, ATTACKER).retry_after is None for i in range(3)]
    assert answers == [True, True, False]


def test_a_guess_in_parallel_with_a_success_is_still_counted(app, engine, fixed_clock, anna):
    """An attacker's wrong guess racing the owner's sign-in from the same address counts as a failure."""
    now = fixed_clock.now()
    results = _in_parallel([lambda: sign_in(engine, "anna", PASSWORD, now, ATTACKER),
                            lambda: sign_in(engine, "ghost", WRONG, now, ATTACKER)])
    assert sorted(result.user is not None for result in results) == [False, True]
    counter = _address_counter(engine)
    assert (counter.failures, counter.pending) == (1, 0)


# --- request bodies: bounded before anything reads them ---------------------------------------------------

MIB = 1 << 20


@pytest.fixture
def form_parses(monkeypatch):
    """How many request bodies Werkzeug parsed as forms."""
    from werkzeug.formparser import FormDataParser

    calls, real = [], FormDataParser.parse
    monkeypatch.setattr(FormDataParser, "parse", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    return calls


def test_an_oversized_urlencoded_body_is_refused_by_its_length_unread(app, client, make_user, form_parses):
    """A 20 MB url-encoded post to any path used to be parsed whole (about 10 s of CPU) before anything looked."""
    body = b"username=" + b"a" * (20 * MIB)
    page = client.post("/login", data=body, content_type="application/x-www-form-urlencoded")
    assert page.status_code == 413 and page.mimetype == "text/html"
    assert "A form may have at most 1 MiB; this one has 20 MiB." in unescape(page.text)
    _user, headers = make_user("anna", ["sales"], "sales")
    api = client.post("/api/v1/records/deal", data=body, headers=headers,
                      content_type="application/x-www-form-urlencoded")
    assert api.status_code == 413 and api.mimetype == "application/problem+json"
    assert api.get_json()["detail"] == "A form may have at most 1 MiB; this one has 20 MiB."
    plain = client.post("/cards/deal/new", data=body, content_type="text/plain")
    assert plain.status_code == 413 and "A request body of this type may have at most 1 MiB" in unescape(plain.text)
    assert form_parses == []


def test_a_form_of_too_many_fields_is_refused_before_it_is_parsed(app, client, form_parses):
    """Half a million empty fields in a megabyte took most of a second to build before being refused."""
    response = client.post("/login", data=b"x&" * (MIB // 2 - 8), content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400 and "at most 2000 are accepted" in unescape(response.text)
    assert form_parses == []


def test_a_body_without_a_length_is_refused_past_the_limit(app, client):
    stream = io.BytesIO(b"username=" + b"a" * (2 * MIB))
    page = client.post("/login", input_stream=stream, content_type="application/x-www-form-urlencoded",
                       headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})
    assert page.status_code == 413 and "A form may have at most 1 MiB." in unescape(page.text)
    assert stream.tell() <= MIB + 64 * 1024  # read no further than the limit (and one buffer)
    short = client.post("/login", input_stream=io.BytesIO(b"username=x"),
                        content_type="application/x-www-form-urlencoded", headers={"Transfer-Encoding": "chunked"},
                        environ_overrides={"wsgi.input_terminated": True})
    assert short.status_code == 400  # read and parsed: it merely lacks its CSRF token


def test_the_form_limit_is_configurable(app, anna):
    from dataclasses import replace

    from kartoteka.rate_limits import RequestLimits

    settings = replace(_state(app).settings, extra={"request_limits": RequestLimits(max_form_bytes=64 * 1024)})
    small = create_app(settings, _state(app).clock)
    try:
        client = small.test_client()
        big = client.post("/login", data={"csrf_token": _token(client), "username": "x" * 70_000, "password": "x"})
        assert big.status_code == 413 and "at most 64 KiB" in unescape(big.text)
        assert attempt(client, "anna", PASSWORD).status_code == 302
    finally:
        small.extensions["kartoteka"].engine.dispose()


def test_a_post_to_a_page_needing_a_session_from_a_browser_that_never_signed_in_is_not_read(app, client,
                                                                                            form_parses):
    response = client.post("/cards/deal/new", data={"csrf_token": "whatever", "name": "x" * 500_000})
    assert response.status_code == 401 and "Please sign in to continue." in unescape(response.text)
    assert form_parses == []
    client.get("/login")  # a visitor with a CSRF token but no sign-in: still not read
    assert client.post("/cards/deal/new", data={"name": "x"}).status_code == 401 and form_parses == []


def test_an_api_request_without_a_token_is_not_read(app, client, form_parses):
    response = client.post("/api/v1/records/deal", data={"name": "x" * 500_000})
    assert response.status_code == 401 and response.mimetype == "application/problem+json"
    assert form_parses == []


def test_a_long_form_carried_through_sign_in_still_fits(app, client, anna, deal):
    """A form with a long text (multipart, as card forms are) carried through the sign-in page is sent as multipart
    again, so the url-encoded limit never cuts it."""
    session_for(app, client, anna)
    _sign_out_everywhere(app, anna)
    long_text = "Ж" * 100_000  # 600 KB once url-encoded
    response = client.post(f"/cards/deal/{deal.id}/edit", data={"csrf_token": T, "name": "x", "next_step": long_text,
                                                                "description": long_text},
                           content_type="multipart/form-data")
    assert response.status_code == 401 and 'enctype="multipart/form-data"' in response.text
    carried = _hidden(response.text, "carried")
    signed = client.post("/login", data={"csrf_token": T, "username": "anna", "password": PASSWORD,
                                         "carried": carried}, content_type="multipart/form-data")
    assert signed.status_code == 200 and 'id="resend-form" enctype="multipart/form-data"' in signed.text


# --- request-rate limits (Flask-Limiter): memory, or Redis shared by every worker ----------------------------


def _limited_app(app, **limits):
    from dataclasses import replace

    from kartoteka.rate_limits import RequestLimits

    settings = replace(_state(app).settings, extra={"request_limits": RequestLimits(**limits)})
    return create_app(settings, _state(app).clock)


def test_sign_in_requests_are_limited_per_address(app, anna):
    limited = _limited_app(app, sign_in_rate="3 per minute")
    try:
        statuses = [attempt(limited.test_client(), "ghost", WRONG, address=ATTACKER).status_code for _ in range(3)]
        refused = attempt(limited.test_client(), "anna", PASSWORD, address=ATTACKER)
        assert statuses == [401] * 3 and refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 61 and refused.mimetype == "text/html"
        assert "Too many sign-in requests from your address." in unescape(refused.text)
        russian = limited.test_client()
        russian.get("/login", headers={"Accept-Language": "ru"})
        page = russian.post("/login", data={"csrf_token": _token(russian), "username": "anna", "password": PASSWORD},
                            headers={"Accept-Language": "ru"}, environ_base={"REMOTE_ADDR": ATTACKER})
        assert page.status_code == 429
        assert "Слишком много попыток входа с вашего адреса. Попробуйте через минуту." in unescape(page.text)
        assert limited.test_client().get("/login").status_code == 200  # showing the page is not limited
        assert attempt(limited.test_client(), "anna", PASSWORD, address=HOME).status_code == 302  # nor others
    finally:
        limited.extensions["kartoteka"].engine.dispose()


def test_api_requests_are_limited_per_token(app, make_user):
    _anna, headers = make_user("anna", ["sales"], "sales")
    _boris, others = make_user("boris", ["sales"], "sales")
    limited = _limited_app(app, api_rate="4 per minute")
    try:
        client = limited.test_client()
        assert [client.get("/api/v1/entities", headers=headers).status_code for _ in range(4)] == [200] * 4
        refused = client.get("/api/v1/entities", headers=headers)
        assert refused.status_code == 429 and refused.mimetype == "application/problem+json"
        assert refused.get_json()["title"] == "Too many requests" and 1 <= int(refused.headers["Retry-After"]) <= 61
        assert client.get("/api/v1/entities", headers=others).status_code == 200
    finally:
        limited.extensions["kartoteka"].engine.dispose()


def test_made_up_api_tokens_are_limited_per_address(app, make_user):
    """Each random token had a counter of its own: the address's refused requests count, as failed sign-ins do."""
    _anna, headers = make_user("anna", ["sales"], "sales")
    limited = _limited_app(app, sign_in_rate="3 per minute")
    try:
        client = limited.test_client()
        assert [client.get("/api/v1/entities", headers=headers).status_code for _ in range(5)] == [200] * 5
        guesses = [client.get("/api/v1/entities", headers={"Authorization": f"Bearer kt_guess{n}"}).status_code
                   for n in range(4)]
        assert guesses == [401, 401, 401, 429]  # good requests before them did not count
    finally:
        limited.extensions["kartoteka"].engine.dispose()


def _redis_url() -> str | None:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return "redis://127.0.0.1:6379/0"
    except OSError:
        return None


def test_rate_limits_are_shared_by_every_worker_through_redis(app, make_user):
    """Two app instances (two gunicorn workers, or two servers) with KARTOTEKA_REDIS_URL count together."""
    import uuid

    url = _redis_url()
    if url is None:
        pytest.skip("Redis is not reachable at 127.0.0.1:6379")
    _anna, headers = make_user("anna", ["sales"], "sales")
    prefix = f"kartoteka-test-{uuid.uuid4().hex}"
    workers = [_limited_app(app, redis_url=url, api_rate="3 per minute", key_prefix=prefix) for _ in range(2)]
    try:
        first, second = (worker.test_client() for worker in workers)
        answers = [client.get("/api/v1/entities", headers=headers).status_code
                   for client in (first, second, first, second)]
        assert answers == [200, 200, 200, 429]
    finally:
        import redis

        connection = redis.Redis.from_url(url)
        for key in connection.scan_iter(f"{prefix}*"):
            connection.delete(key)
        connection.close()
        for worker in workers:
            worker.extensions["kartoteka"].engine.dispose()
