"""Slash-command grammar: one module per command, pure parsing with exact error messages."""

from bot.commands import deploy, others
from bot.commands.base import COMMANDS, CommandSpec, Help, Invalid, Parsed, ParseResult, parse

__all__ = [
    "COMMANDS",
    "CommandSpec",
    "Help",
    "Invalid",
    "ParseResult",
    "Parsed",
    "deploy",
    "others",
    "parse",
]
