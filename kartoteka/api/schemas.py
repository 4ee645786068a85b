"""marshmallow schemas generated from the metadata: (de)serialisation of records for the API."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields

from kartoteka.metadata.fieldtypes import FieldValueError, ParseContext, parse_id
from kartoteka.metadata.model import EntityDef, FieldDef
from kartoteka.records.model import Record
from kartoteka.records.pipeline import parse_value

# System keys a client may send back unchanged but never set (besides `version` and `owner`).
SYSTEM_KEYS = ("id", "entity", "title", "created_at", "updated_at", "created_by", "updated_by", "needs_attention")


class MetadataField(fields.Field):
    """A marshmallow field that delegates to the metadata field type, so API and service parse alike."""

    def __init__(self, field: FieldDef, ctx: ParseContext, **kwargs: Any) -> None:
        super().__init__(allow_none=True, **kwargs)
        self.field = field
        self.ctx = ctx

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        try:
            return parse_value(self.field, value, self.ctx, as_stored=self.field.is_formula)
        except FieldValueError as exc:
            raise ValidationError(str(exc)) from None

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is None:
            return None
        value_type = self.field.value_type
        return [value_type.to_json(v) for v in value] if self.field.multiple else value_type.to_json(value)


class OwnerField(fields.Field):
    """The owner's user id, read like a user field: 6, 6.0 or "6" (1..2^53-1); 6.5, true or 10^30 are refused."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_none=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        try:
            return parse_id(value, "a user")
        except FieldValueError as exc:
            raise ValidationError(str(exc)) from None

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return value


@lru_cache(maxsize=512)
def record_schema(entity: EntityDef, visible: frozenset[str], ctx: ParseContext) -> Schema:
    """The schema of `entity` restricted to `visible` fields (hidden ones are unknown to it)."""
    declared: dict[str, fields.Field] = {
        "id": fields.Integer(dump_only=True),
        "entity": fields.String(dump_only=True),
        "version": fields.Integer(dump_only=True),
        "title": fields.String(dump_only=True),
        "owner": OwnerField(),
        "created_at": fields.DateTime(dump_only=True),
        "updated_at": fields.DateTime(dump_only=True),
        "created_by": fields.Integer(dump_only=True),
        "updated_by": fields.Integer(dump_only=True),
    }
    for name, field in entity.fields.items():
        if name in visible:
            declared[name] = MetadataField(field, ctx)
    schema_class = Schema.from_dict(declared, name=f"{entity.name.title()}Record")
    return schema_class(unknown=RAISE)


def dump_record(schema: Schema, record: Record) -> dict[str, Any]:
    """A record as a flat JSON object: system keys plus one key per visible field."""
    flat = {"id": record.id, "entity": record.entity, "version": record.version, "title": record.title,
            "owner": record.owner, "created_at": record.created_at, "updated_at": record.updated_at,
            "created_by": record.created_by, "updated_by": record.updated_by, **record.values}
    dumped = schema.dump(flat)
    if record.attention:  # problems someone who could not see them left behind, for those who can
        dumped["needs_attention"] = [{"field": a.field, "message": a.message} for a in record.attention]
    return dumped


def load_record(schema: Schema, body: Any) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """(values, errors): typed values by field, and marshmallow's messages flattened per key."""
    if not isinstance(body, dict):
        return {}, {"_record": ["The body must be a JSON object of field values."]}
    errors: dict[str, list[str]] = {}
    payload = {}
    for key, value in body.items():
        if key in SYSTEM_KEYS:
            errors.setdefault(key, []).append("Is set by the system and cannot be changed.")
        else:
            payload[key] = value
    try:
        values = schema.load(payload)
    except ValidationError as exc:
        values = exc.valid_data if isinstance(exc.valid_data, dict) else {}
        for key, messages in exc.normalized_messages().items():
            errors.setdefault(key, []).extend(_flatten(messages))
    return values, errors


def _flatten(messages: Any) -> list[str]:
    if isinstance(messages, str):
        return [messages]
    if isinstance(messages, dict):
        return [m for value in messages.values() for m in _flatten(value)]
    return [m for value in messages for m in _flatten(value)]
