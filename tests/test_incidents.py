"""Incidents end to end: signed Slack requests in, the fake Slack and the fake PagerDuty out."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot import audit
from bot.catalog import load_catalog
from bot.db.models import Alert, Deploy, Incident, Page, TimelineEvent
from bot.db.session import Database
from bot.deploys import messaging as deploy_messaging
from bot.events import ServiceEvent
from bot.incidents import messaging
from bot.services import Services
from tests.conftest import RunningBot, start_bot
from tests.fakes.kubernetes import FakeKubernetes
from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.slack import FakeSlack, Message
from tests.helpers.deploys import finish

CATALOG = Path(__file__).resolve().parent / "data" / "incidents.yml"
BERLIN = ZoneInfo("Europe/Berlin")
INCIDENTS = "C0INCIDENTS"


class Clock:
    """The bot's clock in these tests: real time, or a moment a test chooses."""

    def __init__(self) -> None:
        self.fixed: datetime | None = None

    def __call__(self) -> datetime:
        return self.fixed or datetime.now(UTC)


@pytest.fixture
def people(fake_slack: FakeSlack) -> FakeSlack:
    fake_slack.add_user("U0ALICE", "alice", "alice@example.com", "Alice Doe")
    fake_slack.add_user("U0BOB", "bob", "bob@example.com", "Bob Roe")
    fake_slack.add_user("U0CAROL", "carol", "carol@example.com", "Carol Loe")
    fake_slack.set_usergroup("S0SHOP", ["U0CAROL"])
    fake_slack.add_channel(INCIDENTS, "incidents")
    fake_slack.add_channel("C0DEPLOYS", "deploys")
    return fake_slack


@contextlib.asynccontextmanager
async def incident_bot(
    fake: FakeSlack,
    database: Database,
    pagerduty: FakePagerDuty,
    clock: Clock,
    *,
    environ: dict[str, str] | None = None,
) -> AsyncIterator[RunningBot]:
    """opsbot as `opsbot run` builds it, against the fake Slack and the fake PagerDuty."""

    def prepare(services: Services) -> None:
        services.incidents.deps.clock = clock
        services.paging.clock = clock
        services.oncall.pagerduty.sleep_timer = 0.01  # the client's retry back-off, for tests

    async with start_bot(
        fake,
        database,
        load_catalog(CATALOG, {}),
        config_path=CATALOG,
        environ=environ,
        prepare=prepare,
        **pagerduty.settings_changes(),
    ) as running:
        yield running


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def bot(
    people: FakeSlack, database: Database, pagerduty: FakePagerDuty, clock: Clock
) -> AsyncIterator[RunningBot]:
    async with incident_bot(people, database, pagerduty, clock) as running:
        yield running


# ------------------------------------------------------------------ helpers


def text_of(message: Message) -> str:
    """Everything a person reads in a message: its text and the text of its blocks."""
    return json.dumps([message.text, message.blocks], ensure_ascii=False)


def replies(bot: RunningBot) -> list[str]:
    return [text_of(m) for m in bot.fake.messages if m.source == "response_url" or m.ephemeral_for]


async def command(bot: RunningBot, text: str, **kwargs: Any) -> str:
    """Send `/incident <text>`; wait for its work; the ack's body (parse errors answer there)."""
    status, body, _ = await bot.slack.command("/incident", text, **kwargs)
    assert status == 200
    await bot.settle()
    return body


async def incidents(db: Database) -> list[Incident]:
    async with db.session() as session:
        return list(await session.scalars(select(Incident).order_by(Incident.id)))


async def timeline(db: Database, incident_id: int = 1) -> list[TimelineEvent]:
    async with db.session() as session:
        return list(
            await session.scalars(
                select(TimelineEvent)
                .where(TimelineEvent.incident_id == incident_id)
                .order_by(TimelineEvent.at, TimelineEvent.id)
            )
        )


async def pages(db: Database) -> list[Page]:
    async with db.session() as session:
        return list(await session.scalars(select(Page).order_by(Page.id)))


def channel_messages(bot: RunningBot, channel: str) -> list[Message]:
    return [m for m in bot.fake.messages if m.channel == channel and m.ephemeral_for is None]


def buttons(message: Message) -> dict[str, dict[str, Any]]:
    return {
        element["action_id"]: element
        for block in message.blocks
        if block.get("type") == "actions"
        for element in block["elements"]
    }


def enqueued(pagerduty: FakePagerDuty) -> list[dict[str, Any]]:
    return [r.json for r in pagerduty.requests_to("POST", "/v2/enqueue")]


async def declared(bot: RunningBot, text: str, **kwargs: Any) -> Incident:
    before = len(await incidents(bot.services.db))
    await command(bot, f"declare {text}", **kwargs)
    found = await incidents(bot.services.db)
    assert len(found) == before + 1, replies(bot)
    return found[-1]


# ------------------------------------------------------------------ declaring


