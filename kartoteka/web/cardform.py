"""What a card form template needs: the user's layout, each field's state, value and errors."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from werkzeug.datastructures import MultiDict

from kartoteka.messages import translate
from kartoteka.metadata.fieldtypes import PICKER_TEXT_SUFFIX
from kartoteka.metadata.model import EntityDef, FieldDef, Group, Tab
from kartoteka.records.model import FormState, Principal, Record
from kartoteka.web.fieldview import FieldView, Item, consent_given
from kartoteka.web.formatting import format_value


def widget_for(field_def: FieldDef) -> str:
    """The macro (in templates/macros/fields.html) rendering this field's input: its type names it."""
    return field_def.type.widget


@dataclass(frozen=True)
class SectionView:
    """A group of a tab as the user sees it: its key, definition and the fields shown to them."""

    key: str
    group: Group
    fields: tuple[FieldDef, ...]


@dataclass(frozen=True)
class TabView:
    """A tab as the user sees it."""

    key: str
    tab: Tab
    groups: tuple[SectionView, ...]


@dataclass
class CardForm:
    """The state of one card form (new or edit) for one user."""

    entity: EntityDef
    user: Principal
    state: FormState
    viewable: frozenset[str]
    editable: frozenset[str]
    record: Record | None = None
    submitted: MultiDict[str, str] | None = None
    reference_titles: Mapping[int, str] = field(default_factory=dict)
    # What a picker's input holds for a record: its title and what tells it from others ("#id" only if needed).
    reference_labels: Mapping[int, str] = field(default_factory=dict)
    users: Sequence[tuple[int, str]] = ()
    form_errors: Mapping[str, list[str]] = field(default_factory=dict)
    touched: frozenset[str] | None = None  # live checks: show errors only of fields the user has left
    live_url: str | None = None
    language: str = "en"
    theirs: Mapping[str, str] = field(default_factory=dict)  # after a conflict: the other person's value, shown
    base_values: Mapping[str, Any] | None = None  # the saved values the form starts from (default: the state's)
    version: int | None = None  # the version a save of this form claims to change (default: the state's)
    url_root: str = ""  # the application's root path (request.script_root), which links in a row begin with
    record_url: str = ""  # the edited record's card page
    trashed: frozenset[int] = frozenset()  # referenced records in the trash: shown as deleted, not linked

    # --- layout -------------------------------------------------------------------------------------

    def tabs(self) -> list[TabView]:
        """Tabs and groups of the user's layout holding at least one field they may see."""
        return self._tabs

    @cached_property
    def _tabs(self) -> list[TabView]:
        result = []
        for t, tab in enumerate(self.entity.layout_for(self.user.department).tabs):
            groups = []
            for g, group in enumerate(tab.groups):
                shown = tuple(self.entity.fields[n] for n in group.fields if n in self.viewable)
                if shown:
                    groups.append(SectionView(f"t{t}g{g}", group, shown))
            if groups:
                result.append(TabView(f"t{t}", tab, tuple(groups)))
        return result

    def rendered_editable(self) -> list[str]:
        """Editable fields the form renders (in the user's layout): an unticked box among them means "empty"."""
        return [f.name for tv in self.tabs() for sv in tv.groups for f in sv.fields if f.name in self.editable]

    def _seen_sections(self) -> set[str]:
        return {key for tv in self.tabs() for key in (tv.key, *(g.key for g in tv.groups))}

    def section_shown(self, key: str) -> bool:
        """False when the tab's or group's visible_if is false now."""
        return self.state.sections.get(key, True)

    # --- per field ----------------------------------------------------------------------------------

    def shown(self, name: str) -> bool:
        """The field's visible_if holds (hidden fields stay in the page, with `hidden`, to reappear live)."""
        return self.state.visible.get(name, True)

    def required(self, name: str) -> bool:
        """Required now (plainly or by required_if)."""
        return self.state.required.get(name, False)

    def read_only(self, name: str) -> bool:
        """The user cannot change it now: no edit access, computed, read_only or read_only_if."""
        return name not in self.editable or self.state.read_only.get(name, False)

    def errors(self, name: str) -> list[str]:
        """Messages to show next to the field."""
        known = self._errors.get(name)
        if known is None:
            known = self._errors[name] = self._field_errors(name)
        return known

    @cached_property
    def _errors(self) -> dict[str, list[str]]:
        return {}

    def _field_errors(self, name: str) -> list[str]:
        if self.touched is not None and name not in self.touched:
            return []
        # A value that did not even parse has only that message: the "Required." its absence caused is noise.
        messages = self.form_errors.get(name) or self.state.errors.get(name, [])
        return list(dict.fromkeys(translate(self.language, m) for m in messages))

    def view(self, name: str, download_url: Callable[[str], str] | None = None) -> FieldView:
        """The field as its form row's macros read it (see kartoteka.web.formrows)."""
        f = self.entity.fields[name]
        form_items = f.type.form_items
        if form_items:
            kind = _ITEMS[form_items]
            items, keyed = kind.items(self, f, download_url), kind.keyed
        else:
            items, keyed = (), False
        return FieldView(self, f, items, items_keyed=keyed, consent_given=consent_given(self.state.values.get(name)),
                         errors=self.errors(name))

    def fields_with_errors(self) -> list[tuple[FieldDef, list[str]]]:
        """Fields shown to the user that carry messages, in form order (for the error summary)."""
        return [(self.entity.fields[n], self.errors(n)) for n in self.entity.fields
                if n in self.viewable and self.errors(n)]

    def tab_has_errors(self, tab: TabView) -> bool:
        """True when a field of the tab carries a message (the tab is marked)."""
        return any(self.errors(f.name) for group in tab.groups for f in group.fields)

    def record_errors(self) -> list[str]:
        """Messages about the record as a whole, and about fields the page does not show (a crafted request)."""
        shown = [translate(self.language, m) for key, messages in self.state.errors.items()
                 if key not in self.entity.fields and key != "owner" for m in messages]
        unshown = [f"{key}: {translate(self.language, m)}" for key, messages in self.state.errors.items()
                   if key in self.entity.fields and key not in self.viewable for m in messages]
        return shown + unshown

    def value(self, name: str) -> Any:
        """The typed value (computed for formulas)."""
        return self.state.values.get(name)

    def files(self, name: str) -> list[Mapping[str, Any]]:
        """The files a file field holds now, each with its name where the saved record knows it.

        A value the form changed (after a refused or conflicting save) holds only ids; the files the
        record held give them their names back.
        """
        saved = self.state.saved or {}
        known = {item["id"]: item for f in self.entity.file_fields
                 for item in _items(saved.get(f.name)) if isinstance(item.get("id"), str)}
        return [{**item, **known.get(item["id"], {})} for item in _items(self.value(name))
                if isinstance(item.get("id"), str)]

    def text(self, name: str) -> str:
        """The input's text: what the user typed when the form comes back, else the value for an input."""
        if self.submitted is not None and name in self.submitted and name not in self._computed:
            return self.submitted.get(name, "")
        field = self.entity.fields[name]
        titles = self.reference_labels or self.reference_titles
        return field.value_type.localized_input_text(self.value(name), field, titles, self.language)

    def texts(self, name: str) -> list[str]:
        """The texts of a field with several values (phones, e-mails, references)."""
        if self.submitted is not None and name in self.submitted:
            return [v for v in self.submitted.getlist(name) if v.strip()]
        value = self.value(name) or []
        field = self.entity.fields[name]
        labels = self.reference_labels or self.reference_titles
        return [field.value_type.localized_input_text(v, field, labels, self.language) for v in value]

    def picks(self, name: str) -> list[tuple[str, str]]:
        """(picked id, text) of each input of a reference picker: as posted when the form comes back, else the
        record's references with their picker texts."""
        if self.submitted is not None and (name in self.submitted or name + PICKER_TEXT_SUFFIX in self.submitted):
            texts = self.submitted.getlist(name + PICKER_TEXT_SUFFIX)
            ids = self.submitted.getlist(name)
            if not texts:  # a post without picker texts: what came under the name is the text
                texts, ids = ids, []
            return [(ids[i] if i < len(ids) else "", text) for i, text in enumerate(texts) if text.strip()]
        value = self.value(name)
        field = self.entity.fields[name]
        labels = self.reference_labels or self.reference_titles
        return [(str(v), field.value_type.localized_input_text(v, field, labels, self.language))
                for v in (value if isinstance(value, list) else [value]) if v is not None]

    def chosen(self, name: str) -> set[str]:
        """Chosen options of a multiselect (or a select)."""
        if self.submitted is not None and name in self.submitted:
            return set(self.submitted.getlist(name))
        value = self.value(name)
        if value is None:
            return set()
        return {str(v) for v in value} if isinstance(value, list) else {str(value)}

    def loaded_version(self) -> int | None:
        """The version a save of this form claims to change: the one its values were read at."""
        if self.version is not None:
            return self.version
        if self.state.version is not None:
            return self.state.version
        return self.record.version if self.record is not None else None

    def base_json(self) -> str:
        """The editable values this form was loaded with, so a save after a concurrent change can merge."""
        if self.submitted is not None and "_base" in self.submitted:
            return self.submitted["_base"]  # a form shown again keeps the snapshot it started from
        base = {}
        for name in self.entity.fields:
            if name in self.editable:
                field_def = self.entity.fields[name]
                saved = self.base_values if self.base_values is not None else self.state.saved
                value = saved.get(name) if saved is not None else self.value(name)
                base[name] = field_def.type.form_texts(value, field_def)  # as the form posts it
        return json.dumps(base, ensure_ascii=False)

    def display(self, name: str) -> str:
        """The value as text for reading (formulas, the card page)."""
        return format_value(self.entity.fields[name], self.value(name), self.language, user_names=self._user_names,
                            record_titles=self.reference_titles)

    @cached_property
    def _user_names(self) -> dict[int, str]:
        return dict(self.users)

    def display_item(self, name: str, item: Any) -> str:
        """One value of the field (one of its list) as text for reading: a phone beside its tel: link."""
        return format_value(self.entity.fields[name], item, self.language)

    @cached_property
    def _computed(self) -> frozenset[str]:
        return frozenset(n for n, f in self.entity.fields.items() if f.is_formula)

    # --- live updates -------------------------------------------------------------------------------

    def state_json(self) -> str:
        """What app.js applies after a live check: hidden, required and read-only fields, hidden sections."""
        names = [n for n in self.entity.fields if n in self.viewable]
        return json.dumps({
            "hidden": [n for n in names if not self.shown(n)],
            "required": [n for n in names if self.required(n)],
            "readonly": [n for n in names if self.read_only(n) and not self.entity.fields[n].is_formula],
            # Only sections the user sees: the state of one they may not see would tell about its condition.
            "hiddenSections": [k for k, shown in self.state.sections.items()
                               if not shown and k in self._seen_sections()],
        }, ensure_ascii=False)


