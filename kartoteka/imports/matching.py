"""Which field each column of an import file fills: by the field's name or its label in any language.

Names are compared folded: case, spaces, punctuation and ё/е do not count ("E-mails", "e mails" and "EMAILS" are one,
as are «Контактное лицо» and «контактное-лицо»). A column that names no field is reported with the closest field
(rapidfuzz), never guessed; the caller may map any column by hand (`{column: field}`, or "" to leave it out).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from kartoteka.errors import RecordValidationError
from kartoteka.messages import Message
from kartoteka.metadata.model import EntityDef
from kartoteka.records.access import editable_fields, viewable_fields
from kartoteka.records.model import Principal

ID = "id"  # the record's id: a column of it serves as the upsert key `id`
OWNER = "owner"  # the record's owner (a user's login, name or id): whom a new record is assigned to
# What an export writes for the system columns (kartoteka/imports/export.py): the owner is read back; the times are
# the system's own and left out, said so.
SYSTEM_NAMES = {"owner": OWNER, "владелец": OWNER, "created": "created_at", "createdutc": "created_at",
                "создано": "created_at", "созданоutc": "created_at", "createdat": "created_at", "updated": "updated_at",
                "updatedutc": "updated_at", "изменено": "updated_at", "измененоutc": "updated_at",
                "updatedat": "updated_at"}
SYSTEM = (ID, OWNER)
SUGGEST_CUTOFF = 70
_NOT_WORD = re.compile(r"[\W_]+")


def fold(text: str) -> str:
    """A name as columns are compared: lower case, ё as е, without spaces and punctuation."""
    return _NOT_WORD.sub("", text.casefold().replace("ё", "е"))


@dataclass(frozen=True)
class Column:
    """One column of the file and what becomes of it."""

    position: int  # 0-based
    name: str
    field: str | None  # the field it fills (or "id"), None when it fills none
    ignored: Message | None = None  # why a column naming a field fills nothing (computed, not yours to change)
    suggestion: str | None = None  # for an unmatched column: the field it may have meant

    @property
    def matched(self) -> bool:
        """True when the column fills a field (or names the record's id)."""
        return self.field is not None and self.ignored is None


@dataclass(frozen=True)
class Mapping_:
    """The columns of a file as matched to an entity's fields."""

    columns: tuple[Column, ...]

    def used(self) -> list[Column]:
        """The columns whose values are imported (not the id's: that one only finds records)."""
        return [c for c in self.columns if c.matched and c.field not in SYSTEM]

    def by_field(self) -> dict[str, Column]:
        """field -> its column."""
        return {c.field: c for c in self.columns if c.matched and c.field is not None}

    def unmatched(self) -> list[Column]:
        """Columns that name no field."""
        return [c for c in self.columns if c.field is None]

    def as_json(self) -> list[dict[str, object]]:
        """The mapping as the API and the imports table show it."""
        return [{"column": c.name, "field": c.field if c.matched else None,
                 "ignored": None if c.ignored is None else str(c.ignored),
                 "suggestion": c.suggestion} for c in self.columns]


def _names(entity: EntityDef, viewable: frozenset[str]) -> dict[str, str]:
    """folded name or label -> field, for the fields `viewable` (and the id)."""
    found: dict[str, str] = {fold(ID): ID, "#": ID, **SYSTEM_NAMES}
    for name in entity.fields:
        if name not in viewable:
            continue
        found.setdefault(fold(name), name)
    for name, f in entity.fields.items():  # labels after names: a field's name wins over another's label
        if name not in viewable:
            continue
        for text in f.label.texts.values():
            found.setdefault(fold(text), name)
    return found


def match_columns(entity: EntityDef, header: Sequence[str], user: Principal,
                  chosen: Mapping[str, str | None] | None = None) -> Mapping_:
    """Each column of `header` matched to a field `user` may view; `chosen` maps columns by hand (a field's name, or
    "" / None to leave the column out). A chosen field that does not exist, or two columns for one field, is a
    RecordValidationError under `mapping`."""
    viewable = viewable_fields(entity, user)
    editable = editable_fields(entity, user)
    names = _names(entity, viewable)
    chosen = dict(chosen or {})
    problems: list[str] = []
    known = {fold(c) for c in header}
    for column in chosen:
        if fold(column) not in known:
            problems.append(Message("import.mapping_column_unknown", "The file has no column '{column}'.",
                                    column=str(column)[:60]))
    by_folded = {fold(k): v for k, v in chosen.items()}
    columns: list[Column] = []
    taken: dict[str, str] = {}
    for position, column in enumerate(header):
        key = fold(column)
        if key in by_folded:
            target = by_folded[key]
            if not target:
                columns.append(Column(position, column, None, Message("import.column_left_out",
                                                                      "left out by the mapping")))
                continue
            field = target if target in SYSTEM or target in viewable else None
            if field is None:
                problems.append(Message("import.mapping_field_unknown", "Column '{column}' is mapped to '{field}', "
                                        "which is not a field of {what}.", column=column[:60], field=str(target)[:60],
                                        what=entity.label))
                continue
        else:
            field = names.get(key) if key else None
        if field is None:
            columns.append(Column(position, column, None, suggestion=_suggest(key, names)))
            continue
        ignored = None
        if field in ("created_at", "updated_at"):
            ignored = Message("import.column_system", "kept by the system")
        elif field not in SYSTEM and field not in editable:
            ignored = (Message("import.column_computed", "computed by a formula") if entity.fields[field].is_formula
                       else Message("import.column_not_editable", "you may not change this field"))
        if ignored is None and field in taken:
            problems.append(Message("import.field_twice", "Columns '{first}' and '{second}' both fill '{field}'; "
                                    "map one of them to another field or leave it out.", first=taken[field][:60],
                                    second=column[:60], field=field))
            continue
        if ignored is None:
            taken[field] = column
        columns.append(Column(position, column, field, ignored))
    if problems:
        raise RecordValidationError({"mapping": problems})
    return Mapping_(tuple(columns))


def _suggest(key: str, names: Mapping[str, str]) -> str | None:
    if not key:
        return None
    found = process.extractOne(key, list(names), scorer=fuzz.WRatio, score_cutoff=SUGGEST_CUTOFF)
    return names[found[0]] if found else None


def missing_required(entity: EntityDef, mapping: Mapping_) -> list[str]:
    """The fields every new record needs (required, no default, no condition) that no column fills."""
    filled = mapping.by_field()
    return [name for name, f in entity.fields.items()
            if f.required and f.default is None and not f.is_formula and name not in filled]
