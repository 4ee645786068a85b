"""Tasks: who sees and changes them, lists with filters, changes with optimistic versions, the header's counts.

A task is visible to its assignee, its creator, superusers, and whoever may read its card (the record scopes of
`records/scopes.py`, as SQL); a task of a card in the trash is hidden from everyone until the card comes back.
A task may be changed by its assignee, its creator, superusers, and whoever may change its card. A task on a card is
assigned only to someone who may read that card (`card_readers`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from kartoteka.activity.model import (
    Counts,
    Task,
    TaskPage,
    TaskQuery,
    cursor_int,
    cursor_moment,
    decode_cursor,
    due_moment,
    encode_cursor,
    stored,
    utc,
)
from kartoteka.activity.store import create_task
from kartoteka.errors import BadRequest, Conflict, NotFound, PermissionDenied, RecordValidationError
from kartoteka.messages import Message
from kartoteka.metadata.model import EntityDef, Metadata
from kartoteka.records.model import SYSTEM, Principal, Record
from kartoteka.records.scopes import readable_where, scope_of
from kartoteka.records.service import RecordService
from kartoteka.storage.reading import reader
from kartoteka.storage.tables import notifications, records, tasks, users

MAX_TITLE = 300
MAX_DESCRIPTION = 5000
# Tasks without a due moment sort after every dated one.
NEVER = datetime(9999, 12, 31, tzinfo=UTC)

_assignees = users.alias("assignees")
_creators = users.alias("creators")
_FROM = (tasks.outerjoin(records, records.c.id == tasks.c.record_id)
         .outerjoin(_assignees, _assignees.c.id == tasks.c.assignee)
         .outerjoin(_creators, _creators.c.id == tasks.c.created_by))
_LIVE_CARD = sa.or_(tasks.c.record_id.is_(None), records.c.deleted_at.is_(None))


def _card_readable(metadata: Metadata, user: Principal) -> sa.ColumnElement[bool]:
    """The joined card (records) is one `user` may read."""
    parts = []
    for entity in metadata.entities.values():
        where = readable_where(metadata, user, entity)
        if where is not None:
            parts.append(sa.and_(*where))
    return sa.or_(*parts) if parts else sa.false()


def _visible(metadata: Metadata, user: Principal, readable: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    if user.is_system or metadata.is_superuser(user.roles):
        return _LIVE_CARD
    mine = [tasks.c.assignee == user.id, tasks.c.created_by == user.id] if user.id is not None else []
    return sa.and_(_LIVE_CARD, sa.or_(*mine, readable))


def visible_tasks(metadata: Metadata, user: Principal) -> sa.Select[Any]:
    """The tasks `user` may see, with their card's title (when readable) and people's names, as a statement."""
    readable = _card_readable(metadata, user)
    return (sa.select(tasks, records.c.title.label("card_title"),
                      sa.case((readable, sa.true()), else_=sa.false()).label("card_readable"),
                      _assignees.c.display_name.label("assignee_name"),
                      _creators.c.display_name.label("created_by_name"))
            .select_from(_FROM).where(_visible(metadata, user, readable)))


def task_of(row: sa.Row[Any]) -> Task:
    """A row of `visible_tasks` as a Task."""
    return Task(id=row.id, title=row.title, description=row.description or "", assignee=row.assignee,
                assignee_name=row.assignee_name, due_at=utc(row.due_at), done_at=utc(row.done_at), entity=row.entity,
                record_id=row.record_id, card_title=row.card_title if row.card_readable else None,
                rule_key=row.rule_key, created_by=row.created_by, created_by_name=row.created_by_name,
                created_at=utc(row.created_at) or row.created_at, updated_at=utc(row.updated_at) or row.updated_at,
                version=row.version)


def _not_found(task_id: int) -> NotFound:
    return NotFound(Message("task.not_found", "There is no task #{id}.", id=task_id))


def get_task(service: RecordService, task_id: int, user: Principal) -> Task:
    """One task `user` may see; NotFound otherwise."""
    with reader(service.engine).connect() as conn:
        row = conn.execute(visible_tasks(service.metadata, user).where(tasks.c.id == task_id)).first()
    if row is None:
        raise _not_found(task_id)
    return task_of(row)


_due_order = sa.func.coalesce(tasks.c.due_at, sa.literal(NEVER, tasks.c.due_at.type))


def list_tasks(service: RecordService, user: Principal, query: TaskQuery) -> TaskPage:
    """A page of the tasks `user` may see that match `query`, soonest due first (undated last), then by id."""
    statement = visible_tasks(service.metadata, user)
    if query.assignee is not None:
        statement = statement.where(tasks.c.assignee == query.assignee)
    if query.done is not None:
        statement = statement.where(tasks.c.done_at.is_not(None) if query.done else tasks.c.done_at.is_(None))
    if query.due_lte is not None:
        statement = statement.where(tasks.c.due_at <= stored(query.due_lte))
    if query.due_gte is not None:
        statement = statement.where(tasks.c.due_at >= stored(query.due_gte))
    if query.entity is not None:
        statement = statement.where(tasks.c.entity == query.entity)
    if query.record_id is not None:
        statement = statement.where(tasks.c.record_id == query.record_id)
    if query.cursor:
        due_text, id_text = decode_cursor(query.cursor, 2)
        after, after_id = cursor_moment(due_text), cursor_int(id_text)
        bound = sa.literal(after, tasks.c.due_at.type)
        statement = statement.where(sa.or_(_due_order > bound, sa.and_(_due_order == bound, tasks.c.id > after_id)))
    statement = statement.order_by(_due_order, tasks.c.id).limit(query.limit + 1)
    with reader(service.engine).connect() as conn:
        found = [task_of(row) for row in conn.execute(statement)]
    more = len(found) > query.limit
    items = tuple(found[:query.limit])
    next_cursor = None
    if more:
        last = items[-1]
        next_cursor = encode_cursor((last.due_at or NEVER).isoformat(), last.id)
    return TaskPage(items, next_cursor)


def _invalid(errors: dict[str, list[str]]) -> RecordValidationError:
    return RecordValidationError(errors, Message.counted("task.invalid", "The task has {count} invalid value.",
                                                         "The task has {count} invalid values.",
                                                         count=sum(len(v) for v in errors.values())))


def _clean_title(value: Any, errors: dict[str, list[str]]) -> str:
    title = value.strip() if isinstance(value, str) else ""
    if not isinstance(value, str):
        errors["title"] = [Message("task.title_type", "The title must be a text.")]
    elif not title:
        errors["title"] = [Message("task.title_required", "Give the task a title.")]
    elif len(title) > MAX_TITLE:
        errors["title"] = [Message("task.title_too_long", "The title may have at most {limit} characters; this one "
                                   "has {length}.", limit=MAX_TITLE, length=len(title))]
    return title


def _clean_description(value: Any, errors: dict[str, list[str]]) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        errors["description"] = [Message("task.description_type", "The description must be a text.")]
        return ""
    if len(value) > MAX_DESCRIPTION:
        errors["description"] = [Message("task.description_too_long", "The description may have at most {limit} "
                                         "characters; this one has {length}.", limit=MAX_DESCRIPTION,
                                         length=len(value))]
    return value


def _check_assignee(conn: sa.Connection, value: Any, errors: dict[str, list[str]],
                    card: tuple[Metadata, EntityDef, int | None] | None = None) -> int | None:
    """The assignee's id: an active user, and on a card (metadata, entity, the card's owner) one who may read it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        errors["assignee"] = [Message("task.assignee_type", "The assignee must be a user's id.")]
        return None
    if not (-(1 << 63) <= value < 1 << 63):
        errors["assignee"] = [Message("task.assignee_unknown", "There is no active user #{id}.", id=value)]
        return None
    person = conn.execute(sa.select(users.c.id, users.c.display_name, users.c.roles, users.c.department,
                                    users.c.is_active).where(users.c.id == value)).first()
    if person is None or not person.is_active:
        errors["assignee"] = [Message("task.assignee_unknown", "There is no active user #{id}.", id=value)]
    elif card is not None and not _readers(conn, *card, [person]):
        errors["assignee"] = [Message("task.assignee_cannot_read", "{name} may not open this card, so cannot be given "
                                      "a task on it; choose someone who may.", name=person.display_name)]
    return value


