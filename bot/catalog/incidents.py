"""The catalog's `incidents:` policy: postmortem due date, update reminders, P2 follow-ups."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field

from bot.catalog.durations import PositiveDuration
from bot.catalog.fields import Model


def _default_update_every() -> dict[str, timedelta]:
    return {"P0": timedelta(minutes=15), "P1": timedelta(minutes=30)}


class Incidents(Model):
    # The runbook: a blameless postmortem within 48 hours of resolution.
    postmortem_due: PositiveDuration = timedelta(hours=48)
    # Also write each rendered postmortem into this folder (INC-<n>-<slug>.md); None: only Slack.
    postmortem_dir: Path | None = None
    # Remind the incident channel when no `/incident update` came for this long, per severity.
    update_every: dict[Literal["P0", "P1", "P2", "P3"], PositiveDuration] = Field(
        default_factory=_default_update_every
    )
    # P2: no page, a follow-up due this long after declaration.
    followup_after: PositiveDuration = timedelta(hours=24)
