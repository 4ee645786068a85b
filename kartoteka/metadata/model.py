"""Frozen, typed dataclasses the rest of the platform reads metadata from."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from types import MappingProxyType
from typing import Any

from kartoteka.metadata.expressions import CompiledExpression
from kartoteka.metadata.fieldtypes import FieldType
from kartoteka.metadata.permissions import Permissions

SYSTEM_FIELDS = ("id", "entity", "version", "owner", "created_at", "updated_at", "deleted_at")
# Reserved besides the system fields: names the API or expressions use for themselves.
RESERVED_NAMES = frozenset(
    (*SYSTEM_FIELDS, "created_by", "updated_by", "title", "data", "true", "false", "none", "null",
     "sort", "limit", "cursor", "q", "fields")
)
# System columns lists may show, sort and filter by.
LISTABLE_SYSTEM_FIELDS = ("id", "owner", "version", "created_at", "updated_at", "created_by", "updated_by")
# System values every expression may read.
EXPRESSION_SYSTEM_NAMES = ("id", "owner", "created_at", "updated_at")
# The roles that see and edit everything when roles.yaml names no `superuser` (or does not exist): as before
# the key existed.
DEFAULT_SUPERUSERS = frozenset({"admin"})


@dataclass(frozen=True)
class Label:
    """A text in one or more languages."""

    texts: Mapping[str, str]

    @classmethod
    def of(cls, raw: str | Mapping[str, str] | None, fallback: str = "") -> Label:
        """A Label from metadata's string-or-map form."""
        if raw is None:
            return cls(MappingProxyType({"en": fallback}))
        if isinstance(raw, str):
            return cls(MappingProxyType({"en": raw}))
        return cls(MappingProxyType(dict(raw)))

    def get(self, language: str = "en") -> str:
        """The text in `language`, else English, else any."""
        return self.texts.get(language) or self.texts.get("en") or next(iter(self.texts.values()), "")

    def __str__(self) -> str:
        return self.get()

    def as_json(self) -> dict[str, str]:
        """The label as a plain dict."""
        return dict(self.texts)


@dataclass(frozen=True)
class Access:
    """Roles that may view / edit something; None means everybody."""

    view: frozenset[str] | None = None
    edit: frozenset[str] | None = None

    def can_view(self, roles: frozenset[str]) -> bool:
        """True when one of `roles` may see it."""
        return self.view is None or bool(self.view & roles)

    def can_edit(self, roles: frozenset[str]) -> bool:
        """True when one of `roles` may change it (editing implies seeing)."""
        return self.can_view(roles) and (self.edit is None or bool(self.edit & roles))


EVERYONE = Access()


@dataclass(frozen=True)
class Option:
    """One choice of a select or multiselect field."""

    value: str
    label: Label
    color: str | None = None


@dataclass(frozen=True)
class FieldDef:
    """One field of an entity, with its type and constraints."""

    name: str
    type: FieldType
    label: Label
    help: Label | None = None
    placeholder: Label | None = None
    required: bool = False
    default: Any = None
    unique: bool = False
    indexed: bool = False
    read_only: bool = False
    multiple: bool = False
    min: Any = None
    max: Any = None
    min_length: int | None = None
    max_length: int | None = None
    min_items: int | None = None
    max_items: int | None = None
    pattern: re.Pattern[str] | None = None
    pattern_message: Label | None = None
    options: tuple[Option, ...] = ()
    suggestions: tuple[str, ...] = ()
    to: str | None = None
    to_label: Label | None = None  # the label of the entity `to` names: messages name it so, not by `to`
    currency: str | None = None
    places: int | None = None
    region: str | None = None
    rows: int | None = None
    accept: tuple[str, ...] = ()
    max_size: int | None = None
    expr: CompiledExpression | None = None
    result: FieldType | None = None
    visible_if: CompiledExpression | None = None
    keep_when_hidden: bool = False  # else a save empties the field while its visible_if is false
    required_if: CompiledExpression | None = None
    read_only_if: CompiledExpression | None = None
    access: Access = EVERYONE
    policy_version: str | None = None
    policy_url: str | None = None
    text: Label | None = None
    line: int = 0

    @property
    def option_values(self) -> tuple[str, ...]:
        """The allowed values of a select or multiselect."""
        return tuple(o.value for o in self.options)

    @property
    def is_formula(self) -> bool:
        """True for computed fields."""
        return self.expr is not None

    @property
    def value_type(self) -> FieldType:
        """The type of the stored value: a formula's result type, otherwise the field's own."""
        return self.result if self.result is not None else self.type

    @property
    def is_list(self) -> bool:
        """True when the value is a list (multiple, multiselect, tags)."""
        return self.multiple or self.type.list_valued

    def option(self, value: str) -> Option | None:
        """The option with this value, if any."""
        return next((o for o in self.options if o.value == value), None)


