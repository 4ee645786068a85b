"""Display text of typed field values in English and Russian."""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from kartoteka.metadata.fieldtypes import FIELD_TYPES
from kartoteka.metadata.loader import load_metadata
from kartoteka.metadata.model import FieldDef, Label, Metadata
from kartoteka.web.formatting import (
    currency_symbol,
    format_date,
    format_datetime,
    format_money,
    format_number,
    format_percent,
    format_value,
)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
NB = "\u00a0"  # no-break space: between a number and its currency or percent sign
TH = "\u00a0"  # Russian thousands separator: a no-break space (CLDR, as Babel writes it)
NNB = "\u202f"  # narrow no-break space: before AM/PM in English times (CLDR)


@functools.cache
def metadata() -> Metadata:
    return load_metadata(CONFIG_DIR)


def field(entity: str, name: str) -> FieldDef:
    return metadata().entity(entity).field(name)


def make_field(name: str, type_name: str, **options) -> FieldDef:
    return FieldDef(name=name, type=FIELD_TYPES.get(type_name), label=Label.of(name), **options)


# --- numbers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "places", "en", "ru"),
    [
        (0, None, "0", "0"),
        (999, None, "999", "999"),
        (1000, None, "1,000", f"1{TH}000"),
        (1500000, None, "1,500,000", f"1{TH}500{TH}000"),
        (-1234567, None, "-1,234,567", f"-1{TH}234{TH}567"),
        (Decimal("1234.5"), None, "1,234.5", f"1{TH}234,5"),
        (Decimal("1234.5"), 2, "1,234.50", f"1{TH}234,50"),
        (Decimal("-1234.5"), 2, "-1,234.50", f"-1{TH}234,50"),
        (Decimal("0.125"), 2, "0.13", "0,13"),
        (Decimal("0.135"), 2, "0.14", "0,14"),
        (Decimal("2.5"), 0, "3", "3"),
        (Decimal("-2.5"), 0, "-3", "-3"),
        (Decimal("-0.125"), 2, "-0.13", "-0,13"),
        (Decimal("-0.001"), 2, "0.00", "0,00"),
        (Decimal("999.995"), 2, "1,000.00", f"1{TH}000,00"),
        (Decimal("1E+6"), None, "1,000,000", f"1{TH}000{TH}000"),
        (Decimal("1E-7"), None, "0.0000001", "0,0000001"),
        (42, 2, "42.00", "42,00"),
    ],
)
def test_format_number(value, places, en, ru):
    assert format_number(value, "en", places) == en
    assert format_number(value, "ru", places) == ru


def test_format_number_is_exact_for_large_values():
    assert format_number(Decimal("123456789012345678901234567890.125"), "en", 2) == (
        "123,456,789,012,345,678,901,234,567,890.13"
    )
    assert format_number(10**30, "en") == "1,000,000,000,000,000,000,000,000,000,000"


def test_format_number_never_raises_on_odd_decimals():
    assert format_number(Decimal("NaN"), "en", 2) == "NaN"
    assert format_number(Decimal("Infinity"), "ru") == "∞"
    assert format_number(Decimal("-Infinity"), "en") == "-∞"
    assert format_number(Decimal("1E+999999"), "en", 2) == "1E+999999"  # huge: short scientific text
    assert format_number(Decimal("-1.5E-999999999"), "ru", 2) == "0,00"
    assert format_number(Decimal("1.5E-999999999"), "ru") == "1,5E-999999999"
    assert format_number(Decimal("1E+999999999"), "en", 2) == "1E+999999999"
    assert format_number(Decimal("0E-999999999"), "en") == "0"
    assert format_number(Decimal("0E+999999999"), "en") == "0"
    assert format_number(Decimal("0.00"), "ru") == "0,00"
    assert format_number(Decimal("5"), "en", -1) == "5"  # negative places mean none


@pytest.mark.parametrize("language", ["de", "", "xx-YY", None])
def test_unknown_language_is_english(language):
    assert format_number(Decimal("1234.5"), language, 2) == "1,234.50"
    assert format_date(date(2026, 1, 31), language) == "Jan 31, 2026"
    assert format_value(field("contact", "marketing_opt_in"), True, language) == "Yes"


def test_regional_russian_is_russian():
    assert format_number(1000, "ru-RU") == f"1{TH}000"
    assert format_number(1000, "ru_RU") == f"1{TH}000"


