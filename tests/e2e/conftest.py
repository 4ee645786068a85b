"""Browser tests: a live server on demo data (SQLite in a temp dir) and headless Chromium through Playwright.

The tests need /usr/bin/chromium (Debian's `chromium` package); test_browser.py skips without it, except
in CI (CI set), where a missing browser is a failure. The accessibility checks run axe-core, a development
dependency from npm (`make assets` installs it into node_modules/ with htmx and Pico).
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
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
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


# axe-core runs in the page through the DevTools protocol, which the Content-Security-Policy does not govern
# (a <script> tag would be refused). It waits for running transitions: a tab fading to its selected colours
# is no contrast failure.
RUN_AXE = """async () => {
  await Promise.all(document.getAnimations().map((animation) => animation.finished.catch(() => null)));
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations.map((v) =>
    `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}"""


def axe_violations(page: Page) -> list[str]:
    """What axe-core finds wrong on the page as it is now (JavaScript must be on to run axe)."""
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run `make assets` (npm ci) for the accessibility checks.", pytrace=False)
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    return page.evaluate(RUN_AXE)


def assert_accessible(page: Page, state: str) -> None:
    """axe-core finds no violation on the page in this state (`state` names it in the failure)."""
    violations = axe_violations(page)
    assert violations == [], f"axe-core on {state} ({page.url}):\n" + "\n".join(violations)


@pytest.fixture(name="axe")
def axe_fixture() -> Callable[[Page, str], None]:
    """axe(page, state): fail if axe-core finds any violation on the page as it is now."""
    return assert_accessible
