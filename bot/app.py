"""Composition root: builds the Slack client, the Bolt app and the services handlers use."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field

from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.catalog import Catalog
from bot.db.session import Database
from bot.metrics_registry import BotMetrics
from bot.settings import Settings

log = logging.getLogger(__name__)


class WorkTracker:
    """Counts work still running after an ack, so the console and shutdown can wait for it."""

    def __init__(self) -> None:
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def started(self) -> None:
        self._running += 1
        self._idle.clear()

    def finished(self) -> None:
        self._running -= 1
        if self._running <= 0:
            self._running = 0
            self._idle.set()

    @property
    def running(self) -> int:
        return self._running

    async def idle(self, within: float | None = None) -> None:
        """Wait until no work is running; TimeoutError after `within` seconds."""
        await asyncio.wait_for(self._idle.wait(), within)


@dataclass
class Services:
    """Everything a handler may use; built once per process by `build_services`."""

    settings: Settings
    catalog: Catalog
    db: Database
    client: AsyncWebClient
    metrics: BotMetrics = field(default_factory=BotMetrics)
    tracker: WorkTracker = field(default_factory=WorkTracker)
    background: set[asyncio.Task[object]] = field(default_factory=set)

    def spawn(self, work: Awaitable[object]) -> None:
        """Run `work` after the ack, keeping a reference so it is not garbage-collected."""
        task: asyncio.Task[object] = asyncio.ensure_future(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)


def build_client(settings: Settings, token: str | None = None) -> AsyncWebClient:
    """The Web API client: `SLACK_API_URL`, and retries that honour HTTP 429 Retry-After."""
    client = AsyncWebClient(
        token=token or settings.slack_bot_token,
        base_url=settings.slack_api_url,
        timeout=10,
    )
    client.retry_handlers.extend(
        [
            AsyncRateLimitErrorRetryHandler(max_retry_count=5),
            AsyncServerErrorRetryHandler(max_retry_count=2),
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
        ]
    )
    return client


def build_services(
    settings: Settings, catalog: Catalog, db: Database, client: AsyncWebClient | None = None
) -> Services:
    return Services(
        settings=settings, catalog=catalog, db=db, client=client or build_client(settings)
    )


def build_bolt_app(services: Services) -> AsyncApp:
    """The one Bolt app: Slack over HTTP, Socket Mode and the console all dispatch into it."""
    from handlers import register_all

    app = AsyncApp(
        client=services.client,
        signing_secret=services.settings.slack_signing_secret or "",
        # Socket Mode has no signed HTTP request; HTTP mode verifies in bot.web and again here.
        request_verification_enabled=not services.settings.socket_mode,
        logger=logging.getLogger("slack_bolt"),
    )
    register_all(app, services)
    return app
