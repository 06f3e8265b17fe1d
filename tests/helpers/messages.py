"""Reading what reached the fake Slack: a message's visible text, its buttons, private replies."""

from __future__ import annotations

import json
from typing import Any

from bot.deploys.gates import GateResult
from bot.slack.render import mrkdwn
from tests.conftest import RunningBot


def text_of(message: Any) -> str:
    """Everything a person sees in a message, as one string."""
    return json.dumps(message.blocks, ensure_ascii=False)


def buttons(message: Any) -> dict[str, dict[str, Any]]:
    """The message's buttons (and other action elements) by action_id."""
    found = {}
    for block in message.blocks or []:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            found[element["action_id"]] = element
    return found


def replies(bot: RunningBot) -> list[str]:
    """The texts only the requester saw: ephemeral messages and response_url answers."""
    return [
        m.text or "" for m in bot.fake.messages if m.ephemeral_for or m.source == "response_url"
    ]


def verdict(result: GateResult) -> tuple[str, bool, str]:
    """A gate's decision as the user reads it: (gate, passed, its reason as Slack shows it)."""
    return result.gate, result.passed, mrkdwn(result.reason)
