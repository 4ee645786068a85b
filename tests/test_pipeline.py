"""The pure save pipeline: parse → merge → formulas → conditions → validate, with no database.

Each test saves a record of a small entity written for the tests and looks at what the user would be
told (errors per field or for the whole record) and what would be stored.
"""

from __future__ import annotations

import ast
import dataclasses
from datetime import UTC, date, datetime
from decimal import Decimal
from gettext import NullTranslations
from types import MappingProxyType
from typing import Any

import pytest
import sqlalchemy as sa

from kartoteka.errors import RecordValidationError
from kartoteka.messages import localize
from kartoteka.metadata.expressions import CompiledExpression
from kartoteka.metadata.fieldtypes import ParseContext
from kartoteka.metadata.loader import load_metadata
from kartoteka.records.model import SYSTEM, Principal
from kartoteka.records.pipeline import RECORD_ERRORS, Pipeline, Prepared
from kartoteka.records.service import RecordService
from kartoteka.storage.tables import records
from tests.conftest import write_config

SALES = Principal(1, "anna", frozenset({"sales"}), language="en")
SALES_RU = Principal(3, "ivan", frozenset({"sales"}), language="ru")
FINANCE = Principal(2, "boris", frozenset({"finance", "sales"}))
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

DEAL = {
    "entity": "deal",
    "label": "Deal",
    "fields": {
        "name": {"type": "text", "required": True, "max_length": 50},
        "stage": {"type": "select", "options": ["new", "won", "lost"], "default": "new"},
        "quantity": {"type": "integer", "min": 1, "default": 1},
        "price": {"type": "money", "min": 0},
        "discount": {"type": "percent", "min": 0, "max": 100, "default": 0},
        # declared before the formula it reads: the order comes from the dependencies
        "total": {"type": "formula", "expr": "subtotal * (1 - discount / 100)", "result": "money"},
        "subtotal": {"type": "formula", "expr": "quantity * price", "result": "money"},
        "big_deal_reason": {"type": "text", "required": True, "visible_if": "total > 100000"},
        "lost_reason": {"type": "textarea", "required": True, "visible_if": "stage == 'lost'"},
        "won_on": {"type": "date", "required_if": "stage == 'won'"},
        "contract_no": {"type": "text", "read_only_if": "stage == 'won'"},
        "code": {"type": "text", "read_only": True, "default": "D-1"},
        "approved": {"type": "boolean", "access": {"edit": ["finance"]}},
        "cost": {"type": "money", "access": {"view": ["finance"]}},
        "margin": {"type": "formula", "expr": "total - cost", "result": "money"},
        "phones": {"type": "phone", "multiple": True},
        "starts": {"type": "date"},
        "ends": {"type": "date"},
        "note": {"type": "text"},
        "factor": {"type": "integer"},
        "shouted": {"type": "formula", "expr": "note + quantity", "result": "text"},
        "note_as_money": {"type": "formula", "expr": "note", "result": "money"},
        "scaled": {"type": "formula", "expr": "price * factor", "result": "money"},
        "days_left": {"type": "formula", "expr": "days_between(today(), ends)", "result": "integer"},
        "gdpr": {"type": "consent", "policy_version": "2025-01"},
    },
    "validations": [
        {"expr": "ends is None or starts is None or ends >= starts",
         "message": {"en": "The deal ends before it starts.", "ru": "Сделка кончается раньше, чем начинается."}},
        {"expr": "price is None or price <= 1000000", "message": "Too expensive for one deal."},
        {"expr": "ends is None or ends >= today()", "message": "Ends in the past.", "field": "starts"},
        {"expr": "note is None or note > quantity", "message": "Never shown: the expression fails."},
    ],
}

SIGNUP = {
    "entity": "signup",
    "label": "Signup",
    "fields": {
        "email": {"type": "email", "required": True},
        "terms": {"type": "consent", "required": True, "policy_version": "v2"},
    },
}


# Patterns a backtracking engine takes exponential or high polynomial time on (with a long input).
CODES = {
    "entity": "codes",
    "label": "Codes",
    "fields": {
        "nested": {"type": "text", "pattern": "(a+)+b"},
        "alternation": {"type": "text", "pattern": "(a|a)*c", "pattern_message": "Only a's, then c."},
        "repeated": {"type": "textarea", "pattern": "(.*a){20}"},
        "digits": {"type": "text", "multiple": True, "pattern": "\\d*\\d*\\d*x"},
    },
}

