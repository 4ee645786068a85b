"""A card's timeline: notes, logged calls and meetings, e-mails sent, rule runs and the card's tasks, newest first.

Four sources merged by moment: the timeline table (notes, calls, meetings, e-mails), the change journal (each save:
its fields old -> new, cut to what the viewer may view), the rules' run log (a run is written once, in rule_runs)
and the tasks table.

Whoever may read a card may read its timeline and add notes, calls and meetings to it (read access is enough: a note
changes no field of the card, as comments do elsewhere); outside the read scope the card does not exist for them
(NotFound). Notes are free text written by people. What the platform writes (e-mails, rule runs) may carry values of
the card's fields, so a viewer who may not view every field of the card sees neither their body nor any part of their
payload that names a field they may not view (see `shown_payload`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from kartoteka.activity.model import (
    KINDS,
    USER_KINDS,
    Entry,
    TimelinePage,
    cursor_int,
    cursor_moment,
    decode_cursor,
    encode_cursor,
    stored,
    utc,
)
from kartoteka.activity.store import add_entry
from kartoteka.activity.tasks import task_of, visible_tasks
from kartoteka.errors import BadRequest, RecordValidationError
from kartoteka.messages import Message
from kartoteka.metadata.model import EntityDef
from kartoteka.records.access import every_field, viewable_fields
from kartoteka.records.journal import entries_query as journal_entries_query
from kartoteka.records.journal import visible_entry
from kartoteka.records.model import Principal
from kartoteka.records.service import RecordService
from kartoteka.storage.reading import reader
from kartoteka.storage.tables import journal, rule_runs, tasks, timeline, users

MAX_BODY = 10_000
MAX_OUTCOME = 200
MAX_DURATION = 24 * 60
# The order of the sources among entries of the same moment (newest first): timeline entries, the journal's saves,
# rule runs, tasks.
_ENTRY_RANK, _CHANGE_RANK, _RUN_RANK, _TASK_RANK = 3, 2, 1, 0
# The rule runs a card's timeline shows (the run log also keeps skipped, blocked and dry runs).
SHOWN_RUNS = ("done", "failed", "stopped")
# What a rule run's or an e-mail's payload may show to a viewer who may not view every field of the card.
_SAFE_KEYS = frozenset({"rule_key", "rule", "result", "actions", "type", "action", "kind", "field", "fields",
                        "value", "values", "entity", "record_id", "task_id", "state", "to", "template"})


def shown_payload(entity: EntityDef, user: Principal, kind: str, payload: Mapping[str, Any] | None
                  ) -> dict[str, Any]:
    """The part of an entry's payload `user` may see: everything for those who view every field of the card;
    otherwise only known keys, and no field (nor its value) that `user` may not view."""
    if not payload:
        return {}
    viewable = viewable_fields(entity, user)
    if kind in USER_KINDS or viewable is every_field(entity) or viewable == every_field(entity):
        return dict(payload)
    return _filtered(payload, viewable)


def _filtered(value: Any, viewable: frozenset[str], top: bool = True) -> Any:
    if isinstance(value, list):
        return [_filtered(v, viewable, top=False) for v in value]
    if not isinstance(value, Mapping):
        return value
    if isinstance(value.get("field"), str) and value["field"] not in viewable:
        return {k: v for k, v in value.items() if k in ("type", "action", "kind")}
    shown: dict[str, Any] = {}
    for key, item in value.items():
        if key not in _SAFE_KEYS:
            continue
        if key == "rule" and top:  # the rule's name (a text or a label by language): metadata, not data
            shown[key] = item
            continue
        if key == "fields" and isinstance(item, list):
            item = [f for f in item if f in viewable]
        elif key == "values" and isinstance(item, Mapping):
            item = {f: v for f, v in item.items() if f in viewable}
        shown[key] = _filtered(item, viewable, top=False)
    return shown


def shows_body(entity: EntityDef, user: Principal, kind: str) -> bool:
    """People's notes are shown to every reader; what the platform wrote only to who views every field."""
    return kind in USER_KINDS or viewable_fields(entity, user) == every_field(entity)


def _entries_select() -> sa.Select[Any]:
    return (sa.select(timeline, users.c.display_name.label("author"))
            .select_from(timeline.outerjoin(users, users.c.id == timeline.c.user_id)))


