"""What each rule action does (the registry EXECUTORS); what it takes is kartoteka/metadata/actions.py.

An executor gets the ActionContext and the action and returns a summary for the run log. Before the write (the
pending record is `context.pending`) set, block, tags and assign change the values being saved; after it (a manual,
date or scheduled rule, or `run_rule`) they are saved through the record service as a change of the rule's own.
Texts are rendered per reader with only the fields that reader may view.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kartoteka.activity.store import add_entry, create_task, notify
from kartoteka.errors import KartotekaError, RecordValidationError
from kartoteka.messages import Message
from kartoteka.metadata.fieldtypes import FieldValueError
from kartoteka.metadata.model import EntityDef, Label, RuleAction
from kartoteka.records.access import every_field, viewable_fields
from kartoteka.records.hooks import Origin, SaveEvent
from kartoteka.records.model import SYSTEM, Filter, ListQuery, Principal
from kartoteka.records.pipeline import RECORD_ERRORS, Prepared, parse_value
from kartoteka.records.scopes import in_scope, scope_of
from kartoteka.rules import recipients
from kartoteka.rules.outbox import enqueue
from kartoteka.storage.reading import reader
from kartoteka.storage.tables import records, users

if TYPE_CHECKING:
    from kartoteka.rules.engine import RuleEngine
    from kartoteka.rules.runlog import Run

_ADDRESS = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")


class ActionFailed(Exception):
    """An action could not do its work; the rule's run fails with this message and its actions are undone."""


class RuleBlocked(ActionFailed):
    """A `block` action outside a save (a manual rule): the run is refused with the rule's message."""


@dataclass
class ActionContext:
    """What an action works on: the record, the change, the acting user, the transaction (None before the write)."""

    engine: RuleEngine
    conn: sa.Connection | None
    event: SaveEvent
    run: Run
    values: dict[str, Any]
    changed: frozenset[str]
    now: datetime
    record_changes: dict[str, Any] = field(default_factory=dict)
    owner_change: int | None = None

    @property
    def entity(self) -> EntityDef:
        return self.event.entity

    @property
    def pending(self) -> Prepared | None:
        """The record being saved, before the write; None after it."""
        return self.event.prepared if self.conn is None else None

    def child_origin(self) -> Origin:
        """The origin of a save this rule makes: one deeper in the same chain."""
        origin = self.event.origin
        # The batch goes along: the journal tells which import or merge a rule's save answered.
        return Origin("rule", origin.depth + 1, self.event.state.get("chain", origin.chain), rule=self.run.rule.key,
                      batch=origin.batch)

    @contextmanager
    def reading(self) -> Iterator[sa.Connection]:
        """The transaction after the write, or before it when it is open then; else a read connection of its own."""
        if self.conn is not None:
            yield self.conn
        elif self.event.conn is not None:
            yield self.event.conn
        else:
            with reader(self.engine.engine).connect() as conn:
                yield conn

    def owner(self) -> int | None:
        """The record's owner as this save leaves it."""
        if self.owner_change is not None:
            return self.owner_change
        if self.event.owner is not None:
            return self.event.owner
        if self.conn is not None and self.run.record_id is not None and "owner" in self.changed:
            row = self.conn.execute(sa.select(records.c.owner).where(records.c.id == self.run.record_id)).first()
            if row is not None:
                return row.owner  # type: ignore[no-any-return]
        owner = self.event.system.get("owner")
        return owner if isinstance(owner, int) else None

    def change(self, name: str, value: Any) -> None:
        """Set a field of the record: in the pending save, or as a change saved after the actions."""
        pending = self.pending
        if pending is not None:
            pending.values[name] = value
            if value != (self.event.stored or {}).get(name):
                pending.changed.add(name)
            else:
                pending.changed.discard(name)
        else:
            self.record_changes[name] = value
        self.values[name] = value

    def apply_record_changes(self) -> None:
        """Save the changes of set, tags and assign made after the write, through the record service."""
        if self.pending is not None or (not self.record_changes and self.owner_change is None):
            return
        if self.conn is None or self.run.record_id is None:
            return
        service = self.engine._service()
        changes, self.record_changes = self.record_changes, {}
        try:
            service.update(self.entity.name, self.run.record_id, changes, SYSTEM, expected_version=None,
                           connection=self.conn, origin=self.child_origin(), owner=self.owner_change)
        except RecordValidationError as exc:
            raise ActionFailed(f"the record refused the rule's change: {_messages(exc)}") from None
        except KartotekaError as exc:
            raise ActionFailed(str(exc)) from None

    def texts(self, action: RuleAction, reader_: Principal | None, language: str | None = None,
              fields: frozenset[str] | None = None) -> Callable[[str], str]:
        """A renderer of `action`'s templates for `reader_` (None: every field, or `fields`), in their language.
        Each value is its display text, compared as the value it is (`{% if amount > 1000 %}`,
        `{% if stage == 'won' %}`)."""
        entity = self.entity
        visible = fields if fields is not None else every_field(entity) if reader_ is None else viewable_fields(
            entity, reader_)
        lang = language or (reader_.language if reader_ is not None else "en")
        display = self.engine.display
        shown = {name: Shown(display(entity.fields[name], self.values.get(name), lang), self.values.get(name))
                 for name in visible if name in entity.fields}
        base = {**shown, "id": str(self.run.record_id or ""), "entity_label": entity.label.get(lang),
                "url": f"{self.engine.base_url}/cards/{entity.name}/{self.run.record_id}"}
        base["title"] = entity.title.render({n: v for n, v in self.values.items() if n in visible},
                                            lambda n, v: display(entity.fields[n], v, lang) if n in entity.fields
                                            else str(v))

        def render(param: str) -> str:
            template = action.templates.get(param)
            if template is None:
                return ""
            values = base
            if "owner" in template.names and "owner" not in values:
                values = {**base, "owner": _display_name(self, self.owner())}
            return str(template.render(values, lang))

        return render


