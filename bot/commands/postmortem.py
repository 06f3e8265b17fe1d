"""`/postmortem` grammar (a contract): `/postmortem [INC-<n>]` and `/postmortem done INC-<n>`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.catalog import Catalog
from bot.commands.base import CommandSpec, Invalid, Parsed, ParseResult

INCIDENT_ID = re.compile(r"INC-(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class PostmortemDraft(Parsed):
    """`/postmortem [INC-<n>]`: without one, the incident of the channel it was typed in."""

    command = "/postmortem"
    action = "draft"
    incident: str | None = None


@dataclass(frozen=True)
class PostmortemDone(Parsed):
    """`/postmortem done INC-<n>`"""

    command = "/postmortem"
    action = "done"
    incident: str


def _parse(words: list[str], catalog: Catalog) -> ParseResult:
    if not words:
        # No incident named: the incident of the channel the command was typed in.
        return PostmortemDraft(None)
    head = words[0]
    if head.lower() == "done":
        if len(words) != 2 or not INCIDENT_ID.fullmatch(words[1]):
            return Invalid("usage: `/postmortem done INC-<n>`.")
        return PostmortemDone(words[1].upper())
    if len(words) == 1 and INCIDENT_ID.fullmatch(head):
        return PostmortemDraft(head.upper())
    return Invalid(
        f"unknown subcommand or incident '{head}'. Use `/postmortem INC-<n>` or "
        "`/postmortem done INC-<n>`."
    )


SPEC = CommandSpec(
    name="/postmortem",
    summary="draft the blameless postmortem of an incident (this channel's, without INC-<n>)",
    usage=("[INC-<n>]", "done INC-<n>", "help"),
    parser=_parse,
    empty_is_help=False,
)
