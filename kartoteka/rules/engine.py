"""The rules engine: runs the rules of the cards at the record service's stages (docs/automation.md).

Order of one save: parse and merge → before-save rules (their `set`, `block`, tags and `assign` act on the pending
record) → formulas, visibility, validation → write → after-save rules and the other actions of the before-save
rules, in the same transaction, each rule in a savepoint of its own → commit → the outbox is delivered by
`kartoteka worker`. A rule fires at most once per record per originating save; saves made by rules carry the
chain on, and at `max_depth` rule-made saves the chain stops, with a `stopped` entry in the run log.
"""

from __future__ import annotations

import ast
from collections import ChainMap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from kartoteka.metadata.actions import AFTER, BEFORE
from kartoteka.metadata.expressions import Clock, EvaluationError, Evaluator
from kartoteka.metadata.model import EntityDef, FieldDef, Metadata, RuleDef
from kartoteka.records.access import viewable_fields
from kartoteka.records.hooks import Origin, SaveEvent
from kartoteka.records.model import Principal
from kartoteka.rules.actions import EXECUTORS, ActionContext, ActionFailed, RuleBlocked
from kartoteka.rules.runlog import RuleStates, Run, write_runs
from kartoteka.storage.database import hold_transaction

if TYPE_CHECKING:
    from kartoteka.records.service import Change, RecordService

DEFAULT_MAX_DEPTH = 3
_SYSTEM_NAMES = frozenset({"id", "owner", "created_at", "updated_at"})
DEFAULT_FAILURE_LIMIT = 5

Display = Callable[[FieldDef, Any, str], str]


def plain_display(field_def: FieldDef, value: Any, language: str) -> str:
    """A value as text without locale formatting (the app passes its own formatter)."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


@dataclass
class Chain:
    """One originating save's rule runs: which rule fired on which record (each at most once)."""

    fired: set[tuple[str, object, str]] = field(default_factory=set)


