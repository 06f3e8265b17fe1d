"""chat.* and reactions.add: posting, updating, deleting and reacting to messages."""

from __future__ import annotations

from bot.console.standin.blocks import MAX_BLOCKS_PER_MESSAGE, block_errors
from bot.console.standin.wire import ApiCall, JsonDict, Message, MethodHandler, SlackApiFailure
from bot.console.standin.workspace import Workspace

_MAX_TEXT_CHARS = 40_000


def message_content(args: JsonDict) -> tuple[str, list[JsonDict], list[JsonDict]]:
    """A message's text, blocks and attachments, refused as Slack refuses them."""
    text = args.get("text") or ""
    blocks = args.get("blocks") or []
    attachments = args.get("attachments") or []
    if not isinstance(blocks, list):
        raise SlackApiFailure("invalid_blocks_format")
    if not isinstance(attachments, list):
        raise SlackApiFailure("invalid_attachments")
    if not text and not blocks and not attachments:
        raise SlackApiFailure("no_text")
    if len(text) > _MAX_TEXT_CHARS:
        raise SlackApiFailure("msg_too_long")
    errors = block_errors(blocks, MAX_BLOCKS_PER_MESSAGE)
    if errors:
        raise SlackApiFailure(
            "invalid_blocks", errors=errors, response_metadata={"messages": errors}
        )
    return text, blocks, attachments


class ChatMethods:
    """The chat.* family and reactions.add, over the workspace's messages."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    def methods(self) -> dict[str, MethodHandler]:
        return {
            "chat.postMessage": self.post_message,
            "chat.update": self.update,
            "chat.delete": self.delete,
            "chat.postEphemeral": self.post_ephemeral,
            "chat.getPermalink": self.get_permalink,
            "reactions.add": self.reactions_add,
        }

    def post_message(self, call: ApiCall) -> JsonDict:
        ws = self.workspace
        channel = ws.resolve_channel(call.args.get("channel"))
        text, blocks, attachments = message_content(call.args)
        thread_ts = call.args.get("thread_ts") or None
        message = ws.post(
            Message(
                channel=channel,
                ts=ws.next_ts(),
                thread_ts=thread_ts,
                text=text,
                blocks=blocks,
                user=ws.bot_user_id,
                attachments=attachments,
            )
        )
        return {"channel": channel, "ts": message.ts, "message": ws.message_json(message)}

    def update(self, call: ApiCall) -> JsonDict:
        ws = self.workspace
        channel = ws.resolve_channel(call.args.get("channel"))
        message = ws.existing_message(channel, call.args.get("ts"))
        text, blocks, attachments = message_content(call.args)
        message.text = text
        if "blocks" in call.args:
            message.blocks = blocks
        if "attachments" in call.args:
            message.attachments = attachments
        message.updated = True
        ws.emit(message)
        return {
            "channel": channel,
            "ts": message.ts,
            "text": message.text,
            "message": ws.message_json(message),
        }

    def delete(self, call: ApiCall) -> JsonDict:
        ws = self.workspace
        channel = ws.resolve_channel(call.args.get("channel"))
        message = ws.existing_message(channel, call.args.get("ts"))
        ws.delete(message)
        return {"channel": channel, "ts": message.ts}

    def post_ephemeral(self, call: ApiCall) -> JsonDict:
        ws = self.workspace
        channel = ws.resolve_channel(call.args.get("channel"))
        user = call.args.get("user")
        if not isinstance(user, str) or not user:
            raise SlackApiFailure("user_not_in_channel")
        text, blocks, attachments = message_content(call.args)
        message = ws.post(
            Message(
                channel=channel,
                ts=ws.next_ts(),
                thread_ts=call.args.get("thread_ts") or None,
                text=text,
                blocks=blocks,
                user=ws.bot_user_id,
                ephemeral_for=user,
                attachments=attachments,
            )
        )
        return {"message_ts": message.ts}

    def get_permalink(self, call: ApiCall) -> JsonDict:
        ws = self.workspace
        channel = ws.resolve_channel(call.args.get("channel"))
        message = ws.existing_message(channel, call.args.get("message_ts"))
        digits = message.ts.replace(".", "")
        permalink = f"https://{ws.team_domain}.slack.com/archives/{channel}/p{digits}"
        if message.thread_ts and message.thread_ts != message.ts:
            permalink += f"?thread_ts={message.thread_ts}&cid={channel}"
        return {"channel": channel, "permalink": permalink}

    def reactions_add(self, call: ApiCall) -> JsonDict:
        ws = self.workspace
        channel = ws.resolve_channel(call.args.get("channel"))
        message = ws.existing_message(channel, call.args.get("timestamp"))
        name = str(call.args.get("name") or "").strip(":")
        if not name:
            raise SlackApiFailure("invalid_name")
        reacted = message.reactions.setdefault(name, [])
        if ws.bot_user_id in reacted:
            raise SlackApiFailure("already_reacted")
        reacted.append(ws.bot_user_id)
        return {}
