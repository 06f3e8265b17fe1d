"""Two real `opsbot run` processes against one PostgreSQL database: one scheduler between them.

Both replicas serve Slack; only the elected one polls metrics and checks deadlines. A breach gives
one alert message and one page, a missed acknowledgment one escalation, and killing the leader
(kill -9) hands the scheduler to the survivor within one poll interval or so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.db.session import Database
from tests.conftest import BOT_TOKEN, SIGNING_SECRET
from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.prometheus_api import PrometheusApi, Timeline, running_prometheus_api
from tests.fakes.slack import FakeSlack, Message
from tests.helpers.alerts import ERRORS
from tests.helpers.messages import text_of
from tests.helpers.oncall import ALICE, BOB, PAGERDUTY_CATALOG, add_people
from tests.helpers.processes import free_port, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
ELECTED = "this replica now runs the scheduler"


@dataclass
class Replica:
    name: str
    port: int
    process: asyncio.subprocess.Process
    log: Path

    def leads(self) -> bool:
        return ELECTED in self.log.read_text(errors="replace")


@contextlib.asynccontextmanager
async def replica(name: str, env: dict[str, str], tmp_path: Path) -> AsyncIterator[Replica]:
    port = free_port()
    log = tmp_path / f"{name}.log"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSBOT_"))}
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            env={**clean, **env, "PORT": str(port)},
            cwd=ROOT,
            stdout=output,
            stderr=output,
        )
    try:
        await wait_healthy(port, process)
        yield Replica(name, port, process, log)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()


async def eventually(check: Callable[[], Any], within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        await asyncio.sleep(0.1)  # poll a condition set by other processes
    raise AssertionError(f"not within {within} s: {what}")


async def more_polls(api: PrometheusApi, polls: int) -> None:
    """Wait until the scheduler has polled the metrics `polls` more times (one query each)."""
    target = len(api.requests) + polls
    await eventually(lambda: len(api.requests) >= target, 5 * polls + 5, f"{polls} more polls")


def alert_posts(fake: FakeSlack, service: str) -> list[Message]:
    """Top-level alert messages about `service` (updates in place are the same message)."""
    return [
        m
        for m in fake.messages
        if not m.thread_ts and "alert #" in text_of(m) and f"*{service}: " in text_of(m)
    ]


def catalog(tmp_path: Path, api: PrometheusApi) -> Path:
    path = tmp_path / "opsbot.yml"
    path.write_text(
        PAGERDUTY_CATALOG.read_text()
        + f"metrics:\n  url: '{api.url}'\n  poll_interval: 1s\n"
        + f"  queries: {{error_rate: '{ERRORS}'}}\n"
        + "alerts:\n"
        + "  - {name: error-rate-critical, metric: error_rate, op: '>', threshold: 0.05,"
        + " for: 2s, severity: critical}\n"
    )
    return path


async def test_two_replicas_alert_page_and_escalate_once_and_survive_the_leaders_death(
    fake_slack: FakeSlack,
    postgres_database: Database,
    pagerduty: FakePagerDuty,
    tmp_path: Path,
) -> None:
    add_people(fake_slack)
    pagerduty.set_oncall("PCHECK1", 1, ALICE)
    pagerduty.set_oncall("PCHECK1", 2, BOB)
    pagerduty.add_integration("R0CHECKOUT", "PCHECK1")
    pagerduty.add_integration("R0DEFAULT", "PDEFAULT1")
    errors = Timeline()
    errors.set("checkout", 0.0, since=0)
    errors.set("payments", 0.0, since=0)
    async with running_prometheus_api() as api:
        api.answer(ERRORS, ["checkout", "payments"], errors)
        env = {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": fake_slack.api_url,
            "DATABASE_URL": postgres_database.url,
            "OPSBOT_CONFIG": str(catalog(tmp_path, api)),
            "LOG_LEVEL": "INFO",
            **pagerduty.environ(),
        }
        async with replica("a", env, tmp_path) as a, replica("b", env, tmp_path) as b:
            await eventually(lambda: a.leads() or b.leads(), 10, "a replica takes the lead")
            assert [r.leads() for r in (a, b)].count(True) == 1
            leader, survivor = (a, b) if a.leads() else (b, a)

            # A breach on checkout: one message, one page, then one escalation per deadline.
            errors.set("checkout", 0.5, since=time.time())
            await eventually(lambda: alert_posts(fake_slack, "checkout"), 15, "the alert")
            triggers = await eventually(
                lambda: [
                    r
                    for r in pagerduty.requests_to("POST", "/v2/enqueue")
                    if r.json.get("event_action") == "trigger"
                ],
                10,
                "the page",
            )
            incident = await eventually(
                lambda: pagerduty.incident_for(triggers[0].json["dedup_key"]), 5, "the incident"
            )
            await eventually(
                lambda: [
                    r
                    for r in pagerduty.requests
                    if r.method == "PUT"
                    and (r.json or {}).get("incident", {}).get("escalation_level") == 2
                ],
                15,
                "the escalation to level 2",
            )
            # Four more polls by the leader (each a request at the metrics stand-in); its deadline
            # checks run in between. Nothing more may be posted, paged or escalated.
            await more_polls(api, 4)

            assert len(alert_posts(fake_slack, "checkout")) == 1
            assert len(triggers) == 1
            level_2 = [
                r
                for r in pagerduty.requests
                if r.method == "PUT"
                and (r.json or {}).get("incident", {}).get("escalation_level") == 2
            ]
            assert len(level_2) == 1
            notes = [m for m in fake_slack.messages if "Escalation level 2" in m.text]
            assert len(notes) == 1
            assert incident is not None

            # kill -9 the leader: the survivor takes over and alerts on the next breach.
            os.kill(leader.process.pid, signal.SIGKILL)
            await leader.process.wait()
            killed_at = time.monotonic()
            errors.set("payments", 0.5, since=time.time())
            await eventually(survivor.leads, 10, "the survivor takes the lead")
            took_over = time.monotonic() - killed_at
            await eventually(lambda: alert_posts(fake_slack, "payments"), 15, "payments alert")
            await more_polls(api, 2)
            assert len(alert_posts(fake_slack, "payments")) == 1
            assert len(alert_posts(fake_slack, "checkout")) == 1
    # The survivor campaigns every half poll interval (0.5 s): one interval, plus start-up slack.
    assert took_over < 3, took_over
