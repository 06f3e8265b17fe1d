"""`/oncall` grammar (a contract): `/oncall [<service>]`."""

from __future__ import annotations

from dataclasses import dataclass

from bot.catalog import Catalog
from bot.commands.base import CommandSpec, Invalid, Parsed, ParseResult, check_service


@dataclass(frozen=True)
class OncallShow(Parsed):
    """`/oncall [<service>]`: without one, every service in the catalog."""

    command = "/oncall"
    action = "show"
    service: str | None = None


def _parse(words: list[str], catalog: Catalog) -> ParseResult:
    if not words:
        return OncallShow(None)
    if len(words) > 1:
        return Invalid("usage: `/oncall [<service>]`.")
    if problem := check_service(catalog, words[0]):
        return problem
    return OncallShow(words[0])


SPEC = CommandSpec(
    name="/oncall",
    summary="who is on call",
    usage=("[<service>]", "help"),
    parser=_parse,
    empty_is_help=False,
)
