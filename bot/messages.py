"""What the bot says, independent of Slack: the domain builds these, adapters render them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from string import Formatter
from typing import Literal, Protocol, TypeAlias

from bot.catalog.durations import format_duration

Style = Literal["default", "primary", "danger"]


# --- text as values -----------------------------------------------------------------------
# The domain says *who* and *what*; the adapter (bot/slack/render.py) decides how it looks in
# Slack. Mentions, emoji, channels, durations and moments are values here, never Slack markup.


@dataclass(frozen=True)
class Mention:
    """A person (Slack user id U…/W…) or a user group (S…), shown as a live mention."""

    principal: str


@dataclass(frozen=True)
class ChannelRef:
    """A channel by id, shown as a link to it."""

    channel_id: str


@dataclass(frozen=True)
class Emoji:
    """An emoji by its short name, e.g. Emoji("rotating_light")."""

    name: str


@dataclass(frozen=True)
class UserText:
    """Words a person typed: always shown as typed, never as markup or a mention."""

    text: str


@dataclass(frozen=True)
class Link:
    url: str
    label: str


@dataclass(frozen=True)
class Duration:
    """A span of time, shown compactly (1h30m)."""

    span: timedelta


@dataclass(frozen=True)
class Moment:
    """An instant, shown in UTC (HH:MM:SS UTC, with the date when `with_date`)."""

    at: datetime
    with_date: bool = False


Inline: TypeAlias = "str | Mention | ChannelRef | Emoji | UserText | Link | Duration | Moment"


@dataclass(frozen=True)
class Text:
    """A run of inline pieces. A bare `str` piece is the bot's own wording (it may use *bold*,
    `code` and _italics_); everything that came from a person is a `UserText`."""

    parts: tuple[Inline, ...] = ()

    def __add__(self, other: Text | Inline) -> Text:
        if isinstance(other, Text):
            return Text(self.parts + other.parts)
        return Text((*self.parts, other))

    def __radd__(self, other: Inline) -> Text:
        return Text((other, *self.parts))

    def __bool__(self) -> bool:
        return any(part != "" for part in self.parts)

    def __str__(self) -> str:
        """Plain words, for logs and tests: the same as a reader would see in Slack."""
        return "".join(plain(part) for part in self.parts)

    def __contains__(self, needle: str) -> bool:
        return needle in str(self)


RichText: TypeAlias = "str | Text"


def text(*parts: Inline | Text) -> Text:
    """Pieces in order: `text(Emoji("white_check_mark"), " approved by ", Mention(user))`."""
    flat: list[Inline] = []
    for part in parts:
        flat.extend(part.parts if isinstance(part, Text) else (part,))
    return Text(tuple(flat))


_FORMATTER = Formatter()


def fmt(template: str, *args: object, **kwargs: object) -> Text:
    """Fill `{}` / `{name}` fields of the bot's own `template` with values kept as values.

    A plain `str` argument is taken as words from outside (a title, a reason, a service name a
    person typed) and becomes `UserText`; pass `Mention`, `Emoji`, `Duration`, … or a `Text` to
    keep their meaning. No format specs: a value is shown as the adapter renders it.
    """
    parts: list[Inline] = []
    auto = 0
    for literal, name, _spec, _conversion in _FORMATTER.parse(template):
        if literal:
            parts.append(literal)
        if name is None:
            continue
        if name == "":
            value = args[auto]
            auto += 1
        elif name.isdigit():
            value = args[int(name)]
        else:
            value = kwargs[name]
        if isinstance(value, Text):
            parts.extend(value.parts)
        elif isinstance(value, Mention | ChannelRef | Emoji | UserText | Link | Duration | Moment):
            parts.append(value)
        else:
            parts.append(UserText(str(value)))
    return Text(tuple(parts))


def join(separator: str, items: Iterable[Inline | Text]) -> Text:
    """`items` with the bot's own `separator` between them: join(", ", map(Mention, users))."""
    parts: list[Inline | Text] = []
    for index, item in enumerate(items):
        if index:
            parts.append(separator)
        parts.append(item)
    return text(*parts)


def plain(part: Inline | Text) -> str:
    """How a piece reads as plain words (no markup): for logs, tests and plain_text fields."""
    match part:
        case str():
            return part
        case Text():
            return str(part)
        case Mention(principal):
            return f"@{principal}"
        case ChannelRef(channel_id):
            return f"#{channel_id}"
        case Emoji(name):
            return f":{name}:"
        case UserText(words):
            return words
        case Link(_url, label):
            return label
        case Duration(span):
            return format_duration(span)
        case Moment(at, with_date):
            return f"{at:%Y-%m-%d %H:%M:%S} UTC" if with_date else f"{at:%H:%M:%S} UTC"
    raise TypeError(f"not a piece of text: {part!r}")


def verbatim(words: str) -> Text:
    """Words a person typed, passed on as Slack has always shown them (their own mentions and
    formatting work): lock reasons, incident titles, updates. The trust issue is where these
    become `UserText`."""
    return Text((words,))


# --- text kept as a string ------------------------------------------------------------------
# Text that outlives the moment it was said (a deploy's reason, a step's summary, an event on
# the bus, an incident's timeline entry) is kept as one string. People and channels keep
# Slack's `<@U…>` / `<!subteam^S…>` / `<#C…>` form in it: pinned messages arrive in that form,
# rows have always been written in it, and the postmortem turns it back into roles.

# Each form only where `stored` writes it, so that stored(from_stored(s)) == s for every s.
_STORED_REFERENCE = re.compile(r"<@([^S>|][^>|]*)>|<!subteam\^(S[^>|]*)>|<#([^>|]+)>")


def stored(value: RichText) -> str:
    """`value` as one string to keep (see above); `from_stored` reads it back."""
    if isinstance(value, str):
        return value
    return "".join(_stored_piece(part) for part in value.parts)


def _stored_piece(part: Inline) -> str:
    match part:
        case Mention(principal) if principal.startswith("S"):
            return f"<!subteam^{principal}>"
        case Mention(principal):
            return f"<@{principal}>"
        case ChannelRef(channel_id):
            return f"<#{channel_id}>"
    return plain(part)


def from_stored(kept: str) -> Text:
    """Kept text as values again: people, groups and channels as `Mention` / `ChannelRef`, the
    rest as the bot's own words (which is what it was when it was kept)."""
    parts: list[Inline] = []
    position = 0
    for match in _STORED_REFERENCE.finditer(kept):
        if match.start() > position:
            parts.append(kept[position : match.start()])
        person, group, channel_id = match.groups()
        parts.append(ChannelRef(channel_id) if channel_id else Mention(person or group))
        position = match.end()
    if position < len(kept):
        parts.append(kept[position:])
    return Text(tuple(parts))


@dataclass(frozen=True)
class Button:
    action_id: str
    label: str
    value: str = ""
    style: Style = "default"
    # A confirmation dialog shown before the press counts: (title, text).
    confirm: tuple[str, RichText] | None = None


@dataclass(frozen=True)
class Message:
    text: RichText
    title: str | None = None
    fields: tuple[tuple[str, RichText], ...] = ()
    buttons: tuple[Button, ...] = ()
    context: RichText | None = None
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


def refused(reason: RichText) -> Result:
    return Result(False, Message(text(Emoji("no_entry"), " ", reason)))


@dataclass
class Outcome:
    """What a handler did, for the audit log and the metrics."""

    name: Literal["ok", "usage", "invalid", "refused", "error", "unavailable", "duplicate"]
    detail: dict[str, object] = field(default_factory=dict)