# A text formula over a text field: its result is as storable as the field's value.
NOTES = {
    "entity": "notes",
    "label": "Notes",
    "fields": {
        "note": {"type": "text"},
        "echo": {"type": "formula", "result": "text", "expr": "concat(note, '!')"},
    },
}


@pytest.fixture(scope="module")
def metadata(tmp_path_factory):
    root = write_config(tmp_path_factory.mktemp("pipeline"), {"deal": DEAL, "signup": SIGNUP, "codes": CODES,
                                                                      "notes": NOTES},
                        roles={"roles": {"sales": {"label": "Sales"}, "finance": {"label": "Finance"}}})
    return load_metadata(root)


@pytest.fixture
def save(metadata, clock):
    """save(incoming, stored=None, user=SALES, entity='deal') -> Prepared."""
    def run(incoming: dict[str, Any], stored: dict[str, Any] | None = None, user: Principal = SALES,
            entity: str = "deal", **kwargs: Any) -> Prepared:
        system = {"id": None if stored is None else 7, "owner": user.id, "created_at": NOW, "updated_at": NOW}
        return Pipeline(metadata.entity(entity), clock, ParseContext()).run(incoming, stored, user, system, **kwargs)
    return run


def stored_deal(save, **values: Any) -> dict[str, Any]:
    """A valid saved deal (as the service would load it back), with `values` saved over it."""
    prepared = save({"name": "ACME", **values}, user=SYSTEM)
    assert prepared.errors == {}, prepared.errors
    return prepared.values


# --- a plain save ---------------------------------------------------------------------------------

def test_a_new_record_gets_defaults_parsed_values_and_formulas(save):
    prepared = save({"name": "  ACME  ", "quantity": "3", "price": "1 500,50", "discount": "10%"})
    assert prepared.errors == {}
    values = prepared.values
    assert values["name"] == "ACME"
    assert values["stage"] == "new"
    assert values["code"] == "D-1"
    assert values["subtotal"] == Decimal("4501.50")
    assert values["total"] == Decimal("4051.35")
    assert str(values["total"]) == "4051.35"
    assert {"name", "quantity", "price", "discount", "subtotal", "total"} <= prepared.changed
    assert "stage" not in prepared.changed  # a default the user did not touch


def test_formulas_run_in_dependency_order_not_declaration_order(metadata, save):
    order = metadata.entity("deal").formula_order
    assert order.index("subtotal") < order.index("total") < order.index("margin")
    prepared = save({"name": "A", "quantity": 2, "price": "100"})
    assert prepared.values["total"] == Decimal("200.00")


def test_formulas_are_recomputed_from_the_merged_record(save):
    stored = stored_deal(save, quantity=2, price="100")
    prepared = save({"discount": "50"}, stored)
    assert prepared.errors == {}
    assert prepared.values["subtotal"] == Decimal("200.00")
    assert prepared.values["total"] == Decimal("100.00")
    assert prepared.changed == {"discount", "total"}


def test_saving_the_same_values_changes_nothing(save):
    stored = stored_deal(save, quantity=2, price="100", ends="2026-04-01")
    prepared = save({"price": "100.00", "quantity": "2", "ends": "01.04.2026"}, stored)
    assert prepared.errors == {}
    assert prepared.changed == set()


def test_empty_inputs_give_empty_formulas_without_errors(save):
    prepared = save({"name": "A"})
    assert prepared.errors == {}
    for name in ("subtotal", "total", "margin", "scaled", "shouted", "note_as_money", "days_left"):
        assert prepared.values[name] is None, name


def test_clearing_an_input_empties_the_formulas_that_read_it(save):
    stored = stored_deal(save, price="10")
    prepared = save({"price": ""}, stored)
    assert prepared.errors == {}
    assert prepared.values["price"] is None
    assert prepared.values["subtotal"] is None and prepared.values["total"] is None
    assert {"price", "subtotal", "total"} <= prepared.changed


