"""The incident domain's front: one method per thing a person (or the bot) does to an incident.

The work lives in the parts, each changing for its own reasons:
`declare` (services, severity, the record and its channel), `lifecycle` (updates, severity,
acknowledge, resolve), `roles` (commander and named roles), `timeline` (pinned messages and
events), `reminders`, `paging` (pages by the policy), `stats`, and `channel` (topic,
announcement, first message). Their state changes follow the table in `states`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.db.models import Incident, TimelineEvent
from bot.events import ServiceEvent
from bot.incidents import records, stats
from bot.incidents.channel import IncidentChannel
from bot.incidents.classify import LiveState, Suggestion
from bot.incidents.declare import Declaring
from bot.incidents.deps import IncidentDeps
from bot.incidents.lifecycle import Lifecycle
from bot.incidents.paging import IncidentPaging
from bot.incidents.reminders import Reminders
from bot.incidents.roles import Roles
from bot.incidents.timeline import Timeline
from bot.messages import Result

__all__ = ["IncidentDeps", "IncidentService"]


class IncidentService:
    """Declare, run and resolve incidents; record their timeline; remind the channel."""

    def __init__(self, deps: IncidentDeps) -> None:
        self.deps = deps
        channel = IncidentChannel(deps)
        paging = IncidentPaging(deps, channel)
        self._declaring = Declaring(deps, channel, paging)
        self._lifecycle = Lifecycle(deps, channel, paging)
        self._roles = Roles(deps, channel)
        self._timeline = Timeline(deps, channel)
        self._reminders = Reminders(deps, channel)
        if deps.events is not None:
            deps.events.subscribe(self.on_event)

    # -- look-ups ---------------------------------------------------------------------------------
    def recognise_services(self, text: str) -> list[str]:
        """Services named (by name or alias) in free text, in catalog order."""
        return self._declaring.recognise_services(text)

    def check_services(self, names: Sequence[str]) -> tuple[list[str], list[str]]:
        """(canonical names, unknown names) of services chosen by a person."""
        return self._declaring.check_services(names)

    async def live_state(self, services: Sequence[str]) -> LiveState:
        """Firing alerts and recent failed deploys/rollbacks of `services`."""
        return await self._declaring.live_state(services)

    async def suggest(
        self, *, title: str, description: str = "", services: Sequence[str] = ()
    ) -> Suggestion:
        """The suggested severity from the text and the live state of the affected services."""
        return await self._declaring.suggest(
            title=title, description=description, services=services
        )

    async def by_channel(self, channel_id: str | None) -> Incident | None:
        """The incident whose channel `channel_id` is, or None."""
        return await records.by_channel(self.deps.db, channel_id)

    async def load(self, incident_id: int) -> Incident | None:
        """INC-`incident_id`, or None."""
        return await records.load(self.deps.db, incident_id)

    async def resolve_user(self, text: str) -> str | None:
        """A user id from `<@U…|name>`, `<@U…>`, `U…` or `@name`."""
        return await self._roles.resolve_user(text)

    async def timeline(self, incident_id: int) -> list[TimelineEvent]:
        """An incident's timeline, oldest first."""
        return await records.timeline(self.deps.db, incident_id)

    # -- commands ---------------------------------------------------------------------------------
    async def declare(
        self,
        *,
        title: str,
        severity: str | None,
        declared_by: str,
        description: str = "",
        services: Sequence[str] | None = None,
        origin: dict[str, Any] | None = None,
    ) -> Result:
        """Record INC-n, open its channel, announce it and page by the policy."""
        return await self._declaring.declare(
            title=title,
            severity=severity,
            declared_by=declared_by,
            description=description,
            services=services,
            origin=origin,
        )

    async def update(self, *, channel_id: str | None, text: str, user: str) -> Result:
        """A status update: timeline, channel, announcement; resets the reminder clock."""
        return await self._lifecycle.update(channel_id=channel_id, text=text, user=user)

    async def set_severity(self, *, channel_id: str | None, severity: str, user: str) -> Result:
        """A new severity, paged (or not) by the policy for it."""
        return await self._lifecycle.set_severity(
            channel_id=channel_id, severity=severity, user=user
        )

    async def set_commander(self, *, channel_id: str | None, who: str, user: str) -> Result:
        """`who` leads the incident now."""
        return await self.set_role(channel_id=channel_id, role="commander", who=who, user=user)

    async def set_role(self, *, channel_id: str | None, role: str, who: str, user: str) -> Result:
        """`who` holds `role` now."""
        return await self._roles.set_role(channel_id=channel_id, role=role, who=who, user=user)

    async def resolve(self, *, channel_id: str | None, summary: str, user: str) -> Result:
        """Resolved: pages close, the postmortem is due."""
        return await self._lifecycle.resolve(channel_id=channel_id, summary=summary, user=user)

    async def acknowledge(self, *, incident_id: int, user: str) -> Result:
        """The Acknowledge button: recorded once; the pages are acknowledged (or cancelled)."""
        return await self._lifecycle.acknowledge(incident_id=incident_id, user=user)

    async def list_active(self) -> Result:
        """The incidents still running, most severe first."""
        return await stats.list_active(db=self.deps.db, now=self.deps.clock())

    async def stats(self, *, args: Sequence[str]) -> Result:
        """MTTA and MTTR by severity over a period (`30d` by default)."""
        return await stats.stats(db=self.deps.db, now=self.deps.clock(), args=args)

    # -- the timeline from Slack and from events; reminders ---------------------------------------
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
        return await self._timeline.record_message(
            channel_id=channel_id, ts=ts, by=by, how=how, text=text, author=author
        )

    async def on_event(self, event: ServiceEvent) -> None:
        """Deploys, rollbacks, alerts and pages of an active incident's services (or of it)."""
        await self._timeline.on_event(event)

    async def remind(self, now: datetime | None = None) -> None:
        """Scheduler job: P0/P1 without an update for their period; P2 follow-ups due."""
        await self._reminders.remind(now)
