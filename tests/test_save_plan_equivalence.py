"""What the save and read paths work out once per entity is what the per-call code says, for every field of the
shipped cards: the refusals of the pipeline (Pipeline._refusal), its direct parsers (parse_value), the readers of
stored values (from_storage) and the writers (to_storage), the title's values."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from kartoteka.metadata.fieldtypes import FieldValueError, ParseContext
from kartoteka.records import pipeline, service
from kartoteka.records.access import editable_fields
from kartoteka.records.model import SYSTEM, Principal

USERS = [SYSTEM] + [Principal(7, f"u{n}", frozenset(roles), department) for n, (roles, department) in enumerate([
    ({"sales"}, "sales"), ({"sales"}, None), ({"support"}, "support"), ({"hr"}, "hr"), ({"finance"}, "finance"),
    ({"marketing"}, "marketing"), ({"sales_manager"}, "sales"), (set(), None)])]

# Raw inputs of every kind a client sends; each field parses or refuses them its own way.
RAW = ["", " ", "abc", "Abc@Example.com", "12", "-3", "12.5", "1e3", "0.125", "2026-03-02", "2026-03-02T10:00:00",
       "true", "no", "new", "won", 0, 7, -1, 2.5, True, None, [], ["a"], {"id": "x"}, "x" * 300, "a\nb"]


class _NoEngine:
    """What RecordService reads of an engine when it is made: these tests touch no database."""

    class dialect:
        name = "sqlite"


_NO_ENGINE = _NoEngine()


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        return ("ok", fn(*args))
    except FieldValueError as exc:
        return ("refused", [repr(m) for m in exc.messages])


def test_refusals_worked_out_once_are_the_pipelines(shipped_metadata):
    for entity in shipped_metadata.entities.values():
        for user in USERS:
            editable = editable_fields(entity, user)
            once = pipeline._refusals(entity, editable)
            for name, field in entity.fields.items():
                assert once.get(name) == pipeline.Pipeline._refusal(field, editable, set()), (entity.name, name)
                if once.get(name) is None:  # a field locked by its read_only_if is read-only for this save only
                    assert pipeline.Pipeline._refusal(field, editable, {name}) == pipeline.READ_ONLY


def test_direct_parsers_are_parse_value(shipped_metadata):
    ctx = ParseContext()
    for entity in shipped_metadata.entities.values():
        parsers = pipeline._plan(entity).parsers
        for name, field in entity.fields.items():
            assert (name in parsers) == (not field.multiple)
            if name not in parsers:
                continue
            for raw in RAW:
                assert _outcome(parsers[name], raw, field, ctx) == _outcome(pipeline.parse_value, field, raw, ctx), \
                    (entity.name, name, raw)


def _stored_samples(field: Any) -> list[Any]:
    kind = field.value_type.storage
    if kind == "number":
        return [0, 1, -7, 2.5, 0.125, 1234567.89, 10**14, -0.01, 99999999999.99]
    if kind == "boolean":
        return [True, False]
    if kind == "text":
        return ["2026-03-02", "2026-03-02T10:00:00+00:00", "abc", "won"]
    return []


def test_readers_of_stored_values_are_from_storage(shipped_metadata):
    for entity in shipped_metadata.entities.values():
        names, converted = service._readers(entity, None)
        assert names == tuple(entity.fields)
        readers = {name: (multiple, read) for name, multiple, read in converted}
        for name, field in entity.fields.items():
            multiple, read = readers.get(name, (field.multiple, None))
            assert multiple == field.multiple
            for stored in _stored_samples(field):
                try:
                    expected = field.value_type.from_storage(stored, field)
                except Exception as exc:
                    with pytest.raises(type(exc)):
                        (read or (lambda v: v))(stored)
                    continue
                got = stored if read is None else read(stored)
                assert type(got) is type(expected) and got == expected, (entity.name, name, stored)
                if isinstance(expected, Decimal):
                    assert got.as_tuple() == expected.as_tuple(), (entity.name, name, stored)  # the same places


def test_typed_values_and_storage_keep_the_fields_order_and_values(shipped_metadata):
    records = service.RecordService(shipped_metadata, _NO_ENGINE, None)  # type: ignore[arg-type]
    for entity in shipped_metadata.entities.values():
        values: dict[str, Any] = {}
        for name, field in entity.fields.items():
            kind = field.value_type.storage
            sample: Any = {"number": Decimal("12.50"), "boolean": True}.get(kind, "x")
            if field.value_type.name == "date":
                sample = date(2026, 3, 2)
            elif field.value_type.name == "datetime":
                sample = datetime(2026, 3, 2, 10, tzinfo=UTC)
            elif kind == "json":
                continue
            values[name] = [sample] if field.multiple else sample
        values[next(iter(entity.fields))] = ""  # an empty value is left out
        data = records._storage(entity, values)
        expected = {}
        for name, value in values.items():
            if value is None or (isinstance(value, str | list) and not value):
                continue
            field = entity.fields[name]
            convert = field.value_type.to_storage
            expected[name] = [convert(v) for v in value] if field.multiple else convert(value)
        assert data == expected and list(data) == list(expected), entity.name
        for name, value in data.items():
            if entity.fields[name].multiple:
                assert value is not values[name]  # a list of its own
        typed = records._values(entity, data)
        assert list(typed) == list(entity.fields)
        assert typed == {n: records._value(entity.fields[n], data.get(n)) for n in entity.fields}


TEMPLATES = [
    (("", "name"),), (("#", "id"), (": ", "name")), (("", "name"), (" (", "owner"), (")", None)),
    (("", "missing"), ("", "name")), (("", "country"), (" / ", "name"), (" @", "created_at")),
]


@pytest.mark.parametrize("parts", TEMPLATES)
def test_titles_read_only_the_values_they_name(shipped_metadata, parts):
    import dataclasses

    from kartoteka.metadata.fieldtypes import plain_title
    from kartoteka.metadata.model import TitleTemplate

    title = TitleTemplate("".join(f"{literal}{{{name}}}" if name else literal for literal, name in parts), parts)
    entity = dataclasses.replace(shipped_metadata.entities["company"], title=title)
    records = service.RecordService(shipped_metadata, _NO_ENGINE, None)  # type: ignore[arg-type]

    def before(values: dict, system: dict) -> str:  # RecordService._title as it was: every value merged
        def fmt(name: str, value: Any) -> str:
            field = entity.fields.get(name)
            return plain_title(value) if field is None else field.value_type.title_text(value, field)

        text = entity.title.render({**system, **values}, fmt)
        return text[:service.TITLE_LENGTH] if text else f"{entity.label} (new)"

    moment = datetime(2026, 3, 2, 10, tzinfo=UTC)
    for values in ({"name": "Northwind", "country": "gb"}, {"name": None}, {}, {"name": "x" * 400}):
        for system in ({"id": 12, "owner": 3, "created_at": moment, "updated_at": moment}, {"id": None}):
            assert records._title(entity, values, system) == before(values, system)
