"""What a user sees and does in a real browser: sign-in, the live deal form, role-hidden fields, kanban.

Several demo users work in Russian, so the tests check ids, attributes, URLs and values, not wording.
All tests share one seeded database; each one picks records the others do not change.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

CHROMIUM = Path("/usr/bin/chromium")  # the same browser conftest.py launches
if not CHROMIUM.exists():
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: CI must install Chromium (apt-get install chromium) for the browser "
                    "tests; they are not skipped in CI.", pytrace=False)
    pytest.skip(f"browser tests need {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

SAVE = "#card-form button[type=submit]"
CARD_URL = re.compile(r"/cards/deal/(\d+)$")


def _count(column: Locator) -> int:
    return int(column.locator("[data-count]").inner_text())


# Grab a card by its corner and drop it on a column's heading: the page must not scroll during the drag, or
# Chromium starts it from whatever element has moved under the pressed mouse.
GRAB, DROP = {"x": 8, "y": 8}, {"x": 24, "y": 16}


def _first_deal(page: Page) -> str:
    """The path of the first deal in the list the user sees."""
    page.goto("/cards/deal/")
    href = page.locator("table.records tbody th a").first.get_attribute("href")
    assert href and CARD_URL.search(href), href
    return href


def test_sign_in_wrong_password_then_right(page: Page, live_server: str, login) -> None:
    page.goto("/login")
    page.fill("#username", "sales2")
    page.fill("#password", "not-the-password")
    page.click("form[action='/login'] button[type=submit]")
    expect(page.locator("#login-error")).to_be_visible()
    expect(page.locator("#login-error")).not_to_be_empty()
    expect(page.locator("#password")).to_have_attribute("aria-invalid", "true")
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.locator("#username")).to_have_value("sales2")  # kept, only the password is typed again

    login(page, "sales2")
    expect(page).to_have_url(f"{live_server}/cards/")
    expect(page.locator("header .who")).to_have_text("sales2")


def _title_of(picker_text: str) -> str:
    """The record's title in a picker's text ("Title — details #12" or "Title #12")."""
    return re.sub(r" #\d+$", "", picker_text).split(" — ")[0]


def test_create_deal_with_the_reference_picker(page: Page, login) -> None:
    login(page, "sales1")
    # A company the user can read: the first of the company list; type a piece of its name.
    page.goto("/cards/company/")
    company = page.locator("table.records tbody th a").first.inner_text().strip()
    word = max(re.findall(r"\w+", company), key=len)
    fragment = word[:5]

    page.goto("/cards/deal/new")
    name = f"E2E deal {uuid.uuid4().hex[:8]}"
    page.fill("#f-name", name)
    page.locator("#f-company").press_sequentially(fragment)
    # Focusing the picker fetches every company; wait for the answer to what was typed.
    page.wait_for_function(
        """([selector, text]) => {
             const options = Array.from(document.querySelectorAll(selector));
             return options.length > 0 && options.every((o) => o.value.toLowerCase().includes(text));
           }""", arg=["#dl-company option", fragment.lower()])
    options = page.locator("#dl-company option").evaluate_all(
        "options => options.map((o) => [o.value, o.dataset.id])")
    values = [value for value, _ in options]
    # "Title — city, INN" (the company card's `picker:`); the record's id rides beside it, never in the text
    # (a number ends a text only to tell twins with the same details apart).
    assert any(" — " in v for v in values), values
    assert all(record_id.isdigit() for _, record_id in options), options
    titles = [_title_of(v) for v in values]
    assert not any(re.search(r" #\d+$", v) for v, title in zip(values, titles, strict=True) if titles.count(title) == 1)
    picked, picked_id = next(((v, i) for v, i in options if _title_of(v) == company), options[0])
    page.fill("#f-company", picked)
    expect(page.locator("#card-form input[type=hidden][name=company]")).to_have_value(picked_id)
    page.locator("#f-company").press_sequentially("x")  # typed over: the id no longer holds
    expect(page.locator("#card-form input[type=hidden][name=company]")).to_have_value("")
    page.fill("#f-company", picked)
    expect(page.locator("#card-form input[type=hidden][name=company]")).to_have_value(picked_id)
    page.click(SAVE)

    expect(page).to_have_url(CARD_URL)
    expect(page.locator("h1")).to_have_text(name)
    expect(page.locator("#view-name")).to_contain_text(name)
    expect(page.locator("#view-company")).to_contain_text(_title_of(picked))
    page.goto(f"{page.url}/edit")  # the picker's input holds the company as the suggestion wrote it, not its number
    expect(page.locator("#f-company")).to_have_value(picked)
    expect(page.locator("#card-form input[type=hidden][name=company]")).to_have_value(picked_id)


def test_formula_updates_while_typing_without_losing_focus(page: Page, login) -> None:
    login(page, "sales1")
    page.goto("/cards/deal/new")
    calc = page.locator("#calc-expected_revenue")
    amount, probability = page.locator("#f-amount"), page.locator("#f-probability")
    amount.press_sequentially("200000")
    expect(calc).to_contain_text(re.compile(r"20\D?000"))  # probability defaults to 10 %
    probability.click()
    probability.press("ControlOrMeta+a")
    probability.press_sequentially("35")

    expect(calc).to_contain_text(re.compile(r"70\D?000"))  # 200 000 × 35 %
    expect(probability).to_be_focused()
    expect(probability).to_have_value("35")
    expect(amount).to_have_value("200000")


def test_lost_stage_reveals_lost_reason(page: Page, login) -> None:
    login(page, "sales1")
    page.goto("/cards/deal/new")
    lost_reason = page.locator("#field-lost_reason")
    expect(lost_reason).to_be_hidden()
    expect(lost_reason).to_have_attribute("hidden", "")

    page.select_option("#f-stage", "lost")
    expect(lost_reason).to_be_visible()
    expect(page.locator("#field-lost_comment")).to_be_visible()

    page.select_option("#f-stage", "new")
    expect(lost_reason).to_be_hidden()


def test_empty_required_name_shows_error_and_keeps_input(page: Page, login) -> None:
    login(page, "sales1")
    page.goto("/cards/deal/new")
    page.fill("#f-amount", "5000")
    page.fill("#f-next_step", "Call back on Monday")
    page.select_option("#f-deal_type", "renewal")
    page.click(SAVE)

    expect(page.locator("#e-name")).not_to_be_empty()
    expect(page.locator("#f-name")).to_have_attribute("aria-invalid", "true")
    expect(page).to_have_url(re.compile(r"/cards/deal/new$"))
    expect(page.locator("#f-amount")).to_have_value("5000")
    expect(page.locator("#f-next_step")).to_have_value("Call back on Monday")
    expect(page.locator("#f-deal_type")).to_have_value("renewal")


@pytest.mark.parametrize(("username", "shown"), [("sales_manager", 0), ("finance1", 1)])
def test_margin_is_shown_only_to_finance(page: Page, login, username: str, shown: int) -> None:
    login(page, username)
    card = _first_deal(page)
    page.goto(card)
    expect(page.locator("#view-name")).to_have_count(1)  # the card is there ...
    expect(page.locator("#view-margin")).to_have_count(shown)  # ... with or without the margin

    page.goto(f"{card}/edit")
    expect(page.locator("#f-name")).to_have_count(1)
    expect(page.locator("#f-margin")).to_have_count(shown)


def test_kanban_drag_moves_a_card(page: Page, login) -> None:
    login(page, "sales_manager")
    page.goto("/cards/deal/kanban")
    source = page.locator(".kanban-col[data-stage='new']")
    target = page.locator(".kanban-col[data-stage='qualification']")
    before_source, before_target = _count(source), _count(target)
    card = source.locator(".kanban-card").first
    card_id = card.get_attribute("data-id")

    with page.expect_navigation():  # app.js reloads the board once the server has moved the card
        card.drag_to(target, source_position=GRAB, target_position=DROP)
    page.reload()

    expect(target.locator(f".kanban-card[data-id='{card_id}']")).to_have_count(1)
    expect(source.locator(f".kanban-card[data-id='{card_id}']")).to_have_count(0)
    expect(source.locator("[data-count]")).to_have_text(str(before_source - 1))
    expect(target.locator("[data-count]")).to_have_text(str(before_target + 1))


def test_kanban_drag_to_lost_opens_the_form(page: Page, login) -> None:
    login(page, "sales_manager")
    page.goto("/cards/deal/kanban")
    lost = page.locator(".kanban-col[data-stage='lost']")
    lost.scroll_into_view_if_needed()  # the last column is off to the right at 1360 px; negotiation stays in view
    card = page.locator(".kanban-col[data-stage='negotiation'] .kanban-card").first
    card_id = card.get_attribute("data-id")

    card.drag_to(lost, source_position=GRAB, target_position=DROP)

    expect(page).to_have_url(re.compile(rf"/cards/deal/{card_id}/edit\?stage=lost$"))
    expect(page.locator("#e-lost_reason")).not_to_be_empty()
    expect(page.locator("#field-lost_reason")).to_be_visible()
    expect(page.locator("#f-stage")).to_have_value("lost")

    page.select_option("#f-lost_reason", "price")  # give the reason: the move goes through
    page.click(SAVE)
    expect(page).to_have_url(re.compile(rf"/cards/deal/{card_id}$"))
    expect(page.locator("#view-lost_reason")).to_have_count(1)


# --- rating (kartoteka/metadata/types/rating.py): the ticket's satisfaction ---------------------------------


def _resolved_ticket(page: Page, index: int) -> str:
    """The path of a resolved ticket support1 may change (each test takes its own)."""
    page.goto("/cards/ticket/?status__in=resolved&sort=id")
    href = page.locator("table.records tbody th a").nth(index).get_attribute("href")
    assert href and re.search(r"/cards/ticket/\d+$", href), href
    return href


def test_rating_is_chosen_by_keyboard_and_shown_as_stars(page: Page, login, axe) -> None:
    login(page, "support1")
    ticket = _resolved_ticket(page, 0)
    page.goto(f"{ticket}/edit")
    group = page.locator("#f-satisfaction")
    expect(group).to_have_attribute("role", "radiogroup")
    page.locator("#f-satisfaction-0").check()  # start from "No rating"
    page.keyboard.press("Shift")  # a keyboard user: :focus-visible applies
    page.locator("#f-satisfaction-0").focus()
    for _ in range(4):
        page.keyboard.press("ArrowRight")  # one star more each time
    expect(page.locator("#f-satisfaction-4")).to_be_checked()
    expect(page.locator("#f-satisfaction-4")).to_be_focused()
    ring = page.locator("label[for=f-satisfaction-4]").evaluate(
        "label => getComputedStyle(label).outlineStyle + ' ' + getComputedStyle(label).outlineWidth")
    assert ring.startswith("solid") and not ring.endswith(" 0px"), ring
    filled = page.locator("#f-satisfaction label .star").evaluate_all(
        "stars => stars.map((s) => getComputedStyle(s, '::before').content)")
    assert filled == ['"★"'] * 4 + ['"☆"'], filled
    axe(page, "ticket form with a rating chosen by keyboard")
    page.click(SAVE)

    expect(page).to_have_url(re.compile(r"/cards/ticket/\d+$"))
    stars = page.locator("#view-satisfaction .stars")
    expect(stars).to_contain_text(re.compile(r"4 (of|из) 5"))  # what a screen reader reads; CSS draws the stars
    expect(stars.locator(".star.on")).to_have_count(4)
    axe(page, "ticket card with its rating")
    page.goto("/cards/ticket/kanban")
    expect(page.locator(f"#card-{ticket.rsplit('/', 1)[1]} .stars")).to_contain_text(re.compile(r"4 (of|из) 5"))


def test_rating_is_chosen_without_javascript(browser, live_server: str) -> None:
    context = browser.new_context(base_url=live_server, java_script_enabled=False, locale="ru-RU")
    try:
        page = context.new_page()
        page.goto("/login")
        page.fill("#username", "support1")
        page.fill("#password", "kartoteka-demo")
        page.click("form[action='/login'] button[type=submit]")
        ticket = _resolved_ticket(page, 1)
        page.goto(f"{ticket}/edit")
        page.locator("label[for=f-satisfaction-2]").click()  # the second star
        page.click(SAVE)
        expect(page).to_have_url(re.compile(r"/cards/ticket/\d+$"))
        expect(page.locator("#view-satisfaction .stars")).to_contain_text(re.compile(r"2 (of|из) 5"))
    finally:
        context.close()


def _pick(picker: Locator, value: str) -> None:
    """Choose `value` in a calendar as the browser's picker does: it sets its input and fires input and change.

    Headless Chromium opens showPicker()'s popup where Playwright cannot click it, so the pick is played here."""
    picker.evaluate("""(p, value) => {
      p.value = value;
      p.dispatchEvent(new Event("input", { bubbles: true }));
      p.dispatchEvent(new Event("change", { bubbles: true }));
    }""", value)


