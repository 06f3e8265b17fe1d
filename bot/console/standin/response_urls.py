"""response_url: the hooks.slack.com URLs a slash command or a button press may answer through."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from bot.console.standin.blocks import MAX_BLOCKS_PER_MESSAGE, block_errors
from bot.console.standin.wire import Answer, ApiCall, Message, truthy
from bot.console.standin.workspace import Workspace


@dataclass
class _ResponseUrl:
    channel: str
    user: str
    message_ts: str | None
    uses: int = 0
    last_ts: str | None = None


class ResponseUrls:
    """Hands out response URLs and answers the POSTs to them as hooks.slack.com does."""

    max_uses = 5  # Slack: "up to five times within 30 minutes"

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self._hooks: dict[str, _ResponseUrl] = {}

    def issue(self, channel: str, user: str, *, message_ts: str | None = None) -> str:
        """A fresh path (on the stand-in's server) that takes response_url POSTs.

        With message_ts (a block action's message), replace_original/delete_original act on that
        message; without it they act on the last message posted through this URL.
        """
        ws = self.workspace
        hook_id = ws.next_id()
        secret = secrets.token_hex(12)
        kind = "actions" if message_ts else "commands"
        path = f"/{kind}/{ws.team_id}/{hook_id}/{secret}"
        self._hooks[path] = _ResponseUrl(channel, user, message_ts)
        return path

    def answer(self, call: ApiCall) -> Answer:
        """Answer one POST to a response URL (its JSON body is call.args)."""
        ws = self.workspace
        hook = self._hooks.get(call.path)
        if hook is None:
            return Answer("expired_url", status=404, text=True)
        if hook.uses >= self.max_uses:
            return Answer("used_url", status=404, text=True)
        body = call.args
        original_ts = hook.message_ts or hook.last_ts
        original = ws.find_message(hook.channel, original_ts) if original_ts else None
        if truthy(body.get("delete_original")):
            hook.uses += 1
            if original is not None:
                ws.delete(original)
            return Answer("ok", text=True)
        text = body.get("text") or ""
        blocks = body.get("blocks") or []
        if not text and not blocks:
            return Answer("no_text", status=400, text=True)
        if not isinstance(blocks, list) or block_errors(blocks, MAX_BLOCKS_PER_MESSAGE):
            return Answer("invalid_blocks", status=400, text=True)
        hook.uses += 1
        if truthy(body.get("replace_original")) and original is not None:
            original.text, original.blocks, original.updated = text, blocks, True
            ws.emit(original)
            return Answer("ok", text=True)
        in_channel = body.get("response_type") == "in_channel"
        message = ws.post(
            Message(
                channel=hook.channel,
                ts=ws.next_ts(),
                thread_ts=body.get("thread_ts"),
                text=text,
                blocks=blocks,
                user=ws.bot_user_id,
                ephemeral_for=None if in_channel else hook.user,
                source="response_url",
            )
        )
        hook.last_ts = message.ts
        return Answer("ok", text=True)
