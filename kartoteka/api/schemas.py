"""marshmallow schemas generated from the metadata: (de)serialisation of records for the API."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from marshmallow import RAISE, Schema, fields

from kartoteka.errors import RecordValidationError
from kartoteka.i18n import localized
from kartoteka.messages import Message, json_params, message_code, message_of
from kartoteka.metadata.fieldtypes import FieldValueError, parse_id
from kartoteka.metadata.model import EntityDef, FieldDef
from kartoteka.records.model import Record

# System keys a client may send back unchanged but never set (besides `version` and `owner`).
SYSTEM_KEYS = ("id", "entity", "title", "created_at", "updated_at", "created_by", "updated_by", "needs_attention")


class MetadataField(fields.Field):
    """A marshmallow field that writes a value as its metadata field type puts it in JSON.

    Reading is not marshmallow's: the record service parses each raw value once, in its pipeline.
    """

    def __init__(self, field: FieldDef, **kwargs: Any) -> None:
        super().__init__(allow_none=True, **kwargs)
        self.field = field

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is None:
            return None
        value_type = self.field.value_type
        return [value_type.to_json(v) for v in value] if self.field.multiple else value_type.to_json(value)


@lru_cache(maxsize=512)
def record_schema(entity: EntityDef, visible: frozenset[str]) -> Schema:
    """The schema of `entity` restricted to `visible` fields (hidden ones are unknown to it)."""
    declared: dict[str, fields.Field] = {
        "id": fields.Integer(dump_only=True),
        "entity": fields.String(dump_only=True),
        "version": fields.Integer(dump_only=True),
        "title": fields.String(dump_only=True),
        "owner": fields.Integer(allow_none=True),
        "created_at": fields.DateTime(dump_only=True),
        "updated_at": fields.DateTime(dump_only=True),
        "created_by": fields.Integer(dump_only=True),
        "updated_by": fields.Integer(dump_only=True),
    }
    for name, field in entity.fields.items():
        if name in visible:
            declared[name] = MetadataField(field)
    schema_class = Schema.from_dict(declared, name=f"{entity.name.title()}Record")
    return schema_class(unknown=RAISE)


def dump_record(schema: Schema, record: Record) -> dict[str, Any]:
    """A record as a flat JSON object: system keys plus one key per visible field."""
    flat = {"id": record.id, "entity": record.entity, "version": record.version, "title": record.title,
            "owner": record.owner, "created_at": record.created_at, "updated_at": record.updated_at,
            "created_by": record.created_by, "updated_by": record.updated_by, **record.values}
    dumped = schema.dump(flat)
    if record.attention:  # problems someone who could not see them left behind, for those who can
        dumped["needs_attention"] = [{"field": a.field, "code": message_code(a.message),
                                      "message": localized(a.message), "params": json_params(a.message)}
                                     for a in record.attention]
    return dumped


@dataclass(frozen=True)
class SentRecord:
    """A JSON body split for the record service: raw field values, the owner asked for, errors so far."""

    values: dict[str, Any]
    owner: int | None
    errors: dict[str, list[str]]


def read_record(body: Any) -> SentRecord:
    """Split a request body; field values stay raw: the record service parses each of them once.

    A key no viewable field has is reported by the service as "Unknown field.", like a hidden one.
    """
    if not isinstance(body, dict):
        raise RecordValidationError({"_record": [Message("body.not_object", "The body must be a JSON object of field "
                                                         "values.")]})
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    owner = None
    for key, value in body.items():
        if key in SYSTEM_KEYS or key == "version":
            errors.setdefault(key, []).append(Message("field.system", "Is set by the system and cannot be changed."))
        elif key == "owner":
            try:
                owner = parse_id(value, "a user") if value is not None else None
            except FieldValueError as exc:
                errors["owner"] = [message_of(exc)]
        else:
            values[key] = value
    return SentRecord(values, owner, errors)
