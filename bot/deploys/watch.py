"""The monitoring window: the runbook's rollback triggers, evaluated while the new version serves.

Every `interval` (the catalog's `metrics.poll_interval`) each trigger whose metric the service
defines is read over the last `for + 3 × interval` and judged by `bot.metrics.rules.evaluate`
(consecutive samples covering the `for` duration; see docs/triggers.md). The first breach ends the
window: the deploy is rolled back, and the explanation names the rule, the values, the window and
the baseline. No data is not health: a window that ends with a trigger still inconclusive is
handed to a human instead of passing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import aiohttp

from bot.catalog import RollbackTrigger, Service
from bot.db.models import utc_now
from bot.metrics.base import MetricSource, MetricsUnavailable, Sample
from bot.metrics.rules import Verdict, evaluate, worst
from bot.metrics.sparkline import sparkline

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


async def _health_failing(url: str, timeout: float) -> float:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
            http.get(url) as response,
        ):
            return 0.0 if response.status < 400 else 1.0
    except (aiohttp.ClientError, TimeoutError):
        return 1.0


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
) -> WatchResult:
    """Watch for `duration`; stop at the first breach, or when `cancelled` is set."""
    triggers = applicable(triggers, service)
    health: list[Sample] = []
    health_url = (
        service.health.url_for(env=environment, service=service.name) if service.health else None
    )
    deadline = clock() + duration
    verdicts: list[Verdict] = []
    while True:
        now = clock()
        if health_url and any(t.metric == HEALTH_METRIC for t in triggers):
            health.append(Sample(now, await _health_failing(health_url, 5.0)))
        verdicts = []
        for trigger in triggers:
            verdicts.append(await _judge(trigger, source, service, health, now, interval, baseline))
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
