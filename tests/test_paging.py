"""Paging the on-call through the fake PagerDuty: events, the SLA, escalation, failures."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select

from bot.catalog import load_catalog
from bot.db.models import Page, utc_now
from bot.db.session import Database
from bot.events import EventBus, ServiceEvent
from bot.messages import MessageRef
from bot.oncall.pagerduty import PagerDutyApi
from bot.oncall.paging import Paging
from bot.oncall.schedule import OncallDirectory
from bot.slack.notifier import SlackNotifier
from bot.slack.people import SlackPeople
from tests.conftest import BOT_TOKEN
from tests.fakes.pagerduty import FakePagerDuty, Recorded
from tests.fakes.slack import FakeSlack
from tests.helpers.oncall import (
    ALICE,
    BOB,
    PAGERDUTY_CATALOG,
    STATIC_CATALOG,
    add_people,
    fast,
    pd_settings,
    start_pagerduty_bot,
)

THREAD = MessageRef("C0ALERTS", "1700000000.000100")
KEY = "alert:checkout:error-rate-critical:1"


class Replica:
    """One opsbot process's paging: its own database engine, clients and event bus."""

    def __init__(
        self, database_url: str, pagerduty: FakePagerDuty, fake_slack: FakeSlack, catalog: Path
    ) -> None:
        self.db = Database(database_url)
        self.client = AsyncWebClient(token=BOT_TOKEN, base_url=fake_slack.api_url)
        self.events: list[ServiceEvent] = []
        bus = EventBus()
        bus.subscribe(self._record)
        loaded = load_catalog(catalog, {})
        settings = pd_settings(pagerduty)
        self.paging = Paging(
            db=self.db,
            catalog=loaded,
            settings=settings,
            notifier=SlackNotifier(self.client),
            events=bus,
            oncall=OncallDirectory(
                catalog=loaded,
                pagerduty=fast(PagerDutyApi(settings)),
                people=SlackPeople(self.client),
            ),
        )
        self.paging.retry_base = timedelta(seconds=5)

    async def _record(self, event: ServiceEvent) -> None:
        self.events.append(event)

    async def close(self) -> None:
        self.paging.close()
        await self.db.dispose()

    async def page(self, key: str = KEY, **changes: object) -> Page:
        options: dict[str, object] = {
            "dedup_key": key,
            "summary": "checkout error rate 7.2% > 5% for 2m",
            "severity": "critical",
            "service": "checkout",
            "subject_kind": "alert",
            "subject_id": 1,
            "thread": THREAD,
            "details": {"rule": "error-rate-critical", "value": 0.072},
        }
        options.update(changes)
        return await self.paging.page(**options)  # type: ignore[arg-type]

    async def get(self, key: str = KEY) -> Page:
        async with self.db.session() as session:
            page = await session.scalar(select(Page).where(Page.dedup_key == key))
        assert page is not None
        return page


@contextlib.asynccontextmanager
async def replica(
    database: Database,
    pagerduty: FakePagerDuty,
    fake_slack: FakeSlack,
    catalog: Path = PAGERDUTY_CATALOG,
) -> AsyncIterator[Replica]:
    running = Replica(database.url, pagerduty, fake_slack, catalog)
    try:
        yield running
    finally:
        await running.close()


def on_call(pagerduty: FakePagerDuty, fake_slack: FakeSlack) -> None:
    add_people(fake_slack)
    pagerduty.add_integration("R0CHECKOUT", "PCHECK1")
    pagerduty.set_oncall("PCHECK1", 1, ALICE)
    pagerduty.set_oncall("PCHECK1", 2, BOB)


def enqueued(pagerduty: FakePagerDuty) -> list[dict[str, object]]:
    return [r.json for r in pagerduty.requests_to("POST", "/v2/enqueue")]


def thread_texts(fake_slack: FakeSlack, thread: MessageRef = THREAD) -> list[str]:
    return [
        m.text
        for m in fake_slack.messages
        if m.channel == thread.channel and m.thread_ts == thread.ts
    ]


def escalations(pagerduty: FakePagerDuty) -> list[Recorded]:
    return [r for r in pagerduty.requests if r.method == "PUT"]


# ------------------------------------------------------------------ trigger, ack, resolve


