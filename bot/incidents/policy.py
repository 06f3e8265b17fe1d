"""Who is paged when, and when the incident channel is reminded: pure functions of the clock.

The runbook's severity levels: P0 pages immediately; P1 pages during business hours (otherwise
at the start of the next business day, unless someone acknowledges first); P2 is a ticket to fix
within 24 hours (a follow-up, no page); P3 goes to the next sprint (nothing now).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.catalog import WEEKDAYS, BusinessHours, format_duration


@dataclass(frozen=True)
class PageNow:
    reason: str


@dataclass(frozen=True)
class PageAt:
    when: datetime  # aware UTC
    reason: str


@dataclass(frozen=True)
class NoPage:
    reason: str
    followup_due: datetime | None = None


PagingDecision = PageNow | PageAt | NoPage


def _hours_text(hours: BusinessHours) -> str:
    days = ",".join(hours.days)
    return f"{days} {hours.start:%H:%M}–{hours.end:%H:%M} {hours.timezone}"


def next_business_start(now: datetime, hours: BusinessHours) -> datetime:
    """The next moment business hours begin after `now` (aware UTC), in local wall time."""
    zone = ZoneInfo(hours.timezone)
    local = now.astimezone(zone)
    for offset in range(0, 15):
        day = local.date() + timedelta(days=offset)
        if WEEKDAYS[day.weekday()] not in hours.days:
            continue
        start = datetime.combine(day, hours.start, tzinfo=zone)
        if start > local:
            return start.astimezone(UTC)
    raise ValueError("business hours have no day in the next two weeks")  # days is never empty


def paging_decision(
    severity: str,
    now: datetime,
    business_hours: BusinessHours,
    *,
    followup_after: timedelta = timedelta(hours=24),
) -> PagingDecision:
    """Whether to page the on-call for an incident of `severity` declared at `now`, and why."""
    if severity == "P0":
        return PageNow("P0 (critical) pages the on-call immediately, day or night")
    if severity == "P1":
        if business_hours.contains(now):
            return PageNow(
                f"P1 (high) pages during business hours ({_hours_text(business_hours)}), "
                "and it is business hours now"
            )
        start = next_business_start(now, business_hours)
        local = start.astimezone(ZoneInfo(business_hours.timezone))
        return PageAt(
            start,
            f"P1 (high) pages during business hours ({_hours_text(business_hours)}); it is "
            f"outside them now, so the page goes out at {local:%a %Y-%m-%d %H:%M} "
            f"{business_hours.timezone} unless someone acknowledges first",
        )
    if severity == "P2":
        due = now + followup_after
        return NoPage(
            f"P2 (medium) pages nobody; it is a ticket with a follow-up due in "
            f"{format_duration(followup_after)}",
            followup_due=due,
        )
    return NoPage("P3 (low) pages nobody; fix it in the next sprint")


def reminder_due(
    *,
    severity: str,
    last_update: datetime,
    last_reminder: datetime | None,
    now: datetime,
    update_every: dict[str, timedelta],
) -> timedelta | None:
    """The period that passed without an update when a reminder is due now, else None.

    One reminder per period: after a reminder, the next is due a full period later (or after
    the next update's period, whichever is later).
    """
    period = update_every.get(severity)
    if period is None:
        return None
    since = max(last_update, last_reminder) if last_reminder else last_update
    if now - since >= period:
        return period
    return None
