"""Broken metadata is refused with every problem printed as `file:line: path: message`.

The cases live in tests/fixtures/broken_metadata.yaml: each is a small config directory and the
substrings its printed problems must contain.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from kartoteka.errors import MetadataError
from kartoteka.metadata.loader import check_config, load_metadata
from kartoteka.metadata.visibility import ADMIN_ROLE, condition_leaks, meets, viewable, witness
from tests.conftest import CONFIG_DIR

CORPUS = Path(__file__).parent / "fixtures" / "broken_metadata.yaml"
CASES = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))
# `config/entities/deal.yaml:12: fields.amount.type: unknown field type ...`
PRINTED = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+): (?P<path>\S+): (?P<message>.+)$", re.DOTALL)


def _write_case(root: Path, files: dict[str, str]) -> Path:
    config = root / "config"
    (config / "entities").mkdir(parents=True)
    for relative, text in files.items():
        target = config / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return config


def test_the_corpus_is_big_and_well_formed():
    assert len(CASES) >= 30
    names = [case["name"] for case in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    for case in CASES:
        assert set(case) == {"name", "files", "expect"}, case["name"]
        assert case["files"] and case["expect"], case["name"]


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_broken_metadata_is_refused_with_located_problems(case, tmp_path):
    config = _write_case(tmp_path, case["files"])

    metadata, problems = check_config(config)

    assert metadata is None
    assert problems, "broken metadata must produce at least one problem"
    printed = [str(problem) for problem in problems]
    for expected in case["expect"]:
        assert any(expected in line for line in printed), f"{expected!r} not in:\n" + "\n".join(printed)
    for problem, line in zip(problems, printed, strict=True):
        match = PRINTED.match(line)
        assert match, f"not printed as file:line: path: message: {line!r}"
        relative = next((rel for rel in case["files"] if match["file"].endswith(rel)), None)
        assert relative is not None, f"{line!r} names a file that is not part of the case"
        assert (config / relative).is_file()
        file_lines = len((config / relative).read_text(encoding="utf-8").splitlines())
        assert 0 < problem.line <= max(file_lines, 1), f"line out of the file: {line!r}"
        assert match["message"].strip(), line

    with pytest.raises(MetadataError) as raised:
        load_metadata(config)
    assert [str(p) for p in raised.value.problems] == printed
    assert str(raised.value) == "\n".join(printed)


def test_problems_come_sorted_by_file_and_line(tmp_path):
    case = next(case for case in CASES if case["name"] == "every_cross_check_problem_is_reported")
    _, problems = check_config(_write_case(tmp_path, case["files"]))
    assert [(p.file, p.line) for p in problems] == sorted((p.file, p.line) for p in problems)
    assert len(problems) == len(case["expect"])


def test_a_missing_entities_directory_is_one_clear_problem(tmp_path):
    metadata, problems = check_config(tmp_path / "nowhere")
    assert metadata is None
    assert len(problems) == 1
    assert "directory not found" in str(problems[0])
    with pytest.raises(MetadataError, match="directory not found"):
        load_metadata(tmp_path / "nowhere")


def test_an_empty_entities_directory_is_a_problem(tmp_path):
    (tmp_path / "config" / "entities").mkdir(parents=True)
    metadata, problems = check_config(tmp_path / "config")
    assert metadata is None
    assert ["no entity files" in str(p) for p in problems] == [True]


def test_a_file_that_is_not_utf8_is_reported_not_raised(tmp_path):
    config = _write_case(tmp_path, {})
    (config / "entities" / "deal.yaml").write_bytes(b"entity: deal\nlabel: \xff\xfe\n")
    metadata, problems = check_config(config)
    assert metadata is None
    assert any("file is not UTF-8 text" in str(p) and p.file.endswith("entities/deal.yaml") for p in problems)


def test_yaml_booleans_and_dates_stay_text_where_the_schema_wants_text(tmp_path):
    """`no`/`on` option values and unquoted dates are read as written, as YAML 1.2 does."""
    config = _write_case(tmp_path, {"entities/poll.yaml": (
        "entity: poll\n"
        "label: Poll\n"
        "fields:\n"
        "  answer: {type: select, options: [yes, no, on, off], default: no}\n"
        "  held_on: {type: date, min: 2025-01-01, default: 2025-06-01}\n"
        "  gdpr: {type: consent, policy_version: 2025-01-01}\n"
    )})
    metadata, problems = check_config(config)
    assert problems == []
    poll = metadata.entity("poll")
    assert poll.field("answer").option_values == ("yes", "no", "on", "off")
    assert poll.field("answer").default == "no"
    assert str(poll.field("held_on").min) == "2025-01-01"
    assert str(poll.field("held_on").default) == "2025-06-01"
    assert poll.field("gdpr").policy_version == "2025-01-01"


def test_the_shipped_config_has_no_problems():
    if not (CONFIG_DIR / "roles.yaml").exists():
        pytest.skip("config/roles.yaml is not written yet: the shipped cards are still in progress")
    metadata, problems = check_config(CONFIG_DIR)
    assert [str(p) for p in problems] == []
    assert metadata is not None and metadata.entities


def test_check_config_prints_a_problem_line_for_hostile_expressions_never_a_traceback(tmp_path):
    """Deep nesting and text formatting are problem lines of `kartoteka check-config`, exit 1."""
    from click.testing import CliRunner

    from kartoteka.cli import main

    config = _write_case(tmp_path, {"entities/deal.yaml": (
        "entity: deal\n"
        "label: Deal\n"
        "fields:\n"
        "  name: {type: text}\n"
        "  hot: {type: boolean}\n"
        f"  note: {{type: text, visible_if: \"{'not ' * 490}hot\"}}\n"
        f"  minus: {{type: formula, expr: \"{'-' * 999}1\"}}\n"
        f"  plus: {{type: formula, expr: \"{'+' * 999}1\"}}\n"
        "  padded: {type: formula, result: text, expr: \"'%*s' % (10**9, 'x')\"}\n"
    )})

    result = CliRunner().invoke(main, ["check-config", str(config)], catch_exceptions=False)

    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4, lines
    assert all(PRINTED.match(line) for line in lines), lines
    assert "entities/deal.yaml:6: fields.note.visible_if: 'not not not" in lines[0]
    assert lines[0].endswith("...' is nested 491 levels deep; at most 50 levels are allowed")
    assert "fields.minus.expr: '----" in lines[1] and "is nested 1000 levels deep" in lines[1]
    assert "fields.plus.expr: '++++" in lines[2] and "is nested 1000 levels deep" in lines[2]
    assert "fields.padded.expr: ''%*s' % (10**9, 'x')': % on a text would format it" in lines[3]
    assert "4 problems found." in result.stderr


# --- conditions may only read what everyone who sees the conditioned field can see ---------------

def _old_viewable(entity, roles, department):
    """records/access.py's computation before it moved to metadata/visibility.py, kept as a reference."""
    denied = set()
    for tab in entity.layout_for(department).tabs:
        for group in tab.groups:
            if not all(a.can_view(roles) for a in (tab.access, group.access)):
                denied.update(group.fields)
    visible = {name for name, f in entity.fields.items() if f.access.can_view(roles) and name not in denied}
    for name in entity.formula_order:
        expr = entity.fields[name].expr
        if name in visible and expr is not None and not (expr.names & entity.fields.keys()) <= visible:
            visible.discard(name)
    return frozenset(visible)


