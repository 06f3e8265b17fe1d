"""Who is on call for a service: PagerDuty's `oncalls` for its escalation policy, or the
catalog's static rotation. People are shown as Slack mentions when their e-mail finds them."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from bot.catalog import Catalog, OncallSchedule, Shift
from bot.db.models import utc_now
from bot.messages import Mention
from bot.oncall.pagerduty import PagerDutyApi, PagerDutyError

_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,}")
Source = Literal["pagerduty", "static"]


class PeopleDirectory(Protocol):
    """Finds a chat user by e-mail (Slack: users.lookupByEmail)."""

    async def user_id_for_email(self, email: str) -> str | None: ...


@dataclass(frozen=True)
class Person:
    """Someone on call: a Slack user when known, else a name (and e-mail) from PagerDuty."""

    name: str
    slack_id: str | None = None
    email: str | None = None
    pagerduty_id: str | None = None

    @property
    def shown(self) -> Mention | str:
        """How messages name them: a mention when Slack knows them, else their name."""
        return Mention(self.slack_id) if self.slack_id else self.name


@dataclass(frozen=True)
class OnCall:
    """The primary (level 1) and secondary (level 2) on call for a service, and where from."""

    service: str | None
    primary: Person | None
    secondary: Person | None
    source: Source
    escalation_policy: str | None = None
    # Static rotation only: the Events API keys that page the primary and the secondary.
    primary_routing_key: str | None = None
    secondary_routing_key: str | None = None
    until: datetime | None = None  # when this shift hands off, when known


class OncallUnavailable(Exception):
    """The on-call cannot be told (no policy configured, PagerDuty failing); says why."""


class OncallDirectory:
    def __init__(
        self,
        *,
        catalog: Catalog,
        pagerduty: PagerDutyApi,
        people: PeopleDirectory | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.catalog = catalog
        self.pagerduty = pagerduty
        self.people = people
        self.clock = clock

    @property
    def provider(self) -> Source:
        return self.catalog.oncall.provider

    def escalation_policy(self, service: str | None) -> str | None:
        """The service's `pagerduty.escalation_policy`, else `oncall.escalation_policy`."""
        entry = self.catalog.service(service) if service else None
        if entry is not None and entry.pagerduty and entry.pagerduty.escalation_policy:
            return entry.pagerduty.escalation_policy
        return self.catalog.oncall.escalation_policy

    async def who(self, service: str | None) -> OnCall:
        """Who is on call for `service` (None: the default policy or rotation) right now."""
        if self.provider == "static":
            return await self._static(service)
        policy = self.escalation_policy(service)
        if policy is None:
            where = f"services[{service}].pagerduty.escalation_policy or " if service else ""
            raise OncallUnavailable(
                f"no escalation policy is configured (set {where}oncall.escalation_policy)"
            )
        try:
            entries = await self.pagerduty.oncalls(policy)
        except PagerDutyError as exc:
            raise OncallUnavailable(str(exc)) from exc
        primary = await self._level(entries, 1)
        secondary = await self._level(entries, 2)
        return OnCall(
            service=service,
            primary=primary[0] if primary else None,
            secondary=secondary[0] if secondary else None,
            source="pagerduty",
            escalation_policy=policy,
            until=primary[1] if primary else None,
        )

    async def _level(
        self, entries: list[dict[str, Any]], level: int
    ) -> tuple[Person, datetime | None] | None:
        for entry in entries:
            if entry.get("escalation_level") != level or not isinstance(entry.get("user"), dict):
                continue
            user = entry["user"]
            email = user.get("email")
            name = str(user.get("name") or user.get("summary") or user.get("id") or "someone")
            slack_id = await self._slack_id(email) if email else None
            return Person(name, slack_id, email, user.get("id")), _parse_time(entry.get("end"))
        return None

    async def _slack_id(self, email: str) -> str | None:
        if self.people is None:
            return None
        return await self.people.user_id_for_email(email)

    async def _static(self, service: str | None) -> OnCall:
        schedule = self.catalog.oncall.schedule
        assert schedule is not None  # the catalog requires it with provider: static
        now = self.clock()
        shift: Shift = schedule.shift_at(now)
        return OnCall(
            service=service,
            primary=await self._person(shift.primary),
            secondary=await self._person(shift.secondary) if shift.secondary else None,
            source="static",
            primary_routing_key=shift.primary_routing_key,
            secondary_routing_key=shift.secondary_routing_key,
            until=_next_handoff(schedule, now),
        )

    async def _person(self, who: str) -> Person:
        if _SLACK_USER.fullmatch(who):
            return Person(who, slack_id=who)
        return Person(who, slack_id=await self._slack_id(who), email=who)

    def close(self) -> None:
        self.pagerduty.close()


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _next_handoff(schedule: OncallSchedule, now: datetime) -> datetime | None:
    """When the shift on duty at `now` hands off (None for a rotation of one)."""
    if len(schedule.shifts) == 1:
        return None
    zone = ZoneInfo(schedule.timezone)
    first_handoff = datetime.combine(schedule.start, schedule.handoff, tzinfo=zone)
    period = timedelta(days=1 if schedule.rotation == "daily" else 7)
    # The same wall-clock arithmetic as OncallSchedule.shift_at.
    index = (now.astimezone(zone) - first_handoff) // period
    return (first_handoff + (index + 1) * period).astimezone(UTC)
