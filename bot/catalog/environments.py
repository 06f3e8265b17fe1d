"""The catalog's `slack:` channels and `environments:` (approvals, freezes, promotion order)."""

from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger
from pydantic import Field, model_validator

from bot.catalog.durations import Duration, PositiveDuration
from bot.catalog.fields import (
    CronExpression,
    Model,
    Name,
    SlackChannel,
    SlackPrincipal,
    TimeZoneName,
    problem,
)

_CHANNEL_PREFIX = re.compile(r"[a-z0-9][a-z0-9_-]{0,20}")


class SlackChannels(Model):
    deploys: SlackChannel
    alerts: SlackChannel
    incidents: SlackChannel


class Slack(Model):
    channels: SlackChannels
    incident_channel_prefix: str = "inc"

    @model_validator(mode="after")
    def _check_prefix(self) -> Slack:
        if not _CHANNEL_PREFIX.fullmatch(self.incident_channel_prefix):
            raise problem(
                "incident_channel_prefix",
                f"bad channel prefix {self.incident_channel_prefix!r} (lowercase letters, digits,"
                " '-' and '_', at most 21)",
            )
        return self


# --- environments ------------------------------------------------------------------------------


class FreezeWindow(Model):
    """Deploys are refused from each time `cron` fires until `duration` later."""

    cron: CronExpression
    duration: PositiveDuration
    timezone: TimeZoneName = "UTC"
    reason: str = ""

    @property
    def tzinfo(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def trigger(self) -> CronTrigger:
        """The APScheduler trigger of the window's starts, in the window's timezone."""
        return CronTrigger.from_crontab(self.cron, timezone=self.tzinfo)


class Environment(Model):
    name: Name
    approvals: int = Field(default=0, ge=0)
    approvers: list[SlackPrincipal] = Field(default_factory=list)
    deployers: list[SlackPrincipal] = Field(default_factory=list)
    monitor: Duration = timedelta(0)
    require_previous: bool = False
    freeze: list[FreezeWindow] = Field(default_factory=list)
    # A deploy waiting for approval gives up (state `expired`, lock released) after this long.
    approval_timeout: Duration = timedelta(hours=1)

    @model_validator(mode="after")
    def _check_approvers(self) -> Environment:
        if self.approvals and not self.approvers:
            raise problem(
                "approvers",
                f"required when approvals is {self.approvals}: who may approve deploys to"
                f" {self.name}?",
            )
        # Without a user group, fewer people than approvals can never approve a deploy.
        if not any(p.startswith("S") for p in self.approvers):
            people = len(set(self.approvers))
            if self.approvers and people < self.approvals:
                raise problem(
                    "approvers",
                    f"{self.approvals} approvals need at least {self.approvals} approvers,"
                    f" got {people}",
                )
        return self