class Shown(str):
    """A value in a template: written as its display text, compared and tested as the value itself."""

    value: Any

    def __new__(cls, text: str, value: Any) -> Shown:
        made = super().__new__(cls, text)
        made.value = value
        return made

    def _compare(self, other: Any, how: Callable[[Any, Any], bool]) -> bool:
        other = other.value if isinstance(other, Shown) else other
        try:
            return bool(how(self.value, other))
        except TypeError:  # an empty value, or a value of another kind: not ordered, not equal
            return False

    def __eq__(self, other: object) -> bool:
        return self._compare(other, lambda a, b: a == b)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __lt__(self, other: Any) -> bool:
        return self._compare(other, lambda a, b: a < b)

    def __le__(self, other: Any) -> bool:
        return self._compare(other, lambda a, b: a <= b)

    def __gt__(self, other: Any) -> bool:
        return self._compare(other, lambda a, b: a > b)

    def __ge__(self, other: Any) -> bool:
        return self._compare(other, lambda a, b: a >= b)

    def __bool__(self) -> bool:
        return self.value not in (None, "", []) and self.value is not False

    def __hash__(self) -> int:
        return str.__hash__(self)


def _display_name(context: ActionContext, user_id: int | None) -> str:
    if user_id is None:
        return ""
    with context.reading() as conn:
        row = conn.execute(sa.select(users.c.display_name).where(users.c.id == user_id)).first()
    return row.display_name if row is not None else ""


def _messages(exc: RecordValidationError) -> str:
    return "; ".join(f"{name}: {' '.join(str(m) for m in messages)}" for name, messages in exc.errors.items())


def _typed(context: ActionContext, name: str, value: Any) -> Any:
    """`value` as field `name` holds it (metadata literals and expression results alike)."""
    field_def = context.entity.fields[name]
    if value is None:
        return None
    if not isinstance(value, str):  # an expression's result or a typed literal: as a formula's result, if it can be
        try:
            return field_def.type.from_formula(value, field_def)
        except FieldValueError:
            pass
    try:
        return parse_value(field_def, value, context.engine._service().ctx)
    except FieldValueError as exc:
        raise ActionFailed(f"{value!r} is not a value of '{name}': {' '.join(exc.messages)}") from None


