"""Slash commands: parse and answer usage in the ack, run the rest after it."""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.commands import COMMANDS, Help, Invalid, parse
from bot.messages import Button, Message, Outcome, Reply
from handlers.common import HandlerDeps, Request, reply_payload, send_reply

RERUN_ACTION = "rerun_command"

Ack = Callable[..., Awaitable[Any]]


def usage_reply(command: str) -> Reply:
    return Reply(Message(COMMANDS[command].usage_text()))


@functools.cache
def usage_payload(command: str) -> dict[str, Any]:
    """The ack body of `<command> help`: the same every time, so built once."""
    return reply_payload(usage_reply(command))


def invalid_reply(command: str, invalid: Invalid) -> Reply:
    buttons: tuple[Button, ...] = ()
    if invalid.corrected:
        label = f"Run {invalid.corrected}"
        buttons = (Button(RERUN_ACTION, label[:75], invalid.corrected, "primary"),)
    text = f":warning: {invalid.message}"
    return Reply(Message(text, buttons=buttons, context=COMMANDS[command].usage_text()))


def describe(command: str, text: str) -> str:
    """The audited name of a request: the command and its first word, never free text."""
    first = text.split(maxsplit=1)[0].lower() if text.strip() else ""
    if first and not re.fullmatch(r"[a-z][a-z-]{0,20}", first):
        first = ""
    return f"{command} {first}".strip()


async def run_command(deps: HandlerDeps, request: Request, *, command: str, text: str) -> Outcome:
    """Carry out a parsed command and reply; shared by slash commands and the re-run button."""
    services = deps.services
    result = parse(command, text, services.catalog)
    if isinstance(result, Help):
        await request.respond(**usage_payload(command))
        return Outcome("usage")
    if isinstance(result, Invalid):
        await send_reply(request.respond, invalid_reply(command, result))
        return Outcome("invalid", {"reason": result.message})
    work = deps.routes.get(type(result))
    if work is None:
        message = Message(
            f":construction: `{command} {text.strip()}`: {result.action} is not available in "
            "this version of opsbot yet. Nothing was changed."
        )
        await send_reply(request.respond, Reply(message))
        return Outcome("unavailable", {"action": result.action})
    reply, outcome = await work(services, result, request)
    if reply is not None:
        await send_reply(request.respond, reply)
    return outcome


def command_listener(deps: HandlerDeps, command: str) -> Callable[..., Awaitable[None]]:
    """The listener of one slash command: usage and parse errors are answered in the ack."""

    async def on_command(ack: Ack, body: dict[str, Any], respond: Any) -> None:
        text = body.get("text", "")
        request = Request.of_command(deps.services, body, respond)
        # Usage and parse errors are pure and instant: answer them in the ack itself.
        result = parse(command, text, deps.services.catalog)
        answered: Outcome | None = None
        if isinstance(result, Help):
            await ack(**usage_payload(command))
            answered = Outcome("usage")
        elif isinstance(result, Invalid):
            await ack(**reply_payload(invalid_reply(command, result)))
            answered = Outcome("invalid", {"reason": result.message})
        else:
            await ack()

        async def work() -> Outcome:
            return await run_command(deps, request, command=command, text=text)

        deps.after_ack(request, action=describe(command, text), work=work, answered=answered)

    return on_command


def register(app: AsyncApp, deps: HandlerDeps) -> None:
    """One listener per slash command opsbot knows, and one answer for those it does not."""
    for name in COMMANDS:
        app.command(name)(command_listener(deps, name))

    async def on_unknown_command(ack: Ack, body: dict[str, Any], respond: Any) -> None:
        command = str(body.get("command", "?"))[:40]
        known = ", ".join(COMMANDS)
        await ack(text=f":warning: opsbot does not know {command}. It knows {known}.")
        request = Request.of_command(deps.services, body, respond)
        deps.after_ack(
            request, action="unknown command", answered=Outcome("invalid", {"command": command})
        )

    app.command(re.compile(r".*"))(on_unknown_command)
