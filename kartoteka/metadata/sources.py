"""Reading metadata files (YAML or JSON) into plain data, keeping the line of every key."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]
MAX_FILE_BYTES = 2_000_000
MAX_NODES = 200_000


@dataclass(frozen=True, order=True)
class Problem:
    """One finding in the metadata, printed as `file:line: path: message`."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '(top)'}: {self.message}"


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
    """


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


def read_source(path: Path, display: str) -> tuple[Source, list[Problem]]:
    """Parse one file; duplicate keys are reported as problems, syntax errors raise SourceError."""
    if path.stat().st_size > MAX_FILE_BYTES:
        raise SourceError(Problem(display, 1, "", f"file is larger than {MAX_FILE_BYTES} bytes"))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(Problem(display, 1, "", f"file is not UTF-8 text: {exc.reason}")) from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        message = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise SourceError(Problem(display, line, "", f"syntax error: {message}")) from None
    except yaml.YAMLError as exc:
        raise SourceError(Problem(display, 1, "", f"syntax error: {exc}")) from None
    finally:
        loader.dispose()
    source = Source(display, None)
    problems: list[Problem] = []
    if node is None:
        raise SourceError(Problem(display, 1, "", "file is empty"))
    budget = [MAX_NODES]
    try:
        source.data = _build(node, (), source, loader, problems, budget)
    except RecursionError:
        raise SourceError(Problem(display, 1, "", "file is nested too deeply")) from None
    if budget[0] < 0:
        raise SourceError(Problem(display, 1, "", f"file has more than {MAX_NODES} values (alias expansion?)"))
    return source, problems


def _build(
    node: yaml.Node, path: Path_, source: Source, loader: _Loader, problems: list[Problem], budget: list[int]
) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        return None
    source.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                key = str(key)
            child = (*path, key)
            if key in result:
                problems.append(Problem(source.file, key_node.start_mark.line + 1, dotted(child),
                                        f"duplicate key '{key}' (first on line {source.lines[child]})"))
                continue
            source.lines[child] = key_node.start_mark.line + 1
            result[key] = _build(value_node, child, source, loader, problems, budget)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), source, loader, problems, budget) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