@dataclass(frozen=True)
class Group:
    """A titled block of fields on a form."""

    label: Label | None
    fields: tuple[str, ...]
    columns: int = 1
    access: Access = EVERYONE
    visible_if: CompiledExpression | None = None


@dataclass(frozen=True)
class Tab:
    """A tab of a form; a layout without tabs has one unlabeled tab."""

    label: Label | None
    groups: tuple[Group, ...]
    access: Access = EVERYONE
    visible_if: CompiledExpression | None = None


@dataclass(frozen=True)
class Layout:
    """Tabs of groups of fields."""

    tabs: tuple[Tab, ...]

    def field_names(self) -> Iterator[str]:
        """Every field placed in the layout, in order."""
        for tab in self.tabs:
            for group in tab.groups:
                yield from group.fields


@dataclass(frozen=True)
class Validation:
    """A cross-field check: `expr` must be true, else `message` is shown."""

    expr: CompiledExpression
    message: Label
    field: str | None = None

    @property
    def key(self) -> str:
        """What identifies the check in a record's flags: its expression as written."""
        return self.expr.source


@dataclass(frozen=True)
class RuleAction:
    """One action of a rule: a registered action name, its parameters, and its templates checked and compiled."""

    name: str
    params: Mapping[str, Any]
    stage: str = "after"  # before: changes or refuses the record being saved; after: everything else
    # param -> LocalizedTemplate (kartoteka/metadata/templates.py): a text per language, checked and compiled
    templates: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    expr: CompiledExpression | None = None  # set's `expr`, assign's `busy_if`


@dataclass(frozen=True)
class WorkWindow:
    """Working hours a date rule fires within: weekdays (0 = Monday) and a time span, in the site's time zone."""

    weekdays: frozenset[int]
    start: time
    end: time


@dataclass(frozen=True)
class Trigger:
    """When a rule is considered.

    kind `save`: on `events` (created, updated, deleted, restored, changed); `updated` only when one of `fields`
    changed (any field when empty); `changed` when `field` changed, from one of `from_values` to one of `to_values`
    when given. kind `date`: `offset` from the date in `field` (negative: before it), moved into `window`.
    kind `schedule`: by `cron`, for each record the condition selects. kind `manual`: a button and an API call,
    for `roles` (empty: whoever may change the record), with an optional `confirm` text.
    """

    kind: str
    events: frozenset[str] = frozenset()
    fields: tuple[str, ...] = ()
    field: str | None = None
    from_values: tuple[Any, ...] | None = None
    to_values: tuple[Any, ...] | None = None
    offset: timedelta = timedelta(0)
    window: WorkWindow | None = None
    cron: str | None = None
    roles: frozenset[str] = frozenset()
    label: Label | None = None
    confirm: Label | None = None


@dataclass(frozen=True)
class RuleDef:
    """Trigger → condition → actions; executed by the rules engine (kartoteka/rules/, docs/automation.md)."""

    key: str
    name: str
    trigger: Trigger
    condition: CompiledExpression | None
    actions: tuple[RuleAction, ...]
    stage: str = "after"  # before: evaluated inside the save, before formulas and validation; after: once written
    priority: int = 0  # higher runs first; then the order of the file
    enabled: bool = True
    description: str = ""

    @property
    def on(self) -> tuple[str, ...]:
        """The events of a save trigger (compatibility with the first rules format)."""
        return tuple(sorted(self.trigger.events))


@dataclass(frozen=True)
class ListSpec:
    """Default list columns, sort and search fields."""

    columns: tuple[str, ...]
    sort: str = "-id"
    search: tuple[str, ...] = ()


@dataclass(frozen=True)
class BoardSpec:
    """The kanban board: the select it groups by (None: no board), what a column may sum, fields on its cards.

    `sums` are candidates in order: the first the user may see is summed (one when metadata names it; by
    default every money field).
    """

    group: str | None = None
    sums: tuple[str, ...] = ()
    show: tuple[str, ...] = ()


# The rapidfuzz scorers a fuzzy duplicates rule may name (rapidfuzz.fuzz), the first being the default: token_sort_ratio
# reads «Иванов Пётр» and «Пётр Иванов» alike, which people write both ways round.
DUPLICATE_SCORERS = ("token_sort_ratio", "token_set_ratio", "ratio", "partial_ratio", "WRatio", "QRatio")


@dataclass(frozen=True)
class DuplicateRule:
    """One way two records of a card are likely the same: `exact` when every field of `fields` shares a value
    (a list field: any one of its values), compared as stored (phones in E.164, e-mails lower-cased); `fuzzy` when
    the text of its one field scores at least `threshold` (0-100) with the rapidfuzz `scorer`, among the records
    that hold the same values of `same` (blocking), or without `same` those whose text begins with the same
    `prefix` characters."""

    kind: str  # exact | fuzzy
    fields: tuple[str, ...]
    same: tuple[str, ...] = ()
    threshold: int = 90
    scorer: str = DUPLICATE_SCORERS[0]
    prefix: int = 2
    line: int = 0

    @property
    def key(self) -> str:
        """What names the rule in answers: `phones`, `last_name+birthday`, `~full_name` (fuzzy)."""
        names = "+".join(self.fields)
        return f"~{names}" if self.kind == "fuzzy" else names

    @property
    def reads(self) -> frozenset[str]:
        """Every field the rule compares or blocks on: a reader who may not view one of them never learns of it."""
        return frozenset((*self.fields, *self.same))


