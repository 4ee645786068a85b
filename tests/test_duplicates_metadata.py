"""The `duplicates:` section of a card: built into frozen dataclasses, and every mistake reported by check-config with
its file, line, path and a suggestion."""

from __future__ import annotations

import dataclasses

import pytest

from kartoteka.metadata.loader import check_config
from kartoteka.metadata.model import DuplicateRule
from tests.conftest import write_config

PERSON = {
    "entity": "person",
    "label": "Person",
    "fields": {
        "name": {"type": "text", "max_length": 200},
        "phones": {"type": "phone", "multiple": True},
        "emails": {"type": "email", "multiple": True},
        "inn": {"type": "text"},
        "team": {"type": "reference", "to": "team"},
        "birthday": {"type": "date"},
        "vip": {"type": "boolean"},
        "tags": {"type": "tags"},
        "age": {"type": "formula", "expr": "year(today()) - year(birthday)", "result": "integer"},
        "shout": {"type": "formula", "expr": "concat(name, '!')", "result": "text"},
        "notes": {"type": "textarea"},
    },
}
TEAM = {"entity": "team", "label": "Team", "fields": {"team_name": {"type": "text"}}}


def _problems(tmp_path, duplicates) -> list[str]:
    write_config(tmp_path, {"person": {**PERSON, "duplicates": duplicates}, "team": TEAM})
    metadata, problems = check_config(tmp_path)
    assert (metadata is None) == bool(problems)
    return [str(p) for p in problems]


