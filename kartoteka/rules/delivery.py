"""Delivering one outbox row: a signed webhook (Standard Webhooks) over http.client, or an e-mail over smtplib.

Webhooks go only where the allow-list lets them (`KARTOTEKA_WEBHOOK_HOSTS`): the destination's name is resolved
once, every address it has is checked (private, loopback, link-local and other non-global addresses are refused
unless the host is listed), and the connection goes to a checked address, so a second lookup (DNS rebinding)
cannot send it elsewhere. Redirects are not followed and no proxy is used.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import http.client
import ipaddress
import json
import os
import smtplib
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from kartoteka.config import OutboxSettings
from kartoteka.rules.outbox import Delivery

USER_AGENT = "Kartoteka-Webhooks/1"
SECRET_PREFIX = "whsec_"  # noqa: S105  (the scheme's prefix, not a secret)
_READ_LIMIT = 65536

Resolver = Callable[[str, int], list[str]]


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: delivered, or an error that is worth retrying or not (`permanent`)."""

    ok: bool
    detail: str
    permanent: bool = False


class Refused(Exception):
    """The delivery can never succeed as it is (a destination the allow-list refuses, a broken payload)."""


# --- Standard Webhooks signing -------------------------------------------------------------------


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: a `whsec_` secret is the base64 of the key (the scheme's form), any other its
    UTF-8 bytes."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
        except (binascii.Error, ValueError):
            raise Refused(f"The webhook secret starts with '{SECRET_PREFIX}' but what follows is not base64.") \
                from None
    return secret.encode()


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: "v1," and the base64 HMAC-SHA256 of "{id}.{timestamp}.{body}"."""
    signed = message_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def webhook_body(payload: Mapping[str, Any]) -> bytes:
    """The JSON sent: the payload's type, timestamp and data (never its secret_env)."""
    body = {"type": payload.get("type"), "timestamp": payload.get("timestamp"), "data": payload.get("data", {})}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


# --- where webhooks may go ------------------------------------------------------------------------


@dataclass(frozen=True)
class AllowList:
    """Listed `host[:port]` entries (any address, private ones too) and whether other hosts with only global
    addresses are allowed: yes when nothing is listed, or when `*` is one of the entries."""

    entries: frozenset[tuple[str, int | None]]
    any_public: bool

    @classmethod
    def parse(cls, hosts: tuple[str, ...]) -> AllowList:
        """From KARTOTEKA_WEBHOOK_HOSTS's entries: example.com, hooks.example.com:8443, 10.0.0.5:9000, [::1]:8080, *."""
        entries: set[tuple[str, int | None]] = set()
        for entry in hosts:
            if entry == "*":
                continue
            host, port = _host_port(entry)
            entries.add((host, port))
        return cls(frozenset(entries), any_public=not hosts or "*" in hosts)

    def lists(self, host: str, port: int) -> bool:
        """Whether host:port is listed (by the name or address written in the URL)."""
        host = _normal_host(host)
        return (host, port) in self.entries or (host, None) in self.entries


def _normal_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def _host_port(entry: str) -> tuple[str, int | None]:
    text = entry.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":") if rest.startswith(":") else None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, None
    if port_text is not None and not (port_text.isdigit() and 0 < int(port_text) < 65536):
        raise ValueError(f"KARTOTEKA_WEBHOOK_HOSTS: '{entry}' is not host[:port].")
    return _normal_host(host), int(port_text) if port_text is not None else None


def is_public(address: str) -> bool:
    """Whether an IP address is globally routable: not private, loopback, link-local, multicast, reserved..."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_loopback)


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` has (the system's resolver; an IP literal is itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Target:
    """A checked webhook destination: connect to `addresses` (in order), speak to `host`."""

    https: bool
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]


def check_destination(url: str, allowed: AllowList, resolve: Resolver) -> Target:
    """The destination of a webhook URL with its addresses, or Refused (permanent) with the reason; OSError when
    the name cannot be resolved now (worth retrying)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"The webhook URL must be http:// or https:// with a host, not {url[:200]!r}.")
    if parts.username or parts.password:
        raise Refused("The webhook URL must not carry a user name or password.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused(f"The webhook URL has an invalid port: {url[:200]!r}.") from None
    host = parts.hostname
    listed = allowed.lists(host, port)
    if not listed and not allowed.any_public:
        raise Refused(f"{host}:{port} is not in KARTOTEKA_WEBHOOK_HOSTS.")
    addresses = resolve(host, port)
    if not addresses:
        raise OSError(f"{host} has no address")
    if not listed:
        private = [a for a in addresses if not is_public(a)]
        if private:
            raise Refused(f"{host} resolves to a non-public address ({', '.join(private[:3])}); list "
                          f"{host}:{port} in KARTOTEKA_WEBHOOK_HOSTS to allow it.")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme == "https", host, port, path, tuple(addresses))


