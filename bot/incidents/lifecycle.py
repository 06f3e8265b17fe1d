"""Running an incident: status updates, severity changes, acknowledgment and resolution.

Every change is a guarded UPDATE (`WHERE state IN …` from the state table, `WHERE severity =
old`, `WHERE acknowledged_at IS NULL`), so a double click, a Slack retry or a second replica
cannot do it twice; then the channel topic, the announcement and the timeline follow.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from bot.catalog import format_duration
from bot.db.models import Incident
from bot.incidents import messaging, records
from bot.incidents.channel import IncidentChannel
from bot.incidents.deps import IncidentDeps
from bot.incidents.paging import IncidentPaging
from bot.incidents.states import (
    IncidentEvent,
    IncidentState,
    sources,
    target,
    transition,
)
from bot.messages import Emoji, Mention, Message, Result, Text, join, refused, text, verbatim

UPDATABLE = sources(IncidentEvent.UPDATE)


class Lifecycle:
    def __init__(self, deps: IncidentDeps, channel: IncidentChannel, paging: IncidentPaging):
        self.deps = deps
        self.channel = channel
        self.paging = paging

    async def _in_channel(self, channel_id: str | None, verb: str) -> Incident | Result:
        prefix = self.deps.catalog.slack.incident_channel_prefix
        return await records.in_channel(self.deps.db, channel_id, verb, prefix=prefix)

    async def update(self, *, channel_id: str | None, text: str, user: str) -> Result:
        """A status update: timeline, channel, announcement; resets the reminder clock."""
        incident = await self._in_channel(channel_id, "update")
        if isinstance(incident, Result):
            return incident
        now = self.deps.clock()
        mitigated = text.lower().startswith("mitigated") and incident.mitigated_at is None
        values: dict[str, Any] = {"last_update_at": now, "reminded_at": None}
        if mitigated:
            values.update(
                mitigated_at=now, state=transition(incident.state, IncidentEvent.MITIGATE)
            )
        words = verbatim(text)
        async with self.deps.db.transaction() as session:
            done = await records.changed(
                session,
                update(Incident)
                .where(Incident.id == incident.id, Incident.state.in_(UPDATABLE))
                .values(**values),
            )
            if not done:
                return refused(f"{incident.key} was resolved meanwhile.")
            records.add_entry(
                session,
                incident.id,
                "update",
                _by("Update from ", user, ": ", words),
                at=now,
                actor=user,
            )
            if mitigated:
                records.add_entry(
                    session,
                    incident.id,
                    "mitigated",
                    _by("Mitigated (said by ", user, ")"),
                    at=now,
                    actor=user,
                )
        await self.channel.refresh(incident.id)
        # (`text` is the update's words here.)
        answer = Text((Emoji("memo"), f" *{incident.key} update* from ", Mention(user), ": "))
        answer += words
        return Result(True, Message(answer), public=True)

    async def set_severity(self, *, channel_id: str | None, severity: str, user: str) -> Result:
        """A new severity: recorded once, and paged (or not) by the policy for it."""
        incident = await self._in_channel(channel_id, "severity")
        if isinstance(incident, Result):
            return incident
        old = incident.severity
        if old == severity:
            return refused(f"{incident.key} is {severity} already.")
        now = self.deps.clock()
        async with self.deps.db.transaction() as session:
            done = await records.changed(
                session,
                update(Incident)
                .where(
                    Incident.id == incident.id,
                    Incident.severity == old,
                    Incident.state.in_(UPDATABLE),
                )
                .values(severity=severity),
            )
            if not done:
                return refused(f"{incident.key} changed meanwhile; look again and retry.")
            records.add_entry(
                session,
                incident.id,
                "severity",
                _by(f"Severity changed {old} → {severity} by ", user),
                at=now,
                actor=user,
                data={"from": old, "to": severity},
            )
        incident.severity = severity
        lines = await self.paging.page(incident, previous=old, now=now)
        await self.channel.refresh(incident.id)
        paging = "\n".join(f"Paging: {line}" for line in lines)
        answer = text(
            Emoji("rotating_light"),
            f" {incident.key} severity changed {old} → {severity} by ",
            Mention(user),
            f".\n{paging}",
        )
        return Result(True, Message(answer), public=True)

    async def resolve(self, *, channel_id: str | None, summary: str, user: str) -> Result:
        """Resolved: the pages close and the postmortem clock starts."""
        incident = await self._in_channel(channel_id, "resolve")
        if isinstance(incident, Result):
            return incident
        if incident.state == IncidentState.RESOLVED:
            return refused(
                f"{incident.key} was resolved already at {messaging.clock(incident.resolved_at)}."
            )
        now = self.deps.clock()
        due = now + self.deps.catalog.incidents.postmortem_due
        async with self.deps.db.transaction() as session:
            done = await records.changed(
                session,
                update(Incident)
                .where(
                    Incident.id == incident.id,
                    Incident.state.in_(sources(IncidentEvent.RESOLVE)),
                )
                .values(
                    state=target(IncidentEvent.RESOLVE),
                    resolved_at=now,
                    mitigated_at=incident.mitigated_at or now,
                    postmortem_due_at=due,
                    summary=summary or None,
                ),
            )
            if not done:
                return refused(f"{incident.key} was resolved meanwhile.")
            said = _by("Resolved by ", user)
            if summary:
                said += text(": ", verbatim(summary))
            records.add_entry(session, incident.id, "resolved", said, at=now, actor=user)
        page_lines = await self.paging.resolve(incident.id)
        incident = await self.channel.refresh(incident.id) or incident
        await self.channel.update_intro(incident)
        took = messaging.span(now - (incident.detected_at or incident.declared_at))
        lines: list[Text | str] = [
            text(
                Emoji("white_check_mark"),
                f" *{incident.key} resolved* by ",
                Mention(user),
                f" after {took}.",
            ),
            *([text("Summary: ", verbatim(summary))] if summary else []),
            *page_lines,
            f"The blameless postmortem is due by {messaging.clock(due)} "
            f"({format_duration(self.deps.catalog.incidents.postmortem_due)}): "
            f"`/postmortem {incident.key}` drafts it.",
        ]
        return Result(True, Message(join("\n", lines)), public=True)

    async def acknowledge(self, *, incident_id: int, user: str) -> Result:
        """The Acknowledge button: recorded once; the pages are acknowledged (or cancelled)."""
        incident = await records.load(self.deps.db, incident_id)
        if incident is None:
            return refused(f"there is no INC-{incident_id}.")
        now = self.deps.clock()
        async with self.deps.db.transaction() as session:
            done = await records.changed(
                session,
                update(Incident)
                .where(Incident.id == incident_id, Incident.acknowledged_at.is_(None))
                .values(acknowledged_at=now, acknowledged_by=user),
            )
            if done:
                records.add_entry(
                    session,
                    incident_id,
                    "acknowledged",
                    _by("Acknowledged by ", user),
                    at=now,
                    actor=user,
                )
        if not done:
            return refused(
                text(
                    f"{incident.key} was acknowledged already by ",
                    messaging.who(incident.acknowledged_by),
                    f" at {messaging.clock(incident.acknowledged_at)}.",
                )
            )
        lines = await self.paging.acknowledge(incident_id, user, now)
        incident = await self.channel.refresh(incident_id) or incident
        await self.channel.update_intro(incident)
        answer = text(Emoji("eyes"), f" {incident.key} acknowledged by ", Mention(user), ".")
        return Result(True, Message(join("\n", [answer, *lines])), public=True)


def _by(before: str, user: str, *after: str | Text) -> Text:
    """A timeline line naming who did it: `before`, a mention of `user`, `after`."""
    return text(before, Mention(user), *after)