class RuleEngine:
    """Implements the record service's SaveHooks with the cards' rules; also runs manual, date and scheduled rules."""

    def __init__(self, metadata: Metadata, clock: Clock, engine: sa.Engine, *, display: Display = plain_display,
                 max_depth: int = DEFAULT_MAX_DEPTH, failure_limit: int = DEFAULT_FAILURE_LIMIT,
                 base_url: str = "") -> None:
        self.metadata = metadata
        self.clock = clock
        self.engine = engine
        self.display = display
        self.max_depth = max_depth
        self.base_url = base_url.rstrip("/")
        self.states = RuleStates(engine, failure_limit, metadata.superusers)
        self.service: RecordService | None = None
        self._before: dict[str, tuple[RuleDef, ...]] = {}
        self._after: dict[str, tuple[RuleDef, ...]] = {}
        self._dated: dict[str, tuple[RuleDef, ...]] = {}
        self._common: dict[str, frozenset[str]] = {}
        for name, entity in metadata.entities.items():
            save = [r for r in entity.rules if r.trigger.kind == "save"]
            self._before[name] = tuple(r for r in save if r.stage == BEFORE)
            self._after[name] = tuple(r for r in save if r.stage == AFTER)
            self._dated[name] = tuple(r for r in entity.rules if r.trigger.kind == "date" and r.enabled)

    def attach(self, service: RecordService) -> RuleEngine:
        """Make `service` call this engine at its stages (and this engine save through it)."""
        self.service = service
        service.hooks = self
        return self

    def common_fields(self, entity: EntityDef) -> frozenset[str]:
        """The fields everyone who may read `entity` may view, whatever their role and department: what a text seen
        by all its readers (a task on the card, the timeline) may show."""
        found = self._common.get(entity.name)
        if found is None:
            metadata = self.metadata
            departments: list[str | None] = [None, *metadata.departments]
            found = frozenset(entity.fields)
            for role in metadata.roles or ():
                roles = frozenset({role})
                if metadata.is_superuser(roles) or metadata.permissions.scope(roles, entity.name, "read") == "none":
                    continue
                for department in departments:
                    found &= viewable_fields(entity, Principal(None, "", roles, department))
            self._common[entity.name] = found
        return found

    def dated(self, entity: EntityDef) -> tuple[RuleDef, ...]:
        """The enabled date rules of `entity`."""
        return self._dated.get(entity.name, ())

    def rule(self, entity: EntityDef, key: str) -> RuleDef | None:
        """The rule of `entity` called `key`, or None."""
        return next((r for r in entity.rules if r.key == key), None)

    # --- the record service's stages -------------------------------------------------------------

    def wants(self, entity: EntityDef, origin: Origin) -> bool:
        """True when a save of `entity` has rules to consider."""
        name = entity.name
        if self._dated.get(name):  # date timers follow every save, even one that skips automation (an import)
            return True
        return origin.automation and bool(self._before.get(name) or self._after.get(name))

    def before_save(self, event: SaveEvent) -> None:
        """Before-save rules: conditions over the pending values; set, block, tags and assign act on them."""
        prepared = event.prepared
        rules = self._before.get(event.entity.name, ())
        if prepared is None or not rules or not event.origin.automation:
            return
        chain = _chain(event)
        changed = frozenset(prepared.changed)
        values: Mapping[str, Any] = ChainMap(prepared.values, dict(event.system))
        for rule in rules:
            if not self._considered(rule, event, changed, event.stored, prepared.values, chain):
                continue
            # Before-save rules run at any depth: they refuse or change the record being saved and make no save of
            # their own (the depth limit stops their after-save actions, which do).
            run = self._start(rule, event, event.record_id, limited=False)
            if not self._holds(rule, run, values, event, changed):
                continue
            context = self._context(None, event, run, prepared.values, changed)
            # All of a rule's changes, or none: a later action that fails leaves the pending record as it was.
            kept = (dict(prepared.values), set(prepared.changed), {k: list(v) for k, v in prepared.errors.items()},
                    event.owner)
            for action in rule.actions:
                if action.stage != BEFORE:
                    continue
                try:
                    run.actions.append(EXECUTORS[action.name](context, action))
                except ActionFailed as exc:
                    prepared.values.clear()
                    prepared.values.update(kept[0])
                    prepared.changed.clear()
                    prepared.changed.update(kept[1])
                    prepared.errors.clear()
                    prepared.errors.update(kept[2])
                    event.owner = kept[3]
                    run.fail(f"{action.name}: {exc}")
                    break
            changed = frozenset(prepared.changed)

    def after_write(self, conn: sa.Connection, change: Change, event: SaveEvent) -> None:
        """The rest of the before-save rules' actions, then the after-save rules; the run log; date timers."""
        from kartoteka.rules.timers import schedule_timers  # one floor up the same package: timers read the engine

        if not event.origin.automation:
            schedule_timers(self, conn, change)
            return
        chain = _chain(event)
        runs = _runs(event)
        after = change.after if change.after is not None else change.before or {}
        limited = event.origin.depth >= self.max_depth
        work: list[tuple[Run, str | None]] = []
        for run in list(runs):  # the before-save rules' runs
            run.record_id = change.record_id
            if run.result != "skipped":
                chain.fired.add((event.entity.name, change.record_id, run.rule.key))
            if run.result == "done" and any(a.stage == AFTER for a in run.rule.actions):
                if limited:
                    self._stop(run, event)
                else:
                    work.append((run, AFTER))
        values: Mapping[str, Any] = ChainMap(dict(after), dict(event.system), {"id": change.record_id})
        for rule in self._after.get(event.entity.name, ()):
            if not self._considered(rule, event, change.changed, change.before, after, chain, change.record_id):
                continue
            run = self._start(rule, event, change.record_id)
            if self._holds(rule, run, values, event, change.changed):
                work.append((run, None))
        if work:
            self._execute_all(conn, work, event, after, change.changed)
        schedule_timers(self, conn, change)
        write_runs(conn, [r for r in runs if r.result != "skipped"], self.clock.now(), self.states)

    def preview(self, event: SaveEvent, changed: frozenset[str]) -> tuple[str, ...]:
        """The names of the save rules a save of the event's pending values would fire (their triggers and
        conditions over the values as the form has them; nothing runs)."""
        prepared = event.prepared
        if prepared is None:
            return ()
        values: Mapping[str, Any] = ChainMap(prepared.values, dict(event.system))
        names = []
        functions = None
        visible = viewable_fields(event.entity, event.user)
        for rule in (*self._before.get(event.entity.name, ()), *self._after.get(event.entity.name, ())):
            if not rule.enabled or not triggered(rule, event.kind, changed, event.stored, prepared.values):
                continue
            if not condition_fields(rule) <= visible | _SYSTEM_NAMES:
                continue  # whether it holds would tell of fields the user may not view
            if rule.condition is not None:
                functions = functions or change_functions(self.clock, event.kind, values, event.stored, changed,
                                                          event.user, event.origin.source)
                try:
                    if not Evaluator(values, self.clock, functions).value(rule.condition):
                        continue
                except EvaluationError:
                    continue
            if not self.states.disabled(event.entity.name, rule.key):
                names.append(rule.name)
        return tuple(names)

    # --- one rule ------------------------------------------------------------------------------

    def _considered(self, rule: RuleDef, event: SaveEvent, changed: frozenset[str], before: Mapping[str, Any] | None,
                    after: Mapping[str, Any], chain: Chain, record_id: int | None = None) -> bool:
        """Enabled, triggered by this save, and not yet fired on this record in this chain."""
        if not rule.enabled or not triggered(rule, event.kind, changed, before, after):
            return False
        if self.states.disabled(event.entity.name, rule.key):  # read from the database: only for a rule triggered
            return False
        return (event.entity.name, _record_key(event, record_id), rule.key) not in chain.fired

    def _start(self, rule: RuleDef, event: SaveEvent, record_id: int | None, *, limited: bool = True) -> Run:
        """A run of `rule` in the event's log; `stopped` past the depth limit (unless not `limited`)."""
        run = Run(rule, event.entity.name, record_id, event.kind, event.origin.source, event.origin.depth,
                  event.user.id)
        _runs(event).append(run)
        if limited and event.origin.depth >= self.max_depth:
            self._stop(run, event)
        return run

    def _stop(self, run: Run, event: SaveEvent) -> None:
        """Mark `run` stopped by the depth limit, and fired in the chain (it is not considered again)."""
        run.result = "stopped"
        run.error = (f"the chain of rule-made saves reached its limit of {self.max_depth} (last made by rule "
                     f"'{event.origin.rule}'); this rule's actions that follow the save did not run")
        _chain(event).fired.add((event.entity.name, _record_key(event, run.record_id), run.rule.key))

    def _holds(self, rule: RuleDef, run: Run, values: Mapping[str, Any], event: SaveEvent,
               changed: frozenset[str]) -> bool:
        """The rule's condition on `values`; a condition that cannot be evaluated fails the run (logged)."""
        if run.result != "done":  # stopped
            return False
        if rule.condition is not None:
            functions = change_functions(self.clock, event.kind, values, event.stored, changed, event.user,
                                         event.origin.source)
            try:
                held = Evaluator(values, self.clock, functions).value(rule.condition)
            except EvaluationError as exc:
                prior = event.stored or {}
                if any(prior.get(name) is None for name in condition_fields(rule) if name in event.entity.fields):
                    held = None  # over an empty value before the change (prior()): false, as over an empty one now
                else:
                    run.fail(f"condition: {exc}")
                    return False
            if not held:
                run.result = "skipped"
                return False
        _chain(event).fired.add((event.entity.name, _record_key(event, run.record_id), rule.key))
        return True

    def _execute_all(self, conn: sa.Connection, work: list[tuple[Run, str | None]], event: SaveEvent,
                     values: Mapping[str, Any], changed: frozenset[str]) -> None:
        """Every rule's actions of a save in one savepoint (two statements, not two per rule); when one fails, all
        are undone and each rule runs again in a savepoint of its own, so the others still do their work."""
        hold_transaction(conn)
        chain = _chain(event)
        marks = set(chain.fired)  # what the chain knew before: the undone pass's saves must not count as fired
        try:
            with conn.begin_nested():
                summaries = [self._actions(self._context(conn, event, run, dict(values), changed), run, stage)
                             for run, stage in work]
        except Exception:  # which rule failed, and why, is found and logged one rule at a time
            chain.fired.intersection_update(marks)
            for run, stage in work:
                self._execute(conn, run, event, values, changed, stage)
            return
        for (run, _stage), done in zip(work, summaries, strict=True):
            run.actions.extend(done)

    @staticmethod
    def _actions(context: ActionContext, run: Run, stage: str | None) -> list[dict[str, Any]]:
        """Run the rule's actions of `stage` (None: all); their summaries. Raises what an action raises."""
        done: list[dict[str, Any]] = []
        for action in run.rule.actions:
            if stage is None or action.stage == stage:
                done.append(EXECUTORS[action.name](context, action))
        # What the actions changed of the record itself, saved at once (a field shown only once another is set
        # would be emptied by a save of the first alone).
        context.apply_record_changes()
        return done

    def _execute(self, conn: sa.Connection, run: Run, event: SaveEvent, values: Mapping[str, Any],
                 changed: frozenset[str], stage: str | None) -> None:
        """The rule's actions of `stage` (None: all) in a savepoint: a failure undoes them and is logged."""
        context = self._context(conn, event, run, dict(values), changed)
        hold_transaction(conn)
        chain = _chain(event)
        marks = set(chain.fired)
        try:
            with conn.begin_nested():
                done = self._actions(context, run, stage)
        except RuleBlocked as exc:
            chain.fired.intersection_update(marks)
            run.result, run.error = "blocked", str(exc)[:2000]
            return
        except ActionFailed as exc:
            chain.fired.intersection_update(marks)
            run.fail(str(exc))
            return
        except Exception as exc:  # a rule never turns a save into a server error; it is logged
            chain.fired.intersection_update(marks)
            run.fail(f"{type(exc).__name__}: {exc}")
            return
        run.actions.extend(done)

    def _context(self, conn: sa.Connection | None, event: SaveEvent, run: Run, values: dict[str, Any],
                 changed: frozenset[str]) -> ActionContext:
        return ActionContext(self, conn, event, run, values, changed, self.clock.now())

    # --- runs outside a save: manual, date and scheduled rules ---------------------------------------

    def run_on_record(self, conn: sa.Connection, entity: EntityDef, rule: RuleDef, record_id: int, user: Principal,
                      origin: Origin, trigger: str) -> Run:
        """Run `rule` on a stored record now (manual button, due date, schedule): condition, then every action;
        changes to the record itself are saved through the record service. The run is logged."""
        service = self._service()
        hold_transaction(conn, immediate=True)  # two runs at once (a double click): the second reads what the first did
        row = service.stored(conn, entity, record_id, lock=True)
        if row is None:
            run = Run(rule, entity.name, record_id, trigger, origin.source, origin.depth, user.id)
            run.fail("the record no longer exists")
            write_runs(conn, [run], self.clock.now(), self.states)
            return run
        values, system = row
        chain = origin.chain if isinstance(origin.chain, Chain) else Chain()
        origin = Origin(origin.source, origin.depth, chain, origin.automation, origin.rule)
        event = SaveEvent(trigger, entity, user, origin, values, system, record_id=record_id)
        run = self._start(rule, event, record_id)
        if self._holds(rule, run, ChainMap(dict(values), dict(system)), event, frozenset()):
            self._execute(conn, run, event, values, frozenset(), None)
        write_runs(conn, [run], self.clock.now(), self.states)
        return run

    def run_within(self, context: ActionContext, rule: RuleDef) -> dict[str, Any]:
        """`run_rule`: another rule on the same record inside this run (once per chain); its summary."""
        event = context.event
        key = (event.entity.name, context.run.record_id, rule.key)
        chain = _chain(event)
        summary: dict[str, Any] = {"action": "run_rule", "rule": rule.key}
        if key in chain.fired:
            return {**summary, "result": "already ran in this chain"}
        chain.fired.add(key)
        if not rule.enabled or self.states.disabled(event.entity.name, rule.key):
            return {**summary, "result": "disabled"}
        if rule.condition is not None:
            values = ChainMap(context.values, dict(event.system), {"id": context.run.record_id})
            functions = change_functions(self.clock, event.kind, values, event.stored, context.changed, event.user,
                                         event.origin.source)
            try:
                held = Evaluator(values, self.clock, functions).value(rule.condition)
            except EvaluationError as exc:
                raise ActionFailed(f"condition of '{rule.key}': {exc}") from None
            if not held:
                return {**summary, "result": "skipped"}
        done = []
        for action in rule.actions:
            done.append(EXECUTORS[action.name](context, action))
        return {**summary, "actions": done}

    def applies(self, conn: sa.Connection, entity: EntityDef, rule: RuleDef, record_id: int, user: Principal) -> bool:
        """Would `rule` run on the stored record now: enabled, not disabled for failing, its condition holding (the
        card shows only the buttons that will do something)."""
        if not rule.enabled or self.states.disabled(entity.name, rule.key):
            return False
        if rule.condition is None or not condition_fields(rule) <= viewable_fields(entity, user) | _SYSTEM_NAMES:
            return True  # shown whatever fields the user may not view hold (running it says whether it applies)
        row = self._service().stored(conn, entity, record_id)
        if row is None:
            return False
        values, system = row
        merged = ChainMap(dict(values), dict(system))
        functions = change_functions(self.clock, "manual", merged, values, frozenset(), user, "manual")
        try:
            return bool(Evaluator(merged, self.clock, functions).value(rule.condition))
        except EvaluationError:
            return True  # running it says what is wrong

    def _service(self) -> RecordService:
        if self.service is None:
            raise RuntimeError("the rules engine is not attached to a record service (RuleEngine.attach)")
        return self.service


