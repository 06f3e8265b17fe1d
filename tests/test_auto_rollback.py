"""The runbook's rollback triggers against a real Prometheus scraping an exporter we control."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.catalog import load_catalog
from bot.db.session import Database
from bot.deploys import messaging
from tests.conftest import OLD_CHECKOUT, TEST_CATALOG, RunningBot, start_bot
from tests.fakes.kubernetes import FakeKubernetes
from tests.fakes.prometheus import Exporter, running_exporter, running_prometheus
from tests.fakes.slack import FakeSlack
from tests.helpers.deploys import deploy_messages, deploys, finish
from tests.helpers.messages import buttons, replies, text_of

ERROR_RATE = (
    'sum(rate(http_requests_total{service="checkout",code=~"5.."}[4s]))'
    ' / sum(rate(http_requests_total{service="checkout"}[4s]))'
)


def watched_catalog(tmp_path: Path, prometheus_url: str, *, monitor: str, query: str) -> Path:
    """The test catalog with a monitoring window in dev and metrics from our Prometheus."""
    text = TEST_CATALOG.read_text().replace(
        "  - {name: dev}", f"  - {{name: dev, monitor: {monitor}}}"
    )
    text = text.replace(
        "    owners: [U0ALICE]\n",
        f"    owners: [U0ALICE]\n    metrics: {{error_rate: '{query}'}}\n",
        1,
    )
    text += (
        f"metrics: {{source: prometheus, url: '{prometheus_url}', poll_interval: 1s}}\n"
        "rollback_triggers:\n"
        "  - {name: error-rate, metric: error_rate, op: '>', threshold: 0.05, for: 3s}\n"
    )
    path = tmp_path / "opsbot.yml"
    path.write_text(text)
    return path


@pytest.fixture
async def exporter() -> AsyncIterator[Exporter]:
    async with running_exporter() as running:
        running.set_traffic("checkout", rate=50, error_ratio=0.0)
        yield running


@pytest.fixture
async def prometheus_url(exporter: Exporter) -> AsyncIterator[str]:
    async with running_prometheus([exporter.target], scrape_interval="1s") as prometheus:
        yield prometheus.url


async def watched_bot(
    fake_slack: FakeSlack,
    database: Database,
    kube: FakeKubernetes,
    tmp_path: Path,
    catalog_path: Path,
) -> AsyncIterator[RunningBot]:
    environ = {"KUBECONFIG": str(kube.kubeconfig(tmp_path / "kubeconfig"))}
    catalog = load_catalog(catalog_path, {})
    async with start_bot(
        fake_slack, database, catalog, environ=environ, config_path=catalog_path
    ) as running:
        yield running


async def test_an_error_rate_breach_rolls_back_explains_and_locks(
    fake_slack: FakeSlack,
    postgres_database: Database,
    kube: FakeKubernetes,
    tmp_path: Path,
    exporter: Exporter,
    prometheus_url: str,
) -> None:
    path = watched_catalog(tmp_path, prometheus_url, monitor="60s", query=ERROR_RATE)
    async for bot in watched_bot(fake_slack, postgres_database, kube, tmp_path, path):
        await bot.slack.command("/deploy", "checkout dev v2")
        await bot.settle()
        await fake_slack.wait_for_message(lambda m: "▶ monitor" in text_of(m), timeout=30)
        exporter.set_traffic("checkout", error_ratio=0.5)  # the new version fails half its calls
        await finish(bot)

        (deploy,) = await deploys(postgres_database)
        assert deploy.state == "rolled_back", deploy.reason
        reason = deploy.reason or ""
        assert "Failed at step monitor because error_rate > 0.05 for 3s: held for" in reason
        assert "Values every 1s:" in reason and "v1 is back" in reason
        assert kube.image("shop-dev", "checkout") == OLD_CHECKOUT

        # Locked until someone acknowledges: nobody redeploys the bad version by accident.
        await bot.slack.command("/deploy", "checkout dev v2")
        await finish(bot)
        assert "automatic rollback of deploy #1" in replies(bot)[-1]
        acknowledge = buttons(deploy_messages(bot)[-1])[messaging.ACKNOWLEDGE]
        await bot.slack.click(messaging.ACKNOWLEDGE, value=acknowledge["value"])
        await finish(bot)
        assert "is unlocked by <@U0ALICE>" in text_of(bot.fake.messages[-1]) or any(
            "is unlocked by <@U0ALICE>" in t for t in replies(bot)
        )


async def test_no_data_is_not_health_a_person_decides(
    fake_slack: FakeSlack,
    sqlite_database: Database,
    kube: FakeKubernetes,
    tmp_path: Path,
    prometheus_url: str,
) -> None:
    silent = 'sum(rate(http_requests_total{service="nothing-here"}[4s]))'
    path = watched_catalog(tmp_path, prometheus_url, monitor="2s", query=silent)
    async for bot in watched_bot(fake_slack, sqlite_database, kube, tmp_path, path):
        await bot.slack.command("/deploy", "checkout dev v2")
        await bot.settle()
        try:
            message = await fake_slack.wait_for_message(
                lambda m: messaging.PROMOTE in text_of(m) and "Roll back" in text_of(m), timeout=20
            )
        except TimeoutError:
            raise AssertionError(
                [(m.text, text_of(m)[-400:]) for m in fake_slack.messages]
            ) from None
        assert any("inconclusive" in (m.text or "") for m in fake_slack.messages if m.thread_ts)
        promote = buttons(message)[messaging.PROMOTE]
        await bot.slack.click(messaging.PROMOTE, value=promote["value"], user_id="U0BOB")
        await finish(bot)
        (deploy,) = await deploys(sqlite_database)
        assert deploy.state == "succeeded"
        assert "accepted by <@U0BOB> although inconclusive" in text_of(deploy_messages(bot)[-1])
