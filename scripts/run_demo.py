"""`make demo`'s processes: a local SMTP sink printing every e-mail, one `kartoteka worker` and the web server.

Ctrl+C (or SIGTERM) stops all three and waits for them. E-mail goes to the sink on 127.0.0.1:8025
(KARTOTEKA_DEMO_SMTP_PORT) unless KARTOTEKA_SMTP_URL says otherwise; the sink is aiosmtpd's debugging server.
Usage: python scripts/run_demo.py [kartoteka serve options...]
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

GRACE_SECONDS = 15


def _start(name: str, command: list[str], env: dict[str, str]) -> tuple[str, subprocess.Popen[bytes]]:
    return name, subprocess.Popen(command, env=env)  # noqa: S603  (this interpreter and its kartoteka command)


def _stop(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    """SIGTERM to whatever still runs (Ctrl+C already sent them SIGINT), then SIGKILL after a grace period."""
    for _name, child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for name, child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"run_demo: {name} did not stop in {GRACE_SECONDS} s; killing it", file=sys.stderr)
            child.kill()
            child.wait()


def main(serve_args: list[str]) -> int:
    """Run the sink, the worker and the server until one of them ends or we are told to stop."""
    kartoteka = str(Path(sys.executable).with_name("kartoteka"))
    env = dict(os.environ)
    port = env.get("KARTOTEKA_DEMO_SMTP_PORT", "8025")
    children = []
    if not env.get("KARTOTEKA_SMTP_URL"):
        env["KARTOTEKA_SMTP_URL"] = f"smtp://127.0.0.1:{port}"
        print(f"run_demo: e-mail goes to a local sink on 127.0.0.1:{port}, printed below", flush=True)
        children.append(_start("smtp sink", [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}"], env))
    children.append(_start("worker", [kartoteka, "worker"], env))
    children.append(_start("server", [kartoteka, "serve", *serve_args], env))

    def stop(_number: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        while all(child.poll() is None for _name, child in children):
            time.sleep(0.5)
        ended = next(name for name, child in children if child.poll() is not None)
        print(f"run_demo: the {ended} stopped; stopping the others", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        status = 0
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl+C must not leave children behind
    _stop(children)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
