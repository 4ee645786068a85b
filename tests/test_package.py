"""The installable package: what the wheel carries, where the app finds it, and settings read at creation.

The end-to-end check (build the wheel, install it into an empty virtualenv, serve, fetch /login and its
stylesheets and scripts) is scripts/check_wheel.py, which `make test` runs before this suite.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from setuptools.command.build_py import build_py

import build_hooks
from kartoteka import PACKAGE_DIR, find_resources
from kartoteka.config import Settings
from kartoteka.web import VENDOR_FILES

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))


def test_the_wheel_carries_every_template_and_the_front_end_files_the_app_serves():
    copies = build_hooks.package_copies(ROOT)
    templates = {f"templates/{p.relative_to(ROOT / 'templates').as_posix()}"
                 for p in (ROOT / "templates").rglob("*.html")}
    assert templates and templates <= set(copies)
    # The vendor route reads kartoteka/vendor/ like node_modules/: the same relative paths.
    for path in VENDOR_FILES.values():
        assert copies[f"vendor/{path.as_posix()}"] == ROOT / "node_modules" / path
    assert "vendor/htmx.org/LICENSE" in copies and "vendor/@picocss/pico/LICENSE.md" in copies
    assert all(source.is_file() for source in copies.values())


def test_the_build_refuses_to_make_a_wheel_without_the_npm_files(tmp_path):
    from setuptools.errors import SetupError

    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "base.html").write_text("<html></html>")
    with pytest.raises(SetupError, match=r"make assets"):
        build_hooks.package_copies(tmp_path)


def test_the_build_leaves_editor_and_os_leftovers_out(tmp_path):
    for name in ("base.html", "cards/list.html", ".base.html.swp", "cards/list.html~", ".DS_Store", "x/.hidden/a"):
        (tmp_path / "templates" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "templates" / name).write_text("x")
    for name in build_hooks.VENDOR_FILES:
        (tmp_path / "node_modules" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "node_modules" / name).write_text("x")
    templates = sorted(name for name in build_hooks.package_copies(tmp_path) if name.startswith("templates/"))
    assert templates == ["templates/base.html", "templates/cards/list.html"]


def test_a_source_checkout_uses_its_own_templates_and_node_modules():
    resources = find_resources()
    assert not (PACKAGE_DIR / "templates").exists(), "a copy in the source tree would hide edits to templates/"
    assert (resources.templates, resources.node_modules) == (ROOT / "templates", ROOT / "node_modules")


def test_an_installed_package_uses_the_copies_the_build_put_inside_it(tmp_path):
    package = tmp_path / "site-packages" / "kartoteka"
    (package / "templates").mkdir(parents=True)
    (tmp_path / "site-packages" / "templates").mkdir()  # another distribution's stray top-level folder
    resources = find_resources(package)
    assert (resources.templates, resources.node_modules) == (package / "templates", package / "vendor")


def test_a_package_without_templates_says_so(tmp_path):
    package = tmp_path / "site-packages" / "kartoteka"
    package.mkdir(parents=True)
    (tmp_path / "site-packages" / "templates").mkdir()  # not a checkout: no pyproject.toml beside it
    with pytest.raises(RuntimeError, match="templates are missing"):
        find_resources(package)


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
    modules = "kartoteka, kartoteka.cli, kartoteka.server, kartoteka.web, kartoteka.api, kartoteka.extensions"
    result = subprocess.run([sys.executable, "-c", f"import {modules}"],  # noqa: S603 (this interpreter)
                            cwd=tmp_path, capture_output=True, text=True, check=False,
                            env={"PYTHONPATH": str(ROOT), "KARTOTEKA_CONFIG_DIR": str(tmp_path / "nowhere")})
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []  # no instance/ and no secret_key made at import


def test_pyproject_metadata():
    project = PYPROJECT["project"]
    assert project["license"] == "MIT"  # an SPDX expression: the table form is deprecated and warned about
    assert not any(c.startswith("License ::") for c in project.get("classifiers", []))
    assert any(d.startswith("gunicorn") for d in project["dependencies"])
    assert any(r.startswith("setuptools>=77") for r in PYPROJECT["build-system"]["requires"])
    assert PYPROJECT["tool"]["setuptools"]["cmdclass"] == {"build_py": "build_hooks.BuildPy"}
    assert issubclass(build_hooks.BuildPy, build_py)
