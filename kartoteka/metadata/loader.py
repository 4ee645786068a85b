"""Loading the config directory: read, validate against the JSON Schema, build, cross-check."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema
from referencing import Registry, Resource

from kartoteka.errors import MetadataError
from kartoteka.metadata.builder import EntityBuilder
from kartoteka.metadata.expressions import suggest
from kartoteka.metadata.fieldtypes import FIELD_TYPES, ParseContext
from kartoteka.metadata.model import DEFAULT_SUPERUSERS, EntityDef, Label, Metadata, RoleDef
from kartoteka.metadata.permissions import Permissions, build_permissions
from kartoteka.metadata.sources import Problem, Source, SourceError, read_source

ENTITY_SUFFIXES = (".yaml", ".yml", ".json")
# Keys of a role entry; others are ignored, unless they look like a misspelling of one of these.
ROLE_KEYS = ("label", "description", "superuser")

ROLES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["roles"],
    "properties": {
        "roles": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": "^[a-z][a-z0-9_]{0,62}$"},
            "additionalProperties": {
                "type": "object",
                "additionalProperties": True,
                "properties": {"label": {"$ref": "entity#/$defs/label"}, "description": {"type": "string"},
                               "superuser": {"type": "boolean"}},
            },
        },
        "departments": {
            "type": "object",
            "propertyNames": {"pattern": "^[a-z][a-z0-9_]{0,62}$"},
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"label": {"$ref": "entity#/$defs/label"}},
            },
        },
        # Checked against the roles and entities by permissions.build_permissions, with suggestions.
        "permissions": {"type": "object"},
    },
}


def entity_schema() -> dict[str, Any]:
    """The shipped JSON Schema of an entity file, with the registered field types and their options filled in.

    A field's schema lists the common options; each type adds its own (FieldType.options_schema) through an
    if/then on its `type`. Every type's keys are named at the field's level too, so that an unknown key is
    reported with a suggestion; one that exists but does not apply to the type is the builder's to report.
    """
    text = resources.files("kartoteka.metadata").joinpath("entity.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    field = schema["$defs"]["field"]
    field["properties"]["type"]["enum"] = FIELD_TYPES.names()
    clauses = []
    for field_type in FIELD_TYPES.all():
        own = field_type.options_schema()["properties"]
        for key in own:
            field["properties"].setdefault(key, True)
        clauses.append({"if": {"properties": {"type": {"const": field_type.name}}, "required": ["type"]},
                        "then": {"properties": own}})
    field["allOf"] = clauses
    return schema


class _Validators:
    """The entity and roles validators, built once per load."""

    def __init__(self) -> None:
        entity = entity_schema()
        self.entity = jsonschema.Draft202012Validator(entity)
        registry = Registry().with_resource("entity", Resource.from_contents(entity))
        self.roles = jsonschema.Draft202012Validator(ROLES_SCHEMA, registry=registry)


def schema_problems(validator: jsonschema.protocols.Validator, source: Source) -> list[Problem]:
    """Every JSON Schema violation of `source`, phrased for a person, with did-you-mean hints."""
    problems: list[Problem] = []
    for error in sorted(validator.iter_errors(source.data), key=lambda e: list(map(str, e.absolute_path))):
        path = tuple(error.absolute_path)
        problems.extend(source.problem(p, m) for p, m in _explain(error, path))
    return problems


def _explain(error: jsonschema.ValidationError, path: tuple[Any, ...]) -> Iterable[tuple[tuple[Any, ...], str]]:
    kind = error.validator
    if kind == "additionalProperties" and isinstance(error.instance, dict) and isinstance(error.schema, Mapping):
        allowed = set(error.schema.get("properties", {}))
        for key in sorted(set(error.instance) - allowed):
            yield (*path, key), f"unknown key '{key}'{suggest(key, allowed)}"
        return
    if kind == "enum" and path and path[-1] == "type" and isinstance(error.instance, str):
        yield path, (f"unknown field type '{error.instance}'{suggest(error.instance, FIELD_TYPES.names())}; "
                     f"known types: {', '.join(FIELD_TYPES.names())}")
        return
    if kind == "enum" and isinstance(error.instance, str) and isinstance(error.validator_value, list):
        choices = [str(v) for v in error.validator_value]
        yield path, f"'{error.instance}' is not one of {', '.join(choices)}{suggest(error.instance, choices)}"
        return
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        yield path, f"missing required key '{missing}'"
        return
    names_a_thing = (bool(path) and path[-1] in ("entity", "to")) or "propertyNames" in str(error.schema_path)
    if kind == "pattern" and names_a_thing:
        yield path, (f"'{error.instance}' is not a valid name: use lower case letters, digits and _, "
                     "starting with a letter")
        return
    if kind == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        yield path, f"must be of type {expected}, not {type(error.instance).__name__}"
        return
    yield path, error.message


def load_metadata(config_dir: str | Path, parse_context: ParseContext | None = None) -> Metadata:
    """Load and check the whole config directory; raise MetadataError listing every problem."""
    metadata, problems = check_config(config_dir, parse_context)
    if problems or metadata is None:
        raise MetadataError(problems)
    return metadata


def check_config(
    config_dir: str | Path, parse_context: ParseContext | None = None
) -> tuple[Metadata | None, list[Problem]]:
    """Load the config directory, returning the metadata (when usable) and every problem found."""
    root = Path(config_dir)
    ctx = parse_context or ParseContext()
    validators = _Validators()
    problems: list[Problem] = []
    entities_dir = root / "entities"
    if not entities_dir.is_dir():
        message = "directory not found: put one YAML or JSON file per entity here"
        return None, [Problem(str(entities_dir), 0, "", message)]

    roles, departments, roles_source = _load_roles(root, validators, problems)
    superusers = _superusers(roles, roles_source)
    sources: list[Source] = []
    digest = hashlib.sha256()
    for path in sorted(entities_dir.iterdir()):
        if path.suffix not in ENTITY_SUFFIXES or path.name.startswith("."):
            continue
        display = _display(path, root)
        try:
            source, found = read_source(path, display)
        except SourceError as exc:
            problems.append(exc.problem)
            continue
        digest.update(os.fsencode(path.name) + b"\0" + path.read_bytes())
        problems.extend(found)
        if not isinstance(source.data, dict):
            problems.append(source.problem((), "an entity file must be a mapping with 'entity', 'label', 'fields'"))
            continue
        schema_found = schema_problems(validators.entity, source)
        problems.extend(schema_found)
        if not schema_found:
            sources.append(source)

    names: dict[str, Source] = {}
    for source in sources:
        name = source.data["entity"]
        stem = Path(source.file).stem
        if name in names:
            problems.append(source.problem(("entity",), f"entity '{name}' is already defined in {names[name].file}"))
        elif stem != name:
            expected = f"{name}{Path(source.file).suffix}"
            problems.append(source.problem(("entity",), f"entity '{name}' must live in a file named {expected}"))
        names.setdefault(name, source)

    entities: dict[str, EntityDef] = {}
    labels = {name: Label.of(source.data.get("label"), name) for name, source in names.items()}
    entity_fields = {name: dict(source.data.get("fields") or {}) for name, source in names.items()}
    for name, source in names.items():
        builder = EntityBuilder(source, names.keys(), list(roles) if roles is not None else None,
                                set(departments) if departments else None, ctx, superusers, labels, entity_fields)
        entity = builder.build()
        problems.extend(builder.problems)
        if entity is not None:
            entities[name] = entity
    if not names and not problems:
        problems.append(Problem(str(entities_dir), 0, "", "no entity files (*.yaml, *.yml, *.json) found"))

    permissions = Permissions()
    if roles_source is not None:
        permissions, found = build_permissions(roles_source, roles_source.data.get("permissions"),
                                               roles or {}, names.keys())
        problems.extend(found)
    metadata = Metadata(MappingProxyType(entities), MappingProxyType(roles or {}),
                        MappingProxyType(departments or {}), digest.hexdigest()[:16], permissions, superusers)
    return (None if problems else metadata), sorted(set(problems), key=lambda p: (p.file, p.line, p.path, p.message))


def _superusers(roles: dict[str, RoleDef] | None, source: Source | None) -> frozenset[str]:
    """The roles marked `superuser: true`; `admin` when roles.yaml marks none either way (or does not exist)."""
    if roles is None or source is None:
        return DEFAULT_SUPERUSERS
    if not any("superuser" in spec for spec in source.data["roles"].values()):
        return DEFAULT_SUPERUSERS
    return frozenset(name for name, role in roles.items() if role.superuser)


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root.parent)) if root.parent != Path() else str(path)
    except ValueError:
        return str(path)


def _load_roles(root: Path, validators: _Validators, problems: list[Problem]
                ) -> tuple[dict[str, RoleDef] | None, dict[str, Label] | None, Source | None]:
    """Roles, departments and the source of roles.yaml; None when the file does not exist (no role checks)."""
    path = next((root / n for n in ("roles.yaml", "roles.yml", "roles.json") if (root / n).exists()), None)
    if path is None:
        return None, None, None
    try:
        source, found = read_source(path, _display(path, root))
    except SourceError as exc:
        problems.append(exc.problem)
        return None, None, None
    problems.extend(found)
    found = schema_problems(validators.roles, source)
    problems.extend(found)
    if found or not isinstance(source.data, dict):
        return None, None, None
    roles = {name: RoleDef(name, Label.of(spec.get("label"), name), spec.get("description", ""),
                           bool(spec.get("superuser")))
             for name, spec in source.data["roles"].items()}
    for name, spec in source.data["roles"].items():
        for key in spec:
            hint = suggest(key, ROLE_KEYS) if key not in ROLE_KEYS else ""
            if hint:  # other keys are ignored, but a misspelt `superuser` would silently take away a power
                problems.append(source.problem(("roles", name, key), f"unknown key '{key}'{hint}"))
    departments = {name: Label.of(spec.get("label"), name)
                   for name, spec in (source.data.get("departments") or {}).items()}
    return roles, departments, source