def _role_sets(roles):
    roles = sorted(roles)
    return [frozenset(r for i, r in enumerate(roles) if mask >> i & 1) for mask in range(1 << len(roles))]


def test_viewable_fields_are_what_access_computed_for_every_role_set_and_department(shipped_metadata):
    departments = [None, *shipped_metadata.departments]
    for entity in shipped_metadata.entities.values():
        for roles in _role_sets(set(shipped_metadata.roles) - {ADMIN_ROLE}):
            for department in departments:
                assert viewable(entity, roles, department) == _old_viewable(entity, roles, department), \
                    (entity.name, roles, department)
        assert viewable(entity, frozenset({ADMIN_ROLE}), None) == frozenset(entity.fields)


def test_more_roles_never_hide_a_field(shipped_metadata):
    """What the condition check relies on, and why it reasons over role sets: viewability only grows."""
    roles = sorted(set(shipped_metadata.roles) - {ADMIN_ROLE})
    for entity in shipped_metadata.entities.values():
        for department in [None, *shipped_metadata.departments]:
            for some in _role_sets(roles):
                for role in roles:
                    assert viewable(entity, some, department) | viewable(entity, frozenset({role}), department) \
                        <= viewable(entity, some | {role}, department)


def test_a_witness_is_found_exactly_when_some_role_set_sees_one_thing_but_not_the_other():
    """Against brute force over every set of roles, for random requirements."""
    import random

    roles = ["admin", "a", "b", "c", "d"]
    sets = _role_sets(set(roles) - {ADMIN_ROLE})
    chooser = random.Random(7)

    def requirement():
        return frozenset(frozenset(chooser.sample(roles, chooser.randint(0, 3)))
                         for _ in range(chooser.randint(0, 3)))

    for _ in range(3000):
        sees, reads = requirement(), requirement()
        found = witness(sees, reads, roles)
        leaking = [s for s in sets if s and meets(sees, s) and not meets(reads, s)]
        assert (found is not None) == bool(leaking), (sees, reads, found, leaking)
        if found is not None:
            assert ADMIN_ROLE not in found.roles
            assert meets(sees, found.roles) and not meets(reads, found.roles), (sees, reads, found)
            single = [s for s in leaking if len(s) == 1]
            assert len(found.roles) == 1 or not single, "one role is named when one role is enough"


