"""Rules in a real browser: a new lead gets its follow-up task, the card's Convert button (with its confirmation)
creates the company, contact and deal, and the card is axe-clean before and after."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Dialog, Page, expect

CHROMIUM = Path("/usr/bin/chromium")  # the same browser conftest.py launches
if not CHROMIUM.exists():
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: CI must install Chromium for the browser tests.", pytrace=False)
    pytest.skip(f"browser tests need {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


def test_a_lead_is_followed_up_and_converted_from_its_card(page: Page, login, axe) -> None:
    login(page, "sales1")
    page.goto("/cards/lead/new")
    name = f"Olga Sidorova {uuid.uuid4().hex[:6]}"
    company = f"Vector {uuid.uuid4().hex[:6]}"
    page.fill("#f-contact_name", name)
    page.fill("#f-company_name", company)
    page.fill("#f-inn", "500100732259")  # a sole proprietor's INN: the company card needs no KPP
    page.fill("#f-phones", "+7 912 345-67-89")
    page.click("form button[type=submit]:has-text('Save'), form button[type=submit]:has-text('Сохранить')")
    expect(page).to_have_url(re.compile(r"/cards/lead/\d+$"))
    card = page.url
    # The follow-up rule gave the lead a task for its owner, on the card's timeline.
    expect(page.locator("#timeline .task-row", has_text=name)).to_be_visible()
    axe(page, "a new lead with its follow-up task and the Convert button")

    asked: list[str] = []

    def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    page.locator(".card-actions form[action$='/rules/convert_lead'] button").click()
    expect(page).to_have_url(card)
    assert asked and ("company" in asked[0] or "компанию" in asked[0])
    expect(page.locator(".flash-success")).to_be_visible()
    # Converted: the card (its Conversion tab) links the company and the deal the rule made; Convert is gone.
    expect(page.locator("a[href*='/cards/company/']", has_text=company)).to_be_attached()
    expect(page.locator("a[href*='/cards/deal/']").first).to_be_attached()
    expect(page.locator(".card-actions form[action$='/rules/convert_lead']")).to_have_count(0)
    axe(page, "a converted lead")
