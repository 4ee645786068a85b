"""A list's range filters take numbers and dates as the reader's language writes them ('1 500,5' and '01.03.2027' in
Russian, '1,500.5' in English): text inputs showing the URL's value as typed, read by the field type's typed_text;
a value that cannot be read is the list's filter error. The user administration shows roles by their labels."""

from __future__ import annotations

import re
from datetime import date
from html import unescape

import pytest

from kartoteka.records.model import SYSTEM
from kartoteka.users import start_session

CSRF_RAW = "test-csrf-token"


def sign_in(client, user) -> None:
    """A session for `user` without the password round trip (as tests/test_web.py's)."""
    state = client.application.extensions["kartoteka"]
    with client.session_transaction() as session:
        session.update(_user_id=start_session(state.engine, user.id, state.clock.now()), csrf_token=CSRF_RAW,
                       uid=user.id)


def rows_of(page: str) -> list[str]:
    """The titles of the list's rows."""
    return [unescape(title) for title in re.findall(r'<th scope="row"><a href="[^"]+">([^<]*)</a>', page)]


def box(page: str, name: str) -> str:
    """The <input> of the filter with that name (its attributes as rendered)."""
    found = re.search(rf'<input id="flt-[^"]+"[^>]*name="{re.escape(name)}"[^>]*>', page)
    assert found, name
    return unescape(found.group(0))


@pytest.fixture
def deals(service):
    company = service.create("company", {"name": "Northwind Trading Ltd", "country": "gb"}, SYSTEM)
    for name, amount, closes in [("Small", "1000", date(2027, 2, 1)), ("Middle", "1500.50", date(2027, 3, 1)),
                                 ("Large", "2000", date(2027, 4, 1))]:
        service.create("deal", {"name": name, "company": company.id, "amount": amount, "close_date": closes}, SYSTEM)


def test_a_russian_reader_filters_by_a_decimal_comma_and_a_day_first_date(client, make_user, deals):
    reader, _ = make_user("olga", ["admin"], language="ru")
    sign_in(client, reader)
    response = client.get("/cards/deal/", query_string={"amount__gte": "1 500,5"})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert sorted(rows_of(page)) == ["Large", "Middle"]
    amount = box(page, "amount__gte")
    assert 'type="text"' in amount and 'inputmode="decimal"' in amount and 'value="1 500,5"' in amount
    assert 'placeholder="от"' in amount

    page = client.get("/cards/deal/", query_string={"close_date__gte": "01.03.2027",
                                                     "close_date__lte": "31.03.2027"}).get_data(as_text=True)
    assert rows_of(page) == ["Middle"]
    since = box(page, "close_date__gte")
    assert 'type="text"' in since and 'value="01.03.2027"' in since
    assert 'placeholder="от ДД.ММ.ГГГГ"' in since and 'data-date-format="dd.MM.yyyy"' in since
    assert 'placeholder="до ДД.ММ.ГГГГ"' in box(page, "close_date__lte")
    # The calendar of the card form's dates, one for each bound, named for it.
    assert page.count('aria-label="Выбрать в календаре: Плановая дата закрытия от"') == 1
    assert page.count('<input type="date" class="calendar-picker js-only" tabindex="-1" aria-hidden="true">') == 2

    # Grouped with spaces as Russian writes it (a URL or a pasted number): read, and shown as it came.
    page = client.get("/cards/deal/", query_string={"amount__lte": "1 500,50"}).get_data(as_text=True)
    assert sorted(rows_of(page)) == ["Middle", "Small"] and 'value="1 500,50"' in box(page, "amount__lte")


def test_an_english_reader_filters_by_grouped_numbers_and_iso_dates(client, make_user, deals):
    reader, _ = make_user("emma", ["admin"], language="en")
    sign_in(client, reader)
    page = client.get("/cards/deal/", query_string={"amount__gte": "1,500.5"}).get_data(as_text=True)
    assert sorted(rows_of(page)) == ["Large", "Middle"] and 'value="1,500.5"' in box(page, "amount__gte")
    page = client.get("/cards/deal/", query_string={"close_date__lte": "2027-03-01"}).get_data(as_text=True)
    assert sorted(rows_of(page)) == ["Middle", "Small"]
    assert 'placeholder="to YYYY-MM-DD"' in box(page, "close_date__lte")
    assert 'data-date-format="yyyy-MM-dd"' in box(page, "close_date__lte")