async def test_declare_p0_opens_a_channel_invites_announces_and_pages_now(
    bot: RunningBot, pagerduty: FakePagerDuty
) -> None:
    await command(bot, "declare P0 checkout is down for everyone", channel_id="C0DEPLOYS")

    (incident,) = await incidents(bot.services.db)
    assert (incident.key, incident.severity, incident.state) == ("INC-1", "P0", "active")
    assert incident.services == ["checkout"]  # recognised in the title
    assert incident.commander == "U0ALICE" and incident.declared_by == "U0ALICE"

    (create,) = bot.fake.calls_to("conversations.create")
    assert create.args["name"] == "inc-1-checkout-is-down-for-everyone"
    channel = incident.channel_id
    assert channel and bot.fake.channel_name(channel) == "inc-1-checkout-is-down-for-everyone"
    # The declarer (the commander), the owners of checkout (a user and a user group's member).
    members = set(bot.fake.channels[channel]["members"])
    assert {"U0ALICE", "U0CAROL"} <= members
    assert (
        bot.fake.channels[channel]["topic"]["value"] == "P0 | investigating | commander <@U0ALICE>"
    )

    (announcement,) = channel_messages(bot, INCIDENTS)
    assert "*INC-1*: checkout is down for everyone" in announcement.text
    assert f"<#{channel}>" in text_of(announcement)

    # P0: the on-call of checkout is paged now, through checkout's routing key.
    (event,) = [e for e in enqueued(pagerduty) if e["event_action"] == "trigger"]
    assert event["routing_key"] == "R0CHECKOUT"
    assert event["dedup_key"] == "INC-1:checkout"
    assert event["payload"]["severity"] == "critical"
    assert "INC-1 P0: checkout is down for everyone" in event["payload"]["summary"]

    # The channel's first message says why, with the Acknowledge button.
    intro = channel_messages(bot, channel)[0]
    assert "Severity P0 chosen by <@U0ALICE>; opsbot agrees." in intro.text
    assert "the on-call of checkout is paged now (INC-1:checkout)" in intro.text
    assert "P0 (critical) pages the on-call immediately" in intro.text
    assert messaging.ACKNOWLEDGE in buttons(intro)

    # The declarer is told where, in the channel they declared from.
    assert any(
        f"INC-1 declared (P0): checkout is down for everyone — <#{channel}>" in r
        for r in replies(bot)
    )
    kinds = [event.kind for event in await timeline(bot.services.db)]
    assert kinds[:2] == ["declared", "severity"] and "page" in kinds
    actions = [entry.action for entry in await audit.entries(bot.services.db)]
    assert "/incident declare" in actions


async def test_declare_without_severity_takes_the_suggestion_and_says_why(
    bot: RunningBot, pagerduty: FakePagerDuty
) -> None:
    incident = await declared(bot, "typo on the payments receipt page")

    assert incident.severity == "P3" and incident.services == ["payments"]
    intro = channel_messages(bot, incident.channel_id or "")[0]
    assert "Severity P3 was suggested by opsbot. Suggested P3 (cosmetic issue, no user impact)" in (
        intro.text
    )
    assert 'the description says "typo"' in intro.text
    assert "P3 (low) pages nobody; fix it in the next sprint" in intro.text
    assert enqueued(pagerduty) == [] and await pages(bot.services.db) == []
    # payments' owner is invited; checkout's are not.
    members = set(bot.fake.channels[incident.channel_id or ""]["members"])
    assert "U0BOB" in members and "U0CAROL" not in members


async def test_the_declarer_can_override_the_suggestion_and_both_are_noted(bot: RunningBot) -> None:
    incident = await declared(bot, "P2 checkout is down")
    assert incident.severity == "P2"
    (severity,) = [e for e in await timeline(bot.services.db) if e.kind == "severity"]
    assert severity.text.startswith("Severity P2 chosen by <@U0ALICE> (opsbot would suggest P0:")
    # P2: no page, a follow-up due after `followup_after` (3s in this catalog).
    assert incident.followup_due_at == incident.declared_at + timedelta(seconds=3)


async def test_a_taken_channel_name_gets_a_suffix(bot: RunningBot) -> None:
    bot.fake.add_channel("C0TAKEN", "inc-1-cart-broken")
    incident = await declared(bot, "P3 cart broken")
    assert incident.channel_name == "inc-1-cart-broken-2"
    assert incident.services == ["checkout"]  # by its alias
    names = [call.args["name"] for call in bot.fake.calls_to("conversations.create")]
    assert names == ["inc-1-cart-broken", "inc-1-cart-broken-2"]


async def test_a_channel_slack_refuses_is_reported_and_the_incident_still_exists(
    bot: RunningBot,
) -> None:
    bot.fake.fail_next("conversations.create", error="restricted_action")
    incident = await declared(bot, "P3 cosmetic glitch")
    assert incident.channel_id is None
    assert any(
        "the incident channel #inc-1-cosmetic-glitch could not be created: Slack refused to "
        "create #inc-1-cosmetic-glitch: restricted_action" in r
        for r in replies(bot)
    )
    (announcement,) = channel_messages(bot, INCIDENTS)
    assert "(no channel)" in text_of(announcement)


async def test_declare_with_bad_input_gets_a_clear_answer(bot: RunningBot) -> None:
    assert "an incident needs a title" in await command(bot, "declare P1")
    await command(bot, "declare " + "x" * 300)
    assert "the title is 300 characters long; keep it under 255." in replies(bot)[-1]
    assert "Did you mean declare?" in await command(bot, "delcare P1 db down")
    assert await incidents(bot.services.db) == []


