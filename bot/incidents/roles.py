"""Who does what in an incident: the commander and named roles (scribe, comms, …)."""

from __future__ import annotations

import logging
import re

from sqlalchemy import select

from bot.db.models import Incident
from bot.incidents import records
from bot.incidents.channel import IncidentChannel
from bot.incidents.deps import IncidentDeps
from bot.incidents.ports import WorkspaceError
from bot.messages import Emoji, Mention, Message, Result, refused, text

log = logging.getLogger(__name__)

ROLE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,30}")
USER_REF = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>|^([UW][A-Z0-9]{2,})$")


class Roles:
    def __init__(self, deps: IncidentDeps, channel: IncidentChannel) -> None:
        self.deps = deps
        self.channel = channel

    async def resolve_user(self, text: str) -> str | None:
        """A user id from `<@U…|name>`, `<@U…>`, `U…` or `@name`."""
        match = USER_REF.search(text.strip())
        if match:
            return match.group(1) or match.group(2)
        name = text.strip().removeprefix("@")
        if not name:
            return None
        try:
            return await self.deps.workspace.find_user(name)
        except WorkspaceError:
            log.exception("could not look up user %s", name)
            return None

    async def set_role(self, *, channel_id: str | None, role: str, who: str, user: str) -> Result:
        """`role` (or the commander) is `who` now; they are invited to the channel."""
        incident = await records.in_channel(
            self.deps.db,
            channel_id,
            "commander" if role == "commander" else "role",
            prefix=self.deps.catalog.slack.incident_channel_prefix,
        )
        if isinstance(incident, Result):
            return incident
        role = role.lower()
        if not ROLE_NAME.fullmatch(role):
            return refused(
                f"role '{role[:40]}' is not a role name: use letters, digits, '-' or '_' "
                "(e.g. scribe, comms, ops-lead)."
            )
        person = await self.resolve_user(who)
        if person is None:
            return refused(f"who is {who[:60]!r}? Mention a person, e.g. `@alice`.")
        now = self.deps.clock()
        async with self.deps.db.transaction() as session:
            current = await session.scalar(
                select(Incident).where(Incident.id == incident.id).with_for_update()
            )
            assert current is not None
            if role == "commander":
                before = current.commander
                current.commander = person
            else:
                roles = dict(current.roles or {})
                before = roles.get(role)
                roles[role] = person
                current.roles = roles
            said = text(f"{role.capitalize()}: ", Mention(person))
            if before and before != person:
                said += text(" (was ", Mention(before), ")")
            records.add_entry(
                session,
                incident.id,
                "role",
                text(said, ", set by ", Mention(user)),
                at=now,
                actor=user,
                data={"role": role, "user": person, "before": before},
            )
        if incident.channel_id:
            try:
                problems = await self.deps.workspace.invite(incident.channel_id, [person])
            except WorkspaceError as exc:
                problems = [str(exc)]
            for problem in problems:
                await self.channel.say(incident, text(Emoji("warning"), f" {problem}"))
        await self.channel.refresh(incident.id)
        answer = text(Emoji("busts_in_silhouette"), f" {incident.key}: ", said, ".")
        return Result(True, Message(answer), public=True)
