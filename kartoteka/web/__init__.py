"""The browser UI: sign-in, card lists, card pages, forms and kanban, generated from the metadata."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, abort, current_app, g, redirect, request, send_from_directory, url_for
from flask_htmx import HTMX
from werkzeug.wrappers import Response

from kartoteka.metadata.model import Label
from kartoteka.web.activity import init_activity
from kartoteka.web.auth import init_auth
from kartoteka.web.formatting import currency_symbol
from kartoteka.web.formpage import init_form_pages
from kartoteka.web.formrows import init_form_rows

htmx = HTMX()

# Third-party front-end files come from node_modules (npm ci from package-lock.json), never from git.
VENDOR_FILES = {
    "htmx.min.js": Path("htmx.org/dist/htmx.min.js"),
    "pico.min.css": Path("@picocss/pico/css/pico.min.css"),
}


def init_web(app: Flask, node_modules: Path) -> None:
    """Register the UI blueprints, the vendor route, template helpers and htmx support."""
    from kartoteka.web import (
        history,  # noqa: F401  (registers the card's history page and the trash)
        imports,  # noqa: F401  (registers the import pages and the list's export)
        lists,  # noqa: F401  (registers the list, kanban and saved-view routes)
        merging,  # noqa: F401  (registers the merge screen and its undo)
        rules,  # noqa: F401  (registers the manual rule buttons and the run log page)
    )
    from kartoteka.web.admin_outbox import admin_outbox
    from kartoteka.web.cards import download_file
    from kartoteka.web.common import cards

    htmx.init_app(app)
    init_auth(app)
    app.register_blueprint(cards)
    app.register_blueprint(admin_outbox)  # administrators: the outbox's deliveries
    init_activity(app)  # timelines, tasks, notifications and the header's counts
    app.add_url_rule("/files/<file_id>", "download_file", download_file)
    from kartoteka.web.merging import duplicates_of

    app.jinja_env.globals.update(label=label_text, currency_symbol=currency_symbol, page_url=page_url, here=here,
                                 duplicates_of=duplicates_of)
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
    init_form_rows(app)
    init_form_pages(app)

    @app.get("/favicon.ico")
    def favicon() -> Response:
        """Browsers ask for it on every site; the icon is an SVG."""
        return redirect(url_for("static", filename="favicon.svg"), 301)

    @app.get("/vendor/<name>")
    def vendor(name: str) -> Response:
        """htmx and Pico from node_modules; `make assets` installs them."""
        path = VENDOR_FILES.get(name)
        if path is None or not (node_modules / path).is_file():
            abort(404, f"Front-end file {name} is not installed; run `make assets` (npm ci).")
        response = send_from_directory(node_modules / path.parent, path.name, max_age=86400)
        return response


def label_text(label: Label | str | None) -> str:
    """A metadata label in the current user's language."""
    if label is None:
        return ""
    if isinstance(label, str):
        return label
    return label.get(getattr(g, "language", "en"))


def here() -> str:
    """The page's path and query string (where the language switch comes back to)."""
    return request.full_path.rstrip("?")


MAX_PAGE_URLS = 4096


def page_url(endpoint: str, **values: str) -> str:
    """url_for of a link every page repeats (stylesheets, scripts, the navigation), built once per application root:
    a page has about twenty, at some 8 us each."""
    urls: dict[tuple[str, str, tuple[tuple[str, str], ...]], str] = current_app.extensions.setdefault(
        "kartoteka.page_urls", {})
    key = (request.script_root, endpoint, tuple(sorted(values.items())))
    found = urls.get(key)
    if found is None:
        if len(urls) >= MAX_PAGE_URLS:
            urls.clear()
        found = urls[key] = url_for(endpoint, **values)
    return found