# --- money and percent -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "en", "ru"),
    [
        ("RUB", f"RUB{NB}1,500,000.00", f"1{TH}500{TH}000,00{NB}₽"),
        ("USD", "$1,500,000.00", f"1{TH}500{TH}000,00{NB}$"),
        ("EUR", "€1,500,000.00", f"1{TH}500{TH}000,00{NB}€"),
        ("GBP", "£1,500,000.00", f"1{TH}500{TH}000,00{NB}£"),
        ("CNY", "CN¥1,500,000.00", f"1{TH}500{TH}000,00{NB}CN¥"),  # CLDR: ¥ alone is the yen
        ("KZT", f"KZT{NB}1,500,000.00", f"1{TH}500{TH}000,00{NB}KZT"),
        ("JPY", "¥1,500,000.00", f"1{TH}500{TH}000,00{NB}¥"),
        ("XYZ", f"XYZ{NB}1,500,000.00", f"1{TH}500{TH}000,00{NB}XYZ"),  # no symbol known: the code
        ("usd", "$1,500,000.00", f"1{TH}500{TH}000,00{NB}$"),
        (None, "1,500,000.00", f"1{TH}500{TH}000,00"),
        ("", "1,500,000.00", f"1{TH}500{TH}000,00"),
    ],
)
def test_format_money(currency, en, ru):
    assert format_money(Decimal(1500000), currency, "en") == en
    assert format_money(Decimal(1500000), currency, "ru") == ru


def test_format_money_negative_and_rounding():
    assert format_money(Decimal("-1500.005"), "USD", "en") == "-$1,500.01"
    assert format_money(Decimal("-1500.005"), "RUB", "en") == f"-RUB{NB}1,500.01"
    assert format_money(Decimal("-1500.005"), "RUB", "ru") == f"-1{TH}500,01{NB}₽"
    assert format_money(7, "RUB", "ru") == f"7,00{NB}₽"
    assert format_money(Decimal("7.5"), "RUB", "en", places=0) == f"RUB{NB}8"


def test_money_as_each_language_writes_it():
    assert format_money(Decimal("10000000"), "RUB", "ru") == f"10{TH}000{TH}000,00{NB}₽"
    assert format_money(Decimal("10000000"), "USD", "en") == "$10,000,000.00"
    assert format_money(Decimal("10000000"), "RUB", "en") == f"RUB{NB}10,000,000.00"
    assert format_money(Decimal("10000000"), "EUR", "ru") == f"10{TH}000{TH}000,00{NB}€"
    assert format_money(Decimal("-1234.5"), "USD", "en") == "-$1,234.50"
    assert format_money(Decimal("-1234.5"), "RUB", "ru") == f"-1{TH}234,50{NB}₽"
    assert format_money(0, "RUB", "ru") == f"0,00{NB}₽"
    assert format_money(Decimal("-0.001"), "USD", "en") == "$0.00"  # no "-$0.00"
    assert format_money(Decimal("1234.5"), None, "ru") == f"1{TH}234,50"


@pytest.mark.parametrize("language", ["en", "ru"])
@pytest.mark.parametrize("currency", ["RUB", "USD", "EUR", "CNY", "KZT", "XYZ"])
def test_a_currency_never_wraps_away_from_its_number(currency, language):
    for value in (Decimal("1234567.5"), Decimal("-1"), Decimal("1E+5000")):
        assert " " not in format_money(value, currency, language)
    assert " " not in format_percent(Decimal("-12345.5"), language)


def test_currency_symbol_is_cldrs():
    assert currency_symbol("RUB", "ru") == "₽"
    assert currency_symbol("rub", "en") == "RUB"  # English writes the rouble's code, as CLDR does
    assert currency_symbol("USD", "ru") == "$"
    assert currency_symbol("XYZ", "ru") == "XYZ"
    assert currency_symbol(None, "ru") == currency_symbol("", "en") == ""