def test_a_russian_reader_types_and_picks_dates_in_the_russian_order(page: Page, login, axe) -> None:
    """sales1 works in Russian in an English browser (en-US): dates read 01.03.2025, not 03/01/2025, and a date
    picked in the calendar is written so; the live check and the save read it."""
    failures: list[str] = []
    page.on("pageerror", lambda error: failures.append(str(error)))
    login(page, "sales1")
    page.goto(f"{_first_deal(page)}/edit")
    assert re.fullmatch(r"(\d{2}\.\d{2}\.\d{4})?", page.locator("#f-close_date").input_value())

    page.goto("/cards/company/")
    company_link = page.locator("table.records tbody th a").first
    company = f"{company_link.inner_text().strip()} #{company_link.get_attribute('href').rsplit('/', 1)[1]}"
    page.goto("/cards/deal/new")
    text, button = page.locator("#f-close_date"), page.locator("#field-close_date button[data-calendar]")
    picker = page.locator("#field-close_date .calendar-picker")
    expect(text).to_have_attribute("type", "text")
    expect(text).to_have_attribute("placeholder", "ДД.ММ.ГГГГ")
    expect(button).to_be_visible()
    expect(picker).to_have_attribute("aria-hidden", "true")

    # The typed date goes to the picker as the button opens it.
    text.fill("1.6.2031")
    button.click()
    expect(picker).to_have_value("2031-06-01")
    page.keyboard.press("Escape")

    # A picked date is written in the reader's order, and the live check reads it: a past close date is refused.
    _pick(picker, "2020-01-15")
    expect(text).to_have_value("15.01.2020")
    expect(text).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#e-close_date")).not_to_be_empty()
    _pick(picker, "2031-07-20")
    expect(text).to_have_value("20.07.2031")
    expect(page.locator("#e-close_date")).to_be_empty()
    expect(text).not_to_have_attribute("aria-invalid", "true")
    axe(page, "new deal form with a date picked in the calendar")

    page.fill("#f-name", f"E2E date {uuid.uuid4().hex[:8]}")
    page.fill("#f-company", company)
    page.click(SAVE)
    expect(page).to_have_url(CARD_URL)
    expect(page.locator("#view-close_date")).to_contain_text("20.07.2031")
    page.goto(f"{page.url}/edit")
    expect(page.locator("#f-close_date")).to_have_value("20.07.2031")
    assert failures == [], failures


