"""The outbox's delivery: signed webhooks to a receiver on 127.0.0.1, e-mail to an SMTP server on 127.0.0.1, backoff,
dead letters and their retry, the destination allow-list. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import email
import email.policy
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from kartoteka.config import OutboxSettings
from kartoteka.errors import Conflict, NotFound
from kartoteka.rules import outbox as ob
from kartoteka.rules.delivery import (
    AllowList,
    Deliverer,
    Outcome,
    Refused,
    SmtpServer,
    check_destination,
    is_public,
)
from kartoteka.rules.worker import OutboxJob
from kartoteka.storage.tables import outbox
from tests.outbox_support import Receiver, SmtpSink, verify_standard_webhook

SECRET = "whsec_" + base64.b64encode(b"a key of thirty-two bytes, exact").decode()


SECRET_ENV = "KT_HOOK_SECRET"


def _webhook(engine, url: str, now: datetime, *, secret_env: str | None = SECRET_ENV, data=None) -> str:
    payload = {"type": "deal.won", "timestamp": "2026-03-02T09:30:00+00:00",
               "data": data or {"id": 7, "name": "Сделка"}, "secret_env": secret_env}
    with engine.begin() as conn:
        return ob.enqueue(conn, kind="webhook", destination=url, payload=payload, now=now, entity="deal", record_id=7,
                          rule_key="deal_won")


def _email(engine, now: datetime, to=("anna@example.com", "boris@example.com")) -> str:
    payload = {"to": list(to), "subject": "Сделка выиграна", "body": "Поставка оборудования: 1 500 000 ₽"}
    with engine.begin() as conn:
        return ob.enqueue(conn, kind="email", destination=", ".join(to), payload=payload, now=now)


def _job(env_secret: str = SECRET, resolve=None, **settings) -> OutboxJob:
    options = OutboxSettings(**settings)
    extra = {"resolve": resolve} if resolve else {}
    return OutboxJob(options, deliverer=Deliverer(options, environ={"KT_HOOK_SECRET": env_secret}, **extra))


def _row(engine, delivery_id: str) -> ob.Delivery:
    return ob.get_delivery(engine, delivery_id)


def test_a_webhook_is_signed_as_standard_webhooks_says_and_delivered_once(engine, fixed_clock):
    now = fixed_clock.now()
    with Receiver() as receiver:
        delivery_id = _webhook(engine, receiver.url("/hooks/crm?x=1"), now)
        job = _job(webhook_hosts=(receiver.host,))
        assert job(engine, now) == 1
        assert job(engine, now) == 0
    [got] = receiver.received
    assert got.path == "/hooks/crm?x=1"
    assert got.headers["webhook-id"] == delivery_id
    assert got.headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert got.headers["content-type"] == "application/json"
    assert verify_standard_webhook(SECRET, got.headers, got.body)
    assert not verify_standard_webhook("whsec_" + base64.b64encode(b"another key").decode(), got.headers, got.body)
    assert got.json == {"type": "deal.won", "timestamp": "2026-03-02T09:30:00+00:00",
                        "data": {"id": 7, "name": "Сделка"}}  # the secret's variable name is not sent
    row = _row(engine, delivery_id)
    assert (row.state, row.attempts, row.last_error, row.leased_until) == ("done", 1, None, None)
    assert row.delivered_at is not None


def test_a_secret_without_the_prefix_is_used_as_its_bytes_and_none_means_unsigned(engine, fixed_clock):
    now = fixed_clock.now()
    with Receiver() as receiver:
        _webhook(engine, receiver.url(), now)
        _webhook(engine, receiver.url(), now, secret_env=None)
        _job(env_secret="plain secret", webhook_hosts=(receiver.host,))(engine, now)
    signed, unsigned = sorted(receiver.received, key=lambda r: "webhook-signature" not in r.headers)
    assert verify_standard_webhook("plain secret", signed.headers, signed.body)
    assert "webhook-signature" not in unsigned.headers and unsigned.headers["webhook-id"].startswith("msg_")


def test_a_missing_secret_is_never_sent_unsigned_and_a_broken_one_is_dead(engine, fixed_clock):
    now = fixed_clock.now()
    with Receiver() as receiver:
        waiting = _webhook(engine, receiver.url(), now)
        _job(env_secret="", webhook_hosts=(receiver.host,))(engine, now)
        broken = _webhook(engine, receiver.url(), now)
        fixed_clock.advance(days=1)
        _job(env_secret="whsec_not base64!", webhook_hosts=(receiver.host,))(engine, fixed_clock.now())
    assert receiver.received == []
    row = _row(engine, waiting)
    assert row.state == "dead" and "whsec_" in row.last_error  # its second attempt met the broken secret too
    row = _row(engine, broken)
    assert row.state == "dead" and "not base64" in row.last_error


def test_missing_secret_variable_is_retried_with_its_name(engine, fixed_clock):
    now = fixed_clock.now()
    with Receiver() as receiver:
        delivery_id = _webhook(engine, receiver.url(), now)
        _job(env_secret="", webhook_hosts=(receiver.host,))(engine, now)
    row = _row(engine, delivery_id)
    assert row.state == "pending" and "KT_HOOK_SECRET" in row.last_error and receiver.received == []


def test_a_dead_receiver_is_retried_with_backoff_then_dead_then_retried_by_an_admin(engine, fixed_clock):
    now = fixed_clock.now()
    with Receiver(status=503) as receiver:
        delivery_id = _webhook(engine, receiver.url(), now)
        job = _job(webhook_hosts=(receiver.host,), max_attempts=4, backoff=60)
        delays = []
        for attempt in range(1, 5):
            assert job(engine, fixed_clock.now()) == 1
            assert job(engine, fixed_clock.now()) == 0  # not due again before its backoff
            row = _row(engine, delivery_id)
            assert row.attempts == attempt and "HTTP 503" in row.last_error
            if attempt < 4:
                assert row.state == "pending"
                delays.append((row.next_attempt_at - fixed_clock.now()).total_seconds())
                fixed_clock.moment = row.next_attempt_at
        assert row.state == "dead"
        for attempt, delay in enumerate(delays, 1):  # 60 × 2^(n-1), of which a random half
            assert 60 * 2 ** (attempt - 1) / 2 <= delay <= 60 * 2 ** (attempt - 1) + 1
        fixed_clock.advance(days=30)
        assert job(engine, fixed_clock.now()) == 0  # dead stays dead

        retried = ob.retry(engine, delivery_id, fixed_clock.now())
        assert (retried.state, retried.attempts, retried.next_attempt_at) == ("pending", 0, fixed_clock.now())
        receiver.status = 204
        assert job(engine, fixed_clock.now()) == 1
    assert _row(engine, delivery_id).state == "done"
    assert receiver.ids() == [delivery_id] * 5  # every attempt carried the same idempotency key
    with pytest.raises(Conflict):
        ob.retry(engine, delivery_id, fixed_clock.now())
    with pytest.raises(NotFound):
        ob.retry(engine, "msg_unknown", fixed_clock.now())


def test_410_gone_is_dead_at_once_and_other_4xx_are_retried(engine, fixed_clock):
    now = fixed_clock.now()
    with Receiver(status=lambda r: 410 if r.path == "/gone" else 400) as receiver:
        gone = _webhook(engine, receiver.url("/gone"), now)
        bad = _webhook(engine, receiver.url("/bad"), now)
        _job(webhook_hosts=(receiver.host,))(engine, now)
    assert _row(engine, gone).state == "dead" and "410" in _row(engine, gone).last_error
    assert _row(engine, bad).state == "pending" and "HTTP 400" in _row(engine, bad).last_error


def test_an_unreachable_receiver_is_retried(engine, fixed_clock):
    with Receiver() as receiver:
        url, host = receiver.url(), receiver.host
    delivery_id = _webhook(engine, url, fixed_clock.now())  # nobody listens there any more
    _job(webhook_hosts=(host,), webhook_timeout=2)(engine, fixed_clock.now())
    row = _row(engine, delivery_id)
    assert row.state == "pending" and "Cannot connect" in row.last_error


# --- the allow-list ---------------------------------------------------------------------------------


def test_loopback_is_refused_unless_listed(engine, fixed_clock):
    now = fixed_clock.now()
    with Receiver() as receiver:
        refused = _webhook(engine, receiver.url(), now)
        _job()(engine, now)
        other_port = _webhook(engine, receiver.url(), now)
        _job(webhook_hosts=("127.0.0.1:1",))(engine, now)
        assert receiver.received == []
        listed = _webhook(engine, receiver.url(), now)
        _job(webhook_hosts=("127.0.0.1",))(engine, now)
        assert receiver.ids() == [listed]
    row = _row(engine, refused)
    assert row.state == "dead" and row.attempts == 1 and "non-public address (127.0.0.1)" in row.last_error
    assert "KARTOTEKA_WEBHOOK_HOSTS" in row.last_error
    row = _row(engine, other_port)
    assert row.state == "dead" and "not in KARTOTEKA_WEBHOOK_HOSTS" in row.last_error


def test_localhost_by_name_is_refused(engine, fixed_clock):
    with Receiver() as receiver:
        delivery_id = _webhook(engine, f"http://localhost:{receiver.port}/hook", fixed_clock.now())
        _job()(engine, fixed_clock.now())
    assert receiver.received == [] and _row(engine, delivery_id).state == "dead"


NON_PUBLIC = ["10.0.0.5", "172.16.3.4", "192.168.1.1", "169.254.169.254", "100.64.0.1", "127.5.5.5",
              "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "fe80::1", "fc00::7",  # noqa: S104
              "::ffff:10.0.0.1", "::ffff:127.0.0.1", "::", "192.0.2.10"]


@pytest.mark.parametrize("address", NON_PUBLIC)
def test_non_public_addresses_are_refused_for_names_that_resolve_to_them(address):
    resolve = {"hooks.example.com": [address]}.__getitem__
    assert not is_public(address)
    with pytest.raises(Refused, match="non-public"):
        check_destination("https://hooks.example.com/x", AllowList.parse(()), lambda host, port: resolve(host))


def test_every_address_of_a_name_is_checked():
    resolve = {"mixed.example.com": ["93.184.216.34", "10.1.2.3"]}
    with pytest.raises(Refused, match=r"10\.1\.2\.3"):
        check_destination("https://mixed.example.com/", AllowList.parse(()), lambda host, port: resolve[host])
    target = check_destination("https://public.example.com:8443/p?q=1", AllowList.parse(()),
                               lambda host, port: ["93.184.216.34", "2606:2800:220:1::1"])
    assert (target.https, target.host, target.port, target.path) == (True, "public.example.com", 8443, "/p?q=1")


def test_a_list_allows_only_what_it_names_unless_it_has_a_star():
    public = ["93.184.216.34"]
    listed = AllowList.parse(("hooks.example.com", "10.0.0.5:9000", "[::1]:8080"))
    with pytest.raises(Refused, match="not in KARTOTEKA_WEBHOOK_HOSTS"):
        check_destination("https://other.example.com/", listed, lambda host, port: public)
    assert check_destination("https://HOOKS.example.com./", listed, lambda host, port: ["10.9.9.9"]).addresses
    assert check_destination("http://10.0.0.5:9000/", listed, lambda host, port: [host]).port == 9000
    assert check_destination("http://[::1]:8080/", listed, lambda host, port: [host]).host == "::1"
    with pytest.raises(Refused):
        check_destination("http://10.0.0.5:9001/", listed, lambda host, port: [host])
    star = AllowList.parse(("*", "10.0.0.5"))
    assert check_destination("https://other.example.com/", star, lambda host, port: public)
    assert check_destination("http://10.0.0.5/", star, lambda host, port: [host])
    with pytest.raises(Refused):
        check_destination("http://10.0.0.6/", star, lambda host, port: [host])


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "http:///nohost",
                                 "https://user:pw@example.com/", "http://example.com:99999/"])
def test_urls_that_are_not_plain_http_are_refused(url):
    with pytest.raises(Refused):
        check_destination(url, AllowList.parse(()), lambda host, port: ["93.184.216.34"])


def test_the_connection_goes_to_the_checked_address_not_a_second_lookup(engine, fixed_clock):
    lookups = []

    def resolve(host, port):
        lookups.append(host)
        return ["127.0.0.1"] if len(lookups) == 1 else ["10.66.66.66"]  # a rebinding resolver

    with Receiver() as receiver:
        delivery_id = _webhook(engine, f"http://hooks.test:{receiver.port}/in", fixed_clock.now())
        _job(resolve=resolve, webhook_hosts=(f"hooks.test:{receiver.port}",))(engine, fixed_clock.now())
    [got] = receiver.received
    assert lookups == ["hooks.test"]
    assert got.headers["host"] == f"hooks.test:{receiver.port}" and got.headers["webhook-id"] == delivery_id


def test_bad_allow_list_entries_are_refused():
    with pytest.raises(ValueError, match="host\\[:port\\]"):
        AllowList.parse(("example.com:http",))


# --- e-mail -----------------------------------------------------------------------------------------


def test_an_email_goes_to_the_smtp_server_with_a_message_id_of_its_delivery(engine, fixed_clock):
    now = fixed_clock.now()
    delivery_id = _email(engine, now)
    with SmtpSink() as sink:
        job = _job(smtp_url=sink.url, mail_from="CRM <crm@example.org>")
        assert job(engine, now) == 1
    [envelope] = sink.messages
    assert envelope.mail_from == "crm@example.org"
    assert envelope.rcpt_tos == ["anna@example.com", "boris@example.com"]
    message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert message["Message-ID"] == f"<{delivery_id}@example.org>"
    assert message["Subject"] == "Сделка выиграна" and message["From"] == "CRM <crm@example.org>"
    assert message.get_content().strip() == "Поставка оборудования: 1 500 000 ₽"
    assert _row(engine, delivery_id).state == "done"


def test_without_an_smtp_url_email_waits_pending_with_the_reason_and_no_attempt_spent(engine, fixed_clock):
    now = fixed_clock.now()
    delivery_id = _email(engine, now)
    assert _job()(engine, now) == 0
    row = _row(engine, delivery_id)
    assert (row.state, row.attempts) == ("pending", 0) and "KARTOTEKA_SMTP_URL" in row.last_error
    with SmtpSink() as sink:
        assert _job(smtp_url=sink.url)(engine, now) == 1
    assert len(sink.messages) == 1 and _row(engine, delivery_id).state == "done"


def test_an_unreachable_smtp_server_is_retried_and_a_broken_payload_is_dead(engine, fixed_clock):
    now = fixed_clock.now()
    with SmtpSink() as sink:
        url = sink.url
    waiting = _email(engine, now)
    with engine.begin() as conn:
        broken = ob.enqueue(conn, kind="email", destination="x", payload={"to": "not a list"}, now=now)
        injected = ob.enqueue(conn, kind="email", destination="x", now=now,
                              payload={"to": ["a@example.com\r\nBcc: all@example.com"], "subject": "", "body": ""})
    _job(smtp_url=url, webhook_timeout=2)(engine, now)
    assert _row(engine, waiting).state == "pending" and "Cannot send" in _row(engine, waiting).last_error
    assert _row(engine, broken).state == "dead" and _row(engine, injected).state == "dead"


@pytest.mark.parametrize(("url", "expected"), [
    ("smtp://mail.example.com", ("mail.example.com", 25, None, None, None)),
    ("smtp://u%40x:p%3Aw@mail.example.com:2525?starttls=1", ("mail.example.com", 2525, "starttls", "u@x", "p:w")),
    ("smtp://mail.example.com?starttls=true", ("mail.example.com", 587, "starttls", None, None)),
    ("smtps://me:secret@mail.example.com", ("mail.example.com", 465, "ssl", "me", "secret")),
])
def test_smtp_urls(url, expected):
    server = SmtpServer.parse(url)
    assert (server.host, server.port, server.tls, server.user, server.password) == expected


@pytest.mark.parametrize("url", ["http://mail.example.com", "mail.example.com:25", "smtp://", "smtp://h:x"])
def test_bad_smtp_urls_are_refused_when_the_worker_starts(url):
    with pytest.raises(ValueError, match="KARTOTEKA_SMTP_URL"):
        Deliverer(OutboxSettings(smtp_url=url))


def test_outbox_settings_from_the_environment():
    settings = OutboxSettings.from_env({
        "KARTOTEKA_SMTP_URL": " smtp://127.0.0.1:8025 ", "KARTOTEKA_MAIL_FROM": "CRM <crm@example.org>",
        "KARTOTEKA_WEBHOOK_HOSTS": "hooks.example.com, 127.0.0.1:9000,,", "KARTOTEKA_WEBHOOK_TIMEOUT": "2.5",
        "KARTOTEKA_OUTBOX_MAX_ATTEMPTS": "3", "KARTOTEKA_OUTBOX_BACKOFF": "5"})
    assert settings == OutboxSettings(smtp_url="smtp://127.0.0.1:8025", mail_from="CRM <crm@example.org>",
                                      webhook_hosts=("hooks.example.com", "127.0.0.1:9000"), webhook_timeout=2.5,
                                      max_attempts=3, backoff=5.0)
    assert OutboxSettings.from_env({}) == OutboxSettings()
    for name, value in [("KARTOTEKA_WEBHOOK_TIMEOUT", "0"), ("KARTOTEKA_WEBHOOK_TIMEOUT", "nan"),
                        ("KARTOTEKA_OUTBOX_MAX_ATTEMPTS", "many"), ("KARTOTEKA_OUTBOX_BACKOFF", "-1")]:
        with pytest.raises(ValueError, match=name):
            OutboxSettings.from_env({name: value})


# --- claims -------------------------------------------------------------------------------------------


def test_a_claim_is_held_until_its_lease_expires_then_taken_again_under_the_same_id(engine, fixed_clock):
    now = fixed_clock.now()
    delivery_id = _webhook(engine, "https://hooks.example.com/", now)
    [first] = ob.claim(engine, now, lease=timedelta(minutes=5))
    assert ob.claim(engine, now + timedelta(minutes=4)) == []
    [again] = ob.claim(engine, now + timedelta(minutes=5))
    assert (first.delivery_id, again.delivery_id, first.attempts, again.attempts) == (delivery_id, delivery_id, 1, 2)
    # The first claim's result comes too late: its failure is not recorded over the second claim's.
    assert ob.record_failure(engine, first, now, "late", permanent=True, max_attempts=8, backoff=1) is None
    assert _row(engine, delivery_id).state == "pending"
    ob.release(engine, [again])
    row = _row(engine, delivery_id)
    assert (row.attempts, row.leased_until) == (1, None)
    assert len(ob.claim(engine, now)) == 1


def test_a_claim_takes_at_most_its_limit_oldest_first(engine, fixed_clock):
    now = fixed_clock.now()
    ids = [_webhook(engine, "https://hooks.example.com/", now + timedelta(seconds=n)) for n in range(10)]
    later = now + timedelta(minutes=1)
    first, second = ob.claim(engine, later, limit=3), ob.claim(engine, later, limit=3)
    assert [d.delivery_id for d in first + second] == ids[:6]
    assert len(ob.claim(engine, later, limit=30)) == 4 and ob.claim(engine, later) == []


def test_a_slow_batch_moves_its_lease_on_and_skips_what_another_worker_took_over(engine, fixed_clock, caplog):
    now = fixed_clock.now()
    ids = [_webhook(engine, "https://hooks.example.com/", now) for _ in range(4)]
    clock, sent = [0.0], []

    class Slow:
        def deliver(self, delivery, moment):
            sent.append(delivery.delivery_id)
            clock[0] += 100  # every delivery takes 100 s
            if len(sent) == 2:  # meanwhile another worker claims the last one (as if its lease had run out)
                with engine.begin() as conn:
                    conn.execute(sa.update(outbox).where(outbox.c.delivery_id == ids[3])
                                 .values(leased_until=now + timedelta(hours=1)))
            return Outcome(True, "HTTP 200")

    job = OutboxJob(OutboxSettings(webhook_timeout=10), deliverer=Slow(), timer=lambda: clock[0])
    assert job.lease == timedelta(seconds=150)  # a few attempts' worth, not the whole batch's
    assert job(engine, now) == 3
    assert sent == ids[:3] and "1 claimed deliveries were taken over" in caplog.text
    assert [_row(engine, i).state for i in ids] == ["done", "done", "done", "pending"]
    taken = _row(engine, ids[3])
    assert (taken.attempts, taken.leased_until) == (1, now + timedelta(hours=1))


def test_deliveries_whose_workers_died_every_time_are_dead(engine, fixed_clock):
    now = fixed_clock.now()
    delivery_id = _webhook(engine, "https://hooks.example.com/", now)
    for _ in range(3):
        assert len(ob.claim(engine, now, lease=timedelta(seconds=1))) == 1
        now += timedelta(seconds=2)
    assert ob.bury_abandoned(engine, now, max_attempts=3) == 1
    row = _row(engine, delivery_id)
    assert row.state == "dead" and "stopped during each of the 3 attempts" in row.last_error


def test_listing_is_newest_first_with_a_cursor(engine, fixed_clock):
    now = fixed_clock.now()
    ids = [_webhook(engine, "https://hooks.example.com/", now) for _ in range(5)]
    with engine.begin() as conn:
        conn.execute(sa.update(outbox).where(outbox.c.delivery_id.in_(ids[:3])).values(state="dead"))
    page, cursor = ob.list_deliveries(engine, state="dead", limit=2)
    assert [d.delivery_id for d in page] == [ids[2], ids[1]]
    page, cursor = ob.list_deliveries(engine, state="dead", limit=2, before=cursor)
    assert [d.delivery_id for d in page] == [ids[0]] and cursor is None
    assert ob.count_by_state(engine) == {"pending": 2, "done": 0, "dead": 3}
    assert page[0].created_at == now.astimezone(UTC)