def _record_key(event: SaveEvent, record_id: int | None) -> object:
    """The record a chain mark is about: its id, or for a record being created (no id yet) the save itself."""
    if record_id is not None:
        return record_id
    if event.record_id is not None:
        return event.record_id
    # A token of this save, kept alive by the chain's set that holds it (id(event) could be reused by the next one).
    token: object = event.state.setdefault("new_record", ("new", object()))
    return token


def condition_fields(rule: RuleDef) -> frozenset[str]:
    """The fields `rule`'s condition reads: its names, and the fields named in quotes to prior(), is_changed(),
    changed_from() and changed_to()."""
    condition = rule.condition
    if condition is None:
        return frozenset()
    named = {node.args[0].value for node in ast.walk(condition.tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
             and node.func.id in ("prior", "is_changed", "changed_from", "changed_to") and node.args
             and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)}
    return frozenset(condition.names | named)


def _runs(event: SaveEvent) -> list[Run]:
    runs: list[Run] = event.state.setdefault("runs", [])
    return runs


def _chain(event: SaveEvent) -> Chain:
    chain = event.state.get("chain")
    if chain is None:
        chain = event.origin.chain if isinstance(event.origin.chain, Chain) else Chain()
        event.state["chain"] = chain
    return chain  # type: ignore[no-any-return]


