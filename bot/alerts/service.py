"""The alerting domain's front: poll the metrics, move each (service, rule) through pending →
firing → resolved, keep that state in the `alerts` table, and tell people in Slack (and PagerDuty).

The work lives in the rooms next door; `Alerting` wires them and is what the app, the handlers
and the scheduler call:
- `bot.alerts.evaluation`: one poll's fetch, verdicts and guarded state moves;
- `bot.alerts.delivery`: posting, updating, thread notes and pages, derived from the table;
- `bot.alerts.actions`: Acknowledge and Silence;
- `bot.alerts.certificates`: TLS certificate expiry;
- `bot.alerts.states`: the states and their one transition table.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.alerts.actions import AlertActions
from bot.alerts.certificates import CertificateChecks
from bot.alerts.delivery import Delivery
from bot.alerts.evaluation import Evaluation, PollReport, Transition
from bot.alerts.plan import Plan
from bot.alerts.window import SampleWindow
from bot.catalog import Catalog
from bot.db.models import Alert, Deploy, utc_now
from bot.db.session import Database
from bot.directory import Directory
from bot.events import EventBus
from bot.messages import Message, Notifier, Result
from bot.metrics.base import MetricSource

if TYPE_CHECKING:
    from bot.oncall.paging import Paging

__all__ = ["Alerting", "PollReport", "Transition"]

log = logging.getLogger(__name__)


class Alerting:
    """Alerts from metric rules and certificate expiry; see the module docstring."""

    def __init__(
        self,
        *,
        db: Database,
        catalog: Catalog,
        notifier: Notifier,
        events: EventBus,
        directory: Directory | None = None,
        source: MetricSource | None = None,
        env: Mapping[str, str] | None = None,
        paging: Paging | None = None,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.notifier = notifier
        self.events = events
        self.directory = directory
        self.env = dict(env or {})
        self.evaluation = Evaluation(
            db=db, catalog=catalog, notifier=notifier, events=events, env=self.env, source=source
        )
        self.environment = catalog.metrics_environment
        self.delivery = Delivery(
            db=db,
            catalog=catalog,
            notifier=notifier,
            plan=self.evaluation.plan,
            environment=self.environment,
            paging=paging,
        )
        self.actions = AlertActions(
            db=db, catalog=catalog, events=events, directory=directory, delivery=self.delivery
        )
        self.certificates = CertificateChecks(
            db=db,
            catalog=catalog,
            notifier=notifier,
            events=events,
            env=self.env,
            delivery=self.delivery,
        )
        self._lock = asyncio.Lock()
        events.subscribe(self.delivery.on_event)

    @property
    def paging(self) -> Paging | None:
        return self.delivery.paging

    @paging.setter
    def paging(self, paging: Paging | None) -> None:
        self.delivery.paging = paging

    @property
    def source(self) -> MetricSource:
        return self.evaluation.source

    @property
    def plan(self) -> Plan:
        return self.evaluation.plan

    @property
    def window(self) -> SampleWindow:
        return self.evaluation.window

    @property
    def interval(self) -> timedelta:
        return self.evaluation.interval

    async def close(self) -> None:
        await self.evaluation.close()

    async def poll(self, now: datetime | None = None) -> PollReport:
        """Scheduler job (every `metrics.poll_interval`): evaluate every rule, act on changes."""
        async with self._lock:  # a slow poll and the next one never overlap in one process
            began = time.perf_counter()
            now = now or utc_now()
            report = PollReport(at=now, rules=len(self.plan.rules))
            await self.evaluation.run(now, report)
            report.posted, report.updated = await self.delivery.deliver(now)
            report.duration = time.perf_counter() - began
            log.info("alert poll: %s", report.summary())
            return report

    async def deliver(self, now: datetime | None = None) -> tuple[int, int]:
        """Post alerts not shown yet and update changed ones. (posted, updated)"""
        return await self.delivery.deliver(now)

    def render(self, alert: Alert, *, deploy: Deploy | None, now: datetime) -> Message:
        return self.delivery.render(alert, deploy=deploy, now=now)

    async def refresh_message(self, alert_id: int, now: datetime | None = None) -> None:
        """Re-render an alert's message in place (e.g. after an escalation changed it)."""
        await self.delivery.refresh_message(alert_id, now)

    async def acknowledge(self, *, alert_id: int, user: str) -> Result:
        """Anyone may acknowledge: it says "I am on it" and stops the page's escalation."""
        return await self.actions.acknowledge(alert_id=alert_id, user=user)

    async def silence(self, *, alert_id: int, user: str) -> Result:
        """Silence an alert's (service, rule) for an hour: owners of the service only."""
        return await self.actions.silence(alert_id=alert_id, user=user)

    async def check_certificates(self, now: datetime | None = None) -> list[str]:
        """Scheduler job (daily): warn `warn_before` (30 days) before expiry, critical at 7 days.

        Returns one line per certificate saying what was found.
        """
        return await self.certificates.check_all(now)
