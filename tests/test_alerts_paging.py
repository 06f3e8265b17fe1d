"""Critical alerts page the on-call through PagerDuty (the fake, over HTTPS); the page follows."""

from __future__ import annotations

from pathlib import Path

from bot.alerts import messaging
from bot.db.models import utc_now
from bot.db.session import Database
from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.prometheus_api import Timeline, running_prometheus_api
from tests.fakes.slack import FakeSlack
from tests.helpers.alerts import ERRORS, STEP, alerts
from tests.helpers.messages import text_of
from tests.helpers.oncall import PAGERDUTY_CATALOG, add_people, start_pagerduty_bot


def critical_alert_catalog(tmp_path: Path, prometheus_url: str) -> Path:
    """The on-call test catalog with one critical rule: error rate > 5 % for 30 s."""
    path = tmp_path / "opsbot.yml"
    path.write_text(
        PAGERDUTY_CATALOG.read_text()
        + f"metrics:\n  url: '{prometheus_url}'\n  poll_interval: 15s\n"
        + f"  queries: {{error_rate: '{ERRORS}'}}\n"
        + "alerts:\n"
        + "  - {name: error-rate-critical, metric: error_rate, op: '>', threshold: 0.05,"
        + " for: 30s, severity: critical}\n"
    )
    return path


def events(pagerduty: FakePagerDuty) -> list[dict[str, object]]:
    return [r.json for r in pagerduty.requests if r.path == "/v2/enqueue"]


async def test_a_critical_alert_pages_and_its_page_follows_the_alert(
    fake_slack: FakeSlack, sqlite_database: Database, pagerduty: FakePagerDuty, tmp_path: Path
) -> None:
    add_people(fake_slack)
    async with running_prometheus_api() as api:
        path = critical_alert_catalog(tmp_path, api.url)
        errors = Timeline()
        start = utc_now()
        errors.set("checkout", 0.2, since=0)
        errors.set("checkout", 0.001, since=(start + 4 * STEP).timestamp() - 1)
        api.answer(ERRORS, ["checkout", "payments"], errors)
        async with start_pagerduty_bot(fake_slack, sqlite_database, pagerduty, path) as bot:
            alerting = bot.services.alerts
            try:
                for n in range(3):
                    await alerting.poll(now=start + n * STEP)
                (message,) = [
                    m
                    for m in fake_slack.messages
                    if m.channel == "C0CHECKOUT" and not m.thread_ts and "alert #" in text_of(m)
                ]
                [alert] = await alerts(sqlite_database)
                await pagerduty.wait_for(
                    lambda r: r.path == "/v2/enqueue" and r.json["event_action"] == "trigger"
                )
                await bot.slack.click(
                    messaging.ACKNOWLEDGE,
                    channel_id=message.channel,
                    message_ts=message.ts,
                    user_id="U0BOB",
                )
                await bot.settle()
                for n in range(3, 7):
                    await alerting.poll(now=start + n * STEP)
            finally:
                await alerting.close()
    trigger = next(e for e in events(pagerduty) if e.get("event_action") == "trigger")
    assert trigger["dedup_key"] == alert.dedup_key
    assert trigger["routing_key"] == "R0CHECKOUT"
    assert "checkout: error-rate-critical" in str(trigger["payload"])
    actions = [
        e.get("event_action") for e in events(pagerduty) if e["dedup_key"] == alert.dedup_key
    ]
    assert actions == ["trigger", "acknowledge", "resolve"]
    [resolved] = await alerts(sqlite_database)
    assert (resolved.state, resolved.acknowledged_by) == ("resolved", "U0BOB")


async def test_an_alert_whose_page_is_not_acknowledged_says_it_was_escalated(
    fake_slack: FakeSlack, sqlite_database: Database, pagerduty: FakePagerDuty, tmp_path: Path
) -> None:
    add_people(fake_slack)
    async with running_prometheus_api() as api:
        path = critical_alert_catalog(tmp_path, api.url)
        errors = Timeline()
        start = utc_now()
        errors.set("checkout", 0.2, since=0)
        api.answer(ERRORS, ["checkout", "payments"], errors)
        async with start_pagerduty_bot(fake_slack, sqlite_database, pagerduty, path) as bot:
            alerting = bot.services.alerts
            try:
                for n in range(3):
                    await alerting.poll(now=start + n * STEP)
                [alert] = await alerts(sqlite_database)
                await pagerduty.wait_for(
                    lambda r: r.path == "/v2/enqueue" and r.json["event_action"] == "trigger"
                )
                ack_within = bot.services.catalog.oncall.ack_within
                await bot.services.paging.check_deadlines(now=utc_now() + ack_within * 1.1)
                message = await fake_slack.wait_for_message(
                    lambda m: m.ts == alert.message_ts and "escalated to level 2" in text_of(m)
                )
            finally:
                await alerting.close()
    assert "error-rate-critical" in text_of(message)
    [escalated] = await alerts(sqlite_database)
    assert escalated.escalation_level == 2
