"""The Slack side of `bot.incidents.ports.Workspace`: channels, invitations, topics, messages."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.incidents.ports import ChannelNameTaken, ChatMessage, WorkspaceError
from bot.messages import RichText
from bot.slack.render import mrkdwn

log = logging.getLogger(__name__)

# Invitations that did what we wanted, or cannot matter: nothing to tell anyone.
_HARMLESS_INVITE_ERRORS = {"already_in_channel", "cant_invite_self"}


def _error(exc: SlackApiError) -> str:
    return str(exc.response.get("error") or "unknown_error")


class SlackWorkspace:
    """Channel operations through the Web API (`channels:manage`, `channels:history`, …)."""

    users_ttl_seconds = 300.0

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self._users: tuple[float, list[dict[str, Any]]] | None = None

    async def create_channel(self, name: str) -> str:
        try:
            response = await self.client.conversations_create(name=name, is_private=False)
        except SlackApiError as exc:
            if _error(exc) == "name_taken":
                raise ChannelNameTaken(f"#{name} exists already") from exc
            raise WorkspaceError(f"Slack refused to create #{name}: {_error(exc)}") from exc
        return str(response["channel"]["id"])

    async def _expand(self, principals: Sequence[str]) -> list[str]:
        """User ids; a user group (S…) becomes its members."""
        users: list[str] = []
        for principal in principals:
            if principal.startswith("S"):
                try:
                    response = await self.client.usergroups_users_list(usergroup=principal)
                except SlackApiError as exc:
                    log.warning("cannot list user group %s: %s", principal, _error(exc))
                    continue
                users.extend(response.get("users") or [])
            else:
                users.append(principal)
        return list(dict.fromkeys(users))

    async def invite(self, channel: str, users: Sequence[str]) -> list[str]:
        problems: list[str] = []
        # One at a time: Slack fails a whole batch for one unknown user.
        for user in await self._expand(users):
            try:
                await self.client.conversations_invite(channel=channel, users=user)
            except SlackApiError as exc:
                if _error(exc) not in _HARMLESS_INVITE_ERRORS:
                    problems.append(f"could not invite <@{user}>: {_error(exc)}")
        return problems

    async def set_topic(self, channel: str, topic: RichText) -> None:
        try:
            await self.client.conversations_setTopic(channel=channel, topic=mrkdwn(topic)[:250])
        except SlackApiError as exc:
            raise WorkspaceError(f"Slack refused the topic of {channel}: {_error(exc)}") from exc

    async def fetch_message(self, channel: str, ts: str) -> ChatMessage | None:
        try:
            response = await self.client.conversations_history(
                channel=channel, oldest=ts, latest=ts, inclusive=True, limit=1
            )
            messages = [m for m in response.get("messages") or [] if m.get("ts") == ts]
            if not messages:
                # A reply in a thread is not in the history; conversations.replies finds it.
                response = await self.client.conversations_replies(
                    channel=channel, ts=ts, oldest=ts, latest=ts, inclusive=True, limit=1
                )
                messages = [m for m in response.get("messages") or [] if m.get("ts") == ts]
        except SlackApiError as exc:
            if _error(exc) in ("thread_not_found", "message_not_found"):
                return None
            raise WorkspaceError(f"Slack refused to read {ts} in {channel}: {_error(exc)}") from exc
        if not messages:
            return None
        message = messages[0]
        return ChatMessage(
            channel=channel,
            ts=ts,
            text=str(message.get("text") or ""),
            user=message.get("user"),
        )

    async def find_user(self, name: str) -> str | None:
        wanted = name.strip().lower()
        for user in await self._members():
            profile = user.get("profile") or {}
            names = {
                str(user.get("name") or "").lower(),
                str(profile.get("display_name") or "").lower(),
                str(profile.get("real_name") or user.get("real_name") or "").lower(),
            }
            if wanted in names and not user.get("deleted"):
                return str(user["id"])
        return None

    async def _members(self) -> list[dict[str, Any]]:
        if self._users and time.monotonic() - self._users[0] < self.users_ttl_seconds:
            return self._users[1]
        members: list[dict[str, Any]] = []
        try:
            async for page in await self.client.users_list(limit=200):
                members.extend(page.get("members") or [])
        except SlackApiError as exc:
            raise WorkspaceError(f"Slack refused to list users: {_error(exc)}") from exc
        self._users = (time.monotonic(), members)
        return members
