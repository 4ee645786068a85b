"""Templates of rule texts (task titles, notifications, e-mails): a small, safe part of Jinja2.

`{{ name }}` writes a field's value as the reader sees it; `{% if ... %}...{% endif %}`, `x if c else y`,
comparisons, `and`/`or`/`not` and a few filters (default, upper, lower, title, capitalize, trim, truncate, and
first_word and other_words, which split a name) are
allowed (not replace: chained on an empty pattern it would grow the text exponentially).
Loops, attribute access, calls, assignments, macros and includes are refused when the metadata loads, so rendering
is a bounded walk over the values (Jinja2's sandbox runs it too). Values are given as display texts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_OUTPUT = 20_000
FILTERS = frozenset({"default", "upper", "lower", "title", "capitalize", "trim", "truncate", "d", "first_word",
                     "other_words"})
TESTS = frozenset({"none", "defined", "undefined"})
_ALLOWED = (nodes.Template, nodes.Output, nodes.TemplateData, nodes.Name, nodes.Const, nodes.If, nodes.CondExpr,
            nodes.Compare, nodes.Operand, nodes.And, nodes.Or, nodes.Not, nodes.Concat, nodes.Filter, nodes.Test,
            nodes.List, nodes.Tuple)
_SINGLE_BRACE = re.compile(r"(?<!\{)\{\s*([a-z_][a-z0-9_]*)\s*\}(?!\})")

_ENVIRONMENT = ImmutableSandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
# 'Anna Petrova' | first_word -> 'Anna'; | other_words -> 'Petrova' (the first word when there is one only).
_ENVIRONMENT.filters["first_word"] = lambda text: (str(text).split() or [""])[0]
_ENVIRONMENT.filters["other_words"] = lambda text: " ".join(str(text).split()[1:]) or (str(text).split() or [""])[0]


class TemplateProblem(ValueError):
    """A template cannot be used; the message says why."""


@dataclass(frozen=True)
class RuleTemplate:
    """A checked template: its source, the names it reads, and the compiled Jinja2 template."""

    source: str
    names: frozenset[str]
    template: Any = field(repr=False, compare=False)

    def render(self, values: Mapping[str, str]) -> str:
        """The text with `values` (display texts by name) filled in; TemplateProblem if rendering fails."""
        try:
            text = str(self.template.render(dict(values)))
        except TemplateError as exc:
            raise TemplateProblem(f"cannot fill in '{self.source[:60]}': {exc}") from None
        return text[:MAX_OUTPUT]


@dataclass(frozen=True)
class LocalizedTemplate:
    """A rule text in one or more languages (`{en: ..., ru: ...}`, or one text for all): each reader gets theirs."""

    by_language: Mapping[str, RuleTemplate]

    @property
    def names(self) -> frozenset[str]:
        """The names any of its languages reads."""
        return frozenset().union(*(t.names for t in self.by_language.values()))

    def render(self, values: Mapping[str, str], language: str = "en") -> str:
        """The text in `language` (else English, else the text given for all, else the first)."""
        found = self.by_language
        template = found.get(language) or found.get("en") or found.get("") or next(iter(found.values()))
        return template.render(values)


def compile_localized(raw: str | Mapping[str, str], known: Iterable[str],
                      suggest: Callable[[str, Iterable[str]], str]) -> LocalizedTemplate:
    """A text given once (a string) or per language (a mapping), every language checked; TemplateProblem if not."""
    names = list(known)
    if isinstance(raw, str):
        return LocalizedTemplate({"": compile_template(raw, names, suggest)})
    return LocalizedTemplate({language: compile_template(text, names, suggest) for language, text in raw.items()})


def compile_template(source: str, known: Iterable[str], suggest: Callable[[str, Iterable[str]], str]) -> RuleTemplate:
    """Parse and check `source` against the names it may read; TemplateProblem naming every problem found."""
    known_names = set(known)
    try:
        tree = _ENVIRONMENT.parse(source)
    except TemplateError as exc:
        raise TemplateProblem(f"template '{source[:60]}' cannot be read: {exc}") from None
    problems: list[str] = []
    names: set[str] = set()
    for node in tree.find_all(nodes.Node):
        if not isinstance(node, _ALLOWED):
            problems.append(f"{_describe(node)} is not allowed in a template; write fields as {{{{ name }}}}")
        elif isinstance(node, nodes.Name):
            if node.name not in known_names:
                problems.append(f"unknown field '{node.name}' in template{suggest(node.name, known_names)}")
            names.add(node.name)
        elif isinstance(node, nodes.Filter) and node.name not in FILTERS:
            problems.append(f"filter '{node.name}' is not allowed in a template{suggest(node.name, FILTERS)}")
        elif isinstance(node, nodes.Test) and node.name not in TESTS:
            problems.append(f"test '{node.name}' is not allowed in a template")
    for match in _SINGLE_BRACE.finditer(source):
        if match.group(1) in known_names:
            problems.append(f"'{match.group(0)}' is written out as it stands; write '{{{{ {match.group(1)} }}}}' to "
                            "fill in the field")
    if problems:
        raise TemplateProblem("; ".join(dict.fromkeys(problems)))
    return RuleTemplate(source, frozenset(names), _ENVIRONMENT.from_string(tree))


def _describe(node: nodes.Node) -> str:
    kinds = {nodes.For: "a loop", nodes.Getattr: "attribute access (a.b)", nodes.Getitem: "indexing (a[b])",
             nodes.Call: "a call", nodes.Assign: "an assignment", nodes.Macro: "a macro", nodes.Include: "include",
             nodes.Import: "import", nodes.Extends: "extends", nodes.Block: "a block"}
    return next((text for kind, text in kinds.items() if isinstance(node, kind)), type(node).__name__)
