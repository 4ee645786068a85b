"""The card form's page compiled once per shape: templates/cards/form.html, with base.html around it, rendered with
holes where one request's texts go, as the form's rows are (kartoteka/web/formrows.py).

Rendered by the template, a 60-field form's page around its rows costs some 400 template steps (the navigation,
tabs, groups, the `_present` list, the owner select) that depend only on the card, the reader's language and roles,
the layout and which sections are hidden. So the page is rendered once per such *shape* from a `_FormSkeleton`
whose texts (the card's title, its version and snapshot, the CSRF token, the user's name, the rows...) are holes,
and kept as literal pieces and holes; each request fills the holes with its own texts, escaped. The templates stay
the one home of the HTML. A page showing messages (flashes, errors) is rendered by the template: those are rare and
would only add shapes.

The skeleton offers the template only what this module lists: any other use of the form, the record or the user,
and every per-request global (the request, the session...), raises `HoleMisused` instead of baking one person's
value into a page shared by everyone of the shape.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from flask import Flask, current_app, g, get_flashed_messages, render_template, request
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup

from kartoteka.metadata.model import EntityDef, FieldDef
from kartoteka.web.cardform import CardForm, TabView
from kartoteka.web.formrows import PER_REQUEST, Hole, HoleMisused, Pieces, _Unavailable, pieces_of
from kartoteka.web.security import escaped

TEMPLATE = "cards/form.html"
# The page is compiled at most once per shape; the bounds keep a flood of shapes from growing the cache without end.
MAX_PAGES = 2_000
MAX_CHARS = 32_000_000


class PageMismatch(AssertionError):
    """A compiled page differs from what the template renders for the same form (a shape misses a flag)."""


class _Fill:
    """What one request fills a compiled page's holes with."""

    __slots__ = ("csrf", "form", "rows", "user")

    def __init__(self, form: CardForm, rows: Callable[[CardForm, Iterable[FieldDef]], Markup]) -> None:
        self.form = form
        self.rows = rows
        self.csrf = generate_csrf()
        self.user = g.user


class _Skeleton:
    """The holes of one compilation, told apart by a random nonce no text can hold by chance."""

    def __init__(self) -> None:
        self.holes: list[Hole] = []
        self.nonce = secrets.token_hex(8)

    def hole(self, get: Callable[[_Fill], Any]) -> Hole:
        """A new hole filled by `get(fill)`."""
        made = Hole(get, len(self.holes), self.nonce)
        self.holes.append(made)
        return made


def _refuse(what: str) -> HoleMisused:
    return HoleMisused(f"the form page is compiled once per shape: {what} is not part of it; add it to "
                       "kartoteka/web/formpage.py as a hole (a text) or to the page's shape (a flag)")


class _Strict:
    """A skeleton object: reading anything it does not define raises."""

    def __getattr__(self, name: str) -> Any:
        raise _refuse(f"{type(self).__name__.lstrip('_')}.{name}")


class _RecordSkeleton(_Strict):
    """The edited record: only its title, a text."""

    def __init__(self, skeleton: _Skeleton) -> None:
        self._skeleton = skeleton

    def __bool__(self) -> bool:
        return True

    @property
    def title(self) -> Hole:
        return self._skeleton.hole(lambda fill: fill.form.record.title)  # type: ignore[union-attr]


class _FormSkeleton(_Strict):
    """A CardForm whose texts are holes; its flags and layout are the real form's (the page's shape holds them)."""

    def __init__(self, form: CardForm, skeleton: _Skeleton) -> None:
        self._form, self._skeleton = form, skeleton
        self.entity = form.entity
        self.viewable = form.viewable
        self.record = _RecordSkeleton(skeleton) if form.record is not None else None

    # --- the shape: the real form's answers -------------------------------------------------------------

    def tabs(self) -> list[TabView]:
        return self._form.tabs()

    def rendered_editable(self) -> list[str]:
        return self._form.rendered_editable()

    def section_shown(self, key: str) -> bool:
        return self._form.section_shown(key)

    def tab_has_errors(self, tab: TabView) -> bool:
        return self._form.tab_has_errors(tab)

    def fields_with_errors(self) -> list[Any]:
        return self._form.fields_with_errors()

    def record_errors(self) -> list[str]:
        return self._form.record_errors()

    def errors(self, name: str) -> list[str]:
        return self._form.errors(name)

    # --- texts: holes each request fills from its own form ---------------------------------------------

    @property
    def live_url(self) -> Hole:
        return self._skeleton.hole(lambda fill: fill.form.live_url)

    @property
    def record_url(self) -> Hole:
        return self._skeleton.hole(lambda fill: fill.form.record_url)

    def loaded_version(self) -> Hole:
        return self._skeleton.hole(lambda fill: fill.form.loaded_version())

    def base_json(self) -> Hole:
        return self._skeleton.hole(lambda fill: fill.form.base_json())

    def state_json(self) -> Hole:
        return self._skeleton.hole(lambda fill: fill.form.state_json())


class _UserSkeleton(_Strict):
    """The signed-in user: their roles are part of the shape, their name a hole."""

    def __init__(self, roles: frozenset[str], skeleton: _Skeleton) -> None:
        self.roles = roles
        self._skeleton = skeleton

    def __bool__(self) -> bool:
        return True

    @property
    def username(self) -> Hole:
        return self._skeleton.hole(lambda fill: fill.user.username)