# ------------------------------------------------------------------ running it


async def test_subcommands_outside_an_incident_channel_say_where_to_run_them(
    bot: RunningBot,
) -> None:
    for text in ("update all good", "severity P1", "commander @bob", "role scribe @bob", "resolve"):
        await command(bot, text, channel_id="C0DEPLOYS")
        assert (
            "works in an incident's own channel (#inc-<n>-…), and this is not one"
            in (replies(bot)[-1])
        ), text
    assert "`/incident list` shows the active incidents" in replies(bot)[-1]


async def test_an_incident_is_run_from_its_channel_until_resolved(
    bot: RunningBot, pagerduty: FakePagerDuty, clock: Clock
) -> None:
    clock.fixed = datetime(2025, 6, 11, 9, 0, tzinfo=BERLIN).astimezone(UTC)  # Wednesday 09:00
    incident = await declared(bot, "P2 payments refunds fail for some users")
    channel = incident.channel_id or ""
    assert enqueued(pagerduty) == []

    clock.fixed += timedelta(minutes=5)
    await command(bot, "update rolled back the refund worker, watching", channel_id=channel)
    assert (
        "*INC-1 update* from <@U0ALICE>: rolled back the refund worker, watching"
        in (replies(bot)[-1])
    )
    # P2 → P1 in business hours: the on-call (payments has no routing key: the default) is paged.
    await command(bot, "severity P1", channel_id=channel, user_id="U0BOB")
    (trigger,) = [e for e in enqueued(pagerduty) if e["event_action"] == "trigger"]
    assert (trigger["routing_key"], trigger["dedup_key"]) == ("R0DEFAULT", "INC-1:payments")
    assert trigger["payload"]["severity"] == "error"
    assert "severity changed P2 → P1 by <@U0BOB>" in replies(bot)[-1]
    assert "and it is business hours now" in replies(bot)[-1]
    assert (
        "is P1 already"
        in (await command(bot, "severity p1", channel_id=channel)) + (replies(bot)[-1])
    )

    await command(bot, "commander <@U0BOB|bob>", channel_id=channel)
    await command(bot, "role scribe @carol", channel_id=channel)
    await command(bot, "role comms @nobody-here", channel_id=channel)
    assert "who is '@nobody-here'? Mention a person" in replies(bot)[-1]
    await command(bot, "role Sc!ribe @carol", channel_id=channel)
    assert "is not a role name" in replies(bot)[-1]
    assert "U0CAROL" in bot.fake.channels[channel]["members"]

    (found,) = await incidents(bot.services.db)
    assert (found.severity, found.commander, found.roles) == ("P1", "U0BOB", {"scribe": "U0CAROL"})
    assert found.last_update_at == clock.fixed
    assert bot.fake.channels[channel]["topic"]["value"] == "P1 | investigating | commander <@U0BOB>"
    announcement = channel_messages(bot, INCIDENTS)[0]
    assert announcement.updated and "<@U0BOB>" in text_of(announcement)
    assert "scribe <@U0CAROL>" in text_of(announcement)

    await command(bot, "list", channel_id="C0DEPLOYS")
    assert "*INC-1* P1 investigating — payments refunds fail for some users" in replies(bot)[-1]

    clock.fixed += timedelta(minutes=40)
    await command(bot, "resolve refund worker fixed and redeployed", channel_id=channel)
    assert "*INC-1 resolved* by <@U0ALICE> after 45m." in replies(bot)[-1]
    assert "`/postmortem INC-1` drafts it" in replies(bot)[-1]
    (found,) = await incidents(bot.services.db)
    assert found.state == "resolved" and found.resolved_at == clock.fixed
    assert found.postmortem_due_at == clock.fixed + timedelta(hours=48)
    assert found.summary == "refund worker fixed and redeployed"
    assert [e["event_action"] for e in enqueued(pagerduty)] == ["trigger", "resolve"]
    assert "resolved" in bot.fake.channels[channel]["topic"]["value"]
    assert ":white_check_mark: *INC-1* resolved" in channel_messages(bot, INCIDENTS)[0].text

    await command(bot, "update one more thing", channel_id=channel)
    assert (
        "INC-1 was resolved at" in replies(bot)[-1]
        and "cannot change any more" in (replies(bot)[-1])
    )
    await command(bot, "resolve again", channel_id=channel)
    assert "INC-1 was resolved already" in replies(bot)[-1]
    await command(bot, "list")
    assert "No active incidents." in replies(bot)[-1]

    texts = [e.text for e in await timeline(bot.services.db)]
    assert "Update from <@U0ALICE>: rolled back the refund worker, watching" in texts
    assert "Severity changed P2 → P1 by <@U0BOB>" in texts
    assert "Commander: <@U0BOB> (was <@U0ALICE>), set by <@U0ALICE>" in texts
    assert "Scribe: <@U0CAROL>, set by <@U0ALICE>" in texts
    assert "Resolved by <@U0ALICE>: refund worker fixed and redeployed" in texts
    assert any(t.startswith("Paged the on-call: INC-1 P1") for t in texts)  # from paging


