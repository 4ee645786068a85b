"""The `kartoteka` command as an admin uses it."""

from __future__ import annotations

import pytest

from kartoteka import system_clock
from kartoteka.metadata.loader import load_metadata
from kartoteka.records.model import SYSTEM
from kartoteka.records.service import RecordService
from kartoteka.storage.database import create_engine
from tests.conftest import CRM_CONFIG, write_config


@pytest.fixture
def config_dir():
    return CRM_CONFIG


def test_check_config_ok(runner):
    result = runner.invoke("check-config", str(CRM_CONFIG))
    assert result.exit_code == 0
    assert "OK: 2 entities (company, deal)" in result.output


def test_check_config_prints_every_problem_and_exits_1(runner, tmp_path):
    write_config(tmp_path, {"deal": {
        "entity": "deal", "label": "Deal",
        "fields": {"name": {"type": "txt"}, "amount": {"type": "money", "lable": "Amount"},
                   "total": {"type": "formula", "expr": "amount * qty"}}}})
    result = runner.invoke("check-config", str(tmp_path))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert any("entities/deal.yaml:" in line and "fields.name.type: unknown field type 'txt'; did you mean 'text'?"
               in line for line in lines), lines
    assert any("fields.amount.lable: unknown key 'lable'; did you mean 'label'?" in line for line in lines)
    assert "problems found" in result.stderr


def test_init_is_idempotent(runner):
    first = runner.invoke("init")
    assert first.exit_code == 0, first.output
    second = runner.invoke("init")
    assert second.exit_code == 0 and "created index" not in second.stderr


def test_init_refuses_broken_metadata(runner, tmp_path):
    write_config(tmp_path, {"deal": {"entity": "deal", "label": "Deal", "fields": {"id": {"type": "text"}}}})
    result = runner.invoke("init", env={"KARTOTEKA_CONFIG_DIR": str(tmp_path)})
    assert result.exit_code == 1
    assert "field name 'id' is a system field" in result.stderr


def test_user_and_token_then_the_api_accepts_the_token(runner, app):
    created = runner.invoke("user", "create", "olga", "--role", "sales", "--password", "long enough pw")
    assert created.exit_code == 0, created.output
    assert "Created user 'olga'" in created.output
    token = runner.invoke("token", "create", "olga")
    assert token.exit_code == 0
    value = token.stdout.strip()
    assert value.startswith("kt_") and "\n" not in value
    response = app.test_client().get("/api/v1/entities", headers={"Authorization": f"Bearer {value}"})
    assert response.status_code == 200


@pytest.mark.parametrize("args,message", [
    (["user", "create", "bad name", "--role", "sales", "--password", "long enough"], "not a valid user name"),
    (["user", "create", "ivan", "--role", "wizard", "--password", "long enough"], "Unknown role 'wizard'."),
    (["user", "create", "ivan", "--role", "salse"], "Unknown role 'salse'; did you mean 'sales'?"),
    (["user", "create", "ivan", "--role", "sales", "--password", "short"], "at least 8 characters"),
    (["token", "create", "nobody"], "no active user nobody"),
])
def test_cli_errors_are_clear(runner, args, message):
    result = runner.invoke(*args)
    assert result.exit_code == 1
    assert message in result.stderr


def test_duplicate_user_is_refused(runner):
    assert runner.invoke("user", "create", "ivan", "--role", "sales", "--password", "long enough").exit_code == 0
    again = runner.invoke("user", "create", "ivan", "--role", "sales", "--password", "long enough")
    assert again.exit_code == 1 and "already a user named 'ivan'" in again.stderr


def test_init_explains_an_index_the_data_does_not_fit(runner, tmp_path):
    assert runner.invoke("init").exit_code == 0
    write_config(tmp_path, {"company": {"entity": "company", "label": "Company",
                                        "fields": {"name": {"type": "text"}}}})
    engine = create_engine(runner.env["KARTOTEKA_DATABASE_URL"])
    service = RecordService(load_metadata(tmp_path), engine, system_clock())
    for _ in range(2):
        service.create("company", {"name": "Same"}, SYSTEM)
    engine.dispose()
    write_config(tmp_path, {"company": {"entity": "company", "label": "Company",
                                        "fields": {"name": {"type": "text", "unique": True}}}})
    result = runner.invoke("init", env={"KARTOTEKA_CONFIG_DIR": str(tmp_path)})
    assert result.exit_code == 1
    assert "company.name: cannot build index kux_company__name__t: some live records share a value" in result.stderr
    assert "Traceback" not in result.output
