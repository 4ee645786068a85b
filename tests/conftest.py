"""Shared fixtures: metadata, a fixed clock, engines on SQLite and PostgreSQL, the app and its clients.

Every test that asks for `engine` (or `service`, `app`, `client`) runs once per database. PostgreSQL
runs when KARTOTEKA_TEST_DATABASE_URL is set; in CI (CI=true) its absence is an error, not a skip.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from kartoteka import create_app
from kartoteka.config import Settings
from kartoteka.metadata.expressions import Clock
from kartoteka.metadata.fieldtypes import ParseContext
from kartoteka.metadata.loader import load_metadata
from kartoteka.records.service import RecordService
from kartoteka.storage import database as database_module
from kartoteka.storage.database import create_engine, upgrade
from kartoteka.storage.indexes import sync_indexes
from kartoteka.storage.tables import metadata as tables

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "config"
CRM_CONFIG = Path(__file__).resolve().parent / "fixtures" / "crm"
PG_URL = os.environ.get("KARTOTEKA_TEST_DATABASE_URL")


class FixedClock:
    """A clock tests can set and advance."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)


@pytest.fixture
def fixed_clock() -> FixedClock:
    return FixedClock(datetime(2026, 3, 2, 9, 30, tzinfo=UTC))


@pytest.fixture
def clock(fixed_clock: FixedClock) -> Clock:
    return Clock(fixed_clock.now)


@pytest.fixture(scope="session")
def shipped_metadata():
    return load_metadata(CONFIG_DIR, ParseContext())


def write_config(root: Path, entities: dict[str, dict], roles: dict | None = None) -> Path:
    """Write entity documents (and optionally roles) as YAML under root/entities."""
    (root / "entities").mkdir(parents=True, exist_ok=True)
    for name, doc in entities.items():
        (root / "entities" / f"{name}.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    if roles is not None:
        (root / "roles.yaml").write_text(yaml.safe_dump(roles, allow_unicode=True, sort_keys=False))
    return root


def _pg_url(url: str) -> tuple[str, str]:
    """A fresh schema for this test session, selected through the connection's search_path."""
    schema = f"kt_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    admin.dispose()
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}", schema


def _drop_pg_schema(url: str, schema: str) -> None:
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.schema.DropSchema(schema, cascade=True))
    admin.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request, tmp_path_factory):
    """The URL of a migrated database for the whole session, once per backend."""
    if request.param == "postgresql":
        if not PG_URL:
            if os.environ.get("CI"):
                pytest.fail("KARTOTEKA_TEST_DATABASE_URL must be set in CI: PostgreSQL tests may not be skipped")
            pytest.skip("PostgreSQL: set KARTOTEKA_TEST_DATABASE_URL to run")
        url, schema = _pg_url(PG_URL)
        engine = create_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
        _drop_pg_schema(PG_URL, schema)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'kartoteka.db'}"
        engine = create_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url


@pytest.fixture(scope="session")
def database(database_url):
    """A session-wide engine on the migrated database; tables are emptied between tests."""
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def empty_tables(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            names = ", ".join(t.name for t in tables.sorted_tables)
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            # The consent archive refuses early deletes (a trigger): the test's database steps around it.
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS consents_kept_six_years")
            for table in reversed(tables.sorted_tables):
                conn.execute(table.delete())
            conn.exec_driver_sql(_consent_guards()[1])
            conn.execute(sa.text("DELETE FROM sqlite_sequence WHERE 1=1")) if _has_sequence(conn) else None


@functools.cache
def _consent_guards() -> tuple[str, ...]:
    """The SQLite triggers guarding the consent archive, as its migration creates them."""
    path = Path(database_module.__file__).parent / "migrations" / "versions" / "0014_consents.py"
    spec = importlib.util.spec_from_file_location("consent_migration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._SQLITE_GUARDS


def _has_sequence(conn: sa.Connection) -> bool:
    return conn.execute(sa.text("SELECT 1 FROM sqlite_master WHERE name='sqlite_sequence'")).first() is not None


@pytest.fixture
def engine(database):
    empty_tables(database)
    yield database


@functools.cache
def _load(config_dir: str):
    return load_metadata(config_dir, ParseContext())


@pytest.fixture
def config_dir() -> Path:
    """The config directory the app and service use; test modules may override it."""
    return CONFIG_DIR


@pytest.fixture
def metadata(config_dir):
    return _load(str(config_dir))


@pytest.fixture
def service(engine, metadata, clock):
    sync_indexes(engine, metadata)
    return RecordService(metadata, engine, clock, ParseContext())


@pytest.fixture
def app(engine, database_url, metadata, config_dir, clock, tmp_path):
    """The Flask app on the test database with the shipped config and the fixed clock."""
    sync_indexes(engine, metadata)
    settings = Settings(database_url=database_url, config_dir=config_dir, secret_key="test-secret",
                        instance_dir=tmp_path / "instance", testing=True)
    application = create_app(settings, clock)
    yield application
    application.extensions["kartoteka"].engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


class CliRunner:
    """Runs the `kartoteka` command against the test database."""

    def __init__(self, database_url: str, config_dir: Path, instance_dir: Path) -> None:
        self.env = {"KARTOTEKA_DATABASE_URL": database_url, "KARTOTEKA_CONFIG_DIR": str(config_dir),
                    "KARTOTEKA_INSTANCE_DIR": str(instance_dir)}

    def invoke(self, *args: str, **kwargs):
        from click.testing import CliRunner as ClickRunner

        from kartoteka.cli import main

        env = {**self.env, **kwargs.pop("env", {})}
        return ClickRunner().invoke(main, list(args), env=env, catch_exceptions=False, **kwargs)


@pytest.fixture
def runner(engine, database_url, config_dir, tmp_path):
    return CliRunner(database_url, config_dir, tmp_path / "instance")


@pytest.fixture
def make_user(engine, clock):
    """Create a user (and an API token): make_user('anna', ['sales']) -> (Principal, headers)."""
    from kartoteka.users import create_token, create_user

    def make(username: str, roles=("admin",), department: str | None = None, language: str = "en",
             password: str | None = None):
        # No password unless a test logs in with one: scrypt costs ~0.1 s per user on purpose.
        user = create_user(engine, username, roles, clock.now(), password=password,
                           department=department, language=language)
        token = create_token(engine, username, "tests", clock.now())
        return user, {"Authorization": f"Bearer {token}"}

    return make


@pytest.fixture
def admin(make_user):
    """API headers of an administrator."""
    return make_user("admin", ["admin"])[1]
