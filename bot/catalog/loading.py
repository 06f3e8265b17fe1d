"""Reading `opsbot.yml`: YAML with line numbers, `${VAR}` substitution, and every problem at once.

`load_catalog()` reads the file, substitutes `${VAR}` in scalar values, validates everything and
reports every problem as `file:line: key.path: what is wrong` (a `CatalogError`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bot.catalog.checks import Loc, cross_problems, format_path
from bot.catalog.problems import describe_error
from bot.catalog.schema import Catalog


class CatalogError(Exception):
    """The catalog cannot be used; `problems` are lines `file:line: key.path: what is wrong`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_catalog(path: str | Path, environ: Mapping[str, str] | None = None) -> Catalog:
    """Read, substitute `${VAR}` from `environ` (default os.environ), and validate `path`."""
    document = _Document(str(path), os.environ if environ is None else environ)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogError([f"{path}:1: (file): no such file"]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise CatalogError([f"{path}:1: (file): cannot read the file: {err}"]) from None
    data = document.parse(text)
    if document.fatal:
        raise CatalogError(document.render())
    if data is None:
        document.add((), "the file is empty: expected slack, environments and services")
        raise CatalogError(document.render())

    if isinstance(data, dict):
        # Top-level `x-…` keys hold YAML anchors for reuse, as in Compose files.
        data = {key: value for key, value in data.items() if not key.startswith("x-")}
    for loc, message in cross_problems(data):
        document.add(loc, message)
    try:
        catalog = Catalog.model_validate(data, context={"cross_checked": True})
    except ValidationError as err:
        for error in err.errors(include_url=False):
            loc, message = describe_error(error, document.from_variables)
            if not any(loc[: len(bad)] == bad for bad in document.failed_paths):
                document.add(loc, message)
        catalog = None
    if document.problems:
        raise CatalogError(document.render())
    assert catalog is not None
    return catalog


class _CatalogLoader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's base-60 numbers, so `end: 18:00` stays the text "18:00"."""


_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_CatalogLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_CatalogLoader.add_implicit_resolver(
    _INT,
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_CatalogLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9_]+(?:[eE][-+][0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)

_VARIABLE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VARIABLE_BODY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


class _Document:
    """One parse of the file: the data, the line of every key path, and problems so far."""

    def __init__(self, filename: str, environ: Mapping[str, str]) -> None:
        self.filename = filename
        self.environ = environ
        self.lines: dict[Loc, int] = {(): 1}
        self.problems: list[tuple[int, str]] = []
        self.failed_paths: list[Loc] = []
        self.from_variables: dict[Loc, list[str]] = {}
        self.fatal = False

    def add(self, loc: Loc, message: str, line: int | None = None, where: str = "") -> None:
        if line is None:
            line = next(
                self.lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in self.lines
            )
        problem = (line, f"{self.filename}:{line}: {where or format_path(loc)}: {message}")
        if problem not in self.problems:
            self.problems.append(problem)

    def render(self) -> list[str]:
        return [text for _, text in sorted(self.problems, key=lambda problem: problem[0])]

    def parse(self, text: str) -> Any:
        loader = _CatalogLoader(text)
        try:
            node = loader.get_single_node()
            return None if node is None else self._convert(node, (), loader)
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            line = mark.line + 1 if mark else 1
            message = err.problem or err.context or "invalid YAML"
            if err.context and err.problem and err.problem.startswith("but "):
                message = f"{err.context}, {err.problem}"
            elif err.context and err.problem:
                opened = err.context_mark.line + 1 if err.context_mark else line
                where_opened = f", which starts on line {opened}" if opened != line else ""
                message = f"{err.problem} ({err.context}{where_opened})"
            self.add((), f"invalid YAML: {message}", line=line, where="(file)")
            self.fatal = True
            return None
        except yaml.YAMLError as err:  # pragma: no cover - every PyYAML parse error is marked
            self.add((), f"invalid YAML: {err}")
            self.fatal = True
            return None
        finally:
            loader.dispose()

    def _convert(self, node: yaml.Node, loc: Loc, loader: _CatalogLoader) -> Any:
        collection_tag = {yaml.MappingNode: _MAP_TAG, yaml.SequenceNode: _SEQ_TAG}.get(type(node))
        if collection_tag and node.tag != collection_tag:
            self._fail(loc, f"unsupported tag {node.tag!r}")
            return None
        if isinstance(node, yaml.MappingNode):
            own_keys = {id(key) for key, _ in node.value}
            loader.flatten_mapping(node)
            mapping: dict[str, Any] = {}
            first_lines: dict[str, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    self.add(loc, "keys must be plain words", line=key_node.start_mark.line + 1)
                    continue
                key = key_node.value
                line = key_node.start_mark.line + 1
                # Keys brought in by a `<<:` merge may be overridden; repeating a key may not.
                if key in first_lines and id(key_node) in own_keys:
                    self.add(
                        (*loc, key),
                        f"duplicate key {key!r} (first on line {first_lines[key]})",
                        line=line,
                    )
                if id(key_node) in own_keys:
                    first_lines.setdefault(key, line)
                self.lines[(*loc, key)] = line
                mapping[key] = self._convert(value_node, (*loc, key), loader)
            return mapping
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.lines[(*loc, index)] = item.start_mark.line + 1
                items.append(self._convert(item, (*loc, index), loader))
            return items
        try:
            value = loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as err:  # e.g. !!python/object
            self._fail(loc, str(err.problem))
            return node.value
        except ValueError as err:  # e.g. a timestamp such as 2025-13-01
            self._fail(loc, f"cannot read {node.value!r}: {err}")
            return node.value
        if node.tag == _STR_TAG and isinstance(value, str) and "${" in value:
            return self._substitute(value, loc)
        return value

    def _substitute(self, value: str, loc: Loc) -> str:
        def replace(match: re.Match[str]) -> str:
            if match[0] == "$${":
                return "${"
            body = _VARIABLE_BODY.fullmatch(match[1] or "") if match[0] != "${" else None
            if body is None:
                hint = "(write ${NAME} or ${NAME:-default})"
                self._fail(loc, f"bad variable reference {match[0]!r} {hint}")
                return match[0]
            name, default = body[1], body[2]
            self.from_variables.setdefault(loc, []).append(name)
            current = self.environ.get(name)
            if default is not None:
                return current or default
            if current is None:
                self._fail(loc, f"environment variable {name} is not set")
                return match[0]
            return current

        return _VARIABLE.sub(replace, value)

    def _fail(self, loc: Loc, message: str) -> None:
        self.add(loc, message)
        self.failed_paths.append(loc)
