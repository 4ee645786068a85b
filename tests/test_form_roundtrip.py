"""Opening a card's edit form and saving it unchanged changes nothing, for every role, department and card.

The form is the channel people use every day: whatever it does not render (a department's layout
leaves fields out), cannot show exactly (seconds of a time, a tag holding a comma) or may only show
must come back as it was, never emptied, cut or refused.
"""

from __future__ import annotations

import io
import mimetypes
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from werkzeug.datastructures import MultiDict

from kartoteka.config import UploadLimits
from kartoteka.errors import RecordValidationError
from kartoteka.files import store_file
from kartoteka.metadata.fieldtypes import ParseContext
from kartoteka.metadata.loader import load_metadata
from kartoteka.metadata.model import FieldDef
from kartoteka.records.model import SYSTEM
from kartoteka.storage.tables import records
from tests.conftest import write_config
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


def _files(service, field: FieldDef, folder: Path) -> list[str] | str:
    """Small files uploaded for a file field (two for a multiple one), of a type it takes: their ids."""
    wanted = (field.accept or [".pdf"])[0]
    kind = wanted if "/" in wanted else mimetypes.guess_type(f"x{wanted}")[0] or "application/octet-stream"
    extension = wanted if "/" not in wanted else mimetypes.guess_extension(wanted) or ".bin"
    ids = [store_file(service.engine, folder, io.BytesIO(f"{field.name} {n}".encode()), f"{field.name}-{n}{extension}",
                      kind, None, service.clock.now(), UploadLimits(0, 0, 0))["id"]
           for n in range(2 if field.multiple else 1)]
    return ids if field.multiple else ids[0]


def _full_record(service, entity_name: str, owner: int, folder: Path, sample: dict[str, Any] | None = None) -> int:
    """A valid record of the card with every field it can hold filled (values the card refuses are left out).

    File fields hold files uploaded into `folder` (the app's) first, as a form's uploads would be.
    """
    entity = service.metadata.entities[entity_name]
    sample = sample if sample is not None else MATRIX["samples"][entity_name]
    values = dict(sample["values"])
    if sample.get("needs_company"):
        values["company"] = service.create("company", MATRIX["samples"]["company"]["values"], SYSTEM).id
    for name, field in entity.fields.items():
        if field.type.name == "file" and name not in values:
            values[name] = _files(service, field, folder)
            continue
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


def _version(service, record_id: int) -> int:
    with service.engine.connect() as conn:
        return conn.execute(sa.select(records.c.version).where(records.c.id == record_id)).scalar_one()


def _save_unchanged(client, service, user, entity_name: str, record_id: int) -> None:
    """Open the card's edit form as `user`, save it as it is, and check nothing of the record changed."""
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


@pytest.mark.parametrize(("role", "entity_name"), _cases())
def test_saving_an_unchanged_form_changes_nothing(role, entity_name, service, client, make_user, app):
    user, _ = make_user("someone", [role], MATRIX["departments"][role])
    record_id = _full_record(service, entity_name, user.id, app.extensions["kartoteka"].settings.instance_dir / "files")
    _save_unchanged(client, service, user, entity_name, record_id)


# No shipped card has a file field: this one has every kind, each role seeing and changing different ones.
FILE_CARD = {
    "dossier": {
        "entity": "dossier", "label": "Dossier", "title": "{name}",
        "fields": {
            "name": {"type": "text", "required": True},
            "scan": {"type": "file", "accept": [".pdf", "application/pdf"]},
            "photo": {"type": "file", "accept": ["image/png"], "max_size": 1000},
            "attachments": {"type": "file", "multiple": True},
            "stamp": {"type": "file", "access": {"edit": ["admin", "lawyer"]}},  # clerks only see it
            "secret_scan": {"type": "file", "access": {"view": ["admin", "lawyer"]}},  # clerks do not see it
            "locked_scan": {"type": "file", "read_only_if": "name == 'Sealed'"},
        },
        "layout": {
            "groups": [{"fields": ["name", "scan", "photo", "attachments", "stamp", "secret_scan", "locked_scan"]}],
            # The front office's form leaves the attachments and the photo out: saving it must keep them.
            "variants": {"front": {"groups": [{"fields": ["name", "scan", "stamp", "secret_scan", "locked_scan"]}]}},
        },
    },
}
FILE_ROLES = {
    "roles": {"admin": {"label": "Admin"}, "clerk": {"label": "Clerk"}, "lawyer": {"label": "Lawyer"}},
    "departments": {"front": {"label": "Front office"}},
    "permissions": {"admin": {"*": "all"}, "clerk": {"dossier": "own"}, "lawyer": {"dossier": "all"}},
}


@pytest.fixture
def config_dir(request, tmp_path):
    """The shipped config, or the file card's for a test parametrized with config_dir="file card"."""
    if getattr(request, "param", None) == "file card":
        return write_config(tmp_path / "file-card", FILE_CARD, FILE_ROLES)
    return ROOT / "config"


@pytest.mark.parametrize("config_dir", ["file card"], indirect=True)
@pytest.mark.parametrize(("role", "department", "name"), [
    ("admin", None, "Open"), ("lawyer", None, "Open"), ("clerk", None, "Open"), ("clerk", "front", "Open"),
    ("lawyer", "front", "Sealed"), ("clerk", None, "Sealed"),
])
def test_saving_an_unchanged_form_keeps_every_file(role, department, name, service, client, make_user, app):
    """Files in fields the user may change, only see, not see, or not find on their form all stay as they were."""
    user, _ = make_user("someone", [role], department)
    folder = app.extensions["kartoteka"].settings.instance_dir / "files"
    record_id = _full_record(service, "dossier", user.id, folder, {"values": {"name": name}})
    data = _data(service, record_id)
    assert all(data.get(f) for f in FILE_CARD["dossier"]["fields"]), data  # every file field holds files
    version = _version(service, record_id)
    _save_unchanged(client, service, user, "dossier", record_id)
    assert _version(service, record_id) == version  # nothing changed, so no new version either


def test_a_deactivated_owner_and_assignee_survive_an_unchanged_save(client, service, make_user, fixed_clock):
    """The owner and user selects list active users; the card's own people must stay choosable all the same."""
    from kartoteka.users import set_active

    manager, _ = make_user("boss", ["sales_manager"], "sales")
    leaver, _ = make_user("leaver", ["sales"], "sales")
    company = service.create("company", MATRIX["samples"]["company"]["values"], SYSTEM)
    deal = service.create("deal", {"name": "Kept", "company": company.id, "responsible": leaver.id}, SYSTEM,
                          owner=leaver.id)
    set_active(client.application.extensions["kartoteka"].engine, "leaver", False, fixed_clock.now())
    sign_in(client, manager)
    page = client.get(f"/cards/deal/{deal.id}/edit").get_data(as_text=True)
    assert "(deactivated)" in page
    response = client.post(f"/cards/deal/{deal.id}/edit",
                           data=MultiDict([*_form_fields(page), ("csrf_token", CSRF)]))
    assert response.status_code == 302
    saved = service.get("deal", deal.id, SYSTEM)
    assert (saved.owner, saved["responsible"], saved.version) == (leaver.id, leaver.id, deal.version)
