"""Button presses: ack at once, then run the button's work exactly once, audited."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.app import Services
from bot.commands import COMMANDS
from bot.messages import Message, Outcome, Reply
from handlers.commands import RERUN_ACTION, run_command
from handlers.common import Respond, carry_out, pooled_respond, send_reply

# action_id -> work(services, action, body, respond); later features add theirs with `button`.
ButtonWork = Callable[[Services, dict[str, Any], dict[str, Any], Respond], Awaitable[Outcome]]
BUTTONS: dict[str, ButtonWork] = {}


def button(action_id: str) -> Callable[[ButtonWork], ButtonWork]:
    def decorate(work: ButtonWork) -> ButtonWork:
        BUTTONS[action_id] = work
        return work

    return decorate


@button(RERUN_ACTION)
async def rerun_command(
    services: Services, action: dict[str, Any], body: dict[str, Any], respond: Respond
) -> Outcome:
    """The "Run /deploy checkout prod" button offered after a typo."""
    command, _, text = str(action.get("value", "")).partition(" ")
    if command not in COMMANDS:
        await send_reply(respond, Reply(Message(":warning: this button carries no command.")))
        return Outcome("invalid")
    return await run_command(
        services,
        command=command,
        text=text,
        user_id=body.get("user", {}).get("id", "unknown"),
        channel_id=(body.get("channel") or {}).get("id"),
        respond=respond,
    )


def register(app: AsyncApp, services: Services) -> None:
    async def on_button(
        ack: Callable[..., Awaitable[Any]], body: dict[str, Any], respond: Respond
    ) -> None:
        respond = pooled_respond(services, body, respond)
        await ack()
        action = (body.get("actions") or [{}])[0]
        action_id = str(action.get("action_id", "unknown"))
        work = BUTTONS.get(action_id)

        async def run() -> Outcome:
            if work is None:
                text = ":warning: this button is no longer supported by opsbot; nothing was done."
                await send_reply(respond, Reply(Message(text)))
                return Outcome("invalid", {"action_id": action_id})
            return await work(services, action, body, respond)

        async def after_ack() -> None:
            await carry_out(
                services,
                body=body,
                action=f"button:{action_id if work else 'unknown'}",
                user_id=(body.get("user") or {}).get("id", "unknown"),
                channel_id=(body.get("channel") or {}).get("id"),
                respond=respond,
                work=run,
            )

        services.after_ack(after_ack)

    app.action(re.compile(r".*"))(on_button)

    async def ignore_event() -> None:
        """Events nobody handles yet are acknowledged (Bolt acks events) and dropped."""

    app.event(re.compile(r".*"))(ignore_event)
