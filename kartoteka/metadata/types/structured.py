"""Choices, lists, links to other records, users and files, formulas and consent."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from kartoteka.messages import Message
from kartoteka.metadata.types.base import (
    CURRENCY,
    LABEL,
    MAX_ITEMS_OPTION,
    MAX_TAG_LENGTH,
    MIN_ITEMS,
    PICKER_TEXT_SUFFIX,
    PLACES,
    TEXT,
    UNIQUE,
    USER,
    Display,
    FieldType,
    FieldValueError,
    FormContext,
    ParseContext,
    PostedForm,
    Stamp,
    as_list,
    blank,
    check_form_count,
    check_item_count,
    item_count_checks,
    json_type,
    parse_id,
    record_kind,
    require_str,
)
from kartoteka.metadata.types.scalar import BooleanType

if TYPE_CHECKING:
    from kartoteka.metadata.model import FieldDef

OPTIONS = {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/option"},
           "description": "The choices: values, or {value, label, color}."}


def option_value(raw: Any, field: FieldDef) -> str | None:
    """One of the field's option values, from text or a number; FieldValueError otherwise."""
    if blank(raw):
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise FieldValueError(Message("choice.type", "Must be one of the options, not {type}.", type=json_type(raw)))
    value = str(raw).strip()
    if value not in field.option_values:
        # The options by their labels (each language reads its own); their values for API clients.
        raise FieldValueError(Message("choice.unknown", "'{text}' is not one of the options: {options}.",
                                      text=value[:40], options=[o.label for o in field.options],
                                      values=list(field.option_values)))
    return value


def target_kind(field: FieldDef) -> Message:
    """'a Company record': what a reference field takes, by its target entity's label (its name if unknown)."""
    return record_kind(field.to_label or field.to)


class OptionsType(FieldType):
    """What select and multiselect share: their options (needed), shown by their labels, filtered by them."""

    filter_kind = "options"
    offered_filter = True

    def spec_problems(self, spec: Mapping[str, Any], entities: Collection[str]) -> list[tuple[tuple[str, ...], str]]:
        if not spec.get("options"):
            return [((), f"a {self.name} field needs 'options'")]
        return []

    def display(self, value: Any, field: FieldDef, out: Display) -> str:
        option = field.option(str(value))
        return out.label(option.label) if option is not None else str(value)

    def filter_choices(self, field: FieldDef, out: Display) -> tuple[tuple[str, str], ...]:
        return tuple((o.value, out.label(o.label)) for o in field.options)


