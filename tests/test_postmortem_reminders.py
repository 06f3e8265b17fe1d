"""Postmortem reminders (the scheduler's `postmortems.remind`) and the pure parts they rest on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot import audit
from bot.app import build_services
from bot.catalog import Catalog
from bot.db.models import Incident
from bot.db.session import Database
from bot.incidents.postmortem_markdown import markdown_inline
from bot.incidents.postmortem_reminders import reminder_step
from tests.conftest import RunningBot, bot_settings, start_bot
from tests.fakes.slack import FakeSlack
from tests.helpers.db import add
from tests.helpers.incidents import INCIDENT_CHANNEL, with_incidents

DUE = timedelta(minutes=10)  # a short `incidents.postmortem_due`
RESOLVED = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def short_due(catalog: Catalog) -> Catalog:
    return with_incidents(catalog, postmortem_due=DUE)


@pytest.fixture
async def running(
    fake_slack: FakeSlack, database: Database, short_due: Catalog
) -> AsyncIterator[RunningBot]:
    async with start_bot(fake_slack, database, short_due) as bot:
        yield bot


def resolved_incident(number: int = 1, **changes: object) -> Incident:
    fields: dict[str, object] = {
        "title": f"Checkout outage {number}",
        "severity": "P1",
        "state": "resolved",
        "services": ["checkout"],
        "commander": "U0ALICE",
        "declared_by": "U0BOB",
        "channel_id": f"C0INC{number}",
        "declared_at": RESOLVED - timedelta(hours=1),
        "detected_at": RESOLVED - timedelta(hours=1),
        "resolved_at": RESOLVED,
        "postmortem_due_at": RESOLVED + DUE,
    }
    fields.update(changes)
    return Incident(**fields)


def reminders(bot: RunningBot, channel: str = INCIDENT_CHANNEL) -> list[str]:
    return [m.text for m in bot.fake.messages if m.channel == channel and "postmortem" in m.text]


async def remind_at(bot: RunningBot, after_resolution: timedelta) -> list[str]:
    await bot.services.postmortems.remind(now=RESOLVED + after_resolution)
    return reminders(bot)


async def test_reminds_the_commander_before_it_is_due_then_when_overdue_until_a_cap(
    running: RunningBot, database: Database
) -> None:
    await add(database, resolved_incident())

    assert await remind_at(running, timedelta(minutes=5)) == []  # half-way: too early
    [before] = await remind_at(running, timedelta(minutes=7, seconds=30))  # 75 %
    assert before.startswith("<@U0ALICE> :memo: The postmortem of *INC-1* (Checkout outage 1)")
    assert "is due in 2m30s, at 2026-03-02 10:10:00 UTC" in before
    assert "No draft yet: `/postmortem INC-1` writes one" in before
    why = running.fake.messages[-1].blocks[-1]["elements"][0]["text"]
    assert "due 10m after resolution (`incidents.postmortem_due`)" in why
    assert "resolved at 2026-03-02 10:00:00 UTC" in why
    assert "at 75% of that period" in why
    assert len(await remind_at(running, timedelta(minutes=9))) == 1  # sent once

    overdue = await remind_at(running, timedelta(minutes=11))
    assert len(overdue) == 2
    assert overdue[-1].startswith("<@U0ALICE> :warning: The postmortem of *INC-1*")
    assert "is overdue by 1m: it was due at 2026-03-02 10:10:00 UTC" in overdue[-1]
    why = running.fake.messages[-1].blocks[-1]["elements"][0]["text"]
    assert "Overdue reminder 1 of 3, one every 1d from the due time." in why
    assert len(await remind_at(running, timedelta(hours=23))) == 2  # not again within 24 h

    assert len(await remind_at(running, DUE + timedelta(hours=24))) == 3
    last = await remind_at(running, DUE + timedelta(hours=48, minutes=5))
    assert len(last) == 4
    why = running.fake.messages[-1].blocks[-1]["elements"][0]["text"]
    assert "Overdue reminder 3 of 3" in why and "This is the last reminder." in why
    assert len(await remind_at(running, DUE + timedelta(days=9))) == 4  # capped

    entries = await audit.entries(database, action="postmortem:reminder")
    assert [e.detail["step"] for e in reversed(entries) if e.detail] == [
        "before",
        "overdue-1",
        "overdue-2",
        "overdue-3",
    ]
    assert {(e.actor, e.outcome) for e in entries} == {("opsbot", "ok")}


async def test_a_bot_that_was_down_sends_only_the_overdue_reminder(
    running: RunningBot, database: Database
) -> None:
    await add(database, resolved_incident(postmortem_due_at=None))  # due from the catalog
    [reminder] = await remind_at(running, timedelta(hours=30))
    assert "overdue by 1d5h50m" in reminder
    async with database.session() as session:
        assert await session.scalar(select(Incident.postmortem_reminder)) == "overdue-2"


async def test_no_reminders_once_done_nor_for_active_incidents(
    running: RunningBot, database: Database
) -> None:
    await add(
        database,
        resolved_incident(),
        resolved_incident(2, state="active", resolved_at=None, postmortem_due_at=None),
    )
    await running.slack.command("/postmortem", "done INC-1", user_id="U0ALICE")
    await running.settle()
    for later in (timedelta(minutes=8), timedelta(minutes=11), timedelta(days=2)):
        await running.services.postmortems.remind(now=RESOLVED + later)
    texts = [m.text for m in running.fake.messages]
    assert not any("is due in" in t or "is overdue" in t for t in texts), texts


async def test_a_failed_post_is_retried_on_the_next_run(
    running: RunningBot, database: Database
) -> None:
    await add(database, resolved_incident())
    running.fake.fail_next("chat.postMessage", error="channel_not_found")
    assert await remind_at(running, timedelta(minutes=8)) == []
    [failed] = await audit.entries(database, action="postmortem:reminder")
    assert failed.outcome == "error"
    assert len(await remind_at(running, timedelta(minutes=8, seconds=10))) == 1


async def test_two_replicas_send_each_reminder_once(
    fake_slack: FakeSlack, postgres_database: Database, short_due: Catalog
) -> None:
    incidents = [resolved_incident(n) for n in range(1, 6)]
    await add(postgres_database, *incidents)
    other_database = Database(postgres_database.url)
    replicas = [
        build_services(bot_settings(fake_slack, db), short_due, db)
        for db in (postgres_database, other_database, postgres_database, other_database)
    ]
    try:
        for after in (timedelta(minutes=8), DUE + timedelta(minutes=1)):
            now = RESOLVED + after
            await asyncio.gather(*(r.postmortems.remind(now=now) for r in replicas))
    finally:
        for replica in replicas:
            await replica.close()
        await other_database.dispose()
    for number in range(1, 6):
        texts = reminders_in(fake_slack, f"C0INC{number}")
        assert len(texts) == 2, texts
        assert "is due in" in texts[0] and "is overdue by" in texts[1]
    assert len(await audit.entries(postgres_database, action="postmortem:reminder")) == 10


def reminders_in(fake: FakeSlack, channel: str) -> list[str]:
    return [m.text for m in fake.messages if m.channel == channel and "postmortem" in m.text]


# --- pure parts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minutes", "sent", "expected"),
    [
        (0, None, None),
        (7.4, None, None),
        (7.5, None, "before"),
        (9.9, "before", None),
        (10, "before", "overdue-1"),
        (10, None, "overdue-1"),  # never a stale "due soon" once it is overdue
        (10 + 24 * 60 - 1, "overdue-1", None),
        (10 + 24 * 60, "overdue-1", "overdue-2"),
        (10 + 30 * 60, None, "overdue-2"),  # after an outage: one reminder, the current step
        (10 + 48 * 60, "overdue-2", "overdue-3"),
        (10 + 480 * 60, "overdue-3", None),  # capped at three
        (10 + 480 * 60, "overdue-2", "overdue-3"),
    ],
)
def test_reminder_step(minutes: float, sent: str | None, expected: str | None) -> None:
    now = RESOLVED + timedelta(minutes=minutes)
    assert reminder_step(resolved_at=RESOLVED, due_at=RESOLVED + DUE, now=now, sent=sent) == (
        expected
    )


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("plain words", "plain words"),
        ("<@U0ALICE> rolled back", "the incident commander rolled back"),
        ("<@U0NOBODY|nobody> looked", "a responder looked"),
        ("ping <!here> and <!channel>", "ping `@here` and `@channel`"),
        ("@everyone look", "`@everyone` look"),
        ("<!subteam^S0ONCALL|@oncall> paged", "oncall (user group) paged"),
        ("see <#C0DEPLOYS|deploys>", "see #deploys"),
        ("&lt;!here&gt; escaped by Slack", "`@here` escaped by Slack"),
        ("# heading", "\\# heading"),
        ("1. list", "1\\. list"),
        ("a | b", "a \\| b"),
        ("*bold* _it_ `code` ~x~", "\\*bold\\* \\_it\\_ \\`code\\` \\~x\\~"),
        ("error_rate_high", "error_rate_high"),
        ("[x](http://e.example) ![i](y)", "\\[x\\](http://e.example) !\\[i\\](y)"),
        ("<script>", "\\<script\\>"),
        ("&copy; &amp;", "\\&copy; &"),
        ("two\nlines\n# not a heading", "two lines # not a heading"),
    ],
)
def test_user_text_becomes_literal_markdown(typed: str, shown: str) -> None:
    assert markdown_inline(typed, {"U0ALICE": "the incident commander"}) == shown