class _GSkeleton(_Strict):
    """Flask's `g` as base.html reads it: the language (in the shape) and the user."""

    def __init__(self, language: str, user: _UserSkeleton) -> None:
        self.language = language
        self.user = user


class FormPages:
    """Renders card form pages, compiling each shape once; one per app."""

    def __init__(self, app: Flask, *, verify: bool = False) -> None:
        self.env = app.jinja_env
        self.verify = verify  # tests: every compiled page is checked against the template rendering it directly
        self._compiled: dict[tuple[Any, ...], tuple[EntityDef, Pieces | None]] = {}
        self._chars = 0
        self._templates: tuple[Any, ...] = ()

    def refresh(self) -> None:
        """Forget the compiled pages when a template has changed (checked only where templates auto-reload)."""
        if not self.env.auto_reload:
            return
        templates = (self.env.get_template(TEMPLATE), self.env.get_template("base.html"))
        if any(a is not b for a, b in zip(templates, self._templates, strict=False)) or not self._templates:
            self._templates = templates
            self._compiled.clear()
            self._chars = 0

    def render(self, entity: EntityDef, form: CardForm, owners: Sequence[tuple[int, str]],
               current_owner: int | None, nav: dict[str, Any]) -> str:
        """The form's page: its compiled shape with this request's texts, or the template's own rendering.

        `nav` is what the cards' context processor gives base.html (the navigation, whether the user manages users).
        """
        context = {"entity": entity, "form": form, "owners": owners, "current_owner": current_owner}
        if not self._compilable(form):
            return render_template(TEMPLATE, **context)
        self.refresh()
        user = g.user
        key = (id(entity), g.language, request.script_root, form.record is not None, form.viewable, form.editable,
               user.department, user.roles, frozenset(k for k, shown in form.state.sections.items() if not shown),
               tuple([e.name for e in nav["nav_entities"]]), nav["superuser"], tuple(owners), current_owner)
        found = self._compiled.get(key)
        if found is None or found[0] is not entity:
            found = (entity, self._compile(form, context, nav))
            size = sum(len(p) for p in found[1] or () if p.__class__ is str)
            if len(self._compiled) >= MAX_PAGES or self._chars + size > MAX_CHARS:
                self._compiled.clear()
                self._chars = 0
            self._compiled[key] = found
            self._chars += size
        pieces = found[1]
        if pieces is None:  # the metadata itself holds a NUL: no holes can be told apart
            return render_template(TEMPLATE, **context)
        fill = _Fill(form, self.env.globals["form_rows"])  # type: ignore[arg-type]
        # The literals are the template's own (escaped) output and every hole is escaped here, as {{ }} does.
        page = "".join([p if p.__class__ is str else escaped(p.get(fill)) for p in pieces])  # type: ignore[union-attr]
        if self.verify:
            direct = render_template(TEMPLATE, **context)
            if page != direct:
                raise PageMismatch(f"the compiled form page differs from the template's own:\n{_diff(page, direct)}")
        return page

    @staticmethod
    def _compilable(form: CardForm) -> bool:
        """A page with no messages to show: no flashes, no errors (those pages are rendered by the template)."""
        return not (get_flashed_messages() or form.fields_with_errors() or form.record_errors()
                    or form.errors("owner"))

    def _compile(self, form: CardForm, context: dict[str, Any], nav: dict[str, Any]) -> Pieces | None:
        skeleton = _Skeleton()

        def form_rows(_: Any, fields: Iterable[FieldDef]) -> Hole:
            chosen = tuple(fields)
            return skeleton.hole(lambda fill: fill.rows(fill.form, chosen))

        def csrf_token() -> Hole:
            return skeleton.hole(lambda fill: fill.csrf)

        def here() -> Hole:
            return skeleton.hole(lambda _: request.full_path.rstrip("?"))

        def header_activity() -> Hole:  # the header's task and notification counts (web/activity.py): per request
            return skeleton.hole(lambda _: self.env.globals["header_activity"]())  # type: ignore[operator]

        user = _UserSkeleton(g.user.roles, skeleton)
        page_context: dict[str, Any] = {name: _Unavailable(name) for name in PER_REQUEST}
        page_context.update(
            context, **nav, form=_FormSkeleton(form, skeleton), form_rows=form_rows, csrf_token=csrf_token,
            here=here, header_activity=header_activity, g=_GSkeleton(g.language, user),
            get_flashed_messages=lambda **_: [])
        return pieces_of(self.env.get_template(TEMPLATE).render(page_context), skeleton.nonce, skeleton.holes)


def _diff(page: str, direct: str) -> str:
    """Where two pages first differ, with some text around."""
    at = next((i for i, (a, b) in enumerate(zip(page, direct, strict=False)) if a != b), min(len(page), len(direct)))
    return f"compiled: ...{page[max(0, at - 200):at + 200]}\ndirect:   ...{direct[max(0, at - 200):at + 200]}"


def init_form_pages(app: Flask) -> None:
    """Compile card form pages once per shape for the app (see FormPages)."""
    app.extensions["kartoteka.form_pages"] = FormPages(app, verify=bool(app.config.get("TESTING")))


def render_form_page(entity: EntityDef, form: CardForm, owners: Sequence[tuple[int, str]],
                     current_owner: int | None, nav: dict[str, Any]) -> str:
    """The card form's page (templates/cards/form.html), compiled once per shape."""
    pages: FormPages = current_app.extensions["kartoteka.form_pages"]
    return pages.render(entity, form, owners, current_owner, nav)
