"""Running a deploy's playbook in this process: its steps in order, with abort and promote.

Each step's outcome is written to the deploy's row before the next starts, so a restart (see
bot/deploys/recovery.py) knows where the run was. How a run ends is bot/deploys/endings.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from bot.catalog import Environment, Service
from bot.db.models import Deploy, utc_now
from bot.deploys.deps import DeployDeps
from bot.deploys.endings import CHANGING_KINDS, DeployEndings, Persist
from bot.deploys.monitor import TriggerFired, monitor_window
from bot.deploys.playbook import Step, StepAborted, StepContext, StepFailed, run_step
from bot.deploys.publisher import DeployPublisher
from bot.deploys.states import RUNNING_STATES, DeployEvent, DeployState
from bot.deploys.store import DeployStore, jsonable, revive
from bot.deploys.watch import record_baseline
from bot.messages import Mention, Message, Result, refused, stored, text
from bot.plugins import make_source
from bot.targets.base import DeployContext, StepResult, Target, TargetError

log = logging.getLogger(__name__)


@dataclass
class ActiveRun:
    """A deploy this process is running: how to interrupt its current step."""

    task: asyncio.Task[None]
    step_event: asyncio.Event = field(default_factory=asyncio.Event)
    deploy: Any = None
    context: Any = None
    details: dict[str, Any] = field(default_factory=dict)
    promote_by: str | None = None
    abort_by: str | None = None
    # Set when the run first has something to show: it changed the target, a step takes a
    # while, or the run ended. The request that started it answers then (see `DeployRequests`).
    news: asyncio.Event = field(default_factory=asyncio.Event)


class _Stopped(Exception):
    """The run ended early (aborted or failed); its ending has been written."""


class DeployEngine:
    quiet_step_seconds = 0.5  # a step done sooner is not announced as running first

    def __init__(
        self,
        deps: DeployDeps,
        store: DeployStore,
        publisher: DeployPublisher,
        endings: DeployEndings,
    ) -> None:
        self.deps = deps
        self.store = store
        self.publisher = publisher
        self.endings = endings
        self.running: dict[int, ActiveRun] = {}

    # -- starting and stopping -------------------------------------------------------------------
    def start(
        self, deploy_id: int, deploy: Deploy | None = None, target: Target | None = None
    ) -> None:
        """Run a deploy in this process (its state says `running`). `deploy` is the row and
        `target` the target when the caller has just written and read them: saves reading again."""
        if deploy_id in self.running:
            return
        task = asyncio.ensure_future(self._run_guarded(deploy_id, deploy, target))
        self.running[deploy_id] = ActiveRun(task)
        task.add_done_callback(lambda _: self.running.pop(deploy_id, None))

    async def news_of(self, deploy_id: int) -> None:
        """Until the run has something to show (see `ActiveRun.news`), a moment at most."""
        run = self.running.get(deploy_id)
        if run is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.quiet_step_seconds):
                    await run.news.wait()

    async def stop_all(self) -> None:
        """Stop every deploy this process runs (shutdown); their state stays for recovery."""
        tasks = [run.task for run in self.running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.publisher.flush()

    async def wait(self, deploy_id: int) -> None:
        """Until this process has finished running the deploy (tests and shutdown)."""
        run = self.running.get(deploy_id)
        if run:
            await asyncio.shield(run.task)

    # -- the run ---------------------------------------------------------------------------------
    async def _run_guarded(
        self, deploy_id: int, known: Deploy | None = None, target: Target | None = None
    ) -> None:
        try:
            await self._run(deploy_id, known, target)
            await self.publisher.flush(deploy_id)
        except Exception:
            # Nothing may end a deploy silently: say it in the thread, keep the lock.
            log.exception("deploy #%s crashed", deploy_id)
            deploy = await self.store.load(deploy_id)
            if deploy is not None:
                await self.store.move(
                    deploy_id,
                    DeployEvent.INTERRUPT,
                    reason="opsbot hit an internal error while running this deploy; it is "
                    "interrupted and still holds the lock. Resume, roll back or release it.",
                )
                deploy = await self.store.load(deploy_id)
                if deploy:
                    await self.publisher.publish(deploy)

    async def _run(
        self, deploy_id: int, known: Deploy | None = None, handed: Target | None = None
    ) -> None:
        deploy = known or await self.store.load(deploy_id)
        if deploy is None or deploy.state not in RUNNING_STATES:
            if handed is not None:
                await handed.close()
            return
        svc, env = self.deps.lookup(deploy.service, deploy.environment)
        details = dict(deploy.details or {})
        steps: list[dict[str, Any]] = [dict(s) for s in details.get("steps", [])]
        target = handed or self.deps.target(svc, env.name)
        rollback = deploy.strategy == "rollback"
        # A rollback takes `previous_version` away and brings `version` back.
        context = DeployContext(
            svc.name,
            env.name,
            deploy.previous_version if rollback and deploy.previous_version else deploy.version,
            deploy.strategy,
            deploy.version if rollback else deploy.previous_version,
            state=dict(details.get("target_state") or {}),
            log=lambda line: self.publisher.say(deploy, line),
        )
        run = self.running[deploy_id]
        run.deploy, run.context, run.details = deploy, context, details

        async def persist() -> None:
            details["steps"] = steps
            details["target_state"] = context.state
            await self.store.save(deploy, details=jsonable(details))
            await self.publisher.publish(deploy)
            run.news.set()

        try:
            for step_record in steps:
                if step_record["status"] not in ("done", "skipped"):
                    await self._step(run, step_record, steps, svc, env, target, persist)
            if rollback or deploy.rollback_of_id is not None:
                await self.endings.finish_rollback(deploy, persist)
            else:
                await self.endings.finish(
                    deploy, DeployEvent.SUCCEED, None, persist, automatic=_automatic(run)
                )
        except _Stopped:
            pass
        finally:
            run.news.set()
            await target.close()

    async def _step(
        self,
        run: ActiveRun,
        step_record: dict[str, Any],
        steps: list[dict[str, Any]],
        svc: Service,
        env: Environment,
        target: Target,
        persist: Persist,
    ) -> None:
        """Run the step `step_record` records, and record what it did; _Stopped when the run
        ended (aborted, or failed and put back)."""
        deploy, context, details = run.deploy, run.context, run.details
        if run.abort_by:
            await self.endings.stop(
                deploy, target, context, steps, persist, aborted_by=run.abort_by
            )
            raise _Stopped
        if step_record["kind"] == "monitor" and deploy.state == DeployState.RUNNING:
            await self.store.move(deploy.id, DeployEvent.MONITOR)
            deploy.state = DeployState.MONITORING
        if step_record["kind"] == "wait" and run.promote_by:
            # Promoted: the remaining waits between canary steps are skipped.
            _promoted(step_record, run.promote_by)
            return
        if step_record["kind"] == "prepare" and "metric_baseline" not in details:
            details["metric_baseline"] = await self._baseline(svc)
        step_record.update(status="running", started_at=utc_now().isoformat(), summary="")
        run.step_event = asyncio.Event()
        step = Step(
            step_record["name"], step_record["kind"], revive(step_record.get("params") or {})
        )
        step_ctx = self._step_context(run, svc, env, target)
        try:
            result = await self._run_step(run, step, step_ctx, persist)
        except StepAborted:
            if run.abort_by is None and run.promote_by and step.kind == "wait":
                _promoted(step_record, run.promote_by)
                await persist()
                return
            step_record.update(status="aborted", finished_at=utc_now().isoformat())
            aborted_by = run.abort_by or "unknown"
            await self.endings.stop(deploy, target, context, steps, persist, aborted_by=aborted_by)
            raise _Stopped from None
        except (StepFailed, TargetError) as exc:
            if isinstance(exc, TriggerFired):
                details["auto_rollback"] = exc.rule
            output = getattr(exc, "output", "")
            step_record.update(
                status="failed", finished_at=utc_now().isoformat(), summary=str(exc)[:200]
            )
            if output:
                await self.publisher.say(deploy, f"Output of *{step.name}*:", output[-2900:])
            await self.endings.fail(
                deploy,
                target,
                context,
                steps,
                persist,
                step_name=step.name,
                why=str(exc),
                automatic=_automatic(run),
            )
            raise _Stopped from None
        context.state.update(result.state)
        status = "skipped" if result.summary.startswith("skipped") else "done"
        step_record.update(
            status=status, finished_at=utc_now().isoformat(), summary=result.summary[:200]
        )
        # What changed the target (and its new state) is written at once; a quick check or a
        # skipped script rides along with the next write: after a crash it simply runs again,
        # which is safe.
        if step.kind in CHANGING_KINDS or result.output or result.state:
            await persist()
        if result.output:
            await self.publisher.say(deploy, f"Output of *{step.name}*:", result.output[-2900:])

    def _step_context(
        self, run: ActiveRun, svc: Service, env: Environment, target: Target
    ) -> StepContext:
        return StepContext(
            deploy=run.context,
            target=target,
            service=svc,
            environment=env,
            workdir=self.deps.workdir,
            env=self.deps.env,
            cancelled=run.step_event,
        )

    async def _run_step(
        self, run: ActiveRun, step: Step, step_ctx: StepContext, persist: Persist
    ) -> StepResult:
        """Run one step; say it is running (a database write and a message update) only when it
        takes longer than a moment, so quick and skipped steps cost one write, not two.

        The step runs in this task, and a timer says it is running: a step with nothing to wait
        for (a skipped script, a baseline without metrics) finishes without giving up the event
        loop, so fifty deploys at once do not queue behind each other's work for every step
        (bench/deploy_overhead.py).
        """
        if step.kind == "rollback":
            work = _rollback_step(step_ctx)
        elif step.kind == "monitor":

            async def say(line: Any) -> None:
                await self.publisher.say(run.deploy, line)

            work = monitor_window(step, step_ctx, deps=self.deps, run=run, persist=persist, say=say)
        else:
            work = run_step(step, step_ctx)
        announcing: list[asyncio.Future[None]] = []
        timer = asyncio.get_running_loop().call_later(
            self.quiet_step_seconds, lambda: announcing.append(asyncio.ensure_future(persist()))
        )
        try:
            return await work
        finally:
            timer.cancel()
            # The step's own outcome is written after "running", never before it.
            for announcement in announcing:
                await announcement

    async def _baseline(self, svc: Service) -> dict[str, float]:
        """Metric values before the change, for triggers such as "p99 > 5× baseline"."""
        if not svc.metrics:
            return {}
        source = make_source(self.deps.catalog.metrics, env=self.deps.env)
        try:
            return await record_baseline(source, svc, self.deps.catalog.rollback_triggers)
        finally:
            await source.close()

    # -- buttons while running -------------------------------------------------------------------
    async def abort(self, *, deploy_id: int, user: str) -> Result:
        deploy = await self.store.load(deploy_id)
        if deploy is None or deploy.state not in RUNNING_STATES:
            state = DeployState(deploy.state).words if deploy else "unknown"
            return refused(f"deploy #{deploy_id} is {state}: there is nothing to abort.")
        if not await self.deps.may_act(deploy, user):
            return refused(
                f"only the requester, deployers or approvers of {deploy.environment} may abort."
            )
        run = self.running.get(deploy_id)
        if run is None:
            return refused(
                f"deploy #{deploy_id} is not running in this opsbot process; if opsbot restarted, "
                "it shows as interrupted with Resume / Roll back / Release lock."
            )
        if run.abort_by:
            return refused(
                text(Mention(run.abort_by), f" is already aborting deploy #{deploy_id}.")
            )
        run.abort_by = user
        run.step_event.set()
        await self.deps.audit(user, "deploy:abort", deploy_id)
        return Result(
            True, Message(f"Aborting deploy #{deploy_id}; what it changed will be put back.")
        )

    async def promote(self, *, deploy_id: int, user: str) -> Result:
        deploy = await self.store.load(deploy_id)
        run = self.running.get(deploy_id)
        waiting = run is not None and bool(run.details.get("inconclusive"))
        if deploy is None or run is None or (deploy.strategy != "canary" and not waiting):
            return refused(
                f"deploy #{deploy_id} is neither a running canary nor waiting for a decision."
            )
        if not await self.deps.may_act(deploy, user):
            return refused(
                f"only the requester, deployers or approvers of {deploy.environment} may promote."
            )
        run.promote_by = user
        run.step_event.set()
        await self.deps.audit(user, "deploy:promote", deploy_id)
        return Result(
            True, Message(f"Promoting deploy #{deploy_id}: the remaining waits are skipped.")
        )


def _automatic(run: ActiveRun) -> str | None:
    """The trigger that failed the run's monitoring window, if one did."""
    return run.details.get("auto_rollback")


def _promoted(step_record: dict[str, Any], user: str) -> None:
    # A step's summary is kept with the deploy (its checklist).
    step_record.update(
        status="skipped",
        finished_at=utc_now().isoformat(),
        summary=stored(text("skipped: promoted by ", Mention(user))),
    )


async def _rollback_step(step_ctx: StepContext) -> StepResult:
    """Put the wanted version back, then read what runs: a rollback that announces one version
    while another runs (a blind `rollout undo` can do that) fails instead of succeeding."""
    wanted = step_ctx.deploy.previous_version  # a rollback's context brings this one back
    try:
        result = await step_ctx.target.rollback(step_ctx.deploy)
        running = await step_ctx.target.current()
    except TargetError as exc:
        raise StepFailed(str(exc)) from exc
    if wanted and running.version != wanted:
        raise StepFailed(
            f"asked to restore {wanted}, but {running.version or 'nothing'} runs now "
            f"({running.detail})"
        )
    return result