# ------------------------------------------------------------------ the form


def form_values(
    title: str, severity: str | None, services: list[str], description: str = ""
) -> dict[str, dict[str, dict[str, Any]]]:
    """Slack's view.state.values for the declare form, as a person filled it in."""
    chosen = {"text": {"type": "plain_text", "text": severity}, "value": severity}
    return {
        "title": {"value": {"type": "plain_text_input", "value": title}},
        "description": {"value": {"type": "plain_text_input", "value": description or None}},
        "severity": {
            "value": {"type": "static_select", "selected_option": chosen if severity else None}
        },
        "services": {
            "value": {
                "type": "multi_static_select",
                "selected_options": [{"value": s, "text": {"text": s}} for s in services],
            }
        },
    }


def view_blocks(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {block["block_id"]: block for block in view["blocks"]}


async def test_incident_alone_opens_the_form_and_submitting_it_declares(
    bot: RunningBot, pagerduty: FakePagerDuty, clock: Clock
) -> None:
    clock.fixed = datetime(2025, 6, 14, 3, 0, tzinfo=BERLIN).astimezone(UTC)  # Saturday 03:00
    await command(bot, "", channel_id="C0DEPLOYS")

    (opened,) = bot.fake.calls_to("views.open")
    assert opened.response["ok"], opened.response
    view = opened.args["view"]
    blocks = view_blocks(view)
    assert view["callback_id"] == "incident_declare_modal"
    assert blocks["severity"]["element"]["initial_option"]["value"] == "P2"  # nothing known yet
    assert [o["value"] for o in blocks["services"]["element"]["options"]] == [
        "checkout",
        "payments",
    ]

    # A form without a title is refused in the form itself.
    status, body, _ = await bot.slack.submit(
        "incident_declare_modal", form_values("", "P1", []), view_id=opened.response["view"]["id"]
    )
    assert status == 200 and json.loads(body)["errors"] == {"title": "Give the incident a title."}

    await bot.slack.submit(
        "incident_declare_modal",
        form_values("Refunds stuck", "P1", ["payments"], "Refunds queue grows since 02:40"),
        view_id=opened.response["view"]["id"],
    )
    await bot.settle()
    (incident,) = await incidents(bot.services.db)
    assert (incident.title, incident.severity, incident.services) == (
        "Refunds stuck",
        "P1",
        ["payments"],
    )
    assert incident.description == "Refunds queue grows since 02:40"
    # Saturday 03:00 in Berlin: a P1 pages at the start of the next business day, Monday 09:00.
    (page,) = await pages(bot.services.db)
    assert page.state == "scheduled" and page.dedup_key == "INC-1:payments"
    assert page.send_at == datetime(2025, 6, 16, 9, 0, tzinfo=BERLIN).astimezone(UTC)
    assert enqueued(pagerduty) == []
    intro = channel_messages(bot, incident.channel_id or "")[0]
    assert "the page goes out at Mon 2025-06-16 09:00 Europe/Berlin unless someone " in intro.text
    # The declarer hears back where they opened the form.
    (answer,) = [m for m in bot.fake.messages if m.ephemeral_for == "U0ALICE"]
    assert answer.channel == "C0DEPLOYS" and "INC-1 declared (P1): Refunds stuck" in answer.text

    # Acknowledging first cancels the page: nobody is woken up on Monday either.
    intro = channel_messages(bot, incident.channel_id or "")[0]
    await bot.slack.click(
        messaging.ACKNOWLEDGE,
        channel_id=incident.channel_id or "",
        message_ts=intro.ts,
        user_id="U0BOB",
    )
    await bot.settle()
    (page,) = await pages(bot.services.db)
    assert page.state == "cancelled" and page.acknowledged_by == "U0BOB"
    (incident,) = await incidents(bot.services.db)
    assert incident.acknowledged_at == clock.fixed and incident.acknowledged_by == "U0BOB"
    intro = channel_messages(bot, incident.channel_id or "")[0]
    assert messaging.ACKNOWLEDGE not in buttons(intro)
    assert "acknowledged 2025-06-14 01:00 UTC by <@U0BOB>" in text_of(intro)
    await bot.services.paging.check_deadlines(clock.fixed + timedelta(days=3))
    assert enqueued(pagerduty) == []


async def test_the_declare_button_on_an_alert_opens_the_form_filled_in(
    bot: RunningBot, pagerduty: FakePagerDuty
) -> None:
    fired = datetime.now(UTC) - timedelta(minutes=7)
    async with bot.services.db.transaction() as session:
        alert = Alert(
            service="checkout",
            rule="error-rate-critical",
            severity="critical",
            state="firing",
            value=0.12,
            threshold=0.05,
            started_at=fired - timedelta(minutes=2),
            fired_at=fired,
            dedup_key="alert:checkout:error-rate-critical:1",
        )
        session.add(alert)
    value = json.dumps(
        {"service": "checkout", "title": "checkout error rate 12%", "alert_id": alert.id}
    )
    await bot.slack.click(messaging.DECLARE, value=value, channel_id="C0ALERTS")
    await bot.settle()

    (opened,) = bot.fake.calls_to("views.open")
    blocks = view_blocks(opened.args["view"])
    assert blocks["title"]["element"]["initial_value"] == "checkout error rate 12%"
    assert blocks["severity"]["element"]["initial_option"]["value"] == "P1"
    suggestion = blocks["suggestion"]["elements"][0]["text"]
    assert "error-rate-critical is firing on checkout (0.12 against a threshold of 0.05)" in (
        suggestion
    )
    assert "checkout fails 12% of requests (≥ 5%)" in suggestion
    assert [o["value"] for o in blocks["services"]["element"]["initial_options"]] == ["checkout"]

    values = form_values("checkout error rate 12%", "P1", ["checkout"])
    await bot.slack.submit("incident_declare_modal", values, view_id=opened.response["view"]["id"])
    await bot.settle()
    (incident,) = await incidents(bot.services.db)
    # Detected when the alert fired, not when someone declared.
    assert incident.detected_at == fired
    async with bot.services.db.session() as session:
        linked = await session.get(Alert, alert.id)
    assert linked is not None and linked.incident_id == incident.id
    detected = [e for e in await timeline(bot.services.db) if e.kind == "detected"]
    assert detected[0].text == "Detected: alert error-rate-critical on checkout"


async def test_a_declare_button_without_details_is_refused(bot: RunningBot) -> None:
    await bot.slack.click(messaging.DECLARE, value="not json", channel_id="C0ALERTS")
    await bot.settle()
    assert "this button carries no incident details; nothing was done." in replies(bot)[-1]
    assert bot.fake.calls_to("views.open") == []


async def test_twenty_acknowledge_clicks_acknowledge_once(
    people: FakeSlack, postgres_database: Database, pagerduty: FakePagerDuty, clock: Clock
) -> None:
    async with incident_bot(people, postgres_database, pagerduty, clock) as bot:
        incident = await declared(bot, "P0 checkout is down")
        intro = channel_messages(bot, incident.channel_id or "")[0]
        users = [f"U0{name}" for name in ("ALICE", "BOB", "CAROL")] * 7
        await asyncio.gather(
            *(
                bot.slack.click(
                    messaging.ACKNOWLEDGE,
                    channel_id=incident.channel_id or "",
                    message_ts=intro.ts,
                    user_id=user,
                )
                for user in users[:20]
            )
        )
        await bot.settle()
        acks = [e for e in await timeline(postgres_database) if e.kind == "acknowledged"]
        assert len(acks) == 1
        actions = [e["event_action"] for e in enqueued(pagerduty)]
        assert actions.count("trigger") == 1 and actions.count("acknowledge") == 1
        refusals = [r for r in replies(bot) if "INC-1 was acknowledged already by" in r]
        assert len(refusals) == 19


# ------------------------------------------------------------------ the timeline


def pin_event(message: Message, user: str) -> dict[str, Any]:
    """Slack's pin_added event for a message (it carries the message itself)."""
    return {
        "type": "pin_added",
        "user": user,
        "channel_id": message.channel,
        "item": {
            "type": "message",
            "channel": message.channel,
            "created": 1700000000,
            "created_by": user,
            "message": {
                "type": "message",
                "user": message.user,
                "text": message.text,
                "ts": message.ts,
            },
        },
    }


def reaction_event(message: Message, user: str, reaction: str = "pushpin") -> dict[str, Any]:
    """Slack's reaction_added event: only the message's channel and ts, not its text."""
    return {
        "type": "reaction_added",
        "user": user,
        "reaction": reaction,
        "item_user": message.user,
        "item": {"type": "message", "channel": message.channel, "ts": message.ts},
    }


async def test_pins_and_pushpin_reactions_join_the_timeline_once_at_the_message_time(
    bot: RunningBot,
) -> None:
    incident = await declared(bot, "P3 checkout banner misaligned")
    channel = incident.channel_id or ""
    post_as_user = bot.fake.post_as_user  # type: ignore[attr-defined]
    found = post_as_user(channel, "the banner CSS came with v42", user="U0BOB")
    fix = post_as_user(channel, "reverted the stylesheet", user="U0CAROL")
    reply = post_as_user(channel, "confirmed on mobile", user="U0BOB", thread_ts=fix.ts)
    chatter = post_as_user(channel, "coffee?", user="U0BOB")
    elsewhere = post_as_user("C0DEPLOYS", "unrelated", user="U0BOB")

    await bot.slack.event(pin_event(found, "U0ALICE"), event_id="EvPIN1")
    await bot.slack.event(pin_event(found, "U0ALICE"), event_id="EvPIN1", retry_num=1)  # retry
    await bot.settle()
    await bot.slack.event(reaction_event(found, "U0CAROL"))  # the same message, 📌 too
    await bot.slack.event(reaction_event(fix, "U0ALICE"))
    await bot.slack.event(reaction_event(reply, "U0ALICE", "round_pushpin"))
    await bot.slack.event(reaction_event(chatter, "U0ALICE", "coffee"))  # not a pin
    await bot.slack.event(reaction_event(elsewhere, "U0ALICE"))  # not an incident channel
    await bot.settle()

    messages = [e for e in await timeline(bot.services.db) if e.kind == "message"]
    assert [(e.text, e.actor) for e in messages] == [
        ("<@U0BOB>: the banner CSS came with v42", "U0BOB"),
        ("<@U0CAROL>: reverted the stylesheet", "U0CAROL"),
        ("<@U0BOB>: confirmed on mobile", "U0BOB"),
    ]
    assert messages[0].at == datetime.fromtimestamp(float(found.ts), UTC)
    assert messages[0].source_key == f"{channel}:{found.ts}"
    assert messages[0].data and messages[0].data["marked_by"] == "U0ALICE"
    # The reaction gives only channel and ts: the text was read from the channel's history.
    history = [c.args for c in bot.fake.calls_to("conversations.history")]
    assert sorted((a["channel"], a["oldest"], a["latest"]) for a in history) == [
        (channel, fix.ts, fix.ts),
        (channel, reply.ts, reply.ts),  # a thread reply is not in the history …
    ]
    (thread,) = bot.fake.calls_to("conversations.replies")  # … but conversations.replies has it
    assert thread.args["ts"] == reply.ts
    events = [e.action for e in await audit.entries(bot.services.db)]
    assert events.count("event:pin") == 1 and events.count("event:reaction") == 3


async def test_deploys_rollbacks_alerts_and_pages_of_affected_services_join_the_timeline(
    bot: RunningBot, tmp_path: Path
) -> None:
    incident = await declared(bot, "P2 checkout latency up")
    other = await declared(bot, "P3 payments typo")
    bus = bot.services.events
    now = datetime.now(UTC)
    alert = ServiceEvent(
        kind="alert",
        text="error-rate-critical firing on checkout: 0.12 > 0.05 for 2m",
        at=now,
        service="checkout",
        key="alert:7:firing",
    )
    await bus.publish(alert)
    await bus.publish(alert)  # published twice (two replicas): recorded once
    await bus.publish(
        ServiceEvent(
            kind="deploy",
            text="Deploy #3 of payments v9 to dev succeeded",
            at=now,
            service="payments",
            key="deploy:3:succeeded",
        )
    )
    await bus.publish(
        ServiceEvent(
            kind="page-acknowledged",
            text="Page acknowledged by <@U0BOB>",
            at=now,
            actor="U0BOB",
            key="page:INC-1:checkout:ack",
            data={
                "subject_kind": "incident",
                "subject_id": incident.id,
                "dedup_key": "INC-1:checkout",
            },
        )
    )
    rollback_at = now + timedelta(seconds=1)
    await bus.publish(
        ServiceEvent(
            kind="rollback",
            text="Rollback #4 of checkout in dev to v1 by <@U0BOB> succeeded",
            at=rollback_at,
            service="checkout",
            key="deploy:4:succeeded",
        )
    )
    await bot.settle()

    texts = [(e.kind, e.text) for e in await timeline(bot.services.db, incident.id)]
    assert texts.count(("alert", alert.text)) == 1
    assert ("page-acknowledged", "Page acknowledged by <@U0BOB>") in texts
    assert not any("payments" in text for kind, text in texts if kind == "deploy")
    # A rollback of an affected service mitigates the incident, and says so.
    assert (
        "mitigated",
        "Mitigated: Rollback #4 of checkout in dev to v1 by <@U0BOB> succeeded",
    ) in (texts)
    found = {i.id: i for i in await incidents(bot.services.db)}
    assert found[incident.id].state == "mitigated"
    assert found[incident.id].mitigated_at == rollback_at
    assert found[incident.id].acknowledged_by == "U0BOB"  # acknowledged at PagerDuty
    assert any(
        "Marked mitigated because Rollback #4" in m.text
        for m in channel_messages(bot, incident.channel_id or "")
    )
    other_texts = [e.text for e in await timeline(bot.services.db, other.id)]
    assert "Deploy #3 of payments v9 to dev succeeded" in other_texts
    assert alert.text not in other_texts


async def test_a_real_deploy_of_an_affected_service_reaches_the_timeline(
    people: FakeSlack,
    database: Database,
    pagerduty: FakePagerDuty,
    clock: Clock,
    kube: FakeKubernetes,
    tmp_path: Path,
) -> None:
    kube.add_deployment("shop-dev", "payments", "registry.example/payments:v1", replicas=1)
    environ = {"KUBECONFIG": str(kube.kubeconfig(tmp_path / "kubeconfig"))}
    async with incident_bot(people, database, pagerduty, clock, environ=environ) as bot:
        incident = await declared(bot, "P2 checkout slow", channel_id="C0DEPLOYS")
        await bot.slack.command("/deploy", "checkout dev v2")
        await finish(bot)
        await bot.slack.command("/deploy", "payments dev v2")
        await finish(bot)
        texts = [e.text for e in await timeline(bot.services.db, incident.id) if e.kind == "deploy"]
        assert texts == ["Deploy #1 of checkout v2 to dev by <@U0ALICE> succeeded"]


# ------------------------------------------------------------------ reminders


async def test_reminders_come_once_per_period_without_updates(
    bot: RunningBot, clock: Clock
) -> None:
    start = datetime(2025, 6, 11, 9, 0, tzinfo=UTC)
    clock.fixed = start
    p0 = await declared(bot, "P0 checkout is down")
    p2 = await declared(bot, "P2 payments refunds slow for some users")
    p3 = await declared(bot, "P3 typo on the checkout page")
    incidents_service = bot.services.incidents

    def reminders(incident: Incident) -> list[str]:
        return [
            m.text
            for m in channel_messages(bot, incident.channel_id or "")
            if m.text.startswith(":alarm_clock:")
        ]

    await incidents_service.remind(start + timedelta(seconds=1))
    assert reminders(p0) == [] and reminders(p2) == []
    # P0 every 2s in this catalog: one reminder, however often the job runs in that period.
    await incidents_service.remind(start + timedelta(seconds=2))
    await incidents_service.remind(start + timedelta(seconds=3))
    assert reminders(p0) == [
        ":alarm_clock: No update on INC-1 (P0) for 0m; P0 incidents get one at least every 2s. "
        "<@U0ALICE>, please post `/incident update <what is happening>`."
    ]
    await incidents_service.remind(start + timedelta(seconds=4))
    assert len(reminders(p0)) == 2
    # An update resets the clock.
    clock.fixed = start + timedelta(seconds=5)
    await command(bot, "update DB failover in progress", channel_id=p0.channel_id)
    await incidents_service.remind(start + timedelta(seconds=6))
    assert len(reminders(p0)) == 2
    await incidents_service.remind(start + timedelta(seconds=7))
    assert len(reminders(p0)) == 3

    # P2: its follow-up (3s here) was due once, however often the job ran; P3 gets nothing.
    await incidents_service.remind(start + timedelta(seconds=30))
    assert reminders(p2) == [
        ":alarm_clock: The follow-up of INC-2 (P2) was due 2025-06-11 09:00 UTC. <@U0ALICE>, "
        "resolve it with `/incident resolve <summary>` or post an update."
    ]
    assert reminders(p3) == []
    assert len(reminders(p0)) == 4
    # Resolved incidents are left alone.
    await command(bot, "resolve", channel_id=p0.channel_id)
    await incidents_service.remind(start + timedelta(minutes=10))
    assert len(reminders(p0)) == 4


async def test_two_replicas_reminding_at_once_remind_once(
    people: FakeSlack, postgres_database: Database, pagerduty: FakePagerDuty, clock: Clock
) -> None:
    start = datetime(2025, 6, 11, 9, 0, tzinfo=UTC)
    clock.fixed = start
    async with incident_bot(people, postgres_database, pagerduty, clock) as bot:
        incident = await declared(bot, "P0 checkout is down")
        later = start + timedelta(seconds=2)
        await asyncio.gather(*(bot.services.incidents.remind(later) for _ in range(5)))
        reminders = [
            m
            for m in channel_messages(bot, incident.channel_id or "")
            if m.text.startswith(":alarm_clock:")
        ]
        assert len(reminders) == 1


# ------------------------------------------------------------------ stats


async def test_stats_show_mtta_and_mttr_by_severity(bot: RunningBot, clock: Clock) -> None:
    start = datetime(2025, 6, 11, 9, 0, tzinfo=UTC)
    for minutes_to_ack, minutes_to_resolve in ((4, 30), (8, 90)):
        clock.fixed = start
        incident = await declared(bot, "P0 checkout is down")
        channel = incident.channel_id or ""
        intro = channel_messages(bot, channel)[0]
        clock.fixed = start + timedelta(minutes=minutes_to_ack)
        await bot.slack.click(messaging.ACKNOWLEDGE, channel_id=channel, message_ts=intro.ts)
        await bot.settle()
        clock.fixed = start + timedelta(minutes=minutes_to_resolve)
        await command(bot, "resolve", channel_id=channel)
    clock.fixed = start
    await declared(bot, "P2 payments refunds slow")  # open, never acknowledged
    clock.fixed = start - timedelta(days=40)
    await declared(bot, "P1 long ago")  # outside the default 30 days

    clock.fixed = start + timedelta(hours=3)
    await command(bot, "stats")
    table = replies(bot)[-1]
    assert "Incidents declared in the last 30d" in table and "): 3" in table
    assert "P0       2     0        6m     1h00m" in table
    assert "P1       0     0         —         —" in table
    assert "P2       1     1         —         —" in table
    await command(bot, "stats 60d")
    assert "P1       1     1         —         —" in replies(bot)[-1]
    await command(bot, "stats forever")
    assert "'forever' is not a period: write e.g. 7d, 30d, 12h." in replies(bot)[-1]


# ------------------------------------------------------------------ paging by the policy


@pytest.mark.parametrize(
    ("local_time", "send_at"),
    [
        # Wednesday 11:00 in Berlin: business hours, paged now.
        (datetime(2025, 6, 11, 11, 0, tzinfo=BERLIN), None),
        # Wednesday 03:00: at 09:00 the same day.
        (datetime(2025, 6, 11, 3, 0, tzinfo=BERLIN), datetime(2025, 6, 11, 9, 0, tzinfo=BERLIN)),
        # Saturday 03:00 and 11:00: on Monday at 09:00.
        (datetime(2025, 6, 14, 3, 0, tzinfo=BERLIN), datetime(2025, 6, 16, 9, 0, tzinfo=BERLIN)),
        (datetime(2025, 6, 14, 11, 0, tzinfo=BERLIN), datetime(2025, 6, 16, 9, 0, tzinfo=BERLIN)),
    ],
)
async def test_a_p1_pages_in_business_hours_or_at_the_next_business_morning(
    bot: RunningBot,
    pagerduty: FakePagerDuty,
    clock: Clock,
    local_time: datetime,
    send_at: datetime | None,
) -> None:
    clock.fixed = local_time.astimezone(UTC)
    await declared(bot, "P1 checkout slow for many users")
    (page,) = await pages(bot.services.db)
    triggers = [e for e in enqueued(pagerduty) if e["event_action"] == "trigger"]
    if send_at is None:
        assert page.state == "triggered" and len(triggers) == 1
        return
    assert page.state == "scheduled" and page.send_at == send_at.astimezone(UTC)
    assert triggers == []
    # Nobody acknowledged: the page goes out when business hours begin (the paging job).
    await bot.services.paging.check_deadlines(send_at.astimezone(UTC) - timedelta(seconds=1))
    assert enqueued(pagerduty) == []
    clock.fixed = send_at.astimezone(UTC)
    await bot.services.paging.check_deadlines(clock.fixed)
    (trigger,) = enqueued(pagerduty)
    assert trigger["dedup_key"] == "INC-1:checkout"


async def test_raising_a_waiting_p1_to_p0_pages_now_and_lowering_it_cancels(
    bot: RunningBot, pagerduty: FakePagerDuty, clock: Clock
) -> None:
    clock.fixed = datetime(2025, 6, 14, 3, 0, tzinfo=BERLIN).astimezone(UTC)  # Saturday 03:00
    incident = await declared(bot, "P1 checkout slow")
    channel = incident.channel_id or ""
    await command(bot, "severity P2", channel_id=channel)
    (page,) = await pages(bot.services.db)
    assert page.state == "cancelled"
    assert "the scheduled page INC-1:checkout is cancelled" in replies(bot)[-1]
    await command(bot, "severity P0", channel_id=channel)
    (page,) = await pages(bot.services.db)
    assert page.state == "triggered"
    (trigger,) = enqueued(pagerduty)
    assert trigger["dedup_key"] == "INC-1:checkout"
    assert "the on-call of checkout is paged now (INC-1:checkout)" in replies(bot)[-1]


async def test_paging_failures_are_said_in_the_channel(
    bot: RunningBot, pagerduty: FakePagerDuty
) -> None:
    pagerduty.fail_next(10, status=500)
    incident = await declared(bot, "P0 checkout is down")
    channel_text = " ".join(m.text for m in channel_messages(bot, incident.channel_id or ""))
    assert "paging failed" in channel_text.lower()
    (page,) = await pages(bot.services.db)
    assert page.state == "failed"  # the paging job retries it


# ------------------------------------------------------------------ after an automatic rollback


async def test_the_automatic_rollback_message_offers_to_declare_an_incident(
    bot: RunningBot,
) -> None:
    finished = datetime.now(UTC) - timedelta(minutes=3)
    async with bot.services.db.transaction() as session:
        deploy = Deploy(
            service="checkout",
            environment="dev",
            version="v2",
            previous_version="v1",
            strategy="rolling",
            state="rolled_back",
            requested_by="U0BOB",
            details={"auto_rollback": "error-rate"},
            created_at=finished - timedelta(minutes=5),
            finished_at=finished,
        )
        session.add(deploy)
    declare = buttons_for_deploy(deploy)[deploy_messaging.DECLARE_INCIDENT]
    assert declare.label == "Declare incident"
    assert json.loads(declare.value) == {
        "service": "checkout",
        "title": "checkout v2 rolled back automatically in dev (error-rate)",
        "deploy_id": deploy.id,
    }
    # Acknowledging the rollback keeps the offer.
    acknowledged = dict(deploy.details or {}, acknowledged_by="U0BOB")
    assert deploy_messaging.DECLARE_INCIDENT in {
        b.action_id for b in deploy_messaging.buttons_for(deploy, acknowledged)
    }

    await bot.slack.click(messaging.DECLARE, value=declare.value, channel_id="C0DEPLOYS")
    await bot.settle()
    (opened,) = bot.fake.calls_to("views.open")
    blocks = view_blocks(opened.args["view"])
    suggestion = blocks["suggestion"]["elements"][0]["text"]
    assert f"deploy #{deploy.id} of checkout v2 to dev was rolled back 3 min ago" in suggestion
    values = form_values("checkout v2 rolled back automatically", "P2", ["checkout"])
    await bot.slack.submit("incident_declare_modal", values, view_id=opened.response["view"]["id"])
    await bot.settle()
    (incident,) = await incidents(bot.services.db)
    assert incident.deploy_id == deploy.id and incident.detected_at == finished


def buttons_for_deploy(deploy: Deploy) -> dict[str, Any]:
    return {b.action_id: b for b in deploy_messaging.buttons_for(deploy, deploy.details or {})}
