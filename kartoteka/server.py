"""The production server: gunicorn running the app, which each worker process creates for itself.

`kartoteka serve` resolves the settings and prepares the database once, in the master process (migrations,
metadata indexes, the instance secret), closes its own engine, and hands the settings to `KartotekaServer`,
gunicorn's documented custom-application API (`gunicorn.app.base.BaseApplication`).

The app is **not preloaded**: gunicorn calls `load()` in each worker after the fork, so every worker builds
its own app with `create_app(settings)`: its own SQLAlchemy engine and connection pool, its own SQLite handles.
No connection, pool or file handle is ever inherited across a fork, which is what SQLAlchemy requires of pools
used with multiprocessing, so no `post_fork` hook has to dispose of anything. The cost is building the app once
per worker (about 0.3 s: metadata is loaded and checked again), which buys independence: a worker that gunicorn
replaces (after `max_requests`, a crash or a timeout) starts clean. Broken metadata still stops the server before
any worker starts, because the master has already built the app once to migrate the database.

Settings are resolved once, in the master, and inherited by the workers as they are, so every worker uses the
same database, config and secret key (a secret generated on first start is written once, not once per worker).

**Raw UTF-8 in URLs.** Browsers percent-encode Cyrillic in URLs; curl and some scripts send `?q=Иван` as raw UTF-8
bytes. gunicorn 27 refuses any byte outside printable ASCII in the request target with a 400 (RFC 9112 §3.2).
`KartotekaWorker` is gunicorn's threaded worker whose requests first percent-encode the bytes 0x80-0xFF of the
target, as RFC 3987 §3.1 maps an IRI to a URI, so both spellings reach the app as the same URL. Nothing else
changes: control characters, spaces and every other check of gunicorn's parser still apply, and a percent-encoded
byte can never become a delimiter (`/`, `?`, `#`). The hook is `RequestParser.mesg_class`, set in the worker
processes only; gunicorn is pinned below its next major version, and tests/test_cli.py sends raw UTF-8 to a real
server, so a change inside gunicorn shows there.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.http.message import Request
from gunicorn.http.parser import RequestParser
from gunicorn.workers.gthread import ThreadWorker

from kartoteka.config import Settings

MAX_DEFAULT_WORKERS = 8
DEFAULT_THREADS = 4
DEFAULT_TIMEOUT = 30
# The combined log format plus the time taken, in milliseconds.
# gunicorn makes its heartbeat files there with mkstemp (private to the user) and unlinks them at once.
SHARED_MEMORY = "/dev/shm"  # noqa: S108
ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms'


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity set where the OS says, else every CPU)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_workers(cpus: int | None = None) -> int:
    """Worker processes by default: 2 × CPUs + 1 (gunicorn's advice), at most MAX_DEFAULT_WORKERS.

    The cap keeps a big machine from starting dozens of processes that each hold the metadata and a connection
    pool: 8 workers × 4 threads already serve 32 requests at once with at most 32 database connections in use.
    """
    return min(2 * (cpus or cpu_count()) + 1, MAX_DEFAULT_WORKERS)


def bind_address(host: str, port: int) -> str:
    """gunicorn's `bind`: host:port, with an IPv6 address in brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def gunicorn_options(host: str, port: int, *, workers: int | None = None, threads: int | None = None,
                     timeout: int = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """The gunicorn settings `kartoteka serve` runs with."""
    options: dict[str, Any] = {
        "bind": [bind_address(host, port)],
        "workers": workers or default_workers(),
        # Threads per worker: a slow client or a keep-alive connection does not hold a whole process, and
        # database waits overlap. The app keeps no per-request state outside the request.
        "worker_class": KartotekaWorker,  # gunicorn's gthread worker, taking raw UTF-8 in URLs (see above)
        "threads": threads or DEFAULT_THREADS,
        "http_parser": "python",  # the parser KartotekaWorker adapts (the optional C parser would bypass it)
        "preload_app": False,  # each worker creates its app after the fork: see the module's docstring
        # A worker silent for this long is killed and replaced; on SIGTERM the workers get as long again to
        # finish the requests they have (graceful shutdown), then they are stopped.
        "timeout": timeout,
        "graceful_timeout": timeout,
        "keepalive": 5,
        # Replace each worker after about a thousand requests (spread out so they never restart together):
        # whatever a worker has accumulated is returned to the system.
        "max_requests": 1000,
        "max_requests_jitter": 100,
        # Long list URLs (filters, Cyrillic search text percent-encoded) fit: gunicorn's largest request line.
        "limit_request_line": 8190,
        "accesslog": "-",  # one line per request on stdout
        "access_log_format": ACCESS_LOG_FORMAT,
        "errorlog": "-",  # gunicorn's own messages on stderr
        "loglevel": "info",
        "proc_name": "kartoteka",
        # Whom to believe about X-Forwarded-* is the app's decision (KARTOTEKA_TRUSTED_PROXIES, werkzeug's
        # ProxyFix); gunicorn would otherwise trust X-Forwarded-Proto from any local process.
        "forwarded_allow_ips": "",
        # No control socket: it would be one path ($HOME/.gunicorn/gunicorn.ctl) for every server of the user.
        # Signals manage the server: TERM stops gracefully, HUP replaces the workers, TTIN/TTOU add or remove one.
        "control_socket_disable": True,
    }
    if Path(SHARED_MEMORY).is_dir():  # the workers' heartbeat files in memory (gunicorn's FAQ), not on a slow disk
        options["worker_tmp_dir"] = SHARED_MEMORY
    return options


_HIGH_BYTE = re.compile(rb"[\x80-\xff]")


def percent_encode_high_bytes(target: bytes) -> bytes:
    """Every byte 0x80-0xFF as %XX (`/?q=Иван` → `/?q=%D0%98%D0%B2%D0%B0%D0%BD`); ASCII as it is."""
    return _HIGH_BYTE.sub(lambda match: b"%%%02X" % match.group()[0], target)


class Utf8TargetRequest(Request):
    """gunicorn's request, with the raw non-ASCII bytes of the request target percent-encoded before it is checked."""

    def parse_request_line(self, line_bytes: bytes) -> None:
        parts = line_bytes.split(b" ", 2)  # as gunicorn splits it: method, target, version
        if len(parts) == 3:
            parts[1] = percent_encode_high_bytes(parts[1])
            line_bytes = b" ".join(parts)
        super().parse_request_line(line_bytes)


class KartotekaWorker(ThreadWorker):
    """gunicorn's threaded (gthread) worker whose requests take raw UTF-8 in the URL."""

    def init_process(self) -> None:
        RequestParser.mesg_class = Utf8TargetRequest  # in this worker process only, before it serves anything
        super().init_process()


class KartotekaServer(BaseApplication):
    """gunicorn serving `create_app(settings)`, created in each worker."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__(prog="kartoteka serve")

    def load_config(self) -> None:
        """Only our options: neither GUNICORN_CMD_ARGS, nor a gunicorn.conf.py, nor the command line."""
        assert self.cfg is not None
        for name, value in self.options.items():
            self.cfg.set(name, value)
        self.cfg.set("worker_exit", _worker_exit)

    def load(self) -> Flask:
        """Called in each worker after the fork: the worker's own app, engine and pool."""
        from kartoteka import create_app

        return create_app(self.settings)


def _worker_exit(_server: Any, worker: Any) -> None:
    """Close the worker's database connections as it stops, so PostgreSQL sees them end cleanly."""
    app = getattr(worker, "wsgi", None)
    state = app.extensions.get("kartoteka") if isinstance(app, Flask) else None
    if state is not None:
        state.engine.dispose()


def serve(settings: Settings, host: str, port: int, *, workers: int | None = None, threads: int | None = None,
          timeout: int = DEFAULT_TIMEOUT) -> None:
    """Run gunicorn until it is stopped (SIGTERM: graceful, SIGINT: at once)."""
    options = gunicorn_options(host, port, workers=workers, threads=threads, timeout=timeout)
    KartotekaServer(settings, options).run()