def test_formulas_see_the_clock(save, fixed_clock):
    assert save({"name": "A", "ends": "2026-03-12"}).values["days_left"] == 10
    fixed_clock.advance(days=5)
    assert save({"name": "A", "ends": "2026-03-12"}).values["days_left"] == 5


# --- formula errors -------------------------------------------------------------------------------

FORMULA_ERRORS = [
    ({"note": "hello"}, "shouted",
     "Cannot be computed: cannot compute 'note + quantity': can only concatenate str (not \"int\") to str."),
    ({"note": "hello"}, "note_as_money", "Cannot be computed: the formula gave 'hello', not a number."),
    ({"price": "1000000", "factor": 10**9}, "scaled", "Cannot be computed: the result is too large."),
]


@pytest.mark.parametrize(("incoming", "name", "message"), FORMULA_ERRORS, ids=[n for _, n, _ in FORMULA_ERRORS])
def test_a_failing_formula_gives_a_message_on_that_field_and_never_raises(save, incoming, name, message):
    prepared = save({"name": "A", **incoming})
    assert prepared.errors[name] == [message]
    assert prepared.values[name] is None
    assert prepared.values["name"] == "A"


def test_one_failing_formula_does_not_stop_the_others(save):
    prepared = save({"name": "A", "note": "x", "quantity": 2, "price": "5"})
    assert set(prepared.errors) == {"shouted", "note_as_money", RECORD_ERRORS}
    assert prepared.values["total"] == Decimal("10.00")


# --- requiredness and visibility ------------------------------------------------------------------

def test_required_fields_are_reported_on_a_new_record(save):
    prepared = save({})
    assert prepared.errors == {"name": ["Required."]}


@pytest.mark.parametrize("blank", ["", "   ", None])
def test_blank_text_does_not_satisfy_required(save, blank):
    assert save({"name": blank}).errors == {"name": ["Required."]}


def test_a_hidden_field_is_not_required(save):
    prepared = save({"name": "A", "stage": "new"})
    assert prepared.visible["lost_reason"] is False
    assert prepared.required["lost_reason"] is False
    assert "lost_reason" not in prepared.errors


def test_a_visible_required_field_is_required(save):
    prepared = save({"name": "A", "stage": "lost"})
    assert prepared.visible["lost_reason"] is True
    assert prepared.errors == {"lost_reason": ["Required."]}
    assert save({"name": "A", "stage": "lost", "lost_reason": "Too expensive"}).errors == {}


def test_visibility_is_decided_after_formulas(save):
    small = save({"name": "A", "quantity": 1, "price": "100000"})
    assert small.visible["big_deal_reason"] is False and small.errors == {}
    big = save({"name": "A", "quantity": 2, "price": "100000"})
    assert big.visible["big_deal_reason"] is True
    assert big.errors == {"big_deal_reason": ["Required."]}


def test_required_if(save):
    assert save({"name": "A", "stage": "new"}).required["won_on"] is False
    won = save({"name": "A", "stage": "won"})
    assert won.required["won_on"] is True
    assert won.errors == {"won_on": ["Required."]}
    assert save({"name": "A", "stage": "won", "won_on": "02.03.2026"}).errors == {}


def test_required_is_checked_on_the_merged_record(save):
    stored = stored_deal(save)
    assert save({"quantity": 2}, stored).errors == {}
    assert save({"name": ""}, stored).errors == {"name": ["Required."]}


# --- read-only fields -----------------------------------------------------------------------------

def test_a_read_only_field_cannot_be_changed(save):
    prepared = save({"name": "A", "code": "X-1"})
    assert prepared.errors == {"code": ["Is read-only."]}
    assert prepared.values["code"] == "D-1"
    assert prepared.read_only["code"] is True


def test_read_only_if_looks_at_the_stored_record(save):
    won = stored_deal(save, stage="won", won_on="2026-03-01", contract_no="C-1")
    prepared = save({"contract_no": "C-2"}, won)
    assert prepared.errors == {"contract_no": ["Is read-only."]}
    assert prepared.values["contract_no"] == "C-1"
    # moving the deal back in the same save does not unlock it for that save
    prepared = save({"stage": "new", "contract_no": "C-2"}, won)
    assert prepared.errors == {"contract_no": ["Is read-only."]}


