"""The outbox: side effects (e-mails, webhooks) written in the saving transaction, delivered after commit.

Payloads: an e-mail is {"to": [addresses], "subject": text, "body": text}; a webhook is {"type": event,
"timestamp": ISO 8601, "data": {...}, "secret_env": name or None}, its body the JSON of type, timestamp and data
(the Standard Webhooks payload shape). `delivery_id` is the idempotency key, the webhook's `webhook-id`.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from kartoteka.storage.tables import outbox

KINDS = ("email", "webhook")


def enqueue(conn: sa.Connection, *, kind: str, destination: str, payload: Mapping[str, Any], now: datetime,
            entity: str | None = None, record_id: int | None = None, rule_key: str | None = None) -> str:
    """Write one delivery to the outbox in the caller's transaction; its delivery id."""
    if kind not in KINDS:
        raise ValueError(f"unknown delivery kind '{kind}'; known: {', '.join(KINDS)}")
    delivery_id = "msg_" + secrets.token_hex(16)
    conn.execute(sa.insert(outbox).values(
        delivery_id=delivery_id, kind=kind, destination=destination[:2000], payload=dict(payload), state="pending",
        attempts=0, next_attempt_at=now, entity=entity, record_id=record_id, rule_key=rule_key, created_at=now,
    ))
    return delivery_id
