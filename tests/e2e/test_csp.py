"""The Content-Security-Policy in a real browser: the main pages and their live parts break none of it.

Chromium reports every blocked inline style, inline script, eval or foreign resource on the console
("Refused to apply inline style because it violates the following Content Security Policy directive ...")
and as a `securitypolicyviolation` event; both are collected while a user walks through the pages.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

CHROMIUM = Path("/usr/bin/chromium")  # the same browser conftest.py launches
if not CHROMIUM.exists():
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: CI must install Chromium for the browser tests.", pytrace=False)
    pytest.skip(f"browser tests need {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

LIVE = re.compile(r"/cards/deal/(\d+/)?live$")
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`Content Security Policy violation: ${event.violatedDirective} blocked ${event.blockedURI}`);
});
"""


def _watch(page: Page) -> list[str]:
    messages: list[str] = []
    page.add_init_script(REPORT_VIOLATIONS)
    page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: messages.append(f"pageerror: {error}"))
    return messages


def _violations(messages: list[str]) -> list[str]:
    return [m for m in messages if "Content Security Policy" in m or "pageerror" in m]


def test_the_main_pages_break_no_content_security_policy(page: Page, login) -> None:
    messages = _watch(page)
    response = page.goto("/login")
    assert response is not None and "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator("#username")).to_be_visible()
    # The watch works: an inline style added now is refused and reported.
    page.evaluate("""document.body.insertAdjacentHTML("beforeend", '<p id="probe" style="color: red">x</p>')""")
    expect(page.locator("#probe")).to_have_count(1)
    assert page.locator("#probe").evaluate("e => getComputedStyle(e).color") != "rgb(255, 0, 0)"
    page.wait_for_timeout(100)
    assert _violations(messages), messages
    messages.clear()

    login(page, "admin")
    page.goto("/cards/deal/")
    href = page.locator("table.records tbody th a").first.get_attribute("href")
    assert href
    for path in ("/cards/", "/cards/deal/", href, "/cards/deal/kanban", "/cards/lead/kanban", "/admin/users"):
        page.goto(path)
        page.wait_for_load_state("networkidle")

    # The card form with its live checks (htmx posts, out-of-band swaps, app.js toggling fields).
    page.goto(f"{href}/edit")
    page.wait_for_load_state("networkidle")
    with page.expect_response(LIVE):
        page.select_option("#f-stage", "lost")
    expect(page.locator("#f-lost_reason")).to_be_visible()
    with page.expect_response(LIVE):
        page.fill("#f-probability", "35")
    page.goto("/cards/deal/new")
    page.wait_for_load_state("networkidle")
    with page.expect_response(LIVE):
        page.fill("#f-name", "CSP check")

    assert _violations(messages) == [], _violations(messages)


def test_option_colours_reach_the_page_without_inline_styles(page: Page, login) -> None:
    messages = _watch(page)
    login(page, "sales_manager")
    page.goto("/cards/deal/kanban")
    column = page.locator(".kanban-col[data-stage='new']")
    expect(column).to_be_visible()
    assert column.evaluate("e => getComputedStyle(e).borderTopColor") == "rgb(144, 202, 249)"  # "#90caf9"
    # A select shows its chosen option's colour, set through the CSS object model when it changes.
    page.goto("/cards/deal/new")
    page.select_option("#f-stage", "won")
    assert page.locator("#f-stage").evaluate("e => getComputedStyle(e).getPropertyValue('--opt')") == "#2e7d32"
    assert _violations(messages) == [], _violations(messages)