@dataclass(frozen=True)
class DuplicatesSpec:
    """The card's `duplicates:` section: its rules (none: duplicates are not looked for) and the fields a candidate
    shows to tell it apart."""

    rules: tuple[DuplicateRule, ...] = ()
    show: tuple[str, ...] = ()

    @property
    def looked_up(self) -> frozenset[str]:
        """The fields the rules find records by: each needs an index (storage/duplicate_keys.py)."""
        names: set[str] = set()
        for rule in self.rules:
            names.update(rule.fields if rule.kind == "exact" else rule.same or rule.fields)
        return frozenset(names)


@dataclass(frozen=True)
class TitleTemplate:
    """'{first_name} {last_name}': literal parts and field names."""

    source: str
    parts: tuple[tuple[str, str | None], ...]

    @property
    def names(self) -> frozenset[str]:
        """Field names the title reads."""
        return frozenset(name for _, name in self.parts if name)

    def render(self, values: Mapping[str, Any], fmt: Any = str) -> str:
        """The title of a record; empty values render as nothing."""
        text = "".join(
            literal + ("" if name is None or values.get(name) in (None, "", []) else fmt(name, values[name]))
            for literal, name in self.parts
        )
        return " ".join(text.split())


@dataclass(frozen=True, eq=False)
class EntityDef:
    """A card type: its fields, layout, validations and rules."""

    name: str
    label: Label
    label_plural: Label
    title: TitleTemplate
    fields: Mapping[str, FieldDef]
    formula_order: tuple[str, ...]
    validations: tuple[Validation, ...]
    layout: Layout
    variants: Mapping[str, Layout]
    rules: tuple[RuleDef, ...]
    list: ListSpec
    description: Label | None = None
    icon: str | None = None
    source: str = ""
    board: BoardSpec = BoardSpec()
    badges: tuple[str, ...] = ()  # fields shown as badges in a card's header
    picker: tuple[str, ...] = ()  # fields a reference picker shows next to the title
    duplicates: DuplicatesSpec = DuplicatesSpec()  # how likely duplicates are found (no rules: not looked for)
    superusers: frozenset[str] = DEFAULT_SUPERUSERS  # roles that see and edit every field

    def field(self, name: str) -> FieldDef:
        """The field called `name` (KeyError if unknown)."""
        return self.fields[name]

    def layout_for(self, department: str | None) -> Layout:
        """The department's layout variant, or the default layout."""
        return self.variants.get(department or "", self.layout)

    @property
    def indexed_fields(self) -> tuple[FieldDef, ...]:
        """Fields that get an expression index."""
        return tuple(f for f in self.fields.values() if (f.indexed or f.unique) and not f.is_list)

    @property
    def conditionally_emptied(self) -> tuple[FieldDef, ...]:
        """Fields a save empties while their own visible_if is false (not formulas, consent or kept ones)."""
        return tuple(f for f in self.fields.values() if f.visible_if is not None and not f.keep_when_hidden
                     and not f.is_formula and f.type.emptied_when_hidden)

    @property
    def reference_fields(self) -> tuple[FieldDef, ...]:
        """Fields pointing at other records."""
        return tuple(f for f in self.fields.values() if f.type.refers == "record")

    @property
    def file_fields(self) -> tuple[FieldDef, ...]:
        """Fields holding uploaded files."""
        return tuple(f for f in self.fields.values() if f.type.holds_files)


@dataclass(frozen=True)
class RoleDef:
    """A role users can hold."""

    name: str
    label: Label
    description: str = ""
    superuser: bool = False  # sees and edits every field and record, manages users


@dataclass(frozen=True)
class Metadata:
    """Everything loaded from the config directory."""

    entities: Mapping[str, EntityDef]
    roles: Mapping[str, RoleDef] = field(default_factory=lambda: MappingProxyType({}))
    departments: Mapping[str, Label] = field(default_factory=lambda: MappingProxyType({}))
    fingerprint: str = ""
    permissions: Permissions = field(default_factory=Permissions)
    superusers: frozenset[str] = DEFAULT_SUPERUSERS

    def entity(self, name: str) -> EntityDef:
        """The entity called `name` (KeyError if unknown)."""
        return self.entities[name]

    def is_superuser(self, roles: frozenset[str]) -> bool:
        """True when one of `roles` is a superuser role (sees and edits everything, manages users)."""
        return bool(roles & self.superusers)
