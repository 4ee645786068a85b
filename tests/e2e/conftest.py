"""Browser tests: a live server on demo data (SQLite in a temp dir) and headless Chromium through Playwright.

The tests need /usr/bin/chromium (Debian's `chromium` package); test_browser.py skips without it, except
in CI (CI set), where a missing browser is a failure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from kartoteka.demo import DEMO_PASSWORD
from kartoteka.devserver import start_demo_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1360, "height": 900}
# Playwright's waits: long enough for a slow CI machine, short enough to fail fast.
TIMEOUT_MS = 10_000
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory) -> Iterator[str]:
    """The app on seeded demo data (all demo users, password kartoteka-demo), served from a thread."""
    base_url, stop = start_demo_server(tmp_path_factory.mktemp("e2e-instance"))
    try:
        yield base_url
    finally:
        stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Chromium, shared by the session; every test gets its own context (cookies, storage)."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser, live_server: str) -> Iterator[Page]:
    """A fresh page in a fresh context whose relative URLs go to the live server."""
    context = browser.new_context(base_url=live_server, viewport=VIEWPORT, locale="en-US")
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def login(page: Page, username: str, password: str = DEMO_PASSWORD) -> None:
    """Sign in through the login form and wait for the start page."""
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("form[action='/login'] button[type=submit]")
    expect(page).to_have_url(re.compile(r"/cards/$"))


@pytest.fixture(name="login")
def login_fixture() -> Callable[..., None]:
    """login(page, username): sign in as a demo user."""
    return login