def _runs_select() -> sa.Select[Any]:
    return (sa.select(rule_runs.c.id, rule_runs.c.rule_key, rule_runs.c.result, rule_runs.c.actions,
                      rule_runs.c.error, rule_runs.c.user_id, rule_runs.c.created_at,
                      users.c.display_name.label("author"))
            .select_from(rule_runs.outerjoin(users, users.c.id == rule_runs.c.user_id)))


def _after(created_at: sa.ColumnElement[Any], row_id: sa.ColumnElement[Any], rank: int, cursor: tuple[Any, int, int]
           ) -> sa.ColumnElement[bool]:
    """The rows of a source of `rank` that come after the cursor's item, newest first by (moment, rank, id)."""
    moment, cursor_rank, last_id = cursor
    condition: sa.ColumnElement[bool]
    if rank > cursor_rank:
        condition = created_at < moment
    elif rank < cursor_rank:
        condition = created_at <= moment
    else:
        condition = sa.or_(created_at < moment, sa.and_(created_at == moment, row_id < last_id))
    return condition


def card_timeline(service: RecordService, entity_name: str, record_id: int, user: Principal, *, limit: int = 50,
                  cursor: str | None = None) -> TimelinePage:
    """A page of the card's timeline as `user` may see it (NotFound outside their read scope), newest first."""
    record = service.get(entity_name, record_id, user)
    entity = service.entity(record.entity)
    entries = _entries_select().where(timeline.c.record_id == record.id, timeline.c.entity == entity.name)
    runs = _runs_select().where(rule_runs.c.entity == entity.name, rule_runs.c.record_id == record.id,
                                rule_runs.c.result.in_(SHOWN_RUNS))
    card_tasks = visible_tasks(service.metadata, user).where(tasks.c.record_id == record.id)
    changes = journal_entries_query(entity, record.id)
    if cursor:
        moment_text, rank_text, id_text = decode_cursor(cursor, 3)
        after = (stored(cursor_moment(moment_text)), cursor_int(rank_text), cursor_int(id_text))
        entries = entries.where(_after(timeline.c.created_at, timeline.c.id, _ENTRY_RANK, after))
        runs = runs.where(_after(rule_runs.c.created_at, rule_runs.c.id, _RUN_RANK, after))
        card_tasks = card_tasks.where(_after(tasks.c.created_at, tasks.c.id, _TASK_RANK, after))
        changes = changes.where(_after(journal.c.created_at, journal.c.id, _CHANGE_RANK, after))
    entries = entries.order_by(timeline.c.created_at.desc(), timeline.c.id.desc()).limit(limit + 1)
    runs = runs.order_by(rule_runs.c.created_at.desc(), rule_runs.c.id.desc()).limit(limit + 1)
    card_tasks = card_tasks.order_by(tasks.c.created_at.desc(), tasks.c.id.desc()).limit(limit + 1)
    changes = changes.order_by(None).order_by(journal.c.created_at.desc(), journal.c.id.desc()).limit(limit + 1)
    found: list[tuple[Any, int, int, Entry]] = []
    with reader(service.engine).connect() as conn:
        for row in conn.execute(entries):
            kind = row.kind if row.kind in KINDS else "note"
            moment = utc(row.created_at) or row.created_at
            body = row.body if shows_body(entity, user, kind) else ""
            found.append((moment, _ENTRY_RANK, row.id, Entry(
                id=row.id, kind=kind, created_at=moment, user_id=row.user_id, author=row.author, body=body,
                payload=shown_payload(entity, user, kind, row.payload))))
        for row in conn.execute(runs):
            moment = utc(row.created_at) or row.created_at
            found.append((moment, _RUN_RANK, row.id, _run_entry(entity, user, row, moment)))
        for row in conn.execute(changes):
            change = visible_entry(entity, user, row)
            found.append((change.created_at, _CHANGE_RANK, row.id, Entry(
                id=row.id, kind="change", created_at=change.created_at, user_id=row.user_id, author=row.user_name,
                body="", payload={"version": change.version, "action": change.action, "source": change.source,
                                  "rule_key": change.rule_key, "reverts": change.reverts, "changes": change.changes,
                                  "hidden": change.hidden})))
        for row in conn.execute(card_tasks):
            task = task_of(row)
            found.append((task.created_at, _TASK_RANK, task.id, Entry(
                id=task.id, kind="task", created_at=task.created_at, user_id=task.created_by,
                author=task.created_by_name, body="", task=task)))
    found.sort(key=lambda item: (item[0], item[1], item[2]), reverse=True)
    page = found[:limit]
    next_cursor = None
    if len(found) > limit:
        moment, rank, last_id, _ = page[-1]
        next_cursor = encode_cursor(moment.isoformat(), rank, last_id)
    return TimelinePage(tuple(item[3] for item in page), next_cursor)


