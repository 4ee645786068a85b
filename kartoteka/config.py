"""Settings from the environment (KARTOTEKA_*), with defaults that work out of the box."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path.cwd()


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
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read KARTOTEKA_DATABASE_URL, _CONFIG_DIR, _SECRET_KEY, _PHONE_REGION and _TRUSTED_PROXIES."""
        env = os.environ if environ is None else environ
        instance = Path(env.get("KARTOTEKA_INSTANCE_DIR", PROJECT_ROOT / "instance")).resolve()
        settings = cls(
            database_url=env.get("KARTOTEKA_DATABASE_URL") or f"sqlite:///{instance / 'kartoteka.db'}",
            config_dir=Path(env.get("KARTOTEKA_CONFIG_DIR", PROJECT_ROOT / "config")).resolve(),
            secret_key=env.get("KARTOTEKA_SECRET_KEY") or _instance_secret(instance),
            instance_dir=instance,
            phone_region=phone_region(env),
            trusted_proxies=_count(env.get("KARTOTEKA_TRUSTED_PROXIES", "0"), "KARTOTEKA_TRUSTED_PROXIES"),
        )
        return replace(settings, **overrides)


def phone_region(environ: Mapping[str, str] | None = None) -> str:
    """The region for phone numbers written without a country code (KARTOTEKA_PHONE_REGION, default RU)."""
    env = os.environ if environ is None else environ
    return env.get("KARTOTEKA_PHONE_REGION", "RU").strip().upper()


def _count(text: str, name: str) -> int:
    """A small non-negative whole number from the environment."""
    try:
        value = int(text.strip() or "0")
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {text!r}.") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative.")
    return value


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
