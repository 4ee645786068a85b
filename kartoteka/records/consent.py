"""The consent archive: each consent to personal-data processing given or withdrawn, per person and purpose.

A consent field (kartoteka/metadata/types: never pre-ticked, never emptied, stamped with who decided when under which
policy version) keeps the current state on the card; the record service adds a row here, in the saving transaction,
whenever a save changes it, with the channel it came through (form, API, import...). Rows are never changed; they are
kept at least six years (the law's minimum; a longer retention is a setting) even when the card is purged, and
`kartoteka consent export` writes them out for an inspector.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import IO, Any

import sqlalchemy as sa

from kartoteka.metadata.model import EntityDef, FieldDef
from kartoteka.records.cells import safe_text
from kartoteka.records.hooks import Origin
from kartoteka.records.model import Principal
from kartoteka.storage.tables import consents, records

MINIMUM_YEARS = 6
INSERT = sa.insert(consents)
EXPORT_COLUMNS = ("id", "entity", "record_id", "subject", "field", "purpose", "state", "decided_at", "user_id",
                  "user_name", "policy_version", "policy_url", "channel", "recorded_at")


@lru_cache(maxsize=1024)
def consent_fields(entity: EntityDef) -> tuple[FieldDef, ...]:
    """The consent fields of a card (most have none: their saves add nothing here)."""
    return tuple(f for f in entity.fields.values() if f.type.personal_decision)


def archive_rows(entity: EntityDef, record_id: int, title: str, before: Mapping[str, Any] | None,
                 after: Mapping[str, Any], user: Principal, origin: Origin, now: datetime) -> list[dict[str, Any]]:
    """The archive rows of one save: one per consent field whose stored decision changed."""
    rows = []
    for field in consent_fields(entity):
        new = after.get(field.name)
        if not isinstance(new, Mapping) or (before or {}).get(field.name) == new:
            continue
        decided = _moment(new.get("at")) or now
        rows.append({"entity": entity.name, "record_id": record_id, "subject": title[:300], "field": field.name,
                     "purpose": field.label.get("en")[:300], "given": bool(new.get("given")),
                     "decided_at": decided, "user_id": new.get("by", user.id), "user_name": user.username[:150],
                     "policy_version": new.get("policy_version") or field.policy_version,
                     "policy_url": field.policy_url, "channel": origin.source, "created_at": now})
    return rows


def _moment(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def rows_for_export(engine: sa.Engine, *, entity: str | None = None, since: datetime | None = None
                    ) -> Iterator[tuple[Any, ...]]:
    """Every archived decision (of one card, since a moment), oldest first, streamed from the database."""
    query = sa.select(consents).order_by(consents.c.id)
    if entity is not None:
        query = query.where(consents.c.entity == entity)
    if since is not None:
        query = query.where(consents.c.created_at >= since)
    with engine.connect() as conn:
        for row in conn.execution_options(stream_results=True, yield_per=1000).execute(query):
            yield (row.id, row.entity, row.record_id, row.subject, row.field, row.purpose,
                   "given" if row.given else "withdrawn", _text(row.decided_at), row.user_id, row.user_name,
                   row.policy_version, row.policy_url, row.channel, _text(row.created_at))


def write_csv(engine: sa.Engine, out: IO[str], **filters: Any) -> int:
    """Write the archive as CSV (a header row, then one row per decision); how many decisions."""
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for row in rows_for_export(engine, **filters):
        writer.writerow([safe_text(cell) for cell in row])  # a title like "=HYPERLINK(...)" stays a text
        count += 1
    return count


def purge_expired(engine: sa.Engine, now: datetime, years: int) -> int:
    """Remove the decisions older than the retention whose card is gone for good; how many went."""
    if years < MINIMUM_YEARS:
        raise ValueError(f"consent records are kept at least {MINIMUM_YEARS} years, not {years}")
    cutoff = now - timedelta(days=365 * years + years // 4 + 1)
    with engine.begin() as conn:
        gone = conn.execute(sa.delete(consents).where(
            consents.c.created_at < cutoff,
            ~sa.exists().where(records.c.id == consents.c.record_id)))
    return gone.rowcount or 0


def _text(moment: datetime | None) -> str:
    if moment is None:
        return ""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.isoformat().replace("+00:00", "Z")