async def test_trigger_acknowledge_resolve_reach_pagerduty_with_one_dedup_key(
    database: Database, pagerduty: FakePagerDuty, fake_slack: FakeSlack
) -> None:
    on_call(pagerduty, fake_slack)
    async with replica(database, pagerduty, fake_slack) as one:
        page = await one.page()
        again = await one.page()  # an alert re-evaluated, or a retry: the same page
        assert again.id == page.id
        assert enqueued(pagerduty) == [
            {
                "event_action": "trigger",
                "routing_key": "R0CHECKOUT",
                "dedup_key": KEY,
                "payload": {
                    "summary": "checkout error rate 7.2% > 5% for 2m",
                    "source": "opsbot/checkout",
                    "severity": "critical",
                    "custom_details": {
                        "rule": "error-rate-critical",
                        "value": 0.072,
                        "service": "checkout",
                        "subject": "alert 1",
                    },
                },
            }
        ]
        page = await one.get()
        assert page.state == "triggered" and page.sent_at is not None
        assert page.ack_deadline == page.sent_at + timedelta(seconds=1)
        assert page.engage_deadline == page.sent_at + timedelta(seconds=2)
        said = thread_texts(fake_slack)
        assert len(said) == 1
        assert said[0].startswith(
            ":rotating_light: Paged <@U0ALICE> (primary, PagerDuty escalation policy PCHECK1) "
            "for *checkout error rate 7.2% > 5% for 2m* (critical). Acknowledge within 1s"
        )
        assert "or <@U0BOB> is paged" in said[0] and f"Dedup key `{KEY}`" in said[0]

        assert await one.paging.acknowledge(KEY, "U0ALICE") is True
        assert await one.paging.acknowledge(KEY, "U0BOB") is False  # a double click
        await one.paging.resolve(KEY)
        await one.paging.resolve(KEY)
        actions = [
            (e["event_action"], e["dedup_key"], e["routing_key"]) for e in enqueued(pagerduty)
        ]
        assert actions == [
            ("trigger", KEY, "R0CHECKOUT"),
            ("acknowledge", KEY, "R0CHECKOUT"),
            ("resolve", KEY, "R0CHECKOUT"),
        ]
        incident = pagerduty.incident_for(KEY)
        assert incident is not None and incident.log == ["trigger", "acknowledge", "resolve"]
        page = await one.get()
        assert (page.state, page.acknowledged_by) == ("resolved", "U0ALICE")
        assert [e.kind for e in one.events] == ["page", "page-acknowledged"]
        assert one.events[0].data == {
            "subject_kind": "alert",
            "subject_id": 1,
            "dedup_key": KEY,
            "level": 1,
        }
        assert "Acknowledged by <@U0ALICE>" in thread_texts(fake_slack)[1]
        assert "PagerDuty resolved" in thread_texts(fake_slack)[2]


async def test_a_page_without_a_thread_starts_one_in_the_service_channel(
    database: Database, pagerduty: FakePagerDuty, fake_slack: FakeSlack
) -> None:
    on_call(pagerduty, fake_slack)
    async with replica(database, pagerduty, fake_slack) as one:
        await one.page(thread=None)
        page = await one.get()
        assert page.channel == "C0CHECKOUT" and page.thread_ts is not None
        await one.paging.acknowledge(KEY, "U0ALICE")
        thread = MessageRef("C0CHECKOUT", page.thread_ts)
        assert "Acknowledged by <@U0ALICE>" in thread_texts(fake_slack, thread)[0]


# ------------------------------------------------------------------ the SLA and escalation