def test_huge_and_odd_amounts_stay_short():
    assert format_money(Decimal("9E+999999999"), "RUB", "ru") == f"9E+999999999{NB}₽"
    assert format_money(Decimal("-1.25E+5000"), "USD", "en") == "-$1.25E+5000"
    assert format_money(Decimal("-1.25E+5000"), "RUB", "ru") == f"-1,25E+5000{NB}₽"
    assert format_money(Decimal("1E+999999999"), "RUB", "en", places=999_999_999) == f"RUB{NB}1E+999999999"
    assert format_percent(Decimal("1E+3000"), "ru") == f"1E+3000{NB}%"
    assert format_money(Decimal("NaN"), "USD", "en") == "$NaN"
    assert format_money(Decimal("-1E+2000"), "X1Y", "en") == f"-X1Y{NB}1E+2000"  # a digit in the code stays
    assert format_money(Decimal("-Infinity"), "RUB", "ru") == f"-∞{NB}₽"
    assert format_number(Decimal("1E-999999999"), "en", 2) == "0.00"
    # up to a thousand digits are written out, grouped
    assert format_number(Decimal("1E+1000"), "ru") == "10" + f"{TH}000" * 333
    assert format_number(Decimal("1E+1001"), "en") == "1E+1001"


def test_format_percent():
    assert format_percent(Decimal("12.5"), "en") == "12.50%"
    assert format_percent(Decimal("12.5"), "ru") == f"12,50{NB}%"
    assert format_percent(Decimal("-0.005"), "en") == "-0.01%"
    assert format_percent(Decimal("-0.005"), "ru") == f"-0,01{NB}%"
    assert format_percent(0, "en") == "0.00%"
    assert format_percent(Decimal("-0.001"), "ru") == f"0,00{NB}%"  # no "-0,00 %"
    assert format_percent(Decimal("12345.678"), "en", 1) == "12,345.7%"
    assert format_percent(Decimal("12345.678"), "ru", None) == f"12{TH}345,678{NB}%"
    assert format_percent(100, "ru", 0) == f"100{NB}%"  # points, not a fraction: 100 is 100 %


# --- dates and times -------------------------------------------------------------------------------


def test_format_date():
    assert format_date(date(2026, 1, 31), "en") == "Jan 31, 2026"
    assert format_date(date(2026, 1, 31), "ru") == "31.01.2026"
    assert format_date(date(2026, 12, 1), "en") == "Dec 1, 2026"
    assert format_date(date(2026, 12, 1), "ru") == "01.12.2026"
    assert format_date(date(987, 5, 6), "ru") == "06.05.0987"
    assert format_date(date.min, "en") == "Jan 1, 1"
    assert format_date(date.max, "ru") == "31.12.9999"


def test_dates_as_each_language_writes_them():
    # Russian cards use the dd.MM.yyyy written in Russia; English ones CLDR's medium date.
    assert format_date(date(2025, 3, 1), "ru") == "01.03.2025"
    assert format_date(date(2025, 3, 1), "en") == "Mar 1, 2025"
    assert format_date(datetime(2025, 3, 1, 23, 59), "en") == "Mar 1, 2025"


def test_format_datetime():
    moment = datetime(2026, 1, 31, 14, 5, 59, tzinfo=UTC)
    assert format_datetime(moment, "en") == f"Jan 31, 2026, 2:05{NNB}PM"
    assert format_datetime(moment, "ru") == "31.01.2026 14:05"
    moscow = ZoneInfo("Europe/Moscow")
    assert format_datetime(moment, "ru", moscow) == "31.01.2026 17:05"
    assert format_datetime(datetime(2026, 1, 31, 22, 0, tzinfo=UTC), "en", moscow) == f"Feb 1, 2026, 1:00{NNB}AM"
    assert format_datetime(moment, "en", timezone(timedelta(hours=-5))) == f"Jan 31, 2026, 9:05{NNB}AM"


def test_format_datetime_never_raises_at_the_edges():
    assert format_datetime(datetime(2026, 1, 31, 14, 5), "en") == f"Jan 31, 2026, 2:05{NNB}PM"  # naive: UTC
    assert format_datetime(datetime.max.replace(tzinfo=UTC), "ru", ZoneInfo("Asia/Vladivostok")) == (
        "31.12.9999 23:59"
    )
    assert format_datetime(datetime.min.replace(tzinfo=UTC), "en", ZoneInfo("America/New_York")) == (
        f"Jan 1, 1, 12:00{NNB}AM"
    )


