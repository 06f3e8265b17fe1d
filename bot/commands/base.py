"""What every command grammar shares: help, refusals with usage, and name suggestions."""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bot.catalog import Catalog


@dataclass(frozen=True)
class Help:
    """The user asked for help (or gave no arguments where some are required)."""


@dataclass(frozen=True)
class Invalid:
    """The input cannot be understood; `message` says exactly why.

    `replace` is a (wrong word, likely word) pair when a close match exists; `corrected` is then
    the whole command with that word replaced, offered as a button.
    """

    message: str
    replace: tuple[str, str] | None = None
    corrected: str | None = None


@dataclass(frozen=True)
class Parsed:
    """A well-formed request: `action` names what to do, `args` its operands."""

    command: str
    action: str
    args: dict[str, object] = field(default_factory=dict)


ParseResult = Help | Invalid | Parsed


@dataclass(frozen=True)
class CommandSpec:
    name: str
    summary: str
    usage: tuple[str, ...]
    parser: Callable[[list[str], Catalog], ParseResult]
    # Some commands do something useful with no arguments (`/oncall` shows everyone).
    empty_is_help: bool = True

    def usage_text(self) -> str:
        lines = "\n".join(f"• `{self.name} {line}`" for line in self.usage)
        return f"*{self.name}* — {self.summary}\n{lines}"


COMMANDS: dict[str, CommandSpec] = {}


def register(spec: CommandSpec) -> CommandSpec:
    COMMANDS[spec.name] = spec
    return spec


def tokenize(text: str) -> list[str] | Invalid:
    try:
        return shlex.split(text.replace("\u201c", '"').replace("\u201d", '"'))
    except ValueError as exc:
        return Invalid(f"cannot read the arguments: {exc}")


def parse(command: str, text: str, catalog: Catalog) -> ParseResult:
    spec = COMMANDS.get(command)
    if spec is None:
        return Invalid(f"opsbot does not know the command {command}")
    words = tokenize(text)
    if isinstance(words, Invalid):
        return words
    if (not words and spec.empty_is_help) or (words and words[0].lower() == "help"):
        return Help()
    result = spec.parser(words, catalog)
    if isinstance(result, Invalid) and result.replace:
        wrong, right = result.replace
        fixed = [right if word == wrong else word for word in words]
        result = Invalid(result.message, result.replace, f"{command} {shlex.join(fixed)}")
    return result


def closest(word: str, choices: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def suggest(word: str, choices: Sequence[str]) -> str:
    match = closest(word, choices)
    return f" Did you mean {match}?" if match else ""


def unknown(kind: str, word: str, choices: Sequence[str]) -> Invalid:
    valid = ", ".join(choices) if choices else "none configured"
    match = closest(word, choices)
    return Invalid(
        f"unknown {kind} '{word}'.{suggest(word, choices)} Valid {kind}s: {valid}.",
        (word, match) if match else None,
    )


def check_service(catalog: Catalog, name: str) -> Invalid | None:
    if catalog.service(name) is None:
        return unknown("service", name, catalog.service_names())
    return None


def check_environment(catalog: Catalog, name: str) -> Invalid | None:
    if catalog.environment(name) is None:
        return unknown("environment", name, catalog.environment_names())
    return None