async def test_a_missed_ack_deadline_pages_the_secondary_then_engage_escalates_further(
    database: Database, pagerduty: FakePagerDuty, fake_slack: FakeSlack
) -> None:
    on_call(pagerduty, fake_slack)
    async with replica(database, pagerduty, fake_slack) as one:
        await one.page()
        # ack_within is 1s in this catalog: run the job as the scheduler would until it acts.
        async with asyncio.timeout(5):
            while not escalations(pagerduty):
                await one.paging.check_deadlines()
                await asyncio.sleep(0.05)
        incident = pagerduty.incident_for(KEY)
        assert incident is not None and incident.escalation_level == 2
        lookup = pagerduty.requests_to("GET", "/incidents")[0]
        assert lookup.query["incident_key"] == [KEY]
        put = escalations(pagerduty)[0]
        assert put.path == f"/incidents/{incident.id}"
        assert put.headers["From"] == "opsbot@example.com"
        assert put.json == {"incident": {"type": "incident_reference", "escalation_level": 2}}
        note = thread_texts(fake_slack)[-1]
        assert note.startswith(":warning: <@U0ALICE> did not acknowledge within 1s (paged at ")
        assert f"Paging the secondary <@U0BOB>: PagerDuty incident {incident.id} escalated" in note
        page = await one.get()
        assert page.escalation_level == 2 and page.pd_incident_id == incident.id

        # Bob acknowledges, but nobody engages within 2s: level 3 and the owners are called.
        await one.paging.acknowledge(KEY, "U0BOB")
        async with asyncio.timeout(5):
            while len(escalations(pagerduty)) < 2:
                await one.paging.check_deadlines()
                await asyncio.sleep(0.05)
        assert escalations(pagerduty)[1].json == {
            "incident": {"type": "incident_reference", "escalation_level": 3}
        }
        note = thread_texts(fake_slack)[-1]
        assert note.startswith(
            ":rotating_light: Nobody is engaged 2s after the page (acknowledged by <@U0BOB>). "
            f"Escalating further (level 3): PagerDuty incident {incident.id} escalated to level 3."
        )
        assert note.endswith("<@U0ALICE>: please engage.")
        await one.paging.check_deadlines(utc_now() + timedelta(hours=1))
        assert len(escalations(pagerduty)) == 2  # level 3 is the last
        assert [e.kind for e in one.events].count("page-escalated") == 2


async def test_acknowledging_in_time_stops_escalation(
    database: Database, pagerduty: FakePagerDuty, fake_slack: FakeSlack
) -> None:
    on_call(pagerduty, fake_slack)
    async with replica(database, pagerduty, fake_slack) as one:
        page = await one.page()
        await one.paging.acknowledge(KEY, "U0ALICE")
        await one.paging.engaged(KEY, "U0ALICE")
        assert page.sent_at is not None
        await one.paging.check_deadlines(page.sent_at + timedelta(hours=1))
        assert escalations(pagerduty) == []
        assert (await one.get()).escalation_level == 1


async def test_two_replicas_escalate_each_missed_deadline_exactly_once(
    postgres_database: Database, pagerduty: FakePagerDuty, fake_slack: FakeSlack
) -> None:
    on_call(pagerduty, fake_slack)
    async with (
        replica(postgres_database, pagerduty, fake_slack) as one,
        replica(postgres_database, pagerduty, fake_slack) as two,
    ):
        start = utc_now()
        one.paging.clock = two.paging.clock = lambda: start
        keys = [f"alert:checkout:{n}" for n in range(5)]
        for n, key in enumerate(keys):
            await one.page(key, thread=MessageRef("C0ALERTS", f"1700000000.00010{n}"))
        late = start + timedelta(seconds=1, milliseconds=500)  # past ack, before engage
        await asyncio.gather(one.paging.check_deadlines(late), two.paging.check_deadlines(late))
        levels = [e.json["incident"]["escalation_level"] for e in escalations(pagerduty)]
        assert levels == [2] * 5
        later = start + timedelta(minutes=5)  # past every deadline
        await asyncio.gather(
            one.paging.check_deadlines(later),
            two.paging.check_deadlines(later),
            one.paging.check_deadlines(later),
        )
        levels = [e.json["incident"]["escalation_level"] for e in escalations(pagerduty)]
        assert sorted(levels) == [2] * 5 + [3] * 5
        texts = [m.text for m in fake_slack.messages]
        assert sum("Paging the secondary" in t for t in texts) == 5
        assert sum("Escalating further (level 3)" in t for t in texts) == 5
        for key in keys:
            assert (await one.get(key)).escalation_level == 3


