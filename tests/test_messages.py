"""kartoteka.messages: a Message is its English text, and carries what it takes to say it in another language."""

from __future__ import annotations

import json
import pickle
from datetime import date
from decimal import Decimal

from kartoteka.messages import (
    ByteSize,
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


def _body_too_large(length: int, limit: int) -> Message:
    sent = Message("request.body_size", "; this one has {size}", size=ByteSize.over(length, limit), size_bytes=length)
    return Message("request.multipart_too_large", "A form with files may have at most {limit}{sent}.",
                   limit=ByteSize.limit(limit), limit_bytes=limit, sent=sent, size_bytes=length)


def test_a_size_is_written_in_each_languages_units_and_numbers():
    refused = Message("file.too_large_for_field", "'{name}' is larger than {limit}, the most this field takes.",
                      name="big.png", limit=ByteSize.limit(1000), limit_bytes=1000)
    assert refused == "'big.png' is larger than 1000 bytes, the most this field takes."
    assert translate("ru", refused) == "Файл «big.png» больше 1000 байт — это предел для этого поля."
    form = _body_too_large(2_000_000, 1 << 20)
    assert form == "A form with files may have at most 1 MiB; this one has 1.9 MiB."
    assert translate("ru", form) == "Форма с файлами — не больше 1 МиБ; в этом — 1,9 МиБ."
    sizes = [translate("ru", Message("file.too_large", "The file is larger than {limit}.", limit=ByteSize(n)))
             for n in (1, 3, 5, 1536, 3 << 30, 5 << 40)]
    assert sizes == ["Файл больше 1 байт.", "Файл больше 3 байта.", "Файл больше 5 байт.", "Файл больше 1,5 КиБ.",
                     "Файл больше 3 ГиБ.", "Файл больше 5 ТиБ."]
    assert [str(ByteSize(n)) for n in (1, 1023, 1024, 1536, 1000 * 1024)] == \
        ["1 byte", "1023 bytes", "1 KiB", "1.5 KiB", "1000 KiB"]  # no grouping: "1000 KiB", not "1,000 KiB"


def test_a_refused_size_never_reads_as_its_limit_or_less():
    over = _body_too_large(21_000_000, 20 << 20)  # 20.03 MiB: "20 MiB" read as within the limit
    assert over == "A form with files may have at most 20 MiB; this one has 20.03 MiB."
    assert translate("ru", over) == "Форма с файлами — не больше 20 МиБ; в этом — 20,03 МиБ."
    assert str(ByteSize.over((20 << 20) + 1, 20 << 20)) == "20.000001 MiB"
    assert str(ByteSize.over(1025, 1024)) == "1.001 KiB"
    # A limit is rounded down (1,999,000 bytes: "1.9 MiB", never "2 MiB"), and a size over it reads more.
    assert str(ByteSize.limit(1_999_000)) == "1.9 MiB" and str(ByteSize.over(2_000_000, 1_999_000)) == "1.91 MiB"
    assert str(ByteSize(1_999_000)) == "1.9 MiB" and str(ByteSize(2_050_000)) == "2 MiB"  # other sizes: to the nearest


def test_a_size_is_its_byte_count_in_json_and_survives_storing_and_pickling():
    over = _body_too_large(21_000_000, 20 << 20)
    assert json_params(over) == {"limit": 20 << 20, "limit_bytes": 20 << 20, "size_bytes": 21_000_000,
                                 "sent": "; this one has 20.03 MiB"}
    assert type(json_params(over)["limit"]) is int and json.loads(json.dumps(json_params(over)))["limit"] == 20 << 20
    back = message_from_stored(json.loads(json.dumps(stored_message(over))))
    assert translate("ru", back) == "Форма с файлами — не больше 20 МиБ; в этом — 20,03 МиБ."
    size = pickle.loads(pickle.dumps(ByteSize.over(21_000_000, 20 << 20)))  # noqa: S301 (our own bytes)
    assert size == 21_000_000 and str(size) == "20.03 MiB"
