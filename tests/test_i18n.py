"""Counted messages take the form their count asks for, in English and Russian, from the gettext catalogue."""

from __future__ import annotations

import pytest
from flask import g

from kartoteka.i18n import tn

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
def test_counted_messages_take_their_plural_form(app, count, english, russian):
    for language, expected in (("en", english), ("ru", russian)):
        with app.test_request_context("/"):
            g.language = language
            assert tn(ONE, MANY, count) == expected


def test_a_counted_message_whose_translation_names_the_count_once(app):
    one, many = "{name} is signed out everywhere (1 session ended).", "{name} is signed out everywhere ({count} " \
                                                                       "sessions ended)."
    with app.test_request_context("/"):
        g.language = "en"
        assert tn(one, many, 1, name="anna") == "anna is signed out everywhere (1 session ended)."
        assert tn(one, many, 3, name="anna") == "anna is signed out everywhere (3 sessions ended)."
    with app.test_request_context("/"):
        g.language = "ru"
        assert tn(one, many, 3, name="anna") == "anna: выход выполнен на всех устройствах (завершено сеансов: 3)."
    with app.test_request_context("/", headers={"Accept-Language": "de"}):
        assert tn(one, many, 1, name="anna") == "anna is signed out everywhere (1 session ended)."
