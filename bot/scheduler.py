"""Timed work inside the bot process (APScheduler 3), run by exactly one replica.

Jobs: expire approvals; poll metrics for alerts every `metrics.poll_interval`; check on-call
acknowledgment and engagement deadlines (and send scheduled pages); check certificates daily;
remind incidents without updates and postmortems that are due.

Only the elected leader (bot.leader) runs them: the scheduler starts paused on every replica and
is resumed on election, paused on deposition. Every job also keeps its state in the database and
guards each change with a conditional UPDATE, so a deadline that passed while no leader ran fires
once when the next one starts, and a job that overlaps with a stepping-down leader's last run still
changes each thing once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.leader import Leadership
from bot.services import Services

log = logging.getLogger(__name__)

APPROVAL_EXPIRY_SECONDS = 30


def _clamp(value: timedelta, low: float, high: float) -> float:
    return min(max(value.total_seconds(), low), high)


def job_intervals(services: Services) -> dict[str, float]:
    """Seconds between runs of each job, from the catalog's durations.

    Deadline checks run at a third of the acknowledgment window (1–15 s), so an escalation is
    late by at most that much; reminders at a quarter of the shortest reminder period (5–60 s).
    """
    catalog = services.catalog
    update_every = list(catalog.incidents.update_every.values()) or [timedelta(minutes=15)]
    return {
        "expire-approvals": APPROVAL_EXPIRY_SECONDS,
        "poll-alerts": catalog.metrics.poll_interval.total_seconds(),
        "check-deadlines": _clamp(catalog.oncall.ack_within / 3, 1, 15),
        "check-certificates": 24 * 3600,
        "remind-incidents": _clamp(min(update_every) / 4, 5, 60),
        "remind-postmortems": _clamp(catalog.incidents.postmortem_due / 8, 5, 300),
        "recover-orphans": 15,
    }


def _jobs(services: Services) -> list[tuple[str, str, Callable[[], Awaitable[Any]]]]:
    """(id, name, coroutine function) of every job."""
    return [
        (
            "expire-approvals",
            "expire deploys whose approval did not come in time",
            services.deploys.expire_approvals,
        ),
        ("poll-alerts", "poll metrics and evaluate alert rules", services.alerts.poll),
        ("check-deadlines", "escalate pages past their deadlines", services.paging.check_deadlines),
        ("check-certificates", "check TLS certificates", services.alerts.check_certificates),
        ("remind-incidents", "remind incidents without updates", services.incidents.remind),
        ("remind-postmortems", "remind postmortems that are due", services.postmortems.remind),
        (
            "recover-orphans",
            "interrupt deploys whose opsbot process is gone",
            functools.partial(services.replicas.recover_orphans, services.deploys),
        ),
    ]


def _tracked(
    function: Callable[[], Awaitable[Any]], running: set[asyncio.Task[Any]]
) -> Callable[[], Awaitable[Any]]:
    """`function`, whose runs are in `running` while they last."""

    async def run() -> Any:
        task = asyncio.current_task()
        assert task is not None
        running.add(task)
        try:
            return await function()
        finally:
            running.discard(task)

    return run


def build_scheduler(
    services: Services, running: set[asyncio.Task[Any]] | None = None
) -> AsyncIOScheduler:
    """The scheduler with the bot's jobs; call `.start()` inside the running event loop.
    With `running`, each job's runs are in that set while they last."""
    scheduler = AsyncIOScheduler(
        timezone=UTC,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
    )
    intervals = job_intervals(services)
    now = datetime.now(UTC)
    for job_id, name, function in _jobs(services):
        scheduler.add_job(
            function if running is None else _tracked(function, running),
            "interval",
            seconds=intervals[job_id],
            id=job_id,
            name=name,
            # Run each job as soon as this replica leads: a deadline missed while no leader ran
            # fires now, not one interval later.
            next_run_time=now,
        )
    return scheduler


class LeaderScheduler:
    """The scheduler, run only while this replica holds the leadership."""

    def __init__(self, services: Services, *, retry_every: float | None = None) -> None:
        self._running: set[asyncio.Task[Any]] = set()
        self.scheduler = build_scheduler(services, self._running)
        poll = services.catalog.metrics.poll_interval.total_seconds()
        # Take over within one poll interval of the leader's death: try at half of it (≤ 5 s).
        self.leadership = Leadership(
            services.db.url,
            retry_every=retry_every if retry_every is not None else min(max(poll / 2, 0.5), 5.0),
            on_elected=self._elected,
            on_deposed=self._deposed,
        )

    def start(self) -> None:
        self.scheduler.start(paused=True)
        self.leadership.start()

    async def stop(self) -> None:
        await self.leadership.stop()  # pauses the scheduler: no run starts after this
        if self.scheduler.running:
            # Let the runs in flight finish: shut down under them, each is cancelled mid-query,
            # and on SQLite one cancelled in its transaction can leave the others in a 30 s
            # busy wait for the write lock, so the process hangs at exit (tests/test_run.py).
            if self._running:
                await asyncio.wait(set(self._running), timeout=10)
            self.scheduler.shutdown(wait=False)

    async def _elected(self) -> None:
        now = datetime.now(UTC)
        for job in self.scheduler.get_jobs():
            job.modify(next_run_time=now)
        self.scheduler.resume()

    async def _deposed(self) -> None:
        if self.scheduler.running:
            self.scheduler.pause()
