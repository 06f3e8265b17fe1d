"""The timeline from outside: pinned (or 📌-marked) messages of an incident channel, and the
deploys, rollbacks, alerts and pages of an active incident's services (from the event bus)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import select, update

from bot.db.models import Incident, TimelineEvent
from bot.events import ServiceEvent
from bot.incidents import records
from bot.incidents.channel import IncidentChannel
from bot.incidents.deps import IncidentDeps
from bot.incidents.ports import WorkspaceError
from bot.incidents.states import IncidentEvent, sources, target
from bot.messages import Emoji, Mention, Text, from_stored, text, verbatim

log = logging.getLogger(__name__)


def message_time(ts: str) -> datetime:
    """A Slack message ts ("1700000000.000100") as an aware UTC datetime."""
    return datetime.fromtimestamp(float(ts), UTC)


class Timeline:
    def __init__(self, deps: IncidentDeps, channel: IncidentChannel) -> None:
        self.deps = deps
        self.channel = channel

    async def record_message(
        self,
        *,
        channel_id: str,
        ts: str,
        by: str | None,
        how: str,
        text: str | None = None,
        author: str | None = None,
    ) -> bool:
        """A pinned (or 📌-marked) message of an incident channel joins the timeline once."""
        incident = await records.by_channel(self.deps.db, channel_id)
        if incident is None:
            return False
        source_key = f"{channel_id}:{ts}"
        async with self.deps.db.session() as session:
            known = await session.scalar(
                select(TimelineEvent.id).where(
                    TimelineEvent.incident_id == incident.id,
                    TimelineEvent.source_key == source_key,
                )
            )
        if known is not None:
            return False  # pinned and 📌-marked, or a redelivery: once is enough
        if text is None:
            try:
                message = await self.deps.workspace.fetch_message(channel_id, ts)
            except WorkspaceError:
                log.exception("could not read the message %s in %s", ts, channel_id)
                message = None
            if message is None:
                return False
            text, author = message.text, message.user
        # As Slack delivered it: the postmortem turns its mentions into roles.
        quote = text.strip()[:2000] or "(no text)"
        return await records.add_entry_once(
            self.deps.db,
            incident.id,
            "message",
            _said(author, quote),
            at=message_time(ts),
            source_key=source_key,
            actor=author,
            data={"channel": channel_id, "ts": ts, "marked_by": by, "how": how},
        )

    async def on_event(self, event: ServiceEvent) -> None:
        """Deploys, rollbacks, alerts and pages of an active incident's services (or of it)."""
        subject = _subject_of(event)
        for incident in await records.running(self.deps.db):
            mine = subject == incident.id or (
                subject is None
                and event.service is not None
                and event.service in (incident.services or [])
            )
            if not mine:
                continue
            key = event.key or f"{event.kind}:{event.at.isoformat()}:{event.text[:80]}"
            fresh = await records.add_entry_once(
                self.deps.db,
                incident.id,
                event.kind[:32],
                event.text,
                at=event.at,
                source_key=f"event:{key}",
                actor=event.actor,
                data={"service": event.service, **event.data},
            )
            if fresh:
                await self._after_event(incident, event)

    async def _after_event(self, incident: Incident, event: ServiceEvent) -> None:
        if event.kind == "rollback" and incident.mitigated_at is None:
            await self._mitigated_by(incident, event)
        elif event.kind == "page-acknowledged" and incident.acknowledged_at is None:
            async with self.deps.db.transaction() as session:
                await session.execute(
                    update(Incident)
                    .where(Incident.id == incident.id, Incident.acknowledged_at.is_(None))
                    .values(acknowledged_at=event.at, acknowledged_by=event.actor)
                )
            refreshed = await self.channel.refresh(incident.id)
            if refreshed is not None:
                await self.channel.update_intro(refreshed)

    async def _mitigated_by(self, incident: Incident, event: ServiceEvent) -> None:
        """A rollback of an affected service mitigates an active incident (once)."""
        async with self.deps.db.transaction() as session:
            done = await records.changed(
                session,
                update(Incident)
                .where(
                    Incident.id == incident.id,
                    Incident.mitigated_at.is_(None),
                    Incident.state.in_(sources(IncidentEvent.MITIGATE)),
                )
                .values(mitigated_at=event.at, state=target(IncidentEvent.MITIGATE)),
            )
            if done:
                records.add_entry(
                    session,
                    incident.id,
                    "mitigated",
                    text("Mitigated: ", from_stored(event.text)),
                    at=event.at,
                    actor=event.actor,
                )
        if done:
            await self.channel.say(
                incident,
                text(
                    Emoji("adhesive_bandage"),
                    " Marked mitigated because ",
                    from_stored(event.text),
                    ".",
                ),
            )
            await self.channel.refresh(incident.id)


def _said(author: str | None, quote: str) -> Text:
    return text(Mention(author) if author else "someone", ": ", verbatim(quote))


def _subject_of(event: ServiceEvent) -> int | None:
    """The incident an event is about, when its data names one."""
    data = event.data or {}
    if data.get("subject_kind") == "incident" and isinstance(data.get("subject_id"), int):
        return int(data["subject_id"])
    if isinstance(data.get("incident_id"), int):
        return int(data["incident_id"])
    return None
