"""`make demo`'s processes: one `kartoteka worker` and the web server, and a local SMTP sink printing every e-mail.

Ctrl+C (or SIGTERM, or closing the terminal) stops all three and waits for them. E-mail goes to the sink on
127.0.0.1:8025 (KARTOTEKA_DEMO_SMTP_PORT) unless KARTOTEKA_SMTP_URL says otherwise; the sink (aiosmtpd, in this
process) prints each message's headers decoded and its text.
Usage: python scripts/run_demo.py [kartoteka serve options...]
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

FIRST_WAIT_SECONDS = 2
GRACE_SECONDS = 15


class PrintingSink:
    """aiosmtpd's handler: print every message as a person reads it (headers decoded, the text part)."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Print the message; accept it."""
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain", "html"))
        names = ("From", "To", "Subject", "Date", "Message-ID")
        lines = [f"{name}: {message[name]}" for name in names if message[name]]
        text = body.get_content() if body is not None else ""
        print("---------- e-mail (demo sink) ----------", *lines, "", text.rstrip(), "-" * 40, sep="\n", flush=True)
        return "250 Message accepted"


def _start(name: str, command: list[str], env: dict[str, str]) -> tuple[str, subprocess.Popen[bytes]]:
    return name, subprocess.Popen(command, env=env)  # noqa: S603  (this interpreter and its kartoteka command)


def _stop(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    """Let the children stop on their own (Ctrl+C reached them too), then SIGINT what still runs (gunicorn's quick
    shutdown, the worker's graceful one), then SIGKILL after a grace period."""
    _wait(children, FIRST_WAIT_SECONDS)
    for _name, child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
    for name, child in _wait(children, GRACE_SECONDS):
        print(f"run_demo: the {name} did not stop in {GRACE_SECONDS} s; killing it", file=sys.stderr)
        child.kill()
        child.wait()


def _wait(children: list[tuple[str, subprocess.Popen[bytes]]], seconds: float
          ) -> list[tuple[str, subprocess.Popen[bytes]]]:
    """Wait up to `seconds` for all children to end; those still running."""
    deadline = time.monotonic() + seconds
    for _name, child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(max(0.01, deadline - time.monotonic()))
    return [(name, child) for name, child in children if child.poll() is None]


def main(serve_args: list[str]) -> int:
    """Run the sink, the worker and the server until one of them ends or we are told to stop."""
    kartoteka = str(Path(sys.executable).with_name("kartoteka"))
    env = dict(os.environ)
    port = env.get("KARTOTEKA_DEMO_SMTP_PORT", "8025")
    children = []
    sink = None
    if not env.get("KARTOTEKA_SMTP_URL"):
        from aiosmtpd.controller import Controller

        env["KARTOTEKA_SMTP_URL"] = f"smtp://127.0.0.1:{port}"
        sink = Controller(PrintingSink(), hostname="127.0.0.1", port=int(port))
        try:
            sink.start()
        except Exception as exc:  # aiosmtpd reports a port in use in more than one way
            print(f"run_demo: cannot start the SMTP sink on 127.0.0.1:{port} ({exc}); set KARTOTEKA_DEMO_SMTP_PORT "
                  "to a free port, or KARTOTEKA_SMTP_URL to a server of yours", file=sys.stderr)
            return 1
        print(f"run_demo: e-mail goes to a local sink on 127.0.0.1:{port}, printed below", flush=True)
    children.append(_start("worker", [kartoteka, "worker"], env))
    children.append(_start("server", [kartoteka, "serve", *serve_args], env))

    def stop(_number: int, _frame: object) -> None:
        raise KeyboardInterrupt

    for number in (signal.SIGTERM, signal.SIGHUP):  # SIGHUP: the terminal was closed
        signal.signal(number, stop)
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
    if sink is not None:
        sink.stop()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