def test_a_field_locked_by_this_save_can_still_be_set_in_it(save):
    new = stored_deal(save)
    prepared = save({"stage": "won", "won_on": "2026-03-01", "contract_no": "C-1"}, new)
    assert prepared.errors == {}
    assert prepared.values["contract_no"] == "C-1"
    assert prepared.read_only["contract_no"] is True  # the form shows it locked from now on


def test_nothing_is_locked_on_a_new_record(save):
    prepared = save({"name": "A", "stage": "won", "won_on": "2026-03-01", "contract_no": "C-1"})
    assert prepared.errors == {}


def test_formulas_cannot_be_set(save):
    prepared = save({"name": "A", "total": "5", "subtotal": 1})
    assert prepared.errors == {"total": ["Is computed by a formula and cannot be set."],
                               "subtotal": ["Is computed by a formula and cannot be set."]}
    assert prepared.read_only["total"] is True


def test_unknown_fields_are_refused(save):
    prepared = save({"name": "A", "nmae": "B", "id": 5, "created_at": "2026-01-01"})
    assert prepared.errors == {"nmae": ["Unknown field."], "id": ["Unknown field."],
                               "created_at": ["Unknown field."]}


def test_without_write_checks_read_only_fields_can_be_set(save):
    prepared = save({"name": "A", "code": "X-1"}, check_writes=False)
    assert prepared.errors == {}
    assert prepared.values["code"] == "X-1"


# --- parse and constraint errors ------------------------------------------------------------------

def test_every_bad_value_is_reported_at_once(save):
    prepared = save({"name": "x" * 51, "quantity": 0, "price": "abc", "discount": "101", "stage": "open",
                     "phones": ["89123456789", "nope"]})
    assert prepared.errors == {
        "name": ["Must be at most 50 characters (has 51)."],
        "quantity": ["Must be at least 1."],
        "price": ["'abc' is not a number."],
        "discount": ["Must be at most 100."],
        "stage": ["'open' is not one of the options: new, won, lost."],
        "phones": ["Value 2: 'nope' is not a phone number."],
    }


def test_a_value_that_does_not_parse_leaves_the_stored_value(save):
    stored = stored_deal(save, price="10")
    prepared = save({"price": "ten"}, stored)
    assert prepared.errors == {"price": ["'ten' is not a number."]}
    assert prepared.values["price"] == Decimal("10.00")
    assert "price" not in prepared.changed


# --- cross-field validations ----------------------------------------------------------------------

def test_a_validation_reading_one_field_is_shown_on_that_field(save):
    prepared = save({"name": "A", "price": "2000000", "big_deal_reason": "Government contract"})
    assert prepared.errors == {"price": ["Too expensive for one deal."]}


def test_a_validation_reading_several_fields_is_shown_on_the_record(save):
    prepared = save({"name": "A", "starts": "2026-04-10", "ends": "2026-04-01"})
    assert prepared.errors == {RECORD_ERRORS: ["The deal ends before it starts."]}


def test_a_validation_with_an_explicit_field_is_shown_there(save):
    prepared = save({"name": "A", "ends": "2026-03-01"})
    assert prepared.errors == {"starts": ["Ends in the past."]}


def test_validation_messages_are_in_the_users_language(save):
    # The message carries the validation's label: it reads in whatever language it is shown in.
    prepared = save({"name": "A", "starts": "2026-04-10", "ends": "2026-04-01"}, user=SALES_RU)
    [message] = prepared.errors[RECORD_ERRORS]
    assert message.code == "validation.failed" and message == "The deal ends before it starts."
    assert localize(message, NullTranslations(), "ru") == "Сделка кончается раньше, чем начинается."


def test_validations_on_empty_inputs_pass(save):
    assert save({"name": "A", "starts": "2026-04-10"}).errors == {}


def test_a_validation_that_cannot_be_computed_is_a_record_error(save):
    prepared = save({"name": "A", "note": "x"})
    assert prepared.errors[RECORD_ERRORS] == [
        "Validation 'note is None or note > quantity' failed: cannot compute 'note is None or note > quantity': "
        "'>' not supported between instances of 'str' and 'int'."
    ]


# --- access ---------------------------------------------------------------------------------------

def test_a_field_the_user_may_not_view_is_unknown_to_them(save):
    prepared = save({"name": "A", "cost": "10"}, user=SALES)
    assert prepared.errors == {"cost": ["Unknown field."]}
    assert prepared.values["cost"] is None


