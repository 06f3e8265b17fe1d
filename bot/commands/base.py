"""What every command grammar shares: help, refusals with usage, and name suggestions."""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

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
    """A well-formed request: one dataclass per form of a command, its fields the operands.

    `command` and `action` name the form (the audit log and "not available" answers use them).
    """

    command: ClassVar[str]
    action: ClassVar[str]


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


def tokenize(text: str) -> list[str] | Invalid:
    try:
        return shlex.split(text.replace("\u201c", '"').replace("\u201d", '"'))
    except ValueError as exc:
        return Invalid(f"cannot read the arguments: {exc}")


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
