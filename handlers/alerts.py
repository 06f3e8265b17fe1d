"""Buttons on alert messages: Acknowledge and Silence 1 h (Roll back is the deploy button's own,
Declare incident the incidents'). Parse, call one Alerting method, reply; carry_out audits."""

from __future__ import annotations

from types import MappingProxyType

from slack_bolt.async_app import AsyncApp

from bot.alerts import messaging
from bot.messages import Result
from bot.services import Services
from handlers.common import ButtonWork, HandlerDeps, record_button

# The buttons on an alert's message (their value is the alert's id) -> the `Alerting` method each
# calls, as method(alert_id=…, user=…).
ALERT_BUTTONS = MappingProxyType(
    {messaging.ACKNOWLEDGE: "acknowledge", messaging.SILENCE: "silence"}
)


def alert_button(method: str) -> ButtonWork:
    async def act(services: Services, alert_id: int, user: str) -> Result:
        return await getattr(services.alerts, method)(alert_id=alert_id, user=user)

    return record_button("alert", act, lambda alert_id: {"alert": alert_id})


def register(app: AsyncApp, deps: HandlerDeps) -> None:
    for action_id, method in ALERT_BUTTONS.items():
        deps.buttons[action_id] = alert_button(method)
