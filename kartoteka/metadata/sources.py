"""Reading metadata files (YAML or JSON) into plain data, keeping the line of every key."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kartoteka.metadata.types.base import unstorable

Path_ = tuple[str | int, ...]
MAX_FILE_BYTES = 2_000_000
MAX_NODES = 200_000
# Levels of nesting a file may have (metadata itself needs about a dozen). The YAML composer recurses once
# per level, and so does building the data, so this also bounds the stack either can take.
MAX_DEPTH = 50
# Whole numbers in metadata are far smaller (ids, limits, at most 2^53): a longer one is refused before
# Python converts it, which for thousands of digits raises and for a long sexagesimal 1:59:59:... is slow.
MAX_NUMBER_DIGITS = 100
MERGE_TAG = "tag:yaml.org,2002:merge"
INT_TAG = "tag:yaml.org,2002:int"
# Control characters (tab excepted) and UTF-16 surrogates: escaped when a message shows them, so that every
# problem stays one printable line ("\\x00", "\\ud800") that any terminal or log can take.
_UNPRINTABLE = re.compile("[\x00-\x08\x0a-\x1f\x7f\ud800-\udfff]")


def printable(text: str) -> str:
    """`text` with control characters (but tab) and lone surrogates written as Python escapes."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


@dataclass(frozen=True, order=True)
class Problem:
    """One finding in the metadata, printed as `file:line: path: message`."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return printable(f"{where}: {self.path or '(top)'}: {self.message}")


def dotted(path: Path_) -> str:
    """('fields', 'stage', 'options', 0) -> 'fields.stage.options[0]'."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@dataclass
class Source:
    """A parsed metadata file and the line where each path starts."""

    file: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line(self, path: Path_) -> int:
        """The line of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)

    def problem(self, path: Path_, message: str) -> Problem:
        """A Problem located at `path` in this file."""
        return Problem(self.file, self.line(path), dotted(path), message)


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: `no`, `on`, `yes` stay strings (option values!).

    Nor are there implicit timestamps: `min: 2025-01-01` stays text that the field's type parses.
    Nesting deeper than MAX_DEPTH stops composing with a located error, before the recursion gets deep.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                event = self.peek_event()  # type: ignore[no-untyped-call]  # types-PyYAML leaves it unannotated
                raise _Unreadable(event.start_mark, f"values are nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers
          if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class SourceError(Exception):
    """The file cannot be parsed at all."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class _Unreadable(Exception):
    """Reading stops here: `message` at `mark` (None: the file as a whole)."""

    def __init__(self, mark: yaml.Mark | None, message: str) -> None:
        super().__init__(message)
        self.line = mark.line + 1 if mark is not None else 1
        self.message = message


