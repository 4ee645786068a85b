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


def _header_count(page: Page) -> int:
    return int(page.locator("header .header-tasks .count").inner_text())


def test_the_header_count_follows_a_task_added_and_ticked_without_a_reload(page: Page, login, axe) -> None:
    login(page, "sales2")
    page.goto(_first_deal(page))
    before = _header_count(page)
    page.evaluate("() => { window.__notReloaded = true; }")
    title = f"Header count {uuid.uuid4().hex[:8]}"
    page.fill("#task-title", title)
    page.fill("#task-description", "Line one <b>not bold</b>\n" + "more words " * 30)
    page.click(".task-form button[type=submit]")  # assigned to me by default
    row = page.locator("#timeline .task-row", has_text=title)
    expect(row).to_be_visible()
    expect(page.locator("header .header-tasks .count")).to_have_text(str(before + 1))
    details = row.locator("details.task-description")
    expect(details.locator("summary")).to_contain_text("<b>not bold</b>")  # shown as text, shortened
    details.locator("summary").click()
    expect(details).to_contain_text("more words more words")
    axe(page, "card with a task's description opened")
    row.locator("input[type=checkbox]").check()
    expect(page.locator("#timeline .task-row.is-done", has_text=title)).to_be_visible()
    expect(page.locator("header .header-tasks .count")).to_have_text(str(before))
    assert page.evaluate("() => window.__notReloaded === true")

    page.goto("/tasks?show=done")
    count = _header_count(page)
    page.locator(".task-list .task-row", has_text=title).locator("input[type=checkbox]").uncheck()
    expect(page.locator(".task-list .task-row:not(.is-done)", has_text=title)).to_be_visible()
    expect(page.locator("header .header-tasks .count")).to_have_text(str(count + 1))
    expect(page.locator("header .header-tasks")).to_have_attribute("aria-current", "page")  # still on My tasks


def _top_of_each_header_item(page: Page) -> list[float]:
    return page.evaluate("""() => [...document.querySelectorAll('header.topbar nav > ul > li')]
        .filter((li) => li.offsetParent !== null)
        .map((li) => Math.round(li.getBoundingClientRect().top + li.getBoundingClientRect().height / 2))""")


def _no_sideways_scroll(page: Page) -> None:
    assert page.evaluate("() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"), \
        page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")


def test_the_administrators_header_is_one_line_at_1280_and_folds_into_a_menu_on_a_phone(browser, live_server: str,
                                                                                         tmp_path: Path) -> None:
    from kartoteka.demo import DEMO_PASSWORD

    for width, language in ((1280, "ru"), (1280, "en"), (390, "ru")):
        context = browser.new_context(base_url=live_server, viewport={"width": width, "height": 800}, locale="en-US")
        try:
            page = context.new_page()
            page.goto("/login")
            page.fill("#username", "admin")
            page.fill("#password", DEMO_PASSWORD)
            page.press("#password", "Enter")
            expect(page).to_have_url(re.compile(r"/cards/$"))
            if page.locator("html").get_attribute("lang") != language:
                if page.locator(".menu-toggle").is_visible():
                    page.click(".menu-toggle")
                page.click(f"header form[action='/language'] button[value={language}]")
                expect(page.locator("html")).to_have_attribute("lang", language)
            page.screenshot(path=str(tmp_path / f"header-admin-{width}-{language}.png"))
            _no_sideways_scroll(page)
            if width == 1280:
                middles = _top_of_each_header_item(page)
                assert len(middles) >= 12 and max(middles) - min(middles) <= 8, middles  # one line
                expect(page.locator("header .menu-toggle")).to_be_hidden()
                page.click("header .admin-menu summary")
                expect(page.locator("header .admin-menu a[href='/admin/outbox/']")).to_be_visible()
                page.keyboard.press("Escape")
                expect(page.locator("header .admin-menu a[href='/admin/outbox/']")).to_be_hidden()
                continue
            toggle = page.locator("header .menu-toggle")
            expect(toggle).to_have_attribute("aria-expanded", "false")
            expect(page.locator("header .entity-nav")).to_be_hidden()
            expect(page.locator("header .header-tasks")).to_be_visible()
            expect(page.locator("header a.bell")).to_be_visible()
            middles = _top_of_each_header_item(page)
            assert max(middles) - min(middles) <= 8, middles  # closed: one line
            toggle.click()
            expect(toggle).to_have_attribute("aria-expanded", "true")
            expect(page.locator("header .entity-nav a").first).to_be_visible()
            expect(page.locator("header form[action='/logout'] button")).to_be_visible()
            page.screenshot(path=str(tmp_path / f"header-admin-{width}-{language}-open.png"), full_page=True)
            _no_sideways_scroll(page)
            page.click("header .admin-menu summary")
            page.click("header .admin-menu a[href='/cards/rule-runs']")
            expect(page).to_have_url(re.compile(r"/cards/rule-runs$"))
            _no_sideways_scroll(page)
        finally:
            context.close()
