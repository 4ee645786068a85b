"""Check that the wheel serves the full UI: build it, install it into an empty virtualenv, serve, fetch.

    python scripts/check_wheel.py [--keep]

1. `pip wheel .` builds the wheel from this checkout (build_hooks.py copies in the templates and the
   npm-installed htmx and Pico, so `make assets` must have run).
2. A new virtualenv gets the wheel, non-editable, with its dependencies from the package index.
3. `kartoteka serve` (gunicorn, two workers) runs from a temporary directory holding only a copy of
   `config/`, with no KARTOTEKA_* variables: the default settings (`./config`, `./instance/kartoteka.db`,
   a generated secret) resolve there, and nothing can come from the checkout.
4. `/login` must answer 200 with its form, and every stylesheet and script it links (Pico, htmx, app.css,
   app.js, ...) must answer 200 with the right type, byte for byte the files in the wheel (and the vendor
   files the ones in node_modules/). A request with raw UTF-8 in its URL must be served, not refused, and
   /login asked for in Russian (Accept-Language) must be in Russian: the wheel carries compiled catalogues.
5. SIGTERM must stop the server gracefully (exit status 0).

Any failure prints what went wrong and the server's log, and exits 1. Standard library only.
"""

from __future__ import annotations

import argparse
import html.parser
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "node_modules"
VENDOR = {"/vendor/htmx.min.js": NODE_MODULES / "htmx.org/dist/htmx.min.js",
          "/vendor/pico.min.css": NODE_MODULES / "@picocss/pico/css/pico.min.css"}
TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
START_TIMEOUT = 90  # seconds for the server to answer /login
STOP_TIMEOUT = 45  # seconds for a graceful stop (gunicorn's graceful_timeout is 30)


class CheckFailed(Exception):
    """One check did not hold."""


class Links(html.parser.HTMLParser):
    """The local stylesheets, scripts and icons a page links."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        url = values.get("href") if tag == "link" else values.get("src") if tag == "script" else None
        if url and url.startswith("/") and not url.startswith("//"):
            self.urls.append(url)


def run(args: list[str | Path], **kwargs) -> None:
    """Run a command; its output is shown only when it fails."""
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True,  # noqa: S603 (our own commands)
                            check=False, **kwargs)
    if result.returncode != 0:
        raise CheckFailed(f"`{' '.join(str(a) for a in args)}` failed ({result.returncode}):\n"
                          f"{result.stdout}{result.stderr}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET that follows no redirect."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (our own http://127.0.0.1 server)
        with opener.open(request, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def raw_request(port: int, target: bytes) -> bytes:
    """The status line of a GET whose target is sent as given (raw UTF-8, not percent-encoded)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[0]


def wait_for_login(base: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise CheckFailed(f"the server stopped at start (exit status {server.returncode})")
        try:
            if fetch(f"{base}/login")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.25)
    raise CheckFailed(f"/login did not answer 200 within {START_TIMEOUT} s")