def test_conditions_over_fields_everyone_who_sees_the_field_can_see_are_accepted(tmp_path):
    config = _write_case(tmp_path, {
        "roles.yaml": "roles:\n  admin: {label: Admin}\n  sales: {label: Sales}\n  finance: {label: Finance}\n",
        "entities/deal.yaml": (
            "entity: deal\n"
            "label: Deal\n"
            "fields:\n"
            "  name: {type: text}\n"
            "  stage: {type: select, options: [new, won]}\n"
            "  cost: {type: money, access: {view: [finance, admin]}}\n"
            "  margin: {type: formula, expr: \"100 - cost\", visible_if: \"cost > 0\"}\n"
            "  audit: {type: text, access: {view: [finance]}, visible_if: \"cost > 0 and stage == 'won'\",\n"
            "          read_only_if: \"margin < 0\", required_if: \"is_empty(cost)\"}\n"
            "  secret: {type: text, access: {view: [admin]}, visible_if: \"cost > 0\"}\n"
            "  reason: {type: text, visible_if: \"stage == 'won' and owner is not None\"}\n"
            "layout:\n"
            "  tabs:\n"
            "    - groups:\n"
            "        - {fields: [name, stage, reason], visible_if: \"stage != 'new'\"}\n"
            "    - access: {view: [finance]}\n"
            "      visible_if: \"cost > 0\"\n"
            "      groups:\n"
            "        - {fields: [cost, margin, audit], visible_if: \"margin > 0\"}\n"
            "        - {fields: [secret]}\n"
        )})
    metadata, problems = check_config(config)
    assert [str(p) for p in problems] == []
    assert metadata is not None


def test_the_shipped_cards_leak_no_condition_to_any_role(shipped_metadata):
    for entity in shipped_metadata.entities.values():
        assert list(condition_leaks(entity, list(shipped_metadata.roles))) == [], entity.name


# --- files the YAML reader chokes on: one located problem each, never a traceback -------------------

