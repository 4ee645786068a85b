"""The installable package: settings read when the app is created, not when a module is imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kartoteka.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_settings_resolve_when_asked_for_against_the_directory_of_that_moment(tmp_path, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "b"
    for directory in (first, second):
        directory.mkdir()
    monkeypatch.chdir(first)
    settings = Settings.from_env({"KARTOTEKA_SECRET_KEY": "s"})
    assert (settings.config_dir, settings.instance_dir) == (first / "config", first / "instance")
    assert settings.database_url == f"sqlite:///{first / 'instance' / 'kartoteka.db'}"
    monkeypatch.chdir(second)
    later = Settings.from_env({"KARTOTEKA_SECRET_KEY": "s", "KARTOTEKA_CONFIG_DIR": "cards"})
    assert (later.config_dir, later.instance_dir) == (second / "cards", second / "instance")


def test_importing_the_package_reads_no_settings_and_writes_nothing(tmp_path):
    modules = "kartoteka, kartoteka.cli, kartoteka.web, kartoteka.api, kartoteka.extensions"
    result = subprocess.run([sys.executable, "-c", f"import {modules}"],  # noqa: S603 (this interpreter)
                            cwd=tmp_path, capture_output=True, text=True, check=False,
                            env={"PYTHONPATH": str(ROOT), "KARTOTEKA_CONFIG_DIR": str(tmp_path / "nowhere")})
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []  # no instance/ and no secret_key made at import
