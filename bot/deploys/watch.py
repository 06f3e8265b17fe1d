"""The monitoring window: the runbook's rollback triggers, evaluated while the new version serves.

Every `interval` (the catalog's `metrics.poll_interval`) each trigger whose metric the service
defines is read over the last `for + 3 × interval` and judged by `bot.metrics.rules.evaluate`
(consecutive samples covering the `for` duration; see docs/triggers.md). The first breach ends the
window: the deploy is rolled back, and the explanation names the rule, the values, the window and
the baseline. No data is not health: a window that ends with a trigger still inconclusive is
handed to a human instead of passing.

`health_failing` is measured here on every poll: the fraction of the service's instances failing
their health check (bot/deploys/health.py; with `{pod_ip}` in `health.url` and a Kubernetes
target, every ready pod), and its reason names the failing instances, how many of how many.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import aiohttp

from bot.catalog import RollbackTrigger, Service
from bot.db.models import utc_now
from bot.deploys.health import HealthSnapshot, check_health
from bot.metrics.base import MetricSource, MetricsUnavailable, Sample
from bot.metrics.rules import Verdict, evaluate, worst
from bot.metrics.sparkline import sparkline
from bot.targets.base import Target

HEALTH_METRIC = "health_failing"


@dataclass
class WatchResult:
    state: Literal["passed", "fired", "inconclusive", "aborted"]
    verdict: Verdict | None = None
    verdicts: list[Verdict] = field(default_factory=list)

    def explain(self, *, interval: timedelta) -> str:
        """The "because": rule, values over the window, baseline, and a sparkline."""
        verdict = self.verdict
        if verdict is None:
            return "every rollback trigger stayed within its limit"
        values = ", ".join(f"{value:.4g}" for value in verdict.values[-12:])
        baseline = f"; baseline {verdict.baseline:.4g}" if verdict.baseline is not None else ""
        return (
            f"{verdict.reason}. Values every {int(interval.total_seconds())}s: {values} "
            f"`{sparkline(verdict.values)}`{baseline}."
        )


def applicable(triggers: Sequence[RollbackTrigger], service: Service) -> list[RollbackTrigger]:
    """The triggers this service can be judged by: a metric it defines, or its health URL."""
    usable = []
    for trigger in triggers:
        if trigger.metric == HEALTH_METRIC:
            if service.health is not None:
                usable.append(trigger)
        elif trigger.metric in service.metrics:
            usable.append(trigger)
    return usable


async def record_baseline(
    source: MetricSource | None, service: Service, triggers: Sequence[RollbackTrigger]
) -> dict[str, float]:
    """The pre-deploy value of every metric a baseline trigger compares against."""
    baseline: dict[str, float] = {}
    if source is None:
        return baseline
    for trigger in triggers:
        if trigger.baseline_factor is None or trigger.metric not in service.metrics:
            continue
        with contextlib.suppress(MetricsUnavailable):
            series = await source.instant(service.metrics[trigger.metric])
            if series and series[0].samples:
                baseline[trigger.metric] = series[0].samples[-1].value
    return baseline


async def watch(
    *,
    source: MetricSource | None,
    service: Service,
    environment: str,
    triggers: Sequence[RollbackTrigger],
    duration: timedelta,
    interval: timedelta,
    baseline: dict[str, float],
    cancelled: asyncio.Event,
    clock: Callable[[], datetime] = utc_now,
    on_poll: Callable[[list[Verdict]], Any] | None = None,
    target: Target | None = None,
    health_polls: int | None = None,
) -> WatchResult:
    """Watch for `duration`; stop at the first breach, or when `cancelled` is set.

    `target` lists the instances when `health.url` names `{pod_ip}` (every ready pod is checked;
    `health_failing` is the fraction failing). Without it such a URL gives no data.
    """
    async with aiohttp.ClientSession() as session:
        return await _watch(
            source=source,
            service=service,
            environment=environment,
            triggers=applicable(triggers, service),
            duration=duration,
            interval=interval,
            baseline=baseline,
            cancelled=cancelled,
            clock=clock,
            on_poll=on_poll,
            target=target,
            session=session,
            health_polls=health_polls,
        )


async def _watch(
    *,
    source: MetricSource | None,
    service: Service,
    environment: str,
    triggers: Sequence[RollbackTrigger],
    duration: timedelta,
    interval: timedelta,
    baseline: dict[str, float],
    cancelled: asyncio.Event,
    clock: Callable[[], datetime],
    on_poll: Callable[[list[Verdict]], Any] | None,
    target: Target | None,
    session: aiohttp.ClientSession,
    health_polls: int | None = None,
) -> WatchResult:
    health: list[Sample] = []
    wanted = health_polls is not None or any(t.metric == HEALTH_METRIC for t in triggers)
    checks_health = service.health is not None and wanted
    polls: list[bool] = []  # per poll with data: True when at most half the instances failed
    snapshot: HealthSnapshot | None = None
    deadline = clock() + duration
    verdicts: list[Verdict] = []
    while True:
        now = clock()
        if checks_health:
            assert service.health is not None
            snapshot = await check_health(
                service.health,
                service=service.name,
                environment=environment,
                target=target,
                session=session,
            )
            # NaN (no instance to check) is kept: evaluate() drops it, so it is a missing sample.
            health.append(Sample(now, snapshot.value))
            if not snapshot.no_data:
                polls.append(not snapshot.value > 0.5)
        verdicts = []
        for trigger in triggers:
            verdict = await _judge(trigger, source, service, health, now, interval, baseline)
            if trigger.metric == HEALTH_METRIC and snapshot is not None:
                verdict = _with_instances(verdict, snapshot)
            verdicts.append(verdict)
        if health_polls is not None and snapshot is not None:
            guard = _health_guard(polls, health_polls, health, snapshot)
            if guard is not None:
                verdicts.append(guard)
        if on_poll is not None:
            await on_poll(verdicts)
        deciding = worst(verdicts)
        if deciding is not None and deciding.state == "breach":
            return WatchResult("fired", deciding, verdicts)
        remaining = (deadline - clock()).total_seconds()
        if remaining <= 0:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(cancelled.wait(), min(interval.total_seconds(), remaining))
        if cancelled.is_set():
            return WatchResult("aborted", None, verdicts)
    deciding = worst(verdicts)
    if deciding is not None and deciding.state == "inconclusive":
        return WatchResult("inconclusive", deciding, verdicts)
    return WatchResult("passed", None, verdicts)


async def _judge(
    trigger: RollbackTrigger,
    source: MetricSource | None,
    service: Service,
    health: list[Sample],
    now: datetime,
    interval: timedelta,
    baseline: dict[str, float],
) -> Verdict:
    if trigger.metric == HEALTH_METRIC:
        samples: Sequence[Sample] = health
    elif source is None:
        samples = []
    else:
        window = trigger.for_ + 3 * interval
        try:
            series = await source.range(
                service.metrics[trigger.metric], start=now - window, end=now, step=interval
            )
            samples = series[0].samples if series else ()
        except MetricsUnavailable:
            samples = ()
    return evaluate(
        trigger, samples, now=now, interval=interval, baseline=baseline.get(trigger.metric)
    )


def health_guard_tripped(polls: Sequence[bool], window: int) -> bool:
    """Has the health check failed in more than half of the last `window` polls (True = ok)?"""
    failures = sum(1 for ok in list(polls)[-window:] if not ok)
    return failures * 2 > window


def _health_guard(
    polls: list[bool], window: int, health: list[Sample], snapshot: HealthSnapshot
) -> Verdict | None:
    """The guard's breach, or None: more than half of the last `window` polls failed."""
    if not health_guard_tripped(polls, window):
        return None
    recent = polls[-window:]
    failed = sum(1 for ok in recent if not ok)
    return Verdict(
        rule="health-polls",
        metric=HEALTH_METRIC,
        state="breach",
        limit=0.5,
        baseline=None,
        op=">",
        for_=timedelta(0),
        held_for=timedelta(0),
        values=tuple(sample.value for sample in health[-window:]),
        newest=snapshot.value,
        reason=f"the health check failed {failed} of the last {len(recent)} polls while"
        f" monitoring: {snapshot.summary()}",
    )


def _with_instances(verdict: Verdict, snapshot: HealthSnapshot) -> Verdict:
    """The health verdict's reason, with which instances failed (how many of how many), or why
    there was nothing to check."""
    return dataclasses.replace(verdict, reason=f"{verdict.reason} — {snapshot.summary()}")