# --- format_value by field type --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entity", "name", "value", "en", "ru"),
    [
        ("deal", "name", "Big deal", "Big deal", "Big deal"),
        ("deal", "description", "Line one\nline two", "Line one\nline two", "Line one\nline two"),
        ("contact", "telegram", "@someone", "@someone", "@someone"),
        ("lead", "website", "https://example.com", "https://example.com", "https://example.com"),
        ("contact", "emails", ["a@example.com", "b@example.com"],
         "a@example.com, b@example.com", "a@example.com, b@example.com"),
        ("contact", "phones", ["+74951234567"], "+7 495 123-45-67", "+7 495 123-45-67"),
        ("contact", "nps", 9, "9", "9"),
        ("ticket", "time_spent", Decimal("1234.5"), "1,234.50", f"1{TH}234,50"),
        ("deal", "amount", Decimal("1500000.00"), f"RUB{NB}1,500,000.00", f"1{TH}500{TH}000,00{NB}₽"),
        ("deal", "amount", Decimal("-10.5"), f"-RUB{NB}10.50", f"-10,50{NB}₽"),
        ("deal", "probability", Decimal("12.5"), "12.50%", f"12,50{NB}%"),
        ("deal", "margin", Decimal("-3.005"), "-3.01%", f"-3,01{NB}%"),
        ("contact", "marketing_opt_in", True, "Yes", "Да"),
        ("contact", "marketing_opt_in", False, "No", "Нет"),
        ("deal", "close_date", date(2026, 1, 31), "Jan 31, 2026", "31.01.2026"),
        ("contact", "last_contacted_at", datetime(2026, 1, 31, 14, 5, tzinfo=UTC),
         f"Jan 31, 2026, 2:05{NNB}PM", "31.01.2026 14:05"),
        ("deal", "stage", "won", "Won", "Выиграна"),
        ("deal", "stage", "archived", "archived", "archived"),
        ("deal", "products", ["licenses", "training"], "Licenses, Training", "Лицензии, Обучение"),
        ("deal", "products", ["licenses", "gone"], "Licenses, gone", "Лицензии, gone"),
        ("deal", "tags", ["тендер", "urgent"], "тендер, urgent", "тендер, urgent"),
        # formulas take their result type's format
        ("contact", "full_name", "Ivan Petrov", "Ivan Petrov", "Ivan Petrov"),
        ("deal", "expected_revenue", Decimal("150000.005"), f"RUB{NB}150,000.01", f"150{TH}000,01{NB}₽"),
        ("lead", "score", 85, "85", "85"),
        ("hr_record", "probation_end", date(2026, 7, 1), "Jul 1, 2026", "01.07.2026"),
        ("ticket", "sla_due", datetime(2026, 3, 1, 9, 30, tzinfo=UTC), f"Mar 1, 2026, 9:30{NNB}AM",
         "01.03.2026 09:30"),
    ],
)
def test_format_value(entity, name, value, en, ru):
    assert format_value(field(entity, name), value, "en") == en
    assert format_value(field(entity, name), value, "ru") == ru


@pytest.mark.parametrize(
    ("entity", "name"),
    [("deal", "name"), ("deal", "amount"), ("deal", "stage"), ("deal", "products"), ("deal", "tags"),
     ("deal", "responsible"), ("deal", "company"), ("contact", "marketing_opt_in"), ("contact", "pd_consent"),
     ("contact", "phones"), ("deal", "close_date"), ("deal", "expected_revenue")],
)
def test_empty_values_are_empty_text(entity, name):
    for language in ("en", "ru"):
        assert format_value(field(entity, name), None, language) == ""
        assert format_value(field(entity, name), [], language) == ""


def test_user_and_reference():
    names = {7: "Anna Smirnova"}
    titles = {12: "ООО Ромашка"}
    responsible, company = field("deal", "responsible"), field("deal", "company")
    for language in ("en", "ru"):
        assert format_value(responsible, 7, language, user_names=names) == "Anna Smirnova"
        assert format_value(responsible, 8, language, user_names=names) == "#8"
        assert format_value(responsible, 7, language) == "#7"
        assert format_value(company, 12, language, record_titles=titles) == "ООО Ромашка"
        assert format_value(company, 13, language, record_titles=titles) == "#13"
        assert format_value(company, 12, language, user_names={12: "not a record"}) == "#12"
        assert format_value(company, 12, language, record_titles={12: ""}) == "#12"


def test_multiple_users_and_references():
    users = make_field("watchers", "user", multiple=True)
    links = make_field("related", "reference", to="deal", multiple=True)
    assert format_value(users, [1, 2], "en", user_names={1: "Anna"}) == "Anna, #2"
    assert format_value(links, [5, 6], "ru", record_titles={6: "Сделка"}) == "#5, Сделка"


