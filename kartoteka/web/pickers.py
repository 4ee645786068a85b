"""What a reference picker shows and an input holds for a record, and which record a typed text names.

A record is written as its title, then the values of the fields its entity lists under `picker:` that the
reader may see ("ООО «Ромашка» — Москва, 7701234567"), so that two records of the same name can be told apart.
A picked record's id travels in a hidden input beside the text (see `kept`): text alone is no identity.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import g

from kartoteka.extensions import platform
from kartoteka.records.lookup import MAX_EXACT, PickerRow, picker_rows, record_titles, search_titles
from kartoteka.records.model import ids_in
from kartoteka.storage.database import fold
from kartoteka.users import user_names
from kartoteka.web.common import current_user
from kartoteka.web.formatting import format_value

SEPARATOR = " — "  # between the title and what tells the record from others


def _texts(entity_name: str, rows: list[PickerRow]) -> dict[int, str]:
    """Each row as "title — details", the details written as the card writes them (names of users and records)."""
    entity = platform.service.entity(entity_name)
    fields = [entity.fields[n] for n in entity.picker]
    people: dict[int, str] = {}
    titles: dict[str, dict[int, str]] = {}
    user_ids = [i for r in rows for f in fields if f.type.refers == "user" for i in ids_in(r.values.get(f.name))]
    if user_ids:
        people = user_names(platform.state.engine, user_ids)
    for f in fields:
        if f.type.refers == "record":
            wanted = [i for r in rows for i in ids_in(r.values.get(f.name))]
            titles[f.name] = record_titles(platform.service, f.to or "", wanted, current_user()) if wanted else {}
    texts = {}
    for row in rows:
        shown = [format_value(f, row.values.get(f.name), g.language, user_names=people,
                              record_titles=titles.get(f.name)) for f in fields if f.name in row.values]
        details = ", ".join(text for text in shown if text)
        texts[row.id] = f"{row.title}{SEPARATOR}{details}" if details else row.title
    return texts


def _labelled(entity_name: str, rows: list[PickerRow]) -> dict[int, str]:
    """Each row's text; rows whose texts are alike (true namesakes, same details) end in "#id" to tell them apart.

    The text is what people read, never what a save goes by: a picked record's id is in a hidden input. (When the
    text alone decided, a record called "Branch #3" was saved as record 3, a record named like another's picker
    text, "Acme — London", captured references on unchanged saves: found by attack, 2026-12-01.)
    """
    texts = _texts(entity_name, rows)
    seen: dict[str, int] = {}
    for text in texts.values():
        seen[fold(text)] = seen.get(fold(text), 0) + 1
    return {r.id: f"{texts[r.id]} #{r.id}" if seen[fold(texts[r.id])] > 1 else texts[r.id] for r in rows}


def named_records(entity_name: str, ids: Iterable[int]) -> tuple[dict[int, str], dict[int, str]]:
    """(id -> title, id -> picker text) of the records among `ids` the user may read."""
    rows = picker_rows(platform.service, entity_name, current_user(), ids=set(ids))
    if not rows:
        return {}, {}
    return {r.id: r.title for r in rows}, _labelled(entity_name, rows)


def record_labels(entity_name: str, ids: Iterable[int]) -> dict[int, str]:
    """id -> the picker text of each record among `ids` the user may read."""
    return named_records(entity_name, ids)[1]


def suggestions(entity_name: str, text: str) -> list[tuple[int, str]]:
    """(id, picker text) of the readable records whose title contains `text` (or whose id it is)."""
    found = search_titles(platform.service, entity_name, text, current_user())
    labels = record_labels(entity_name, [i for i, _ in found])
    return [(i, labels[i]) for i, _ in found if i in labels]


def _names(text: str, title: str) -> bool:
    """Whether a picker's text still names a record of this title: the title alone, or followed by details."""
    typed, named = fold(text.strip()), fold(title)
    return typed == named or typed.startswith(named + fold(SEPARATOR))


def resolve(entity_name: str, text: str, kept: int | None = None) -> list[int]:
    """The records a text typed into a picker names: `kept` (the id picked before) while the text still begins
    with its title, else those whose picker text it is, else those titled so.

    The details after the title may have changed since the page was made (the record moved city): an unchanged
    form keeps its reference. Several ids mean the text is ambiguous (at most a few are listed, enough to say so).
    """
    text = text.strip()
    if not text:
        return []
    if kept is not None:
        rows = picker_rows(platform.service, entity_name, current_user(), ids={kept})
        if rows and _names(text, rows[0].title):
            return [kept]
    candidates = {text}
    at = text.find(SEPARATOR)
    while at > 0:  # the title may hold the separator itself: try every place the details may begin
        candidates.add(text[:at])
        at = text.find(SEPARATOR, at + 1)
    rows = picker_rows(platform.service, entity_name, current_user(), titles=candidates)
    texts = _texts(entity_name, rows)  # typed without the number: several alike are ambiguous, never a guess
    wanted = fold(text)
    named = [r.id for r in rows if fold(texts[r.id]) == wanted]
    if named:
        return named[:MAX_EXACT]
    return [r.id for r in rows if fold(r.title) == wanted][:MAX_EXACT]
