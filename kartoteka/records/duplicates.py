"""Likely duplicates of a card, by its `duplicates:` rules (docs/metadata.md#duplicates): before a save, the live
records a save of some values would repeat (`candidates`), and over existing data, the groups of records that repeat
one another (`groups`).

Exact rules look records up by equal stored values through indexes (storage/duplicate_keys.py: a key column, a JSON
expression index, or for a list of phones a GIN index on PostgreSQL and position indexes on SQLite); fuzzy rules
score a text with rapidfuzz against a *block* only: the records sharing the rule's `same` values (the same company),
or without `same` those whose text begins with the same `prefix` letters. No rule compares every pair of records.

Only what the user may read takes part: records within their read scope (records/scopes.py) and rules whose fields
they may all view (records/access.py); a candidate shows only the `show` fields they may view. A rep never learns that
a record outside their scope, or a value in a field hidden from them, repeats what they type.

Pure of Flask: the API, the web form and `kartoteka duplicates` call it alike.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import product
from typing import Any

import orjson
import sqlalchemy as sa
from rapidfuzz import fuzz, process, utils

from kartoteka.metadata.fieldtypes import FieldValueError, ParseContext
from kartoteka.metadata.model import DuplicateRule, EntityDef, FieldDef
from kartoteka.records.access import viewable_fields
from kartoteka.records.model import Principal
from kartoteka.records.pipeline import parse_value
from kartoteka.records.query import QueryBuilder
from kartoteka.records.scopes import readable_where
from kartoteka.records.service import RecordService
from kartoteka.storage.database import fold
from kartoteka.storage.duplicate_keys import POSITIONS, JsonItem, more_items
from kartoteka.storage.json_sql import JsonArrayContains, JsonValue
from kartoteka.storage.reading import reader
from kartoteka.storage.tables import records

# At most this many candidates answer a save (the best first): enough to recognise the record, little to read.
CANDIDATE_LIMIT = 10
# A fuzzy rule scores at most this many records of one block before a save (the first by id); a block larger than
# this (a company of thousands of contacts) is scored on its first part only.
BLOCK_LIMIT = 5_000
# `groups` reads the card this many records at a time.
READ_BATCH = 5_000

_SCORERS = {name: getattr(fuzz, name) for name in
            ("token_sort_ratio", "token_set_ratio", "ratio", "partial_ratio", "WRatio", "QRatio")}


@dataclass(frozen=True)
class Match:
    """Why two records look alike: the rule (its key, kind and fields), its score (100 for equal values) and, for an
    exact rule, the values they share (of fields the reader may view: a rule they may not view never matches)."""

    rule: str
    kind: str
    fields: tuple[str, ...]
    score: int
    values: tuple[Any, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """The match as the API writes it."""
        body: dict[str, Any] = {"rule": self.rule, "kind": self.kind, "fields": list(self.fields),
                                "score": self.score}
        if self.values:
            body["values"] = list(self.values)
        return body


@dataclass
class Candidate:
    """A live record that likely duplicates another: its id, title and owner, the `show` fields the reader may view
    (typed values), and every rule that matched."""

    id: int
    title: str
    owner: int | None
    show: dict[str, Any] = field(default_factory=dict)
    matches: list[Match] = field(default_factory=list)

    @property
    def score(self) -> int:
        """The best score of its matches."""
        return max((m.score for m in self.matches), default=0)

    def as_json(self, entity: EntityDef) -> dict[str, Any]:
        """The candidate as the API writes it (values as the record's own JSON writes them)."""
        return {"id": self.id, "title": self.title, "owner": self.owner, "score": self.score,
                "show": {name: _json_value(entity.fields[name], value) for name, value in self.show.items()},
                "matches": [m.as_json() for m in self.matches]}


@dataclass
class Group:
    """Records of a card that likely repeat one another: the members (lowest id first), and the matches that joined
    them, each between `ids` (an exact rule: every member sharing the value; a fuzzy one: a pair)."""

    members: list[Candidate]
    links: list[tuple[tuple[int, ...], Match]]

    def as_json(self, entity: EntityDef) -> dict[str, Any]:
        """The group as the API writes it."""
        return {"ids": [m.id for m in self.members],
                "members": [{k: v for k, v in m.as_json(entity).items() if k not in ("score", "matches")}
                            for m in self.members],
                "matches": [{**match.as_json(), "ids": list(ids)} for ids, match in self.links]}


def _process(text: str) -> str:
    """A text as fuzzy rules compare it: case-folded, ё read as е, punctuation as spaces, trimmed."""
    return utils.default_process(fold(text))


def _json_value(field_def: FieldDef, value: Any) -> Any:
    if value is None:
        return None
    value_type = field_def.value_type
    return [value_type.to_json(v) for v in value] if field_def.is_list else value_type.to_json(value)


def readable_rules(entity: EntityDef, user: Principal) -> tuple[DuplicateRule, ...]:
    """The card's rules whose every field the user may view (the others tell them nothing)."""
    visible = viewable_fields(entity, user)
    return tuple(rule for rule in entity.duplicates.rules if rule.reads <= visible)


def _items(value: Any) -> list[Any]:
    if value is None or value == "" or value == []:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def rule_inputs(entity: EntityDef) -> frozenset[str]:
    """The fields whose values the card's rules depend on: those they read, and the inputs of formulas among them
    (first_name and last_name for full_name)."""
    found: set[str] = set()
    waiting = [n for rule in entity.duplicates.rules for n in rule.reads]
    while waiting:
        name = waiting.pop()
        if name in found:
            continue
        found.add(name)
        expr = entity.fields[name].expr
        if expr is not None:
            waiting.extend(n for n in expr.names if n in entity.fields)
    return frozenset(found)


def worth_asking(entity: EntityDef, values: Mapping[str, Any], ctx: ParseContext,
                 changed: Iterable[str] | None = None) -> bool:
    """Whether a save of `values` may find duplicates, decided without reading the database: the card has rules, the
    save sets a field they depend on (`changed`: those the user altered, when the caller knows; else every field sent),
    and each such value parses (else the save refuses it, and answers with its own errors in its one run)."""
    if not entity.duplicates.rules:
        return False
    touched = rule_inputs(entity) & set(values if changed is None else changed)
    if not touched:
        return False
    for name in touched:
        field_def = entity.fields[name]
        if field_def.is_formula or name not in values:
            continue
        try:
            parse_value(field_def, values[name], ctx)
        except (FieldValueError, TypeError, ValueError):
            return False
    return True


# --- before a save --------------------------------------------------------------------------------------------


def candidates(service: RecordService, entity_name: str, values: Mapping[str, Any], user: Principal,
               record_id: int | None = None, *, limit: int = CANDIDATE_LIMIT, changed_only: bool = True,
               for_save: bool = True) -> list[Candidate]:
    """The live records a save of `values` (raw input, as a save takes it) would likely duplicate, best first.

    The values are evaluated as the save would (parsed, normalised, formulas computed) through the record service;
    with `for_save`, values the save would refuse find nothing (the save reports them); without it (a search by some
    values: a phone alone), whatever parsed is looked for. `record_id`: the record being changed (never
    its own duplicate); with `changed_only` only rules reading a field the change alters take part, so that editing a
    card already known to repeat another does not ask again and again (without it: the record's duplicates).
    """
    entity = service.entity(entity_name)
    rules = readable_rules(entity, user)
    readable = readable_where(service.metadata, user, entity)
    if not rules or readable is None:
        return []
    state = service.evaluate(entity.name, values, user, record_id)
    if for_save and state.errors:
        return []
    typed = state.values
    if record_id is not None and changed_only:
        saved = state.saved or {}
        changed = {n for n in typed.keys() | saved.keys() if typed.get(n) != saved.get(n)}
        rules = tuple(r for r in rules if r.reads & changed)
    found: dict[int, Candidate] = {}
    query = QueryBuilder(entity, service.dialect, service.ctx, entity.fields, service.key_columns(entity))
    with reader(service.engine).connect() as conn:
        for rule in rules:
            if rule.kind == "exact":
                _exact_candidates(conn, query, entity, rule, typed, readable, record_id, found)
            else:
                _fuzzy_candidates(conn, query, entity, rule, typed, readable, record_id, found)
        best = sorted(found.values(), key=lambda c: (-c.score, c.id))[:limit]
        _fill_shown(conn, service, entity, user, best)
    return best


_ROW = (records.c.id, records.c.title, records.c.owner)


def _exact_candidates(conn: sa.Connection, query: QueryBuilder, entity: EntityDef, rule: DuplicateRule,
                      typed: Mapping[str, Any], readable: Sequence[sa.ColumnElement[bool]], record_id: int | None,
                      found: dict[int, Candidate]) -> None:
    """Records sharing a value of every field of the rule: one indexed lookup per value of its first field."""
    wanted = {name: _items(typed.get(name)) for name in rule.fields}
    if not all(wanted.values()):
        return
    first, *others = rule.fields
    narrowing = [sa.or_(*_equal(query, entity.fields[n], wanted[n])) for n in others]
    if record_id is not None:
        narrowing.append(records.c.id != record_id)
    selects = [sa.select(*_ROW, records.c.data).where(*readable, clause, *narrowing)
               for clause in _equal(query, entity.fields[first], wanted[first])]
    statement = selects[0] if len(selects) == 1 else sa.union(*selects)
    for row in conn.execute(statement):
        data = row.data if isinstance(row.data, dict) else orjson.loads(row.data)
        shared = tuple(v for n in rule.fields for v in _items(data.get(n)) if v in _stored(entity, n, wanted[n]))
        candidate = found.setdefault(row.id, Candidate(row.id, row.title, row.owner))
        candidate.matches.append(Match(rule.key, "exact", rule.fields, 100, shared))


def _stored(entity: EntityDef, name: str, values: Iterable[Any]) -> list[Any]:
    value_type = entity.fields[name].value_type
    return [value_type.to_storage(v) for v in values]


def _equal(query: QueryBuilder, field_def: FieldDef, values: Sequence[Any]) -> list[sa.ColumnElement[bool]]:
    """Clauses, one per way the field may hold one of `values`, each answered by an index."""
    if not field_def.is_list:
        column = query.column(field_def.name, field_def)
        return [column == query.bind(field_def, value) for value in values]
    stored = [field_def.value_type.to_storage(v) for v in values]
    if query.dialect == "postgresql":  # the GIN index on the array
        return [JsonArrayContains(records.c.data, field_def.name, v) for v in stored]
    clauses: list[sa.ColumnElement[bool]] = []
    for value in stored:  # the position indexes, then the few records holding more items
        # Bound as stored (a text as a text, a number as a number): SQLite compares an item with its own type.
        clauses.extend(JsonItem(records.c.data, field_def.name, p) == sa.literal(value) for p in range(POSITIONS))
        clauses.append(sa.and_(more_items(field_def.name), JsonArrayContains(records.c.data, field_def.name, value)))
    return clauses


def _fuzzy_candidates(conn: sa.Connection, query: QueryBuilder, entity: EntityDef, rule: DuplicateRule,
                      typed: Mapping[str, Any], readable: Sequence[sa.ColumnElement[bool]], record_id: int | None,
                      found: dict[int, Candidate]) -> None:
    """Records of the rule's block whose text scores at least its threshold against the one typed."""
    name = rule.fields[0]
    field_def = entity.fields[name]
    text = typed.get(name)
    if not isinstance(text, str) or not _process(text):
        return
    text_column = JsonValue(records.c.data, name, "text")
    if rule.same:
        blocking = []
        for other in rule.same:
            value = typed.get(other)
            if value is None or value == "":
                return  # no block: a contact without a company is compared with nobody by this rule
            blocking.append(query.column(other, entity.fields[other]) == query.bind(entity.fields[other], value))
        selects = [sa.select(*_ROW, text_column.label("text")).where(*readable, *blocking)]
    else:
        column = query.column(name, field_def)
        selects = [sa.select(*_ROW, text_column.label("text")).where(*readable, column >= low, column < high)
                   for low, high in _prefix_ranges(text, rule.prefix)]
        if not selects:
            return
    if record_id is not None:
        selects = [s.where(records.c.id != record_id) for s in selects]
    statement = (selects[0] if len(selects) == 1 else sa.union(*selects)).order_by("id").limit(BLOCK_LIMIT)
    rows = {row.id: row for row in conn.execute(statement) if isinstance(row.text, str)}
    scorer = _SCORERS[rule.scorer]
    choices = {row_id: row.text for row_id, row in rows.items()}
    for _text, score, row_id in process.extract(text, choices, scorer=scorer, processor=_process,
                                                score_cutoff=rule.threshold, limit=None):
        row = rows[row_id]
        candidate = found.setdefault(row.id, Candidate(row.id, row.title, row.owner))
        candidate.matches.append(Match(rule.key, "fuzzy", rule.fields, round(score)))


def _prefix_ranges(text: str, length: int) -> list[tuple[str, str]]:
    """[low, high) ranges holding the texts that begin with the first `length` characters of `text` as typed, in
    lower case, upper case or capitalised (the index compares texts as stored). The upper bound is the prefix with
    its last character moved one on: under a linguistic collation (PostgreSQL) as in binary order (SQLite), every
    text beginning with the prefix lies within."""
    start = text.strip()[:length]
    if not start:
        return []
    ranges = []
    for variant in sorted({start, start.lower(), start.upper(), start.capitalize()}):
        last = ord(variant[-1])
        if last >= 0x10FFFF:
            continue
        ranges.append((variant, variant[:-1] + chr(last + 1)))
    return ranges


def _fill_shown(conn: sa.Connection, service: RecordService, entity: EntityDef, user: Principal,
                found: Sequence[Candidate]) -> None:
    """The `show` fields of each candidate the user may view, typed, read in one statement per batch (built once: its
    ids are one expanding parameter)."""
    visible = viewable_fields(entity, user)
    shown = tuple(n for n in entity.duplicates.show if n in visible)
    if not shown or not found:
        return
    by_id = {c.id: c for c in found}
    ids = sorted(by_id)
    statement, parsed = _shown_statement(entity, shown)
    for start in range(0, len(ids), READ_BATCH):
        for row in conn.execute(statement, {"ids": ids[start:start + READ_BATCH]}):
            stored = {n: _stored_value(v) if n in parsed else v for n, v in zip(shown, row[1:], strict=True)}
            by_id[row[0]].show = service.typed_values(entity, {n: v for n, v in stored.items() if v is not None})


@lru_cache(maxsize=256)
def _shown_statement(entity: EntityDef, shown: tuple[str, ...]) -> tuple[sa.Select[Any], frozenset[str]]:
    """The statement reading the `shown` fields of records by id, and which of them come as JSON to parse (lists and
    numbers: SQLite gives their JSON text; a text is read as a text, never parsed: «2024» stays a text)."""
    parsed = frozenset(n for n in shown if entity.fields[n].is_list or entity.fields[n].value_type.storage != "text")
    columns = [JsonValue(records.c.data, n, "json" if n in parsed else "text").label(n) for n in shown]
    statement = sa.select(records.c.id, *columns).where(records.c.id.in_(sa.bindparam("ids", expanding=True)))
    return statement, parsed


def _json(value: Any) -> Any:
    """A JSON value as a dialect returns it (SQLite: its JSON text; PostgreSQL: parsed)."""
    if isinstance(value, str | bytes):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


# --- over existing data ---------------------------------------------------------------------------------------


class _Groups:
    """Union-find over record ids, remembering the matches that joined them."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        self.links: list[tuple[tuple[int, ...], Match]] = []

    def find(self, item: int) -> int:
        parent = self.parent.setdefault(item, item)
        while parent != item:
            grand = self.parent.setdefault(parent, parent)
            self.parent[item] = grand
            item, parent = parent, grand
        return item

    def join(self, ids: Sequence[int], match: Match) -> None:
        self.links.append((tuple(ids), match))
        root = self.find(ids[0])
        for other in ids[1:]:
            other_root = self.find(other)
            if other_root != root:
                self.parent[other_root] = root


def groups(service: RecordService, entity_name: str, user: Principal, *, limit: int | None = None) -> list[Group]:
    """The groups of live records of the card that likely repeat one another, by its rules, as `user` may see them:
    the largest first, then by their lowest id; `limit` groups at most.

    The card is read once (its rules' fields only); exact rules group records by each value (a phone shared by three
    contacts joins them), fuzzy rules score pairs within each block (the same company, or the same first letters).
    """
    entity = service.entity(entity_name)
    rules = readable_rules(entity, user)
    readable = readable_where(service.metadata, user, entity)
    if not rules or readable is None:
        return []
    names = sorted({n for rule in rules for n in rule.reads})
    column_of = {n: 3 + i for i, n in enumerate(names)}  # after id, title, owner
    # A list, or a number, comes as JSON text from SQLite (PostgreSQL parses it): read each column once per row.
    parsed_columns = [column_of[n] for n in names if entity.fields[n].is_list or
                      entity.fields[n].value_type.storage != "text"]
    columns = [JsonValue(records.c.data, n, "text" if column_of[n] not in parsed_columns else "json").label(n)
               for n in names]
    exact = [(r, [column_of[n] for n in r.fields]) for r in rules if r.kind == "exact"]
    fuzzy = [(r, column_of[r.fields[0]], [column_of[n] for n in r.same]) for r in rules if r.kind == "fuzzy"]
    keys: list[dict[Any, list[int]]] = [defaultdict(list) for _ in exact]
    texts: list[dict[Any, dict[int, str]]] = [defaultdict(dict) for _ in fuzzy]
    titles: dict[int, tuple[str, int | None]] = {}
    statement = sa.select(*_ROW, *columns).where(*readable)  # in no order: groups are sorted once built
    # The engine's own connection, in a transaction: PostgreSQL streams the rows through a server-side cursor.
    with service.engine.connect() as conn:
        for raw in conn.execution_options(yield_per=READ_BATCH).execute(statement):
            row: list[Any] = list(raw)
            for i in parsed_columns:
                row[i] = _stored_value(row[i])
            record_id: int = row[0]
            for position, (_rule, at) in enumerate(exact):
                if len(at) == 1:
                    value = row[at[0]]
                    if value is None:
                        continue
                    for item in value if isinstance(value, list) else (value,):
                        keys[position][(item,)].append(record_id)
                else:
                    per_field = [_items(row[i]) for i in at]
                    if not all(per_field):
                        continue
                    for key in product(*per_field):
                        keys[position][key].append(record_id)
                titles.setdefault(record_id, (row[1], row[2]))
            for position, (rule, text_at, same_at) in enumerate(fuzzy):
                text = row[text_at]
                if not isinstance(text, str):
                    continue
                processed = _process(text)
                if not processed:
                    continue
                if same_at:
                    block = tuple(row[i] for i in same_at)
                    if None in block:
                        continue
                else:
                    block = (processed[:rule.prefix],)
                texts[position][block][record_id] = processed
                titles.setdefault(record_id, (row[1], row[2]))
    joined = _Groups()
    for position, (rule, _at) in enumerate(exact):
        for key, sharing in keys[position].items():
            if len(sharing) > 1:
                unique_ids = sorted(set(sharing))
                if len(unique_ids) > 1:
                    joined.join(unique_ids, Match(rule.key, "exact", rule.fields, 100, key))
    for position, (rule, _text_at, _same) in enumerate(fuzzy):
        scorer = _SCORERS[rule.scorer]
        for members_of_block in texts[position].values():
            if len(members_of_block) < 2:
                continue
            block_ids = list(members_of_block)
            choices = [members_of_block[i] for i in block_ids]
            for place, row_id in enumerate(block_ids[:-1]):
                rest = choices[place + 1:]
                for _text, score, index in process.extract(choices[place], rest, scorer=scorer, processor=None,
                                                           score_cutoff=rule.threshold, limit=None):
                    joined.join(sorted((row_id, block_ids[place + 1 + index])),
                                Match(rule.key, "fuzzy", rule.fields, round(score)))
    members: dict[int, list[int]] = defaultdict(list)
    for item in list(joined.parent):
        members[joined.find(item)].append(item)
    found = sorted((sorted(ids) for ids in members.values() if len(ids) > 1), key=lambda ids: (-len(ids), ids[0]))
    if limit is not None:
        found = found[:limit]
    root_of = {i: n for n, ids in enumerate(found) for i in ids}
    result = [Group([Candidate(i, *titles.get(i, (f"#{i}", None))) for i in ids], []) for ids in found]
    for linked, match in joined.links:
        group_at = root_of.get(linked[0])
        if group_at is not None:
            result[group_at].links.append((linked, match))
    with reader(service.engine).connect() as conn:
        _fill_shown(conn, service, entity, user, [m for g in result for m in g.members])
    return result


def _stored_value(value: Any) -> Any:
    """A list or number as `groups`' statement reads it: SQLite's JSON text parsed; a whole float as the integer the
    JSON holds (a reference, a count), so that equal values are one key."""
    if isinstance(value, str | bytes):
        value = _json(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