def test_a_good_section_is_built_into_frozen_rules(tmp_path):
    problems = _problems(tmp_path, {
        "rules": [{"match": ["phones"]}, {"match": ["inn", "birthday"]},
                  {"fuzzy": "name", "threshold": 85, "same": ["team"]},
                  {"fuzzy": "shout", "scorer": "token_set_ratio", "prefix": 3}],
        "show": ["team", "emails"]})
    assert problems == []
    metadata, _ = check_config(tmp_path)
    spec = metadata.entity("person").duplicates
    assert [r.key for r in spec.rules] == ["phones", "inn+birthday", "~name", "~shout"]
    assert spec.rules[0] == DuplicateRule("exact", ("phones",), line=spec.rules[0].line)
    fuzzy = spec.rules[2]
    assert (fuzzy.kind, fuzzy.threshold, fuzzy.scorer, fuzzy.same, fuzzy.prefix) == ("fuzzy", 85, "token_sort_ratio",
                                                                                     ("team",), 2)
    assert (spec.rules[3].scorer, spec.rules[3].prefix) == ("token_set_ratio", 3)
    assert spec.show == ("team", "emails")
    # What needs an index: exact rules' fields, a fuzzy rule's block (its `same`, else its own text).
    assert spec.looked_up == {"phones", "inn", "birthday", "team", "shout"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        fuzzy.threshold = 10  # type: ignore[misc]
    # A card without the section looks for no duplicates.
    assert metadata.entity("team").duplicates.rules == ()


@pytest.mark.parametrize(("section", "expected"), [
    ({"rules": [{"mach": ["phones"]}]},
     "duplicates.rules[0].mach: unknown key 'mach'; did you mean 'match'?"),
    ({"rule": [{"match": ["phones"]}]},
     "duplicates.rule: unknown key 'rule'; did you mean 'rules'?"),
    ({"rules": [{"fuzzy": "name", "threshold": 120}]},
     "duplicates.rules[0].threshold: 120 is greater than the maximum of 100"),
    ({"rules": [{"fuzzy": "name", "scorer": "token_sort"}]},
     "duplicates.rules[0].scorer: 'token_sort' is not one of token_sort_ratio, token_set_ratio, ratio, partial_ratio, "
     "WRatio, QRatio; did you mean 'token_sort_ratio'?"),
    ({"rules": [{"match": "phones"}]},
     "duplicates.rules[0].match: must be of type array, not str"),
    ({"rules": []}, "duplicates.rules: [] should be non-empty"),
])
def test_schema_mistakes_are_reported_with_their_path_and_a_suggestion(tmp_path, section, expected):
    problems = _problems(tmp_path, section)
    assert any(p.endswith(expected) and "/entities/person.yaml:" in p for p in problems), problems


@pytest.mark.parametrize(("rule", "path", "message"), [
    ({"match": ["phone"]}, "rules[0].match[0]", "unknown field 'phone'; did you mean 'phones'?"),
    ({"match": ["vip"]}, "rules[0].match[0]",
     "'vip' is a field of type boolean, which cannot tell duplicates: 'match' takes fields holding texts or numbers "
     "(e.g. phones, emails, inn)"),
    ({"match": ["tags"]}, "rules[0].match[0]",
     "'tags' is a field of type tags with several values, which cannot tell duplicates: 'match' takes fields holding "
     "texts or numbers (e.g. phones, emails, inn)"),
    ({"match": ["age"]}, "rules[0].match[0]",
     "formula 'age' reads today(): its stored value depends on the moment of the last save, so it cannot tell "
     "duplicates"),
    ({"fuzzy": "birthday"}, "rules[0].fuzzy",
     "a fuzzy rule compares one text: 'birthday' is a field of type date; one of: name, inn, shout"),
    ({"fuzzy": "notes"}, "rules[0].fuzzy",
     "a fuzzy rule compares one text: 'notes' is a field of type textarea; one of: name, inn, shout"),
    ({"fuzzy": "nme"}, "rules[0].fuzzy", "unknown field 'nme'; did you mean 'name'?"),
    ({"fuzzy": "name", "same": ["phones"]}, "rules[0].same[0]",
     "'phones' is a field of type phone with several values, which cannot tell duplicates: 'same' takes fields "
     "holding one value, a text or a number (e.g. company)"),
    ({"fuzzy": "name", "same": ["name"]}, "rules[0].same[0]",
     "'name' is the field the rule compares; 'same' names other fields whose equal values a candidate must share "
     "(e.g. company)"),
    ({"fuzzy": "name", "same": ["team"], "prefix": 3}, "rules[0].prefix",
     "'prefix' blocks a fuzzy rule without 'same' (candidates whose text begins alike); with 'same' the candidates "
     "are those sharing its values: remove one"),
    ({"match": ["inn"], "threshold": 90}, "rules[0].threshold",
     "'threshold' applies to fuzzy rules; an exact rule (match) compares values as stored"),
    ({"match": ["inn"], "same": ["team"]}, "rules[0].same",
     "'same' applies to fuzzy rules; an exact rule (match) compares values as stored; list the field in 'match' "
     "instead"),
    ({"match": ["inn"], "fuzzy": "name"}, "rules[0]",
     "a duplicates rule takes either 'match' (fields whose equal values mark a duplicate) or 'fuzzy' (a text field "
     "compared by closeness), not both"),
    ({"threshold": 90}, "rules[0]",
     "a duplicates rule takes either 'match' (fields whose equal values mark a duplicate) or 'fuzzy' (a text field "
     "compared by closeness)"),
])
def test_cross_check_mistakes_are_reported_precisely(tmp_path, rule, path, message):
    problems = _problems(tmp_path, {"rules": [rule]})
    assert len(problems) == 1, problems
    where, _, said = problems[0].partition(f": duplicates.{path}: ")
    assert said == message, problems
    # The line is the rule's own line in the file (write_config puts one key per line).
    text = (tmp_path / "entities" / "person.yaml").read_text().splitlines()
    line = int(where.rsplit(":", 1)[1])
    assert "duplicates" not in text[line - 1] and line > 10


def test_a_repeated_rule_and_unknown_show_fields_are_reported(tmp_path):
    problems = _problems(tmp_path, {"rules": [{"match": ["phones"]}, {"match": ["phones"]}],
                                    "show": ["team", "nmae"]})
    assert any("duplicates.rules[1]: this rule repeats rules[0] (line" in p for p in problems), problems
    assert any(p.endswith("duplicates.show[1]: unknown field 'nmae'; did you mean 'name'?") for p in problems)


def test_the_shipped_cards_look_for_duplicates_where_teams_want_it(shipped_metadata):
    keys = {name: [r.key for r in e.duplicates.rules] for name, e in shipped_metadata.entities.items()}
    assert keys["contact"] == ["phones", "emails", "~full_name"]
    assert shipped_metadata.entity("contact").duplicates.rules[2].same == ("company",)
    assert keys["company"] == ["inn", "~name"]
    assert keys["lead"] == ["phones", "emails"]
    assert keys["deal"] == [] and keys["ticket"] == []
