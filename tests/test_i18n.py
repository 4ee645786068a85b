"""Counted messages take the form their count asks for, in English and Russian."""

from __future__ import annotations

import pytest

from kartoteka.web.i18n import translate_plural

ONE, MANY = "{count} field needs attention:", "{count} fields need attention:"


@pytest.mark.parametrize(("count", "english", "russian"), [
    (1, "1 field needs attention:", "1 поле требует внимания:"),
    (2, "2 fields need attention:", "2 поля требуют внимания:"),
    (5, "5 fields need attention:", "5 полей требуют внимания:"),
    (11, "11 fields need attention:", "11 полей требуют внимания:"),
    (21, "21 fields need attention:", "21 поле требует внимания:"),
    (112, "112 fields need attention:", "112 полей требуют внимания:"),
    (0, "0 fields need attention:", "0 полей требуют внимания:"),
])
def test_counted_messages_take_their_plural_form(count, english, russian):
    assert translate_plural("en", ONE, MANY, count) == english
    assert translate_plural("ru", ONE, MANY, count) == russian


def test_a_counted_message_without_forms_is_translated_as_a_plain_one():
    one, many = "{name} is signed out everywhere (1 session ended).", "{name} is signed out everywhere ({count} " \
                                                                       "sessions ended)."
    assert translate_plural("en", one, many, 1, name="anna") == "anna is signed out everywhere (1 session ended)."
    assert translate_plural("en", one, many, 3, name="anna") == "anna is signed out everywhere (3 sessions ended)."
    assert translate_plural("ru", one, many, 3, name="anna") == ("anna: выход выполнен на всех устройствах "
                                                                 "(завершено сеансов: 3).")
    assert translate_plural("de", one, many, 1, name="anna") == "anna is signed out everywhere (1 session ended)."
