"""Three-way merge of a card form saved after someone else changed the card.

The form carries the values it was loaded with (the base). For each field: unchanged by the user →
the saved value shows; changed only by the user → theirs is kept; changed by both to different
values → lists (tags, phones, e-mails, multiselects, references) take both sides' additions and
removals, and anything else keeps the user's value with the other one offered in one click.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kartoteka.metadata.fieldtypes import FieldValueError, ParseContext
from kartoteka.metadata.model import EntityDef, FieldDef
from kartoteka.records.pipeline import parse_value


@dataclass
class Merge:
    """The outcome: values to apply over the saved record, and the fields both people changed."""

    kept: dict[str, Any] = field(default_factory=dict)  # the user's values (raw or merged), by field
    mine: set[str] = field(default_factory=set)  # fields whose typed text the form shows as the user sent it
    merged: set[str] = field(default_factory=set)  # lists combined from both sides (shown as merged values)
    clashes: dict[str, Any] = field(default_factory=dict)  # field -> the other person's saved value


def _typed(field_def: FieldDef, raw: Any, ctx: ParseContext) -> Any:
    try:
        return parse_value(field_def, raw, ctx)
    except (FieldValueError, TypeError, ValueError):
        return raw


def comparable(field_def: FieldDef, value: Any) -> Any:
    """A value reduced to what matters for "did it change": empty is empty, consent is given or not, files by id."""
    if value is None or value == "" or value == [] or value == ():
        return None
    return field_def.type.comparable(value)


def _is_list(field_def: FieldDef) -> bool:
    """Lists of values merge both sides' additions and removals (files keep one side's: they are documents)."""
    return field_def.is_list and not field_def.type.holds_files


def merge_edit(entity: EntityDef, values: Mapping[str, Any], base: Mapping[str, Any] | None,
               saved: Mapping[str, Any], ctx: ParseContext, take_theirs: frozenset[str] = frozenset()) -> Merge:
    """Merge the submitted raw `values` with the `saved` typed values, given the typed-able `base`.

    Without a base (a form that did not say what it was loaded with) every difference is the user's.
    `take_theirs` names fields the user chose to take the saved value of.
    """
    result = Merge()
    for name, raw in values.items():
        field_def = entity.fields.get(name)
        if field_def is None or name in take_theirs:
            continue
        mine_typed = _typed(field_def, raw, ctx)
        mine, theirs = comparable(field_def, mine_typed), comparable(field_def, saved.get(name))
        was = theirs if base is None else comparable(field_def, _typed(field_def, base.get(name), ctx))
        if mine == was:
            continue  # the user left it alone: whatever was saved meanwhile comes through
        result.kept[name] = raw
        result.mine.add(name)
        if theirs in (was, mine):
            continue  # only the user changed it, or both made the same change
        if _is_list(field_def) and isinstance(mine_typed, list | type(None)):
            before, ours, other = list(was or ()), list(mine or ()), list(theirs or ())
            try:  # sets: a crafted snapshot with a huge list must not cost time quadratic in it
                ours_set, before_set, other_set = set(ours), set(before), set(other)
            except TypeError:
                result.clashes[name] = saved.get(name)
                continue
            removed = before_set - ours_set
            combined = [v for v in other if v not in removed] + [
                v for v in ours if v not in before_set and v not in other_set]
            result.kept[name] = combined or None
            result.mine.discard(name)
            result.merged.add(name)
            continue
        result.clashes[name] = saved.get(name)
    return result