def test_a_formula_reading_a_hidden_field_is_hidden_too(save):
    prepared = save({"name": "A", "margin": "1"}, user=SALES)
    assert prepared.errors == {"margin": ["Unknown field."]}
    finance = save({"name": "A", "margin": "1"}, user=FINANCE)
    assert finance.errors == {"margin": ["Is computed by a formula and cannot be set."]}


def test_a_user_with_the_role_sees_and_sets_the_field(save):
    prepared = save({"name": "A", "quantity": 1, "price": "100", "cost": "30"}, user=FINANCE)
    assert prepared.errors == {}
    assert prepared.values["margin"] == Decimal("70.00")


def test_a_hidden_value_stays_when_another_user_saves(save):
    stored = save({"name": "A", "price": "100", "cost": "30"}, user=FINANCE).values
    prepared = save({"price": "200"}, stored, user=SALES)
    assert prepared.errors == {}
    assert prepared.values["cost"] == Decimal("30.00")
    assert prepared.values["margin"] == Decimal("170.00")


def test_a_field_the_user_may_view_but_not_edit(save):
    assert save({"name": "A", "approved": True}, user=SALES).errors == {"approved": ["You may not change this field."]}
    assert save({"name": "A", "approved": True}, user=FINANCE).errors == {}


def test_admins_may_set_everything_but_formulas(save):
    prepared = save({"name": "A", "cost": "1", "approved": "yes", "total": 1}, user=SYSTEM)
    assert prepared.errors == {"total": ["Is computed by a formula and cannot be set."]}
    assert prepared.values["approved"] is True


# --- consent --------------------------------------------------------------------------------------

def test_consent_records_who_when_and_which_policy(save):
    prepared = save({"name": "A", "gdpr": True}, user=SALES)
    assert prepared.errors == {}
    assert prepared.values["gdpr"] == {"given": True, "at": "2026-03-02T09:30:00Z", "by": SALES.id,
                                       "policy_version": "2025-01"}
    assert "gdpr" in prepared.changed


def test_unchanged_consent_is_not_stamped_again(save, fixed_clock):
    stored = save({"name": "A", "gdpr": "yes"}, user=SALES).values
    fixed_clock.advance(days=3)
    prepared = save({"gdpr": True}, stored, user=FINANCE)
    assert prepared.values["gdpr"] == stored["gdpr"]
    assert prepared.values["gdpr"]["by"] == SALES.id
    assert "gdpr" not in prepared.changed
    assert save({"gdpr": None}, stored, user=FINANCE).values["gdpr"] == stored["gdpr"]
    assert save({"gdpr": ""}, stored, user=FINANCE).values["gdpr"] == stored["gdpr"]


def test_withdrawn_consent_is_stamped_with_the_new_moment_and_user(save, fixed_clock):
    stored = save({"name": "A", "gdpr": True}, user=SALES).values
    fixed_clock.advance(days=3)
    prepared = save({"gdpr": False}, stored, user=FINANCE)
    assert prepared.values["gdpr"] == {"given": False, "at": "2026-03-05T09:30:00Z", "by": FINANCE.id,
                                       "policy_version": "2025-01"}
    assert "gdpr" in prepared.changed


def test_required_consent_must_be_given(save):
    assert save({"email": "a@b.ru"}, entity="signup").errors == {"terms": ["Consent is required."]}
    assert save({"email": "a@b.ru", "terms": False}, entity="signup").errors == {"terms": ["Consent is required."]}
    given = save({"email": "a@b.ru", "terms": True}, entity="signup")
    assert given.errors == {}
    assert given.values["terms"]["policy_version"] == "v2"


def test_a_bad_consent_value_is_refused(save):
    assert save({"name": "A", "gdpr": "maybe"}).errors == {"gdpr": ["Must be true or false."]}


# --- the result is what a form shows --------------------------------------------------------------

def test_the_form_state_covers_every_field(metadata, save):
    prepared = save({"name": "A"})
    names = set(metadata.entity("deal").fields)
    assert set(prepared.visible) == set(prepared.required) == set(prepared.read_only) == names
    assert set(prepared.values) == names


