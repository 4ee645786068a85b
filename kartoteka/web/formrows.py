"""Card form rows compiled once per shape: the widget macros rendered with holes where one form's texts go.

A 60-field form rendered macro by macro costs about 1,100 template-to-Python calls and 200 macro calls; most of
what they produce depends only on the field's metadata, the reader's language and a few flags (required, read
only, hidden, with errors...). So a row is rendered once per such *shape* by the very macros of
templates/macros/fields.html, given a `RowSkeleton` whose texts are `Hole`s, and kept as literal pieces and holes;
each form then only fills the holes with its own texts, escaped. The macros stay the one home of the HTML.

The shape is every attribute of a `FieldView` that is not a text (flags and the number of repeated items), so a
macro's `{% if %}` can only branch on what the key holds: a hole used in a condition, a filter or a comparison
raises `HoleMisused` instead of rendering something wrong.
"""

from __future__ import annotations

import re
import secrets
from collections import ChainMap
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter
from typing import Any

from flask import Flask, url_for
from jinja2 import Environment
from markupsafe import Markup

from kartoteka.metadata.model import FieldDef
from kartoteka.web.fieldview import BLANK_ITEM, FieldView, Item, consent_given, offered
from kartoteka.web.security import escaped

__all__ = ["BLANK_ITEM", "FieldView", "FormRows", "HoleMisused", "Item", "RowSkeleton", "consent_given",
           "init_form_rows", "offered"]

# A row is compiled at most once per field, language and shape. The bounds keep a flood of odd shapes (crafted
# posts, ever new lists of users) from growing the cache without end: when either is reached it starts again.
MAX_ROWS = 20_000
MAX_CHARS = 16_000_000  # the compiled rows' text, all together
# A repeated field (phones, e-mails, references) with more values than this is rendered directly: its number of
# values shapes the row, and a post may hold up to MAX_FORM_VALUES of them.
MAX_COMPILED_ITEMS = 4
MACROS = "macros/fields.html"


class HoleMisused(RuntimeError):
    """A macro used a form's text other than by writing it out (a condition, a filter, a comparison)."""


# Template globals that differ between requests, which a compiled row must not bake in for everyone.
PER_REQUEST = ("g", "request", "session", "current_user", "csrf_token", "config", "get_flashed_messages")


class _Unavailable:
    """What a field macro finds under a per-request name: any use raises."""

    def __init__(self, name: str) -> None:
        self._name = name

    def _refuse(self, *_: Any) -> Any:
        raise HoleMisused(f"field macros are compiled once for everyone: {self._name!r} is not theirs to read; "
                          "give the FieldView what the row needs")

    __getattr__ = __call__ = __getitem__ = __str__ = __html__ = __bool__ = __iter__ = _refuse


class RowMismatch(AssertionError):
    """A compiled row differs from what the macros render for the same form (a shape misses a flag)."""


class Hole:
    """A place in a compiled row where each form writes one of its texts: `get` reads it from a FieldView."""

    __slots__ = ("get", "marker")
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, get: Callable[[Any], Any], number: int, nonce: str) -> None:
        self.get = get
        self.marker = f"\x00{nonce}:{number}\x00"

    def __html__(self) -> str:
        return self.marker

    def _misused(self, *_: Any) -> Any:
        raise HoleMisused("a form's text in a field macro may only be written out ({{ v.text }}); branch on "
                          "FieldView flags instead")

    __str__ = __bool__ = __len__ = __iter__ = __eq__ = __ne__ = __lt__ = __gt__ = __contains__ = _misused
    __add__ = __radd__ = __mod__ = __getitem__ = __int__ = __float__ = _misused


def _hole_of(text: str) -> Any:
    """A RowSkeleton property: a hole filled with the FieldView's `text` (a name of this module, never of data)."""
    read = attrgetter(text)
    return property(lambda skeleton: skeleton.hole(read), doc=f"A hole for the view's {text}.")


