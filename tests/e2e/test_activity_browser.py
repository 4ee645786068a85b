"""The timeline, tasks and notifications in a real browser: a note added with htmx, a task ticked done, axe-clean.

Demo users may work in Russian: the tests check ids, classes, URLs and the texts they typed themselves.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

CHROMIUM = Path("/usr/bin/chromium")  # the same browser conftest.py launches
if not CHROMIUM.exists():
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: CI must install Chromium for the browser tests.", pytrace=False)
    pytest.skip(f"browser tests need {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

CARD_URL = re.compile(r"/cards/deal/(\d+)$")


def _first_deal(page: Page) -> str:
    page.goto("/cards/deal/")
    href = page.locator("table.records tbody th a").first.get_attribute("href")
    assert href and CARD_URL.search(href), href
    return href


def test_a_note_appears_in_the_timeline_without_a_reload_and_a_task_is_ticked_done(page: Page, login, axe) -> None:
    login(page, "sales1")
    card = _first_deal(page)
    page.goto(card)
    axe(page, "deal card with its timeline")
    note = f"Called the client {uuid.uuid4().hex[:8]}"
    page.evaluate("() => { window.__notReloaded = true; }")
    page.fill("#entry-body", note)
    page.click(".entry-form button[type=submit]")
    entry = page.locator("#timeline .timeline-entry.kind-note", has_text=note)
    expect(entry).to_be_visible()
    assert page.evaluate("() => window.__notReloaded === true")  # htmx swapped the section, no page load
    expect(page.locator("#entry-body")).to_have_value("")
    axe(page, "timeline after adding a note")

    title = f"Send the offer {uuid.uuid4().hex[:8]}"
    page.fill("#task-title", title)
    page.fill("#task-due", "2020-01-31")  # long past: overdue
    page.click(".task-form button[type=submit]")
    expect(page.locator("#timeline .task-row", has_text=title)).to_be_visible()

    page.goto("/tasks")
    row = page.locator(".task-list .task-row", has_text=title)
    expect(row).to_have_class(re.compile(r"\bis-overdue\b"))
    expect(page.locator("header .header-tasks .overdue-count")).to_be_visible()
    axe(page, "my tasks with an overdue task")
    checkbox = row.locator("input[type=checkbox]")
    checkbox.focus()
    page.keyboard.press("Space")  # by keyboard: the row is swapped in place
    done_row = page.locator(".task-list .task-row.is-done", has_text=title)
    expect(done_row).to_be_visible()
    expect(done_row.locator("input[type=checkbox]")).to_be_checked()
    expect(done_row.locator("input[type=checkbox]")).to_be_focused()  # htmx gives the focus back (same id)
    page.goto("/tasks?show=done")
    expect(page.locator(".task-list .task-row", has_text=title)).to_be_visible()
    page.goto("/tasks")
    expect(page.locator(".task-list .task-row", has_text=title)).to_have_count(0)


def test_the_notification_page_and_the_bell_have_no_axe_violation(page: Page, login, axe) -> None:
    login(page, "sales_manager")
    bell = page.locator("header a.bell")
    expect(bell).to_be_visible()
    bell.click()
    expect(page).to_have_url(re.compile(r"/notifications$"))
    axe(page, "notifications")
    page.goto("/tasks?show=all")
    axe(page, "all my tasks")


def test_a_note_is_added_without_javascript(browser, live_server: str) -> None:
    from kartoteka.demo import DEMO_PASSWORD

    context = browser.new_context(base_url=live_server, java_script_enabled=False, locale="en-US")
    try:
        page = context.new_page()
        page.goto("/login")
        page.fill("#username", "sales2")
        page.fill("#password", DEMO_PASSWORD)
        page.click("form[action='/login'] button[type=submit]")
        card = _first_deal(page)
        page.goto(card)
        note = f"No script note {uuid.uuid4().hex[:8]}"
        page.fill("#entry-body", note)
        page.click(".entry-form button[type=submit]")
        expect(page).to_have_url(re.compile(re.escape(card) + "#timeline$"))
        expect(page.locator("#timeline .timeline-entry", has_text=note)).to_be_visible()
    finally:
        context.close()