@pytest.mark.parametrize(("language", "key", "typed", "message"), [
    ("ru", "amount__gte", "1500,5x", "Фильтр «amount__gte»: «1500,5x» — не число."),
    ("ru", "amount__gte", "1.500", "«1.500» — неясно: вы имели в виду 1\u00a0500 или 1,5?"),  # asked, never guessed
    ("en", "amount__gte", "1,50,000", "'1,50,000' is unclear"),
    ("ru", "close_date__gte", "31.02.2027", "«31.02.2027» — такой даты нет"),
    ("en", "close_date__gte", "tomorrow", "Filter 'close_date__gte': 'tomorrow' is not a date"),
])
def test_a_value_that_cannot_be_read_is_the_lists_filter_error(client, make_user, deals, language, key, typed,
                                                                  message):
    reader, _ = make_user("reader", ["admin"], language=language)
    sign_in(client, reader)
    response = client.get("/cards/deal/", query_string={key: typed})
    assert response.status_code == 400
    page = unescape(response.get_data(as_text=True))
    error = re.search(r'<p class="form-error" role="alert">(.*?)</p>', page, re.S)
    assert error and message in error.group(1), error and error.group(1)
    # The list is shown unfiltered, and the box still holds what was typed, for the reader to correct.
    assert len(rows_of(page)) == 3
    assert f'value="{typed}"' in box(page, key) and "<details open>" in page


def test_a_saved_view_keeps_the_filters_as_every_reader_reads_them(client, make_user, deals):
    reader, _ = make_user("olga", ["admin"], language="ru")
    sign_in(client, reader)
    page = unescape(client.get("/cards/deal/", query_string={"amount__gte": "1 500,5", "close_date__lte": "01.04.2027"})
                    .get_data(as_text=True))
    saved = re.search(r'<input type="hidden" name="query" value="([^"]*)">', page).group(1)
    assert saved == "amount__gte=1500.5&close_date__lte=2027-04-01"
    # The page's own links keep what was typed: the box shows it again after sorting.
    assert "amount__gte=1+500%2C5" in page


def test_the_board_reads_filters_in_the_readers_language(client, make_user, deals):
    reader, _ = make_user("olga", ["admin"], language="ru")
    sign_in(client, reader)
    board = client.get("/cards/deal/kanban", query_string={"amount__gte": "1 500,5"})
    assert board.status_code == 200
    text = unescape(board.get_data(as_text=True))
    assert "Middle" in text and "Large" in text and "Small" not in text


def test_integer_and_rating_filters_stay_number_inputs(client, make_user):
    reader, _ = make_user("olga", ["admin"], language="ru")
    sign_in(client, reader)
    page = client.get("/cards/ticket/").get_data(as_text=True)
    assert 'type="number" step="1" min="1"' in box(page, "satisfaction__gte")


def test_the_user_administration_shows_role_labels_in_the_readers_language(client, make_user):
    admin, _ = make_user("olga", ["admin"], language="ru")
    rep, _ = make_user("rep", ["sales", "sales_manager"])
    old, _ = make_user("old", ["sales", "retired_role"])
    sign_in(client, admin)
    page = unescape(client.get("/admin/users").get_data(as_text=True))

    def roles(user) -> str:
        row = re.search(rf'<tr id="user-{user.id}">(.*?)</tr>', page, re.S).group(1)
        return re.findall(r"<td>(.*?)</td>", row, re.S)[1].strip()

    assert roles(admin) == "Администратор"
    assert roles(rep) == "Менеджер по продажам, Руководитель отдела продаж"
    assert roles(old) == "retired_role, Менеджер по продажам"  # a role the metadata no longer knows: its code

    english, _ = make_user("emma", ["admin"], language="en")
    sign_in(client, english)
    page = unescape(client.get("/admin/users").get_data(as_text=True))
    assert roles(rep) == "Sales manager, Sales representative"
