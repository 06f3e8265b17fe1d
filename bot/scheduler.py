"""Timed work inside the bot process (APScheduler 3): approval expiry now; polling later.

Every job is idempotent and guarded in the database (a conditional UPDATE per row), so a job that
runs on two replicas at once still changes each thing once. Electing one scheduler per database
(a PostgreSQL advisory lock) arrives with the alerting loop, whose polls must not be doubled.
"""

from __future__ import annotations

import logging
from datetime import UTC

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.app import Services

log = logging.getLogger(__name__)

APPROVAL_EXPIRY_SECONDS = 30


def build_scheduler(services: Services) -> AsyncIOScheduler:
    """The scheduler with the bot's jobs; call `.start()` inside the running event loop."""
    scheduler = AsyncIOScheduler(
        timezone=UTC,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
    )
    scheduler.add_job(
        services.deploys.expire_approvals,
        "interval",
        seconds=APPROVAL_EXPIRY_SECONDS,
        id="expire-approvals",
        name="expire deploys whose approval did not come in time",
    )
    return scheduler