# --- before the write (or saved as a change of the rule's own) ------------------------------------------

def run_set(context: ActionContext, action: RuleAction) -> dict[str, Any]:
    name = action.params["field"]
    if action.expr is not None:
        from kartoteka.metadata.expressions import EvaluationError, Evaluator

        values = {**dict(context.event.system), **context.values}
        try:
            raw = Evaluator(values, context.engine.clock).value(action.expr)
        except EvaluationError as exc:
            raise ActionFailed(str(exc)) from None
    else:
        raw = action.params["value"]
    context.change(name, _typed(context, name, raw))
    return {"action": "set", "field": name}


def run_block(context: ActionContext, action: RuleAction) -> dict[str, Any]:
    label = Label.of(action.params["message"])
    pending = context.pending
    if pending is None:
        raise RuleBlocked(label.get(context.event.user.language))
    name = action.params.get("field")
    visible = viewable_fields(context.entity, context.event.user)
    target = name if isinstance(name, str) and name in visible else RECORD_ERRORS
    pending.error(target, Message("rule.blocked", "{label}", label=label))
    return {"action": "block", "field": target}


def _tags(context: ActionContext, action: RuleAction, add: bool) -> dict[str, Any]:
    name = action.params["field"]
    current = list(context.values.get(name) or [])
    tags = [_typed(context, name, [tag]) for tag in action.params["tags"]]
    wanted = [item for tag in tags for item in (tag or [])]
    updated = current + [t for t in wanted if t not in current] if add else [t for t in current if t not in wanted]
    context.change(name, updated or None)
    return {"action": "add_tags" if add else "remove_tags", "field": name}


def _busy(context: ActionContext, action: RuleAction) -> Callable[[Mapping[str, Any]], bool]:
    """Whether a stored record (its JSON) counts as load for `least_loaded` (assign's `busy_if`)."""
    from kartoteka.metadata.expressions import Evaluator

    service = context.engine._service()
    entity = context.entity
    expression = action.expr
    empty = dict.fromkeys(entity.fields)

    def busy(data: Mapping[str, Any]) -> bool:
        values = {**empty, **service.typed_values(entity, data)}
        return expression is not None and Evaluator(values, context.engine.clock).condition(expression)

    return busy


def run_assign(context: ActionContext, action: RuleAction) -> dict[str, Any]:
    params = action.params
    with context.reading() as conn:
        if "user" in params:
            found = recipients.user_by_name(conn, params["user"])
            candidates = [found] if found is not None else []
        elif "role" in params:
            candidates = recipients.users_with_role(conn, params["role"])
        else:
            candidates = recipients.users_in_department(conn, params["department"])
        busy = _busy(context, action) if action.expr is not None else None
        chosen = recipients.pick(conn, context.entity, context.run.rule.key, candidates,
                                 params.get("strategy", "round_robin"), params.get("field"), busy)
    if chosen is None:
        who = params.get("user") or params.get("role") or params.get("department")
        raise ActionFailed(f"nobody to assign to: no active user for '{who}'")
    name = params.get("field")
    if name:
        context.change(name, chosen)
    elif context.pending is not None:
        context.event.owner = chosen
    else:
        context.owner_change = chosen
    return {"action": "assign", "field": name or "owner", "user": chosen}


# --- after the write -------------------------------------------------------------------------------------

def _after(context: ActionContext, name: str) -> sa.Connection:
    if context.conn is None:
        raise ActionFailed(f"'{name}' runs after the record is written")
    return context.conn


def _due(context: ActionContext, params: Mapping[str, Any]) -> datetime | None:
    if "due_in_working_days" in params:
        day, left = context.now, params["due_in_working_days"]
        while left > 0:
            day += timedelta(days=1)
            if day.weekday() < 5:
                left -= 1
        return day.replace(hour=18, minute=0, second=0, microsecond=0)
    if "due_in_days" in params or "due_in_hours" in params:
        return context.now + timedelta(days=params.get("due_in_days", 0), hours=params.get("due_in_hours", 0))
    return None


