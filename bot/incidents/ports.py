"""What the incident service needs from the outside world, as small protocols (no Slack here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from bot.messages import MessageRef, RichText


class WorkspaceError(Exception):
    """The chat workspace refused an operation; the message says which and why."""


class ChannelNameTaken(WorkspaceError):
    """A channel with that name exists already."""


@dataclass(frozen=True)
class ChatMessage:
    """A message as the workspace holds it: where, when (ts), who wrote it, and its text."""

    channel: str
    ts: str
    text: str
    user: str | None


class Workspace(Protocol):
    """Channel operations an incident needs (Slack implements it in bot/slack/workspace.py)."""

    async def create_channel(self, name: str) -> str:
        """Create a public channel; its id. ChannelNameTaken when the name is in use."""
        ...

    async def invite(self, channel: str, users: Sequence[str]) -> list[str]:
        """Invite users (user groups are expanded); one line per person who could not be."""
        ...

    async def set_topic(self, channel: str, topic: RichText) -> None:
        """The channel's topic (mentions in it stay mentions)."""
        ...

    async def fetch_message(self, channel: str, ts: str) -> ChatMessage | None:
        """The message posted at `ts` in `channel` (also a thread reply), or None."""
        ...

    async def find_user(self, name: str) -> str | None:
        """The user id of a handle such as `alice` (name, display name or real name)."""
        ...


class Pager(Protocol):
    """bot.oncall.paging.Paging as far as incidents use it."""

    async def page(
        self,
        *,
        dedup_key: str,
        summary: str,
        severity: str,
        service: str | None,
        subject_kind: str,
        subject_id: int | None,
        thread: MessageRef | None,
        send_at: datetime | None = None,
        details: dict[str, Any] | None = None,
    ) -> Any: ...

    async def acknowledge(self, dedup_key: str, by: str) -> bool: ...

    async def resolve(self, dedup_key: str) -> None: ...

    async def cancel(self, dedup_key: str) -> None: ...

    async def send_now(self, dedup_key: str) -> bool: ...


class OncallLookup(Protocol):
    """bot.oncall.schedule.OncallDirectory as far as incidents use it."""

    async def who(self, service: str | None) -> Any: ...
