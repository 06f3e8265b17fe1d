"""Slash-command grammar: one module per command, pure parsing with exact error messages."""

from bot.commands.base import CommandSpec, Help, Invalid, Parsed, ParseResult
from bot.commands.deploy import (
    DeployHistory,
    DeployLock,
    DeployRequest,
    DeployStatus,
    DeployUnlock,
)
from bot.commands.grammar import COMMANDS, parse
from bot.commands.incident import (
    IncidentCommander,
    IncidentDeclare,
    IncidentForm,
    IncidentList,
    IncidentResolve,
    IncidentRole,
    IncidentSeverity,
    IncidentStats,
    IncidentUpdate,
)
from bot.commands.oncall import OncallShow
from bot.commands.postmortem import PostmortemDone, PostmortemDraft
from bot.commands.rollback import RollbackRequest

__all__ = [
    "COMMANDS",
    "CommandSpec",
    "DeployHistory",
    "DeployLock",
    "DeployRequest",
    "DeployStatus",
    "DeployUnlock",
    "Help",
    "IncidentCommander",
    "IncidentDeclare",
    "IncidentForm",
    "IncidentList",
    "IncidentResolve",
    "IncidentRole",
    "IncidentSeverity",
    "IncidentStats",
    "IncidentUpdate",
    "Invalid",
    "OncallShow",
    "ParseResult",
    "Parsed",
    "PostmortemDone",
    "PostmortemDraft",
    "RollbackRequest",
    "parse",
]
