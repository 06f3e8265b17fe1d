"""conversations.*: creating channels, their members, topic and purpose, history and threads."""

from __future__ import annotations

import re
import time

from bot.console.standin.wire import ApiCall, JsonDict, MethodHandler, SlackApiFailure, truthy
from bot.console.standin.workspace import Workspace

_CHANNEL_NAME_ALLOWED = re.compile(r"^[a-z0-9_\-]+$")
_MAX_TOPIC_CHARS = 250
_NO_MORE_PAGES: JsonDict = {"next_cursor": ""}


def _within(ts: str, oldest: float, latest: float, inclusive: bool) -> bool:
    """conversations.history's bounds (`inclusive` includes oldest and latest themselves)."""
    value = float(ts)
    return oldest <= value <= latest if inclusive else oldest < value < latest


def _channel_json(channel: JsonDict) -> JsonDict:
    data = {k: v for k, v in channel.items() if k != "members"}
    data["num_members"] = len(channel["members"])
    return data


class ConversationMethods:
    """The conversations.* family, over the workspace's channels and messages."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    def methods(self) -> dict[str, MethodHandler]:
        return {
            "conversations.create": self.create,
            "conversations.invite": self.invite,
            "conversations.join": self.join,
            "conversations.setTopic": self.set_topic,
            "conversations.setPurpose": self.set_purpose,
            "conversations.info": self.info,
            "conversations.members": self.members,
            "conversations.archive": self.archive,
            "conversations.history": self.history,
            "conversations.replies": self.replies,
        }

    def _channel_arg(self, call: ApiCall) -> JsonDict:
        ws = self.workspace
        return ws.channels[ws.resolve_channel(call.args.get("channel"))]

    def create(self, call: ApiCall) -> JsonDict:
        ws = self.workspace
        name = call.args.get("name")
        if not isinstance(name, str) or not name:
            raise SlackApiFailure("invalid_name_required")
        if len(name) > 80:
            raise SlackApiFailure("invalid_name_maxlength")
        if not _CHANNEL_NAME_ALLOWED.match(name):
            raise SlackApiFailure("invalid_name_specials")
        if not re.search(r"[a-z0-9]", name):
            raise SlackApiFailure("invalid_name_punctuation")
        if any(channel["name"] == name for channel in ws.channels.values()):
            raise SlackApiFailure("name_taken")
        channel_id = f"C{ws.next_id():08d}"
        channel = ws.add_channel(channel_id, name, is_private=truthy(call.args.get("is_private")))
        return {"channel": _channel_json(channel)}

    def invite(self, call: ApiCall) -> JsonDict:
        ws = self.workspace
        channel = self._channel_arg(call)
        raw_users = call.args.get("users")
        user_ids = [u.strip() for u in str(raw_users or "").split(",") if u.strip()]
        if not user_ids:
            raise SlackApiFailure("no_user")
        if ws.bot_user_id in user_ids:
            raise SlackApiFailure("cant_invite_self")
        missing = [u for u in user_ids if u not in ws.users]
        if missing:
            raise SlackApiFailure(
                "user_not_found",
                errors=[{"user": u, "ok": False, "error": "user_not_found"} for u in missing],
            )
        if channel["is_archived"]:
            raise SlackApiFailure("is_archived")
        new = [u for u in user_ids if u not in channel["members"]]
        if not new:
            raise SlackApiFailure("already_in_channel")
        channel["members"].extend(new)
        return {"channel": _channel_json(channel)}

    def join(self, call: ApiCall) -> JsonDict:
        channel = self._channel_arg(call)
        if self.workspace.bot_user_id not in channel["members"]:
            channel["members"].append(self.workspace.bot_user_id)
        return {"channel": _channel_json(channel)}

    def _set_channel_text(self, call: ApiCall, key: str) -> JsonDict:
        """setTopic / setPurpose: `key` names both the argument and the channel's field."""
        channel = self._channel_arg(call)
        value = str(call.args.get(key) or "")
        if len(value) > _MAX_TOPIC_CHARS:
            raise SlackApiFailure("too_long")
        if channel["is_archived"]:
            raise SlackApiFailure("is_archived")
        setter = self.workspace.bot_user_id
        channel[key] = {"value": value, "creator": setter, "last_set": int(time.time())}
        return {"channel": _channel_json(channel)}

    def set_topic(self, call: ApiCall) -> JsonDict:
        return self._set_channel_text(call, "topic")

    def set_purpose(self, call: ApiCall) -> JsonDict:
        return self._set_channel_text(call, "purpose")

    def info(self, call: ApiCall) -> JsonDict:
        return {"channel": _channel_json(self._channel_arg(call))}

    def members(self, call: ApiCall) -> JsonDict:
        channel = self._channel_arg(call)
        return {"members": list(channel["members"]), "response_metadata": dict(_NO_MORE_PAGES)}

    def archive(self, call: ApiCall) -> JsonDict:
        channel = self._channel_arg(call)
        if channel["is_archived"]:
            raise SlackApiFailure("already_archived")
        channel["is_archived"] = True
        return {}

    def history(self, call: ApiCall) -> JsonDict:
        ws = self.workspace
        channel = self._channel_arg(call)
        oldest = float(call.args.get("oldest") or 0)
        latest = float(call.args.get("latest") or "inf")
        limit = int(call.args.get("limit") or 100)
        inclusive = truthy(call.args.get("inclusive"))
        visible = [
            m
            for m in ws.messages
            if m.channel == channel["id"]
            and m.ephemeral_for is None
            and (not m.thread_ts or m.thread_ts == m.ts)
            and _within(m.ts, oldest, latest, inclusive)
        ]
        visible.reverse()  # newest first, like Slack
        return {
            "messages": [ws.message_json(m) for m in visible[:limit]],
            "has_more": len(visible) > limit,
            "pin_count": 0,
            "response_metadata": dict(_NO_MORE_PAGES),
        }

    def replies(self, call: ApiCall) -> JsonDict:
        ws = self.workspace
        channel = self._channel_arg(call)
        ts = call.args.get("ts")
        parent = ws.find_message(channel["id"], ts) if isinstance(ts, str) else None
        if parent is None:
            raise SlackApiFailure("thread_not_found")
        if parent.thread_ts and parent.thread_ts != parent.ts:
            thread = [parent]  # the ts of a reply reads that reply, as on Slack
        else:
            thread = [parent] + [
                m
                for m in ws.messages
                if m.channel == channel["id"]
                and m.thread_ts == ts
                and m.ts != ts
                and m.ephemeral_for is None
            ]
        return {
            "messages": [ws.message_json(m) for m in thread],
            "has_more": False,
            "response_metadata": dict(_NO_MORE_PAGES),
        }
