"""Block Kit rendering of `bot.messages` (Slack's limits: 3,000 characters a section, 50 blocks)."""

from __future__ import annotations

from typing import Any

from bot.messages import Button, Message
from bot.slack.render import mrkdwn

SECTION_LIMIT = 3000
BLOCK_LIMIT = 50
TRUNCATION_NOTE = "… (truncated, see the thread for the rest)"


def truncate(text: str, limit: int = SECTION_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - len(TRUNCATION_NOTE)] + TRUNCATION_NOTE


def _button(button: Button) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "button",
        "action_id": button.action_id,
        "text": {"type": "plain_text", "text": button.label[:75]},
        "value": button.value[:2000],
    }
    if button.style != "default":
        element["style"] = button.style
    if button.confirm:
        title, text = button.confirm
        element["confirm"] = {
            "title": {"type": "plain_text", "text": title[:100]},
            "text": {"type": "mrkdwn", "text": truncate(mrkdwn(text), 300)},
            "confirm": {"type": "plain_text", "text": button.label[:30]},
            "deny": {"type": "plain_text", "text": "Cancel"},
        }
    return element


def to_blocks(message: Message) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if message.title:
        blocks.append(
            {"type": "header", "text": {"type": "plain_text", "text": message.title[:150]}}
        )
    blocks.append(
        {"type": "section", "text": {"type": "mrkdwn", "text": truncate(mrkdwn(message.text))}}
    )
    if message.fields:
        fields = [
            {"type": "mrkdwn", "text": truncate(f"*{name}*\n{mrkdwn(value)}", 2000)}
            for name, value in message.fields[:10]
        ]
        blocks.append({"type": "section", "fields": fields})
    if message.preformatted:
        code = truncate(message.preformatted, SECTION_LIMIT - 6)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```{code}```"}})
    if message.buttons:
        blocks.append(
            {"type": "actions", "elements": [_button(button) for button in message.buttons[:25]]}
        )
    if message.context:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": truncate(mrkdwn(message.context))}],
            }
        )
    return blocks[:BLOCK_LIMIT]


def to_payload(message: Message) -> dict[str, Any]:
    """Arguments for chat.postMessage / chat.update / a response_url, `text` as the fallback."""
    return {"text": truncate(mrkdwn(message.text)), "blocks": to_blocks(message)}
