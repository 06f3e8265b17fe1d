"""What the incidents add up to: the active list and MTTA/MTTR by severity over a period."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select

from bot.catalog import format_duration, parse_duration
from bot.db.models import Incident
from bot.db.session import Database
from bot.incidents import messaging
from bot.incidents.classify import SEVERITY_ORDER
from bot.incidents.states import ACTIVE_STATES, IncidentState
from bot.messages import Message, Result, refused


async def list_active(*, db: Database, now: datetime) -> Result:
    """The incidents still running, most severe first."""
    async with db.session() as session:
        incidents = list(
            await session.scalars(
                select(Incident)
                .where(Incident.state.in_(ACTIVE_STATES))
                .order_by(Incident.severity, Incident.declared_at)
            )
        )
    return Result(True, messaging.list_message(incidents, now))


async def stats(*, db: Database, now: datetime, args: Sequence[str]) -> Result:
    """MTTA and MTTR by severity over a period (`30d` by default)."""
    if len(args) > 1:
        return refused("usage: `/incident stats [<period>]`, e.g. `/incident stats 30d`.")
    period = timedelta(days=30)
    if args:
        try:
            period = parse_duration(args[0])
        except ValueError:
            return refused(f"'{args[0][:20]}' is not a period: write e.g. 7d, 30d, 12h.")
        if period <= timedelta(0):
            return refused("the period must be longer than 0s.")
    since = now - period
    async with db.session() as session:
        incidents = list(
            await session.scalars(select(Incident).where(Incident.declared_at >= since))
        )
    return Result(True, stats_message(incidents, period, now))


def _mean(deltas: list[timedelta]) -> timedelta | None:
    if not deltas:
        return None
    return sum(deltas, timedelta(0)) / len(deltas)


def stats_message(incidents: list[Incident], period: timedelta, now: datetime) -> Message:
    """MTTA (detected → acknowledged) and MTTR (detected → resolved) by severity."""
    rows = [f"{'sev':<4}{'count':>6}{'open':>6}{'MTTA':>10}{'MTTR':>10}"]
    for severity in SEVERITY_ORDER:
        chosen = [i for i in incidents if i.severity == severity]
        if not chosen:
            rows.append(f"{severity:<4}{0:>6}{0:>6}{'—':>10}{'—':>10}")
            continue
        acked = [
            i.acknowledged_at - (i.detected_at or i.declared_at)
            for i in chosen
            if i.acknowledged_at is not None
        ]
        resolved = [
            i.resolved_at - (i.detected_at or i.declared_at)
            for i in chosen
            if i.resolved_at is not None
        ]
        still_open = sum(1 for i in chosen if i.state != IncidentState.RESOLVED)
        rows.append(
            f"{severity:<4}{len(chosen):>6}{still_open:>6}"
            f"{messaging.span(_mean(acked)):>10}{messaging.span(_mean(resolved)):>10}"
        )
    text = (
        f"*Incidents declared in the last {format_duration(period)}* "
        f"(since {messaging.clock(now - period)}): {len(incidents)}"
    )
    return Message(
        text,
        preformatted="\n".join(rows),
        context="MTTA: detected → acknowledged; MTTR: detected → resolved; "
        "averages over the incidents that got there",
    )
