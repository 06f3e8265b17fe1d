"""The services container: everything a listener, the scheduler and the web edge may use."""

from __future__ import annotations

from dataclasses import dataclass, field

from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts.service import Alerting
from bot.catalog import Catalog
from bot.db.session import Database
from bot.deploys.rollback import Rollbacks
from bot.deploys.service import Deploys
from bot.events import EventBus
from bot.incidents.postmortem import Postmortems
from bot.incidents.service import IncidentService
from bot.metrics_registry import BotMetrics
from bot.oncall.paging import Paging
from bot.oncall.schedule import OncallDirectory
from bot.plugins import Plugins
from bot.replicas import ReplicaRegistry
from bot.runtime import WorkQueue, WorkTracker
from bot.settings import Settings


@dataclass
class Services:
    """Built once per process by `bot.app.build_services`."""

    settings: Settings
    catalog: Catalog
    db: Database
    client: AsyncWebClient
    deploys: Deploys = field(init=False)
    rollbacks: Rollbacks = field(init=False)
    # Issue 5 and 6 services; each is built in build_services, in its own marked block.
    oncall: OncallDirectory = field(init=False)
    paging: Paging = field(init=False)
    alerts: Alerting = field(init=False)
    incidents: IncidentService = field(init=False)
    postmortems: Postmortems = field(init=False)
    replicas: ReplicaRegistry = field(init=False)
    metrics: BotMetrics = field(default_factory=BotMetrics)
    events: EventBus = field(default_factory=EventBus)
    # Target kinds and metric sources, and the clients they share (closed with the services).
    plugins: Plugins = field(default_factory=Plugins)
    # Work after the acks (bot.runtime): the listeners queue it, shutdown and the console wait.
    work: WorkQueue = field(default_factory=WorkQueue)

    @property
    def tracker(self) -> WorkTracker:
        """Work still running after an ack (shutdown and the console wait for it to finish)."""
        return self.work.tracker

    async def close(self) -> None:
        """Stop the workers (after `tracker.idle()` when the queued work should finish)."""
        await self.work.close()
        await self.plugins.close()
        await self.alerts.close()
        self.paging.close()
        if self.client.session is not None and not self.client.session.closed:
            await self.client.session.close()