def test_a_russian_reader_filters_a_list_by_a_decimal_comma_and_a_picked_date(page: Page, login, axe) -> None:
    """A list's range filters read what the reader writes: sales1 (Russian) types 1500,5 into «Сумма от» (a number
    input dropped the comma: 15005) and picks a day in the filter's calendar (written 01.03.2031, not the browser's
    mm/dd/yyyy); after Apply the boxes show what was typed and the list is the one the plain values give."""
    failures: list[str] = []
    page.on("pageerror", lambda error: failures.append(str(error)))
    login(page, "sales1")
    page.goto("/cards/deal/?amount__gte=")  # a filter in the URL: the panel is open
    amount, until = page.locator("#flt-amount-from"), page.locator("#flt-close_date-to")
    expect(amount).to_have_attribute("type", "text")
    expect(amount).to_have_attribute("inputmode", "decimal")
    expect(until).to_have_attribute("placeholder", "до ДД.ММ.ГГГГ")
    amount.fill("1500,5")
    expect(amount).to_have_value("1500,5")
    page.locator("#flt-close_date-to + button[data-calendar]").click()
    page.keyboard.press("Escape")
    _pick(page.locator("#flt-close_date-to ~ .calendar-picker"), "2031-03-01")
    expect(until).to_have_value("01.03.2031")
    axe(page, "deal list, a date picked in a filter's calendar")
    page.click(".filter-actions button[type=submit]")
    expect(page).to_have_url(re.compile(r"amount__gte=1500%2C5.*close_date__lte=01\.03\.2031"))
    expect(amount).to_have_value("1500,5")
    expect(until).to_have_value("01.03.2031")
    expect(page.locator(".form-error")).to_have_count(0)
    total = page.locator("#total").inner_text()
    page.goto("/cards/deal/?amount__gte=1500.5&close_date__lte=2031-03-01")
    expect(page.locator("#total")).to_have_text(total)
    assert failures == [], failures
