"""Shared fixtures: the fake Slack, a running bot over real HTTP, and the catalog tests use."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.app import build_bolt_app, build_services
from bot.catalog import Catalog, load_catalog
from bot.db.session import Database
from bot.services import Services
from bot.settings import Settings
from bot.web import build_runner, build_web_app
from handlers.common import Routes
from tests.fakes.kubernetes import FakeKubernetes, running_fake_kubernetes
from tests.fakes.pagerduty import FakePagerDuty, running_fake_pagerduty
from tests.fakes.slack import FakeSlack, running_fake_slack
from tests.fakes.slack_client import SlackRequests

pytest_plugins = ["tests.dbfixtures"]

ROOT = Path(__file__).resolve().parent.parent
TEST_CATALOG = ROOT / "tests" / "data" / "opsbot.yml"
SIGNING_SECRET = "test-signing-secret-0123456789"
BOT_TOKEN = "xoxb-test-bot-token-0123456789"
OLD_CHECKOUT = "registry.example/checkout:v1"


@pytest.fixture
def catalog() -> Catalog:
    return load_catalog(TEST_CATALOG, {})


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[FakeKubernetes]:
    async with running_fake_kubernetes(tick=0.02) as fake:
        fake.add_deployment("shop-dev", "checkout", OLD_CHECKOUT, replicas=2)
        fake.add_deployment("shop-staging", "checkout", OLD_CHECKOUT, replicas=2)
        fake.add_deployment(
            "shop",
            "checkout-blue",
            OLD_CHECKOUT,
            replicas=2,
            labels={"app": "checkout", "colour": "blue"},
        )
        fake.add_service("shop", "checkout", {"app": "checkout", "colour": "blue"})
        yield fake


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    async with running_fake_slack() as fake:
        yield fake


@pytest.fixture
async def pagerduty() -> AsyncIterator[FakePagerDuty]:
    """A fake PagerDuty over HTTPS; `pagerduty.settings_changes()` points the bot at it."""
    async with running_fake_pagerduty() as fake:
        yield fake


@dataclasses.dataclass
class RunningBot:
    base_url: str
    services: Services
    slack: SlackRequests
    fake: FakeSlack
    # The app's command forms -> their work: a test may put a stand-in for a feature there.
    routes: Routes

    async def settle(self) -> None:
        """Wait until work started by earlier requests has finished."""
        await self.services.tracker.idle(within=10)


def bot_settings(fake: FakeSlack, database: Database, **changes: object) -> Settings:
    settings = Settings(
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=fake.api_url,
        database_url=database.url,
        config_path=TEST_CATALOG,
    )
    return dataclasses.replace(settings, **changes)


@contextlib.asynccontextmanager
async def start_bot(
    fake: FakeSlack,
    database: Database,
    catalog: Catalog,
    *,
    environ: dict[str, str] | None = None,
    config_path: Path = TEST_CATALOG,
    prepare: Callable[[Services], object] | None = None,
    **settings_changes: Any,
) -> AsyncIterator[RunningBot]:
    """opsbot's HTTP app on a free port, as `opsbot run` builds it, against the fake Slack.

    `settings_changes` replace fields of the Settings (e.g. pagerduty_api_url=...); `prepare`
    adjusts the services (a test clock, shorter client back-offs) before the first request.
    """
    settings = bot_settings(
        fake, database, environ=environ or {}, config_path=config_path, **settings_changes
    )
    services = build_services(settings, catalog, database)
    services.deploys.update_interval = 0.05  # coalesce message updates, but keep tests quick
    if prepare is not None:
        prepare(services)
    routes: Routes = {}
    runner = build_runner(build_web_app(services, build_bolt_app(services, routes)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base_url = f"http://127.0.0.1:{port}"
    try:
        yield RunningBot(
            base_url, services, SlackRequests(base_url, SIGNING_SECRET, fake=fake), fake, routes
        )
        await services.tracker.idle(within=10)
        await services.deploys.stop_all()
    finally:
        await services.close()
        await runner.cleanup()


@pytest.fixture
async def bot(
    fake_slack: FakeSlack, database: Database, catalog: Catalog
) -> AsyncIterator[RunningBot]:
    async with start_bot(fake_slack, database, catalog) as running:
        yield running