def test_a_save_never_writes_into_the_stored_mapping(save):
    stored = stored_deal(save, price="10")
    snapshot = dict(stored)
    save({"price": "20", "name": "B"}, stored)
    assert stored == snapshot


def test_dates_in_formulas_and_validations_use_the_parsed_values(save):
    prepared = save({"name": "A", "starts": "01.04.2026", "ends": "2026-04-30"})
    assert prepared.errors == {}
    assert prepared.values["starts"] == date(2026, 4, 1)
    assert prepared.values["days_left"] == 59


# --- patterns ---------------------------------------------------------------------------------------

def test_a_hostile_input_against_a_backtracking_pattern_is_a_plain_mismatch(metadata, save):
    """RE2 matches in time linear in the input: the longest inputs against (a+)+b and friends just fail."""
    codes = metadata.entity("codes")
    for field in codes.fields.values():  # not Python's backtracking `re`, on which this test would never end
        assert type(field.pattern).__module__.split(".")[0] == "re2", field.name

    prepared = save({"nested": "a" * 10_000, "alternation": "a" * 10_000, "repeated": "a" * 99_999 + "b",
                     "digits": ["1" * 10_000] * 100}, entity="codes", user=SYSTEM)

    assert prepared.errors == {
        "nested": ["Does not match the pattern (a+)+b."],
        "alternation": ["Only a's, then c."],
        "repeated": ["Does not match the pattern (.*a){20}."],
        "digits": ["Does not match the pattern \\d*\\d*\\d*x."],
    }
    matching = save({"nested": "aaab", "alternation": "aac", "repeated": "a" * 20 + "b" * 5 + "a",
                     "digits": ["12x", "x"]}, entity="codes", user=SYSTEM)
    assert matching.errors == {}


# --- formula results no database can store ----------------------------------------------------------

UNSTORABLE = [("a\x00b", "a NUL character (U+0000)"), ("a\ud800", "an unpaired surrogate (U+D800, not a character)")]


@pytest.mark.parametrize(("text", "what"), UNSTORABLE, ids=["nul", "surrogate"])
def test_a_text_formula_over_stored_text_no_database_can_store_is_that_fields_error(save, text, what):
    """Input never holds NUL or surrogates (the request guard and the types refuse them), but a record
    stored before (SQLite's JSON takes "\\u0000") or imported around the types can: the formula says so."""
    prepared = save({}, stored={"note": text, "echo": "x!"}, entity="notes", user=SYSTEM)
    assert prepared.errors == {"echo": [f"Cannot be computed: the result holds {what}, which cannot be stored."]}
    assert prepared.values["echo"] is None


@pytest.mark.parametrize(("text", "what"), UNSTORABLE, ids=["nul", "surrogate"])
def test_a_formula_result_no_database_can_store_is_a_422_on_both_databases(engine, metadata, clock, text, what):
    """Whatever produced it, a formula result holding NUL (PostgreSQL's jsonb refuses it) or a lone
    surrogate (UTF-8 cannot encode it) is the field's error: a 422, nothing written, never a 500."""
    notes = metadata.entity("notes")
    constant = CompiledExpression(repr(text), ast.Constant(value=text), frozenset(), frozenset())
    echo = dataclasses.replace(notes.field("echo"), expr=constant)
    patched = dataclasses.replace(notes, fields=MappingProxyType({**notes.fields, "echo": echo}))
    service = RecordService(dataclasses.replace(metadata, entities=MappingProxyType({"notes": patched})),
                            engine, clock, ParseContext())

    with pytest.raises(RecordValidationError) as raised:
        service.create("notes", {"note": "plain"}, SYSTEM)

    assert raised.value.status == 422
    assert raised.value.errors == {"echo": [f"Cannot be computed: the result holds {what}, which cannot be stored."]}
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(records)).scalar() == 0


def test_formulas_over_a_value_that_failed_its_checks_show_nothing(save):
    """A negative price is refused: the subtotal and the total built on it are not shown as if it counted."""
    prepared = save({"name": "A", "quantity": "2", "price": "-5"})
    assert "price" in prepared.errors
    assert prepared.values["subtotal"] is None and prepared.values["total"] is None
    fine = save({"name": "A", "quantity": "2", "price": "5"})
    assert not fine.errors and fine.values["subtotal"] == Decimal("10.00")
