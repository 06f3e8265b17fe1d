"""The alerting loop against a real Prometheus scraping an exporter whose error rate we set."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.catalog import load_catalog
from bot.db.models import Alert
from bot.db.session import Database
from tests.conftest import TEST_CATALOG, start_bot
from tests.fakes.prometheus import Exporter, running_exporter, running_prometheus
from tests.fakes.slack import FakeSlack
from tests.helpers.messages import text_of

ERROR_RATE = (
    'sum by (service) (rate(http_requests_total{code="500"}[4s]))'
    " / sum by (service) (rate(http_requests_total[4s]))"
)


@pytest.fixture
async def exporter() -> AsyncIterator[Exporter]:
    async with running_exporter() as running:
        running.set_traffic("checkout", rate=50, error_ratio=0.0)
        running.set_traffic("payments", rate=50, error_ratio=0.0)
        yield running


@pytest.fixture
async def prometheus_url(exporter: Exporter) -> AsyncIterator[str]:
    async with running_prometheus([exporter.target], scrape_interval="1s") as prometheus:
        yield prometheus.url


async def test_pending_firing_resolved_against_a_real_prometheus(
    fake_slack: FakeSlack,
    postgres_database: Database,
    exporter: Exporter,
    prometheus_url: str,
    tmp_path: Path,
) -> None:
    path = tmp_path / "opsbot.yml"
    path.write_text(
        TEST_CATALOG.read_text()
        + f"metrics:\n  url: '{prometheus_url}'\n  poll_interval: 1s\n"
        + f"  queries: {{error_rate: '{ERROR_RATE}'}}\n"
        + "alerts:\n"
        + "  - {name: error-rate-critical, metric: error_rate, op: '>', threshold: 0.05,"
        + " for: 3s, severity: critical}\n"
    )
    catalog = load_catalog(path, {})
    async with start_bot(fake_slack, postgres_database, catalog, config_path=path) as bot:
        alerting = bot.services.alerts
        alerting.paging = None
        seen: list[str] = []
        reports = []

        async def poll_until(wanted: str, within: float) -> None:
            # The scheduler's rhythm: one poll per poll_interval (1 s) until the state shows.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + within
            while loop.time() < deadline:
                reports.append(await alerting.poll())
                async with postgres_database.session() as session:
                    rows = list(await session.scalars(select(Alert).order_by(Alert.id)))
                state = rows[-1].state if rows else "inactive"
                if not seen or seen[-1] != state:
                    seen.append(state)
                if state == wanted:
                    return
                await asyncio.sleep(1.0)
            raise AssertionError(f"no {wanted} within {within}s; states {seen}")

        try:
            await poll_until("inactive", 5)
            exporter.set_traffic("checkout", error_ratio=0.5)
            await poll_until("firing", 20)
            (message,) = [
                m for m in fake_slack.messages if not m.thread_ts and "alert #" in text_of(m)
            ]
            assert "checkout: error-rate-critical* — firing (critical)" in text_of(message)
            assert "error_rate > 0.05 for 3s: held for" in text_of(message)
            exporter.set_traffic("checkout", error_ratio=0.0)
            await poll_until("resolved", 20)
        finally:
            await alerting.close()
    assert seen == ["inactive", "pending", "firing", "resolved"]
    assert all(report.queries == 1 for report in reports)  # two services, one query
    fired = [t for r in reports for t in r.transitions if t.current == "firing"]
    assert len(fired) == 1  # no flapping
    posts = [c for c in fake_slack.calls_to("chat.postMessage") if not c.args.get("thread_ts")]
    assert len(posts) == 1
    assert "— resolved (critical)" in text_of(message)
    assert message.updated
