"""A user learns nothing about a value they may not view: the leak matrix over every shipped card and role.

For each role and each card it may read whose fields it may not all view, two twin records differ
only in those hidden fields: one holds low values, the other high ones (so every check, formula and
condition over them comes out differently). Everything the role can observe about the twins must be
the same, with the record ids masked: the record through the API, its card page, and, for every
probe of the visible fields that share an expression with a hidden one, the dry run the API makes
when a value does not parse, the live form, the edit form prefilled with the probe, and a real save
(whether it succeeds, and what it says).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from kartoteka.metadata.fieldtypes import ParseContext
from kartoteka.metadata.loader import load_metadata
from kartoteka.metadata.model import EntityDef, FieldDef
from kartoteka.records.access import editable_fields, viewable_fields
from kartoteka.records.model import SYSTEM, Principal
from kartoteka.storage.tables import records
from tests.test_web import CSRF, sign_in

ROOT = Path(__file__).resolve().parent.parent
MATRIX = yaml.safe_load((Path(__file__).parent / "fixtures" / "permission_matrix.yaml").read_text())
SHIPPED = load_metadata(ROOT / "config", ParseContext())


def _reads(entity: EntityDef) -> list[frozenset[str]]:
    """The field names read by each expression of the card: formulas, conditions, checks."""
    found = [v.expr.names for v in entity.validations]
    for f in entity.fields.values():
        found += [e.names for e in (f.expr, f.visible_if, f.required_if, f.read_only_if) if e is not None]
    for variant in (entity.layout_for(d) for d in (None, *SHIPPED.departments)):
        for tab in variant.tabs:
            found += [s.visible_if.names for s in (tab, *tab.groups) if s.visible_if is not None]
    return [names & entity.fields.keys() for names in found]


def _cases() -> list[tuple[str, str]]:
    cases = []
    for role, scopes in MATRIX["expected"].items():
        if role == "admin":
            continue
        for entity_name, line in scopes.items():
            if line.split()[1] == "none":
                continue
            entity = SHIPPED.entities[entity_name]
            user = Principal(1, "probe", frozenset({role}), MATRIX["departments"][role])
            if set(entity.fields) - viewable_fields(entity, user):
                cases.append((role, entity_name))
    return cases


CASES = _cases()


def test_the_matrix_covers_the_protected_fields_of_the_shipped_cards():
    assert ("sales", "deal") in CASES and ("marketing", "deal") in CASES and ("support", "deal") in CASES


def _twin_values(field: FieldDef) -> tuple[Any, Any] | None:
    """A low and a high stored value for a hidden field, within its constraints; None to leave it empty."""
    kind = field.value_type.name
    low, high = field.min, field.max
    if kind in ("integer", "decimal", "money", "percent"):
        low = Decimal(0) if low is None else Decimal(str(low))
        high = Decimal(10) ** 9 if high is None else Decimal(str(high))
        return (int(low), int(high)) if kind == "integer" else (low, high)
    if kind == "date":
        return date(2000, 1, 3), date(2099, 12, 30)
    if kind == "datetime":
        return datetime(2000, 1, 3, 9), datetime(2099, 12, 30, 9)
    if kind == "boolean":
        return False, True
    if kind == "select" and field.options:
        return field.options[0].value, field.options[-1].value
    if kind == "multiselect" and field.options:
        return [field.options[0].value], [o.value for o in field.options]
    if kind in ("text", "textarea"):
        return "a", "z" * min(field.max_length or 20, 20)
    return None


def _probes(field: FieldDef) -> list[str]:
    kind = field.value_type.name
    if kind in ("integer", "decimal", "money", "percent"):
        return ["0", "1", "100000000"]
    if kind in ("date", "datetime"):
        return ["2000-01-01", "2099-12-31"]
    if kind == "boolean":
        return ["true", "false"]
    if kind in ("select", "multiselect"):
        return [o.value for o in field.options][:5]
    return ["x"]


def _make_twins(service, entity: EntityDef, owner: int, hidden: set[str]) -> tuple[int, int]:
    sample = MATRIX["samples"][entity.name]
    values = dict(sample["values"])
    if sample.get("needs_company"):
        values["company"] = service.create("company", MATRIX["samples"]["company"]["values"], SYSTEM).id
    ids = []
    for side in (0, 1):
        record = service.create(entity.name, values, SYSTEM, owner=owner)
        typed = dict(service._values(entity, _data(service, record.id)))
        for name in hidden:
            pair = _twin_values(entity.fields[name])
            if pair is not None and not entity.fields[name].is_formula:
                typed[name] = pair[side]
        # Written behind the service's back: a record as someone who may see these fields left it.
        with service.engine.begin() as conn:
            conn.execute(sa.update(records).where(records.c.id == record.id)
                         .values(data=service._storage(entity, typed)))
        ids.append(record.id)
    return ids[0], ids[1]


def _data(service, record_id: int) -> dict[str, Any]:
    with service.engine.connect() as conn:
        return conn.execute(sa.select(records.c.data).where(records.c.id == record_id)).scalar_one()


def _masked(text: str, twins: tuple[int, int]) -> str:
    for record_id in twins:
        text = re.sub(rf"(?<![\w.-]){record_id}(?![\w])", "ID", text)
    # Flask-WTF signs the session's CSRF token anew with the time on every page: the same token, another text.
    return re.sub(re.escape(CSRF.split(".")[0]) + r"\.[\w-]+\.[\w-]+", "CSRF", text)


class Observer:
    """What one signed-in role sees of a record, through the API and the web UI."""

    def __init__(self, client, headers, entity: str) -> None:
        self.client, self.headers, self.entity = client, headers, entity

    def api_record(self, record_id: int) -> tuple[int, str]:
        response = self.client.get(f"/api/v1/records/{self.entity}/{record_id}", headers=self.headers)
        return response.status_code, response.get_data(as_text=True)

    def card(self, record_id: int) -> tuple[int, str]:
        response = self.client.get(f"/cards/{self.entity}/{record_id}")
        return response.status_code, response.get_data(as_text=True)

    def version(self, record_id: int, service) -> int:
        return service.get(self.entity, record_id, SYSTEM).version

    def dry_run(self, record_id: int, field: str, value: str, version: int) -> tuple[int, str]:
        # A key that does not exist makes the API report it together with a dry run of the rest.
        body = {field: value, "version": version, "no_such_field_here": 1}
        response = self.client.patch(f"/api/v1/records/{self.entity}/{record_id}", json=body, headers=self.headers)
        return response.status_code, response.get_data(as_text=True)

    def save(self, record_id: int, field: str, value: str, version: int) -> tuple[int, str]:
        response = self.client.patch(f"/api/v1/records/{self.entity}/{record_id}",
                                     json={field: value, "version": version}, headers=self.headers)
        text = response.get_data(as_text=True)
        return response.status_code, re.sub(r'"(version|updated_at)":[^,}]+', "", text)

    def live(self, record_id: int, field: str, value: str) -> tuple[int, str]:
        response = self.client.post(f"/cards/{self.entity}/{record_id}/live",
                                    data={field: value, "_touched": field, "csrf_token": CSRF})
        return response.status_code, response.get_data(as_text=True)

    def prefilled_edit(self, record_id: int, field: str, value: str) -> tuple[int, str]:
        response = self.client.get(f"/cards/{self.entity}/{record_id}/edit", query_string={field: value})
        return response.status_code, re.sub(r'name="version" value="\d+"', "", response.get_data(as_text=True))


@pytest.mark.parametrize(("role", "entity_name"), CASES)
def test_nothing_about_hidden_fields_reaches_the_role(role, entity_name, service, client, make_user, subtests):
    entity = service.metadata.entities[entity_name]
    user, headers = make_user("probe", [role], MATRIX["departments"][role])
    sign_in(client, user)
    viewable = viewable_fields(entity, user)
    hidden = set(entity.fields) - viewable
    twins = _make_twins(service, entity, user.id, hidden)
    editable = editable_fields(entity, user)
    probed = sorted({n for names in _reads(entity) if names & hidden for n in names & editable})
    if not probed:
        probed = sorted(MATRIX["samples"][entity_name]["touch"])
    seen = Observer(client, headers, entity_name)

    def same(what: str, observe) -> None:
        first, second = (observe(i) for i in twins)
        assert first[0] == second[0], (what, first[0], second[0])
        assert _masked(first[1], twins) == _masked(second[1], twins), what

    same("api record", seen.api_record)
    same("card page", seen.card)
    for field in probed:
        for value in _probes(entity.fields[field]):
            with subtests.test(field=field, value=value):
                same("dry run", lambda i, f=field, v=value: seen.dry_run(i, f, v, seen.version(i, service)))
                same("live form", lambda i, f=field, v=value: seen.live(i, f, v))
                same("edit form", lambda i, f=field, v=value: seen.prefilled_edit(i, f, v))
                same("save", lambda i, f=field, v=value: seen.save(i, f, v, seen.version(i, service)))
    for name in hidden:  # and the hidden values are still there, untouched by the role's saves
        pair = _twin_values(entity.fields[name])
        if pair is not None and not entity.fields[name].is_formula:
            stored = [service._values(entity, _data(service, i))[name] for i in twins]
            assert stored == list(pair), name


def test_a_flag_left_by_a_blind_save_shows_only_to_those_who_see_the_fields(service, client, make_user):
    """sales1 lowers the amount below a third of the cost it cannot see: saved, flagged for finance."""
    rep, rep_headers = make_user("rep", ["sales"], "sales")
    money, money_headers = make_user("money", ["finance"], "finance")
    company = service.create("company", MATRIX["samples"]["company"]["values"], SYSTEM)
    deal = service.create("deal", {"name": "Big one", "company": company.id, "amount": "1000000",
                                   "cost": "900000"}, SYSTEM, owner=rep.id)
    url = f"/api/v1/records/deal/{deal.id}"
    saved = client.patch(url, json={"amount": "100000", "version": 1}, headers=rep_headers)
    assert saved.status_code == 200 and "needs_attention" not in saved.get_json()
    sign_in(client, rep)
    assert "Needs attention" not in client.get(f"/cards/deal/{deal.id}").get_data(as_text=True)
    assert "attention-mark" not in client.get("/cards/deal/").get_data(as_text=True)
    flagged = client.get(url, headers=money_headers).get_json()
    assert flagged["needs_attention"] == [{"field": "cost", "code": "validation.failed",
                                           "message": "The cost is more than three times the amount; check the "
                                                      "numbers.", "params": {"label": "The cost is more than three "
                                                                            "times the amount; check the numbers."}}]
    sign_in(client, money)
    card = client.get(f"/cards/deal/{deal.id}").get_data(as_text=True)
    assert "Needs attention" in card and "The cost is more than three times the amount" in card
    assert "attention-mark" in client.get("/cards/deal/").get_data(as_text=True)
    # The flagged check runs on finance's next save, whatever it changes, until the numbers agree.
    refused = client.patch(url, json={"description": "checked", "version": 2}, headers=money_headers)
    assert refused.status_code == 422 and "cost" in refused.get_json()["errors"]
    fixed = client.patch(url, json={"cost": "250000", "version": 2}, headers=money_headers)
    assert fixed.status_code == 200 and "needs_attention" not in fixed.get_json()
    assert service.get("deal", deal.id, SYSTEM).attention == ()


# --- a unique value already used by a record the user may not read ----------------------------------

REGISTRY = {
    "badge": {"entity": "badge", "label": "Badge", "title": "{holder}",
              "fields": {"holder": {"type": "text", "required": True},
                         "code": {"type": "text", "unique": True}}},
}
REGISTRY_ROLES = {
    "roles": {"admin": {"label": "Admin"}, "clerk": {"label": "Clerk"}, "auditor": {"label": "Auditor"}},
    "permissions": {"admin": {"*": "all"}, "clerk": {"badge": "own"},
                    "auditor": {"badge": {"create": "own", "read": "all", "update": "own", "delete": "none"}}},
}


@pytest.fixture
def registry(tmp_path, engine, database_url, clock, make_user):
    """An app whose clerks read only their own badges, while auditors read every badge."""
    from kartoteka import create_app
    from kartoteka.config import Settings
    from kartoteka.storage.indexes import sync_indexes
    from tests.conftest import write_config

    config = write_config(tmp_path / "registry", REGISTRY, REGISTRY_ROLES)
    settings = Settings(database_url=database_url, config_dir=config, secret_key="test-secret",
                        instance_dir=tmp_path / "instance", testing=True)
    app = create_app(settings, clock)
    sync_indexes(engine, app.extensions["kartoteka"].metadata)
    people = {name: make_user(name, [role]) for name, role in
              (("anna", "clerk"), ("boris", "clerk"), ("vera", "auditor"))}
    yield app.test_client(), app.extensions["kartoteka"].service, people
    app.extensions["kartoteka"].engine.dispose()


def test_a_unique_value_taken_by_a_record_the_user_cannot_read_names_no_record(registry):
    client, service, people = registry
    (_, anna), (boris_user, boris), (_, vera) = people["anna"], people["boris"], people["vera"]
    taken = client.post("/api/v1/records/badge", headers=anna, json={"holder": "Anna Secret-Holder", "code": "B-7"})
    assert taken.status_code == 201
    taken_id = taken.get_json()["id"]
    # Boris cannot read Anna's badge: he learns the value is used, not which record holds it.
    refused = client.post("/api/v1/records/badge", headers=boris, json={"holder": "Boris", "code": "B-7"})
    assert refused.status_code == 422
    assert refused.get_json()["errors"] == {"code": ["Must be unique: this value is already used."]}
    assert f"#{taken_id}" not in refused.get_data(as_text=True) and "Secret" not in refused.get_data(as_text=True)
    own = client.post("/api/v1/records/badge", headers=boris, json={"holder": "Boris", "code": "B-8"}).get_json()
    changed = client.patch(f"/api/v1/records/badge/{own['id']}", headers=boris,
                           json={"version": own["version"], "code": "B-7"})
    assert changed.get_json()["errors"] == {"code": ["Must be unique: this value is already used."]}
    assert service.validate("badge", {"holder": "Boris", "code": "B-7"}, boris_user) == {
        "code": ["Must be unique: this value is already used."]}
    # Vera reads every badge: she is told which one, by its title.
    named = client.post("/api/v1/records/badge", headers=vera, json={"holder": "Vera", "code": "B-7"})
    assert named.get_json()["errors"] == {
        "code": [f"Must be unique: Badge #{taken_id} 'Anna Secret-Holder' already has this value."]}
