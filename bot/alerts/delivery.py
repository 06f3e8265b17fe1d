"""What Slack (and PagerDuty) should show of the alerts table, made so.

Posts firing alerts not yet shown (one message per service, the rest in its thread), updates
messages whose state changed, pages critical alerts and resolves their pages. Delivery is derived
from the table (`message_ts`, `message_state`), so a failed post or a restart is made good by the
next poll: nothing is dropped, nothing is posted twice.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import or_, select, update

from bot.alerts import messaging
from bot.alerts.plan import Plan
from bot.alerts.states import LIVE, AlertState
from bot.catalog import Catalog
from bot.db.models import Alert, Deploy, utc_now
from bot.db.session import Database
from bot.events import ServiceEvent
from bot.messages import Emoji, Message, MessageRef, Notifier, text

if TYPE_CHECKING:
    from bot.oncall.paging import Paging

log = logging.getLogger(__name__)

SEVERITY_ORDER = {"critical": 0, "warning": 1}


class Delivery:
    """Alert rows → Slack messages, thread notes and pages."""

    def __init__(
        self,
        *,
        db: Database,
        catalog: Catalog,
        notifier: Notifier,
        plan: Plan,
        environment: str,
        paging: Paging | None,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.notifier = notifier
        self.plan = plan
        self.environment = environment
        self.paging = paging

    async def deliver(self, now: datetime | None = None) -> tuple[int, int]:
        """Post alerts not shown yet and update changed ones. (posted, updated)"""
        now = now or utc_now()
        async with self.db.session() as session:
            rows = list(
                await session.scalars(
                    select(Alert)
                    .where(
                        or_(
                            (Alert.message_ts.is_(None))
                            & Alert.state.in_(LIVE)
                            & (or_(Alert.silenced_until.is_(None), Alert.silenced_until <= now)),
                            (Alert.message_ts.is_not(None))
                            & (
                                or_(
                                    Alert.message_state.is_(None),
                                    Alert.message_state != Alert.state,
                                )
                            ),
                        )
                    )
                    .order_by(Alert.id)
                )
            )
            roots = {
                a.service: a
                for a in await session.scalars(
                    select(Alert).where(
                        Alert.state.in_(LIVE),
                        Alert.message_ts.is_not(None),
                        Alert.message_ts == Alert.thread_ts,
                    )
                )
            }
        if not rows:
            return 0, 0
        by_channel: dict[str, list[Alert]] = {}
        for alert in rows:
            by_channel.setdefault(alert.channel or self.catalog.slack.channels.alerts, []).append(
                alert
            )
        counts = await asyncio.gather(
            *(
                self._deliver_channel(channel, alerts, roots, now)
                for channel, alerts in by_channel.items()
            )
        )
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    async def _deliver_channel(
        self, channel: str, alerts: list[Alert], roots: dict[str, Alert], now: datetime
    ) -> tuple[int, int]:
        """Sequentially, because Slack allows about one message a second per channel; the
        client waits out each 429's Retry-After and tries again."""
        posted = updated = 0
        new = sorted(
            (a for a in alerts if a.message_ts is None),
            key=lambda a: (a.service, SEVERITY_ORDER.get(a.severity, 9), a.id),
        )
        for alert in new:
            try:
                await self._post(channel, alert, roots, now)
                posted += 1
            except Exception:
                log.exception("could not post alert #%s; the next poll tries again", alert.id)
        for alert in alerts:
            if alert.message_ts is None or alert in new:
                continue
            try:
                await self.update(alert, now)
                updated += 1
            except Exception:
                log.exception("could not update alert #%s; the next poll tries again", alert.id)
        return posted, updated

    async def _post(
        self, channel: str, alert: Alert, roots: dict[str, Alert], now: datetime
    ) -> None:
        deploy = await self._recent_deploy(alert, now)
        if deploy is not None:
            alert.deploy_id = deploy.id
        root = (
            roots.get(alert.service)
            if alert.details and alert.details.get("kind") == "metric"
            else None
        )
        thread = MessageRef(channel, root.message_ts or "", root.thread_ts) if root else None
        message = self.render(alert, deploy=deploy, now=now)
        ref = await self.notifier.post(channel, message, thread=thread)
        root_ts = thread.thread_ts or thread.ts if thread else ref.ts
        async with self.db.transaction() as session:
            await session.execute(
                update(Alert)
                .where(Alert.id == alert.id, Alert.message_ts.is_(None))
                .values(
                    channel=ref.channel,
                    message_ts=ref.ts,
                    thread_ts=root_ts,
                    message_state=alert.state,
                    deploy_id=alert.deploy_id,
                )
            )
        alert.channel, alert.message_ts, alert.thread_ts = ref.channel, ref.ts, root_ts
        alert.message_state = alert.state
        if root is None:
            roots[alert.service] = alert
            query = self.plan.queries().get(str((alert.details or {}).get("query_key")))
            await self.note(alert, messaging.details_message(alert, query=query))
        if alert.severity == "critical":
            await self.page(alert)

    async def update(self, alert: Alert, now: datetime) -> None:
        """Re-render the alert's message; once it shows resolved, note it and resolve the page."""
        deploy = await self._deploy(alert.deploy_id)
        ref = MessageRef(alert.channel or "", alert.message_ts or "", alert.thread_ts)
        await self.notifier.update(ref, self.render(alert, deploy=deploy, now=now))
        shown_before = alert.message_state
        async with self.db.transaction() as session:
            await session.execute(
                update(Alert).where(Alert.id == alert.id).values(message_state=alert.state)
            )
        if alert.state == AlertState.RESOLVED and shown_before != AlertState.RESOLVED:
            await self.note(alert, messaging.resolved_note(alert))
            if (alert.details or {}).get("paged") and self.paging is not None:
                try:
                    await self.paging.resolve(alert.dedup_key)
                except Exception as err:
                    log.exception("could not resolve the page of alert #%s", alert.id)
                    await self.note(
                        alert, Message(text(Emoji("warning"), f" Resolving the page failed: {err}"))
                    )

    def render(self, alert: Alert, *, deploy: Deploy | None, now: datetime) -> Message:
        if (alert.details or {}).get("kind") == "certificate":
            return messaging.certificate_message(alert, now=now)
        return messaging.alert_message(alert, deploy=deploy, now=now)

    async def note(self, alert: Alert, message: Message) -> None:
        """A reply in the alert's thread (best effort: the alert message itself is what counts)."""
        if not alert.message_ts:
            return
        ref = MessageRef(alert.channel or "", alert.message_ts, alert.thread_ts or alert.message_ts)
        try:
            await self.notifier.post(ref.channel, message, thread=ref)
        except Exception:
            log.exception("could not post a note in the thread of alert #%s", alert.id)

    async def page(self, alert: Alert) -> None:
        """Page the on-call for a critical alert (the page is told in the alert's thread)."""
        if self.paging is None:
            return
        ref = MessageRef(alert.channel or "", alert.message_ts or "", alert.thread_ts)
        summary = f"{alert.service}: {alert.rule} — {(alert.details or {}).get('reason', '')}"
        try:
            await self.paging.page(
                dedup_key=alert.dedup_key,
                summary=summary[:1000],
                severity="critical",
                service=alert.service if (alert.details or {}).get("kind") == "metric" else None,
                subject_kind="alert",
                subject_id=alert.id,
                thread=ref,
            )
        except Exception as err:
            log.exception("paging for alert #%s failed", alert.id)
            await self.note(
                alert,
                Message(
                    text(
                        Emoji("warning"),
                        f" Paging the on-call failed ({type(err).__name__}: {err})."
                        " Please reach them directly.",
                    )
                ),
            )
            return
        details = {**(alert.details or {}), "paged": True}
        alert.details = details
        async with self.db.transaction() as session:
            await session.execute(update(Alert).where(Alert.id == alert.id).values(details=details))

    async def _recent_deploy(self, alert: Alert, now: datetime) -> Deploy | None:
        """The newest deploy of the alert's service in the metrics' environment, within the hour."""
        if (alert.details or {}).get("kind") != "metric":
            return None
        since = (alert.fired_at or now) - messaging.RECENT_DEPLOY
        async with self.db.session() as session:
            return await session.scalar(
                select(Deploy)
                .where(
                    Deploy.service == alert.service,
                    Deploy.environment == self.environment,
                    Deploy.dry_run.is_(False),
                    Deploy.started_at.is_not(None),
                    Deploy.started_at >= since,
                )
                .order_by(Deploy.id.desc())
                .limit(1)
            )

    async def _deploy(self, deploy_id: int | None) -> Deploy | None:
        if deploy_id is None:
            return None
        async with self.db.session() as session:
            return await session.get(Deploy, deploy_id)

    async def load(self, alert_id: int) -> Alert | None:
        async with self.db.session() as session:
            return await session.get(Alert, alert_id)

    async def refresh_message(self, alert_id: int, now: datetime | None = None) -> None:
        """Re-render an alert's message in place (e.g. after an escalation changed it)."""
        alert = await self.load(alert_id)
        if alert is not None and alert.message_ts:
            await self.update(alert, now or utc_now())

    async def on_event(self, event: ServiceEvent) -> None:
        """A page of an alert was escalated: the alert's message says to which level."""
        if event.kind != "page-escalated" or event.data.get("subject_kind") != "alert":
            return
        alert_id, level = event.data.get("subject_id"), event.data.get("level")
        if not isinstance(alert_id, int) or not isinstance(level, int):
            return
        async with self.db.transaction() as session:
            await session.execute(
                update(Alert)
                .where(Alert.id == alert_id, Alert.escalation_level < level)
                .values(escalation_level=level)
            )
        await self.refresh_message(alert_id)