# --- e-mail ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpServer:
    """Where e-mail goes: KARTOTEKA_SMTP_URL parsed."""

    host: str
    port: int
    tls: str | None  # "ssl" (smtps://), "starttls" (?starttls=1) or None
    user: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SmtpServer:
        """smtp://[user:password@]host[:port][?starttls=1] (port 25, or 587 with STARTTLS) or smtps://... (465)."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"KARTOTEKA_SMTP_URL must be smtp://host[:port] or smtps://host[:port], not {url!r}.")
        flags = {k.lower(): v[-1].lower() for k, v in parse_qs(parts.query).items()}
        starttls = flags.get("starttls", "") in ("1", "true", "yes", "on")
        tls = "ssl" if parts.scheme == "smtps" else "starttls" if starttls else None
        try:
            port = parts.port or (465 if tls == "ssl" else 587 if tls == "starttls" else 25)
        except ValueError:
            raise ValueError(f"KARTOTEKA_SMTP_URL has an invalid port: {url!r}.") from None
        return cls(parts.hostname, port, tls, unquote(parts.username) if parts.username else None,
                   unquote(parts.password) if parts.password else None)


def email_message(delivery: Delivery, mail_from: str, now: datetime) -> EmailMessage:
    """The message of an e-mail delivery; its Message-ID is made of the delivery id, so that a receiver can tell a
    repeated delivery from a new message. Refused for a payload that cannot make a message."""
    payload = delivery.payload
    recipients, subject, body = payload.get("to"), payload.get("subject", ""), payload.get("body", "")
    if (not isinstance(recipients, list) or not recipients or not all(isinstance(r, str) for r in recipients)
            or not isinstance(subject, str) or not isinstance(body, str)):
        raise Refused("The e-mail payload must be {\"to\": [addresses], \"subject\": text, \"body\": text}.")
    if any("\r" in r or "\n" in r or "@" not in r for r in recipients):
        raise Refused(f"Not an e-mail address among {', '.join(map(repr, recipients))[:300]}.")
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "kartoteka.invalid"
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = ", ".join(recipients)
    message["Subject"] = " ".join(subject.split())
    message["Date"] = format_datetime(now)
    message["Message-ID"] = f"<{delivery.delivery_id}@{domain}>"
    message.set_content(body)
    return message


# --- the deliverer --------------------------------------------------------------------------------


class Deliverer:
    """Makes one attempt at a delivery, never raising for what the destination does (that is an Outcome)."""

    def __init__(self, settings: OutboxSettings, *, environ: Mapping[str, str] | None = None,
                 resolve: Resolver = system_resolver, tls_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.environ = os.environ if environ is None else environ
        self.resolve = resolve
        self.allowed = AllowList.parse(settings.webhook_hosts)
        self.smtp = SmtpServer.parse(settings.smtp_url) if settings.smtp_url else None
        self.tls_context = tls_context or ssl.create_default_context()

    def deliver(self, delivery: Delivery, now: datetime) -> Outcome:
        """One attempt: e-mail or webhook."""
        try:
            if delivery.kind == "webhook":
                return self.send_webhook(delivery, now)
            if delivery.kind == "email":
                return self.send_email(delivery, now)
            return Outcome(False, f"Unknown delivery kind {delivery.kind!r}.", permanent=True)
        except Refused as exc:
            return Outcome(False, str(exc), permanent=True)

    # webhooks

    def send_webhook(self, delivery: Delivery, now: datetime) -> Outcome:
        """POST the signed JSON body; 2xx is delivered, 410 Gone gives up, anything else is retried."""
        payload = delivery.payload
        secret_env = payload.get("secret_env")
        key = None
        if secret_env:
            secret = self.environ.get(str(secret_env))
            if not secret:
                return Outcome(False, f"The webhook's secret variable {secret_env} is not set in the worker's "
                                      "environment; it is never sent unsigned.")
            key = signing_key(secret)
        try:
            target = check_destination(delivery.destination, self.allowed, self.resolve)
        except OSError as exc:
            return Outcome(False, f"Cannot resolve the webhook's host: {exc}.")
        body = webhook_body(payload)
        timestamp = int(now.timestamp())
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   "webhook-id": delivery.delivery_id, "webhook-timestamp": str(timestamp)}
        if key is not None:
            headers["webhook-signature"] = sign(key, delivery.delivery_id, timestamp, body)
        return self._post(target, body, headers)

    def _post(self, target: Target, body: bytes, headers: dict[str, str]) -> Outcome:
        errors = []
        for address in target.addresses:  # the next address only when this one cannot be connected to
            connection = self._connection(target, address)
            try:
                try:
                    connection.connect()
                except OSError as exc:
                    errors.append(f"{address}: {exc or type(exc).__name__}")
                    continue
                connection.request("POST", target.path, body=body, headers=headers)
                response = connection.getresponse()
                text = response.read(_READ_LIMIT)
            except (OSError, http.client.HTTPException) as exc:
                return Outcome(False, f"{target.host}:{target.port} ({address}): {exc or type(exc).__name__}")
            finally:
                connection.close()
            status = response.status
            if 200 <= status < 300:
                return Outcome(True, f"HTTP {status}")
            snippet = " ".join(text[:300].decode("utf-8", "replace").split())
            reason = f"HTTP {status} {response.reason}" + (f": {snippet}" if snippet else "")
            if status == 410:
                return Outcome(False, f"{reason} (the receiver is gone; not retried)", permanent=True)
            return Outcome(False, reason)
        return Outcome(False, f"Cannot connect to {target.host}:{target.port}: {'; '.join(errors)}")

    def _connection(self, target: Target, address: str) -> http.client.HTTPConnection:
        """A connection that speaks to target.host (Host header, TLS name) at the checked `address`."""
        timeout = self.settings.webhook_timeout
        connection: http.client.HTTPConnection
        if target.https:
            connection = http.client.HTTPSConnection(target.host, target.port, timeout=timeout,
                                                     context=self.tls_context)
        else:
            connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)

        def to_checked_address(_address: object, timeout: float | None = timeout,
                               source_address: Any = None) -> socket.socket:
            return socket.create_connection((address, target.port), timeout, source_address)

        connection._create_connection = to_checked_address  # type: ignore[attr-defined]  # http.client's hook
        return connection

    # e-mail

    def send_email(self, delivery: Delivery, now: datetime) -> Outcome:
        """Hand the message to the SMTP server; a refusal of every recipient (5xx) gives up, the rest is retried."""
        if self.smtp is None:
            return Outcome(False, "KARTOTEKA_SMTP_URL is not set: e-mail waits until a worker has it.")
        message = email_message(delivery, self.settings.mail_from, now)
        recipients = list(delivery.payload["to"])
        sender = parseaddr(self.settings.mail_from)[1]
        server, timeout = self.smtp, self.settings.webhook_timeout
        try:
            smtp: smtplib.SMTP
            if server.tls == "ssl":
                smtp = smtplib.SMTP_SSL(server.host, server.port, timeout=timeout, context=self.tls_context)
            else:
                smtp = smtplib.SMTP(server.host, server.port, timeout=timeout)
            with smtp:
                if server.tls == "starttls":
                    smtp.starttls(context=self.tls_context)
                if server.user:
                    smtp.login(server.user, server.password or "")
                refused = smtp.send_message(message, from_addr=sender, to_addrs=recipients)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _text in exc.recipients.values()]
            return Outcome(False, f"SMTP refused every recipient: {_refusals(exc.recipients)}",
                           permanent=all(code >= 500 for code in codes))
        except smtplib.SMTPDataError as exc:
            return Outcome(False, f"SMTP refused the message: {exc.smtp_code} {_text(exc.smtp_error)}",
                           permanent=exc.smtp_code >= 500)
        except smtplib.SMTPResponseException as exc:
            return Outcome(False, f"SMTP error {exc.smtp_code} {_text(exc.smtp_error)}")
        except (OSError, smtplib.SMTPException) as exc:
            return Outcome(False, f"Cannot send through {server.host}:{server.port}: {exc or type(exc).__name__}")
        if refused:
            return Outcome(True, f"sent; refused: {_refusals(refused)}")
        return Outcome(True, f"sent to {len(recipients)} recipient{'' if len(recipients) == 1 else 's'}")


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _refusals(refused: Mapping[str, tuple[int, bytes | str]]) -> str:
    return "; ".join(f"{address} ({code} {_text(text)})" for address, (code, text) in refused.items())[:500]
