"""Kartoteka: a metadata-driven CRM platform. `create_app` is the application factory."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from flask import Flask

from kartoteka.config import Settings
from kartoteka.metadata.expressions import Clock

__version__ = "0.1.0"
TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"
NODE_MODULES = Path(__file__).resolve().parent.parent / "node_modules"


def system_clock() -> Clock:
    """The real clock (UTC)."""
    return Clock(lambda: datetime.now(UTC))


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> Flask:
    """Build the Flask application: load and check metadata, connect storage, register blueprints."""
    from kartoteka.api import api
    from kartoteka.extensions import platform
    from kartoteka.home import home
    from kartoteka.request_guard import init_request_guard
    from kartoteka.web import init_web
    from kartoteka.web.security import init_security
    from kartoteka.web_errors import register_error_handlers

    settings = settings or Settings.from_env()
    app = Flask(__name__, instance_path=str(settings.instance_dir),
                template_folder=str(TEMPLATES_DIR), static_folder=str(STATIC_DIR))
    app.config.update(SECRET_KEY=settings.secret_key, TESTING=settings.testing,
                      MAX_CONTENT_LENGTH=20 * 1024 * 1024,
                      # A long text area in Cyrillic (2 bytes a letter) must fit in a form post.
                      MAX_FORM_MEMORY_SIZE=2 * 1024 * 1024, KARTOTEKA=settings)
    # Records read as people write them: Cyrillic as is, keys in the card's order (system keys first).
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    platform.init_app(app, settings, clock or system_clock())
    init_request_guard(app)  # the bounded <int:> converter must be in place before any route is added
    init_security(app)
    app.register_blueprint(api)
    app.register_blueprint(home)
    init_web(app, settings.extra.get("node_modules", NODE_MODULES))
    register_error_handlers(app)
    return app
