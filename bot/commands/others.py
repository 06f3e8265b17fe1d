"""Grammar of `/rollback`, `/incident`, `/postmortem` and `/oncall` (contracts)."""

from __future__ import annotations

import re

from bot.catalog import Catalog
from bot.commands.base import (
    CommandSpec,
    Invalid,
    Parsed,
    ParseResult,
    check_environment,
    check_service,
    closest,
    register,
    suggest,
)
from bot.commands.deploy import VERSION_PATTERN

SEVERITIES = ("P0", "P1", "P2", "P3")
INCIDENT_ID = re.compile(r"INC-(\d+)", re.IGNORECASE)


def _rollback(words: list[str], catalog: Catalog) -> ParseResult:
    if len(words) < 2:
        return Invalid(
            "a rollback needs a service and an environment: `/rollback <service> <env>`."
        )
    if len(words) > 3:
        return Invalid("too many arguments: `/rollback <service> <env> [<version>]`.")
    problem = check_service(catalog, words[0]) or check_environment(catalog, words[1])
    if problem:
        return problem
    version = words[2] if len(words) == 3 else None
    if version is not None and not VERSION_PATTERN.fullmatch(version):
        return Invalid(
            f"version '{version[:40]}' is not valid: use 1–128 letters, digits, '.', '_' or '-'."
        )
    return Parsed(
        "/rollback", "rollback", {"service": words[0], "environment": words[1], "version": version}
    )


INCIDENT_SUBCOMMANDS = (
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


def _incident(words: list[str], catalog: Catalog) -> ParseResult:
    if not words:
        # `/incident` alone opens the declare form (a modal).
        return Parsed("/incident", "modal", {})
    head, rest = words[0].lower(), words[1:]
    if head == "declare":
        severity = None
        if rest and rest[0].upper() in SEVERITIES:
            severity, rest = rest[0].upper(), rest[1:]
        if not rest:
            return Invalid("an incident needs a title: `/incident declare [P0-P3] <title…>`.")
        return Parsed("/incident", "declare", {"severity": severity, "title": " ".join(rest)})
    if head == "severity":
        if len(rest) != 1 or rest[0].upper() not in SEVERITIES:
            return Invalid("usage: `/incident severity P0|P1|P2|P3`.")
        return Parsed("/incident", "severity", {"severity": rest[0].upper()})
    if head in ("update", "resolve"):
        text = " ".join(rest)
        if head == "update" and not text:
            return Invalid("an update needs text: `/incident update <text…>`.")
        return Parsed("/incident", head, {"text": text})
    if head in ("commander", "role"):
        need = 2 if head == "role" else 1
        if len(rest) != need:
            shape = "<role> @user" if head == "role" else "@user"
            return Invalid(f"usage: `/incident {head} {shape}`.")
        return Parsed("/incident", head, {"args": rest})
    if head in ("list", "stats"):
        return Parsed("/incident", head, {"args": rest})
    match = closest(head, INCIDENT_SUBCOMMANDS)
    return Invalid(
        f"unknown subcommand '{words[0]}'.{suggest(head, INCIDENT_SUBCOMMANDS)} "
        f"Subcommands: {', '.join(INCIDENT_SUBCOMMANDS)}.",
        (words[0], match) if match else None,
    )


def _postmortem(words: list[str], catalog: Catalog) -> ParseResult:
    if not words:
        # No incident named: the incident of the channel the command was typed in.
        return Parsed("/postmortem", "draft", {"incident": None})
    head = words[0]
    if head.lower() == "done":
        if len(words) != 2 or not INCIDENT_ID.fullmatch(words[1]):
            return Invalid("usage: `/postmortem done INC-<n>`.")
        return Parsed("/postmortem", "done", {"incident": words[1].upper()})
    if len(words) == 1 and INCIDENT_ID.fullmatch(head):
        return Parsed("/postmortem", "draft", {"incident": head.upper()})
    return Invalid(
        f"unknown subcommand or incident '{head}'. Use `/postmortem INC-<n>` or "
        "`/postmortem done INC-<n>`."
    )


def _oncall(words: list[str], catalog: Catalog) -> ParseResult:
    if not words:
        return Parsed("/oncall", "show", {"service": None})
    if len(words) > 1:
        return Invalid("usage: `/oncall [<service>]`.")
    if problem := check_service(catalog, words[0]):
        return problem
    return Parsed("/oncall", "show", {"service": words[0]})


register(
    CommandSpec(
        name="/rollback",
        summary="put back the previous version of a service, fast",
        usage=("<service> <env> [<version>]", "help"),
        parser=_rollback,
    )
)
register(
    CommandSpec(
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
        parser=_incident,
        # Alone it opens the declare form.
        empty_is_help=False,
    )
)
register(
    CommandSpec(
        name="/postmortem",
        summary="draft the blameless postmortem of an incident (this channel's, without INC-<n>)",
        usage=("[INC-<n>]", "done INC-<n>", "help"),
        parser=_postmortem,
        empty_is_help=False,
    )
)
register(
    CommandSpec(
        name="/oncall",
        summary="who is on call",
        usage=("[<service>]", "help"),
        parser=_oncall,
        empty_is_help=False,
    )
)
