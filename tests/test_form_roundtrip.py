"""Opening a card's edit form and saving it unchanged changes nothing, for every role, department and card.

The form is the channel people use every day: whatever it does not render (a department's layout
leaves fields out), cannot show exactly (seconds of a time, a tag holding a comma) or may only show
must come back as it was, never emptied, cut or refused.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from werkzeug.datastructures import MultiDict

from kartoteka.errors import RecordValidationError
from kartoteka.metadata.fieldtypes import ParseContext
from kartoteka.metadata.loader import load_metadata
from kartoteka.metadata.model import FieldDef
from kartoteka.records.model import SYSTEM
from kartoteka.storage.tables import records
from tests.test_web import CSRF, _form_fields, sign_in

ROOT = Path(__file__).resolve().parent.parent
MATRIX = yaml.safe_load((Path(__file__).parent / "fixtures" / "permission_matrix.yaml").read_text())
SHIPPED = load_metadata(ROOT / "config", ParseContext())


def _cases() -> list[tuple[str, str]]:
    return [(role, entity) for role, scopes in MATRIX["expected"].items()
            for entity, line in scopes.items() if line.split()[2] != "none"]


def _filled(field: FieldDef) -> Any:
    """A typed value for the field that a form cannot carry carelessly (seconds, commas), or None to skip it."""
    kind = field.value_type.name
    one: Any
    if kind in ("integer", "decimal", "money", "percent"):
        low = Decimal(str(field.min)) if field.min is not None else Decimal(0)
        number = low + 1 if field.max is None or low + 1 <= Decimal(str(field.max)) else low
        one = int(number) if kind == "integer" else str(number + Decimal("0.25"))
    elif kind == "date":
        one = "2026-03-04"
    elif kind == "datetime":
        one = "2026-03-04T09:15:37"
    elif kind == "boolean":
        one = True
    elif kind == "select" and field.options:
        one = field.options[-1].value
    elif kind == "multiselect" and field.options:
        return [o.value for o in field.options][:2]
    elif kind == "tags":
        return ["vip", "gold", "Пермь"]
    elif kind in ("text", "textarea"):
        one = "Ромашка, ООО"[: field.max_length or 20]
    elif kind == "email":
        one = "anna@example.org"
    elif kind == "phone":
        one = "+79123456789"
    elif kind == "url":
        one = "https://example.org/a?b=1"
    else:
        return None
    return [one] if field.multiple else one


def _full_record(service, entity_name: str, owner: int) -> int:
    """A valid record of the card with every field it can hold filled (values the card refuses are left out)."""
    entity = service.metadata.entities[entity_name]
    sample = MATRIX["samples"][entity_name]
    values = dict(sample["values"])
    if sample.get("needs_company"):
        values["company"] = service.create("company", MATRIX["samples"]["company"]["values"], SYSTEM).id
    for name, field in entity.fields.items():
        value = None if field.is_formula or name in values else _filled(field)
        if value is not None:
            values[name] = value
    for _ in range(10):
        try:
            return service.create(entity_name, values, SYSTEM, owner=owner).id
        except RecordValidationError as refused:
            for name in refused.errors:
                values.pop(name, None)
    raise AssertionError(f"no valid {entity_name} from {values}")


def _data(service, record_id: int) -> dict[str, Any]:
    with service.engine.connect() as conn:
        return conn.execute(sa.select(records.c.data).where(records.c.id == record_id)).scalar_one()


@pytest.mark.parametrize(("role", "entity_name"), _cases())
def test_saving_an_unchanged_form_changes_nothing(role, entity_name, service, client, make_user):
    user, _ = make_user("someone", [role], MATRIX["departments"][role])
    record_id = _full_record(service, entity_name, user.id)
    before = _data(service, record_id)
    sign_in(client, user)
    page = client.get(f"/cards/{entity_name}/{record_id}/edit")
    assert page.status_code == 200
    response = client.post(f"/cards/{entity_name}/{record_id}/edit",
                           data=MultiDict([*_form_fields(page.get_data(as_text=True)), ("csrf_token", CSRF)]))
    assert response.status_code == 302, re.findall(r"error-summary.*?</div>", response.get_data(as_text=True), re.S)
    after = _data(service, record_id)
    changed = {k: (before.get(k), after.get(k)) for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed == {}