def read_source(path: Path, display: str) -> tuple[Source, list[Problem]]:
    """Parse one file; duplicate keys are reported as problems, anything unreadable raises SourceError.

    Whatever the file holds, the outcome is problems naming the file and, where known, the line: never an
    exception from the YAML library, the recursion limit or Python's number conversion.
    """
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise SourceError(Problem(display, 1, "", f"file is larger than {MAX_FILE_BYTES} bytes"))
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(Problem(display, 1, "", f"file is not UTF-8 text: {exc.reason}")) from None
    except OSError as exc:
        raise SourceError(Problem(display, 1, "", f"cannot be read: {exc.strerror or exc}")) from None
    bad = yaml.reader.Reader.NON_PRINTABLE.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        raise SourceError(Problem(display, line, "", f"holds the character U+{ord(bad.group()):04X}, which a YAML "
                                                     "or JSON file may not contain; remove it"))
    source = Source(display, None)
    problems: list[Problem] = []
    loader = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            raise SourceError(Problem(display, 1, "", "file is empty"))
        source.data = _Builder(source, loader, problems).build(node, (), 1)
    except _Unreadable as exc:
        raise SourceError(Problem(display, exc.line, "", exc.message)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        message = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise SourceError(Problem(display, line, "", f"syntax error: {message}")) from None
    except yaml.YAMLError as exc:
        raise SourceError(Problem(display, 1, "", f"syntax error: {exc}")) from None
    except (RecursionError, MemoryError):  # a safety net: MAX_DEPTH and MAX_NODES stop both long before
        raise SourceError(Problem(display, 1, "", "file is nested too deeply or too large to read")) from None
    finally:
        if loader is not None:
            loader.dispose()
    return source, problems


class _Builder:
    """Plain data from the composed nodes, recording the line of every path.

    Bounded: at most MAX_NODES values (aliases count each time they are used) and MAX_DEPTH levels
    (aliases can nest deeper than the text does). Merge keys (`<<: *base`) are resolved here.
    """

    def __init__(self, source: Source, loader: _Loader, problems: list[Problem]) -> None:
        self.source = source
        self.loader = loader
        self.problems = problems
        self.budget = MAX_NODES

    def build(self, node: yaml.Node, path: Path_, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise _Unreadable(node.start_mark, f"values are nested more than {MAX_DEPTH} levels deep")
        self.budget -= 1
        if self.budget < 0:
            raise _Unreadable(None, f"file has more than {MAX_NODES} values (alias expansion?)")
        self.source.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            result: dict[str, Any] = {}
            for key, key_node, value_node in self.pairs(node, path, ()):
                child = (*path, key)
                self.source.lines[child] = key_node.start_mark.line + 1
                result[key] = self.build(value_node, child, depth + 1)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        return self.scalar(node)

    def pairs(self, node: yaml.MappingNode, path: Path_, merging: tuple[yaml.Node, ...]
              ) -> list[tuple[str, yaml.Node, yaml.Node]]:
        """The (key, key node, value node) of a mapping, with merge keys resolved, in document order.

        `<<: *base` (or `<<: [*a, *b]`) copies the keys of the mapping(s) that are not written in this
        mapping, where the `<<` stands; in a list, earlier mappings win. Duplicate keys are reported (not
        within merged mappings: those are reported where they are written) and the first one kept.
        """
        # Merging is work too: a mapping merged ten times over, ten levels deep, would take 10^10 steps.
        self.budget -= len(node.value) + 1
        if self.budget < 0:
            raise _Unreadable(None, f"file has more than {MAX_NODES} values (alias expansion?)")
        if len(merging) >= MAX_DEPTH:
            raise _Unreadable(node.start_mark, f"merge keys (<<) are nested more than {MAX_DEPTH} levels deep")
        report = not merging
        merging = (*merging, node)
        written: dict[str, yaml.Node] = {}
        entries: list[tuple[str, yaml.Node, yaml.Node] | list[tuple[str, yaml.Node, yaml.Node]]] = []
        for key_node, value_node in node.value:
            merge = key_node.tag == MERGE_TAG and isinstance(key_node, yaml.ScalarNode)
            key = "<<" if merge else self.key(key_node, path, report)
            if key is None:
                continue
            if key in written:
                if report:
                    message = f"duplicate key '{key}' (first on line {written[key].start_mark.line + 1})"
                    self.problems.append(Problem(self.source.file, key_node.start_mark.line + 1,
                                                 dotted((*path, key)), message))
                continue
            written[key] = key_node
            if key == "<<" and key_node.tag == MERGE_TAG:
                entries.append(self.merged(key_node, value_node, path, merging))
            else:
                entries.append((key, key_node, value_node))
        result: list[tuple[str, yaml.Node, yaml.Node]] = []
        taken: set[str] = set()
        for entry in entries:
            for key, key_node, value_node in entry if isinstance(entry, list) else [entry]:
                if key in taken or (isinstance(entry, list) and key in written):
                    continue
                taken.add(key)
                result.append((key, key_node, value_node))
        return result

    def merged(self, key: yaml.Node, value: yaml.Node, path: Path_, merging: tuple[yaml.Node, ...]
               ) -> list[tuple[str, yaml.Node, yaml.Node]]:
        """The pairs a merge key brings in: of one mapping, or of a list of mappings (earlier ones first)."""
        items = value.value if isinstance(value, yaml.SequenceNode) else [value]
        mappings = [m for m in items if isinstance(m, yaml.MappingNode)]
        if not mappings or len(mappings) != len(items):
            raise _Unreadable(value.start_mark, "a merge key (<<) takes a mapping or a list of mappings, "
                                                "such as <<: *base or <<: [*a, *b]")
        if any(m is outer for m in mappings for outer in merging):
            raise _Unreadable(key.start_mark, "a merge key (<<) merges a mapping that contains it")
        return [pair for mapping in mappings for pair in self.pairs(mapping, path, merging)]

    def key(self, node: yaml.Node, path: Path_, report: bool) -> str | None:
        """A mapping key as text; a list or mapping as a key is a problem (None)."""
        if not isinstance(node, yaml.ScalarNode):
            if report:
                self.problems.append(Problem(self.source.file, node.start_mark.line + 1, dotted(path),
                                             "a key must be a single value, not a list or a mapping"))
            return None
        key = self.scalar(node)
        return key if isinstance(key, str) else str(key)

    def scalar(self, node: yaml.Node) -> Any:
        if node.tag == MERGE_TAG:  # `<<` where it is not a key is just text
            return node.value
        too_large = f"the number is too large: numbers here have at most {MAX_NUMBER_DIGITS} digits"
        if node.tag == INT_TAG and len(node.value) > 2 * MAX_NUMBER_DIGITS:
            raise _Unreadable(node.start_mark, too_large)
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            raise _Unreadable(node.start_mark, f"cannot read this value: {exc.problem or exc}") from None
        except ValueError as exc:
            raise _Unreadable(node.start_mark, too_large if node.tag == INT_TAG else
                              f"cannot read this value: {exc}") from None
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**MAX_NUMBER_DIGITS:
            raise _Unreadable(node.start_mark, too_large)
        if isinstance(value, str) and (problem := unstorable(value)) is not None:
            # "\0" or "\ud800" in a title, an option or a rule's value would reach the database on some save.
            raise _Unreadable(node.start_mark, f"holds {problem}, which cannot be stored; remove it")
        return value
