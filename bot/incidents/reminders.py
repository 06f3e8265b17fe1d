"""Reminding an incident channel: P0/P1 without an update for their period, P2 follow-ups due.
Each reminder is claimed with a conditional UPDATE, so two replicas send it once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update

from bot.catalog import format_duration
from bot.db.models import Incident
from bot.incidents import messaging, records
from bot.incidents.channel import IncidentChannel
from bot.incidents.deps import IncidentDeps
from bot.incidents.policy import reminder_due
from bot.messages import Emoji, text


class Reminders:
    def __init__(self, deps: IncidentDeps, channel: IncidentChannel) -> None:
        self.deps = deps
        self.channel = channel

    async def remind(self, now: datetime | None = None) -> None:
        """Scheduler job: P0/P1 without an update for their period; P2 follow-ups due."""
        now = now or self.deps.clock()
        update_every = dict(self.deps.catalog.incidents.update_every)
        for incident in await records.running(self.deps.db):
            period = reminder_due(
                severity=incident.severity,
                last_update=incident.last_update_at or incident.declared_at,
                last_reminder=incident.reminded_at,
                now=now,
                update_every=update_every,
            )
            if period is not None and await self._claim(incident, "reminded_at", now):
                since = incident.last_update_at or incident.declared_at
                await self.channel.say(
                    incident,
                    text(
                        Emoji("alarm_clock"),
                        f" No update on {incident.key} ({incident.severity}) for "
                        f"{messaging.span(now - since)}; {incident.severity} incidents get one at "
                        f"least every {format_duration(period)}. ",
                        messaging.who(incident.commander),
                        ", please post `/incident update <what is happening>`.",
                    ),
                )
            due = incident.followup_due_at
            if (
                incident.severity == "P2"
                and due is not None
                and due <= now
                and incident.followup_reminded_at is None
                and await self._claim(incident, "followup_reminded_at", now)
            ):
                await self.channel.say(
                    incident,
                    text(
                        Emoji("alarm_clock"),
                        f" The follow-up of {incident.key} (P2) was due {messaging.clock(due)}. ",
                        messaging.who(incident.commander),
                        ", resolve it with `/incident resolve <summary>` or post an update.",
                    ),
                )

    async def _claim(self, incident: Incident, column: str, now: datetime) -> bool:
        """Mark a reminder as sent, only if nobody else did (two replicas, one reminder)."""
        attribute = getattr(Incident, column)
        seen = getattr(incident, column)
        condition = attribute.is_(None) if seen is None else attribute == seen
        async with self.deps.db.transaction() as session:
            done = await records.changed(
                session,
                update(Incident).where(Incident.id == incident.id, condition).values({column: now}),
            )
            if done:
                records.add_entry(
                    session,
                    incident.id,
                    "reminder",
                    "Follow-up reminder" if column == "followup_reminded_at" else "Update reminder",
                    at=now,
                )
            return done
