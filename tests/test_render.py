"""The one rendering seam: the domain's text values as Slack shows them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.messages import (
    ChannelRef,
    Duration,
    Emoji,
    Mention,
    Message,
    Moment,
    UserText,
    fmt,
    join,
    refused,
    text,
)
from bot.slack.blocks import to_payload
from bot.slack.render import mrkdwn


def test_the_bots_own_mentions_and_emoji_become_slack_markup() -> None:
    rendered = mrkdwn(
        text(Emoji("rocket"), " approved by ", Mention("U123"), " for ", Mention("S42"))
    )
    assert rendered == ":rocket: approved by <@U123> for <!subteam^S42>"
    assert mrkdwn(text("see ", ChannelRef("C9"))) == "see <#C9>"


def test_words_a_person_typed_cannot_ping_anyone() -> None:
    title = "<!channel> checkout & <@U999> is <down>"
    rendered = mrkdwn(fmt("*{}* declared by {}", title, Mention("U1")))
    assert rendered == (
        "*&lt;!channel&gt; checkout &amp; &lt;@U999&gt; is &lt;down&gt;* declared by <@U1>"
    )
    assert "<!channel>" not in to_payload(Message(text(UserText(title))))["text"]


def test_fmt_keeps_values_as_values_and_plain_reads_like_slack() -> None:
    started = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)
    line = fmt(
        "{who} waited {span} since {at}",
        who=Mention("U1"),
        span=Duration(timedelta(minutes=90)),
        at=Moment(started),
    )
    assert mrkdwn(line) == "<@U1> waited 1h30m since 09:30:00 UTC"
    assert str(line) == "@U1 waited 1h30m since 09:30:00 UTC"
    assert "waited 1h30m" in line


def test_join_and_refusals() -> None:
    assert mrkdwn(join(", ", [Mention("U1"), Mention("U2")])) == "<@U1>, <@U2>"
    assert mrkdwn(refused("lock: held").message.text) == ":no_entry: lock: held"
    assert not text("")
