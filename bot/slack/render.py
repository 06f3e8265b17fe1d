"""The one place where the domain's text values become Slack mrkdwn.

Mentions, channels and emoji get Slack's markup here; everything else the domain hands over is
shown as it reads. Slack reads `&`, `<` and `>` as markup, so words from people (`UserText`) have
those three escaped, and cannot ping a channel or a group however they are written.
"""

from __future__ import annotations

from bot.messages import (
    ChannelRef,
    Duration,
    Emoji,
    Inline,
    Link,
    Mention,
    Moment,
    RichText,
    Text,
    UserText,
    plain,
)


def escape(words: str) -> str:
    """Slack's escaping of text that must not be read as markup."""
    return words.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn(value: RichText) -> str:
    """A text value as Slack mrkdwn (a bare `str` is the bot's own mrkdwn already)."""
    if isinstance(value, str):
        return value
    return "".join(_piece(part) for part in value.parts)


def _piece(part: Inline) -> str:
    match part:
        case str():
            return part
        case Mention(principal) if principal.startswith("S"):
            return f"<!subteam^{principal}>"
        case Mention(principal):
            return f"<@{principal}>"
        case ChannelRef(channel_id):
            return f"<#{channel_id}>"
        case Emoji(name):
            return f":{name}:"
        case UserText(words):
            return escape(words)
        case Link(url, label):
            return f"<{url}|{escape(label)}>"
        case Duration() | Moment():
            return plain(part)
    raise TypeError(f"not a piece of text: {part!r}")


def plain_text(value: RichText) -> str:
    """For Slack's plain_text objects (headers, button labels), which never render markup."""
    return value if isinstance(value, str) else str(value)


__all__ = ["Text", "escape", "mrkdwn", "plain_text"]
