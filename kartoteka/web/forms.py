"""Turning a submitted HTML form back into field values for the record service."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from werkzeug.datastructures import FileStorage, MultiDict

from kartoteka.metadata.fieldtypes import max_items
from kartoteka.metadata.model import EntityDef, FieldDef

# "Northwind Trading Ltd #12" (a suggestion picked in a reference picker) or just "12" / "#12".
_PICKED = re.compile(r"(?:^|#)\s*(\d{1,18})\s*$")
# Form keys that are not fields: the form's own bookkeeping.
CONTROL_KEYS = frozenset({"csrf_token", "_present", "_touched", "_base", "version", "owner"})

# Stores an upload for a file field (refusing what the field does not take) and returns its value.
FileSaver = Callable[[FieldDef, FileStorage], dict[str, Any]]
# Records of an entity whose title is exactly the text typed into a picker (no suggestion chosen).
TitleResolver = Callable[[str, str], list[int]]


@dataclass(frozen=True)
class FormInput:
    """What a posted card form says: values by field, errors reading them, and which values are inferred."""

    values: dict[str, Any]
    errors: dict[str, list[str]]
    # Values inferred from absence (an unticked box, an emptied list): the service leaves one the user
    # may not change now as stored instead of refusing it (see Pipeline.run).
    inferred: frozenset[str]


def form_values(entity: EntityDef, form: MultiDict[str, str], files: MultiDict[str, FileStorage],
                inferable: Collection[str], save_file: FileSaver | None = None,
                resolve: TitleResolver | None = None, viewable: Collection[str] | None = None) -> FormInput:
    """Values of every field the form sent (or rendered, for unticked boxes), and form-level errors.

    An unticked checkbox sends nothing, so `_present` names the fields the page rendered; their
    absence means "empty" only for fields in `inferable` (those the user may change and the page
    renders). Fields the user may see but not edit are passed on when a hand-made request sends them,
    so the record service refuses them with its message. Fields outside `viewable` are ignored exactly
    like names no card has: an answer that differed would tell which hidden fields exist.
    """
    present = set(form.getlist("_present")) & set(inferable)
    values: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    inferred: set[str] = set()
    for name, field in entity.fields.items():
        if viewable is not None and name not in viewable:
            continue
        sent = name in form or name in files
        if not sent and name not in present:
            continue
        if not sent:
            inferred.add(name)
        try:
            values[name] = _raw(field, form, files, save_file, resolve)
        except ValueError as exc:
            errors[name] = [str(exc)]
    return FormInput(values, errors, frozenset(inferred))


def _raw(field: FieldDef, form: MultiDict[str, str], files: MultiDict[str, FileStorage],
         save_file: FileSaver | None, resolve: TitleResolver | None) -> Any:
    name, kind = field.name, field.type.name
    if kind == "boolean":
        return form.get(name, "false")
    if kind == "consent":  # unticked over a consent never given records nothing (the service decides)
        return "true" if name in form else "false"
    if kind == "file":
        kept = [{"id": i} for i in form.getlist(name) if i]
        uploads = [f for f in files.getlist(name) if f and f.filename]
        # Counted before anything is written to disk: a form may not park a thousand uploads.
        _check_count(field, len(uploads) if not field.multiple else len(kept) + len(uploads))
        if uploads and save_file is not None:
            kept += [save_file(field, f) for f in uploads]
        if field.multiple:
            return kept
        return kept[-1] if kept else None
    if kind == "reference":
        texts = [text for text in form.getlist(name) if text.strip()]
        if not field.multiple:
            texts = texts[:1]  # only the first is used: resolve no more than that
        _check_count(field, len(texts))  # before resolving: a typed title costs a query
        picked = [_reference(field, text, resolve) for text in texts]
        return picked if field.multiple else (picked[0] if picked else None)
    if field.multiple or kind == "multiselect":
        return [v for v in form.getlist(name) if v.strip()]
    return form.get(name)


def _check_count(field: FieldDef, count: int) -> None:
    """Refuse more values than the field holds before doing per-value work (queries, files)."""
    if not field.multiple and count > 1:
        raise ValueError("Takes one value only.")
    if field.multiple and count > max_items(field):
        raise ValueError(f"Must have at most {max_items(field)} values.")


def picked_id(text: str) -> int | None:
    """The id of a suggestion picked in a reference picker ("Northwind Trading Ltd #12", "#12", "12")."""
    match = _PICKED.search(text)
    return int(match.group(1)) if match else None


def _reference(field: FieldDef, text: str, resolve: TitleResolver | None) -> str:
    """The id in "Title #12", else the one record whose title is exactly the text (typed without JavaScript)."""
    picked = picked_id(text)
    if picked is not None:
        return str(picked)
    found = resolve(field.to or "", text.strip()) if resolve is not None else []
    if len(found) == 1:
        return str(found[0])
    if found:
        raise ValueError(f"Several records are called '{text[:60]}'; pick one from the suggestions.")
    raise ValueError(f"Nothing is called '{text[:60]}'; pick a record from the suggestions (or type its number "
                     "as #12).")
