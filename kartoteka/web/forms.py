"""Turning a submitted HTML form back into field values for the record service."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from werkzeug.datastructures import FileStorage, MultiDict

from kartoteka.messages import message_of
from kartoteka.metadata.fieldtypes import FormContext, picked_id
from kartoteka.metadata.model import EntityDef, FieldDef
from kartoteka.metadata.types.base import FileSaver, TitleResolver

__all__ = ["CONTROL_KEYS", "FileSaver", "FormInput", "TitleResolver", "form_values", "picked_id"]

# Form keys that are not fields: the form's own bookkeeping.
CONTROL_KEYS = frozenset({"csrf_token", "_present", "_touched", "_base", "version", "owner"})


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
                resolve: TitleResolver | None = None, viewable: Collection[str] | None = None,
                language: str = "en") -> FormInput:
    """Values of every field the form sent (or rendered, for unticked boxes), and form-level errors.

    An unticked checkbox sends nothing, so `_present` names the fields the page rendered; their
    absence means "empty" only for fields in `inferable` (those the user may change and the page
    renders). Fields the user may see but not edit are passed on when a hand-made request sends them,
    so the record service refuses them with its message. Fields outside `viewable` are ignored exactly
    like names no card has: an answer that differed would tell which hidden fields exist.
    """
    present = set(form.getlist("_present")) & set(inferable)
    context = FormContext(files, save_file, resolve, language)
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
            values[name] = _raw(field, form, context)
        except ValueError as exc:  # each message keeps its code: str(exc) would make it English text
            errors[name] = list(getattr(exc, "messages", None) or [message_of(exc)])
    return FormInput(values, errors, frozenset(inferred))


def _raw(field: FieldDef, form: MultiDict[str, str], context: FormContext) -> Any:
    """What the form sent for the field, as its type reads a posted form (boxes, files, picked records)."""
    return field.type.form_value(field, form, context)
