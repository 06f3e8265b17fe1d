"""Composition root: builds the Slack client, the Bolt app and the services handlers use."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts.service import Alerting
from bot.catalog import Catalog
from bot.db.session import Database
from bot.deploys.playbook import load_playbooks
from bot.deploys.rollback import Rollbacks
from bot.deploys.service import DeployDeps, Deploys
from bot.events import EventBus
from bot.incidents.postmortem import PostmortemDeps, Postmortems
from bot.incidents.service import IncidentDeps, IncidentService
from bot.metrics_registry import BotMetrics
from bot.oncall.pagerduty import PagerDutyApi
from bot.oncall.paging import Paging
from bot.oncall.schedule import OncallDirectory
from bot.plugins import Plugins
from bot.replicas import ReplicaRegistry
from bot.settings import Settings
from bot.slack.files import SlackChannelMembers, SlackFileUploader
from bot.slack.notifier import SlackDirectory, SlackNotifier
from bot.slack.people import SlackPeople
from bot.slack.workspace import SlackWorkspace

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


class AckGate:
    """Lets acks go first: work after an ack waits (briefly) while acks keep arriving.

    Slack gives an ack 3 seconds and work none. Each ack runs start to finish without waiting on
    I/O, so "an ack is in flight" is almost never true even in a burst; what tells a burst is
    that the last ack began moments ago. Work starts once no ack has begun for `quiet_period`,
    or after `max_wait` at the latest, so a burst is acknowledged before its database writes.
    """

    def __init__(self, quiet_period: float = 0.02, max_wait: float = 1.0) -> None:
        self.quiet_period = quiet_period
        self.max_wait = max_wait
        self._in_flight = 0
        self._last_ack = 0.0

    def enter(self) -> None:
        self._in_flight += 1
        self._last_ack = time.monotonic()

    def leave(self) -> None:
        self._in_flight = max(0, self._in_flight - 1)

    async def quiet(self) -> None:
        """Return when acks have paused for `quiet_period`, or after `max_wait` at most."""
        deadline = time.monotonic() + self.max_wait
        while True:
            now = time.monotonic()
            calm_for = now - self._last_ack
            if (self._in_flight == 0 and calm_for >= self.quiet_period) or now >= deadline:
                return
            # A deliberate, bounded back-off: re-check when the quiet period could have passed.
            await asyncio.sleep(min(max(self.quiet_period - calm_for, 0.005), deadline - now))


@dataclass
class Services:
    """Everything a handler may use; built once per process by `build_services`."""

    settings: Settings
    catalog: Catalog
    db: Database
    client: AsyncWebClient
    deploys: Deploys = field(init=False)
    rollbacks: Rollbacks = field(init=False)
    # Issue 5 and 6 services; each is built in build_services below, in its own marked block.
    oncall: OncallDirectory = field(init=False)
    paging: Paging = field(init=False)
    alerts: Alerting = field(init=False)
    incidents: IncidentService = field(init=False)
    postmortems: Postmortems = field(init=False)
    replicas: ReplicaRegistry = field(init=False)
    metrics: BotMetrics = field(default_factory=BotMetrics)
    plugins: Plugins = field(default_factory=Plugins)
    events: EventBus = field(default_factory=EventBus)
    tracker: WorkTracker = field(default_factory=WorkTracker)
    gate: AckGate = field(default_factory=AckGate)
    worker_count: int = 64
    _queue: asyncio.Queue[Callable[[], Awaitable[None]]] = field(default_factory=asyncio.Queue)
    _workers: list[asyncio.Task[None]] = field(default_factory=list)

    def after_ack(self, work: Callable[[], Awaitable[None]]) -> None:
        """Queue `work` to run once the ack is out, acks of other requests going first.

        Bolt's lazy listeners do the same but deep-copy every request to do it, which cost more
        CPU than the whole ack in bench/ack_latency.py. A small pool of workers takes the queue,
        each starting an item only when no ack is in flight (or after the gate's max wait), so a
        burst of requests is acknowledged before its database writes run. Work here should be
        quick (parse, check, record, reply); a long process such as a deploy is started from here
        and runs in its own task.
        """
        self.tracker.started()
        if not self._workers:
            self._workers = [
                asyncio.ensure_future(self._work_loop()) for _ in range(self.worker_count)
            ]
        self._queue.put_nowait(work)

    async def _work_loop(self) -> None:
        while True:
            work = await self._queue.get()
            try:
                await self.gate.quiet()
                await work()
            except Exception:
                log.exception("work after an ack failed")
            finally:
                self.tracker.finished()

    async def close(self) -> None:
        """Stop the workers (after `tracker.idle()` when the queued work should finish)."""
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        await self.plugins.close()
        await self.alerts.close()
        self.paging.close()
        if self.client.session is not None and not self.client.session.closed:
            await self.client.session.close()


def build_client(settings: Settings, token: str | None = None) -> AsyncWebClient:
    """The Web API client: `SLACK_API_URL`, and retries that honour HTTP 429 Retry-After."""
    # One HTTP session for every Web API call: without it slack_sdk opens a new connection (and
    # TLS handshake) per call, which dominated the bot's CPU per deploy in bench/deploy_overhead.
    client = AsyncWebClient(
        token=token or settings.slack_bot_token,
        base_url=settings.slack_api_url,
        timeout=10,
        session=aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)),
    )
    client.retry_handlers.extend(
        [
            AsyncRateLimitErrorRetryHandler(max_retry_count=5),
            AsyncServerErrorRetryHandler(max_retry_count=2),
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
        ]
    )
    return client


def playbooks_dir(settings: Settings) -> Path:
    """OPSBOT_PLAYBOOKS, else ./playbooks, else the playbooks shipped beside the package."""
    configured = settings.environ.get("OPSBOT_PLAYBOOKS")
    if configured:
        return Path(configured)
    local = Path("playbooks")
    if local.is_dir():
        return local
    return Path(__file__).resolve().parent.parent / "playbooks"


def build_services(
    settings: Settings, catalog: Catalog, db: Database, client: AsyncWebClient | None = None
) -> Services:
    services = Services(
        settings=settings, catalog=catalog, db=db, client=client or build_client(settings)
    )
    services.deploys = Deploys(
        DeployDeps(
            db=db,
            catalog=catalog,
            notifier=SlackNotifier(services.client),
            directory=SlackDirectory(services.client),
            playbooks=load_playbooks(playbooks_dir(settings)),
            env=settings.environ or dict(os.environ),
            # `run` steps and smoke tests run where the catalog lives (its scripts/ folder).
            workdir=settings.config_path.resolve().parent,
            target_factory=services.plugins.make_target,
        )
    )
    services.rollbacks = Rollbacks(services.deploys)
    services.replicas = ReplicaRegistry(db, running=lambda: list(services.deploys.running))
    # --- oncall and paging (issue 5) ---

    # One PagerDuty client set, shared; `services.paging.close()` closes it.
    services.oncall = OncallDirectory(
        catalog=catalog, pagerduty=PagerDutyApi(settings), people=SlackPeople(services.client)
    )
    services.paging = Paging(
        db=db,
        catalog=catalog,
        settings=settings,
        notifier=SlackNotifier(services.client),
        events=services.events,
        oncall=services.oncall,
    )
    # --- alerts (issue 5) ---

    services.alerts = Alerting(
        db=db,
        catalog=catalog,
        notifier=SlackNotifier(services.client),
        events=services.events,
        directory=services.deploys.deps.directory,
        env=settings.environ or dict(os.environ),
        paging=services.paging,
    )
    # --- incidents (issue 6) ---

    # Deploys and rollbacks tell the incident timelines when they finish.
    services.deploys.deps.events = services.events
    services.incidents = IncidentService(
        IncidentDeps(
            db=db,
            catalog=catalog,
            notifier=SlackNotifier(services.client),
            workspace=SlackWorkspace(services.client),
            events=services.events,
            paging=services.paging,
            oncall=services.oncall,
        )
    )
    # --- postmortems (issue 6) ---

    services.postmortems = Postmortems(
        PostmortemDeps(
            db=db,
            catalog=catalog,
            notifier=SlackNotifier(services.client),
            uploader=SlackFileUploader(services.client),
            members=SlackChannelMembers(services.client),
            # A team's playbooks folder may hold its own postmortem.md.j2.
            template_dirs=(playbooks_dir(settings),),
            base_dir=settings.config_path.resolve().parent,
        )
    )
    return services


class _DropTokenNotice(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN itself and then warns that our client's token wins: it does."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


def build_bolt_app(services: Services) -> AsyncApp:
    """The one Bolt app: Slack over HTTP, Socket Mode and the console all dispatch into it."""
    from handlers import register_all

    bolt_logger = logging.getLogger("slack_bolt")
    if not any(isinstance(f, _DropTokenNotice) for f in bolt_logger.filters):
        bolt_logger.addFilter(_DropTokenNotice())
    app = AsyncApp(
        client=services.client,
        signing_secret=services.settings.slack_signing_secret or "",
        # bot.web verifies every HTTP request before it reaches Bolt (on the raw bytes, so a
        # signed body that is not UTF-8 gets 400, not 500); Socket Mode has no signed request.
        request_verification_enabled=False,
        logger=bolt_logger,
    )
    register_all(app, services)
    return app
