"""Refusals of the field types and the record service carry a stable code and raw parameters.

What a client reads besides the English text: `.code` names the problem (docs/message-codes.md lists them),
`.params` hold the values as values (numbers, ids, metadata labels, nested messages), so that each language
writes them its own way.
"""

from __future__ import annotations

from decimal import Decimal
from gettext import NullTranslations

import pytest

from kartoteka.errors import Conflict, NotFound, RecordValidationError
from kartoteka.messages import Message, localize, message_of
from kartoteka.metadata.model import Label
from kartoteka.records.model import SYSTEM
from tests.conftest import write_config

SHOP = {
    "entity": "shop",
    "label": {"en": "Shop", "ru": "Магазин"},
    "title": "{name}",
    "fields": {
        "name": {"type": "text", "required": True, "max_length": 10},
        "code": {"type": "text", "pattern": r"[A-Z]{3}-\d+",
                 "pattern_message": {"en": "Use a code like ABC-1.", "ru": "Код вида ABC-1."}},
        "plain_code": {"type": "text", "pattern": r"\d+"},
        "inn": {"type": "text", "unique": True},
        "price": {"type": "decimal", "min": 0, "max": "1500.50"},
        "phones": {"type": "phone", "multiple": True},
        "rating": {"type": "rating"},
    },
}
RU = NullTranslations()  # no catalogue: the English template, with its parameters written as Russian writes them


@pytest.fixture(scope="module")
def shop_config(tmp_path_factory):
    return write_config(tmp_path_factory.mktemp("codes"), {"shop": SHOP})


@pytest.fixture
def config_dir(shop_config):
    return shop_config


def refused(service, values, record_id=None):
    """The errors by field of a refused create (or update of `record_id`), and the error itself."""
    with pytest.raises(RecordValidationError) as caught:
        if record_id is None:
            service.create("shop", {"name": "A", **values}, SYSTEM)
        else:
            service.update("shop", record_id, values, SYSTEM, expected_version=None)
    return caught.value.errors, caught.value


def test_a_too_long_text_says_the_limit_and_the_length(service):
    errors, error = refused(service, {"name": "x" * 12})
    [message] = errors["name"]
    assert isinstance(message, Message)
    assert message.code == "text.too_long" and message.params == {"count": 10, "has": 12}
    assert message == "Must be at most 10 characters (has 12)."
    assert message.template == "Must be at most {count} characters (has {has})."
    assert isinstance(error.detail, Message) and error.detail.code == "record.invalid"
    assert error.detail.params == {"count": 1} and error.detail == "The record has 1 invalid value."


def test_the_record_error_counts_in_the_plural():
    detail = RecordValidationError({"a": ["x"], "b": ["y", "z"]}).detail
    assert isinstance(detail, Message) and detail.code == "record.invalid"
    assert detail == "The record has 3 invalid values." and detail.params == {"count": 3}


def test_a_required_field_and_an_input_that_does_not_parse(service):
    errors, _ = refused(service, {"name": "", "price": "12abc", "rating": "lots"})
    assert [m.code for m in errors["name"]] == ["required"]
    [number] = errors["price"]
    assert number.code == "number.invalid" and number.params == {"text": "12abc"}
    [stars] = errors["rating"]
    assert stars.code == "rating.invalid" and stars == "'lots' is not a number of stars."


def test_a_duplicate_value_names_the_record_holding_it_by_the_entity_label(service):
    first = service.create("shop", {"name": "First", "inn": "7707083893"}, SYSTEM)
    errors, _ = refused(service, {"inn": "7707083893"})
    [message] = errors["inn"]
    assert message.code == "unique"
    assert isinstance(message.params["what"], Label) and message.params["what"].get("ru") == "Магазин"
    assert message.params["id"] == first.id and message.params["title"] == "First"
    assert message == f"Must be unique: Shop #{first.id} 'First' already has this value."
    assert localize(message, RU, "ru") == f"Must be unique: Магазин #{first.id} 'First' already has this value."


def test_an_error_in_an_item_of_a_list_nests_the_items_own_message(service):
    errors, _ = refused(service, {"phones": ["+79123456789", "nope", "+7 912 345-67-89", "bad"]})
    first, second = errors["phones"]  # one message per refused item
    assert first.code == "list.item" and first.params["position"] == 2
    inner = first.params["message"]
    assert isinstance(inner, Message) and inner.code == "phone.invalid" and inner.params == {"text": "nope"}
    assert first == "Value 2: 'nope' is not a phone number."
    assert second.params["position"] == 4 and second.params["message"].params == {"text": "bad"}


def test_a_limit_is_the_decimal_itself_and_each_language_writes_it(service):
    errors, _ = refused(service, {"price": "2000"})
    [message] = errors["price"]
    assert message.code == "value.max" and message.params == {"limit": Decimal("1500.50")}
    assert message == "Must be at most 1500.5."
    assert localize(message, RU, "ru") == "Must be at most 1\u00a0500,5."
    below, _ = refused(service, {"price": "-1"})
    assert below["price"][0].code == "value.min" and below["price"][0] == "Must be at least 0."


def test_a_pattern_message_of_the_metadata_reads_in_each_language(service):
    errors, _ = refused(service, {"code": "abc", "plain_code": "x1"})
    [own] = errors["code"]
    assert own.code == "text.pattern" and isinstance(own.params["label"], Label)
    assert own == "Use a code like ABC-1." and localize(own, RU, "ru") == "Код вида ABC-1."
    [default] = errors["plain_code"]
    assert default.code == "text.pattern_default" and default.params == {"pattern": r"\d+"}
    assert default == r"Does not match the pattern \d+."


def test_a_wrong_json_type_nests_the_names_of_the_types(service):
    errors, _ = refused(service, {"name": 12})
    [message] = errors["name"]
    assert message.code == "value.type" and message == "Must be text, not a number."
    assert message.params["type"].code == "json.number" and message.params["what"].code == "kind.text"


def test_not_found_and_a_stale_version_carry_codes(service):
    with pytest.raises(NotFound) as missing:
        service.get("shop", 999, SYSTEM)
    detail = missing.value.detail
    assert isinstance(detail, Message) and detail.code == "record.not_found"
    assert detail.params["id"] == 999 and isinstance(detail.params["what"], Label)
    assert message_of(missing.value) is detail  # read back from the exception with its code
    shop = service.create("shop", {"name": "A"}, SYSTEM)
    service.update("shop", shop.id, {"name": "B"}, SYSTEM, expected_version=1)
    with pytest.raises(Conflict) as stale:
        service.update("shop", shop.id, {"name": "C"}, SYSTEM, expected_version=1)
    assert stale.value.detail.code == "record.stale"
    assert stale.value.detail.params["version"] == 2 and stale.value.detail.params["edited"] == 1


def test_a_value_sent_for_a_field_that_does_not_exist(service):
    errors, _ = refused(service, {"nope": 1})
    assert [m.code for m in errors["nope"]] == ["unknown_field"]