def _text_items(form: CardForm, f: FieldDef, _: Any) -> tuple[Item, ...]:
    """A box per value of a field with several (phones, e-mails...)."""
    return tuple(Item(text, text) for text in form.texts(f.name)) if f.multiple else ()


def _pick_items(form: CardForm, f: FieldDef, _: Any) -> tuple[Item, ...]:
    """A picker per record a reference names."""
    return tuple(Item(value, text) for value, text in form.picks(f.name))


def _user_items(form: CardForm, f: FieldDef, _: Any) -> tuple[Item, ...]:
    """An option per user to choose, the chosen ones selected."""
    chosen = form.chosen(f.name)
    return tuple(Item(str(i), name, selected=" selected" if str(i) in chosen else "") for i, name in form.users)


def _file_items(form: CardForm, f: FieldDef, download_url: Callable[[str], str] | None) -> tuple[Item, ...]:
    """A file the field holds, with its name and download link."""
    return tuple(Item(item["id"], item.get("name") or item["id"], download_url(item["id"]) if download_url else "")
                 for item in form.files(f.name))


@dataclass(frozen=True)
class _ItemKind:
    """How a form lists the items a widget repeats; `keyed`: the same for many forms, part of a row's shape."""

    items: Callable[[CardForm, FieldDef, Any], tuple[Item, ...]]
    keyed: bool = False


# What a widget repeats (FieldType.form_items). The users to choose are the same on every form of the moment, so a
# user field's options are written once per list of users (which one is selected is filled in per form); people's
# own texts are filled in per form.
_ITEMS: dict[str, _ItemKind] = {"texts": _ItemKind(_text_items), "picks": _ItemKind(_pick_items),
                                "users": _ItemKind(_user_items, keyed=True), "files": _ItemKind(_file_items)}


def _items(value: Any) -> list[Mapping[str, Any]]:
    """The items of a file field's value (one file or a list of them) that are mappings."""
    values = value if isinstance(value, list) else [value]
    return [v for v in values if isinstance(v, Mapping)]