def _item_hole_of(text: str) -> Any:
    """A skeleton item's property: a hole filled with the `text` of the view's item at the same place."""
    read = attrgetter(text)
    return property(lambda item: item._skeleton.hole(lambda v, i=item._index: read(v.items[i])),
                    doc=f"A hole for the item's {text}.")


class RowSkeleton(FieldView):
    """A FieldView whose texts are holes: what the macros render once per shape."""

    __slots__ = ("holes", "nonce")

    def __init__(self, view: FieldView) -> None:
        for name in FieldView.__slots__:
            if not name.startswith("_"):
                object.__setattr__(self, name, getattr(view, name))
        self._errors, self._text = [], None
        self.holes: list[Hole] = []
        # Markers no text of the metadata or of a user's name can hold by chance: a NUL and a new random token.
        self.nonce = secrets.token_hex(8)
        # Keyed items (the users to choose) are written as they are; which one is selected is each form's own.
        self.items = tuple(_KeyedSkeletonItem(self, i, item) if self.items_keyed else _SkeletonItem(self, i)  # type: ignore[misc]
                           for i, item in enumerate(view.items))

    def hole(self, get: Callable[[Any], Any]) -> Hole:
        """A new hole filled by `get(view)`."""
        made = Hole(get, len(self.holes), self.nonce)
        self.holes.append(made)
        return made

    # Each text of a FieldView is, in the skeleton, a hole its forms fill from their own view.
    text = _hole_of("text")
    used = _hole_of("used")
    errors = _hole_of("errors")
    theirs = _hole_of("theirs")
    display_or_dash = _hole_of("display_or_dash")
    switched = _hole_of("switched")
    consent_record = _hole_of("consent_record")

    def marked(self, value: str) -> Hole:  # type: ignore[override]
        return self.hole(lambda v: v.marked(value))


class _SkeletonItem:
    """The i-th repeated item of a RowSkeleton: its texts are holes."""

    def __init__(self, skeleton: RowSkeleton, index: int) -> None:
        self._skeleton, self._index = skeleton, index

    def __bool__(self) -> bool:
        return True

    value = _item_hole_of("value")
    text = _item_hole_of("text")
    url = _item_hole_of("url")
    selected = _item_hole_of("selected")


class _KeyedSkeletonItem(_SkeletonItem):
    """The i-th item of a list that is part of the shape (the users to choose): only its selection is a hole."""

    def __init__(self, skeleton: RowSkeleton, index: int, item: Item) -> None:
        super().__init__(skeleton, index)
        self._item = item

    @property
    def value(self) -> str:  # type: ignore[override]
        return self._item.value

    @property
    def text(self) -> str:  # type: ignore[override]
        return self._item.text

    @property
    def url(self) -> str:  # type: ignore[override]
        return self._item.url


Pieces = tuple["str | Hole", ...]