def run_create_task(context: ActionContext, action: RuleAction) -> dict[str, Any]:
    conn = _after(context, "create_task")
    params = action.params
    if "assignee" in params:
        assignee = recipients.user_by_name(conn, params["assignee"])
        if assignee is None:
            raise ActionFailed(f"no active user '{params['assignee']}' to give the task to")
    elif "assignee_field" in params:
        held = context.values.get(params["assignee_field"])
        assignee = held if isinstance(held, int) else context.owner()
    else:
        assignee = context.owner()
    reader_ = recipients.principals(conn, [assignee]).get(assignee) if assignee is not None else None
    # Whoever may read the card sees its tasks: the texts show only the fields all of them may view.
    render = context.texts(action, reader_, fields=context.engine.common_fields(context.entity))
    task = create_task(conn, title=render("title") or context.run.rule.name, description=render("description"),
                       assignee=assignee, due_at=_due(context, params), entity=context.entity.name,
                       record_id=context.run.record_id, created_by=context.event.user.id,
                       rule_key=context.run.rule.key, now=context.now)
    return {"action": "create_task", "task": task, "assignee": assignee}


def run_notify(context: ActionContext, action: RuleAction) -> dict[str, Any]:
    conn = _after(context, "notify")
    params = action.params
    names = set(params.get("users") or [])
    role = params.get("role")
    owner = context.owner() if params.get("owner") else None
    people = {row.id: recipients.principal_of(row) for row in recipients.active_users(conn)  # one query for all
              if row.username in names or (role is not None and role in (row.roles or ())) or row.id == owner}
    record_owner = context.owner()
    metadata = context.engine.metadata
    # Only those who may read the record hear of it (a rep whose scope is his own deals is not told of others').
    people = {user_id: person for user_id, person in people.items()
              if in_scope(conn, scope_of(metadata, person, context.entity, "read"), person, record_owner)}
    for user_id, person in people.items():
        notify(conn, user_id=user_id, text=context.texts(action, person)("message"), entity=context.entity.name,
               record_id=context.run.record_id, rule_key=context.run.rule.key, now=context.now)
    return {"action": "notify", "users": sorted(people)}


def run_email(context: ActionContext, action: RuleAction) -> dict[str, Any]:
    conn = _after(context, "email")
    consent = action.params.get("consent")
    if consent is not None:
        given = context.values.get(consent)
        if not (isinstance(given, Mapping) and given.get("given") is True):
            return {"action": "email", "skipped": "no consent", "field": consent}
    # The address from every field (the rule sends it whoever saved); the text only with what the saver may view
    # (else a rep who may set an address field could mail herself a margin she may not view).
    address = context.texts(action, None)
    render = context.texts(action, context.event.user)
    to = address("to")
    addresses = [a.strip() for a in re.split(r"[,;]", to) if a.strip()]
    bad = [a for a in addresses if not _ADDRESS.match(a)]
    if bad or not addresses:
        raise ActionFailed(f"no address to send to: 'to' gave '{to}'" if not addresses
                           else f"'{bad[0]}' is not an e-mail address")
    subject, body = render("subject"), render("body")
    delivery = enqueue(conn, kind="email", destination=", ".join(addresses),
                       payload={"to": addresses, "subject": subject, "body": body}, now=context.now,
                       entity=context.entity.name, record_id=context.run.record_id, rule_key=context.run.rule.key)
    if context.run.record_id is not None:
        # On the card's timeline, what everyone who may read the card may see: parts written from other fields are
        # left out (the e-mail itself went out whole).
        common = context.engine.common_fields(context.entity)
        safe = {param: not (template.names & (context.entity.fields.keys() - common))
                for param, template in action.templates.items()}
        payload: dict[str, Any] = {"delivery": delivery, "rule_key": context.run.rule.key}
        if safe.get("to"):
            payload["to"] = addresses
        if safe.get("subject"):
            payload["subject"] = subject
        add_entry(conn, entity=context.entity.name, record_id=context.run.record_id, kind="email", now=context.now,
                  body=body[:10000] if safe.get("body") else "", user_id=context.event.user.id, payload=payload)
    return {"action": "email", "delivery": delivery}


