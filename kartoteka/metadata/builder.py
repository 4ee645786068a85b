"""Turning one schema-valid entity document into an EntityDef, collecting every cross-reference problem."""

from __future__ import annotations

import ast
import string
from collections.abc import Collection, Iterable, Mapping
from types import MappingProxyType
from typing import Any

import re2

from kartoteka.metadata.expressions import CompiledExpression, ExpressionError, compile_expression, suggest
from kartoteka.metadata.fieldtypes import FIELD_TYPES, FieldValueError, ParseContext
from kartoteka.metadata.model import (
    DEFAULT_SUPERUSERS,
    DUPLICATE_SCORERS,
    EVERYONE,
    EXPRESSION_SYSTEM_NAMES,
    LISTABLE_SYSTEM_FIELDS,
    RESERVED_NAMES,
    SYSTEM_FIELDS,
    Access,
    BoardSpec,
    DuplicateRule,
    DuplicatesSpec,
    EntityDef,
    FieldDef,
    Group,
    Label,
    Layout,
    ListSpec,
    Option,
    RuleDef,
    Tab,
    TitleTemplate,
    Validation,
)
from kartoteka.metadata.rules import build_rules
from kartoteka.metadata.sources import Path_, Problem, Source
from kartoteka.metadata.visibility import Leak, condition_leaks

# Without `board: {group: ...}`, a board groups by the first of these it finds, else by the card's first select.
DEFAULT_BOARD_GROUPS = ("stage", "status")
# Without `badges:`, a card's header shows these selects, and every field whose type is a badge by default (tags).
DEFAULT_BADGE_NAMES = ("stage", "status", "segment", "priority")

# Field patterns run on RE2, which matches in time linear in the input whatever the pattern: no pattern
# can make a long value stall a worker (Python's backtracking `re` takes forever on `(a+)+b` against
# "aaaa...a"). Compile errors are returned as problems, not logged to stderr.
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_RE2_HINT = ("; patterns use RE2 syntax, which matches in linear time and has no backreferences, lookarounds, "
             "atomic groups or possessive quantifiers")
# Escapes RE2 reads as ASCII only where Python reads Unicode: refused rather than silently narrowed, since a
# pattern written for Python would then turn away Cyrillic names. \d and \s are accepted (0-9 and ASCII
# white space, as documented): digits in codes are ASCII digits anyway.
_ASCII_ONLY = {
    "w": "\\w matches only ASCII letters, digits and _ in a pattern; write [\\p{L}\\p{N}_] for letters and "
         "digits of any script, or [A-Za-z0-9_] for ASCII only",
    "W": "\\W matches everything but ASCII letters, digits and _ in a pattern; write [^\\p{L}\\p{N}_] for "
         "anything but letters and digits of any script, or [^A-Za-z0-9_] for ASCII only",
    "b": "\\b sees only ASCII letters, digits and _ as word characters in a pattern, so it misplaces word "
         "edges in other scripts; a pattern matches the whole value, so write it without \\b",
    "B": "\\B sees only ASCII letters, digits and _ as word characters in a pattern, so it misplaces word "
         "edges in other scripts; write the pattern without \\B",
}


def compile_pattern(text: str) -> tuple[Any, str | None]:
    """A field's `pattern` compiled with RE2, or (None, the problem to report).

    `text` comes from a metadata file, which holds no NUL or lone surrogate (sources.py refuses them).
    """
    escaped = False
    for char in text:
        if escaped and char in _ASCII_ONLY:
            return None, _ASCII_ONLY[char]
        escaped = not escaped and char == "\\"
    try:
        return re2.compile(text, _RE2_OPTIONS), None
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "backslashreplace") if exc.args and isinstance(exc.args[0], bytes) \
            else str(exc)
        hint = _RE2_HINT if reason.startswith(("invalid escape sequence", "invalid perl operator",
                                                "invalid named capture group", "bad repetition operator")) else ""
        return None, f"invalid regular expression: {reason}{hint}"