def _readers(conn: sa.Connection, metadata: Metadata, entity: EntityDef, owner: int | None,
             people: list[sa.Row[Any]]) -> list[sa.Row[Any]]:
    """Those of `people` (rows with id, roles, department) whose read scope holds a live card of `entity` owned by
    `owner`: their role's scope of `records/scopes.py`, as `scopes.in_scope` decides it for one user."""
    owner_department: str | None = None
    if owner is not None and any(p.department for p in people):
        owner_department = conn.execute(sa.select(users.c.department).where(users.c.id == owner)).scalar()
    found = []
    for person in people:
        principal = Principal(person.id, "", frozenset(person.roles or ()), person.department)
        scope = scope_of(metadata, principal, entity, "read")
        if scope == "all" or (scope in ("own", "department") and owner is not None and owner == person.id) or (
                scope == "department" and person.department and owner is not None
                and owner_department == person.department):
            found.append(person)
    return found


def card_readers(service: RecordService, record: Record) -> list[tuple[int, str]]:
    """The active users (id, display name, by name) who may read the card `record` (as its reader got it from
    `service.get`): whom a task on it may be assigned to."""
    entity = service.entity(record.entity)
    with reader(service.engine).connect() as conn:
        people = list(conn.execute(sa.select(users.c.id, users.c.display_name, users.c.roles, users.c.department)
                                   .where(users.c.is_active).order_by(users.c.display_name, users.c.id)))
        return [(p.id, p.display_name) for p in _readers(conn, service.metadata, entity, record.owner, people)]


