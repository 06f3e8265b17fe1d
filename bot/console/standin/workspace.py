"""The stand-in's workspace: its identity, people, channels and messages, and the ids and ts it
hands out. Every method family reads and changes this one state."""

from __future__ import annotations

import itertools
import re
import time
from typing import Any

from bot.console.standin.wire import JsonDict, Message, SlackApiFailure

_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_FIRST_TS_MICROS = 1_700_000_000_000_100
_TS_STEP_MICROS = 100


class Workspace:
    """A Slack workspace as the stand-in keeps it: who is in it, its channels and messages."""

    def __init__(
        self,
        *,
        team_id: str = "T0OPSBOT",
        bot_user_id: str = "U0OPSBOT",
        users: list[dict[str, Any]] | None = None,
        usergroups: dict[str, list[str]] | None = None,
        team_domain: str = "opsbot",
    ) -> None:
        self.team_id = team_id
        self.team_domain = team_domain
        self.bot_user_id = bot_user_id
        self.bot_id = "B" + bot_user_id[1:]
        self.app_id = "A" + bot_user_id[1:]
        self.messages: list[Message] = []
        self.users: dict[str, JsonDict] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.channels: dict[str, JsonDict] = {}
        self._ts_counter = itertools.count(_FIRST_TS_MICROS, _TS_STEP_MICROS)
        self._id_counter = itertools.count(1)
        self._pending_events: list[Message] = []
        self.add_user(bot_user_id, "opsbot", "", "opsbot", is_bot=True)
        for user in users or []:
            if "profile" in user:
                self.users[user["id"]] = user
            else:
                self.add_user(
                    user["id"], user["name"], user.get("email", ""), user.get("real_name", "")
                )
        for group_id, user_ids in (usergroups or {}).items():
            self.set_usergroup(group_id, user_ids)

    # ------------------------------------------------------------------ people and channels

    def add_user(
        self, id: str, name: str, email: str, real_name: str, *, is_bot: bool = False
    ) -> JsonDict:
        """Add (or replace) a workspace member; returns the Slack user object."""
        user: JsonDict = {
            "id": id,
            "team_id": self.team_id,
            "name": name,
            "deleted": False,
            "real_name": real_name,
            "tz": "Etc/UTC",
            "tz_label": "Coordinated Universal Time",
            "tz_offset": 0,
            "is_admin": False,
            "is_owner": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": int(time.time()),
            "profile": {
                "real_name": real_name,
                "real_name_normalized": real_name,
                "display_name": name,
                "display_name_normalized": name,
                "email": email,
                "team": self.team_id,
            },
        }
        if is_bot:
            user["profile"]["bot_id"] = self.bot_id
            del user["profile"]["email"]
        self.users[id] = user
        return user

    def set_usergroup(self, group_id: str, user_ids: list[str]) -> None:
        self.usergroups[group_id] = list(user_ids)

    def add_channel(
        self, id: str, name: str, *, is_private: bool = False, members: list[str] | None = None
    ) -> JsonDict:
        """Make a channel known by id and name (so chat.postMessage(channel="#deploys") works)."""
        channel: JsonDict = {
            "id": id,
            "name": name,
            "name_normalized": name,
            "is_channel": not id.startswith("D"),
            "is_group": False,
            "is_im": id.startswith("D"),
            "is_private": is_private,
            "is_archived": False,
            "is_general": False,
            "is_member": True,
            "created": int(time.time()),
            "creator": self.bot_user_id,
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
            "members": list(dict.fromkeys([self.bot_user_id, *(members or [])])),
        }
        self.channels[id] = channel
        return channel

    def channel_name(self, channel_id: str) -> str | None:
        channel = self.channels.get(channel_id)
        return None if channel is None else channel["name"]

    def resolve_channel(self, value: Any) -> str:
        """Channel id for an id, a name or '#name' (a user id means the bot's DM with them)."""
        if not isinstance(value, str) or not value:
            raise SlackApiFailure("channel_not_found")
        if _CHANNEL_ID.match(value):
            if value not in self.channels:
                self.add_channel(value, value.lower())
            return value
        if _USER_ID.match(value):
            dm_id = "D" + value[1:]
            if dm_id not in self.channels:
                self.add_channel(dm_id, value, members=[value])
            return dm_id
        name = value.removeprefix("#")
        for channel in self.channels.values():
            if channel["name"] == name:
                return str(channel["id"])
        raise SlackApiFailure("channel_not_found")

    # ------------------------------------------------------------------ ids and timestamps

    def next_ts(self) -> str:
        """A message ts later than every one handed out before."""
        micros = next(self._ts_counter)
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def next_id(self) -> int:
        """A number no other id of this workspace (channel, view, file, hook, trigger) used."""
        return next(self._id_counter)

    # ------------------------------------------------------------------ messages

    def find_message(self, channel: str, ts: str) -> Message | None:
        for message in self.messages:
            if message.channel == channel and message.ts == ts:
                return message
        return None

    def existing_message(self, channel: str, ts: Any) -> Message:
        """The message at ts that everyone sees, or Slack's message_not_found."""
        message = self.find_message(channel, ts) if isinstance(ts, str) else None
        if message is None or message.ephemeral_for is not None:
            raise SlackApiFailure("message_not_found")
        return message

    def post(self, message: Message) -> Message:
        """Show a new message (and tell on_message once the call is answered)."""
        self.messages.append(message)
        self.emit(message)
        return message

    def emit(self, message: Message) -> None:
        """Remember that message changed; the server tells on_message after the call."""
        self._pending_events.append(message)

    def delete(self, message: Message) -> None:
        self.messages.remove(message)
        message.deleted = True
        self.emit(message)

    def take_events(self) -> list[Message]:
        """The messages changed since the last call, in order (and forget them)."""
        events, self._pending_events = self._pending_events, []
        return events

    def post_as_user(
        self, channel: str, text: str, *, user: str, thread_ts: str | None = None
    ) -> Message:
        """Add a message written by `user` in `channel`, as if they had posted it.

        The stand-in otherwise holds only the bot's messages; this lets pins and 📌 reactions on
        what people wrote be tried.
        """
        message = Message(
            channel=self.resolve_channel(channel),
            ts=self.next_ts(),
            thread_ts=thread_ts,
            text=text,
            blocks=[],
            user=user,
        )
        self.messages.append(message)
        return message

    def message_json(self, message: Message) -> JsonDict:
        """The message as the Web API returns it (history, replies, postMessage's `message`)."""
        data: JsonDict = {
            "type": "message",
            "user": message.user,
            "text": message.text,
            "ts": message.ts,
            "team": self.team_id,
        }
        if message.user == self.bot_user_id:
            data.update({"bot_id": self.bot_id, "app_id": self.app_id})
        if message.blocks:
            data["blocks"] = message.blocks
        if message.attachments:
            data["attachments"] = message.attachments
        if message.thread_ts:
            data["thread_ts"] = message.thread_ts
        replies = [
            m
            for m in self.messages
            if m.thread_ts == message.ts and m.channel == message.channel and m.ts != message.ts
        ]
        if replies and not message.thread_ts:
            data.update({"thread_ts": message.ts, "reply_count": len(replies)})
        if message.updated:
            data["edited"] = {"user": message.user, "ts": message.ts}
        if message.reactions:
            data["reactions"] = [
                {"name": name, "users": users, "count": len(users)}
                for name, users in message.reactions.items()
            ]
        return data
