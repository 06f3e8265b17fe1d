"""Button presses: ack at once, then run the button's work exactly once, audited.

Registered last: its listeners catch every action and event no other module listens to.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.commands import COMMANDS
from bot.messages import Message, Outcome, Reply
from bot.services import Services
from handlers.commands import RERUN_ACTION, run_command
from handlers.common import ButtonWork, HandlerDeps, Request, Respond, send_reply


def rerun_command(deps: HandlerDeps) -> ButtonWork:
    """The "Run /deploy checkout prod" button offered after a typo."""

    async def press(services: Services, value: str, request: Request) -> Outcome:
        command, _, text = value.partition(" ")
        if command not in COMMANDS:
            text = ":warning: this button carries no command."
            await send_reply(request.respond, Reply(Message(text)))
            return Outcome("invalid")
        return await run_command(deps, request, command=command, text=text)

    return press


def register(app: AsyncApp, deps: HandlerDeps) -> None:
    deps.buttons[RERUN_ACTION] = rerun_command(deps)

    async def on_button(
        ack: Callable[..., Awaitable[Any]], body: dict[str, Any], respond: Respond
    ) -> None:
        request = Request.of_action(deps.services, body, respond)
        await ack()
        action = (body.get("actions") or [{}])[0]
        action_id = str(action.get("action_id", "unknown"))
        work = deps.buttons.get(action_id)

        async def run() -> Outcome:
            if work is None:
                text = ":warning: this button is no longer supported by opsbot; nothing was done."
                await send_reply(request.respond, Reply(Message(text)))
                return Outcome("invalid", {"action_id": action_id})
            return await work(deps.services, str(action.get("value", "")), request)

        deps.after_ack(request, action=f"button:{action_id if work else 'unknown'}", work=run)

    app.action(re.compile(r".*"))(on_button)

    async def ignore_event() -> None:
        """Events nobody handles yet are acknowledged (Bolt acks events) and dropped."""

    app.event(re.compile(r".*"))(ignore_event)
