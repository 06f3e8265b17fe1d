"""Where an incident shows: its channel (opened, people invited, topic), the announcement in
`slack.channels.incidents`, and the channel's first message, kept up to date as it changes."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import update

from bot.db.models import Incident
from bot.incidents import messaging, records
from bot.incidents.deps import IncidentDeps
from bot.incidents.ports import ChannelNameTaken, WorkspaceError
from bot.messages import Message, MessageRef, RichText
from bot.oncall.schedule import OncallUnavailable

log = logging.getLogger(__name__)


class IncidentChannel:
    """Say things in the incident channel and keep its topic, announcement and intro current."""

    def __init__(self, deps: IncidentDeps) -> None:
        self.deps = deps

    async def say(self, incident: Incident, text: RichText) -> None:
        """A message in the incident channel; Slack trouble is logged, never raised."""
        if not incident.channel_id:
            return
        try:
            await self.deps.notifier.post(incident.channel_id, Message(text))
        except Exception:
            log.exception("could not post to the channel of %s", incident.key)

    async def refresh(self, incident_id: int) -> Incident | None:
        """Topic and announcement show the incident as it is now."""
        incident = await records.load(self.deps.db, incident_id)
        if incident is None:
            return None
        if incident.channel_id:
            try:
                await self.deps.workspace.set_topic(incident.channel_id, messaging.topic(incident))
            except Exception:
                log.exception("could not set the topic of %s", incident.key)
        if incident.announcement_channel and incident.announcement_ts:
            ref = MessageRef(incident.announcement_channel, incident.announcement_ts)
            try:
                await self.deps.notifier.update(ref, messaging.announcement(incident))
            except Exception:
                log.exception("could not update the announcement of %s", incident.key)
        return incident

    async def open(self, incident: Incident) -> list[str]:
        """Create `#<prefix>-<n>-<slug>`, invite people, set the topic; the problems, if any."""
        prefix = self.deps.catalog.slack.incident_channel_prefix
        workspace = self.deps.workspace
        channel_id: str | None = None
        name = ""
        problems: list[str] = []
        for attempt in range(1, 11):
            name = messaging.channel_name(prefix, incident.id, incident.title, attempt)
            try:
                channel_id = await workspace.create_channel(name)
                break
            except ChannelNameTaken:
                continue
            except WorkspaceError as exc:
                problems.append(f"the incident channel #{name} could not be created: {exc}")
                break
        else:
            problems.append(f"every name like #{name} is taken; no channel was created")
        if channel_id is None:
            return problems
        await self._set(incident, channel_id=channel_id, channel_name=name)
        people = [incident.declared_by, *await self._responders(incident.services or [])]
        try:
            problems.extend(await workspace.invite(channel_id, list(dict.fromkeys(people))))
        except WorkspaceError as exc:
            problems.append(f"inviting people failed: {exc}")
        return problems

    async def _responders(self, services: Sequence[str]) -> list[str]:
        """Service owners and, when the on-call directory exists, who is on call."""
        people: list[str] = []
        for name in services:
            service = self.deps.catalog.service(name)
            if service is not None:
                people.extend(service.owners)
        if self.deps.oncall is not None:
            for name in services or [None]:
                try:
                    people.extend(_slack_ids(await self.deps.oncall.who(name)))
                except OncallUnavailable as exc:  # not configured, or PagerDuty down: say why
                    log.warning("who is on call for %s is unknown: %s", name or "the default", exc)
                except Exception:
                    log.exception("could not find who is on call for %s", name or "the default")
        return people

    async def announce(self, incident: Incident) -> None:
        """The announcement in `slack.channels.incidents`, remembered to update it later."""
        channel = self.deps.catalog.slack.channels.incidents
        try:
            ref = await self.deps.notifier.post(channel, messaging.announcement(incident))
        except Exception:
            log.exception("could not announce %s", incident.key)
            return
        await self._set(incident, announcement_channel=ref.channel, announcement_ts=ref.ts)

    async def post_intro(
        self, incident: Incident, why: str, paging: list[str], problems: list[str]
    ) -> None:
        """The channel's first message (its thread is where the pages are told)."""
        if not incident.channel_id:
            return
        message = messaging.channel_intro(
            incident, suggestion=why, paging=paging, invite_problems=problems
        )
        try:
            ref = await self.deps.notifier.post(incident.channel_id, message)
        except Exception:
            log.exception("could not post the first message of %s", incident.key)
            return
        await self._set(incident, message_ts=ref.ts)

    async def save_details(self, incident: Incident, details: dict[str, Any]) -> None:
        """The lines the first message is rebuilt from (why this severity, paging, problems)."""
        await self._set(incident, details=details)

    async def update_intro(self, incident: Incident) -> None:
        """The first message as the incident is now (Acknowledge gone once pressed)."""
        if not (incident.channel_id and incident.message_ts):
            return
        details = incident.details or {}
        message = messaging.channel_intro(
            incident,
            suggestion=details.get("why", ""),
            paging=list(details.get("paging") or []),
            invite_problems=list(details.get("problems") or []),
        )
        try:
            await self.deps.notifier.update(
                MessageRef(incident.channel_id, incident.message_ts), message
            )
        except Exception:
            log.exception("could not update the first message of %s", incident.key)

    def thread(self, incident: Incident) -> MessageRef | None:
        """Where news of the incident is threaded: its first message, else its announcement."""
        if incident.channel_id and incident.message_ts:
            return MessageRef(incident.channel_id, incident.message_ts, incident.message_ts)
        if incident.announcement_channel and incident.announcement_ts:
            return MessageRef(
                incident.announcement_channel, incident.announcement_ts, incident.announcement_ts
            )
        return None

    async def _set(self, incident: Incident, **values: Any) -> None:
        """Columns that only say where the incident shows: no guard needed, nobody races them."""
        async with self.deps.db.transaction() as session:
            await session.execute(
                update(Incident).where(Incident.id == incident.id).values(**values)
            )
        for name, value in values.items():
            setattr(incident, name, value)


def _slack_ids(oncall: Any) -> list[str]:
    """Slack user ids in whatever the on-call directory answers (primary, secondary, …)."""
    found: list[str] = []

    def visit(value: Any, depth: int) -> None:
        if depth > 3 or value is None:
            return
        if isinstance(value, str):
            if re.fullmatch(r"[UW][A-Z0-9]{2,}", value):
                found.append(value)
            return
        if isinstance(value, dict):
            for item in value.values():
                visit(item, depth + 1)
            return
        if isinstance(value, list | tuple):
            for item in value:
                visit(item, depth + 1)
            return
        for name in ("slack_id", "slack_user", "user_id", "primary", "secondary"):
            if hasattr(value, name):
                visit(getattr(value, name), depth + 1)

    # The primary is the one on call; the secondary is who the page escalates to.
    visit(getattr(oncall, "primary", oncall), 0)
    return list(dict.fromkeys(found))
