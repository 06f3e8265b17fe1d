"""`/deploy` grammar (a contract): deploy, status, history, lock, unlock, help."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.catalog import Catalog
from bot.commands.base import (
    CommandSpec,
    Invalid,
    Parsed,
    ParseResult,
    check_environment,
    check_service,
    closest,
    suggest,
)

STRATEGIES = ("rolling", "blue-green", "canary", "recreate")
VERSION_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
SUBCOMMANDS = ("status", "history", "lock", "unlock", "help")


@dataclass(frozen=True)
class DeployRequest(Parsed):
    """`/deploy <service> <env> [<version>] [--strategy …] [--dry-run]`"""

    command = "/deploy"
    action = "deploy"
    service: str
    environment: str
    version: str | None = None
    strategy: str | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class DeployStatus(Parsed):
    """`/deploy status [<service>]`"""

    command = "/deploy"
    action = "status"
    service: str | None = None


@dataclass(frozen=True)
class DeployHistory(Parsed):
    """`/deploy history <service> [<env>]`"""

    command = "/deploy"
    action = "history"
    service: str
    environment: str | None = None


@dataclass(frozen=True)
class DeployLock(Parsed):
    """`/deploy lock <service> <env> <reason…>`"""

    command = "/deploy"
    action = "lock"
    service: str
    environment: str
    reason: str


@dataclass(frozen=True)
class DeployUnlock(Parsed):
    """`/deploy unlock <service> <env>`"""

    command = "/deploy"
    action = "unlock"
    service: str
    environment: str


def _service_env(words: list[str], catalog: Catalog) -> Invalid | None:
    return check_service(catalog, words[0]) or check_environment(catalog, words[1])


def _deploy(words: list[str], catalog: Catalog) -> ParseResult:
    positional: list[str] = []
    strategy: str | None = None
    dry_run = False
    rest = iter(words)
    for word in rest:
        if word == "--dry-run":
            dry_run = True
        elif word == "--strategy" or word.startswith("--strategy="):
            value = word.partition("=")[2] or next(rest, "")
            if value not in STRATEGIES:
                shown = f"'{value}'" if value else "nothing"
                return Invalid(
                    f"--strategy takes one of {', '.join(STRATEGIES)}, got {shown}."
                    + suggest(value, STRATEGIES)
                )
            strategy = value
        elif word.startswith("--"):
            return Invalid(f"unknown option {word}. Options: --strategy, --dry-run.")
        else:
            positional.append(word)
    if len(positional) < 2:
        return Invalid("a deploy needs a service and an environment: `/deploy <service> <env>`.")
    if len(positional) > 3:
        extra = " ".join(positional[3:])
        return Invalid(
            f"too many arguments: '{extra}'. A deploy takes <service> <env> [<version>]."
        )
    problem = _service_env(positional, catalog)
    if problem:
        return problem
    version = positional[2] if len(positional) == 3 else None
    if version is not None and not VERSION_PATTERN.fullmatch(version):
        return Invalid(
            f"version '{version[:40]}' is not valid: use 1–128 letters, digits, '.', '_' or '-'."
        )
    return DeployRequest(positional[0], positional[1], version, strategy, dry_run)


def _parse(words: list[str], catalog: Catalog) -> ParseResult:
    head, rest = words[0].lower(), words[1:]
    if head == "status":
        if len(rest) > 1:
            return Invalid("`/deploy status` takes at most one service.")
        if rest and (problem := check_service(catalog, rest[0])):
            return problem
        return DeployStatus(rest[0] if rest else None)
    if head == "history":
        if not 1 <= len(rest) <= 2:
            return Invalid("usage: `/deploy history <service> [<env>]`.")
        problem = check_service(catalog, rest[0])
        if not problem and len(rest) == 2:
            problem = check_environment(catalog, rest[1])
        if problem:
            return problem
        env = rest[1] if len(rest) == 2 else None
        return DeployHistory(rest[0], env)
    if head == "lock":
        if len(rest) < 3:
            return Invalid("a lock needs a reason: `/deploy lock <service> <env> <reason…>`.")
        if problem := _service_env(rest, catalog):
            return problem
        reason = " ".join(rest[2:])
        return DeployLock(rest[0], rest[1], reason)
    if head == "unlock":
        if len(rest) != 2:
            return Invalid("usage: `/deploy unlock <service> <env>`.")
        if problem := _service_env(rest, catalog):
            return problem
        return DeployUnlock(rest[0], rest[1])
    if catalog.service(words[0]) is None and not words[0].startswith("--"):
        names = catalog.service_names()
        match = closest(words[0], [*names, *SUBCOMMANDS])
        hint = f" Did you mean {match}?" if match else ""
        return Invalid(
            f"unknown service or subcommand '{words[0]}'.{hint} "
            f"Services: {', '.join(names) or 'none configured'}; "
            f"subcommands: {', '.join(SUBCOMMANDS)}.",
            (words[0], match) if match else None,
        )
    return _deploy(words, catalog)


SPEC = CommandSpec(
    name="/deploy",
    summary="deploy a service, following the runbook",
    usage=(
        "<service> <env> [<version>] [--strategy rolling|blue-green|canary|recreate] [--dry-run]",
        "status [<service>]",
        "history <service> [<env>]",
        "lock <service> <env> <reason…>",
        "unlock <service> <env>",
        "help",
    ),
    parser=_parse,
)
