"""A cell's text as a field's input, the way people write values in spreadsheets; the field type parses the rest.

- selects: an option's value or its label in any language, case and spaces aside («Горячий», "hot", "HOT");
- lists (multiselect, tags, several phones or e-mails): items separated by commas, semicolons or line breaks;
- users: a user's login or display name, or their id;
- references: "#12", "Northwind #12" or "12", or the title of exactly one record the importing user may read.

A value none of these reads is passed on as typed: the field type then refuses it with its own message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from kartoteka.imports.matching import fold
from kartoteka.messages import Message
from kartoteka.metadata.model import EntityDef, FieldDef
from kartoteka.metadata.types.structured import picked_id
from kartoteka.records.lookup import picker_rows
from kartoteka.records.model import Principal
from kartoteka.records.service import RecordService
from kartoteka.storage.tables import users

_ITEMS = re.compile(r"[;,\n\r]+")
MAX_CACHED = 10_000


class CellError(ValueError):
    """A cell that names nothing (an unknown user, an ambiguous title)."""

    def __init__(self, message: Message) -> None:
        super().__init__(message)
        self.message = message


class CellReader:
    """Reads the cells of one import for `user` (lookups of users and records are cached for the import)."""

    def __init__(self, service: RecordService, entity: EntityDef, user: Principal) -> None:
        self.service = service
        self.entity = entity
        self.user = user
        self._users: dict[str, int] | None = None
        self._records: dict[tuple[str, str], int] = {}
        self._options: dict[str, dict[str, str]] = {}
        self._readers: dict[str, Callable[[str], Any]] = {}

    def reader(self, name: str) -> Callable[[str], Any]:
        """The function reading a cell of field `name` (text in, field input out)."""
        found = self._readers.get(name)
        if found is None:
            found = self._readers[name] = self._make(self.entity.fields[name])
        return found

    def _make(self, field: FieldDef) -> Callable[[str], Any]:
        kind = field.type.name
        one: Callable[[str], Any]
        if field.options:
            labels = self._option_labels(field)

            def one(text: str) -> Any:
                return labels.get(fold(text), text)
        elif field.type.refers == "user":
            one = self._user
        elif field.type.refers == "record":
            target = field.to or ""

            def one(text: str) -> Any:
                return self._record(target, text)
        else:
            def one(text: str) -> Any:
                return text
        if kind == "multiselect" and field.options:
            labels = self._option_labels(field)

            def many_options(text: str) -> Any:
                whole = labels.get(fold(text))
                if whole is not None:  # a label holding a comma
                    return [whole]
                return [one(part.strip()) for part in _ITEMS.split(text) if part.strip()]
            return many_options
        if field.multiple or kind == "tags":
            def many(text: str) -> Any:
                return [one(part.strip()) for part in _ITEMS.split(text) if part.strip()]
            return many
        return lambda text: one(text.strip()) if field.type.refers or field.options else text

    def _option_labels(self, field: FieldDef) -> dict[str, str]:
        found = self._options.get(field.name)
        if found is None:
            found = {}
            for option in field.options:
                for text in option.label.texts.values():
                    found.setdefault(fold(text), option.value)
            for option in field.options:
                found[fold(option.value)] = option.value
            self._options[field.name] = found
        return found

    def user_id(self, text: str) -> Any:
        """The id of the user `text` names (a login, a display name or an id); CellError when none or several."""
        return self._user(text)

    def _user(self, text: str) -> Any:
        if not text or text.isdigit():
            return text
        if self._users is None:
            found: dict[str, int] = {}
            ambiguous: set[str] = set()
            with self.service.engine.connect() as conn:
                for row in conn.execute(sa.select(users.c.id, users.c.username, users.c.display_name)
                                        .where(users.c.is_active)):
                    for name in (row.username, row.display_name):
                        key = fold(name or "")
                        if key in found and found[key] != row.id:
                            ambiguous.add(key)
                        found.setdefault(key, row.id)
            for key in ambiguous:
                found[key] = -1
            self._users = found
        user_id = self._users.get(fold(text))
        if user_id is None:
            raise CellError(Message("import.user_unknown", "There is no active user called '{text}' (give a login, "
                                    "a name or an id).", text=text[:60]))
        if user_id < 0:
            raise CellError(Message("import.user_ambiguous", "Several users are called '{text}'; give the login.",
                                    text=text[:60]))
        return user_id

    def _record(self, target: str, text: str) -> Any:
        if not text:
            return text
        number = picked_id(text)
        if number is not None:
            return number
        key = (target, text.casefold())
        found = self._records.get(key)
        if found is None:
            rows = picker_rows(self.service, target, self.user, titles={text})
            ids = sorted({r.id for r in rows if fold(r.title) == fold(text)})
            if len(ids) != 1:
                what = self.service.metadata.entities[target].label if target in self.service.metadata.entities \
                    else target
                if ids:
                    raise CellError(Message("import.reference_ambiguous", "Several {what} records are called "
                                            "'{text}'; give the number as #12.", what=what, text=text[:60]))
                raise CellError(Message("import.reference_unknown", "No {what} record is called '{text}' (give its "
                                        "number as #12, or its exact title).", what=what, text=text[:60]))
            found = ids[0]
            if len(self._records) < MAX_CACHED:
                self._records[key] = found
        return found
