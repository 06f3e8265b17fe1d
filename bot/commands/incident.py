"""`/incident` grammar (a contract): declare, update, severity, commander, role, resolve, …"""

from __future__ import annotations

from dataclasses import dataclass

from bot.catalog import Catalog
from bot.commands.base import CommandSpec, Invalid, Parsed, ParseResult, closest, suggest

SEVERITIES = ("P0", "P1", "P2", "P3")
SUBCOMMANDS = (
    "declare",
    "update",
    "severity",
    "commander",
    "role",
    "resolve",
    "list",
    "stats",
    "help",
)


@dataclass(frozen=True)
class IncidentForm(Parsed):
    """`/incident` alone: open the declare form (a modal)."""

    command = "/incident"
    action = "modal"


@dataclass(frozen=True)
class IncidentDeclare(Parsed):
    """`/incident declare [P0-P3] <title…>`"""

    command = "/incident"
    action = "declare"
    severity: str | None
    title: str


@dataclass(frozen=True)
class IncidentUpdate(Parsed):
    """`/incident update <text…>`"""

    command = "/incident"
    action = "update"
    text: str


@dataclass(frozen=True)
class IncidentResolve(Parsed):
    """`/incident resolve [<summary…>]`"""

    command = "/incident"
    action = "resolve"
    text: str


@dataclass(frozen=True)
class IncidentSeverity(Parsed):
    """`/incident severity P0|P1|P2|P3`"""

    command = "/incident"
    action = "severity"
    severity: str


@dataclass(frozen=True)
class IncidentCommander(Parsed):
    """`/incident commander @user`"""

    command = "/incident"
    action = "commander"
    who: str


@dataclass(frozen=True)
class IncidentRole(Parsed):
    """`/incident role <role> @user`"""

    command = "/incident"
    action = "role"
    role: str
    who: str


@dataclass(frozen=True)
class IncidentList(Parsed):
    """`/incident list` (words after it are refused by the handler, with its usage)."""

    command = "/incident"
    action = "list"
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class IncidentStats(Parsed):
    """`/incident stats [<period>]` (the period is read by the incident service)."""

    command = "/incident"
    action = "stats"
    args: tuple[str, ...] = ()


def _parse(words: list[str], catalog: Catalog) -> ParseResult:
    if not words:
        # `/incident` alone opens the declare form (a modal).
        return IncidentForm()
    head, rest = words[0].lower(), words[1:]
    if head == "declare":
        severity = None
        if rest and rest[0].upper() in SEVERITIES:
            severity, rest = rest[0].upper(), rest[1:]
        if not rest:
            return Invalid("an incident needs a title: `/incident declare [P0-P3] <title…>`.")
        return IncidentDeclare(severity, " ".join(rest))
    if head == "severity":
        if len(rest) != 1 or rest[0].upper() not in SEVERITIES:
            return Invalid("usage: `/incident severity P0|P1|P2|P3`.")
        return IncidentSeverity(rest[0].upper())
    if head == "update":
        text = " ".join(rest)
        if not text:
            return Invalid("an update needs text: `/incident update <text…>`.")
        return IncidentUpdate(text)
    if head == "resolve":
        return IncidentResolve(" ".join(rest))
    if head == "commander":
        if len(rest) != 1:
            return Invalid("usage: `/incident commander @user`.")
        return IncidentCommander(rest[0])
    if head == "role":
        if len(rest) != 2:
            return Invalid("usage: `/incident role <role> @user`.")
        return IncidentRole(rest[0], rest[1])
    if head == "list":
        return IncidentList(tuple(rest))
    if head == "stats":
        return IncidentStats(tuple(rest))
    match = closest(head, SUBCOMMANDS)
    return Invalid(
        f"unknown subcommand '{words[0]}'.{suggest(head, SUBCOMMANDS)} "
        f"Subcommands: {', '.join(SUBCOMMANDS)}.",
        (words[0], match) if match else None,
    )


SPEC = CommandSpec(
    name="/incident",
    summary="declare and run incidents (P0–P3)",
    usage=(
        "declare [P0|P1|P2|P3] <title…>",
        "update <text…>",
        "severity P0|P1|P2|P3",
        "commander @user",
        "role <role> @user",
        "resolve [<summary…>]",
        "list",
        "stats [<period, e.g. 30d>]",
        "help",
    ),
    parser=_parse,
    # Alone it opens the declare form.
    empty_is_help=False,
)