async def test_a_deadline_missed_while_down_fires_once_after_restart(
    database: Database, pagerduty: FakePagerDuty, fake_slack: FakeSlack
) -> None:
    on_call(pagerduty, fake_slack)
    async with replica(database, pagerduty, fake_slack) as before:
        page = await before.page()
    assert page.sent_at is not None
    # The bot was down through both deadlines; a new process runs the job, twice.
    back_up = page.sent_at + timedelta(hours=2)
    async with replica(database, pagerduty, fake_slack) as after:
        await after.paging.check_deadlines(back_up)
        await after.paging.check_deadlines(back_up + timedelta(minutes=1))
        levels = [e.json["incident"]["escalation_level"] for e in escalations(pagerduty)]
        assert levels == [2, 3]
        assert (await after.get()).escalation_level == 3
        notes = thread_texts(fake_slack)[1:]
        assert len(notes) == 2
        assert notes[0].startswith(":warning: <@U0ALICE> did not acknowledge within 1s")
        assert notes[1].startswith(
            ":rotating_light: Nobody is engaged 2s after the page (not acknowledged). "
            "Escalating further (level 3)"
        )


# ------------------------------------------------------------------ PagerDuty failing


async def test_pagerduty_down_then_back_pages_once_and_says_so(
    database: Database, pagerduty: FakePagerDuty, fake_slack: FakeSlack
) -> None:
    on_call(pagerduty, fake_slack)
    async with replica(database, pagerduty, fake_slack) as one:
        await pagerduty.refuse_connections()
        page = await one.page()
        assert page.state == "failed" and page.attempts == 1
        assert page.next_attempt_at is not None
        said = thread_texts(fake_slack)
        assert len(said) == 1
        assert said[0].startswith(":x: paging failed: trigger: PagerDuty is unreachable (")
        assert "reach <@U0ALICE> another way" not in said[0]  # who-is-on-call failed too
        assert "reach the on-call another way" in said[0]

        # Still down at the next attempt: retried, backing off, not announced again.
        await one.paging.check_deadlines(page.next_attempt_at)
        second = await one.get()
        assert second.attempts == 2 and second.state == "failed"
        assert second.next_attempt_at is not None
        assert second.next_attempt_at - page.next_attempt_at == timedelta(seconds=10)
        assert len(thread_texts(fake_slack)) == 1

        await pagerduty.accept_connections()
        await one.paging.check_deadlines(second.next_attempt_at - timedelta(seconds=1))
        assert enqueued(pagerduty) == []  # not yet due
        await one.paging.check_deadlines(second.next_attempt_at)
        assert [e["event_action"] for e in enqueued(pagerduty)] == ["trigger"]
        page = await one.get()
        assert (page.state, page.attempts, page.last_error) == ("triggered", 3, None)
        assert thread_texts(fake_slack)[-1].startswith(
            ":rotating_light: Paged <@U0ALICE> (primary, PagerDuty escalation policy PCHECK1) "
            "after 3 attempts"
        )


async def test_pagerduty_erroring_is_retried_by_the_client_then_by_the_job(
    database: Database, pagerduty: FakePagerDuty, fake_slack: FakeSlack
) -> None:
    on_call(pagerduty, fake_slack)
    async with replica(database, pagerduty, fake_slack) as one:
        pagerduty.fail_next(3, status=500, path="/v2/enqueue")  # the client tries 3 times
        page = await one.page()
        assert page.state == "failed"
        assert page.last_error == "trigger: PagerDuty answered HTTP 500: Injected failure"
        assert thread_texts(fake_slack)[0].startswith(
            ":x: paging failed: trigger: PagerDuty answered HTTP 500: Injected failure. "
            "opsbot keeps retrying (next attempt at "
        )
        assert "reach <@U0ALICE> another way" in thread_texts(fake_slack)[0]
        pagerduty.fail_next(1, status=429, path="/v2/enqueue")  # rate limited, then fine
        assert page.next_attempt_at is not None
        await one.paging.check_deadlines(page.next_attempt_at)
        assert (await one.get()).state == "triggered"
        assert len(pagerduty.requests_to("POST", "/v2/enqueue")) == 5
        assert len(pagerduty.events) == 1


async def test_an_acknowledgment_before_a_failed_page_is_sent_cancels_it(
    database: Database, pagerduty: FakePagerDuty, fake_slack: FakeSlack
) -> None:
    on_call(pagerduty, fake_slack)
    async with replica(database, pagerduty, fake_slack) as one:
        pagerduty.fail_next(3, status=503, path="/v2/enqueue")
        page = await one.page()
        assert await one.paging.acknowledge(KEY, "U0ALICE") is True
        assert page.next_attempt_at is not None
        await one.paging.check_deadlines(page.next_attempt_at + timedelta(hours=1))
        assert pagerduty.events == []
        assert (await one.get()).state == "cancelled"
        assert "before the page went out" in thread_texts(fake_slack)[-1]


