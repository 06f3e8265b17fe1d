"""The table of slash commands opsbot answers, and the one entry point that parses them."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from types import MappingProxyType

from bot.catalog import Catalog
from bot.commands.base import CommandSpec, Help, Invalid, ParseResult, tokenize
from bot.commands.deploy import SPEC as DEPLOY
from bot.commands.incident import SPEC as INCIDENT
from bot.commands.oncall import SPEC as ONCALL
from bot.commands.postmortem import SPEC as POSTMORTEM
from bot.commands.rollback import SPEC as ROLLBACK

# In this order in help texts ("It knows /deploy, /rollback, …").
COMMANDS: Mapping[str, CommandSpec] = MappingProxyType(
    {spec.name: spec for spec in (DEPLOY, ROLLBACK, INCIDENT, POSTMORTEM, ONCALL)}
)


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