class EntityBuilder:
    """Builds one entity; `problems` collects what is wrong instead of stopping at the first."""

    def __init__(self, source: Source, entity_names: Collection[str], roles: Collection[str] | None,
                 departments: Collection[str] | None, parse_context: ParseContext,
                 superusers: frozenset[str] = DEFAULT_SUPERUSERS,
                 entity_labels: Mapping[str, Label] | None = None,
                 entity_fields: Mapping[str, Collection[str]] | None = None) -> None:
        self.source = source
        self.entity_fields = entity_fields or {}  # every card's field names: a rule may create another card
        self.entity_labels = entity_labels or {}  # a reference field's message names its target by its label
        self.superusers = superusers
        self.raw: dict[str, Any] = source.data
        self.entity_names = entity_names
        self.roles = roles
        self.departments = departments
        self.ctx = parse_context
        self.problems: list[Problem] = []
        self.field_names = list(self.raw["fields"])
        self.known_names = [*self.field_names, *EXPRESSION_SYSTEM_NAMES]
        self.formula_names_in_order: tuple[str, ...] = ()
        # Fields placed in a group or tab with view access in any layout: hidden from some readers.
        self.restricted_by_layout: set[str] = set()
        # (department or None, tab index, group index or None) -> path of that tab or group.
        self.section_paths: dict[tuple[str | None, int, int | None], Path_] = {}

    def report(self, path: Path_, message: str) -> None:
        """Record a problem at `path` of this file."""
        self.problems.append(self.source.problem(path, message))

    def expression(self, path: Path_, text: str | None) -> CompiledExpression | None:
        """Compile an expression, reporting a problem instead of raising."""
        if text is None:
            return None
        try:
            compiled = compile_expression(text, self.known_names)
        except ExpressionError as exc:
            self.report(path, str(exc))
            return None
        for name, literal in _compared_literals(compiled.tree):
            options = self.option_values(name)
            if options is not None and literal not in options:
                hint = suggest(literal, options) or "; its options: " + ", ".join(options)
                self.report(path, f"'{literal}' is not an option of '{name}'{hint}")
        return compiled

    def option_values(self, name: str) -> list[str] | None:
        """The option values of a field whose type takes `options` (select, multiselect), else None."""
        spec = self.raw["fields"].get(name)
        if not isinstance(spec, Mapping) or spec.get("type") not in FIELD_TYPES \
                or "options" not in FIELD_TYPES.get(spec["type"]).options:
            return None
        return [o if isinstance(o, str) else o.get("value") for o in spec.get("options") or []]

    def access(self, path: Path_, raw: Mapping[str, Any] | None) -> Access:
        """An Access from metadata, checking role names."""
        if not raw:
            return EVERYONE
        for kind in ("view", "edit"):
            for i, role in enumerate(raw.get(kind) or ()):
                if self.roles is not None and role not in self.roles:
                    self.report((*path, kind, i), f"unknown role '{role}'{suggest(role, self.roles)}")
        view, edit = raw.get("view"), raw.get("edit")
        return Access(frozenset(view) if view is not None else None, frozenset(edit) if edit is not None else None)

    def build(self) -> EntityDef | None:
        """The EntityDef, or None if a problem makes it unusable."""
        raw = self.raw
        fields = {}
        for name, spec in raw["fields"].items():
            field = self.field(name, spec)
            if field is not None:
                fields[name] = field
        formula_order = self.formula_order(fields)
        self.formula_names_in_order = formula_order
        layout = self.layout(("layout",), raw.get("layout") or {}, fields)
        variants = {}
        for dept, spec in (raw.get("layout") or {}).get("variants", {}).items():
            if self.departments is not None and dept not in self.departments:
                self.report(("layout", "variants", dept),
                            f"unknown department '{dept}'{suggest(dept, self.departments)}")
            variants[dept] = self.layout(("layout", "variants", dept), spec, fields)
        validations = tuple(self.validations(raw.get("validations") or []))
        entity = EntityDef(
            name=raw["entity"],
            label=Label.of(raw["label"]),
            label_plural=Label.of(raw.get("label_plural") or raw["label"]),
            title=self.title(raw.get("title"), fields),
            fields=MappingProxyType(fields),
            formula_order=formula_order,
            validations=validations,
            layout=layout,
            variants=MappingProxyType(variants),
            rules=self.rules(raw.get("rules") or [], fields),
            list=self.list_spec(raw.get("list") or {}, fields),
            description=Label.of(raw["description"]) if raw.get("description") else None,
            icon=raw.get("icon"),
            source=self.source.file,
            board=self.board(raw.get("board") or {}, fields),
            badges=self.field_list("badges", raw.get("badges"), fields, self.default_badges(fields)),
            picker=self.field_list("picker", raw.get("picker"), fields, ()),
            duplicates=self.duplicates(raw.get("duplicates"), fields),
            superusers=self.superusers,
        )
        for leak in condition_leaks(entity, self.roles):
            self.report_leak(leak)
        return entity if len(fields) == len(raw["fields"]) else None

    def report_leak(self, leak: Leak) -> None:
        """A condition reading a field that someone who sees what it conditions may not view."""
        who, they = leak.witness.describe()
        if leak.field is not None:
            path: Path_ = ("fields", leak.field, leak.condition or "visible_if")
            seen, kind = f"'{leak.field}'", "field"
            if leak.department is not None:
                seen += f" (in the layout of department '{leak.department}')"
        else:
            assert leak.tab is not None
            kind = "tab" if leak.group is None else "group"
            path = (*self.section_paths[(leak.department, leak.tab, leak.group)], "visible_if")
            seen = f"this {kind}"
        self.report(path, f"reads '{leak.reads}', which {who} may not view while {they} may view {seen}; "
                          f"a condition may only read fields everyone who sees the {kind} can see")

    # --- fields -------------------------------------------------------------------------------------

    def field(self, name: str, spec: Mapping[str, Any]) -> FieldDef | None:
        """One FieldDef, or None when its type or options are unusable."""
        path: Path_ = ("fields", name)
        ok = True
        if name in RESERVED_NAMES:
            reason = "a system field" if name in SYSTEM_FIELDS else "reserved"
            self.report(path, f"field name '{name}' is {reason}; choose another name")
            ok = False
        field_type = FIELD_TYPES.get(spec["type"])
        allowed = field_type.allowed_options()
        for key in spec:
            if key not in allowed:
                hint = suggest(key, allowed - {"type"})
                self.report((*path, key), f"'{key}' does not apply to a field of type {field_type.name}{hint}")
                ok = False
        if spec.get("multiple") and not field_type.supports_multiple:
            ok = False  # already reported as not applicable
        if spec.get("indexed") and (spec.get("multiple") or field_type.storage == "json"):
            self.report((*path, "indexed"), "indexed applies to single values; filters on a field with several "
                        "values use its contains operator")
            ok = False
        counted = spec.get("multiple") or field_type.list_valued
        for key in ("min_items", "max_items"):
            if key in spec and not counted:
                self.report((*path, key), f"{key} applies to fields with several values: add multiple: true")
                ok = False
        if spec.get("min_items") is not None and spec.get("max_items") is not None \
                and spec["min_items"] > spec["max_items"]:
            self.report((*path, "min_items"), "min_items is greater than max_items")
            ok = False
        if spec.get("unique") and spec.get("multiple"):
            self.report((*path, "unique"), "unique cannot be combined with multiple: true")
            ok = False
        options = self.options(path, spec)
        for rel, message in field_type.spec_problems(spec, self.entity_names):
            self.report((*path, *rel), message)
            ok = False
        pattern = None
        if "pattern" in spec:
            pattern, problem = compile_pattern(spec["pattern"])
            if problem is not None:
                self.report((*path, "pattern"), problem)
                ok = False
        # Options a field leaves out take their schema's default; a formula's, those of its result type.
        settings = dict(field_type.option_defaults())
        result_type = FIELD_TYPES.get(spec.get("result", settings.get("result"))) if field_type.computed else None
        if result_type is not None:
            allowed = field_type.allowed_options()
            settings.update({k: v for k, v in result_type.option_defaults().items() if k in allowed})
        settings.update(spec)
        if not ok:
            return None
        if spec.get("keep_when_hidden") and "visible_if" not in spec:
            self.report((*path, "keep_when_hidden"), "'keep_when_hidden' has no effect without 'visible_if'; "
                        "remove it, or add the condition that hides the field")
        field = FieldDef(
            name=name, type=field_type, label=Label.of(spec.get("label"), name.replace("_", " ").capitalize()),
            help=Label.of(spec["help"]) if "help" in spec else None,
            placeholder=Label.of(spec["placeholder"]) if "placeholder" in spec else None,
            required=bool(spec.get("required")), unique=bool(spec.get("unique")),
            indexed=bool(spec.get("indexed")), read_only=bool(spec.get("read_only")),
            multiple=bool(spec.get("multiple")), min_length=spec.get("min_length"),
            max_length=spec.get("max_length"), min_items=spec.get("min_items"),
            max_items=spec.get("max_items"), pattern=pattern,
            pattern_message=Label.of(spec["pattern_message"]) if "pattern_message" in spec else None,
            options=options, suggestions=tuple(spec.get("suggestions") or ()), to=spec.get("to"),
            to_label=self.entity_labels.get(spec["to"]) if "to" in spec else None,
            currency=settings.get("currency"),
            places=spec.get("places"), region=spec.get("region"), rows=spec.get("rows"),
            accept=tuple(spec.get("accept") or ()), max_size=spec.get("max_size"),
            expr=self.expression((*path, "expr"), spec.get("expr")), result=result_type,
            visible_if=self.expression((*path, "visible_if"), spec.get("visible_if")),
            keep_when_hidden=bool(spec.get("keep_when_hidden")),
            required_if=self.expression((*path, "required_if"), spec.get("required_if")),
            read_only_if=self.expression((*path, "read_only_if"), spec.get("read_only_if")),
            access=self.access((*path, "access"), spec.get("access")),
            policy_version=spec.get("policy_version"), policy_url=spec.get("policy_url"),
            text=Label.of(spec["text"]) if "text" in spec else None,
            line=self.source.line(path),
        )
        return self.with_bounds_and_default(path, settings, field)

    def options(self, path: Path_, spec: Mapping[str, Any]) -> tuple[Option, ...]:
        """Select options, checking that values are unique."""
        raw_options = spec.get("options") or []
        options, seen = [], set()
        for i, raw in enumerate(raw_options):
            raw = {"value": raw} if isinstance(raw, str) else raw
            value = raw["value"]
            if value in seen:
                self.report((*path, "options", i), f"option '{value}' is listed twice")
            seen.add(value)
            options.append(Option(value, Label.of(raw.get("label"), value), raw.get("color")))
        return tuple(options)

    def with_bounds_and_default(self, path: Path_, spec: Mapping[str, Any], field: FieldDef) -> FieldDef | None:
        """Parse min/max and the default with the field's own type and constraints."""
        from dataclasses import replace

        value_type = field.value_type
        changes: dict[str, Any] = {}
        for key in ("min", "max"):
            if key in spec:
                try:
                    changes[key] = value_type.parse_bound(key, spec[key], field, self.ctx)
                except FieldValueError as exc:
                    self.report((*path, key), f"{key} {spec[key]!r} is not valid: {exc}")
                    return None
        if changes.get("min") is not None and changes.get("max") is not None and changes["min"] > changes["max"]:
            self.report((*path, "min"), f"min {spec['min']!r} is greater than max {spec['max']!r}")
            return None
        if field.min_length is not None and field.max_length is not None and field.min_length > field.max_length:
            self.report((*path, "min_length"), "min_length is greater than max_length")
            return None
        field = replace(field, **changes)
        if "default" not in spec:
            return field
        raw_default = spec["default"]
        if field.is_formula:
            self.report((*path, "default"), "a formula is computed and cannot have a default")
            return None
        try:
            if field.multiple:
                items = raw_default if isinstance(raw_default, list) else [raw_default]
                default = [field.type.parse(item, field, self.ctx) for item in items]
                messages = [m for item in default for m in field.type.check(item, field)]
            else:
                default = field.type.parse(raw_default, field, self.ctx)
                messages = field.type.check(default, field) if default is not None else []
        except FieldValueError as exc:
            self.report((*path, "default"), f"default {raw_default!r} is not valid: {exc}")
            return None
        if messages:
            self.report((*path, "default"), f"default {raw_default!r} violates a constraint: {messages[0]}")
            return None
        return replace(field, default=default)

    def formula_order(self, fields: Mapping[str, FieldDef]) -> tuple[str, ...]:
        """Formulas in an order where each comes after the formulas it reads; cycles are reported."""
        formulas = {name: f for name, f in fields.items() if f.expr is not None}
        order: list[str] = []
        state: dict[str, str] = {}

        def visit(name: str, trail: list[str]) -> None:
            if state.get(name) == "done":
                return
            if state.get(name) == "active":
                cycle = [*trail[trail.index(name):], name]
                self.report(("fields", cycle[0], "expr"), f"formula cycle: {' -> '.join(cycle)}")
                return
            state[name] = "active"
            expr = formulas[name].expr
            for dep in sorted((expr.names if expr else frozenset()) & formulas.keys()):
                visit(dep, [*trail, name])
            state[name] = "done"
            order.append(name)

        for name in formulas:
            visit(name, [])
        return tuple(order)

    # --- layout, title, list ------------------------------------------------------------------------

    def layout(self, path: Path_, raw: Mapping[str, Any], fields: Mapping[str, FieldDef]) -> Layout:
        """Tabs of groups; every name must be a field, placed once; required fields must be placed."""
        if "tabs" in raw and "groups" in raw:
            self.report(path, "use either 'tabs' or 'groups', not both")
        if "tabs" not in raw and "groups" not in raw:
            if path != ("layout",):
                self.report(path, "a layout variant needs 'tabs' or 'groups'")
            return Layout((Tab(None, (Group(None, tuple(fields)),)),))
        raw_tabs = raw.get("tabs") or [{"groups": raw["groups"]}]
        department = str(path[-1]) if path != ("layout",) else None
        tab_path = (*path, "tabs") if "tabs" in raw else path
        placed: dict[str, Path_] = {}
        tabs = []
        for t, raw_tab in enumerate(raw_tabs):
            groups = []
            tp: Path_ = (*tab_path, t) if "tabs" in raw else path
            self.section_paths[(department, t, None)] = tp
            for g, raw_group in enumerate(raw_tab["groups"]):
                gp: Path_ = (*tp, "groups", g)
                self.section_paths[(department, t, g)] = gp
                names = []
                for i, name in enumerate(raw_group["fields"]):
                    if name not in self.field_names:
                        self.report((*gp, "fields", i), f"unknown field '{name}'{suggest(name, self.field_names)}")
                    elif name in placed:
                        self.report((*gp, "fields", i), f"field '{name}' is placed twice in this layout "
                                    f"(first at line {self.source.line(placed[name])})")
                    else:
                        placed[name] = (*gp, "fields", i)
                        names.append(name)
                if (raw_group.get("access") or {}).get("view") is not None or \
                        (raw_tab.get("access") or {}).get("view") is not None:
                    self.restricted_by_layout.update(names)
                groups.append(Group(
                    Label.of(raw_group["label"]) if "label" in raw_group else None, tuple(names),
                    raw_group.get("columns", 1), self.access((*gp, "access"), raw_group.get("access")),
                    self.expression((*gp, "visible_if"), raw_group.get("visible_if")),
                ))
            tabs.append(Tab(Label.of(raw_tab["label"]) if "label" in raw_tab else None, tuple(groups),
                            self.access((*tp, "access"), raw_tab.get("access")),
                            self.expression((*tp, "visible_if"), raw_tab.get("visible_if"))))
        for name, field in fields.items():
            if field.required and name not in placed and field.default is None:
                self.report(path, f"required field '{name}' is placed nowhere in this layout")
        return Layout(tuple(tabs))

    def title(self, raw: str | None, fields: Mapping[str, FieldDef]) -> TitleTemplate:
        """The title template; defaults to the first text field, else '#{id}'."""
        if raw is None:
            first = next((n for n, f in fields.items() if f.type.names_records and not f.multiple), None)
            raw = f"{{{first}}}" if first else "#{id}"
        restricted = {n for n, f in fields.items() if f.access.view is not None} | self.restricted_by_layout
        for formula in self.formula_names_in_order:
            expr = fields[formula].expr
            if expr is not None and expr.names & restricted:
                restricted.add(formula)
        parts: list[tuple[str, str | None]] = []
        try:
            for literal, name, spec, conversion in string.Formatter().parse(raw):
                if name is not None and (spec or conversion):
                    self.report(("title",), f"'{{{name}}}': format specs are not supported in titles")
                if name is not None and name not in self.known_names:
                    self.report(("title",), f"unknown field '{name}' in title{suggest(name, self.known_names)}")
                    name = None
                elif name is not None and name in restricted:
                    self.report(("title",), f"field '{name}' has restricted view access (its own, its group's or "
                                "its tab's, or it is computed from such a field) and cannot be part of the title, "
                                "which everybody sees")
                    name = None
                parts.append((literal, name or None))
        except ValueError as exc:
            self.report(("title",), f"malformed title template: {exc}")
        return TitleTemplate(raw, tuple(parts))

    def list_spec(self, raw: Mapping[str, Any], fields: Mapping[str, FieldDef]) -> ListSpec:
        """List columns, default sort and search fields."""
        sortable = [*self.field_names, *LISTABLE_SYSTEM_FIELDS]
        columns = raw.get("columns") or [n for n, f in fields.items() if f.type.storage != "json"][:6]
        for i, name in enumerate(raw.get("columns") or []):
            if name not in sortable:
                self.report(("list", "columns", i), f"unknown field '{name}'{suggest(name, sortable)}")
        sort = raw.get("sort", "-id")
        sort_name = sort.lstrip("-")
        if sort_name not in sortable:
            self.report(("list", "sort"), f"unknown field '{sort_name}'{suggest(sort_name, sortable)}")
        elif sort_name in fields and fields[sort_name].is_list:
            self.report(("list", "sort"), f"cannot sort by '{sort_name}', which holds several values")
        search = raw.get("search") or [n for n, f in fields.items() if f.type.searchable]
        for i, name in enumerate(raw.get("search") or []):
            if name not in fields:
                self.report(("list", "search", i), f"unknown field '{name}'{suggest(name, self.field_names)}")
            elif not fields[name].type.searchable:
                self.report(("list", "search", i), f"field '{name}' is not a text field and cannot be searched")
        return ListSpec(tuple(c for c in columns if c in sortable), sort,
                        tuple(n for n in search if n in fields))

    # --- board, badges, picker -----------------------------------------------------------------------

    def board(self, raw: Mapping[str, Any], fields: Mapping[str, FieldDef]) -> BoardSpec:
        """What a kanban board groups by and sums, and which fields its cards show; defaults as documented."""
        groupable = [n for n, f in fields.items() if f.type.groups_board and not f.is_formula and not f.is_list]
        summable = [n for n, f in fields.items() if f.value_type.sums_board and not f.is_list]
        group = raw.get("group")
        if group is None:
            group = next((n for n in DEFAULT_BOARD_GROUPS if n in groupable), groupable[0] if groupable else None)
        elif self.field_named(("board", "group"), group) and group not in groupable:
            kinds = ", ".join(sorted({t.name for t in FIELD_TYPES.all() if t.groups_board}))
            self.report(("board", "group"), f"a board groups by a field of type {kinds} (one value, not a formula); "
                        f"'{group}' is not one{_one_of(groupable)}")
        sums: tuple[str, ...]
        if "sum" in raw:
            sums = (raw["sum"],)
            if self.field_named(("board", "sum"), raw["sum"]) and raw["sum"] not in summable:
                kinds = ", ".join(sorted({t.name for t in FIELD_TYPES.all() if t.sums_board}))
                self.report(("board", "sum"), f"a board sums a field of type {kinds} (one value); "
                            f"'{raw['sum']}' is not one{_one_of(summable)}")
        else:  # the money fields, the first the user may see
            sums = tuple(n for n in summable if fields[n].currency is not None)
        show = self.field_list("board.show", raw.get("show"), fields, ())
        return BoardSpec(group, sums, show)

    def field_named(self, path: Path_, name: str) -> bool:
        """True when `name` is a field of the entity; reports it otherwise."""
        if name in self.field_names:
            return True
        self.report(path, f"unknown field '{name}'{suggest(name, self.field_names)}")
        return False

    def field_list(self, key: str, raw: list[str] | None, fields: Mapping[str, FieldDef],
                   default: tuple[str, ...]) -> tuple[str, ...]:
        """Names of fields listed under `key` ("badges", "board.show"), each reported when unknown."""
        if raw is None:
            return default
        base: Path_ = tuple(key.split("."))
        return tuple(name for i, name in enumerate(raw) if self.field_named((*base, i), name) and name in fields)

    @staticmethod
    def default_badges(fields: Mapping[str, FieldDef]) -> tuple[str, ...]:
        """Without `badges:`: stage-like selects, then every field whose type is a badge by default (tags)."""
        stages = [n for n, f in fields.items() if f.type.groups_board and n in DEFAULT_BADGE_NAMES]
        return (*stages, *(n for n, f in fields.items() if f.type.badge_by_default))

    # --- duplicates ---------------------------------------------------------------------------------------

    def duplicates(self, raw: Mapping[str, Any] | None, fields: Mapping[str, FieldDef]) -> DuplicatesSpec:
        """The `duplicates:` section: rules whose fields exist and can be compared so, and the fields shown."""
        if raw is None:
            return DuplicatesSpec()
        rules: list[DuplicateRule] = []
        seen: dict[str, int] = {}
        for i, spec in enumerate(raw["rules"]):
            rule = self.duplicate_rule(("duplicates", "rules", i), spec, fields)
            if rule is None:
                continue
            if rule.key in seen and rules[seen[rule.key]].same == rule.same:
                self.report(("duplicates", "rules", i), f"this rule repeats rules[{seen[rule.key]}] "
                            f"(line {rules[seen[rule.key]].line}); remove one")
                continue
            seen.setdefault(rule.key, len(rules))
            rules.append(rule)
        show = self.field_list("duplicates.show", raw.get("show"), fields, ())
        return DuplicatesSpec(tuple(rules), show)

    def duplicate_rule(self, path: Path_, spec: Mapping[str, Any], fields: Mapping[str, FieldDef]
                       ) -> DuplicateRule | None:
        """One rule: exact (`match`) or fuzzy (`fuzzy`, with `threshold`, `scorer`, `same` or `prefix`)."""
        if ("match" in spec) == ("fuzzy" in spec):
            self.report(path, "a duplicates rule takes either 'match' (fields whose equal values mark a duplicate) or "
                        "'fuzzy' (a text field compared by closeness)" + (", not both" if "match" in spec else ""))
            return None
        ok = True
        line = self.source.line(path)
        if "match" in spec:
            for key in ("threshold", "scorer", "same", "prefix"):
                if key in spec:
                    self.report((*path, key), f"'{key}' applies to fuzzy rules; an exact rule (match) compares "
                                "values as stored" + ("; list the field in 'match' instead" if key == "same" else ""))
                    ok = False
            for j, name in enumerate(spec["match"]):
                ok = self.duplicate_field((*path, "match", j), name, fields, "match") and ok
            return DuplicateRule("exact", tuple(spec["match"]), line=line) if ok else None
        name = spec["fuzzy"]
        ok = self.duplicate_field((*path, "fuzzy"), name, fields, "fuzzy")
        same = tuple(spec.get("same") or ())
        for j, other in enumerate(same):
            if other == name:
                self.report((*path, "same", j), f"'{other}' is the field the rule compares; 'same' names other "
                            "fields whose equal values a candidate must share (e.g. company)")
                ok = False
            else:
                ok = self.duplicate_field((*path, "same", j), other, fields, "same") and ok
        if same and "prefix" in spec:
            self.report((*path, "prefix"), "'prefix' blocks a fuzzy rule without 'same' (candidates whose text "
                        "begins alike); with 'same' the candidates are those sharing its values: remove one")
            ok = False
        if not ok:
            return None
        return DuplicateRule("fuzzy", (name,), same, spec.get("threshold", 90),
                             spec.get("scorer", DUPLICATE_SCORERS[0]), spec.get("prefix", 2), line)

    def duplicate_field(self, path: Path_, name: str, fields: Mapping[str, FieldDef], role: str) -> bool:
        """True when `name` is a field a duplicates rule may read in `role` (match, fuzzy, same); reported else."""
        if not self.field_named(path, name):
            return False
        field = fields.get(name)
        if field is None:  # reported with the field itself
            return False
        if field.expr is not None and field.expr.functions & _MOMENT_FUNCTIONS:
            called = ", ".join(f"{f}()" for f in sorted(field.expr.functions & _MOMENT_FUNCTIONS))
            self.report(path, f"formula '{name}' reads {called}: its stored value depends on the moment of the "
                        "last save, so it cannot tell duplicates")
            return False
        storage = field.value_type.storage
        if role == "fuzzy":
            if not field.value_type.names_records or field.is_list:
                texts = [n for n, f in fields.items() if f.value_type.names_records and not f.is_list]
                self.report(path, f"a fuzzy rule compares one text: '{name}' is a field of type "
                            f"{_type_name(field)}{' with several values' if field.is_list else ''}{_one_of(texts)}")
                return False
            return True
        if storage not in ("text", "number") or (role == "same" and field.is_list):
            what = "one value, a text or a number (e.g. company)" if role == "same" else \
                "texts or numbers (e.g. phones, emails, inn)"
            self.report(path, f"'{name}' is a field of type {_type_name(field)}"
                        f"{' with several values' if field.is_list else ''}, which cannot tell duplicates: "
                        f"'{role}' takes fields holding {what}")
            return False
        return True

    # --- validations and rules ----------------------------------------------------------------------

    def validations(self, raw: Iterable[Mapping[str, Any]]) -> Iterable[Validation]:
        """Cross-field validations."""
        for i, spec in enumerate(raw):
            expr = self.expression(("validations", i, "expr"), spec["expr"])
            target = spec.get("field")
            if target is not None and target not in self.field_names:
                self.report(("validations", i, "field"), f"unknown field '{target}'{suggest(target, self.field_names)}")
                target = None
            if expr is not None:
                yield Validation(expr, Label.of(spec["message"]), target)

    def rules(self, raw: Iterable[Mapping[str, Any]], fields: Mapping[str, FieldDef]) -> tuple[RuleDef, ...]:
        """Rules: triggers, conditions, actions and their templates are checked now (kartoteka/metadata/rules.py)."""
        return build_rules(self, raw, fields, self.entity_fields)


# Functions whose value depends on the moment of a save: a formula calling them holds no stable key.
_MOMENT_FUNCTIONS = frozenset({"today", "now"})


def _type_name(field: FieldDef) -> str:
    """The field's type as metadata writes it (a formula: `formula (text)`)."""
    return f"{field.type.name} ({field.value_type.name})" if field.is_formula else field.type.name


def _one_of(names: list[str]) -> str:
    return f"; one of: {', '.join(names)}" if names else "; this card has none"


def _compared_literals(tree: ast.AST) -> Iterable[tuple[str, str]]:
    """(field, text) for comparisons such as `stage == 'won'` or `stage in ['won', 'lost']`."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        names = [o.id for o in operands if isinstance(o, ast.Name)]
        if len(names) != 1:
            continue
        for operand in operands:
            items = operand.elts if isinstance(operand, ast.List | ast.Tuple) else [operand]
            for item in items:
                if isinstance(item, ast.Constant) and isinstance(item.value, str):
                    yield names[0], item.value
