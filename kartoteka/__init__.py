"""Kartoteka: a metadata-driven CRM platform. `create_app` is the application factory."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from flask import Flask

from kartoteka.config import Settings
from kartoteka.metadata.expressions import Clock

__version__ = "0.1.0"
PACKAGE_DIR = Path(__file__).resolve().parent
STATIC_DIR = PACKAGE_DIR / "static"


@dataclass(frozen=True)
class Resources:
    """Where the app finds its Jinja2 templates and the npm front-end files (a tree shaped like node_modules)."""

    templates: Path
    node_modules: Path


def find_resources(package_dir: Path = PACKAGE_DIR) -> Resources:
    """The templates and front-end files of an installed package, or else of the source checkout around it.

    A wheel carries copies made by the build (`build_hooks.py`): `kartoteka/templates/` from the top-level
    `templates/`, and `kartoteka/vendor/` with htmx and Pico from `node_modules/`. A source checkout (and an
    editable install) has neither copy and uses `templates/` and `node_modules/` beside the package itself.
    """
    if (package_dir / "templates").is_dir():
        return Resources(package_dir / "templates", package_dir / "vendor")
    checkout = package_dir.parent
    if (checkout / "templates").is_dir() and (checkout / "pyproject.toml").is_file():
        return Resources(checkout / "templates", checkout / "node_modules")
    raise RuntimeError(f"Kartoteka's templates are missing: neither {package_dir / 'templates'} (an installed "
                       f"package) nor {checkout / 'templates'} (a source checkout) exists; reinstall the package.")


def system_clock() -> Clock:
    """The real clock (UTC)."""
    return Clock(lambda: datetime.now(UTC))


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> Flask:
    """Build the Flask application: load and check metadata, connect storage, register blueprints."""
    from kartoteka.api import api
    from kartoteka.extensions import platform
    from kartoteka.home import home
    from kartoteka.i18n import init_i18n
    from kartoteka.request_guard import init_request_guard
    from kartoteka.web import init_web
    from kartoteka.web.security import init_security
    from kartoteka.web_errors import register_error_handlers

    settings = settings or Settings.from_env()
    resources = find_resources()
    app = Flask(__name__, instance_path=str(settings.instance_dir),
                template_folder=str(resources.templates), static_folder=str(STATIC_DIR))
    app.config.update(SECRET_KEY=settings.secret_key, TESTING=settings.testing,
                      MAX_CONTENT_LENGTH=20 * 1024 * 1024,
                      # A long text area in Cyrillic (2 bytes a letter) must fit in a form post.
                      MAX_FORM_MEMORY_SIZE=2 * 1024 * 1024, KARTOTEKA=settings)
    # Records read as people write them: Cyrillic as is, keys in the card's order (system keys first).
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    platform.init_app(app, settings, clock or system_clock())
    init_i18n(app)
    init_request_guard(app)  # the bounded <int:> converter must be in place before any route is added
    init_security(app)
    app.register_blueprint(api)
    app.register_blueprint(home)
    init_web(app, settings.extra.get("node_modules", resources.node_modules))
    register_error_handlers(app)
    return app
