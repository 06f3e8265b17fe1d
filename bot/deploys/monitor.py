"""The playbook's `monitor` step: the one monitoring window of a deploy.

The window lasts the step's `duration`, else the environment's `monitor:` (skipped when that is
zero); it polls every `interval`, else the catalog's `metrics.poll_interval`; `polls` adds a health
guard over the last that many polls. What is watched and how a breach is explained is
bot/deploys/watch.py. A breach fails the step with `TriggerFired` (the engine rolls back); an
inconclusive window asks a person (Promote or Roll back) and waits for the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Protocol

from bot.deploys.deps import DeployDeps
from bot.deploys.playbook import Step, StepAborted, StepContext, StepFailed
from bot.deploys.watch import watch
from bot.messages import Emoji, Mention, stored, text
from bot.plugins import make_source
from bot.targets.base import StepResult


class TriggerFired(StepFailed):
    """A rollback trigger breached during the monitoring window."""

    def __init__(self, explanation: str, rule: str) -> None:
        super().__init__(explanation)
        self.rule = rule


class RunControl(Protocol):
    """What the window needs of the run: its details and how a person's decision arrives."""

    details: dict[str, Any]
    step_event: asyncio.Event
    promote_by: str | None
    abort_by: str | None


def window_of(step: Step, deps: DeployDeps, step_ctx: StepContext) -> tuple[timedelta, timedelta]:
    """(duration, interval): the step's own, else the environment's and the catalog's."""
    duration = step.params.get("duration") or step_ctx.environment.monitor
    interval = step.params.get("interval") or deps.catalog.metrics.poll_interval
    return duration, interval


async def monitor_window(
    step: Step,
    step_ctx: StepContext,
    *,
    deps: DeployDeps,
    run: RunControl,
    persist: Callable[[], Awaitable[None]],
    say: Callable[[Any], Awaitable[None]],
) -> StepResult:
    """Watch the rollback triggers for the window; see the module's docstring."""
    env, svc = step_ctx.environment, step_ctx.service
    duration, interval = window_of(step, deps, step_ctx)
    if duration <= timedelta(0):
        return StepResult(f"skipped: {env.name} has no monitoring window")
    catalog = deps.catalog
    source = make_source(catalog.metrics, env=deps.env) if svc.metrics else None
    try:
        result = await watch(
            source=source,
            service=svc,
            environment=env.name,
            triggers=catalog.rollback_triggers,
            duration=duration,
            interval=interval,
            baseline=dict(run.details.get("metric_baseline") or {}),
            cancelled=step_ctx.cancelled,
            clock=deps.clock,
            target=step_ctx.target,
            health_polls=step.params.get("polls"),
        )
    finally:
        if source is not None:
            await source.close()
    if result.state == "fired" and result.verdict is not None:
        raise TriggerFired(result.explain(interval=interval), result.verdict.rule)
    if result.state == "aborted":
        raise StepAborted("aborted during the monitoring window")
    if result.state == "inconclusive" and result.verdict is not None:
        # No data is not health: a person decides (Promote or Roll back).
        reason = result.verdict.reason
        run.details["inconclusive"] = reason
        await persist()
        await say(
            text(
                Emoji("grey_question"),
                f" The monitoring window was inconclusive: {reason}. "
                "Promote to keep the new version, or Roll back.",
            )
        )
        run.step_event.clear()
        await run.step_event.wait()
        run.details.pop("inconclusive", None)
        if run.abort_by:
            raise StepAborted("rolled back after an inconclusive window")
        # A step's summary is kept with the deploy (its checklist).
        accepted = text("accepted by ", Mention(run.promote_by or "unknown"))
        return StepResult(stored(text(accepted, f" although inconclusive: {reason}")))
    return StepResult(
        f"every rollback trigger within its limit for {int(duration.total_seconds())}s"
    )
