"""Screenshots of the main pages on demo data: .venv/bin/python scripts/screenshots.py [--out docs/screenshots].

Starts a live server on a fresh demo database in a temporary directory (kartoteka.devserver), signs in as
sales_manager through the login form, switches the interface to English with the header language form and
saves PNGs at 1360x900: the login page, the deal list, a deal card (whole page), its edit form, a new deal
submitted empty, the kanban board, a company card with its related lists (whole page) and the deal list in
Russian. Needs Chromium (Debian: apt-get install chromium) and `make assets` for htmx and Pico.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

from kartoteka.demo import DEMO_PASSWORD
from kartoteka.devserver import start_demo_server

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1360, "height": 900}
USER = "sales_manager"


def switch_language(page: Page, language: str) -> None:
    """Press the language's button in the header; the form comes back to the same page."""
    if page.locator("html").get_attribute("lang") == language:
        return
    with page.expect_navigation():
        page.click(f"header form[action='/language'] button[value={language}]")
    expect(page.locator("html")).to_have_attribute("lang", language)


def take(page: Page, out: Path, name: str, *, full_page: bool = False) -> None:
    page.wait_for_load_state("networkidle")
    path = out / name
    page.screenshot(path=str(path), full_page=full_page)
    print(f"saved {path}")


def shoot(base_url: str, out: Path, chromium: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(base_url=base_url, viewport=VIEWPORT, locale="en-US")
            context.set_default_timeout(15_000)
            try:
                page = context.new_page()
                _pages(page, out)
            finally:
                context.close()
        finally:
            browser.close()


def _pages(page: Page, out: Path) -> None:
    page.goto("/login")
    take(page, out, "login.png")
    page.fill("#username", USER)
    page.fill("#password", DEMO_PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    expect(page).to_have_url(re.compile(r"/cards/$"))
    switch_language(page, "en")

    page.goto("/cards/deal/")
    take(page, out, "list.png")
    card = page.locator("table.records tbody th a").first.get_attribute("href")
    assert card, "the demo data has no deals"

    page.goto(card)
    take(page, out, "card.png", full_page=True)
    company = page.locator("#view-company a").first.get_attribute("href")

    page.goto(f"{card}/edit")
    take(page, out, "form.png")

    page.goto("/cards/deal/new")
    page.click("#card-form button[type=submit]")
    expect(page.locator("#e-name")).not_to_be_empty()
    take(page, out, "form-errors.png")

    page.goto("/cards/deal/kanban")
    take(page, out, "kanban.png")

    if company:
        page.goto(company)
        expect(page.locator("#related-title")).to_be_visible()
        take(page, out, "company.png", full_page=True)
    else:
        print("the deal card has no company link: company.png skipped", file=sys.stderr)

    page.goto("/cards/deal/")
    switch_language(page, "ru")
    take(page, out, "list-ru.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots",
                        help="directory for the PNG files (default: docs/screenshots)")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium executable")
    args = parser.parse_args(argv)
    if not Path(args.chromium).exists():
        parser.error(f"{args.chromium} not found: install Chromium (apt-get install chromium) or pass --chromium")
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kartoteka-screenshots-") as instance:
        base_url, stop = start_demo_server(Path(instance))
        try:
            shoot(base_url, out, args.chromium)
        finally:
            stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
