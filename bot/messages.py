"""What the bot says, independent of Slack: the domain builds these, adapters render them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

Style = Literal["default", "primary", "danger"]


@dataclass(frozen=True)
class Button:
    action_id: str
    label: str
    value: str = ""
    style: Style = "default"
    # A confirmation dialog shown before the press counts: (title, text).
    confirm: tuple[str, str] | None = None


@dataclass(frozen=True)
class Message:
    text: str
    title: str | None = None
    fields: tuple[tuple[str, str], ...] = ()
    buttons: tuple[Button, ...] = ()
    context: str | None = None
    preformatted: str | None = None


@dataclass(frozen=True)
class MessageRef:
    """Where a posted message lives, so it can be updated or answered in its thread."""

    channel: str
    ts: str
    thread_ts: str | None = None


@dataclass
class Reply:
    """A reply to the person who acted: private unless `public` is set."""

    message: Message
    public: bool = False
    replace_original: bool = False


class Notifier(Protocol):
    """How services report what happens; Slack and the console implement it."""

    async def post(
        self, channel: str, message: Message, *, thread: MessageRef | None = None
    ) -> MessageRef:
        """Post a message to a channel, or into a thread."""
        ...

    async def update(self, ref: MessageRef, message: Message) -> None:
        """Replace a posted message in place."""
        ...


@dataclass(frozen=True)
class Result:
    """What a domain action answers the person who asked: private unless `public`."""

    ok: bool
    message: Message
    public: bool = False


def refused(text: str) -> Result:
    return Result(False, Message(f":no_entry: {text}"))


@dataclass
class Outcome:
    """What a handler did, for the audit log and the metrics."""

    name: Literal["ok", "usage", "invalid", "refused", "error", "unavailable", "duplicate"]
    detail: dict[str, object] = field(default_factory=dict)