def triggered(rule: RuleDef, kind: str, changed: frozenset[str], before: Mapping[str, Any] | None,
              after: Mapping[str, Any]) -> bool:
    """Does a save of `kind` changing `changed` fire `rule`'s trigger (a save trigger: the engine keeps no other
    kind among the rules it considers for saves)?"""
    trigger = rule.trigger
    events = trigger.events
    if kind in events and not (kind == "updated" and trigger.fields and changed.isdisjoint(trigger.fields)):
        return True
    if "changed" in events and trigger.field in changed and kind in ("created", "updated"):
        old = (before or {}).get(trigger.field) if kind == "updated" else None
        new = after.get(trigger.field) if trigger.field is not None else None
        return ((trigger.from_values is None or old in trigger.from_values)
                and (trigger.to_values is None or new in trigger.to_values))
    return False


def change_functions(clock: Clock, kind: str, values: Mapping[str, Any], stored: Mapping[str, Any] | None,
                     changed: frozenset[str], user: Principal, source: str) -> Mapping[str, Callable[..., Any]]:
    """The functions a rule condition calls: the clock's, and those telling about this change."""
    prior = stored or {}
    is_new = kind == "created"

    def is_changed(name: str) -> bool:
        return name in changed

    functions: dict[str, Callable[..., Any]] = {
        "is_new": lambda: is_new,
        "is_changed": is_changed,
        "prior": lambda name: prior.get(name),
        "changed_from": lambda name, value: is_changed(name) and prior.get(name) == value,
        "changed_to": lambda name, value: is_changed(name) and values.get(name) == value,
        "has_role": lambda role: role in user.roles,
        "source": lambda: source,
    }
    return ChainMap(functions, clock.functions)  # type: ignore[arg-type]

