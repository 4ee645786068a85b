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


def test_init_says_how_many_indexes_it_built_and_lists_them_with_v(runner, tmp_path):
    card = {"entity": "cli_probe", "label": "Probe", "fields": {"code": {"type": "text", "indexed": True}}}
    write_config(tmp_path, {"cli_probe": card})
    env = {"KARTOTEKA_CONFIG_DIR": str(tmp_path)}
    quiet = runner.invoke("init", env=env)
    assert quiet.exit_code == 0, quiet.output
    assert "created index" not in quiet.stderr and "Indexes: 1 created" in quiet.stderr
    card["fields"]["city"] = {"type": "text", "indexed": True}
    write_config(tmp_path, {"cli_probe": card})
    loud = runner.invoke("-v", "init", env=env)
    assert loud.stderr.splitlines() == ["created index kkx_cli_probe__city__kt2"]


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


# --- kartoteka serve: gunicorn, one app per worker, --dev for werkzeug -------------------------------------------


@pytest.fixture
def gunicorn_runs(monkeypatch):
    """The gunicorn servers `kartoteka serve` would run; none really starts."""
    from kartoteka.server import KartotekaServer

    servers = []
    monkeypatch.setattr(KartotekaServer, "run", lambda self: servers.append(self))
    return servers


def test_serve_runs_gunicorn_with_the_given_options(runner, gunicorn_runs):
    from kartoteka.server import KartotekaWorker

    result = runner.invoke("serve", "--host", "10.1.2.3", "--port", "8123", "--workers", "3", "--threads", "2",
                           "--timeout", "60")
    assert result.exit_code == 0, result.output
    assert "http://10.1.2.3:8123/" in result.stdout and "3 workers × 2 threads" in result.stdout
    [server] = gunicorn_runs
    cfg = server.cfg
    assert cfg.bind == ["10.1.2.3:8123"]
    assert (cfg.workers, cfg.threads, cfg.worker_class) == (3, 2, KartotekaWorker)
    assert (cfg.timeout, cfg.graceful_timeout) == (60, 60)
    assert cfg.preload_app is False  # each worker creates its own app, engine and pool after the fork
    assert (cfg.accesslog, cfg.errorlog) == ("-", "-")
    assert cfg.max_requests > 0 and cfg.keepalive > 0
    assert cfg.forwarded_allow_ips == []  # X-Forwarded-* is the app's call (KARTOTEKA_TRUSTED_PROXIES)
    assert cfg.control_socket_disable is True
    assert cfg.http_parser == "python"


@pytest.mark.parametrize("cpus,workers", [(1, 3), (2, 5), (3, 7), (4, 8), (64, 8)])
def test_default_workers_are_twice_the_cpus_plus_one_at_most_eight(cpus, workers):
    from kartoteka.server import default_workers

    assert default_workers(cpus) == workers


def test_serve_defaults(runner, gunicorn_runs, monkeypatch):
    monkeypatch.setattr("kartoteka.server.cpu_count", lambda: 2)
    result = runner.invoke("serve")
    assert result.exit_code == 0, result.output
    [server] = gunicorn_runs
    assert server.cfg.bind == ["127.0.0.1:5000"]
    assert (server.cfg.workers, server.cfg.threads, server.cfg.timeout) == (5, 4, 30)
    assert "5 workers × 4 threads" in result.stdout


def test_an_ipv6_host_is_bracketed():
    from kartoteka.server import bind_address

    assert bind_address("::1", 8000) == "[::1]:8000"
    assert bind_address("127.0.0.1", 8000) == "127.0.0.1:8000"


def test_each_worker_creates_its_own_app_from_the_settings_serve_resolved(runner, gunicorn_runs, tmp_path):
    assert runner.invoke("serve").exit_code == 0
    [server] = gunicorn_runs
    assert server.settings.instance_dir == (tmp_path / "instance").resolve()
    first, second = server.load(), server.load()  # what two workers do after the fork
    try:
        assert first is not second
        assert first.extensions["kartoteka"].engine is not second.extensions["kartoteka"].engine
        assert first.config["KARTOTEKA"] is second.config["KARTOTEKA"] is server.settings
        assert first.secret_key == second.secret_key  # one secret for every worker, made once
    finally:
        for app in (first, second):
            app.extensions["kartoteka"].engine.dispose()


