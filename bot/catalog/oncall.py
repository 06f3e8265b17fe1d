"""The catalog's `oncall:` policy: provider, deadlines, business hours, a static rotation."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, model_validator

from bot.catalog.durations import PositiveDuration, format_duration
from bot.catalog.fields import (
    WEEKDAYS,
    ClockTime,
    Model,
    Person,
    TimeZoneName,
    Weekday,
    check_escalation_policy,
    problem,
)


class BusinessHours(Model):
    timezone: TimeZoneName = "UTC"
    days: Annotated[list[Weekday], Field(min_length=1)] = Field(
        default_factory=lambda: list(WEEKDAYS[:5])
    )
    start: ClockTime = time(9, 0)
    end: ClockTime = time(18, 0)

    @model_validator(mode="after")
    def _check_order(self) -> BusinessHours:
        if self.end <= self.start:
            raise problem("end", f"must be after start ({self.start:%H:%M})")
        return self

    def contains(self, when: datetime) -> bool:
        """Whether the aware datetime `when` falls inside business hours."""
        local = when.astimezone(ZoneInfo(self.timezone))
        return WEEKDAYS[local.weekday()] in self.days and self.start <= local.time() < self.end


class Shift(Model):
    """Who is on duty in a static rotation, and the Events API routing keys that page them.

    A missing routing key falls back to the service's `pagerduty.routing_key`, then to
    `oncall.default_routing_key`.
    """

    primary: Person
    secondary: Person | None = None
    primary_routing_key: str | None = Field(default=None, repr=False)
    secondary_routing_key: str | None = Field(default=None, repr=False)


class OncallSchedule(Model):
    """A static rotation: `shifts` take turns, one per day or week, handing off at `handoff`."""

    rotation: Literal["daily", "weekly"] = "weekly"
    start: date
    handoff: ClockTime = time(9, 0)
    timezone: TimeZoneName = "UTC"
    shifts: Annotated[list[Shift], Field(min_length=1)]

    def shift_at(self, when: datetime) -> Shift:
        """The shift on duty at the aware datetime `when` (handoffs follow local wall time)."""
        zone = ZoneInfo(self.timezone)
        first_handoff = datetime.combine(self.start, self.handoff, tzinfo=zone)
        period = timedelta(days=1 if self.rotation == "daily" else 7)
        index = (when.astimezone(zone) - first_handoff) // period
        return self.shifts[index % len(self.shifts)]


class Oncall(Model):
    provider: Literal["pagerduty", "static"] = "pagerduty"
    ack_within: PositiveDuration = timedelta(minutes=15)
    engage_within: PositiveDuration = timedelta(minutes=30)
    business_hours: BusinessHours = Field(default_factory=BusinessHours)
    default_routing_key: str | None = Field(default=None, repr=False)
    escalation_policy: str | None = None
    schedule: OncallSchedule | None = None

    @model_validator(mode="after")
    def _check_provider(self) -> Oncall:
        if self.provider == "static" and self.schedule is None:
            raise problem("schedule", "required when provider is static")
        if self.provider == "pagerduty" and self.schedule is not None:
            raise problem("schedule", "only used with provider: static")
        check_escalation_policy(self.escalation_policy)
        if self.engage_within < self.ack_within:
            raise problem(
                "engage_within",
                f"must not be shorter than ack_within ({format_duration(self.ack_within)})",
            )
        return self