HEAD = "entity: deal\nlabel: Deal\nfields:\n  name: {type: text}\n"
UNREADABLE = [
    # (case, file name, text, line, what the message says)
    ("deep_flow_sequences", "deal.yaml", HEAD + "  x: " + "[" * 10_000 + "\n", 5, "nested more than 50 levels"),
    ("deep_flow_mappings", "deal.yaml", HEAD + "  x: " + "{a: " * 10_000 + "\n", 5, "nested more than 50 levels"),
    ("deep_block_mappings", "deal.yaml",
     HEAD + "".join(f"{' ' * (2 * i + 2)}k{i}:\n" for i in range(300)), 53, "nested more than 50 levels"),
    ("deep_json", "deal.json", '{"entity": "deal",\n "x": ' + "[" * 10_000 + "]" * 10_000 + "}", 2,
     "nested more than 50 levels"),
    ("deep_through_aliases", "deal.yaml",
     HEAD + "  x:\n    - &a0 [end]\n" + "".join(f"    - &a{i} [*a{i - 1}]\n" for i in range(1, 80)), 6,
     "nested more than 50 levels"),
    ("alias_of_itself", "deal.yaml", HEAD + "  x: &loop [*loop]\n", 5, "nested more than 50 levels"),
    ("nul_byte", "deal.yaml", "entity: deal\nlabel: Deal\x00\nfields:\n  name: {type: text}\n", 2,
     "the character U+0000"),
    ("escape_character", "deal.yaml", HEAD + "  note: {type: text, help: \"a\x1bb\"}\n", 5, "the character U+001B"),
    ("decimal_number_of_5000_digits", "deal.yaml", HEAD + "  n: {type: integer, max: " + "9" * 5000 + "}\n", 5,
     "the number is too large"),
    ("hex_number_of_5000_digits", "deal.yaml", HEAD + "  n: {type: integer, max: 0x" + "f" * 5000 + "}\n", 5,
     "the number is too large"),
    ("sexagesimal_number", "deal.yaml", HEAD + "  n: {type: integer, max: 1" + ":59" * 200_000 + "}\n", 5,
     "the number is too large"),
    ("unknown_tag", "deal.yaml", HEAD + "  n: {type: integer, max: !shell 5}\n", 5, "cannot read this value"),
    ("python_tag", "deal.yaml", HEAD + "  n: {type: integer, max: !!python/name:os.system ''}\n", 5,
     "cannot read this value"),
    ("merge_of_a_scalar", "deal.yaml", HEAD + "  n:\n    <<: 5\n    type: integer\n", 6,
     "a merge key (<<) takes a mapping or a list of mappings"),
    ("merge_of_its_own_mapping", "deal.yaml", HEAD + "  n: &n\n    type: integer\n    <<: *n\n", 7,
     "merges a mapping that contains it"),
    ("merge_bomb", "deal.yaml", HEAD + "  m0: &m0 {type: text}\n" + "".join(
        f"  m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 10)}]}}\n" for i in range(1, 10)), 1, "alias expansion?"),
    ("merge_chain", "deal.yaml", HEAD + "  m0: &m0 {type: text}\n" + "".join(
        f"  m{i}: &m{i} {{<<: *m{i - 1}}}\n" for i in range(1, 80)), 5, "merge keys (<<) are nested more than 50"),
]


@pytest.mark.parametrize(("name", "text", "line", "message"), [case[1:] for case in UNREADABLE],
                         ids=[case[0] for case in UNREADABLE])
def test_a_file_the_yaml_reader_chokes_on_is_one_located_problem(tmp_path, name, text, line, message):
    config = _write_case(tmp_path, {})
    (config / "entities" / name).write_bytes(text.encode("utf-8"))

    metadata, problems = check_config(config)

    assert metadata is None
    assert len(problems) == 1, [str(p) for p in problems]
    printed = str(problems[0])
    assert PRINTED.match(printed) and "\n" not in printed, printed
    assert problems[0].file.endswith(f"entities/{name}")
    assert problems[0].line == line, printed
    assert message in printed


def test_the_same_files_are_problem_lines_of_check_config_and_stop_the_app(tmp_path):
    """check-config prints each as one `file:line: path: message` line (exit 1); create_app raises the same."""
    from click.testing import CliRunner

    from kartoteka import create_app
    from kartoteka.cli import main
    from kartoteka.config import Settings

    for case, name, text, line, message in UNREADABLE:
        config = _write_case(tmp_path / case, {})
        (config / "entities" / name).write_bytes(text.encode("utf-8"))

        result = CliRunner().invoke(main, ["check-config", str(config)], catch_exceptions=False)

        assert result.exit_code == 1, (case, result.output)
        assert "Traceback" not in result.output
        lines = result.stdout.strip().splitlines()
        assert len(lines) == 1 and PRINTED.match(lines[0]), (case, lines)
        assert f"entities/{name}:{line}: " in lines[0] and message in lines[0], (case, lines)
        assert "1 problem found." in result.stderr

        settings = Settings(database_url=f"sqlite:///{tmp_path / case / 'k.db'}", config_dir=config,
                            secret_key="test", instance_dir=tmp_path / case / "instance", testing=True)
        with pytest.raises(MetadataError) as raised:
            create_app(settings)
        assert str(raised.value) == lines[0], case


def test_roles_yaml_the_reader_chokes_on_is_a_located_problem(tmp_path):
    config = _write_case(tmp_path, {"entities/deal.yaml": HEAD})
    (config / "roles.yaml").write_bytes(b"roles:\n  sales: {label: Sales\x00}\n")
    metadata, problems = check_config(config)
    assert metadata is None
    assert [(p.file.endswith("roles.yaml"), p.line) for p in problems] == [(True, 2)]
    assert "the character U+0000" in str(problems[0])


