"""Chasing a postmortem until it is done: one reminder before the due time, then a few overdue.

`reminder_step` is the pure decision; `PostmortemReminders.remind`, a scheduler job, sends each
step once however many replicas run it (a conditional UPDATE claims it) and audits it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, func, or_, select, update

from bot import audit
from bot.db.models import Incident, Postmortem
from bot.incidents.postmortem_markdown import format_span, format_time
from bot.incidents.postmortem_ports import PostmortemDeps
from bot.incidents.states import IncidentState
from bot.messages import Emoji, Mention, Message, UserText, text

log = logging.getLogger(__name__)

# Reminders: one before the due time, at this fraction of the period from resolution to due...
BEFORE_DUE_FRACTION = 0.75
# ...then, once overdue, one every OVERDUE_EVERY, OVERDUE_REMINDERS at most.
OVERDUE_EVERY = timedelta(hours=24)
OVERDUE_REMINDERS = 3


def _reminder_rank(step: str | None) -> int:
    if step is None:
        return 0
    if step == "before":
        return 1
    if step.startswith("overdue-") and step[8:].isdigit():
        return 1 + int(step[8:])
    return 0


def reminder_step(
    *,
    resolved_at: datetime,
    due_at: datetime,
    now: datetime,
    sent: str | None,
    before_fraction: float = BEFORE_DUE_FRACTION,
    overdue_every: timedelta = OVERDUE_EVERY,
    overdue_max: int = OVERDUE_REMINDERS,
) -> str | None:
    """The reminder to send now ("before", "overdue-<n>"), or None; `sent` is the last one sent.

    Ordered rules: overdue beats before (a bot that was down sends the overdue one only, never a
    stale "due soon"); the n-th overdue reminder is due (n-1) × overdue_every after the due time,
    at most overdue_max of them; a step already sent (or a later one) is never sent again.
    """
    if now >= due_at:
        periods = int((now - due_at) / overdue_every)
        step: str | None = f"overdue-{min(1 + periods, overdue_max)}"
    elif now >= resolved_at + (due_at - resolved_at) * before_fraction:
        step = "before"
    else:
        step = None
    if step is None or _reminder_rank(step) <= _reminder_rank(sent):
        return None
    return step


class PostmortemReminders:
    def __init__(self, deps: PostmortemDeps) -> None:
        self.deps = deps

    async def remind(self, now: datetime | None = None) -> None:
        """Remind commanders of postmortems due soon or overdue; each reminder is sent once."""
        now = now or self.deps.clock()
        last = f"overdue-{OVERDUE_REMINDERS}"
        async with self.deps.db.session() as session:
            pending = list(
                await session.scalars(
                    select(Incident)
                    .where(
                        Incident.state == IncidentState.RESOLVED,
                        Incident.resolved_at.is_not(None),
                        Incident.postmortem_done_at.is_(None),
                        or_(
                            Incident.postmortem_reminder.is_(None),
                            Incident.postmortem_reminder != last,
                        ),
                    )
                    .order_by(Incident.id)
                )
            )
        for incident in pending:
            try:
                await self._remind_one(incident, now)
            except Exception:
                log.exception("could not remind %s of its postmortem", incident.key)

    async def _remind_one(self, incident: Incident, now: datetime) -> None:
        resolved_at = cast(datetime, incident.resolved_at)
        due_at = (
            incident.postmortem_due_at or resolved_at + self.deps.catalog.incidents.postmortem_due
        )
        sent = incident.postmortem_reminder
        step = reminder_step(resolved_at=resolved_at, due_at=due_at, now=now, sent=sent)
        if step is None:
            return
        async with self.deps.db.transaction() as session:
            claimed = cast(
                CursorResult[Any],
                await session.execute(
                    update(Incident)
                    .where(
                        Incident.id == incident.id,
                        Incident.state == IncidentState.RESOLVED,
                        Incident.postmortem_done_at.is_(None),
                        Incident.postmortem_reminder.is_(None)
                        if sent is None
                        else Incident.postmortem_reminder == sent,
                    )
                    .values(postmortem_reminder=step)
                ),
            )
            if claimed.rowcount != 1:
                return  # another replica sent it, or it was marked done meanwhile
            drafted = await session.scalar(
                select(func.max(Postmortem.created_at)).where(Postmortem.incident_id == incident.id)
            )
        channel = incident.channel_id or self.deps.catalog.slack.channels.incidents
        message = reminder_message(incident, step, now, resolved_at, due_at, drafted)
        outcome = "ok"
        try:
            await self.deps.notifier.post(channel, message)
        except Exception:
            log.exception("could not post the postmortem reminder of %s", incident.key)
            outcome = "error"
            # Give the step back, so the next run tries again.
            async with self.deps.db.transaction() as session:
                await session.execute(
                    update(Incident)
                    .where(Incident.id == incident.id, Incident.postmortem_reminder == step)
                    .values(postmortem_reminder=sent)
                )
        await audit.record(
            self.deps.db,
            actor="opsbot",
            action="postmortem:reminder",
            outcome=outcome,
            channel=channel,
            detail={
                "incident": incident.key,
                "step": step,
                "due_at": due_at.isoformat(),
                "rule": "incidents.postmortem_due",
            },
        )


def reminder_message(
    incident: Incident,
    step: str,
    now: datetime,
    resolved_at: datetime,
    due_at: datetime,
    drafted: datetime | None,
) -> Message:
    """The reminder of `step`, to the commander, with why it comes now."""
    owner = Mention(incident.commander or incident.declared_by)
    key, title = incident.key, UserText(incident.title)
    period = format_span(due_at - resolved_at)
    if step == "before":
        said = text(
            owner,
            " ",
            Emoji("memo"),
            f" The postmortem of *{key}* (",
            title,
            f") is due in {format_span(due_at - now)}, at {format_time(due_at)}.",
        )
        why = (
            f"Why: a blameless postmortem is due {period} after resolution "
            f"(`incidents.postmortem_due`); {key} was resolved at {format_time(resolved_at)}. "
            f"This reminder comes at {BEFORE_DUE_FRACTION:.0%} of that period; if it is not "
            f"done by then, reminders follow every {format_span(OVERDUE_EVERY)} "
            f"({OVERDUE_REMINDERS} at most)."
        )
    else:
        number = int(step.removeprefix("overdue-"))
        said = text(
            owner,
            " ",
            Emoji("warning"),
            f" The postmortem of *{key}* (",
            title,
            f") is overdue by {format_span(now - due_at)}: it was due at {format_time(due_at)}.",
        )
        last = " This is the last reminder." if number >= OVERDUE_REMINDERS else ""
        why = (
            f"Why: a blameless postmortem is due {period} after resolution "
            f"(`incidents.postmortem_due`); {key} was resolved at {format_time(resolved_at)}. "
            f"Overdue reminder {number} of {OVERDUE_REMINDERS}, one every "
            f"{format_span(OVERDUE_EVERY)} from the due time.{last}"
        )
    draft = (
        f"A draft exists (latest {format_time(drafted)})."
        if drafted
        else f"No draft yet: `/postmortem {key}` writes one from the incident record."
    )
    said += f" {draft} Once the team has reviewed it: `/postmortem done {key}`."
    return Message(said, context=why)
