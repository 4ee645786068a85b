"""axe-core on the pages people use, in the states they see them: no violation anywhere.

The keyboard and focus checks axe cannot make (focus ring contrast, changes of context, tab stops) are in
test_keyboard.py; every state those tests reach is checked with axe there too.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import axe_violations

CHROMIUM = Path("/usr/bin/chromium")  # the same browser conftest.py launches
if not CHROMIUM.exists():
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: CI must install Chromium for the browser tests.", pytrace=False)
    pytest.skip(f"browser tests need {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

SAVE = "#card-form button[type=submit]"


def _collect(page: Page, found: dict[str, list[str]], state: str) -> None:
    page.wait_for_load_state("networkidle")
    violations = axe_violations(page)
    if violations:
        found[state] = violations


def _report(found: dict[str, list[str]]) -> str:
    return "\n".join(f"{state}:\n  " + "\n  ".join(v) for state, v in found.items())


def test_signed_out_pages_have_no_axe_violation(page: Page) -> None:
    found: dict[str, list[str]] = {}
    page.goto("/login")
    _collect(page, found, "sign-in")
    page.fill("#username", "sales1")
    page.fill("#password", "wrong password")
    page.click("form[action='/login'] button[type=submit]")
    expect(page.locator("#login-error")).to_be_visible()
    _collect(page, found, "sign-in refused")
    assert not found, _report(found)


def test_the_pages_of_a_sales_manager_have_no_axe_violation(page: Page, login) -> None:
    found: dict[str, list[str]] = {}
    login(page, "sales_manager")
    _collect(page, found, "start page")
    page.goto("/cards/deal/")
    _collect(page, found, "deal list")
    card = page.locator("table.records tbody th a").first.get_attribute("href")
    assert card
    page.goto("/cards/deal/?stage__in=new,qualification&sort=-amount")
    _collect(page, found, "deal list filtered and sorted, filters open")
    page.goto(card)
    _collect(page, found, "deal card")
    page.goto(f"{card}/edit")
    _collect(page, found, "deal edit form")
    page.goto("/cards/deal/new")
    _collect(page, found, "new deal form")
    page.click(SAVE)
    expect(page.locator("#error-summary")).to_be_visible()
    _collect(page, found, "new deal form refused with errors")
    page.select_option("#f-stage", "lost")
    expect(page.locator("#field-lost_reason")).to_be_visible()
    _collect(page, found, "deal form with the lost reason shown")
    page.goto("/cards/deal/kanban")
    _collect(page, found, "deal kanban")
    page.goto("/cards/lead/kanban")
    _collect(page, found, "lead kanban")
    page.goto("/cards/company/new")
    _collect(page, found, "new company form (tabs)")
    page.goto("/cards/company/")
    _collect(page, found, "company list")
    assert not found, _report(found)


def _sign_out(page: Page) -> None:
    page.click("form[action='/logout'] button[type=submit]")
    expect(page.locator("#username")).to_be_visible()


def test_other_roles_and_languages_have_no_axe_violation(page: Page, login) -> None:
    found: dict[str, list[str]] = {}
    login(page, "admin")  # works in Russian
    page.goto("/admin/users")
    _collect(page, found, "user administration")
    _sign_out(page)
    login(page, "sales2")  # works in English
    _collect(page, found, "start page in English")
    page.goto("/cards/deal/")
    _collect(page, found, "deal list in English")
    page.goto("/cards/deal/kanban")
    _collect(page, found, "deal kanban in English")
    _sign_out(page)
    login(page, "support1")
    page.goto("/cards/ticket/kanban")
    _collect(page, found, "ticket kanban")
    page.goto("/cards/ticket/new")
    _collect(page, found, "new ticket form")
    _sign_out(page)
    login(page, "hr1")
    page.goto("/cards/hr_record/")
    _collect(page, found, "HR list")
    page.goto("/cards/hr_record/new")
    _collect(page, found, "new HR record form")
    assert not found, _report(found)
