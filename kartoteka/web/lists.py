"""Lists of cards (columns, sort, search, filters, keyset pages, saved views) and the kanban board."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as default
from typing import Any
from urllib.parse import parse_qsl, urlencode

from flask import Response, current_app, flash, g, redirect, render_template, request, url_for
from markupsafe import Markup, escape
from werkzeug.datastructures import MultiDict

from kartoteka.errors import BadRequest, Conflict, PermissionDenied, RecordValidationError
from kartoteka.extensions import platform
from kartoteka.listargs import MAX_FILTERS as MAX_LIST_FILTERS
from kartoteka.listargs import list_query, without
from kartoteka.messages import Message, message_of
from kartoteka.metadata.fieldtypes import FieldValueError
from kartoteka.metadata.model import EntityDef, FieldDef
from kartoteka.records.access import editable_fields, viewable_fields
from kartoteka.records.board import board_totals
from kartoteka.records.hooks import UI
from kartoteka.records.lookup import record_titles, trashed_titles
from kartoteka.records.model import Filter, ListQuery, Record, ids_in
from kartoteka.records.query import MAX_FILTER_VALUE_LENGTH, SYSTEM_COLUMNS, Total, count_records
from kartoteka.records.views import delete_view, list_views, save_view
from kartoteka.users import list_users, user_names
from kartoteka.web.auth import login_required, t
from kartoteka.web.common import board_field, cards, current_user, entity_for, scopes, submitted_version
from kartoteka.web.formatting import ValueDisplay, display_value, format_datetime, format_number, format_value
from kartoteka.web.forms import picked_id
from kartoteka.web.pickers import record_labels, resolve

MAX_FILTERS = 12
SYSTEM_LABELS = {"id": "#", "owner": "Owner", "created_at": "Created", "updated_at": "Updated",
                 "version": "Version", "created_by": "Created", "updated_by": "Updated"}


@dataclass(frozen=True)
class Column:
    """A list column: a field of the card or a system column (id, owner, created_at...)."""

    name: str
    field: FieldDef | None

    @property
    def sortable(self) -> bool:
        """Lists sort by single values only."""
        return self.field is None or not (self.field.is_list or self.field.value_type.storage == "json")

    @property
    def cell_macro(self) -> str:
        """The macro of templates/macros/fields.html showing a cell of this column (its field type's)."""
        return self.field.value_type.cell_macro if self.field is not None else "text_cell"


@dataclass(frozen=True)
class FilterControl:
    """One filter in the filter panel: which widget, for which field, with the values now in the URL."""

    name: str
    kind: str  # options | range | boolean | user | reference | text | presence (only empty / not empty)
    field: FieldDef | None
    options: tuple[tuple[str, str], ...] = ()
    inputs: Mapping[str, str] = default(default_factory=dict)  # attributes of a range's inputs (type, step, ...)
    hint: str = ""  # how a range's value is typed (ДД.ММ.ГГГГ), after its "from" and "to"
    calendar: str | None = None  # a range's calendar button opens a hidden picker of this input type ("date")


@dataclass(frozen=True)
class ListRow:
    """A row of the list's table: the record, the address of its card and its cells (`<td>`s) as HTML."""

    record: Record
    url: str
    cells: Markup


def _record_urls(entity_name: str) -> Any:
    """id → the address of the record's card, as url_for writes it (built once: the id is the path's last part)."""
    probe = url_for("cards.view_record", entity_name=entity_name, record_id=0)
    if probe.endswith("/0"):
        prefix = probe[:-1]
        return lambda record_id: prefix + str(int(record_id))
    return lambda record_id: url_for("cards.view_record", entity_name=entity_name, record_id=record_id)


def _columns(entity: EntityDef, visible: frozenset[str]) -> list[Column]:
    """The list's columns the user may see; a column that is the whole title would repeat the title column."""
    return [Column(n, entity.fields.get(n)) for n in entity.list.columns
            if (n in visible or (n in SYSTEM_COLUMNS and n not in entity.fields)) and entity.title.source != f"{{{n}}}"]


def _filter_controls(entity: EntityDef, visible: frozenset[str]) -> list[FilterControl]:
    """Filters for the list's columns and the fields whose types are always offered (selects, tags, booleans),
    as far as the user may see them: each of the kind its field type says, with the choices it gives."""
    names = [n for n in entity.list.columns if n in visible]
    names += [n for n, f in entity.fields.items() if n in visible and n not in names and f.type.offered_filter]
    out = ValueDisplay(g.language)
    controls = []
    for name in names[:MAX_FILTERS]:
        shown = entity.fields[name]
        value_type = shown.value_type
        inputs = dict(value_type.filter_input(shown, out))
        hint = inputs.pop("placeholder", "")
        controls.append(FilterControl(name, value_type.filter_kind, shown, value_type.filter_choices(shown, out),
                                      inputs, hint, value_type.filter_calendar))
    controls.append(FilterControl("owner", "user", None))
    return controls


def _clean_args(entity: EntityDef) -> MultiDict[str, str]:
    """The query string with picked references ("Northwind — Moscow", "#12") turned into their ids."""
    args: MultiDict[str, str] = MultiDict()
    resolved: dict[tuple[str, str], str] = {}
    for key, value in request.args.items(multi=True):
        name = key.partition("__")[0]
        field = entity.fields.get(name)
        if field is not None and field.type.refers == "record" and not key.endswith("__isnull") and value.strip():
            picked = picked_id(value)
            if picked is not None:
                value = str(picked)
            elif not value.strip().isdigit():
                if len(resolved) >= MAX_LIST_FILTERS:  # each typed title is a query; the list refuses this many
                    raise BadRequest(Message("list.too_many_typed_references", "At most {limit} filters in one list.",
                                             limit=MAX_LIST_FILTERS))
                target = (field.to or "", value.strip())
                if target not in resolved:
                    found = resolve(target[0], value)
                    resolved[target] = str(found[0]) if len(found) == 1 else value.strip()
                value = resolved[target]
        args.add(key, value)
    return args


# Filter operators whose value is one value of the field, typed as the reader's language writes it.
_TYPED_OPERATORS = frozenset({"", "eq", "ne", "lt", "lte", "gt", "gte"})


def _read_typed(entity: EntityDef, args: MultiDict[str, str]) -> MultiDict[str, str]:
    """The filter values as the list query reads them: each typed the way the reader's language writes it
    ('1 500,5', '01.03.2026' in Russian; '1,500.5' in English) read by its field type's `typed_text` ('1500.5',
    '2026-03-01'). BadRequest (the list's filter error) for a value that reads two ways ('1.500' in Russian); one that
    is no value at all is passed on as typed, for the query to refuse with its message."""
    read: MultiDict[str, str] = MultiDict()
    for key, value in args.items(multi=True):
        name, _, op = key.partition("__")
        field = entity.fields.get(name)
        # A value no field could hold is the query's to refuse, before any work on it.
        if field is not None and op in _TYPED_OPERATORS and value.strip() and len(value) <= MAX_FILTER_VALUE_LENGTH:
            try:
                value = field.value_type.typed_text(value, field, g.language)
            except FieldValueError as exc:
                which = f"{name}__{op or 'eq'}"
                raise BadRequest(Message("filter.invalid", "Filter '{name}': {message}", name=which,
                                         message=message_of(exc))) from None
        read.add(key, value)
    return read


class ListPage:
    """Everything the list template shows, formatted for the user.

    `args` are the URL's as typed: the page's links keep them and the filter form shows them (`form`: the URL's
    even when a filter in it was refused and the list is shown unfiltered, so the reader sees what to correct).
    `read` are the same read in the reader's language (ISO dates, plain numbers): what a saved view keeps.
    """

    def __init__(self, entity: EntityDef, args: MultiDict[str, str], query: ListQuery,
                 read: MultiDict[str, str] | None = None, form: MultiDict[str, str] | None = None,
                 known: Mapping[int, str] | None = None) -> None:
        """`known`: names of users by id that the page has at hand (it asks for the others)."""
        known = known or {}
        user = current_user()
        service = platform.service
        self.entity = entity
        self.args = args
        self.read = args if read is None else read
        self.form = args if form is None else form
        self.visible = viewable_fields(entity, user)
        self.columns = _columns(entity, self.visible)
        self.page = service.list(entity.name, user, query)
        # Exact up to the cap ("more than 10,000" beyond it); exactly whatever it costs after "Count all".
        cap = None if args.get("total") == "exact" else platform.state.settings.list_count_cap
        if not query.cursor and self.page.next_cursor is None and (not cap or len(self.page.items) <= cap):
            self.total = Total(len(self.page.items), exact=True)  # the first page holds them all: nothing to count
        else:
            self.total = count_records(service, entity.name, user, query, cap)
        self.sort = self.page.sort
        shown = [r.owner for r in self.page.items if r.owner is not None] + [
            v for r in self.page.items for c in self.columns if c.field is not None and c.field.type.refers == "user"
            for v in ids_in(r.values.get(c.name))]
        # Names the page already has (the owner filter's users) are not asked for again.
        self.people: dict[int, str] = {i: known[i] for i in shown if i in known}
        self.people.update(user_names(platform.state.engine, [i for i in shown if i not in self.people]))
        self.titles: dict[str, dict[int, str]] = {}
        for c in self.columns:
            if c.field is not None and c.field.type.refers == "record":
                ids = [i for r in self.page.items for i in ids_in(r.values.get(c.name))]
                titles = record_titles(service, c.field.to or "", ids, user)
                if missing := set(ids) - titles.keys():  # in the trash (or outside the scope): said, not "#12"
                    deleted = t("deleted")
                    titles.update((i, f"{title} ({deleted})")
                                  for i, title in trashed_titles(service, c.field.to or "", missing, user).items())
                self.titles[c.name] = titles

    def cell(self, record: Record, column: Column) -> str:
        """A cell's text."""
        if column.field is None:
            value = getattr(record, column.name, None)
            if column.name in ("owner", "created_by", "updated_by"):
                return self.people.get(value, "") if value else ""
            if hasattr(value, "isoformat"):
                return format_datetime(value, g.language, platform.state.settings.zone)
            return "" if value is None else str(value)
        return format_value(column.field, record.values.get(column.name), g.language, user_names=self.people,
                            record_titles=self.titles.get(column.name, {}))

    def rows(self) -> list[ListRow]:
        """The table's rows: each cell written by its column's cell macro (templates/macros/fields.html) from the
        value and its text. `text_cell`, which writes the text escaped, is written here directly: a macro call from
        the template for each of the page's hundreds of cells cost more than the rest of the row."""
        macros = current_app.jinja_env.get_template("macros/fields.html").module
        language = g.language
        makers = []
        for c in self.columns:
            macro = None if c.cell_macro == "text_cell" else getattr(macros, c.cell_macro)
            out = None if c.field is None else ValueDisplay(language, user_names=self.people,
                                                            record_titles=self.titles.get(c.name, {}))
            makers.append((c, macro, out))
        url = _record_urls(self.entity.name)
        rows = []
        for r in self.page.items:
            cells = []
            for c, macro, out in makers:
                if c.field is None or out is None:
                    value, text = None, self.cell(r, c)
                else:
                    value = r.values.get(c.name)
                    text = display_value(c.field, value, out)
                cells.append(escape(text) if macro is None else macro(c.field, value, text))
            # Every cell is escaped text or a macro's HTML (Markup): joined as plain strings, marked safe once.
            rows.append(ListRow(r, url(r.id), Markup("".join(f"<td>{cell}</td>" for cell in cells))))  # noqa: S704
        return rows

    def header(self, column: Column) -> str:
        """A column's heading in the user's language."""
        if column.field is not None:
            return column.field.label.get(g.language)
        return t(SYSTEM_LABELS.get(column.name, column.name))

    def sort_url(self, column: Column) -> str:
        """The list sorted by this column; ascending first, descending when it is already ascending."""
        target = f"-{column.name}" if self.sort == column.name else column.name
        return "?" + urlencode(without(self.args, "cursor", sort=target))

    def aria_sort(self, column: Column) -> str:
        """ascending | descending | none, for the column header."""
        if self.sort == column.name:
            return "ascending"
        if self.sort == f"-{column.name}":
            return "descending"
        return "none"

    def next_url(self) -> str | None:
        """The next page, keeping every filter."""
        if not self.page.next_cursor:
            return None
        return "?" + urlencode(without(self.args, "cursor", cursor=self.page.next_cursor))

    def first_url(self) -> str | None:
        """The first page, when this is not it."""
        if not self.args.get("cursor"):
            return None
        return "?" + urlencode(without(self.args, "cursor"))

    def query_string(self) -> str:
        """The filters, search and sort of this list as typed (the kanban link's, read by the same reader)."""
        return urlencode(without(self.args, "cursor", "total"))

    def saved_query(self) -> str:
        """The filters, search and sort as a saved view keeps them: in no reader's language, as every reader reads
        it (a Russian '1 500,5' would be unclear to an English reader, an English '1,500.5' to a Russian one)."""
        return urlencode(without(self.read, "cursor", "total"))

    def total_text(self) -> str:
        """"1,234 records", or "More than 10,000 records" when the list was not counted to the end."""
        count = format_number(self.total.count, g.language)
        if self.total.exact:
            return t("{count} records", count=count)
        return t("More than {count} records", count=count)

    def exact_total_url(self) -> str:
        """This page again with the list counted to the end."""
        return "?" + urlencode(without(self.args, "total", total="exact"))

    def values(self, key: str) -> list[str]:
        """Values of a filter key in the URL, for re-filling the filter panel."""
        return self.form.getlist(key)

    def picked(self, control: FilterControl) -> str:
        """A reference filter's text: the picked record as its picker shows it, not its number."""
        value = self.form.get(control.name, "")
        if control.field is not None and value.isdigit() and value.isascii() and len(value) < 19:
            return record_labels(control.field.to or "", [int(value)]).get(int(value), value)
        return value

    def filtered(self) -> bool:
        """True when any filter is set (the panel opens)."""
        return any(k not in ("sort", "cursor", "q", "total") for k in self.form)


@cards.get("/<entity_name>/")
@login_required
def list_view(entity_name: str) -> Any:
    """The list: columns from the metadata, sort, search, filters, total, keyset pages, saved views."""
    entity = entity_for(entity_name)
    args = _clean_args(entity)
    users = list_users(platform.state.engine, limit=500)  # the owner filter's choices
    known = dict(users)
    try:
        read = _read_typed(entity, args)
        page = ListPage(entity, args, list_query(read, skip_empty=True), read, known=known)
        error = None
    except BadRequest as exc:
        # A bad filter in the URL shows the list unfiltered with the reason, instead of an error page.
        error = exc.detail
        page = ListPage(entity, MultiDict(), ListQuery(), form=args, known=known)
    readable = page.visible | SYSTEM_COLUMNS.keys()
    views = list_views(platform.state.engine, current_user(), entity.name, readable.__contains__)
    return render_template("cards/list.html", entity=entity, page=page, controls=_filter_controls(
        entity, page.visible), views=views, error=error, scopes=scopes(entity), board=board_field(entity),
        users=users), (400 if error else 200)


@cards.post("/<entity_name>/views")
@login_required
def save_list_view(entity_name: str) -> Response:
    """Save the current filters and sort under a name, for oneself or shared with everybody."""
    entity = entity_for(entity_name)
    query = request.form.get("query", "")
    view = save_view(platform.state.engine, current_user(), entity.name, request.form.get("name", ""), query,
                     request.form.get("shared") == "true", platform.state.clock.now())
    flash(t("View saved."), "success")
    return redirect(url_for("cards.list_view", entity_name=entity.name) + "?" + view.query)


@cards.post("/<entity_name>/views/<int:view_id>/delete")
@login_required
def delete_list_view(entity_name: str, view_id: int) -> Response:
    """Delete one of one's saved views."""
    entity = entity_for(entity_name)
    delete_view(platform.state.engine, current_user(), view_id)
    flash(t("View deleted."), "success")
    return redirect(url_for("cards.list_view", entity_name=entity.name))


# --- kanban ------------------------------------------------------------------------------------------

BOARD_LIMIT = 50


def _sum_field(entity: EntityDef, visible: frozenset[str]) -> str | None:
    """What a column adds up: metadata's `board.sum`, by default the first money field the user can see."""
    return next((n for n in entity.board.sums if n in visible), None)


@cards.get("/<entity_name>/kanban")
@login_required
def kanban(entity_name: str) -> Any:
    """One column per stage with its count and sum; cards move by drag and drop or a keyboard form."""
    entity = entity_for(entity_name)
    user = current_user()
    visible = viewable_fields(entity, user)
    group = request.args.get("board") or board_field(entity)
    if group is None or group not in visible or not entity.fields[group].type.groups_board:
        raise BadRequest(Message("board.unavailable", "This card has no stage or status to arrange a board by."))
    field = entity.fields[group]
    sum_name = _sum_field(entity, visible)
    args = _clean_args(entity)
    base = list_query(_read_typed(entity, args), skip_empty=True)
    totals = board_totals(platform.service, entity.name, user, group, sum_name, base)
    columns = []
    for option in field.options:
        query = ListQuery((*base.filters, Filter(group, "eq", option.value)), base.search,
                          base.sort or entity.list.sort, BOARD_LIMIT)
        page = platform.service.list(entity.name, user, query)
        columns.append((option, totals.get(option.value), page.items))
    shown = [entity.fields[n] for n in entity.board.show if n in visible and n != group]
    cards_shown = [r for _, _, items in columns for r in items]
    people = user_names(platform.state.engine, [r.owner for r in cards_shown] + [
        v for r in cards_shown for f in shown if f.type.refers == "user" for v in ids_in(r.values.get(f.name))])
    titles = {f.name: record_titles(platform.service, f.to or "", [i for r in cards_shown
                                                                    for i in ids_in(r.values.get(f.name))], user)
              for f in shown if f.type.refers == "record"}

    def line(record: Record, shown_field: FieldDef) -> str:
        return format_value(shown_field, record.values.get(shown_field.name), g.language, user_names=people,
                            record_titles=titles.get(shown_field.name, {}))

    return render_template("cards/kanban.html", entity=entity, field=field, columns=columns,
                           movable=_movable(entity, group, cards_shown), shown=shown, line=line,
                           sum_field=entity.fields.get(sum_name) if sum_name else None, people=people,
                           scopes=scopes(entity), format_value=format_value, args=args, limit=BOARD_LIMIT)


def _movable(entity: EntityDef, group: str, shown: list[Record]) -> frozenset[int]:
    """Cards of the board the user may move: the stage is theirs to edit and the record in their update scope."""
    user = current_user()
    if group not in editable_fields(entity, user):
        return frozenset()
    may = platform.service.permissions(entity.name, shown, user)
    return frozenset(record_id for record_id, allowed in may.items() if allowed.update)


@cards.post("/<entity_name>/<int:record_id>/move")
@login_required
def move(entity_name: str, record_id: int) -> Any:
    """Move a card to another column through the record service; a refusal opens the card's form."""
    from kartoteka.web import htmx

    entity = entity_for(entity_name)
    # Back to the board as it was (its filters and grouping); re-encoded, so only a query string comes through.
    shown = urlencode(parse_qsl(request.form.get("args", ""), keep_blank_values=True)[:MAX_LIST_FILTERS + 4])
    board_url = url_for("cards.kanban", entity_name=entity.name) + (f"?{shown}" if shown else "")
    group = request.form.get("board") or board_field(entity) or ""
    grouped = entity.fields.get(group) if group in viewable_fields(entity, current_user()) else None
    if grouped is None or not grouped.type.groups_board:  # a move changes a board's column, nothing else
        raise BadRequest(Message("board.not_groupable", "'{name}' is not a field a board groups by.", name=group[:60]))
    target = request.form.get("to", "")
    version = submitted_version()
    try:
        if version is None:
            raise Conflict(Message("version.missing_move", "The move did not say which version of the card it "
                                   "changes; reload the board and move the card again."))
        platform.service.update(entity.name, record_id, {group: target}, current_user(), expected_version=version,
                                origin=UI)
    except Conflict as exc:
        stale = version is not None  # else the move said no version at all: its own message
        flash(t("The card was saved meanwhile (in another tab or by someone else); the board now shows it as "
                "saved. Move it again if you still want to.") if stale else t(exc.detail), "error")
        return Response(status=204, headers={"HX-Refresh": "true"}) if htmx else redirect(board_url)
    except PermissionDenied as exc:
        flash(t(exc.detail), "error")
        return Response(status=204, headers={"HX-Refresh": "true"}) if htmx else redirect(board_url)
    except RecordValidationError:
        # lost_reason becomes required on "lost": let the user fill it in rather than fail silently.
        flash(t("The card cannot be saved in that column as it is: the form shows what to fill in or fix."),
              "info")
        form_url = url_for("cards.edit_record", entity_name=entity.name, record_id=record_id, **{group: target})
        if htmx:
            return Response(status=204, headers={"HX-Redirect": form_url})
        return redirect(form_url)
    if htmx:
        return Response(status=204, headers={"HX-Refresh": "true"})
    flash(t("Moved."), "success")
    return redirect(f"{board_url}#card-{record_id}")
