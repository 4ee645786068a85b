"""The gettext catalogues hold a translation of every text the code and the templates show, and nothing else.

A text reworded in the code gets a new message id; its old translation no longer matches, so this test fails
until the catalogue is brought up to date (`make translations`, then translate): a translation is never lost
silently. The texts are extracted here exactly as `make translations` does (same babel.cfg, same keywords).
"""

from __future__ import annotations

import re
import shlex
import string
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_keywords
from babel.messages.pofile import read_po

from kartoteka.i18n import LANGUAGES, TRANSLATIONS_DIR

ROOT = Path(__file__).resolve().parent.parent
METHODS = [("kartoteka/**.py", "python"), ("templates/**.html", "jinja2")]


def _keywords() -> dict:
    """The extraction keywords of the Makefile's EXTRACT_KEYWORDS line."""
    line = next(line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith("EXTRACT_KEYWORDS"))
    names = [word for word in shlex.split(line.split(":=", 1)[1]) if word != "-k"]
    return {**DEFAULT_KEYWORDS, **parse_keywords(names)}


@pytest.fixture(scope="module")
def extracted() -> dict[str | tuple[str, str], list[str]]:
    """{message id (a plural's is (singular, plural)): [where it is used]} over the code and the templates."""
    found: dict[str | tuple[str, str], list[str]] = {}
    for filename, _line, message, _comments, _context in extract_from_dir(ROOT, METHODS, keywords=_keywords()):
        if message and all(message if isinstance(message, tuple) else (message,)):
            key = message if isinstance(message, str) else (message[0], message[1])
            found.setdefault(key, []).append(filename)
    return found


def _catalogue(language: str):
    with (TRANSLATIONS_DIR / language / "LC_MESSAGES" / "messages.po").open("rb") as po:
        return read_po(po, locale=language)


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


TRANSLATED = [language for language in LANGUAGES if language != "en"]


def test_texts_are_found_in_the_code_and_the_templates(extracted):
    assert "Sign in" in extracted  # a template
    assert "'{text}' is not a number." in extracted  # a Message of a field type
    assert ("{count} field needs attention:", "{count} fields need attention:") in extracted  # tn() in a template


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_text_has_a_translation(extracted, language):
    catalogue = _catalogue(language)
    missing = []
    for key, used_in in sorted(extracted.items(), key=str):
        entry = catalogue.get(key[0] if isinstance(key, tuple) else key)
        strings = () if entry is None else entry.string if isinstance(entry.string, tuple) else (entry.string,)
        if entry is None or entry.fuzzy or not strings or not all(strings):
            missing.append(f"{key!r} ({', '.join(sorted(set(used_in)))})")
    assert not missing, f"{len(missing)} texts lack a {language} translation (run `make translations` and " \
                        f"translate them):\n" + "\n".join(missing)


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_catalogue_holds_no_translation_of_a_text_nothing_shows(extracted, language):
    used = {key[0] if isinstance(key, tuple) else key for key in extracted}
    unused = [entry.id for entry in _catalogue(language) if entry.id and
              (entry.id[0] if isinstance(entry.id, tuple) else entry.id) not in used]
    assert not unused, f"translations of texts no longer in the code: {unused}"


@pytest.mark.parametrize("language", TRANSLATED)
def test_translations_name_only_placeholders_their_text_fills(language):
    wrong = []
    for entry in _catalogue(language):
        if not entry.id:
            continue
        ids = entry.id if isinstance(entry.id, tuple) else (entry.id,)
        offered = set().union(*(_fields(text) for text in ids)) | ({"count"} if len(ids) > 1 else set())
        for text in entry.string if isinstance(entry.string, tuple) else (entry.string,):
            if not _fields(text) <= offered:
                wrong.append(f"{ids[0]!r} → {text!r} names {sorted(_fields(text) - offered)}")
    assert not wrong, "\n".join(wrong)


def test_the_russian_catalogue_uses_the_three_plural_forms():
    header = (TRANSLATIONS_DIR / "ru" / "LC_MESSAGES" / "messages.po").read_text(encoding="utf-8")
    assert re.search(r"Plural-Forms: nplurals=3;", header)


def test_every_message_code_is_documented_for_api_clients():
    """docs/message-codes*.md list every code the code can produce (the API's clients match on them)."""
    documented = "".join(path.read_text(encoding="utf-8") for path in (ROOT / "docs").glob("message-codes*.md"))
    used = {}
    for path in (ROOT / "kartoteka").rglob("*.py"):
        for code in re.findall(r'Message(?:\.counted)?\(\s*"([a-z_][a-z0-9_.]*)"', path.read_text(encoding="utf-8")):
            used.setdefault(code, path.relative_to(ROOT).as_posix())
    assert len(used) > 100
    missing = sorted(f"{code} ({where})" for code, where in used.items() if f"`{code}`" not in documented)
    assert not missing, "codes missing from docs/message-codes*.md:\n" + "\n".join(missing)
