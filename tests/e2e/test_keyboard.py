"""Keyboard use and what axe-core cannot see: focus rings and their contrast, changes of context on input,
focus inside date inputs, tab stops and keys of the kanban board, text cut at a field's length limit.

Every page state reached here is checked with axe-core too.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

CHROMIUM = Path("/usr/bin/chromium")  # the same browser conftest.py launches
if not CHROMIUM.exists():
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: CI must install Chromium for the browser tests.", pytrace=False)
    pytest.skip(f"browser tests need {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

# The focus indicator of an element as the browser draws it: the outline's style, width and its colour's
# contrast against the background it is drawn on (the parent's, as the ring sits outside the element;
# half-transparent colours are blended over what is behind them, as the eye sees them).
FOCUS_RING = """(element) => {
  const parse = (text) => {
    const parts = text.match(/rgba?\\(([^)]*)\\)/)[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return { r: parts[0], g: parts[1], b: parts[2], a: parts.length > 3 ? parts[3] : 1 };
  };
  const over = (top, bottom) => ({ r: top.r * top.a + bottom.r * (1 - top.a), g: top.g * top.a + bottom.g * (1 - top.a),
                                   b: top.b * top.a + bottom.b * (1 - top.a), a: 1 });
  const behind = (node) => {
    const layers = [];
    for (let n = node; n; n = n.parentElement) {
      const colour = parse(getComputedStyle(n).backgroundColor);
      if (colour.a > 0) layers.push(colour);
      if (colour.a >= 1) break;
    }
    const dark = matchMedia("(prefers-color-scheme: dark)").matches;
    return layers.reverse().reduce((below, layer) => over(layer, below),
                                   dark ? { r: 0, g: 0, b: 0, a: 1 } : { r: 255, g: 255, b: 255, a: 1 });
  };
  const luminance = (c) => {
    const linear = (v) => { v /= 255; return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * linear(c.r) + 0.7152 * linear(c.g) + 0.0722 * linear(c.b);
  };
  const style = getComputedStyle(element);
  const background = behind(element.parentElement);
  const ring = over(parse(style.outlineColor), background);
  const [light, dark] = [luminance(ring), luminance(background)].sort((x, y) => y - x);
  return { focused: element === document.activeElement, visible: element.matches(":focus-visible"),
           style: style.outlineStyle, width: parseFloat(style.outlineWidth),
           contrast: Math.round((light + 0.05) / (dark + 0.05) * 100) / 100 };
}"""


LANGUAGE = "header form[action='/language']"


def focus_ring(element: Locator) -> dict:
    return element.evaluate(FOCUS_RING)


def _focus_by_keyboard(page: Page, element: Locator) -> None:
    """Focus the element as a keyboard user does (the page has seen a key, so :focus-visible applies)."""
    page.keyboard.press("Shift")
    element.focus()


def _assert_ring(element: Locator, name: str) -> None:
    ring = focus_ring(element)
    assert ring["focused"] and ring["visible"], (name, ring)
    assert ring["style"] != "none" and ring["width"] >= 2, (name, ring)
    assert ring["contrast"] >= 3, (name, ring)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_focus_ring_has_3_to_1_contrast_on_every_kind_of_control(page: Page, login, axe, scheme: str) -> None:
    page.emulate_media(color_scheme=scheme)
    login(page, "sales_manager")
    page.goto("/cards/deal/?stage__in=new")  # a filter is set: the filters are open
    controls = {
        "link in the header": page.locator(".entity-nav a").first,
        "link in the table": page.locator("table.records tbody th a").first,
        "search input": page.locator("#q"),
        "select of a filter": page.locator(".filters select").first,
        "checkbox of a filter": page.locator(".filters input[type=checkbox]").first,
        "primary button": page.locator(".filter-actions button[type=submit]"),
        "outline button link": page.locator(".filter-actions [role=button]"),
        "secondary button": page.locator(".saved-views button[type=submit]"),
    }
    for name, element in controls.items():
        _focus_by_keyboard(page, element)
        _assert_ring(element, name)
    axe(page, f"deal list with focus on a button ({scheme})")

    page.goto("/cards/deal/new")
    for name, selector in {"text input": "#f-name", "select": "#f-stage",
                           "checkbox": "#card-form input[type=checkbox] >> visible=true",
                           "submit button": "#card-form button[type=submit]"}.items():
        element = page.locator(selector).first
        _focus_by_keyboard(page, element)
        _assert_ring(element, name)

    page.goto("/cards/deal/kanban")
    card = page.locator(".kanban-card a").first
    _focus_by_keyboard(page, card)
    _assert_ring(card, "kanban card link")
    axe(page, f"kanban with focus on a card ({scheme})")


def _sign_in(page: Page, username: str) -> None:
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", "kartoteka-demo")
    page.click("form[action='/login'] button[type=submit]")
    expect(page).to_have_url(re.compile(r"/cards/$"))


def test_language_changes_only_on_an_explicit_action(page: Page, login, axe) -> None:
    """WCAG 3.2.2: moving through the switch with arrow keys changes nothing; pressing its button does."""
    navigations: list[str] = []
    login(page, "marketing1")  # works in English; nobody else's tests depend on this user's language
    page.goto("/cards/lead/")
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    expect(page.locator("html")).to_have_attribute("lang", "en")
    first = page.locator(f"{LANGUAGE} :is(button, select, input:not([type=hidden]))").first
    _focus_by_keyboard(page, first)
    for key in ("ArrowDown", "ArrowDown", "ArrowUp", "ArrowRight", "End"):
        page.keyboard.press(key)
    page.wait_for_timeout(300)
    assert navigations == [], navigations
    expect(page.locator("html")).to_have_attribute("lang", "en")
    axe(page, "list with focus in the language switch")

    russian = page.locator(f"{LANGUAGE} button[value=ru]")
    _focus_by_keyboard(page, russian)
    _assert_ring(russian, "language button")
    russian.press("Enter")
    expect(page.locator("html")).to_have_attribute("lang", "ru")
    expect(page).to_have_url(re.compile(r"/cards/lead/$"))  # back on the same page
    axe(page, "list after switching to Russian")
    page.locator(f"{LANGUAGE} button[value=en]").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")


def test_language_switch_works_without_javascript(browser: Browser, live_server: str) -> None:
    context = browser.new_context(base_url=live_server, java_script_enabled=False, locale="en-US")
    try:
        page = context.new_page()
        _sign_in(page, "marketing1")
        page.goto("/cards/contact/")
        page.locator(f"{LANGUAGE} button[value=ru]").click()
        expect(page.locator("html")).to_have_attribute("lang", "ru")
        expect(page).to_have_url(re.compile(r"/cards/contact/$"))
        page.locator(f"{LANGUAGE} button[value=en]").click()
        expect(page.locator("html")).to_have_attribute("lang", "en")
    finally:
        context.close()


def _tab_through_date(page: Page, text_selector: str, button_selector: str, what: str) -> None:
    """Keyboard focus on a date's text, then Tab to its calendar button: both show the ring; the button is 24 px+."""
    text = page.locator(text_selector)
    text.scroll_into_view_if_needed()
    _focus_by_keyboard(page, text)
    _assert_ring(text, what)
    page.keyboard.press("Tab")
    button = page.locator(button_selector)
    _assert_ring(button, f"{what}'s calendar button")
    width, height = _size(button)
    assert width >= 24 and height >= 24, (width, height)


def test_date_input_shows_focus_on_its_parts_and_its_calendar_button(page: Page, login, axe) -> None:
    """A card's date is typed as text with a calendar button beside it: each shows the ring and the button is at least
    24 px square. A list's date filter is the same text and button."""
    login(page, "sales_manager")
    page.goto("/cards/deal/new")
    _tab_through_date(page, "#f-close_date", "#field-close_date button[data-calendar]", "date text input")
    axe(page, "deal form, focus on a date's calendar button")

    page.goto("/cards/deal/?close_date__gte=")
    _tab_through_date(page, "#flt-close_date-from", "#flt-close_date-from + button[data-calendar]", "date filter")
    page.keyboard.press("Tab")  # the hidden picker is no tab stop: the next bound is
    expect(page.locator("#flt-close_date-to")).to_be_focused()
    axe(page, "deal list, focus on a date filter's calendar button")


LEAD_BOARD = "/cards/lead/kanban"  # the deal board is test_browser.py's; these tests move leads only
CARD_LINK = ".kanban-card > a"


def _focused(page: Page) -> dict:
    return page.evaluate("""() => {
      const e = document.activeElement, card = e && e.closest(".kanban-card");
      return { tag: e.tagName, card: card ? card.dataset.id : null, link: e.matches(".kanban-card > a"),
               column: e.closest(".kanban-col")?.dataset.stage ?? null, inBoard: !!e.closest(".kanban") };
    }""")


def _size(element: Locator) -> tuple[float, float]:
    box = element.bounding_box()
    assert box, element
    return box["width"], box["height"]


def test_kanban_board_is_one_tab_stop_per_card_with_arrow_keys_between_cards_and_columns(
        page: Page, login, axe) -> None:
    login(page, "sales_manager")
    page.goto(LEAD_BOARD)
    expect(page.locator(CARD_LINK).first).to_be_visible()
    axe(page, "lead board")

    # Tab from the last control before the board: one stop on the board's cards, then out (or to a "+N" link).
    _focus_by_keyboard(page, page.locator(".list-actions a").last)
    stops: list[dict] = []
    for _ in range(300):
        page.keyboard.press("Tab")
        where = _focused(page)
        if not where["inBoard"]:
            break
        stops.append(where)
    in_cards = [s for s in stops if s["card"]]
    assert len(in_cards) == 1 and in_cards[0]["link"], stops

    # Arrow keys: down and up inside a column, right and left between columns (empty ones are skipped).
    columns = page.locator(".kanban-col")
    stages = columns.evaluate_all("cs => cs.map((c) => [c.dataset.stage, c.querySelectorAll('.kanban-card').length])")
    filled = [stage for stage, count in stages if count]
    tall = next(stage for stage, count in stages if count >= 2)
    first = page.locator(f".kanban-col[data-stage='{tall}'] {CARD_LINK}").first
    second = page.locator(f".kanban-col[data-stage='{tall}'] {CARD_LINK}").nth(1)
    _focus_by_keyboard(page, first)
    page.keyboard.press("ArrowDown")
    expect(second).to_be_focused()
    page.keyboard.press("ArrowUp")
    expect(first).to_be_focused()
    page.keyboard.press("End")
    expect(page.locator(f".kanban-col[data-stage='{tall}'] {CARD_LINK}").last).to_be_focused()
    page.keyboard.press("Home")
    expect(first).to_be_focused()
    at = filled.index(tall)
    if at + 1 < len(filled):
        page.keyboard.press("ArrowRight")
        assert _focused(page)["column"] == filled[at + 1], _focused(page)
        page.keyboard.press("ArrowLeft")
        assert _focused(page)["column"] == tall, _focused(page)
    if at > 0:
        page.keyboard.press("ArrowLeft")
        assert _focused(page)["column"] == filled[at - 1], _focused(page)
    # Roving tabindex: the card with focus is the board's one stop.
    focused_card = _focused(page)["card"]
    assert page.locator(f"{CARD_LINK}[tabindex='0']").count() == 1
    assert page.locator(f"#card-{focused_card} > a").get_attribute("tabindex") == "0"
    axe(page, "lead board after moving focus with the arrow keys")


def test_kanban_card_moves_by_keyboard_and_its_targets_are_large_enough(page: Page, login, axe) -> None:
    login(page, "sales_manager")
    page.goto(LEAD_BOARD)
    source = page.locator(".kanban-col[data-stage='new']")
    target = page.locator(".kanban-col[data-stage='in_progress']")
    before_source, before_target = (int(c.locator("[data-count]").inner_text()) for c in (source, target))
    card = source.locator(".kanban-card:has(form)").last
    card_id = card.get_attribute("data-id")
    link = card.locator("> a")

    for element, name in ((link, "card link"), (page.locator(".kanban .more").first, "more link")):
        if element.count():
            width, height = _size(element)
            assert width >= 24 and height >= 24, (name, width, height)

    # M opens the move form with focus in it; Escape closes it and focus goes back to the card.
    _focus_by_keyboard(page, link)
    page.keyboard.press("m")
    select = card.locator("form select")
    expect(select).to_be_visible()
    expect(select).to_be_focused()
    for element, name in ((select, "move select"), (card.locator("form button[type=submit]"), "move button"),
                          (card.locator("button[aria-expanded]"), "move toggle")):
        width, height = _size(element)
        assert width >= 44 and height >= 44, (name, width, height)  # WCAG 2.5.8 asks 24; 44 as 2.5.5 does
    axe(page, "lead board with a card's move form open")
    page.keyboard.press("Escape")
    expect(select).to_be_hidden()
    expect(link).to_be_focused()

    # Shift+ArrowRight moves the card to the next column; focus is back on it there.
    with page.expect_navigation():
        page.keyboard.press("Shift+ArrowRight")
    moved = target.locator(f"#card-{card_id}")
    expect(moved).to_have_count(1)
    expect(moved.locator("> a")).to_be_focused()
    expect(source.locator("[data-count]")).to_have_text(str(before_source - 1))
    expect(target.locator("[data-count]")).to_have_text(str(before_target + 1))
    axe(page, "lead board after a keyboard move")
    with page.expect_navigation():
        page.keyboard.press("Shift+ArrowLeft")  # and back
    expect(source.locator(f"#card-{card_id} > a")).to_be_focused()


def test_kanban_move_form_is_on_every_card_without_javascript(browser: Browser, live_server: str) -> None:
    context = browser.new_context(base_url=live_server, java_script_enabled=False, locale="en-US")
    try:
        page = context.new_page()
        _sign_in(page, "sales_manager")
        page.goto(LEAD_BOARD)
        cards = page.locator(".kanban-col[data-stage='in_progress'] .kanban-card:has(form)")
        expect(cards.first.locator("form select")).to_be_visible()
        card = cards.last
        card_id = card.get_attribute("data-id")
        for element, name in ((card.locator("form select"), "select"), (card.locator("form button"), "button")):
            width, height = _size(element)
            assert width >= 24 and height >= 24, (name, width, height)
        expect(card.locator("button[aria-expanded]")).to_be_hidden()  # the toggle needs JavaScript
        card.locator("form select").select_option("qualified")
        card.locator("form button[type=submit]").click()
        expect(page.locator(f".kanban-col[data-stage='qualified'] #card-{card_id}")).to_have_count(1)
    finally:
        context.close()


def test_kanban_without_its_scripts_has_no_axe_violation(page: Page, login, axe) -> None:
    """The board as a browser without JavaScript shows it (move forms on every card), checked with axe."""
    login(page, "sales_manager")
    page.route(re.compile(r"/(static/app\.js|vendor/htmx\.min\.js)(\?.*)?$"), lambda route: route.abort())
    page.goto(LEAD_BOARD)
    expect(page.locator(".kanban-card form select").first).to_be_visible()
    axe(page, "lead board without JavaScript")


def test_text_over_its_length_limit_is_not_cut_silently(page: Page, login, axe) -> None:
    """The browser's maxlength cuts typed and pasted text: a counter says how much is used, a live message when
    the limit is reached or text was cut."""
    login(page, "sales1")
    page.goto("/cards/deal/new")
    name, counter, message = page.locator("#f-name"), page.locator("#c-name"), page.locator("#cm-name")
    limit = int(name.get_attribute("maxlength") or 0)
    assert limit == 200
    assert "c-name" in (name.get_attribute("aria-describedby") or "").split()
    expect(counter).to_contain_text(f"0/{limit}")
    assert message.get_attribute("role") == "status" or message.get_attribute("aria-live") == "polite"
    expect(message).to_be_empty()

    name.fill("x" * 120)
    expect(counter).to_contain_text(f"120/{limit}")
    expect(message).to_be_empty()
    name.fill("y" * 300)  # pasted or typed past the limit: the browser keeps 200
    expect(name).to_have_value("y" * limit)
    expect(counter).to_contain_text(f"{limit}/{limit}")
    expect(message).to_contain_text(str(limit))
    expect(message).to_contain_text("300")  # how long the text was
    axe(page, "deal form with text cut at the limit")
    name.press("End")
    name.press("Backspace")
    expect(counter).to_contain_text(f"{limit - 1}/{limit}")
    expect(message).to_be_empty()
    name.press("z")
    name.press("z")  # one more than fits: not added, and said so
    expect(name).to_have_value("y" * (limit - 1) + "z")
    expect(message).to_contain_text(str(limit))


def _fits(element: Locator) -> bool:
    """The element's text stays inside its box, and its box inside <main>."""
    return element.evaluate("""(e) => {
      const main = document.querySelector("main").getBoundingClientRect(), box = e.getBoundingClientRect();
      return e.scrollWidth <= e.clientWidth + 1 && box.right <= main.right + 1;
    }""")


def _page_fits(page: Page) -> bool:
    """No sideways scrolling of the page, and nothing cut off at <main>'s edge (main clips what overflows)."""
    return page.evaluate("""() => {
      const main = document.querySelector("main");
      return document.documentElement.scrollWidth <= document.documentElement.clientWidth
        && main.scrollWidth <= main.clientWidth + 1;
    }""")


def test_a_long_unbroken_name_keeps_list_card_and_board_in_shape(page: Page, login, axe) -> None:
    login(page, "support1")
    token = uuid.uuid4().hex[:8]
    subject = f"LONG{token}" + "Ш" * 288  # 300 characters without a space (the subject's max_length)
    page.goto("/cards/ticket/new")
    page.fill("#f-subject", subject)
    page.fill("#f-description", "A subject with no place to break a line.")
    panel = page.locator("#f-reporter_email").evaluate("e => e.closest('[role=tabpanel]').id")
    page.click(f"[role=tab][aria-controls='{panel}']")
    page.fill("#f-reporter_email", "long.name@example.com")
    page.click("#card-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/cards/ticket/\d+$"))
    card_url = page.url

    # Nothing sticks out of the page or of its own box: the heading and breadcrumb wrap anywhere.
    for selector in ("main h1", "main nav li:last-child"):
        assert _fits(page.locator(selector).first), selector
    assert _page_fits(page), "the card page scrolls sideways"
    axe(page, "ticket card with a long unbroken subject")

    page.goto(f"/cards/ticket/?q={token}")
    cell = page.locator("table.records tbody th").first
    expect(cell).to_contain_text(f"LONG{token}")
    assert _fits(cell.locator("a")), "the name sticks out of its cell"
    wrap = page.locator(".table-wrap")
    width, wrap_width = _size(cell)[0], _size(wrap)[0]
    assert width <= wrap_width * 0.45, (width, wrap_width)  # one name does not take the table
    assert wrap.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), "the table scrolls sideways"
    assert _page_fits(page), "the list page scrolls sideways"
    axe(page, "ticket list with a long unbroken subject")

    page.goto(f"/cards/ticket/kanban?q={token}")
    board_card = page.locator(f".kanban-card[data-id='{card_url.rsplit('/', 1)[1]}']")
    expect(board_card).to_have_count(1)
    assert _fits(board_card.locator("> a")), "the name sticks out of its kanban card"
    column = board_card.locator("xpath=ancestor::section[contains(@class, 'kanban-col')]")
    assert _size(board_card)[0] <= _size(column)[0], "the kanban card is wider than its column"
    axe(page, "ticket board with a long unbroken subject")
