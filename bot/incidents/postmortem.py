"""Postmortems: render an incident's blameless review, keep it, share it, and chase it until done.

`Postmortems.draft` renders `postmortem.md.j2` (a team's copy in its playbooks folder wins over
the one shipped in playbooks/) from the incident, its timeline, the deploys and rollbacks of its
services from an hour before detection on, its alerts and its pages; stores the document; writes
it to `incidents.postmortem_dir` when set; and uploads it to the incident channel. `done` marks
the postmortem done. `remind`, a scheduler job, reminds the commander before the due time and
when overdue.

The parts: `postmortem_context` (what the template sees), `postmortem_markdown` (the document,
with user text escaped), `postmortem_reminders`, and `postmortem_ports` (the seams to Slack).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import jinja2
from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import Incident, Postmortem, TimelineEvent
from bot.incidents.postmortem_context import build_context, role_labels
from bot.incidents.postmortem_markdown import TEMPLATE_NAME, format_time, render, slug
from bot.incidents.postmortem_ports import SHIPPED_TEMPLATES, PostmortemDeps, UploadFailed
from bot.incidents.postmortem_reminders import PostmortemReminders
from bot.incidents.states import IncidentState
from bot.messages import (
    ChannelRef,
    Emoji,
    Mention,
    Message,
    RichText,
    Text,
    UserText,
    join,
    text,
)

log = logging.getLogger(__name__)

INCIDENT_KEY = re.compile(r"INC-(\d+)", re.IGNORECASE)

__all__ = ["PostmortemDeps", "PostmortemResult", "Postmortems"]


@dataclass(frozen=True)
class PostmortemResult:
    """What `/postmortem` answers the person who asked."""

    ok: bool
    message: Message
    public: bool = False
    incident: str | None = None
    postmortem_id: int | None = None
    file_id: str | None = None
    path: Path | None = None


def refused(reason: RichText) -> PostmortemResult:
    return PostmortemResult(False, Message(text(Emoji("no_entry"), " ", reason)))


class Postmortems:
    def __init__(self, deps: PostmortemDeps) -> None:
        self.deps = deps
        dirs = list(dict.fromkeys([*deps.template_dirs, SHIPPED_TEMPLATES]))
        self.template_dirs = [d for d in dirs if d.is_dir()]
        self._reminders = PostmortemReminders(deps)

    # ------------------------------------------------------------------ commands

    async def draft(
        self, incident_key_or_channel: str, by: str, *, where: str | None = None
    ) -> PostmortemResult:
        """Render, keep, write and share the postmortem of an incident (by key or its channel)."""
        now = self.deps.clock()
        async with self.deps.db.session() as session:
            incident = await self._find(session, incident_key_or_channel)
            if isinstance(incident, PostmortemResult):
                return incident
            if not await self._may_draft(session, incident, by, where):
                members = (
                    text(" and members of ", ChannelRef(incident.channel_id))
                    if incident.channel_id
                    else ""
                )
                return refused(
                    text(
                        f"only people in {incident.key} can draft its postmortem: its commander, "
                        "declarer and role holders",
                        members,
                        ". Join the incident channel first.",
                    )
                )
            drafts = await session.scalar(
                select(func.count()).where(Postmortem.incident_id == incident.id)
            )
            context = await build_context(
                session,
                incident,
                now,
                draft=(drafts or 0) + 1,
                due_rule=self.deps.catalog.incidents.postmortem_due,
            )
        try:
            markdown = self.render(context, role_labels(incident))
        except jinja2.TemplateError as exc:
            log.exception("the postmortem template failed for %s", incident.key)
            return refused(
                text(
                    f"the postmortem template could not be rendered ({type(exc).__name__}: ",
                    UserText(str(exc)[:300]),
                    f"); nothing was stored. Check `{TEMPLATE_NAME}` in the playbooks folder.",
                )
            )
        return await self._keep(incident, markdown, context["draft"], by, where, now)

    async def _keep(
        self,
        incident: Incident,
        markdown: str,
        draft: int,
        by: str,
        where: str | None,
        now: datetime,
    ) -> PostmortemResult:
        """Store draft number `draft`, write it to the folder, share it; say what happened."""
        filename = f"{incident.key}-{slug(incident.title)}.md"
        async with self.deps.db.transaction() as session:
            record = Postmortem(
                incident_id=incident.id, markdown=markdown, created_by=by, created_at=now
            )
            session.add(record)
            session.add(
                TimelineEvent(
                    incident_id=incident.id,
                    at=now,
                    kind="postmortem",
                    actor=by,
                    text=f"Postmortem draft {draft} written",
                )
            )
        notes: list[Text] = []
        path = await self._write(filename, markdown, notes)
        file_id = await self._share(incident, filename, markdown, where, notes)
        async with self.deps.db.transaction() as session:
            await session.execute(
                update(Postmortem)
                .where(Postmortem.id == record.id)
                .values(file_id=file_id, path=str(path) if path else None)
            )
        said = text(
            Emoji("memo"),
            f" Postmortem draft {draft} of *{incident.key}* (",
            UserText(incident.title),
            ")",
        )
        if file_id:
            channel = ChannelRef(cast(str, incident.channel_id or where))
            said += text(" is shared in ", channel, f" as `{filename}`.")
        else:
            said += " is stored in opsbot, but not shared in Slack."
        if incident.state != IncidentState.RESOLVED:
            said += (
                f" {incident.key} is still {incident.state}: the document says so; "
                "draft it again once it is resolved."
            )
        said += (
            " Fill in the impact, contributing factors and action items with the team, then "
            f"`/postmortem done {incident.key}`."
        )
        return PostmortemResult(
            ok=True,
            message=Message(said, context=join("\n", notes) or None),
            incident=incident.key,
            postmortem_id=record.id,
            file_id=file_id,
            path=path,
        )

    async def done(self, key: str, by: str, *, where: str | None = None) -> PostmortemResult:
        """Mark the postmortem of `key` done (its commander only); reminders stop."""
        now = self.deps.clock()
        async with self.deps.db.transaction() as session:
            incident = await self._find(session, key)
            if isinstance(incident, PostmortemResult):
                return incident
            owner = incident.commander or incident.declared_by
            if by != owner:
                return refused(
                    text(
                        f"only the incident commander of {incident.key} (",
                        Mention(owner),
                        ") marks its postmortem done. If you lead it now, take over with "
                        "`/incident commander @you` first.",
                    )
                )
            if incident.state != IncidentState.RESOLVED:
                return refused(
                    f"{incident.key} is still {incident.state}: resolve it with "
                    "`/incident resolve` before its postmortem can be done."
                )
            result = cast(
                CursorResult[Any],
                await session.execute(
                    update(Incident)
                    .where(Incident.id == incident.id, Incident.postmortem_done_at.is_(None))
                    .values(postmortem_done_at=now, postmortem_done_by=by)
                ),
            )
            if result.rowcount != 1:
                await session.refresh(incident)
                return refused(
                    text(
                        f"the postmortem of {incident.key} was already marked done by ",
                        Mention(cast(str, incident.postmortem_done_by)),
                        f" at {format_time(incident.postmortem_done_at)}.",
                    )
                )
            session.add(
                TimelineEvent(
                    incident_id=incident.id,
                    at=now,
                    kind="postmortem",
                    actor=by,
                    text="Postmortem marked done",
                )
            )
        message = Message(
            text(
                Emoji("white_check_mark"),
                f" The postmortem of *{incident.key}* (",
                UserText(incident.title),
                ") is done, marked by ",
                Mention(by),
                ". No more reminders.",
            )
        )
        in_channel = incident.channel_id is not None and where == incident.channel_id
        if incident.channel_id and not in_channel:
            try:
                await self.deps.notifier.post(incident.channel_id, message)
            except Exception:
                log.exception("could not tell %s that its postmortem is done", incident.key)
        return PostmortemResult(True, message, public=in_channel, incident=incident.key)

    async def remind(self, now: datetime | None = None) -> None:
        """Scheduler job: remind commanders of postmortems due soon or overdue, each once."""
        await self._reminders.remind(now)

    def render(self, context: Mapping[str, Any], people: Mapping[str, str]) -> str:
        """The Markdown document; every printed value is escaped unless it is `Markdown`."""
        return render(self.template_dirs, context, people)

    # ------------------------------------------------------------------ helpers

    async def _find(
        self, session: AsyncSession, key_or_channel: str
    ) -> Incident | PostmortemResult:
        match = INCIDENT_KEY.fullmatch(key_or_channel.strip())
        if match:
            incident = await session.get(Incident, int(match.group(1)))
            if incident is None:
                return refused(
                    f"there is no incident INC-{int(match.group(1))}. `/incident list` shows "
                    "the incidents."
                )
            return incident
        incident = await session.scalar(
            select(Incident)
            .where(Incident.channel_id == key_or_channel)
            .order_by(Incident.id.desc())
            .limit(1)
        )
        if incident is None:
            return refused(
                "this channel is not an incident channel, so there is no incident to write "
                "about here. Name one: `/postmortem INC-<n>` (`/incident list` shows them)."
            )
        return incident

    async def _may_draft(
        self, session: AsyncSession, incident: Incident, by: str, where: str | None
    ) -> bool:
        """Anyone in the incident: its channel's members, commander, declarer, role holders."""
        if where is not None and where == incident.channel_id:
            return True  # Slack only takes slash commands from members of the channel
        if by in role_labels(incident):
            return True
        took_part = await session.scalar(
            select(TimelineEvent.id)
            .where(TimelineEvent.incident_id == incident.id, TimelineEvent.actor == by)
            .limit(1)
        )
        if took_part is not None:
            return True
        if incident.channel_id and self.deps.members is not None:
            return by in await self.deps.members.members(incident.channel_id)
        return False

    def _folder(self) -> Path | None:
        configured = self.deps.catalog.incidents.postmortem_dir
        if configured is None:
            return None
        folder = Path(configured).expanduser()
        return folder if folder.is_absolute() else self.deps.base_dir / folder

    async def _write(self, filename: str, markdown: str, notes: list[Text]) -> Path | None:
        folder = self._folder()
        if folder is None:
            return None
        path = folder / filename
        try:
            await asyncio.to_thread(_write_atomically, path, markdown)
        except OSError as exc:
            log.warning("could not write %s: %s", path, exc)
            notes.append(
                text(Emoji("warning"), f" Could not write `{path}`: {exc.strerror or exc}.")
            )
            return None
        notes.append(text(f"Written to `{path}`."))
        return path

    async def _share(
        self,
        incident: Incident,
        filename: str,
        markdown: str,
        where: str | None,
        notes: list[Text],
    ) -> str | None:
        channel = incident.channel_id or where
        if not channel:
            notes.append(
                text(Emoji("warning"), " The incident has no channel, so the file was not shared.")
            )
            return None
        comment = text(
            Emoji("memo"),
            f" Postmortem draft of *{incident.key}* (",
            UserText(incident.title),
            "). Fill in the impact, contributing factors and action items together; "
            f"`/postmortem done {incident.key}` when the review is complete.",
        )
        if incident.state != IncidentState.RESOLVED:
            comment += f" {incident.key} is still {incident.state}: this draft is provisional."
        try:
            return await self.deps.uploader.upload(
                channel,
                filename=filename,
                title=f"Postmortem {incident.key}: {' '.join(incident.title.split())}",
                content=markdown,
                comment=comment,
            )
        except UploadFailed as exc:
            log.warning("could not share the postmortem of %s: %s", incident.key, exc)
            notes.append(
                text(
                    Emoji("warning"),
                    " Not shared in ",
                    ChannelRef(channel),
                    f": {exc}. The draft is kept in opsbot; run the command again to retry.",
                )
            )
            return None


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