# ------------------------------------------------------------------ scheduled pages


async def test_a_page_for_later_waits_and_goes_out_once(
    database: Database, pagerduty: FakePagerDuty, fake_slack: FakeSlack
) -> None:
    on_call(pagerduty, fake_slack)
    async with replica(database, pagerduty, fake_slack) as one:
        send_at = utc_now() + timedelta(hours=10)
        page = await one.page(send_at=send_at, severity="P1")
        assert page.state == "scheduled" and pagerduty.events == []
        assert thread_texts(fake_slack)[0].startswith(":alarm_clock: <@U0ALICE> will be paged at")
        await one.paging.check_deadlines(send_at - timedelta(minutes=1))
        assert pagerduty.events == []
        await asyncio.gather(
            one.paging.check_deadlines(send_at), one.paging.check_deadlines(send_at)
        )
        assert [e["payload"]["severity"] for e in pagerduty.events] == ["error"]  # P1
        page = await one.get()
        assert page.state == "triggered" and page.ack_deadline == send_at + timedelta(seconds=1)


# ------------------------------------------------------------------ static rotation


async def test_static_rotation_pages_the_primary_then_the_secondary_routing_key(
    database: Database, pagerduty: FakePagerDuty, fake_slack: FakeSlack
) -> None:
    add_people(fake_slack)
    monday = datetime.fromisoformat("2025-01-06T10:00:00+00:00")  # Alice's week
    async with replica(database, pagerduty, fake_slack, STATIC_CATALOG) as one:
        one.paging.clock = lambda: monday
        one.paging.oncall.clock = lambda: monday
        await one.page()
        await one.paging.check_deadlines(monday + timedelta(seconds=1))
        await one.paging.acknowledge(KEY, "U0CAROL")
        sent = [(e["event_action"], e["routing_key"], e["dedup_key"]) for e in pagerduty.events]
        assert sent == [
            ("trigger", "R0ALICE", KEY),
            ("trigger", "R0CAROL", KEY),
            ("acknowledge", "R0ALICE", KEY),
            ("acknowledge", "R0CAROL", KEY),
        ]
        assert escalations(pagerduty) == [] and pagerduty.requests_to("GET", "/oncalls") == []
        said = thread_texts(fake_slack)
        assert said[0].startswith(":rotating_light: Paged <@U0ALICE> (primary, static rotation)")
        assert "Paging the secondary <@U0CAROL>: paged the secondary's routing key" in said[1]


# ------------------------------------------------------------------ engaged from Slack


async def test_a_reply_in_the_page_thread_marks_it_engaged(
    fake_slack: FakeSlack, database: Database, pagerduty: FakePagerDuty
) -> None:
    on_call(pagerduty, fake_slack)
    async with start_pagerduty_bot(fake_slack, database, pagerduty, PAGERDUTY_CATALOG) as bot:
        page = await bot.services.paging.page(
            dedup_key=KEY,
            summary="checkout error rate 7.2% > 5% for 2m",
            severity="critical",
            service="checkout",
            subject_kind="alert",
            subject_id=1,
            thread=None,
        )
        async with bot.services.db.session() as session:
            stored = await session.scalar(select(Page).where(Page.id == page.id))
        assert stored is not None and stored.thread_ts is not None
        reply = {
            "type": "message",
            "channel": stored.channel,
            "user": "U0BOB",
            "text": "on it",
            "ts": "1800000000.000200",
            "thread_ts": stored.thread_ts,
        }
        status, _, _ = await bot.slack.event(reply)
        assert status == 200
        await bot.settle()
        async with bot.services.db.session() as session:
            engaged = await session.scalar(select(Page).where(Page.id == page.id))
        assert engaged is not None
        assert (engaged.state, engaged.acknowledged_by, engaged.engaged_by) == (
            "acknowledged",
            "U0BOB",
            "U0BOB",
        )
        assert [e["event_action"] for e in pagerduty.events] == ["trigger", "acknowledge"]
        texts = [m.text for m in fake_slack.messages if m.thread_ts == stored.thread_ts]
        assert texts[-1] == ":technologist: <@U0BOB> is engaged; the engage deadline is met."
