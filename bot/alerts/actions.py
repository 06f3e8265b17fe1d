"""What people do from an alert's message: acknowledge it (anyone) or silence it (owners)."""

from __future__ import annotations

import logging

from sqlalchemy import update

from bot.alerts import messaging
from bot.alerts.delivery import Delivery
from bot.alerts.states import ALERT_MACHINE, AlertEvent, AlertState, guard
from bot.catalog import Catalog
from bot.db.models import Alert, utc_now
from bot.db.session import Database
from bot.directory import Directory
from bot.events import EventBus, ServiceEvent
from bot.messages import Emoji, Mention, Message, Result, join, refused, text

log = logging.getLogger(__name__)


class AlertActions:
    """The Acknowledge and Silence buttons; each a guarded UPDATE, then the message and thread."""

    def __init__(
        self,
        *,
        db: Database,
        catalog: Catalog,
        events: EventBus,
        directory: Directory | None,
        delivery: Delivery,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.events = events
        self.directory = directory
        self.delivery = delivery

    async def acknowledge(self, *, alert_id: int, user: str) -> Result:
        """Anyone may acknowledge: it says "I am on it" and stops the page's escalation."""
        now = utc_now()
        async with self.db.transaction() as session:
            result = await session.execute(
                update(Alert)
                .where(Alert.id == alert_id, Alert.state.in_(guard(AlertEvent.ACKNOWLEDGE)))
                .values(
                    state=ALERT_MACHINE.target(AlertEvent.ACKNOWLEDGE),
                    acknowledged_by=user,
                    acknowledged_at=now,
                )
            )
        alert = await self.delivery.load(alert_id)
        if alert is None:
            return refused(f"there is no alert #{alert_id}.")
        if result.rowcount != 1:  # type: ignore[attr-defined]
            if alert.state == AlertState.ACKNOWLEDGED:
                return refused(
                    text(
                        f"alert #{alert_id} was already acknowledged by ",
                        Mention(str(alert.acknowledged_by)),
                        f" at {messaging.clock(alert.acknowledged_at)}.",
                    )
                )
            return refused(f"alert #{alert_id} is {alert.state}; there is nothing to acknowledge.")
        await self.delivery.update(alert, now)
        await self.delivery.note(
            alert, Message(text(Emoji("eyes"), " Acknowledged by ", Mention(user), "."))
        )
        paging = self.delivery.paging
        if (alert.details or {}).get("paged") and paging is not None:
            try:
                await paging.acknowledge(alert.dedup_key, by=user)
            except Exception as err:
                log.exception("could not acknowledge the page of alert #%s", alert_id)
                await self.delivery.note(
                    alert,
                    Message(text(Emoji("warning"), f" Acknowledging the page failed: {err}")),
                )
        await self.events.publish(
            ServiceEvent(
                kind="alert-acknowledged",
                text=f"Alert {alert.rule} for {alert.service} acknowledged by <@{user}>",
                at=now,
                service=alert.service,
                actor=user,
                key=f"alert:{alert_id}:{AlertState.ACKNOWLEDGED}",
                data={"alert_id": alert_id, "rule": alert.rule},
            )
        )
        return Result(True, Message(f"You acknowledged alert #{alert_id} ({alert.rule})."))

    async def silence(self, *, alert_id: int, user: str) -> Result:
        """Silence an alert's (service, rule) for an hour: owners of the service only."""
        now = utc_now()
        alert = await self.delivery.load(alert_id)
        if alert is None:
            return refused(f"there is no alert #{alert_id}.")
        service = self.catalog.service(alert.service)
        owners = list(service.owners) if service else []
        if owners and user not in owners:
            groups = await self.directory.groups_of(user, owners) if self.directory else set()
            if not groups:
                return refused(
                    text(
                        f"only the owners of {alert.service} (",
                        join(", ", map(Mention, owners)),
                        ") may silence its alerts; anyone may acknowledge.",
                    )
                )
        until = now + messaging.SILENCE_FOR
        details = {**(alert.details or {}), "silenced_by": user}
        async with self.db.transaction() as session:
            result = await session.execute(
                update(Alert)
                .where(Alert.id == alert_id, Alert.state.in_(guard(AlertEvent.SILENCE)))
                .values(silenced_until=until, details=details)
            )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return refused(f"alert #{alert_id} is {alert.state}; there is nothing to silence.")
        alert.silenced_until, alert.details = until, details
        await self.delivery.update(alert, now)
        await self.delivery.note(
            alert,
            Message(
                text(
                    Emoji("mute"),
                    " Silenced by ",
                    Mention(user),
                    f" until {messaging.clock(until)}: {alert.rule} on"
                    f" {alert.service} posts and pages nothing new until then.",
                )
            ),
        )
        return Result(
            True,
            Message(f"{alert.rule} on {alert.service} is silenced until {messaging.clock(until)}."),
        )