class FormRows:
    """Renders card form rows, compiling each (field, language, shape) once; one per app."""

    def __init__(self, env: Environment, *, verify: bool = False) -> None:
        self.app_env = env
        self.verify = verify  # tests: every compiled row is checked against the app's macros rendering it directly
        self._overlay: Environment | None = None
        self._compiled: dict[tuple[Any, ...], tuple[FieldDef, Pieces | None]] = {}
        self._chars = 0
        self._template: Any = None

    @property
    def env(self) -> Environment:
        """The environment rows are compiled in: an overlay of the app's where the request, the session and the
        signed-in user cannot be read at all (a row compiled for one person is filled in for everyone). Made on
        first use, when the app's environment is fully configured (trim_blocks, filters...)."""
        if self._overlay is None:
            overlay = self.app_env.overlay(cache_size=100)
            overlay.globals = ChainMap({name: _Unavailable(name) for name in PER_REQUEST},  # type: ignore[assignment]
                                       self.app_env.globals)
            self._overlay = overlay
        return self._overlay

    def _macros(self) -> Any:
        return self.env.get_template(MACROS).module

    def refresh(self) -> None:
        """Forget the compiled rows when the macros' file has changed (only checked where templates auto-reload,
        as in development: an edited macro shows on the next page, not after a restart)."""
        if not self.env.auto_reload:
            return
        template = self.env.get_template(MACROS)
        if template is not self._template:
            self._template = template
            self._compiled.clear()
            self._chars = 0

    def render(self, view: FieldView, url_root: str = "") -> Markup:
        """The row of `view`: its compiled shape with the form's texts filled in."""
        return Markup(self.html(view, url_root))  # noqa: S704  (the macros' output, holes escaped)

    def html(self, view: FieldView, url_root: str = "") -> str:
        """The row of `view` as HTML text (what `render` marks safe; a form's rows are joined before that)."""
        if len(view.items) > MAX_COMPILED_ITEMS and not view.items_keyed:
            return self.render_directly(view)
        key = (id(view.f), view.language, url_root, view.shape())
        found = self._compiled.get(key)
        if found is None or found[0] is not view.f:
            found = (view.f, self._compile(view))
            size = sum(len(p) for p in found[1] or () if p.__class__ is str)
            if len(self._compiled) >= MAX_ROWS or self._chars + size > MAX_CHARS:
                self._compiled.clear()
                self._chars = 0
            self._compiled[key] = found
            self._chars += size
        pieces = found[1]
        if pieces is None:  # the metadata itself holds a NUL: no holes can be told apart, render directly
            return self.render_directly(view)
        # The literals are the macros' own (escaped) output and every hole is escaped here.
        row = "".join([p if p.__class__ is str else escaped(p.get(view)) for p in pieces])  # type: ignore[union-attr]
        if self.verify:
            direct = self.render_directly(view, self.app_env)
            if row != direct:
                raise RowMismatch(f"the compiled row of {view.f.name!r} differs from the macros' own:\n"
                                  f"compiled: {row}\ndirect:   {direct}")
        return row

    def render_directly(self, view: FieldView | RowSkeleton, env: Environment | None = None) -> Markup:
        """The row rendered by the macros, with no compiled shape (what a compiled row must equal)."""
        macros = self._macros() if env is None else env.get_template(MACROS).module
        row: Markup = macros.field_row(view, _widget(macros, view.f))  # a macro's output is Markup already
        return row

    def _compile(self, view: FieldView) -> Pieces | None:
        skeleton = RowSkeleton(view)
        return pieces_of(str(self.render_directly(skeleton)), skeleton.nonce, skeleton.holes)


def pieces_of(html: str, nonce: str, holes: Sequence[Hole]) -> Pieces | None:
    """`html` rendered with the `holes` of one compilation (their markers carry `nonce`) as literal text and holes;
    None when a NUL is left outside the markers (a text of the record's own, which a hole must not be taken for)."""
    parts = re.split(f"\x00{nonce}:([0-9]+)\x00", html)
    literals, numbers = parts[0::2], parts[1::2]
    if any("\x00" in literal for literal in literals):
        return None
    pieces: list[str | Hole] = []
    for i, literal in enumerate(literals):
        if literal:
            pieces.append(literal)
        if i < len(numbers):
            pieces.append(holes[int(numbers[i])])
    return tuple(pieces)


def _widget(macros: Any, f: FieldDef) -> Any:
    """The widget macro the field's type names (a name from the type registry, never from metadata)."""
    return getattr(macros, f.type.widget)


def init_form_rows(app: Flask) -> None:
    """Give the app's templates `form_row(form, name)`: a card form's row, compiled once per shape."""
    rows = FormRows(app.jinja_env, verify=bool(app.config.get("TESTING")))

    def form_rows(form: Any, fields: Iterable[FieldDef]) -> Markup:
        """The rows of `fields` (a group's) of the CardForm `form`, one after another."""
        rows.refresh()
        # Each row is the macros' output with its holes escaped: joined as text, marked safe once.
        return Markup("".join([rows.html(form.view(f.name, _download_url), form.url_root) for f in fields]))  # noqa: S704

    app.jinja_env.globals["form_rows"] = form_rows
    app.extensions["kartoteka.form_rows"] = rows


def _download_url(file_id: str) -> str:
    return url_for("download_file", file_id=file_id)
