"""Slash commands: parse and answer usage in the ack, run the rest after it."""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.app import Services
from bot.commands import COMMANDS, Help, Invalid, Parsed, parse
from bot.messages import Button, Message, Outcome, Reply
from handlers.common import Respond, carry_out, pooled_respond, reply_payload, send_reply

# (command, action) -> what does it; later features add their entries with `route`.
Work = Callable[[Services, Parsed, dict[str, Any]], Awaitable[tuple[Reply | None, Outcome]]]
ROUTES: dict[tuple[str, str], Work] = {}

RERUN_ACTION = "rerun_command"


def route(command: str, action: str) -> Callable[[Work], Work]:
    def decorate(work: Work) -> Work:
        ROUTES[(command, action)] = work
        return work

    return decorate


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


async def run_command(
    services: Services,
    *,
    command: str,
    text: str,
    user_id: str,
    channel_id: str | None,
    respond: Respond,
) -> Outcome:
    """Carry out a parsed command and reply; shared by slash commands and the re-run button."""
    result = parse(command, text, services.catalog)
    if isinstance(result, Help):
        await respond(**usage_payload(command))
        return Outcome("usage")
    if isinstance(result, Invalid):
        await send_reply(respond, invalid_reply(command, result))
        return Outcome("invalid", {"reason": result.message})
    work = ROUTES.get((result.command, result.action))
    if work is None:
        message = Message(
            f":construction: `{command} {text.strip()}`: {result.action} is not available in "
            "this version of opsbot yet. Nothing was changed."
        )
        await send_reply(respond, Reply(message))
        return Outcome("unavailable", {"action": result.action})
    context = {"user_id": user_id, "channel_id": channel_id}
    reply, outcome = await work(services, result, context)
    if reply is not None:
        await send_reply(respond, reply)
    return outcome


def register(app: AsyncApp, services: Services) -> None:
    def listener_for(command: str) -> Callable[..., Awaitable[None]]:
        async def on_command(
            ack: Callable[..., Awaitable[Any]], body: dict[str, Any], respond: Respond
        ) -> None:
            respond = pooled_respond(services, body, respond)
            text = body.get("text", "")
            user_id = body.get("user_id", "unknown")
            channel_id = body.get("channel_id")
            # Usage and parse errors are pure and instant: answer them in the ack itself.
            result = parse(command, text, services.catalog)
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
                return await run_command(
                    services,
                    command=command,
                    text=text,
                    user_id=user_id,
                    channel_id=channel_id,
                    respond=respond,
                )

            async def after_ack() -> None:
                await carry_out(
                    services,
                    body=body,
                    action=describe(command, text),
                    user_id=user_id,
                    channel_id=channel_id,
                    respond=respond,
                    work=work,
                    answered=answered,
                )

            services.after_ack(after_ack)

        return on_command

    for name in COMMANDS:
        app.command(name)(listener_for(name))

    async def on_unknown_command(
        ack: Callable[..., Awaitable[Any]], body: dict[str, Any], respond: Respond
    ) -> None:
        respond = pooled_respond(services, body, respond)
        command = str(body.get("command", "?"))[:40]
        known = ", ".join(COMMANDS)
        await ack(text=f":warning: opsbot does not know {command}. It knows {known}.")

        async def after_ack() -> None:
            await carry_out(
                services,
                body=body,
                action="unknown command",
                user_id=body.get("user_id", "unknown"),
                channel_id=body.get("channel_id"),
                respond=respond,
                answered=Outcome("invalid", {"command": command}),
            )

        services.after_ack(after_ack)

    app.command(re.compile(r".*"))(on_unknown_command)
