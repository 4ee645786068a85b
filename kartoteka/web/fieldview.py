"""One field of a card form as its row's macros read it (a FieldView): the flags that shape the row and its texts.

Form rows are compiled once per shape (kartoteka/web/formrows.py): the flags are the shape, the texts fill its holes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from markupsafe import Markup

from kartoteka.i18n import t
from kartoteka.metadata.model import FieldDef
from kartoteka.web.security import option_class

# Fields whose offered option values are remembered (see `offered`): when reached, it starts again.
MAX_FIELDS = 20_000


@dataclass(frozen=True, slots=True)
class Item:
    """One of a widget's repeated items: a value typed in a box, a picked record, a file, a user to choose."""

    value: str
    text: str
    url: str = ""
    selected: str = ""  # " selected" for the user an option names

    def __bool__(self) -> bool:
        return True


BLANK_ITEM = Item("", "")


class FieldView:
    """One field of a card form as its macros read it: flags (the row's shape) and texts (the holes)."""

    __slots__ = (
        "_errors",
        "_text",
        "choice",
        "consent_given",
        "editable",
        "f",
        "form",
        "has_theirs",
        "invalid",
        "items",
        "items_keyed",
        "language",
        "one_chosen",
        "read_only",
        "required",
        "shown",
    )

    blank = BLANK_ITEM

    def __init__(self, form: Any, f: FieldDef, items: tuple[Item, ...], *, items_keyed: bool = False,
                 consent_given: bool = False, errors: list[str]) -> None:
        name = f.name
        self.f = f
        self.form = form
        self.language: str = form.language
        self.required: bool = form.required(name)
        self.read_only: bool = form.read_only(name)
        self.invalid = bool(errors)
        self.shown: bool = form.shown(name)
        self.editable = name in form.editable
        self.has_theirs = name in form.theirs
        self.items = items
        self.items_keyed = items_keyed  # the items are the same for many forms (users to choose): in the shape
        self.consent_given = consent_given
        # Options chosen (only those the field offers, so a crafted post cannot add shapes) are part of the
        # shape: a select's options are then written once per choice, not filled in option by option.
        if f.options and (chosen := form.chosen(name)):
            self.choice = offered(f).intersection(chosen)
            self.one_chosen = len(chosen) == 1
        else:
            self.choice, self.one_chosen = _NO_CHOICE, False
        self._errors = errors
        self._text: str | None = None

    def shape(self) -> tuple[Any, ...]:
        """What a compiled row depends on besides the field and the language."""
        return (self.required, self.read_only, self.invalid, self.shown, self.editable, self.has_theirs,
                tuple([(i.value, i.text) for i in self.items]) if self.items_keyed else len(self.items),
                self.consent_given, self.choice, self.one_chosen)

    @property
    def items_or_blank(self) -> tuple[Any, ...]:
        """The items, or one empty item (an empty box to type the first value in)."""
        return self.items or (BLANK_ITEM,)

    # --- from the shape: the same for every form of it ---------------------------------------------------

    def selected(self, value: str) -> str:
        """" selected" for a chosen option."""
        return " selected" if value in self.choice else ""

    def checked(self, value: str) -> str:
        """" checked" for a chosen option's box."""
        return " checked" if value in self.choice else ""

    @property
    def picked_class(self) -> Markup:
        """The class attribute of a select showing its one chosen option's colour, or nothing."""
        picked = self.f.option(next(iter(self.choice))) if self.one_chosen and self.choice else None
        if picked is None or not picked.color:
            return Markup("")
        return Markup(' class="{}"').format(option_class(picked.color))

    # --- texts: written out by the macros, filled in per form --------------------------------------------

    @property
    def text(self) -> str:
        """The input's text."""
        if self._text is None:
            self._text = str(self.form.text(self.f.name))
        return self._text

    @property
    def used(self) -> str:
        """How many characters the text has (a character counter)."""
        return str(len(self.text))

    @property
    def errors(self) -> str:
        """The field's messages, one after another."""
        return " ".join(self._errors)

    @property
    def theirs(self) -> str:
        """After a conflict: the other person's value, on the button that takes it."""
        return str(self.form.theirs.get(self.f.name, ""))

    @property
    def display_or_dash(self) -> str:
        """A formula's result for reading, or a dash."""
        return self.form.display(self.f.name) or "—"

    @property
    def switched(self) -> str:
        """" checked" for a switch that is on."""
        return " checked" if self.text in ("true", "on", "yes") else ""

    def marked(self, value: str) -> str:
        """" checked" for the radio button of `value` when it is the text (ratings)."""
        return " checked" if self.text == value else ""

    @property
    def consent_record(self) -> str:
        """When consent was given and to which policy version."""
        current = self.form.value(self.f.name)
        if not consent_given(current):
            return ""
        return t("Consent given {when}, policy version {version}.", when=current.get("at"),
                 version=current.get("policy_version") or "—")


def consent_given(value: Any) -> bool:
    """A consent value that records consent given."""
    if value is None or value.__class__ in _SCALARS:  # most values: no need to ask whether they are a Mapping
        return False
    return isinstance(value, Mapping) and bool(value.get("given"))


_SCALARS = frozenset({str, int, float, bool, Decimal, date, datetime, list})
_NO_CHOICE: frozenset[str] = frozenset()
_OFFERED: dict[int, tuple[FieldDef, frozenset[str]]] = {}


def offered(f: FieldDef) -> frozenset[str]:
    """The values of the options `f` offers, worked out once per field (FieldDef.option searches them one by one)."""
    found = _OFFERED.get(id(f))
    if found is None or found[0] is not f:
        if len(_OFFERED) >= MAX_FIELDS:  # metadata loaded again and again (tests): start again
            _OFFERED.clear()
        found = _OFFERED[id(f)] = (f, frozenset(option.value for option in f.options))
    return found[1]