def test_serve_dev_runs_the_werkzeug_server_instead(runner, gunicorn_runs, monkeypatch):
    from flask import Flask

    calls = []
    monkeypatch.setattr(Flask, "run", lambda self, **kwargs: calls.append(kwargs))
    result = runner.invoke("serve", "--dev", "--port", "8124")
    assert result.exit_code == 0, result.output
    assert gunicorn_runs == []
    [kwargs] = calls
    assert kwargs["port"] == 8124 and kwargs["debug"] is False and kwargs["threaded"] is True
    assert "development server" in result.stdout


def test_serve_dev_refuses_gunicorn_options(runner, gunicorn_runs):
    result = runner.invoke("serve", "--dev", "--workers", "2")
    assert result.exit_code == 2
    assert "--workers and --threads are gunicorn's" in result.output
    assert gunicorn_runs == []


def test_raw_utf8_in_a_request_target_is_percent_encoded_and_nothing_else_changes():
    from gunicorn.config import Config
    from gunicorn.http.errors import InvalidRequestLine
    from gunicorn.http.unreader import IterUnreader

    from kartoteka.server import Utf8TargetRequest, percent_encode_high_bytes

    assert percent_encode_high_bytes("/cards/лид/?q=Иван%20Ё".encode()) == \
        b"/cards/%D0%BB%D0%B8%D0%B4/?q=%D0%98%D0%B2%D0%B0%D0%BD%20%D0%81"
    cfg = Config()
    cfg.set("http_parser", "python")

    def parse(target: bytes) -> Utf8TargetRequest:
        raw = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        return Utf8TargetRequest(cfg, IterUnreader([raw]), ("127.0.0.1", 1))

    request = parse("/cards/lead/?q=Иван".encode())
    assert (request.path, request.query) == ("/cards/lead/", "q=%D0%98%D0%B2%D0%B0%D0%BD")
    for bad in (b"/cards/\x01", b"/cards/\x7f", b"/a\x00b"):
        with pytest.raises(InvalidRequestLine):
            parse(bad)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _raw_get(port: int, target: bytes, headers: bytes = b"") -> tuple[int, dict[str, str]]:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + headers + b"\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in head[1:])
    return int(head[0].split()[1]), {name.lower(): value for name, value in fields.items()}


def test_gunicorn_serves_raw_cyrillic_urls_from_forked_workers_and_stops_gracefully(runner, make_user, tmp_path):
    """A real `kartoteka serve` (two workers): raw UTF-8 URLs work, each worker reaches the database, SIGTERM is 0."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from urllib.parse import parse_qs, urlsplit

    _user, headers = make_user("olga", ["admin"])
    token = headers["Authorization"].encode()
    port = _free_port()
    log = tmp_path / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen(  # noqa: S603 (this interpreter running the kartoteka command)
            [sys.executable, "-m", "kartoteka.cli", "serve", "--port", str(port), "--workers", "2",
             "--threads", "2"], env={**os.environ, **runner.env}, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()
            try:
                if _raw_get(port, b"/login")[0] == 200:
                    break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)

        status, fields = _raw_get(port, "/cards/deal/?q=Иван".encode())
        assert status == 302, log.read_text()
        back_to = parse_qs(urlsplit(fields["location"]).query)["next"][0]  # sign in, then back to the search
        assert urlsplit(back_to).path == "/cards/deal/" and parse_qs(urlsplit(back_to).query) == {"q": ["Иван"]}
        assert _raw_get(port, b"/cards/deal/?q=%D0%98%D0%B2%D0%B0%D0%BD")[1]["location"] == fields["location"]
        assert _raw_get(port, "/login?next=/cards/сделка/".encode())[0] == 200
        assert _raw_get(port, b"/cards/\x01")[0] == 400  # gunicorn's other checks still hold
        # Each request is a new connection, so both workers answer some; each has its own engine and pool.
        for _ in range(6):
            assert _raw_get(port, b"/api/v1/entities", b"Authorization: " + token + b"\r\n")[0] == 200
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(45)
    output = log.read_text()
    assert code == 0, output
    assert "Booting worker" in output and "Shutting down: Master" in output
    assert '"GET /cards/deal/?q=%D0%98%D0%B2%D0%B0%D0%BD HTTP/1.1" 302' in output  # the access log, on stdout


@pytest.mark.parametrize("hours", ["nan", "-1", "0", "abc"])
def test_files_sweep_refuses_a_lifetime_that_is_no_number_of_hours(runner, hours):
    result = runner.invoke("files", "sweep", "--dry-run", "--older-than", hours)
    assert result.exit_code == 2 and "--older-than" in result.output and "Traceback" not in result.output