def test_control_characters_and_surrogates_in_a_message_are_printed_escaped(tmp_path):
    """YAML escapes can put a line break or an ESC into a value a message echoes, and a file name that is
    not UTF-8 comes as surrogates: each problem stays one printable line."""
    from click.testing import CliRunner

    from kartoteka.cli import main

    config = _write_case(tmp_path, {"entities/deal.yaml": HEAD + '  b: {type: "te\\ext\\nnext"}\n'})
    (config / "entities" / "de\udcffal.yaml").write_text(HEAD, encoding="utf-8")  # the name is b"de\xffal.yaml"

    metadata, problems = check_config(config)
    assert metadata is None
    printed = [str(p) for p in problems]
    assert len(printed) == 2, printed
    assert "entities/deal.yaml:5: fields.b.type: unknown field type 'te\\x1bxt\\nnext'" in printed[0]
    assert "entities/de\\udcffal.yaml:1: entity: entity 'deal' must live in a file named deal.yaml" in printed[1]
    for line in printed:
        line.encode("utf-8")  # no surrogate left: printable anywhere
        assert "\n" not in line and "\x1b" not in line

    result = CliRunner().invoke(main, ["check-config", str(config)], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stdout.strip().splitlines() == printed
    assert "2 problems found." in result.stderr


@pytest.mark.parametrize(("text", "line", "message"), [
    (HEAD + 'title: "{name}\\0"\n', 5, "holds a NUL character (U+0000), which cannot be stored; remove it"),
    (HEAD + '  ok: {type: consent, policy_version: "v\\ud800"}\n', 5, "holds an unpaired surrogate (U+D800"),
    (HEAD + '  s: {type: select, options: [a, "b\\x00"]}\n', 5, "holds a NUL character (U+0000)"),
    (HEAD + '  "n\\udfff": {type: text}\n', 5, "holds an unpaired surrogate (U+DFFF"),
    (HEAD + "rules:\n  - name: r\n    trigger: {on: [created]}\n    actions:\n"
            '      - set: {field: name, value: "\\0"}\n', 9, "holds a NUL character (U+0000)"),
])
def test_text_no_database_can_store_is_refused_wherever_it_is_in_metadata(tmp_path, text, line, message):
    """A NUL or a lone surrogate (from a YAML escape) in a title, option, policy version or rule value would
    reach the database on some save, which refuses it (PostgreSQL) or cannot encode it (both)."""
    config = _write_case(tmp_path, {"entities/deal.yaml": text})
    metadata, problems = check_config(config)
    assert metadata is None
    printed = [str(p) for p in problems]
    assert len(printed) == 1, printed
    assert f"entities/deal.yaml:{line}: (top): {message}" in printed[0]


def test_an_unreadable_entity_file_is_a_problem(tmp_path):
    config = _write_case(tmp_path, {"entities/company.yaml": HEAD.replace("deal", "company")})
    (config / "entities" / "deal.yaml").mkdir()
    (config / "entities" / "broken.yaml").symlink_to(tmp_path / "nowhere.yaml")
    metadata, problems = check_config(config)
    assert metadata is None
    printed = sorted(str(p) for p in problems)
    assert len(printed) == 2, printed
    assert "entities/broken.yaml:1: (top): cannot be read:" in printed[0]
    assert "entities/deal.yaml:1: (top): cannot be read:" in printed[1]


# --- merge keys (`<<: *base`) --------------------------------------------------------------------

def test_merge_keys_copy_a_mapping_and_the_keys_written_beside_them_win(tmp_path):
    config = _write_case(tmp_path, {"entities/deal.yaml": (
        "entity: deal\n"
        "label: Deal\n"
        "fields:\n"
        "  name: &short {type: text, max_length: 50, help: Short}\n"
        "  code:\n"
        "    <<: *short\n"
        "    max_length: 10\n"
        "  both:\n"
        "    <<: [{type: textarea, rows: 3, help: First}, *short]\n"
        "  note: {help: Own, <<: *short, required: true}\n"
    )})
    metadata, problems = check_config(config)
    assert [str(p) for p in problems] == []
    deal = metadata.entity("deal")
    assert list(deal.fields) == ["name", "code", "both", "note"]
    assert (deal.field("code").type.name, deal.field("code").max_length) == ("text", 10)
    assert str(deal.field("code").help) == "Short"
    # In a list, earlier mappings win: type and help from the first, max_length from the second.
    both = deal.field("both")
    assert (both.type.name, both.rows, both.max_length, str(both.help)) == ("textarea", 3, 50, "First")
    note = deal.field("note")
    assert (note.required, note.max_length, str(note.help)) == (True, 50, "Own")


def test_a_problem_in_merged_keys_points_at_the_line_that_holds_them(tmp_path):
    config = _write_case(tmp_path, {"entities/deal.yaml": (
        "entity: deal\n"
        "label: Deal\n"
        "fields:\n"
        "  name: {type: text}\n"
        "  base: &base\n"
        "    type: text\n"
        "    lable: Typo\n"
        "  copy:\n"
        "    <<: *base\n"
        "    <<: *base\n"
        "    help: x\n"
        "    help: y\n"
    )})
    _, problems = check_config(config)
    printed = [str(p) for p in problems]
    assert any(line.endswith("deal.yaml:7: fields.base.lable: unknown key 'lable'; did you mean 'label'?")
               for line in printed), printed
    assert any(line.endswith("deal.yaml:7: fields.copy.lable: unknown key 'lable'; did you mean 'label'?")
               for line in printed), printed
    assert any("deal.yaml:10: fields.copy.<<: duplicate key '<<' (first on line 9)" in line for line in printed)
    assert any("deal.yaml:12: fields.copy.help: duplicate key 'help' (first on line 11)" in line for line in printed)


def test_a_key_that_is_a_list_or_mapping_is_a_problem(tmp_path):
    config = _write_case(tmp_path, {"entities/deal.yaml": HEAD + "  ? [a, b]\n  : {type: text}\n"})
    _, problems = check_config(config)
    assert any("deal.yaml:5: fields: a key must be a single value, not a list or a mapping" in str(p)
               for p in problems), [str(p) for p in problems]


# --- patterns run on RE2 (linear time): what it cannot run, or would run differently, is refused -------

@pytest.mark.parametrize(("pattern", "message"), [
    ("[A-Z{3}", "invalid regular expression: missing ]: [A-Z{3}"),
    ("(a)\\1", "invalid regular expression: invalid escape sequence: \\1; patterns use RE2 syntax"),
    ("(?=a)a", "invalid regular expression: invalid perl operator: (?=; patterns use RE2 syntax"),
    ("(?<!a)b", "invalid regular expression: invalid perl operator: (?<!"),
    ("a{1001}", "invalid regular expression: invalid repetition size: {1001}"),
    ("\\w+", "\\w matches only ASCII letters, digits and _ in a pattern; write [\\p{L}\\p{N}_] for letters "
             "and digits of any script, or [A-Za-z0-9_] for ASCII only"),
    ("[\\W-]+", "\\W matches everything but ASCII letters, digits and _ in a pattern; write [^\\p{L}\\p{N}_]"),
    ("\\bword", "\\b sees only ASCII letters, digits and _ as word characters in a pattern"),
    ("x\\B", "\\B sees only ASCII letters"),
])
def test_a_pattern_re2_cannot_run_as_written_is_refused_at_load(tmp_path, pattern, message):
    field = f"  code: {{type: text, pattern: {json.dumps(pattern)}}}\n"
    config = _write_case(tmp_path, {"entities/deal.yaml": HEAD + field})
    metadata, problems = check_config(config)
    assert metadata is None
    printed = [str(p) for p in problems]
    assert len(printed) == 1 and "deal.yaml:5: fields.code.pattern: " in printed[0], printed
    assert message in printed[0], printed


def test_backtracking_patterns_are_accepted_because_matching_is_linear(tmp_path):
    """`(a+)+b` and friends stall a backtracking engine on a long input; RE2 runs them in linear time."""
    patterns = ["(a+)+b", "(a|a)*c", "(.*a){20}", "\\d*\\d*\\d*x", "\\\\w", "[\\p{L}\\p{N}_]+", "\\d{10}|\\d{12}"]
    config = _write_case(tmp_path, {"entities/deal.yaml": HEAD + "".join(
        f"  p{i}: {{type: text, pattern: {json.dumps(p)}}}\n" for i, p in enumerate(patterns))})
    metadata, problems = check_config(config)
    assert [str(p) for p in problems] == []
    deal = metadata.entity("deal")
    assert [deal.field(f"p{i}").pattern.pattern for i in range(len(patterns))] == patterns
    assert deal.field("p4").pattern.fullmatch("\\w")  # an escaped backslash, then a plain w
    assert deal.field("p5").pattern.fullmatch("Иван_1")
    assert not deal.field("p6").pattern.fullmatch("١٢٣٤٥٦٧٨٩٠")  # \d is 0-9 only: an INN is ASCII digits