def run_webhook(context: ActionContext, action: RuleAction) -> dict[str, Any]:
    conn = _after(context, "webhook")
    params = action.params
    entity = context.entity
    names = params.get("fields") or list(entity.fields)
    service = context.engine._service()
    stored = service.storage_json(entity, {n: context.values.get(n) for n in names})
    event_type = params.get("event") or f"{entity.name}.{context.run.trigger}"
    data = {"entity": entity.name, "id": context.run.record_id, "trigger": context.run.trigger,
            "rule": context.run.rule.key, "record": stored}
    delivery = enqueue(conn, kind="webhook", destination=params["url"], now=context.now, entity=entity.name,
                       record_id=context.run.record_id, rule_key=context.run.rule.key,
                       payload={"type": event_type, "timestamp": context.now.isoformat(), "data": data,
                                "secret_env": params.get("secret_env")})
    return {"action": "webhook", "delivery": delivery}


def run_create_record(context: ActionContext, action: RuleAction) -> dict[str, Any]:
    conn = _after(context, "create_record")
    params = action.params
    target = params["entity"]
    render = context.texts(action, context.event.user)
    values: dict[str, Any] = {}
    for name, value in (params.get("values") or {}).items():
        values[name] = render(f"values.{name}") if isinstance(value, str) else value
    for name, source in (params.get("copy") or {}).items():
        if context.values.get(source) not in (None, "", []):
            values[name] = context.values[source]
    if params.get("link"):
        values[params["link"]] = context.run.record_id
    service = context.engine._service()
    found = _matching(context, conn, target, params.get("match") or [], values)
    if found is None:
        try:
            found = service.create(target, values, SYSTEM, owner=context.owner(), connection=conn,
                                   origin=context.child_origin()).id
        except RecordValidationError as exc:
            raise ActionFailed(f"the new {target} was refused: {_messages(exc)}") from None
        except KartotekaError as exc:
            raise ActionFailed(str(exc)) from None
        made = "created"
    else:
        made = "matched"
    if params.get("link_back"):
        context.change(params["link_back"], found)
    return {"action": "create_record", "entity": target, "id": found, "result": made}


def _matching(context: ActionContext, conn: sa.Connection, target: str, names: list[str],
              values: Mapping[str, Any]) -> int | None:
    """The live record of `target` holding the same value of the first of `names` that finds one (`[inn, name]`: the
    company with this INN, else the one of this name; a list field: holding its first item)."""
    service = context.engine._service()
    entity = service.entity(target)
    for name in names:
        value = values.get(name)
        if value in (None, "", []):
            continue
        if entity.fields[name].is_list:
            found = Filter(name, "contains", str(value[0] if isinstance(value, list) else value))
        else:
            found = Filter(name, "eq", str(value))
        try:
            # Within what the user whose change fired the rule may read: a record they may not see is not linked (nor
            # its existence told by a 'matched').
            page = service.list(target, context.event.user, ListQuery(filters=(found,), sort="id", limit=1))
        except KartotekaError:
            continue  # a value the field cannot be filtered by matches nothing; the create says what is wrong
        if page.items:
            return page.items[0].id
    return None


def run_run_rule(context: ActionContext, action: RuleAction) -> dict[str, Any]:
    _after(context, "run_rule")
    target = context.engine.rule(context.entity, action.params["rule"])
    if target is None:
        raise ActionFailed(f"no rule '{action.params['rule']}' on {context.entity.name}")
    return context.engine.run_within(context, target)


EXECUTORS: dict[str, Callable[[ActionContext, RuleAction], dict[str, Any]]] = {
    "set": run_set,
    "block": run_block,
    "add_tags": lambda context, action: _tags(context, action, add=True),
    "remove_tags": lambda context, action: _tags(context, action, add=False),
    "assign": run_assign,
    "create_task": run_create_task,
    "notify": run_notify,
    "email": run_email,
    "webhook": run_webhook,
    "create_record": run_create_record,
    "run_rule": run_run_rule,
}