def test_files():
    logo = make_field("logo", "file")
    documents = make_field("documents", "file", multiple=True)
    one = {"id": "a" * 32, "name": "logo.png", "size": 1024, "content_type": "image/png"}
    two = {"id": "b" * 32, "name": "договор.pdf", "size": 2048, "content_type": "application/pdf"}
    assert format_value(logo, one, "en") == "logo.png"
    assert format_value(logo, one, "ru") == "logo.png"
    assert format_value(documents, [one, two], "ru") == "logo.png, договор.pdf"
    assert format_value(logo, {"id": "c" * 32}, "en") == "c" * 32  # not yet described by the service
    assert format_value(documents, [], "en") == ""


def test_consent():
    consent = field("contact", "pd_consent")
    given = {"given": True, "at": "2026-01-31T22:30:00Z", "by": 3, "policy_version": "2026-01"}
    assert format_value(consent, given, "en") == "Yes, Jan 31, 2026"
    assert format_value(consent, given, "ru") == "Да, 31.01.2026"
    assert format_value(consent, given, "ru", tz=ZoneInfo("Europe/Moscow")) == "Да, 01.02.2026"
    withdrawn = {"given": False, "at": "2026-02-01T10:00:00Z", "by": 3, "policy_version": "2026-01"}
    assert format_value(consent, withdrawn, "en") == "No"
    assert format_value(consent, withdrawn, "ru") == "Нет"
    assert format_value(consent, {"given": True}, "en") == "Yes"  # parsed but not yet stamped
    assert format_value(consent, {"given": True, "at": "garbage"}, "ru") == "Да"
    moment = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)
    assert format_value(consent, {"given": True, "at": moment}, "en") == "Yes, Jan 31, 2026"
    assert format_value(consent, {}, "en") == "No"


def test_value_times_follow_the_given_time_zone():
    moment = datetime(2026, 1, 31, 22, 0, tzinfo=UTC)
    moscow = ZoneInfo("Europe/Moscow")
    assert format_value(field("contact", "last_contacted_at"), moment, "ru", tz=moscow) == "01.02.2026 01:00"


def test_phones_are_grouped_in_the_international_form():
    phones = field("contact", "phones")
    for language in ("en", "ru"):
        assert format_value(phones, "+79123456789", language) == "+7 912 345-67-89"
        assert format_value(phones, ["+79123456789", "+12025550123", "+442079460000"], language) == (
            "+7 912 345-67-89, +1 202-555-0123, +44 20 7946 0000"
        )
        assert format_value(phones, "+77011234567", language) == "+7 701 123 4567"  # Kazakhstan
        assert format_value(phones, "not a number", language) == "not a number"  # shown as stored
        assert format_value(phones, "+7 912", language) == "+7 912"


def test_field_places_and_currency_are_respected():
    whole_roubles = make_field("price", "money", currency="RUB", places=0)
    dollars = make_field("price", "money", currency="USD")
    rate = make_field("rate", "percent", places=1)
    ratio = make_field("ratio", "decimal", places=3)
    free = make_field("free", "decimal")
    assert format_value(whole_roubles, Decimal("1499.5"), "ru") == f"1{TH}500{NB}₽"
    assert format_value(dollars, Decimal("-1500"), "en") == "-$1,500.00"
    assert format_value(rate, Decimal("7.25"), "en") == "7.3%"
    assert format_value(ratio, Decimal("0.0005"), "ru") == "0,001"
    assert format_value(free, Decimal("1234.5678"), "en") == "1,234.5678"
    assert format_value(make_field("count", "integer", multiple=True), [1000, -2000], "ru") == (
        f"1{TH}000, -2{TH}000"
    )


def test_unknown_language_labels_fall_back_to_english():
    assert format_value(field("deal", "stage"), "won", "de") == "Won"
    assert format_value(field("deal", "stage"), "won", "ru-RU") == "Выиграна"
    assert format_value(field("contact", "marketing_opt_in"), False, "fr") == "No"


def test_stored_text_dates_are_still_shown():
    # Values that arrive as ISO text (e.g. straight from JSON) are shown, not rejected.
    assert format_value(field("deal", "close_date"), "2026-01-31", "ru") == "31.01.2026"
    assert format_value(field("contact", "last_contacted_at"), "2026-01-31T14:05:00Z", "en") == (
        f"Jan 31, 2026, 2:05{NNB}PM"
    )
    assert format_value(field("deal", "close_date"), "not a date", "en") == "not a date"
