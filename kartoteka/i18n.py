"""The request's language and its gettext catalogue (Flask-Babel); messages by code rendered in it.

Catalogues live in `kartoteka/translations/<language>/LC_MESSAGES/messages.po`, under version control;
`make translations` extracts the English texts of the code and templates into them, `make install` (and the wheel's
build) compiles them to `.mo`. Message ids are the English texts with `{placeholders}` (str.format), so an
untranslated text shows English and a reworded one is caught by tests/test_catalogue.py, never silently lost.

The language: a signed-in user's choice, else the session's (the language switch), else the browser's
Accept-Language; the API speaks Accept-Language alone (kartoteka.web.auth and kartoteka.api put it on `g`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask, g, has_request_context, request
from flask_babel import Babel, get_translations, refresh

from kartoteka.messages import (
    DEFAULT_LANGUAGE,
    DOMAIN,
    LANGUAGES,
    TRANSLATIONS_DIR,
    Message,
    catalogue,
    localize,
    translate,
)

__all__ = ["DEFAULT_LANGUAGE", "LANGUAGES", "babel", "current_language", "init_i18n", "localized", "pick_language",
           "refresh_language", "t", "tn", "translate"]

babel = Babel()


def pick_language(requested: str | None, accept: Any = None) -> str:
    """A supported language: the requested one, else the best from Accept-Language, else English."""
    if requested in LANGUAGES:
        return requested
    if accept is not None:
        best = accept.best_match(LANGUAGES)
        if best:
            return str(best)
    return DEFAULT_LANGUAGE


def current_language() -> str:
    """The language of this request ('en' outside one)."""
    if not has_request_context():
        return DEFAULT_LANGUAGE
    if request.blueprint == "api":  # programs say what they read in Accept-Language, not in a session
        return pick_language(None, request.accept_languages)
    language = g.get("language")
    if language in LANGUAGES:
        return str(language)
    return pick_language(None, request.accept_languages)


def refresh_language() -> None:
    """After `g.language` changed mid-request (a sign-in): texts from now on in the new language."""
    refresh()
    g.pop("_kartoteka_translations", None)


def compile_catalogues(directory: Path = TRANSLATIONS_DIR) -> list[Path]:
    """Compile each `.po` whose `.mo` is missing or older; returns the `.mo` files written."""
    written = []
    for po_path in sorted(directory.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
        mo_path = po_path.with_suffix(".mo")
        if mo_path.is_file() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        with po_path.open("rb") as source:
            catalog = read_po(source, locale=po_path.parent.parent.name)
        partial = mo_path.with_suffix(".mo.tmp")
        with partial.open("wb") as target:
            write_mo(target, catalog)
        partial.replace(mo_path)
        written.append(mo_path)
    return written


def init_i18n(app: Flask) -> None:
    """Flask-Babel for `app`; catalogues compiled first when a checkout's `.po` is newer than its `.mo`."""
    if any(TRANSLATIONS_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.po")) and compile_catalogues():
        catalogue.cache_clear()  # a catalogue read before this compilation is stale
    missing = [language for language in LANGUAGES if language != DEFAULT_LANGUAGE
               and not (TRANSLATIONS_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.mo").is_file()]
    if missing:
        raise RuntimeError(f"The {', '.join(missing)} catalogue is missing from {TRANSLATIONS_DIR}: reinstall the "
                           f"package or run `make install` in a checkout.")
    babel.init_app(app, locale_selector=current_language, default_domain=DOMAIN,
                   default_translation_directories=str(TRANSLATIONS_DIR))
    app.jinja_env.globals.update(t=t, tn=tn, languages=LANGUAGES)


def _translations() -> Any:
    """Flask-Babel's catalogue of this request, looked up once per request (a form asks for it 60 times)."""
    if not has_request_context():
        return get_translations()
    found = g.get("_kartoteka_translations")
    if found is None:
        found = g._kartoteka_translations = get_translations()
    return found


def t(message: str, **values: Any) -> str:
    """`message` (an English text or a Message) in the request's language, {placeholders} filled in."""
    if not isinstance(message, str) or not message:
        return message
    if isinstance(message, Message):
        return localize(message, _translations(), current_language())
    text = _translations().gettext(message)
    return text.format(**values) if values else text


def tn(singular: str, plural: str, count: int, **values: Any) -> str:
    """The form of a counted message `count` asks for ("1 session", "3 sessions"), in the request's language."""
    return _translations().ngettext(singular, plural, count).format(count=count, **values)


def localized(message: str) -> str:
    """A message of the service (a Message, or an English text) in the request's language."""
    return localize(message, _translations(), current_language())
