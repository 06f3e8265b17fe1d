"""The Slack side of `bot.messages.Notifier`, and the user-group look-ups authorization needs."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.messages import Message, MessageRef
from bot.slack.blocks import to_payload

log = logging.getLogger(__name__)


class NotifyError(Exception):
    """Slack refused a message (after the client's own retries on 429, 5xx and timeouts)."""


class SlackNotifier:
    """Posts and updates messages; HTTP 429 Retry-After is honoured by the client's handler."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def post(
        self, channel: str, message: Message, *, thread: MessageRef | None = None
    ) -> MessageRef:
        thread_ts = thread.thread_ts or thread.ts if thread else None
        try:
            response = await self.client.chat_postMessage(
                channel=channel, thread_ts=thread_ts, **to_payload(message)
            )
        except SlackApiError as exc:
            raise NotifyError(
                f"Slack refused a message to {channel}: {exc.response['error']}"
            ) from exc
        return MessageRef(
            channel=str(response["channel"]), ts=str(response["ts"]), thread_ts=thread_ts
        )

    async def update(self, ref: MessageRef, message: Message) -> None:
        try:
            await self.client.chat_update(channel=ref.channel, ts=ref.ts, **to_payload(message))
        except SlackApiError as exc:
            raise NotifyError(
                f"Slack refused an update in {ref.channel}: {exc.response['error']}"
            ) from exc


class SlackDirectory:
    """Which of some user groups (S…) a user belongs to, via usergroups.users.list."""

    ttl_seconds = 60.0

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self._members: dict[str, tuple[float, frozenset[str]]] = {}

    async def members(self, group_id: str) -> frozenset[str]:
        cached = self._members.get(group_id)
        if cached and time.monotonic() - cached[0] < self.ttl_seconds:
            return cached[1]
        try:
            response = await self.client.usergroups_users_list(usergroup=group_id)
        except SlackApiError as exc:
            # An unknown group grants nothing; say so in the log, refuse safely.
            log.warning("cannot list user group %s: %s", group_id, exc.response["error"])
            return frozenset()
        members = frozenset(response.get("users") or [])
        self._members[group_id] = (time.monotonic(), members)
        return members

    async def groups_of(self, user_id: str, among: Collection[str]) -> set[str]:
        """The groups in `among` (user ids are ignored) that contain `user_id`."""
        groups = set()
        for principal in among:
            if principal.startswith("S") and user_id in await self.members(principal):
                groups.add(principal)
        return groups
