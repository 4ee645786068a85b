"""Field access of the shipped cards as a matrix: role × entity × field × (view, edit), through the API and the UI.

The expectation is read from the declarative `access:` of each field in config/entities, not from the
code under test: a role sees a field when the field names no view roles or names the role.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kartoteka.records.model import SYSTEM
from tests.test_web import CSRF, CSRF_RAW

ROOT = Path(__file__).resolve().parent.parent
MATRIX = yaml.safe_load((Path(__file__).parent / "fixtures" / "permission_matrix.yaml").read_text("utf-8"))
ROLES = [r for r in MATRIX["expected"] if r != "admin"]


def _spec(entity: str) -> dict:
    return yaml.safe_load((ROOT / "config" / "entities" / f"{entity}.yaml").read_text("utf-8"))


def _cases():
    """(role, entity, [(field, sees, edits)]) for every restricted field of every card the role may read."""
    for entity in MATRIX["samples"]:
        fields = _spec(entity)["fields"]
        for role in ROLES:
            if MATRIX["expected"][role][entity].split()[1] == "none":
                continue
            checks = []
            for name, spec in fields.items():
                access = spec.get("access") or {}
                if not access or spec.get("type") == "formula":
                    continue
                view, edit = access.get("view"), access.get("edit")
                sees = view is None or role in view
                checks.append((name, sees, sees and (edit is None or role in edit)))
            if checks:
                yield pytest.param(role, entity, checks, id=f"{role}-{entity}")


CASES = list(_cases())


@pytest.mark.parametrize(("role", "entity", "checks"), CASES)
def test_field_access(role, entity, checks, service, make_user, client, subtests):
    department = MATRIX["departments"][role]
    user, headers = make_user("someone", [role], department)
    sample = MATRIX["samples"][entity]
    values = dict(sample["values"])
    if sample.get("needs_company"):
        values["company"] = service.create("company", MATRIX["samples"]["company"]["values"], SYSTEM).id
    record = service.create(entity, values, SYSTEM, owner=user.id)
    api = client.get(f"/api/v1/records/{entity}/{record.id}", headers=headers).get_json()
    schema = {f["name"] for f in client.get(f"/api/v1/entities/{entity}", headers=headers).get_json()["fields"]}
    with client.session_transaction() as session:
        from kartoteka.users import start_session
        state = client.application.extensions["kartoteka"]
        session.update(_user_id=start_session(state.engine, user.id, state.clock.now()), csrf_token=CSRF_RAW)
    card = client.get(f"/cards/{entity}/{record.id}").get_data(as_text=True)

    for field, sees, edits in checks:
        with subtests.test(field=field):
            assert (field in api) == sees
            assert (field in schema) == sees
            definition = service.metadata.entity(entity).field(field)
            if not sees:
                assert f'id="view-{field}"' not in card and f'name="{field}"' not in card
            elif definition.visible_if is None and _placed_unconditionally(service, entity, department, field):
                assert f'id="view-{field}"' in card
            _check_edit(client, service, headers, role, entity, record.id, field, sees, edits, user.id)


def _check_edit(client, service, headers, role, entity, record_id, field, sees, edits, user_id) -> None:
    """A new value is saved when the field is editable, else refused by the API and by the form."""
    version = service.get(entity, record_id, SYSTEM).version
    new_value = _value_for(service, entity, field, user_id)
    response = client.patch(f"/api/v1/records/{entity}/{record_id}", json={field: new_value, "version": version},
                            headers=headers)
    if scopes_update_none(role, entity):
        assert response.status_code == 403
    elif edits:
        assert response.status_code in (200, 422)
        if response.status_code == 422:  # another rule of the card may object, never access
            problems = response.get_json()["errors"].get(field, [])
            assert "You may not change this field." not in problems and "Unknown field." not in problems
    else:
        assert response.status_code == 422
        assert response.get_json()["errors"][field] == ["You may not change this field." if sees else "Unknown field."]
        form = client.post(f"/cards/{entity}/{record_id}/edit", data={"csrf_token": CSRF, "version": str(version),
                                                                       field: str(new_value)})
        # A field the user sees is refused with a message; one they may not see is ignored like a made-up
        # name (a message would tell it exists). Either way nothing changes.
        assert form.status_code == (422 if sees else 302)
        after = service.get(entity, record_id, SYSTEM)
        assert after.version == version


def scopes_update_none(role: str, entity: str) -> bool:
    return MATRIX["expected"][role][entity].split()[2] == "none"


def _placed_unconditionally(service, entity: str, department: str | None, field: str) -> bool:
    """The field sits in the user's layout in a tab and group without visible_if."""
    for tab in service.metadata.entity(entity).layout_for(department).tabs:
        for group in tab.groups:
            if field in group.fields:
                return tab.visible_if is None and group.visible_if is None
    return False


def _value_for(service, entity: str, field: str, user_id: int):
    """A valid new value of the field's type (different from what a new sample record holds)."""
    definition = service.metadata.entity(entity).field(field)
    kind = definition.type.name
    if definition.options:
        return definition.options[-1].value if kind == "select" else [definition.options[-1].value]
    value = {"text": "Changed", "textarea": "Changed", "integer": 7, "decimal": "7", "money": "700",
             "percent": "7", "boolean": True, "date": "2026-01-05", "email": "x@example.org",
             "phone": "+7 912 000-00-00", "url": "https://example.org", "user": user_id,
             "tags": ["changed"]}.get(kind, "Changed")
    return [value] if definition.multiple else value
