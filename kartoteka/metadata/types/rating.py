"""A rating: 1 to 5 stars (or to `max`, at most 10), chosen as a group of stars, shown as stars.

Everything the platform knows of ratings is here and in the rating macros of templates/macros/fields.html
(and their look in static/app.css): stored as a whole number (so filtered, sorted and indexed like an
integer), shown with the text "4 of 5" for screen readers, edited as radio buttons that work by keyboard
and without JavaScript.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from kartoteka.messages import Message
from kartoteka.metadata.types.base import Display, FieldType, FieldValueError, ParseContext, blank, json_type

if TYPE_CHECKING:
    from kartoteka.metadata.model import FieldDef

DEFAULT_STARS = 5
MAX_STARS = 10
_WHOLE = re.compile(r"[+-]?\d{1,4}")


class RatingType(FieldType):
    """1 to `max` stars (default 5)."""

    name = "rating"
    option_schema = {
        "max": {"type": "integer", "minimum": 2, "maximum": MAX_STARS, "default": DEFAULT_STARS,
                "description": "How many stars: the best rating."},
    }
    storage = "number"
    json_schema = {"type": "integer", "minimum": 1, "maximum": MAX_STARS}
    filter_kind = "range"
    widget = "rating_input"
    label_kind = "group"
    value_macro = "rating_value"
    cell_macro = "rating_cell"
    badge_macro = "rating_badge"

    @staticmethod
    def stars(field: FieldDef) -> int:
        """How many stars the field offers: its `max`."""
        return int(field.max) if isinstance(field.max, int) else DEFAULT_STARS

    @staticmethod
    def _wrong_type(raw: Any) -> Message:
        return Message("rating.type", "Must be a whole number of stars, not {type}.", type=json_type(raw))

    def _out_of_range(self, field: FieldDef) -> Message:
        return Message("rating.range", "Must be a whole number of stars from 1 to {max}.", max=self.stars(field))

    def parse_bound(self, key: str, raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
        return raw  # `max` is the number of stars (the schema allows 2 to 10), not a value

    def parse(self, raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
        if blank(raw):
            return None
        if isinstance(raw, bool):
            raise FieldValueError(self._wrong_type(raw))
        if isinstance(raw, int):
            number = raw
        elif isinstance(raw, float | Decimal):
            exact = Decimal(raw)  # exactly the float's value; one type for abs() and int()
            if not exact.is_finite() or abs(exact) > MAX_STARS or exact != int(exact):
                raise FieldValueError(self._out_of_range(field))
            number = int(exact)
        elif isinstance(raw, str):
            text = raw.strip()
            if not _WHOLE.fullmatch(text):
                raise FieldValueError(Message("rating.invalid", "'{text}' is not a number of stars.", text=text[:40]))
            number = int(text)
        else:
            raise FieldValueError(self._wrong_type(raw))
        if number < 1 or number > MAX_STARS:
            raise FieldValueError(self._out_of_range(field))
        return number

    def check(self, value: Any, field: FieldDef) -> list[str]:
        # Here rather than in parse: a value stored before `max` was lowered must be corrected on the next save,
        # while lists may still filter by it.
        if not 1 <= value <= self.stars(field):
            return [self._out_of_range(field)]
        return []

    def display(self, value: Any, field: FieldDef, out: Display) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            return out.text("{value} of {max}", value=value, max=self.stars(field))
        return str(value)

    def filter_input(self, field: FieldDef, out: Display) -> dict[str, str]:
        return {"type": "number", "step": "1", "min": "1", "max": str(self.stars(field))}


TYPES = (RatingType,)
