"""Buttons on alert messages: Acknowledge and Silence 1 h (Roll back is the deploy button's own,
Declare incident the incidents'). Parse, call one Alerting method, reply; carry_out audits."""

from __future__ import annotations

from typing import Any

from bot.alerts import messaging
from bot.app import Services
from bot.messages import Message, Outcome, Reply
from handlers.actions import button
from handlers.common import Respond, send_reply


def _alert_action(method: str) -> Any:
    async def press(
        services: Services, action: dict[str, Any], body: dict[str, Any], respond: Respond
    ) -> Outcome:
        value = str(action.get("value", ""))
        if not value.isdigit():
            await send_reply(respond, Reply(Message(":warning: this button names no alert.")))
            return Outcome("invalid")
        user = (body.get("user") or {}).get("id", "unknown")
        result = await getattr(services.alerts, method)(alert_id=int(value), user=user)
        await send_reply(respond, Reply(result.message, public=result.public))
        return Outcome("ok" if result.ok else "refused", {"alert": int(value)})

    return press


button(messaging.ACKNOWLEDGE)(_alert_action("acknowledge"))
button(messaging.SILENCE)(_alert_action("silence"))
