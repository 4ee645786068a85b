"""kartoteka.messages: a Message is its English text, and carries what it takes to say it in another language."""

from __future__ import annotations

import json
import pickle
from datetime import date
from decimal import Decimal

from kartoteka.messages import (
    Message,
    json_params,
    message_from_stored,
    message_of,
    stored_message,
    translate,
)
from kartoteka.metadata.model import Label


def _item_error() -> Message:
    inner = Message("email.invalid", "'{text}' is not a valid e-mail address.", text="x@")
    return Message("list.item", "Value {position}: {message}", position=2, message=inner)


def test_a_message_is_its_english_text_and_keeps_its_code_through_an_exception():
    message = Message("value.min", "Must be at least {limit}.", limit=Decimal("1500.50"))
    assert message == "Must be at least 1500.5." and message.code == "value.min"
    assert message_of(ValueError(message)) is message
    assert str(ValueError(message)) == "Must be at least 1500.5."  # plain text loses the code: use message_of
    assert pickle.loads(pickle.dumps(message)).params == {"limit": Decimal("1500.50")}  # noqa: S301 (our own bytes)


def test_parameters_are_written_as_each_language_writes_them():
    limit = Message("value.min", "Must be at least {limit}.", limit=Decimal("1500.50"))
    assert translate("ru", limit) == "Не меньше 1\u00a0500,5."
    assert translate("en", limit) == "Must be at least 1,500.5."
    first = Message("value.min", "Must be at least {limit}.", limit=date(2025, 3, 1))
    assert translate("en", first) == "Must be at least Mar 1, 2025."
    labelled = Message("record.not_found", "There is no {what} with id {id}.", what=Label.of({"en": "Deal",
                                                                                              "ru": "Сделка"}), id=1234)
    assert translate("ru", labelled) == "Записи «Сделка» с номером 1234 нет."  # ids are never grouped
    assert translate("ru", _item_error()) == "Значение 2: «x@» — неверный адрес электронной почты."


def test_counted_messages_take_each_languages_plural_forms():
    def invalid(count):
        return Message.counted("record.invalid", "The record has {count} invalid value.",
                               "The record has {count} invalid values.", count=count)

    assert [str(invalid(n)) for n in (1, 2)] == ["The record has 1 invalid value.", "The record has 2 invalid values."]
    assert [translate("ru", invalid(n)) for n in (1, 3, 5, 21)] == [
        "В записи 1 неверное значение.", "В записи 3 неверных значения.", "В записи 5 неверных значений.",
        "В записи 21 неверное значение."]


def test_a_stored_message_is_read_back_by_code_nested_messages_and_labels_too():
    stored = json.loads(json.dumps(stored_message(_item_error())))  # as a record's flags keep it
    again = message_from_stored(stored)
    assert isinstance(again, Message) and again.code == "list.item" and again == str(_item_error())
    assert translate("ru", again) == "Значение 2: «x@» — неверный адрес электронной почты."
    unique = Message("unique", "Must be unique: {what} #{id} '{title}' already has this value.",
                     what=Label.of({"en": "Company", "ru": "Компания"}), id=7, title="Acme")
    assert "Компания" in translate("ru", message_from_stored(json.loads(json.dumps(stored_message(unique)))))


def test_a_stored_text_without_a_code_or_with_a_broken_template_stays_its_text():
    assert message_from_stored({"field": "cost", "message": "Old flag"}) == "Old flag"
    broken = {"message": "Must be at least 5.", "code": "value.min", "template": "Must be at least {limit}.",
              "params": {}}
    assert message_from_stored(broken) == "Must be at least 5."


def test_json_parameters_keep_digits_and_say_nested_messages_in_english():
    assert json_params(Message("value.min", "Must be at least {limit}.", limit=Decimal("0.00"))) == {"limit": "0"}
    assert json_params(_item_error()) == {"position": 2, "message": "'x@' is not a valid e-mail address."}
    assert json_params("plain text") == {}
