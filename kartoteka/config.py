"""Settings from the environment (KARTOTEKA_*), with defaults that work out of the box, read when asked for."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MIB = 1 << 20


@dataclass(frozen=True)
class UploadLimits:
    """How much one user may upload, counted in the database (so every app worker sees the same); 0: no limit.

    "Pending" uploads are those no record holds yet (a form not saved yet); they count until attached
    or until `pending_lifetime` has passed (then they are removed). `user_bytes` is everything of
    theirs still stored that a record holds or that is pending.
    """

    pending_files: int = 100
    pending_bytes: int = 200 * MIB
    user_bytes: int = 10 * 1024 * MIB
    pending_lifetime: timedelta = timedelta(hours=24)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> UploadLimits:
        """KARTOTEKA_UPLOAD_PENDING_FILES, _UPLOAD_PENDING_BYTES and _UPLOAD_USER_BYTES (sizes may end in K, M, G),
        _UPLOAD_PENDING_HOURS (how long an upload no record holds is kept, default 24)."""
        default = cls()
        return cls(
            pending_files=_count(env.get("KARTOTEKA_UPLOAD_PENDING_FILES", str(default.pending_files)),
                                 "KARTOTEKA_UPLOAD_PENDING_FILES"),
            pending_bytes=_size(env.get("KARTOTEKA_UPLOAD_PENDING_BYTES", str(default.pending_bytes)),
                                "KARTOTEKA_UPLOAD_PENDING_BYTES"),
            user_bytes=_size(env.get("KARTOTEKA_UPLOAD_USER_BYTES", str(default.user_bytes)),
                             "KARTOTEKA_UPLOAD_USER_BYTES"),
            pending_lifetime=_hours(env.get("KARTOTEKA_UPLOAD_PENDING_HOURS"), "KARTOTEKA_UPLOAD_PENDING_HOURS",
                                    default.pending_lifetime),
        )


@dataclass(frozen=True)
class OutboxSettings:
    """How `kartoteka worker` delivers the outbox's e-mails and webhooks (docs/automation.md, "Outbox and worker")."""

    smtp_url: str | None = None  # smtp://[user:password@]host[:port][?starttls=1] or smtps://...; None: e-mails wait
    mail_from: str = "Kartoteka <kartoteka@localhost>"
    webhook_hosts: tuple[str, ...] = ()  # host[:port] allowed even on private addresses; with entries, only these
    webhook_timeout: float = 10.0  # seconds per connect, send and read
    max_attempts: int = 8  # then the delivery is dead
    backoff: float = 30.0  # seconds before the second attempt; doubled each time (with jitter), at most 6 hours
    batch: int = 20  # deliveries one worker claims at once

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OutboxSettings:
        """KARTOTEKA_SMTP_URL, _MAIL_FROM, _WEBHOOK_HOSTS, _WEBHOOK_TIMEOUT, _OUTBOX_MAX_ATTEMPTS, _OUTBOX_BACKOFF."""
        default = cls()
        return cls(
            smtp_url=env.get("KARTOTEKA_SMTP_URL", "").strip() or None,
            mail_from=env.get("KARTOTEKA_MAIL_FROM", "").strip() or default.mail_from,
            webhook_hosts=tuple(h.strip() for h in env.get("KARTOTEKA_WEBHOOK_HOSTS", "").split(",") if h.strip()),
            webhook_timeout=_seconds(env.get("KARTOTEKA_WEBHOOK_TIMEOUT"), "KARTOTEKA_WEBHOOK_TIMEOUT",
                                     default.webhook_timeout),
            max_attempts=max(1, _count(env.get("KARTOTEKA_OUTBOX_MAX_ATTEMPTS", str(default.max_attempts)),
                                       "KARTOTEKA_OUTBOX_MAX_ATTEMPTS")),
            backoff=_seconds(env.get("KARTOTEKA_OUTBOX_BACKOFF"), "KARTOTEKA_OUTBOX_BACKOFF", default.backoff),
        )


