"""Buttons on alert messages: Acknowledge and Silence 1 h (Roll back is the deploy button's own,
Declare incident the incidents'). Parse, call one Alerting method, reply; carry_out audits."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.alerts import messaging
from bot.messages import Outcome
from bot.services import Services
from handlers.common import ButtonWork, HandlerDeps, Request, press_numbered


def alert_button(method: str) -> ButtonWork:
    """A button on an alert's message: `Alerting.<method>(alert_id=…, user=…)`."""

    async def press(services: Services, value: str, request: Request) -> Outcome:
        act: Any = getattr(services.alerts, method)
        return await press_numbered(
            request,
            value,
            names="alert",
            act=lambda alert_id: act(alert_id=alert_id, user=request.user_id),
            detail=lambda alert_id: {"alert": alert_id},
        )

    return press


def register(app: AsyncApp, deps: HandlerDeps) -> None:
    deps.buttons.update(
        {
            messaging.ACKNOWLEDGE: alert_button("acknowledge"),
            messaging.SILENCE: alert_button("silence"),
        }
    )