class SelectType(OptionsType):
    name = "select"
    option_schema = {"options": OPTIONS, "unique": UNIQUE}
    json_schema = {"type": "string"}
    groups_board = True
    widget = "select"
    value_macro = "select_value"
    badge_macro = "select_badge"

    def parse(self, raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
        return option_value(raw, field)

    def parser(self, field: FieldDef) -> Callable[[Any, FieldDef, ParseContext], Any]:
        if type(self).parse is not SelectType.parse:
            return self.parse
        # Option values sent as they are (no spaces around, not empty): option_value would give them back unchanged.
        exact = frozenset(value for value in field.option_values if value and value == value.strip())

        def parse(raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
            return raw if type(raw) is str and raw in exact else option_value(raw, field)

        return parse

    def title_text(self, value: Any, field: FieldDef) -> str:
        option = field.option(value)
        return str(option.label) if option else str(value)

    def key_bytes(self, field: FieldDef) -> int | None:
        return 4 * max(len(value) for value in field.option_values) + 4


class ListFieldType(FieldType):
    """A value that is a list of texts: stored as a JSON array, limited by min_items / max_items."""

    storage = "json"
    json_schema = {"type": "array", "items": {"type": "string"}}
    list_valued = True

    def check(self, value: Any, field: FieldDef) -> list[str]:
        return item_count_checks(value, field)


class MultiselectType(ListFieldType, OptionsType):
    name = "multiselect"
    option_schema = {"options": OPTIONS, "min_items": MIN_ITEMS, "max_items": MAX_ITEMS_OPTION}
    widget = "multiselect"
    label_kind = "group"
    value_macro = "multiselect_value"
    badge_macro = "multiselect_badge"

    def parse(self, raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
        if raw is None:
            return None
        items = as_list(raw)
        check_item_count(items, field)
        values: dict[str, None] = {}  # ordered and hashed: removing repeats stays linear
        for item in items:
            value = option_value(item, field)
            if value is not None:
                values.setdefault(value)
        # In the options' order, whatever order they came in: a form's boxes and an API list of the same
        # choices are one value (an unchanged form saved in another order made a new version).
        order = {o.value: n for n, o in enumerate(field.options)}
        return sorted(values, key=lambda v: order.get(v, len(order))) or None

    def form_texts(self, value: Any, field: FieldDef) -> list[str]:
        return [self.input_text(v, field, {}) for v in value or []]  # one box ticked per option

    def form_value(self, field: FieldDef, form: PostedForm, context: FormContext) -> Any:
        return [v for v in form.getlist(field.name) if v.strip()]


class TagsType(ListFieldType):
    name = "tags"
    option_schema = {"suggestions": {"type": "array", "items": {"type": "string"}},
                     "min_items": MIN_ITEMS, "max_items": MAX_ITEMS_OPTION}
    filter_kind = "options"
    offered_filter = True
    widget = "tags"
    value_macro = "tags_value"
    badge_macro = "tags_badge"
    badge_by_default = True

    def filter_choices(self, field: FieldDef, out: Display) -> tuple[tuple[str, str], ...]:
        return tuple((s, s) for s in field.suggestions)

    def parse(self, raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
        if raw is None:
            return None
        tags: list[str] = []
        seen: set[str] = set()
        items = as_list(raw)
        check_item_count(items, field)
        for item in items:
            tag = " ".join(require_str(item, TEXT).split())
            if not tag:
                continue
            if "," in tag:
                # Commas separate tags in forms, filters and spreadsheet cells: a tag holding one would split.
                raise FieldValueError(Message("tag.comma",
                                              "A tag cannot contain a comma ('{tag}'); send it as separate tags.",
                                              tag=tag[:40]))
            if len(tag) > MAX_TAG_LENGTH:
                raise FieldValueError(Message("tag.too_long", "Tag '{tag}…' is longer than {count} characters.",
                                              tag=tag[:20], count=MAX_TAG_LENGTH))
            if tag.casefold() not in seen:
                seen.add(tag.casefold())
                tags.append(tag)
        return tags or None


# "Northwind Trading Ltd #12" (a suggestion of a picker when titles repeat) or just "12" / "#12".
_PICKED = re.compile(r"(?:^|#)\s*(\d{1,18})\s*$")


def picked_id(text: str) -> int | None:
    """The id a reference picker's text names by number ("Northwind Trading Ltd #12", "#12", "12"), if any."""
    match = _PICKED.search(text)
    return int(match.group(1)) if match else None


class ReferenceType(FieldType):
    name = "reference"
    option_schema = {"to": {"$ref": "#/$defs/identifier", "description": "The entity whose records it names."}}
    supports_multiple = True
    storage = "number"
    json_schema = {"type": "integer"}
    refers = "record"
    filter_kind = "reference"
    widget = "reference"
    form_items = "picks"
    value_macro = "reference_value"

    def spec_problems(self, spec: Mapping[str, Any], entities: Collection[str]) -> list[tuple[tuple[str, ...], str]]:
        from kartoteka.metadata.expressions import suggest

        target = spec.get("to")
        if target is None:
            return [((), "a reference needs 'to: <entity>'")]
        if target not in entities:
            return [(("to",), f"unknown entity '{target}'{suggest(target, entities)}")]
        return []

    def parse(self, raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
        if blank(raw):
            return None
        return parse_id(raw, target_kind(field))

    def display(self, value: Any, field: FieldDef, out: Display) -> str:
        return out.record(value) or f"#{value}"

    def input_text(self, value: Any, field: FieldDef, titles: Mapping[int, str]) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            # The picker's text of the record (its title, and what tells it from others); "#12" unknown to us.
            return titles.get(value) or f"#{value}"
        return super().input_text(value, field, titles)

    def form_texts(self, value: Any, field: FieldDef) -> list[str]:
        # What the hidden inputs post: the ids (the texts beside them are for people).
        return [str(v) for v in (value or [] if field.multiple else [value]) if v is not None]

    def form_value(self, field: FieldDef, form: PostedForm, context: FormContext) -> Any:
        texts = form.getlist(field.name + PICKER_TEXT_SUFFIX)
        if texts or field.name + PICKER_TEXT_SUFFIX in form:  # the card form: a hidden id beside each text
            kept = form.getlist(field.name)
            pairs = [(text, kept[i] if i < len(kept) else "") for i, text in enumerate(texts)]
        else:  # a form without picker texts (a hand-made post): numbers or texts under the field's name
            pairs = [(text, "") for text in form.getlist(field.name)]
        pairs = [(text, kept) for text, kept in pairs if text.strip()]
        if not field.multiple:
            pairs = pairs[:1]  # only the first is used: resolve no more than that
        check_form_count(field, len(pairs))  # before resolving: a typed title costs a query
        picked = [self._picked(field, text, kept, context) for text, kept in pairs]
        return picked if field.multiple else (picked[0] if picked else None)

    @staticmethod
    def _picked(field: FieldDef, text: str, kept: str, context: FormContext) -> str:
        """The record a picker names: the one picked before while the text still names it, else the number typed
        ("#12"), else the one record whose picker text or title the text is."""
        target, text = field.to or "", text.strip()
        kept_id = int(kept) if kept.strip().isdigit() and len(kept.strip()) <= 18 else None
        if kept_id is not None and context.resolve is not None and context.resolve(target, text, kept_id) == [kept_id]:
            return str(kept_id)
        number = picked_id(text)
        if number is not None:
            return str(number)
        found = context.resolve(target, text) if context.resolve is not None else []
        if len(found) == 1:
            return str(found[0])
        if found:
            raise ValueError(Message("reference.ambiguous",
                                     "Several records are called '{text}'; pick one from the suggestions.",
                                     text=text[:60]))
        raise ValueError(Message("reference.unnamed", "Nothing is called '{text}'; pick a record from the suggestions "
                                 "(or type its number as #12).", text=text[:60]))


class UserType(FieldType):
    name = "user"
    names_user = True
    supports_multiple = True
    storage = "number"
    json_schema = {"type": "integer"}
    refers = "user"
    filter_kind = "user"
    widget = "user_select"
    form_items = "users"

    def parse(self, raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
        if blank(raw):
            return None
        return parse_id(raw, USER)

    def display(self, value: Any, field: FieldDef, out: Display) -> str:
        return out.user(value) or f"#{value}"


class FileType(FieldType):
    """A stored file: the value is the file's id; the service fills in name, size and type."""

    name = "file"
    option_schema = {"accept": {"type": "array", "items": {"type": "string"},
                                "description": "MIME types or file-name endings."},
                     "max_size": {"type": "integer", "minimum": 1, "description": "Bytes."}}
    supports_multiple = True
    storage = "json"
    holds_files = True
    filter_kind = "presence"
    presence_noun = "files"
    widget = "file_input"
    form_items = "files"
    value_macro = "file_value"
    json_schema = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                       "size": {"type": "integer"}, "content_type": {"type": "string"}},
    }

    def parse(self, raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
        if blank(raw):
            return None
        file_id = raw.get("id") if isinstance(raw, dict) else raw
        if not isinstance(file_id, str) or not re.fullmatch(r"[0-9a-f]{32}", file_id.strip()):
            raise FieldValueError(Message("file.invalid_id", "Must be the id of an uploaded file."))
        return {"id": file_id.strip()}

    def same(self, value: Any, stored: Any) -> bool:
        # A form sends only the ids; names, sizes and types are the store's.
        return file_ids(value) == file_ids(stored)

    def comparable(self, value: Any) -> Any:
        return tuple(sorted(file_ids(value)))

    def display(self, value: Any, field: FieldDef, out: Display) -> str:
        if isinstance(value, Mapping):
            return str(value.get("name") or value.get("id") or "")
        return str(value)

    def label_for(self, read_only: bool) -> str:
        return "group" if read_only else "for"  # a read-only one is a group of download links

    def form_texts(self, value: Any, field: FieldDef) -> list[str]:
        return file_ids(value)  # as the form posts them: the ids of the files held

    def form_value(self, field: FieldDef, form: PostedForm, context: FormContext) -> Any:
        kept = [{"id": i} for i in form.getlist(field.name) if i]
        files = context.files
        uploads = [f for f in files.getlist(field.name) if f and f.filename] if files is not None else []
        # Counted before anything is written to disk: a form may not park a thousand uploads.
        check_form_count(field, len(uploads) if not field.multiple else len(kept) + len(uploads))
        if uploads and context.save_file is not None:
            kept += [context.save_file(field, f) for f in uploads]
        if field.multiple:
            return kept
        return kept[-1] if kept else None


def file_ids(value: Any) -> list[str]:
    """The file ids held by a file field's value (one file, a list of them, or empty)."""
    items = value if isinstance(value, list) else [value] if value is not None else []
    return [item["id"] for item in items if isinstance(item, Mapping) and isinstance(item.get("id"), str)]


COMPUTED = Message("computed", "Is computed by a formula and cannot be set.")


class FormulaType(FieldType):
    """Computed from other fields; the stored value is the last computed one (for lists and sorting)."""

    name = "formula"
    option_schema = {
        "expr": {"$ref": "#/$defs/expression"},
        "result": {"type": "string", "enum": ["text", "integer", "decimal", "money", "percent", "boolean", "date",
                                              "datetime"], "default": "decimal"},
        "places": PLACES,
        "currency": CURRENCY,
    }
    computed = True
    widget = "formula_output"

    def spec_problems(self, spec: Mapping[str, Any], entities: Collection[str]) -> list[tuple[tuple[str, ...], str]]:
        return [] if "expr" in spec else [((), "a formula needs 'expr'")]

    def parse(self, raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
        raise FieldValueError(COMPUTED)


class ConsentType(FieldType):
    """Consent to personal-data processing: who gave or withdrew it, when, for which policy version."""

    name = "consent"
    option_schema = {"policy_version": {"type": "string", "minLength": 1},
                     "policy_url": {"type": "string", "minLength": 1}, "text": LABEL}
    storage = "json"
    filter_kind = "presence"
    emptied_when_hidden = False  # an archive of who agreed when
    personal_decision = True
    widget = "consent"
    label_kind = "own"
    required_message = Message("consent.required", "Consent is required.")
    json_schema = {
        "type": "object",
        "properties": {"given": {"type": "boolean"}, "at": {"type": "string", "format": "date-time"},
                       "by": {"type": ["integer", "null"]}, "policy_version": {"type": "string"}},
    }

    def parse(self, raw: Any, field: FieldDef, ctx: ParseContext) -> Any:
        if blank(raw):
            return None
        # A BooleanType instance: its parse reads the word lists of its own class.
        given = raw.get("given") if isinstance(raw, dict) else BooleanType().parse(raw, field, ctx)
        if not isinstance(given, bool):
            raise FieldValueError(Message("consent.invalid",
                                          "Must be true (consent given) or false (withdrawn or not given)."))
        return {"given": given}

    def to_json(self, value: Any) -> Any:
        return dict(value)

    def spec_problems(self, spec: Mapping[str, Any], entities: Collection[str]) -> list[tuple[tuple[str, ...], str]]:
        return [(("default",), "consent is never pre-ticked: remove the default")] if "default" in spec else []

    def settle(self, value: Any, previous: Any, field: FieldDef, stamp: Stamp) -> Any:
        if value is None:
            return previous  # an empty value keeps the stored consent: it cannot be cleared
        if stamp.inferred and previous is None and not value.get("given"):
            return None  # an unticked box over a consent never given: nothing was asked or answered
        if previous is not None and previous.get("given") == value["given"]:
            return previous
        return {"given": value["given"], "at": stamp.now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "by": stamp.user_id, "policy_version": field.policy_version}

    def missing(self, value: Any) -> bool:
        return super().missing(value) or not value.get("given")

    def comparable(self, value: Any) -> Any:
        return bool(value.get("given")) if isinstance(value, Mapping) else value

    def display(self, value: Any, field: FieldDef, out: Display) -> str:
        """'Yes, 31 Jan 2026' when consent was given (with the date if known), 'No' otherwise."""
        if isinstance(value, bool):
            return out.yes_no(value)
        if not isinstance(value, Mapping):
            return str(value)
        if value.get("given") is not True:
            return out.yes_no(False)
        day = out.day_of(value.get("at"))
        return out.yes_no(True) if day is None else f"{out.yes_no(True)}, {day}"

    def form_texts(self, value: Any, field: FieldDef) -> list[str]:
        return ["true"] if isinstance(value, Mapping) and value.get("given") else []

    def form_value(self, field: FieldDef, form: PostedForm, context: FormContext) -> Any:
        # Unticked over a consent never given records nothing (settle decides).
        return "true" if field.name in form else "false"


TYPES = (SelectType, MultiselectType, TagsType, ReferenceType, UserType, FileType, FormulaType, ConsentType)