def check_site(base: str, port: int, wheel: zipfile.ZipFile) -> list[str]:
    """Fetch /login and everything it links; return what was checked."""
    status, content_type, body = fetch(f"{base}/login")
    page = body.decode("utf-8", "replace")
    if status != 200 or not content_type.startswith("text/html") or "<form" not in page:
        raise CheckFailed(f"/login answered {status} {content_type!r}:\n{page[:2000]}")
    links = Links()
    links.feed(page)
    wanted = {"/vendor/pico.min.css", "/vendor/htmx.min.js", "/static/app.css", "/static/app.js"}
    linked = {url.split("?", 1)[0] for url in links.urls}
    if not wanted <= linked:
        raise CheckFailed(f"/login does not link {sorted(wanted - linked)}; it links {sorted(linked)}")
    checked = ["/login"]
    for url in links.urls:
        status, content_type, body = fetch(base + url)
        path = url.split("?", 1)[0]
        expected_type = TYPES.get(Path(path).suffix, "")
        if status != 200 or not body or not content_type.startswith(expected_type):
            raise CheckFailed(f"{url} answered {status} {content_type!r} with {len(body)} bytes")
        if path in VENDOR and body != VENDOR[path].read_bytes():
            raise CheckFailed(f"{url} is not {VENDOR[path].relative_to(ROOT)}")
        if path.startswith("/static/") and body != wheel.read(f"kartoteka{path}"):
            raise CheckFailed(f"{url} is not kartoteka{path} of the wheel")
        checked.append(f"{path} ({len(body):,} bytes)")
    status_line = raw_request(port, "/cards/lead/?q=Иван".encode())
    if not status_line.startswith((b"HTTP/1.1 200", b"HTTP/1.1 302")):
        raise CheckFailed(f"a raw UTF-8 URL was answered {status_line!r}")
    checked.append("raw UTF-8 URL")
    status, _, body = fetch(f"{base}/login", {"Accept-Language": "ru"})
    if status != 200 or "Вход" not in body.decode("utf-8", "replace"):
        raise CheckFailed("/login for a Russian browser is not in Russian: the wheel lacks the compiled catalogue")
    checked.append("/login in Russian (compiled catalogue)")
    return checked


def stop(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        status = server.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
        raise CheckFailed(f"the server did not stop within {STOP_TIMEOUT} s of SIGTERM") from None
    if status != 0:
        raise CheckFailed(f"the server stopped with exit status {status} after SIGTERM")


def check(work: Path) -> None:
    started = time.monotonic()

    def step(message: str) -> None:
        print(f"check_wheel: {message} ({time.monotonic() - started:.1f} s)", flush=True)

    for source in VENDOR.values():
        if not source.is_file():
            raise CheckFailed(f"{source} is missing: run `make assets` (npm ci) first")
    dist = work / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
         "--wheel-dir", dist, ROOT])
    wheels = sorted(dist.glob("kartoteka-*.whl"))
    if len(wheels) != 1:
        raise CheckFailed(f"expected one wheel in {dist}, found {wheels}")
    step(f"built {wheels[0].name}")

    venv = work / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])  # nothing in it; this pip installs into it
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--disable-pip-version-check",
         "--no-compile", wheels[0]])
    step("installed it into an empty virtualenv")

    site = work / "site"
    shutil.copytree(ROOT / "config", site / "config")
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("KARTOTEKA_", "PYTHON", "VIRTUAL_ENV"))}
    code = ("import kartoteka; r = kartoteka.find_resources(); "
            "print(kartoteka.__file__, r.templates, r.node_modules, sep='\\n')")
    where = subprocess.run([python, "-c", code],  # noqa: S603 (the interpreter of the virtualenv made above)
                           cwd=site, env=env, capture_output=True, text=True, check=False)
    paths = [Path(line) for line in where.stdout.split()]
    if where.returncode != 0 or len(paths) != 3 or not all(path.is_relative_to(venv) for path in paths):
        raise CheckFailed(f"the installed package is not the one in use, or its resources are outside it:\n"
                          f"{where.stdout}{where.stderr}")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = work / "server.log"
    with log_path.open("w") as log:
        command = [venv / "bin" / "kartoteka", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
        server = subprocess.Popen(command, cwd=site, env=env,  # noqa: S603 (the command the wheel installed)
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_login(base, server)
            step(f"kartoteka serve answers on {base}")
            with zipfile.ZipFile(wheels[0]) as wheel:
                checked = check_site(base, port, wheel)
        finally:
            if server.poll() is None:
                stop(server)
    step("served " + ", ".join(checked) + "; stopped gracefully on SIGTERM")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (printed) for a look")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kartoteka-wheel-"))
    started = time.monotonic()
    try:
        check(work)
    except CheckFailed as failure:
        print(f"check_wheel: FAILED: {failure}", file=sys.stderr)
        log = work / "server.log"
        if log.is_file():
            print(f"--- server log ({log}) ---\n{log.read_text(errors='replace')[-6000:]}", file=sys.stderr)
        return 1
    finally:
        if options.keep:
            print(f"check_wheel: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"check_wheel: OK in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
