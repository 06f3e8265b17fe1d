"""Reading incidents and their timeline, and recording timeline entries: the domain's queries."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Update, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import Incident, TimelineEvent
from bot.db.session import Database
from bot.db.statements import insert_or_ignore
from bot.incidents import messaging
from bot.incidents.states import ACTIVE_STATES, IncidentState
from bot.messages import Result, RichText, refused, stored


async def load(db: Database, incident_id: int) -> Incident | None:
    """INC-`incident_id`, or None."""
    async with db.session() as session:
        return await session.get(Incident, incident_id)


async def by_channel(db: Database, channel_id: str | None) -> Incident | None:
    """The incident whose channel `channel_id` is, or None."""
    if not channel_id:
        return None
    async with db.session() as session:
        return await session.scalar(
            select(Incident).where(Incident.channel_id == channel_id).limit(1)
        )


async def running(db: Database) -> list[Incident]:
    """The incidents that are not resolved yet."""
    async with db.session() as session:
        return list(
            await session.scalars(select(Incident).where(Incident.state.in_(ACTIVE_STATES)))
        )


async def in_channel(
    db: Database, channel_id: str | None, verb: str, *, prefix: str
) -> Incident | Result:
    """The incident whose channel this is (and active), or the refusal to answer."""
    incident = await by_channel(db, channel_id)
    if incident is None:
        return refused(
            f"`/incident {verb}` works in an incident's own channel (#"
            f"{prefix}-<n>-…), and this is not one. "
            "`/incident list` shows the active incidents and their channels."
        )
    if incident.state == IncidentState.RESOLVED and verb != "resolve":
        return refused(
            f"{incident.key} was resolved at {messaging.clock(incident.resolved_at)}; "
            "it cannot change any more."
        )
    return incident


async def changed(session: AsyncSession, statement: Update) -> bool:
    """Run a guarded UPDATE of one row; False when its guard let nothing change (someone else
    got there first, or the state no longer allows it)."""
    result = cast(CursorResult[Any], await session.execute(statement))
    return result.rowcount == 1


def add_entry(
    session: AsyncSession,
    incident_id: int,
    kind: str,
    text: RichText,
    *,
    at: datetime,
    actor: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """A timeline entry, in the transaction of the change it records."""
    session.add(
        TimelineEvent(
            incident_id=incident_id,
            at=at,
            kind=kind,
            actor=actor,
            text=stored(text),
            data=data,
        )
    )


async def add_entry_once(
    db: Database,
    incident_id: int,
    kind: str,
    text: RichText,
    *,
    at: datetime,
    source_key: str,
    actor: str | None = None,
    data: dict[str, Any] | None = None,
) -> bool:
    """A timeline entry recorded once per (incident, source_key); True if it is new."""
    async with db.transaction() as session:
        values = {
            "incident_id": incident_id,
            "at": at,
            "kind": kind,
            "actor": actor,
            "text": stored(text),
            "data": data,
            "source_key": source_key[:255],
        }
        return await insert_or_ignore(session, TimelineEvent, values)


async def timeline(db: Database, incident_id: int) -> list[TimelineEvent]:
    """An incident's timeline, oldest first."""
    async with db.session() as session:
        return list(
            await session.scalars(
                select(TimelineEvent)
                .where(TimelineEvent.incident_id == incident_id)
                .order_by(TimelineEvent.at, TimelineEvent.id)
            )
        )