def _check_due(value: Any, errors: dict[str, list[str]]) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, date):
        errors["due_at"] = [Message("task.due_type", "The due date must be a date or a date and time.")]
        return None
    return due_moment(value)


def new_task(service: RecordService, user: Principal, *, title: Any, description: Any = "",
             assignee: Any = None, due_at: Any = None, entity: str | None = None,
             record_id: int | None = None) -> Task:
    """Create a task as `user`; on a card it needs read access to that card (NotFound outside the scope)."""
    if (entity is None) != (record_id is None):
        raise BadRequest(Message("task.card_incomplete", "Name both the card's entity and its id, or neither."))
    card = None
    if entity is not None and record_id is not None:
        record = service.get(entity, record_id, user)
        card = (service.metadata, service.entity(record.entity), record.owner)
    errors: dict[str, list[str]] = {}
    clean_title = _clean_title(title, errors)
    clean_description = _clean_description(description, errors)
    due = _check_due(due_at, errors)
    now = service.clock.now()
    with service.engine.begin() as conn:
        who = _check_assignee(conn, assignee, errors, card)
        if errors:
            raise _invalid(errors)
        task_id = create_task(conn, title=clean_title, now=now, description=clean_description, assignee=who,
                              due_at=due, entity=entity, record_id=record_id, created_by=user.id)
    return get_task(service, task_id, user)


def may_change(service: RecordService, task: Task, user: Principal) -> bool:
    """True when `user` may change `task`: its assignee, its creator, a superuser, or who may change its card."""
    if user.is_system or service.metadata.is_superuser(user.roles):
        return True
    if user.id is not None and user.id in (task.assignee, task.created_by):
        return True
    if task.entity is None or task.record_id is None:
        return False
    try:
        service.require_changeable(task.entity, task.record_id, user)
    except (NotFound, PermissionDenied):
        return False
    return True


CHANGEABLE = ("title", "description", "assignee", "due_at", "done")


