"""Each field type has one home: its class in kartoteka/metadata/types/ and the macros it names.

The rest of the platform asks the registry instead of switching on type names, so a new type (rating is
the proof) is one module and its macros.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import jsonschema
import pytest

from kartoteka.metadata.fieldtypes import COMMON_OPTIONS, FIELD_TYPES
from kartoteka.metadata.loader import entity_schema

ROOT = Path(__file__).resolve().parent.parent
TYPES_DIR = ROOT / "kartoteka" / "metadata" / "types"
MACROS = (ROOT / "templates" / "macros" / "fields.html").read_text(encoding="utf-8")
# What the issue counted: comparisons of a type's name outside the types package.
SWITCH = re.compile(r"(value_)?type\.name *(==|!=| in | not in)|\"type\.name\"|selectattr\(\"type")


def _sources():
    for folder, suffix in (("kartoteka", ".py"), ("kartoteka", ".html"), ("templates", ".py"), ("templates", ".html")):
        for path in sorted((ROOT / folder).rglob(f"*{suffix}")):
            if TYPES_DIR not in path.parents:
                yield path


def test_nothing_outside_the_types_package_switches_on_a_type_name():
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}" for path in _sources()
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if SWITCH.search(line)]
    assert found == []


@pytest.mark.parametrize("name", FIELD_TYPES.names())
def test_every_type_names_macros_that_exist(name):
    field_type = FIELD_TYPES.get(name)
    for macro in {field_type.widget, field_type.value_macro, field_type.cell_macro, field_type.badge_macro}:
        assert re.search(rf"{{% macro {macro}\(", MACROS), f"{name}: no macro {macro} in templates/macros/fields.html"
    assert field_type.label_for(False) in ("for", "group", "inline", "own")


@pytest.mark.parametrize("name", FIELD_TYPES.names())
def test_every_type_describes_its_options_as_json_schema(name):
    field_type = FIELD_TYPES.get(name)
    schema = field_type.options_schema()
    # Valid JSON Schema once its references ("#/$defs/label") can be resolved, as the loader places it.
    jsonschema.Draft202012Validator.check_schema({**schema, "$defs": entity_schema()["$defs"]})
    assert field_type.allowed_options() == COMMON_OPTIONS | set(schema["properties"])


def test_the_entity_schema_takes_each_types_options_only_for_that_type():
    validator = jsonschema.Draft202012Validator(entity_schema())
    base = {"entity": "probe", "label": "Probe"}
    assert not list(validator.iter_errors({**base, "fields": {"score": {"type": "rating", "max": 10}}}))
    wrong = list(validator.iter_errors({**base, "fields": {"score": {"type": "rating", "max": 12}}}))
    assert [e.message for e in wrong] == ["12 is greater than the maximum of 10"]
    # An integer's max is a bound written like input, which the rating's schema does not govern.
    assert not list(validator.iter_errors({**base, "fields": {"count": {"type": "integer", "max": "12"}}}))


def test_the_metadata_core_imports_no_web_framework():
    for path in (ROOT / "kartoteka" / "metadata").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module}
        # Jinja2's sandbox is the language of rule texts (metadata/templates.py), checked at load: there alone.
        forbidden = {"flask", "werkzeug", "markupsafe"} | ({"jinja2"} if path.name != "templates.py" else set())
        assert not imported & forbidden, path