def _run_entry(entity: EntityDef, user: Principal, row: Any, moment: Any) -> Entry:
    """A rule run from the run log as a timeline entry: the rule's name, the result, the actions done, the error."""
    rule = next((r for r in entity.rules if r.key == row.rule_key), None)
    payload = {"rule_key": row.rule_key, "rule": rule.name if rule is not None else row.rule_key,
               "result": row.result, "actions": [a.get("action") for a in row.actions or () if isinstance(a, dict)]}
    return Entry(id=row.id, kind="rule", created_at=moment, user_id=row.user_id, author=row.author,
                 body=(row.error or "") if shows_body(entity, user, "rule") else "",
                 payload=shown_payload(entity, user, "rule", payload))


def log_entry(service: RecordService, entity_name: str, record_id: int, user: Principal, *, kind: str, body: Any,
              outcome: Any = None, duration_minutes: Any = None) -> Entry:
    """Add a note, a logged call or a meeting to a card `user` may read; returns the entry as they see it."""
    if kind not in USER_KINDS:
        raise BadRequest(Message("timeline.kind_invalid", "'kind' must be one of {kinds}, not {kind}.",
                                 kinds=", ".join(USER_KINDS), kind=repr(str(kind)[:40])))
    record = service.get(entity_name, record_id, user)
    errors: dict[str, list[str]] = {}
    text = body.strip() if isinstance(body, str) else ""
    if not isinstance(body, str):
        errors["body"] = [Message("timeline.body_type", "The text must be a text.")]
    elif not text:
        errors["body"] = [Message("timeline.body_required", "Write what the note says.")]
    elif len(text) > MAX_BODY:
        errors["body"] = [Message("timeline.body_too_long", "The text may have at most {limit} characters; this one "
                                  "has {length}.", limit=MAX_BODY, length=len(text))]
    payload: dict[str, Any] = {}
    if kind != "note":
        _outcome(outcome, payload, errors)
        _duration(duration_minutes, payload, errors)
    if errors:
        raise RecordValidationError(errors, Message.counted(
            "timeline.invalid", "The entry has {count} invalid value.", "The entry has {count} invalid values.",
            count=sum(len(v) for v in errors.values())))
    now = service.clock.now()
    with service.engine.begin() as conn:
        entry_id = add_entry(conn, entity=record.entity, record_id=record.id, kind=kind, now=now, body=text,
                             payload=payload or None, user_id=user.id)
    with reader(service.engine).connect() as conn:
        row = conn.execute(_entries_select().where(timeline.c.id == entry_id)).one()
    return Entry(id=row.id, kind=row.kind, created_at=utc(row.created_at) or row.created_at, user_id=row.user_id,
                 author=row.author, body=row.body, payload=dict(row.payload or {}))


def _outcome(value: Any, payload: dict[str, Any], errors: dict[str, list[str]]) -> None:
    if value is None or value == "":
        return
    if not isinstance(value, str):
        errors["outcome"] = [Message("timeline.outcome_type", "The outcome must be a text.")]
    elif len(value.strip()) > MAX_OUTCOME:
        errors["outcome"] = [Message("timeline.outcome_too_long", "The outcome may have at most {limit} characters; "
                                     "this one has {length}.", limit=MAX_OUTCOME, length=len(value.strip()))]
    elif value.strip():
        payload["outcome"] = value.strip()


def _duration(value: Any, payload: dict[str, Any], errors: dict[str, list[str]]) -> None:
    if value is None or value == "":
        return
    if isinstance(value, str) and value.strip().isdigit() and value.strip().isascii() and len(value.strip()) < 7:
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DURATION:
        errors["duration_minutes"] = [Message("timeline.duration_invalid", "The duration must be a whole number of "
                                              "minutes from 0 to {most}.", most=MAX_DURATION)]
        return
    payload["duration_minutes"] = value
