"""A live server on demo data in a throw-away instance directory, for browser tests and screenshots.

`start_demo_server(instance_dir)` does what `kartoteka demo` does (migrate, sync indexes, create the demo
users and records) on a SQLite database inside `instance_dir`, then serves the app with werkzeug on a free
port of 127.0.0.1 from a daemon thread. It returns the base URL and a function that stops the server and
closes the database engine.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from werkzeug.serving import WSGIRequestHandler, make_server

from kartoteka import create_app
from kartoteka.config import Settings
from kartoteka.demo import seed_demo
from kartoteka.storage.database import upgrade
from kartoteka.storage.indexes import sync_indexes

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


class QuietRequestHandler(WSGIRequestHandler):
    """Logs errors only, not a line per request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def start_demo_server(instance_dir: Path, *, config_dir: Path = CONFIG_DIR, per_entity: int = 60,
                      host: str = "127.0.0.1", quiet: bool = True) -> tuple[str, Callable[[], None]]:
    """Seed demo data into a SQLite database under `instance_dir` and serve it: (base URL, stop)."""
    instance_dir = Path(instance_dir).resolve()
    instance_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(database_url=f"sqlite:///{instance_dir / 'kartoteka.db'}", config_dir=config_dir,
                        secret_key=secrets.token_hex(32), instance_dir=instance_dir)
    app = create_app(settings)
    state = app.extensions["kartoteka"]
    try:
        upgrade(state.engine)
        sync_indexes(state.engine, state.metadata)
        state.service.refresh_key_columns()  # the key columns the sync just filled
        seed_demo(state.service, state.engine, datetime.now(UTC), per_entity=per_entity)
        server = make_server(host, 0, app, threaded=True,
                             request_handler=QuietRequestHandler if quiet else None)
    except BaseException:
        state.engine.dispose()
        raise
    thread = threading.Thread(target=server.serve_forever, name="kartoteka-devserver", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        state.engine.dispose()

    return f"http://{host}:{server.server_port}", stop
