"""The one rendering seam: the domain's text values as Slack shows them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.messages import (
    ChannelRef,
    Duration,
    Emoji,
    Mention,
    Message,
    Moment,
    Text,
    UserText,
    fmt,
    from_stored,
    join,
    refused,
    stored,
    text,
    verbatim,
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


# Text kept as a string (deploy reasons, step summaries, event-bus texts, timeline entries).
KEPT_FORMS = [
    ("", text()),
    ("no one named", text("no one named")),
    ("Rejected by <@U0APPROVER>.", text("Rejected by ", Mention("U0APPROVER"), ".")),
    ("<@W0CAROL>", text(Mention("W0CAROL"))),
    ("ask <!subteam^S0LEADS> now", text("ask ", Mention("S0LEADS"), " now")),
    ("join <#C0INC>", text("join ", ChannelRef("C0INC"))),
    (
        "<@U1>, <@U2> and <!subteam^S3> in <#C4>",
        text(Mention("U1"), ", ", Mention("U2"), " and ", Mention("S3"), " in ", ChannelRef("C4")),
    ),
]


@pytest.mark.parametrize(("kept", "value"), KEPT_FORMS)
def test_kept_text_reads_back_as_the_values_it_was_kept_from(kept: str, value: Text) -> None:
    assert stored(value) == kept
    assert from_stored(kept) == value
    assert mrkdwn(from_stored(kept)) == mrkdwn(value)


@pytest.mark.parametrize(
    "kept",
    [
        *(kept for kept, _ in KEPT_FORMS),
        # Forms `stored` never writes stay the words they are, so they are kept exactly.
        "<@U1|alice> and <!subteam^S2|@ops> in <#C3|incidents>",
        "<@S1> is not how a group is kept; <!subteam^U1> is no group",
        "<!here> <!channel> <https://example.com|a link> <@> <#>",
        ":rocket: *bold* `code` & <not markup> > <",
        "unterminated <@U1 and <#C2",
    ],
)
def test_kept_text_survives_reading_back(kept: str) -> None:
    assert stored(from_stored(kept)) == kept
    assert mrkdwn(from_stored(kept)) == kept  # shown again, it reads as it was kept


def test_other_values_are_kept_as_they_read() -> None:
    started = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)
    value = text(
        Emoji("rocket"),
        " ",
        UserText("a & b"),
        " for ",
        Duration(timedelta(minutes=90)),
        " since ",
        Moment(started),
        " by ",
        Mention("U1"),
    )
    assert stored(value) == ":rocket: a & b for 1h30m since 09:30:00 UTC by <@U1>"
    assert stored("already a string") == "already a string"


def test_typed_words_pass_on_as_typed() -> None:
    words = "db migration <@U9> & *bold*"
    assert mrkdwn(text("locked: ", verbatim(words))) == f"locked: {words}"