@dataclass(frozen=True)
class Settings:
    """Everything the application factory needs; tests pass their own."""

    database_url: str
    config_dir: Path
    secret_key: str
    instance_dir: Path
    phone_region: str = "RU"
    testing: bool = False
    # How many reverse proxies in front of the app to believe about X-Forwarded-For/-Proto/-Host (0: none).
    trusted_proxies: int = 0
    uploads: UploadLimits = field(default_factory=UploadLimits)
    # Lists (web and API) count their records exactly up to this many, then say "more than"; 0: always exactly.
    list_count_cap: int = 10_000
    # Saves made by rules nest at most this deep from the save that started them (docs/automation.md).
    rule_depth: int = 3
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
    # The instance's time zone (an IANA name): the moments pages show (timelines, tasks, run logs) are written in it.
    timezone: str = "UTC"
    # How long the consent archive keeps a decision of a card removed for good: at least six years, by law.
    consent_years: int = 6
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        time_zone(self.timezone)  # an unknown zone stops the app at start, with the reason
        if self.consent_years < 6:
            raise ValueError(f"KARTOTEKA_CONSENT_YEARS must be 6 or more (consents are kept at least six years), not "
                             f"{self.consent_years}.")

    @property
    def zone(self) -> ZoneInfo:
        """The instance's time zone (KARTOTEKA_TIMEZONE)."""
        return time_zone(self.timezone)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read KARTOTEKA_DATABASE_URL, _CONFIG_DIR, _INSTANCE_DIR, _SECRET_KEY, _PHONE_REGION, _TRUSTED_PROXIES,
        _UPLOAD_*, _LIST_COUNT_CAP, _RULE_DEPTH, _TIMEZONE, _CONSENT_YEARS and the outbox's (OutboxSettings), now (by
        `create_app` or a command, never at import).

        Relative paths and the defaults (`instance/`, `config/`) are taken from the current directory of this
        call, and resolved to absolute paths, so a server's workers agree with the process that started them.
        """
        env = os.environ if environ is None else environ
        here = Path.cwd()
        instance = (here / env.get("KARTOTEKA_INSTANCE_DIR", "instance")).resolve()
        settings = cls(
            database_url=env.get("KARTOTEKA_DATABASE_URL") or f"sqlite:///{instance / 'kartoteka.db'}",
            config_dir=(here / env.get("KARTOTEKA_CONFIG_DIR", "config")).resolve(),
            secret_key=env.get("KARTOTEKA_SECRET_KEY") or _instance_secret(instance),
            instance_dir=instance,
            phone_region=phone_region(env),
            trusted_proxies=_count(env.get("KARTOTEKA_TRUSTED_PROXIES", "0"), "KARTOTEKA_TRUSTED_PROXIES"),
            uploads=UploadLimits.from_env(env),
            list_count_cap=_count(env.get("KARTOTEKA_LIST_COUNT_CAP", "10000"), "KARTOTEKA_LIST_COUNT_CAP"),
            rule_depth=_count(env.get("KARTOTEKA_RULE_DEPTH", "3"), "KARTOTEKA_RULE_DEPTH"),
            outbox=OutboxSettings.from_env(env),
            timezone=env.get("KARTOTEKA_TIMEZONE", "").strip() or "UTC",
            consent_years=_count(env.get("KARTOTEKA_CONSENT_YEARS", "6"), "KARTOTEKA_CONSENT_YEARS"),
        )
        return replace(settings, **overrides)


def phone_region(environ: Mapping[str, str] | None = None) -> str:
    """The region for phone numbers written without a country code (KARTOTEKA_PHONE_REGION, default RU)."""
    env = os.environ if environ is None else environ
    return env.get("KARTOTEKA_PHONE_REGION", "RU").strip().upper()


def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone called `name` (KARTOTEKA_TIMEZONE); ValueError naming the setting when there is none."""
    try:
        if not name or name != name.strip() or name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"KARTOTEKA_TIMEZONE must be an IANA time zone such as UTC, Europe/Moscow or "
                         f"America/New_York, not {name!r}.") from None


def _count(text: str, name: str) -> int:
    """A small non-negative whole number from the environment."""
    try:
        value = int(text.strip() or "0")
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {text!r}.") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative.")
    return value


def _hours(text: str | None, name: str, default: timedelta) -> timedelta:
    """A duration from the environment in hours (1.5 is an hour and a half), more than none and at most a year."""
    if text is None or not text.strip():
        return default
    try:
        hours = float(text.strip())
    except ValueError:
        hours = -1.0
    if not 0 < hours <= 24 * 366:  # NaN fails too
        raise ValueError(f"{name} must be a number of hours greater than 0 (at most a year), not {text!r}.")
    return timedelta(hours=hours)


def _seconds(text: str | None, name: str, default: float) -> float:
    """A number of seconds from the environment, more than none and at most a day."""
    if text is None or not text.strip():
        return default
    try:
        seconds = float(text.strip())
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 86400:  # NaN fails too
        raise ValueError(f"{name} must be a number of seconds greater than 0 (at most a day), not {text!r}.")
    return seconds


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _size(text: str, name: str) -> int:
    """A number of bytes from the environment: 1048576, 512K, 200M, 10G (powers of 1024)."""
    cleaned = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = cleaned[-1] if cleaned and cleaned[-1] in "KMGT" else ""
    number = cleaned[:-1].strip() if unit else cleaned
    if not number.isdigit() or not number.isascii():
        raise ValueError(f"{name} must be a number of bytes such as 200M or 10G, not {text!r}.")
    return int(number) * _UNITS[unit]


def _instance_secret(instance: Path) -> str:
    """A secret kept in instance/secret_key, made on first use, so sessions survive restarts."""
    path = instance / "secret_key"
    if path.exists():
        return path.read_text().strip()
    instance.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32)
    path.write_text(secret)
    path.chmod(0o600)
    return secret