def update_task(service: RecordService, task_id: int, changes: Mapping[str, Any], user: Principal, *,
                expected_version: int) -> Task:
    """Change a task; a stale `expected_version` is a Conflict (409) carrying the current version."""
    task = get_task(service, task_id, user)
    if not may_change(service, task, user):
        raise PermissionDenied(Message("task.change_forbidden", "You may see task #{id} but not change it: only its "
                                       "assignee, its creator and those who may change its card may.", id=task_id))
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(changes) - set(CHANGEABLE))
    for name in unknown:
        errors[name] = [Message("task.unknown_field", "Unknown field.")]
    values: dict[str, Any] = {}
    now = stored(service.clock.now())
    if "title" in changes:
        values["title"] = _clean_title(changes["title"], errors)
    if "description" in changes:
        values["description"] = _clean_description(changes["description"], errors)
    if "due_at" in changes:
        values["due_at"] = _check_due(changes["due_at"], errors)
    if "done" in changes:
        done = changes["done"]
        if not isinstance(done, bool):
            errors["done"] = [Message("task.done_type", "'done' must be true or false.")]
        elif done != task.done:
            values["done_at"] = now if done else None
    card = None
    if "assignee" in changes and changes["assignee"] != task.assignee and task.entity and task.record_id is not None:
        record = service.get(task.entity, task.record_id, SYSTEM)  # the card may be outside the changer's own scope
        card = (service.metadata, service.entity(record.entity), record.owner)
    with service.engine.begin() as conn:
        if "assignee" in changes:
            values["assignee"] = _check_assignee(conn, changes["assignee"], errors, card)
        if errors:
            raise _invalid(errors)
        current = conn.execute(sa.select(tasks.c.version).where(tasks.c.id == task_id)).scalar()
        if current is None:
            raise _not_found(task_id)
        if current != expected_version:
            raise _stale(task_id, expected_version, current)
        values = {k: v for k, v in values.items() if k == "done_at" or v != getattr(task, k)}
        if not values:  # an unchanged save writes nothing and keeps the version, as a record's does
            return task
        written = conn.execute(sa.update(tasks).where(tasks.c.id == task_id, tasks.c.version == expected_version)
                            .values(**values, updated_at=now, version=tasks.c.version + 1))
        if written.rowcount != 1:  # changed between the read and this write
            fresh = conn.execute(sa.select(tasks.c.version).where(tasks.c.id == task_id)).scalar()
            raise _stale(task_id, expected_version, fresh)
    return get_task(service, task_id, user)


def _stale(task_id: int, expected: int, current: int | None) -> Conflict:
    return Conflict(Message("task.version_stale", "Task #{id} was changed meanwhile (version {current}, you edited "
                            "version {expected}); reload it and apply your change again.", id=task_id,
                            current=current, expected=expected), current_version=current)


_COUNTS = sa.select(
    sa.select(sa.func.count()).select_from(tasks.outerjoin(records, records.c.id == tasks.c.record_id))
    .where(tasks.c.assignee == sa.bindparam("user_id"), tasks.c.done_at.is_(None), _LIVE_CARD)
    .scalar_subquery().label("open_tasks"),
    sa.select(sa.func.count()).select_from(tasks.outerjoin(records, records.c.id == tasks.c.record_id))
    .where(tasks.c.assignee == sa.bindparam("user_id"), tasks.c.done_at.is_(None), _LIVE_CARD,
           tasks.c.due_at < sa.bindparam("now", type_=tasks.c.due_at.type))
    .scalar_subquery().label("overdue_tasks"),
    sa.select(sa.func.count()).select_from(notifications)
    .where(notifications.c.user_id == sa.bindparam("user_id"), notifications.c.read_at.is_(None))
    .scalar_subquery().label("unread"),
)


# The same, with how many of the unread notifications are about one card (the card page being opened).
_COUNTS_ON_CARD = _COUNTS.add_columns(
    sa.select(sa.func.count()).select_from(notifications)
    .where(notifications.c.user_id == sa.bindparam("user_id"), notifications.c.read_at.is_(None),
           notifications.c.entity == sa.bindparam("entity"), notifications.c.record_id == sa.bindparam("record_id"))
    .scalar_subquery().label("unread_on_card"))


def counts(engine: sa.Engine, user_id: int, now: datetime) -> Counts:
    """The header's counts for one user: open tasks assigned to them, the overdue among them, unread notifications."""
    with reader(engine).connect() as conn:
        row = conn.execute(_COUNTS, {"user_id": user_id, "now": stored(now)}).one()
    return Counts(open_tasks=row.open_tasks, overdue_tasks=row.overdue_tasks, unread=row.unread)


def counts_on_card(engine: sa.Engine, user_id: int, now: datetime, entity: str, record_id: int) -> tuple[Counts, int]:
    """`counts`, and how many of the unread notifications are about the card `entity` #`record_id` (one statement)."""
    with reader(engine).connect() as conn:
        row = conn.execute(_COUNTS_ON_CARD, {"user_id": user_id, "now": stored(now), "entity": entity,
                                             "record_id": record_id}).one()
    return Counts(open_tasks=row.open_tasks, overdue_tasks=row.overdue_tasks, unread=row.unread), row.unread_on_card
