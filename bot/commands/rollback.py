"""`/rollback` grammar (a contract): `/rollback <service> <env> [<version>]`."""

from __future__ import annotations

from dataclasses import dataclass

from bot.catalog import Catalog
from bot.commands.base import (
    CommandSpec,
    Invalid,
    Parsed,
    ParseResult,
    check_environment,
    check_service,
)
from bot.commands.deploy import VERSION_PATTERN


@dataclass(frozen=True)
class RollbackRequest(Parsed):
    """`/rollback <service> <env> [<version>]`"""

    command = "/rollback"
    action = "rollback"
    service: str
    environment: str
    version: str | None = None


def _parse(words: list[str], catalog: Catalog) -> ParseResult:
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
    return RollbackRequest(words[0], words[1], version)


SPEC = CommandSpec(
    name="/rollback",
    summary="put back an earlier version: at once if it succeeded there, else as a deploy",
    usage=("<service> <env> [<version>]", "help"),
    parser=_parse,
)
