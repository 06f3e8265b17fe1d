"""Deploys as a persisted state machine: request (gates), approval, run, abort, recovery.

    requested -> awaiting_approval -> running -> monitoring -> succeeded
                      |                  |            |     -> failed | rolled_back | aborted
                      +-> rejected | expired          +-> interrupted (the bot stopped mid-run)

Every transition is a conditional UPDATE (`transition`), so a double click, a Slack retry or a
second replica cannot move a deploy twice. The lock on (service, environment) is taken in the same
transaction that creates the deploy and released only by the deploy that holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from sqlalchemy import CursorResult, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import audit
from bot.catalog import Catalog, Environment, Service
from bot.certificates import default_ssl_context, probe_certificate
from bot.db.models import DEPLOY_FINAL_STATES, Approval, Deploy, utc_now
from bot.db.session import Database
from bot.deploys import gates, locks, records
from bot.deploys.messaging import deploy_message
from bot.deploys.playbook import (
    Playbook,
    PlaybookError,
    Step,
    StepAborted,
    StepContext,
    StepFailed,
    expand_steps,
    playbook_for,
    run_check,
    run_step,
)
from bot.deploys.watch import record_baseline, watch
from bot.events import EventBus, ServiceEvent
from bot.messages import Message, MessageRef, Notifier, Result, refused
from bot.plugins import make_source, make_target
from bot.targets.base import DeployContext, StepResult, Target, TargetError

log = logging.getLogger(__name__)

ACTIVE_STATES = ("requested", "awaiting_approval", "running", "monitoring", "interrupted")
# Steps that change the target: once one has started, a failure must put things back.
CHANGING_KINDS = ("prepare", "shift_traffic", "finalize", "rollback")


class Directory(Protocol):
    """Resolves which user groups (S…) among some principals a user belongs to."""

    async def groups_of(self, user_id: str, among: Collection[str]) -> set[str]: ...


class TriggerFired(StepFailed):
    """A rollback trigger breached during the monitoring window."""

    def __init__(self, explanation: str, rule: str) -> None:
        super().__init__(explanation)
        self.rule = rule


@dataclass
class DeployDeps:
    db: Database
    catalog: Catalog
    notifier: Notifier
    directory: Directory
    playbooks: Mapping[str, Playbook]
    env: Mapping[str, str]
    workdir: Path
    target_factory: Callable[..., Target] = make_target
    clock: Callable[[], datetime] = utc_now
    # Finished deploys and rollbacks are told here (incident timelines listen); None: nobody.
    events: EventBus | None = None


async def transition(
    session: AsyncSession,
    deploy_id: int,
    from_states: Collection[str],
    to_state: str,
    **values: Any,
) -> bool:
    """Move a deploy to `to_state` only if it is in one of `from_states` now; True if it moved."""
    statement = (
        update(Deploy)
        .where(Deploy.id == deploy_id, Deploy.state.in_(list(from_states)))
        .values(state=to_state, updated_at=utc_now(), **values)
    )
    result = cast(CursorResult[Any], await session.execute(statement))
    return result.rowcount == 1


@dataclass
class _Running:
    """A deploy this process is running: how to interrupt its current step."""

    task: asyncio.Task[None]
    step_event: asyncio.Event = field(default_factory=asyncio.Event)
    deploy: Any = None
    context: Any = None
    details: dict[str, Any] = field(default_factory=dict)
    promote_by: str | None = None
    abort_by: str | None = None
    # Set when the run first has something to show: it changed the target, a step takes a
    # while, or the run ended. The request that started it answers then (see `_create`).
    news: asyncio.Event = field(default_factory=asyncio.Event)


class Deploys:
    """The deploy service: one method per thing a person (or the bot's start-up) can ask."""

    update_interval = 1.0  # seconds between two updates of one deploy's message
    quiet_step_seconds = 0.5  # a step done sooner is not announced as running first

    def __init__(self, deps: DeployDeps) -> None:
        self.deps = deps
        self.running: dict[int, _Running] = {}
        self._pending: dict[int, tuple[MessageRef, Message]] = {}
        self._publishers: dict[int, asyncio.Task[None]] = {}
        self._posting: dict[int, asyncio.Future[None]] = {}  # a first post on its way

    # -- helpers ---------------------------------------------------------------------------------
    def _lookup(self, service: str, environment: str) -> tuple[Service, Environment]:
        svc = self.deps.catalog.service(service)
        env = self.deps.catalog.environment(environment)
        assert svc is not None and env is not None  # the grammar validated both
        return svc, env

    def _target(self, service: Service, environment: str) -> Target:
        return self.deps.target_factory(
            service.targets[environment],
            service=service.name,
            environment=environment,
            env=self.deps.env,
        )

    async def _succeeded_versions(self, service: str, environment: str) -> list[str]:
        statement = (
            select(Deploy.version)
            .where(
                Deploy.service == service,
                Deploy.environment == environment,
                Deploy.state == "succeeded",
                Deploy.dry_run.is_(False),
            )
            .order_by(Deploy.finished_at.desc(), Deploy.id.desc())
        )
        async with self.deps.db.session() as session:
            return list(await session.scalars(statement))

    async def _load(self, deploy_id: int) -> Deploy | None:
        async with self.deps.db.session() as session:
            return await session.get(Deploy, deploy_id)

    def _message(self, deploy: Deploy) -> Message:
        env = self.deps.catalog.environment(deploy.environment)
        return deploy_message(deploy, approvals_required=env.approvals if env else 0)

    async def _publish(self, deploy: Deploy) -> None:
        """Post the deploy's message, or update it in place; Slack trouble never stops a deploy.

        Updates are coalesced: at most one chat.update per deploy every `update_interval`
        seconds, always with the newest state (Slack rate-limits chat.update; fifty deploys
        stepping at once must not flood it). `flush` sends what is pending.
        """
        await self._posted(deploy)
        if deploy.message_ts and deploy.channel:
            self._pending[deploy.id] = (
                MessageRef(deploy.channel, deploy.message_ts),
                self._message(deploy),
            )
            if deploy.id not in self._publishers:
                self._publishers[deploy.id] = asyncio.ensure_future(self._publisher(deploy.id))
            return
        message = self._message(deploy)
        posting = self._posting[deploy.id] = asyncio.get_running_loop().create_future()
        try:
            channel = self._channel_for(deploy.service)
            ref = await self.deps.notifier.post(channel, message)
        except Exception:
            log.exception("could not publish the message of deploy #%s", deploy.id)
            return
        else:
            deploy.channel, deploy.message_ts, deploy.thread_ts = ref.channel, ref.ts, ref.ts
            async with self.deps.db.autocommit() as connection:  # one Core statement
                await connection.execute(
                    _UPDATE_DEPLOY,
                    {
                        "deploy_id": deploy.id,
                        "channel": ref.channel,
                        "message_ts": ref.ts,
                        "thread_ts": ref.ts,
                        "updated_at": utc_now(),
                    },
                )
        finally:
            del self._posting[deploy.id]
            posting.set_result(None)

    async def _posted(self, deploy: Deploy) -> None:
        """Until the deploy's first message, if it is being posted, is out (or has failed): an
        update or a thread line must not race it and post a second message, or none."""
        posting = self._posting.get(deploy.id)
        if posting is not None:
            await asyncio.shield(posting)

    async def publish(self, deploy: Deploy) -> None:
        """Post or update the deploy's message (for the rollback service)."""
        await self._publish(deploy)

    async def _publisher(self, deploy_id: int) -> None:
        try:
            while deploy_id in self._pending:
                ref, message = self._pending.pop(deploy_id)
                try:
                    await self.deps.notifier.update(ref, message)
                except Exception:
                    log.exception("could not update the message of deploy #%s", deploy_id)
                if deploy_id in self._pending:
                    await asyncio.sleep(self.update_interval)  # deliberate: Slack's rate limit
        finally:
            self._publishers.pop(deploy_id, None)

    async def flush(self, deploy_id: int | None = None) -> None:
        """Wait until pending message updates (of one deploy, or all) have been sent."""
        while True:
            tasks = [
                task
                for key, task in self._publishers.items()
                if deploy_id is None or key == deploy_id
            ]
            if not tasks:
                return
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _say(self, deploy: Deploy, text: str, preformatted: str | None = None) -> None:
        """A line in the deploy's thread (details, command output)."""
        await self._posted(deploy)
        if not (deploy.channel and deploy.thread_ts):
            return
        thread = MessageRef(deploy.channel, deploy.thread_ts, deploy.thread_ts)
        try:
            await self.deps.notifier.post(
                deploy.channel, Message(text, preformatted=preformatted), thread=thread
            )
        except Exception:
            log.exception("could not post to the thread of deploy #%s", deploy.id)

    def _channel_for(self, service: str) -> str:
        svc = self.deps.catalog.service(service)
        channel = getattr(svc, "channel", None) if svc else None
        return channel or self.deps.catalog.slack.channels.deploys

    async def _audit(self, actor: str, action: str, deploy_id: int) -> None:
        await audit.record(
            self.deps.db, actor=actor, action=action, outcome="ok", detail={"deploy": deploy_id}
        )

    async def _save(self, deploy: Deploy, **values: Any) -> None:
        # One Core UPDATE: an ORM session and a transaction cost more than the statement here.
        async with self.deps.db.autocommit() as connection:
            await connection.execute(
                _UPDATE_DEPLOY, {"deploy_id": deploy.id, "updated_at": utc_now(), **values}
            )
        for key, value in values.items():
            setattr(deploy, key, value)

    # -- request ---------------------------------------------------------------------------------
    async def request(
        self,
        *,
        service: str,
        environment: str,
        version: str | None,
        strategy: str | None,
        dry_run: bool,
        requester: str,
    ) -> Result:
        """`/deploy <service> <env> [<version>]`: check every gate, then start or await approval."""
        svc, env = self._lookup(service, environment)
        target_config = svc.targets.get(env.name)
        if target_config is None:
            where = ", ".join(svc.targets) or "nowhere"
            return refused(f"{svc.name} has no target in {env.name} (it deploys to: {where}).")
        strategy = strategy or target_config.strategy
        allowed = type(target_config).model_fields["strategy"].annotation.__args__  # type: ignore[union-attr]
        if strategy not in allowed:
            return refused(
                f"{svc.name} in {env.name} is a {target_config.kind} target: strategy {strategy} "
                f"is not possible there (possible: {', '.join(allowed)})."
            )

        results: list[gates.GateResult] = []
        groups = await self.deps.directory.groups_of(requester, env.deployers)
        results.append(gates.check_deployer(env, requester, groups))
        results.append(gates.check_freeze(env, self.deps.clock()))

        previous_env = self.deps.catalog.previous_environment(env.name)
        if version is None:
            if previous_env is None:
                return refused(
                    f"give a version: {env.name} is the first environment, so there is nothing to "
                    "promote from (`/deploy <service> <env> <version>`)."
                )
            promoted = await self._succeeded_versions(svc.name, previous_env.name)
            if not promoted:
                return refused(
                    f"give a version: nothing has succeeded in {previous_env.name} yet to promote "
                    f"to {env.name}."
                )
            version = promoted[0]
        if env.require_previous and previous_env is not None:
            succeeded = await self._succeeded_versions(svc.name, previous_env.name)
            results.append(gates.check_promotion(self.deps.catalog, env, version, succeeded))
        results.extend(await self._certificate_gates(svc, env))

        try:
            playbook = playbook_for(self.deps.playbooks, service=svc, strategy=strategy)
        except PlaybookError as exc:
            return refused(f"no playbook for this deploy: {'; '.join(exc.problems)}")
        # The lock is read here only when the answer needs it: a refusal names the lock before
        # lesser gates, a dry run shows it, and custom checks are not run against a locked
        # target. Otherwise the deploy takes it atomically when it is created, and a holder found
        # there is refused with the same sentence: a database round trip less per deploy.
        if dry_run or playbook.checks or gates.evaluate(results):
            holder = await locks.holder_of(self.deps.db, service=svc.name, environment=env.name)
            if holder:
                results.append(_lock_refusal(svc.name, env.name, holder))
        target = self._target(svc, env.name)
        handed_on = False
        try:
            running = await target.current()
            context = DeployContext(
                svc.name, env.name, version, strategy, running.version, state=dict(running.state)
            )
            if not gates.evaluate(results):
                step_ctx = self._step_context(context, target, svc, env, asyncio.Event())
                for check in playbook.checks:
                    results.append(await run_check(check, step_ctx))
            plan = target.plan(context) if dry_run else []
            steps = expand_steps(playbook, target_config=target_config)
            if dry_run:
                return self._dry_run_answer(
                    svc, env, version, strategy, running.version, results, plan, steps
                )
            failure = gates.evaluate(results)
            if failure:
                return refused(
                    f"deploy of {svc.name} {version} to {env.name} refused by {failure.reason}"
                )
            # The run goes on with this target (and what it just read): one API read less.
            handed_on = True
            return await self._create(
                svc, env, version, strategy, running.version, requester, steps, target
            )
        except TargetError as exc:
            return refused(f"cannot read what runs in {env.name}: {exc}")
        finally:
            if not handed_on:
                await target.close()

    async def _certificate_gates(self, svc: Service, env: Environment) -> list[gates.GateResult]:
        """Runbook: "SSL certificates valid (> 30 days remaining)" — checked for the last env."""
        names = self.deps.catalog.environment_names()
        if not names or env.name != names[-1]:
            return []
        hosts = {(c.host, c.port): c.warn_before for c in self.deps.catalog.certificates}
        if svc.health is not None and not svc.health.per_instance:
            # The service's own host, when it serves HTTPS, must be valid for 30 days too (a
            # per-pod URL names no host of its own: the pods' addresses are not known yet).
            url = urlsplit(svc.health.url_for(env=env.name, service=svc.name))
            if url.scheme == "https" and url.hostname:
                hosts.setdefault((url.hostname, url.port or 443), timedelta(days=30))
        if not hosts:
            return []
        context = default_ssl_context(self.deps.env)
        return [
            await probe_certificate(
                host, port, now=self.deps.clock(), min_valid=min_valid, ssl_context=context
            )
            for (host, port), min_valid in hosts.items()
        ]

    def _step_context(
        self,
        context: DeployContext,
        target: Target,
        svc: Service,
        env: Environment,
        cancelled: asyncio.Event,
    ) -> StepContext:
        return StepContext(
            deploy=context,
            target=target,
            service=svc,
            environment=env,
            workdir=self.deps.workdir,
            env=self.deps.env,
            cancelled=cancelled,
        )

    def _dry_run_answer(
        self,
        svc: Service,
        env: Environment,
        version: str,
        strategy: str,
        running: str | None,
        results: list[gates.GateResult],
        plan: list[str],
        steps: list[Step],
    ) -> Result:
        verdict = gates.evaluate(results)
        gate_lines = [f"{'✓' if r.passed else '✗'} {r.reason}" for r in results]
        head = (
            f"*Dry run:* deploy {svc.name} {version} to {env.name} ({strategy}); "
            f"now running: {running or 'nothing'}. Nothing was changed."
        )
        verdict_text = f"It would be refused: {verdict.reason}" if verdict else "Every gate passes."
        body = "\n".join(
            [
                "Gates:",
                *gate_lines,
                "",
                "Steps:",
                *(f"{i}. {step.name} ({step.kind})" for i, step in enumerate(steps, 1)),
                "",
                "Calls it would make:",
                *plan,
            ]
        )
        return Result(True, Message(f"{head}\n{verdict_text}", preformatted=body))

    async def _create(
        self,
        svc: Service,
        env: Environment,
        version: str,
        strategy: str,
        previous: str | None,
        requester: str,
        steps: list[Step],
        target: Target,
    ) -> Result:
        """Record the deploy with its lock and audit entry, post its message, and start it (or
        wait for approval). `target` is handed on to the run, which closes it."""
        now = self.deps.clock()
        state = "awaiting_approval" if env.approvals else "running"
        details = {
            "steps": [
                {"name": s.name, "kind": s.kind, "params": s.params, "status": "pending"}
                for s in steps
            ],
            "target_state": {},
            "approved_by": [],
        }
        values: dict[str, Any] = {
            "service": svc.name,
            "environment": env.name,
            "version": version,
            "previous_version": previous,
            "strategy": strategy,
            "state": state,
            "requested_by": requester,
            "dry_run": False,
            "details": _jsonable(details),
            "created_at": now,
            "updated_at": now,
            "started_at": None if env.approvals else now,
            "approval_expires_at": now + env.approval_timeout if env.approvals else None,
        }
        started = False
        try:
            deploy_id = await records.insert_holding_lock(
                self.deps.db,
                values,
                action="deploy:requested",
                detail={"service": svc.name, "environment": env.name, "version": version},
            )
            if deploy_id is None:
                holder = await locks.holder_of(self.deps.db, service=svc.name, environment=env.name)
                lock = _lock_refusal(svc.name, env.name, holder or locks.unknown_holder())
                return refused(
                    f"deploy of {svc.name} {version} to {env.name} refused by {lock.reason}"
                )
            deploy = Deploy(id=deploy_id, **values)
            if state == "running":
                self.start(deploy.id, deploy, target)
                started = True
                # The change goes first, the messages about it right after: the run posts the
                # deploy's message with its first news (a write to the target, a step that takes
                # longer than a moment, or its end), and the reply waits for that, at most a
                # moment. Fifty deploys at once reach their targets without queuing behind each
                # other's Slack messages and bookkeeping (bench/deploy_overhead.py).
                await self._news_of(deploy.id)
                await self._posted(deploy)
            if not deploy.message_ts:
                await self._publish(deploy)
            if started:
                text = f"Deploy #{deploy.id} of {svc.name} {version} to {env.name} started."
            else:
                text = (
                    f"Deploy #{deploy.id} of {svc.name} {version} to {env.name} waits for "
                    f"{env.approvals} approval(s) from "
                    f"{', '.join(gates.mention(a) for a in env.approvers)}."
                )
        finally:
            if not started:
                await target.close()
        return Result(True, Message(text))

    # -- approval --------------------------------------------------------------------------------
    async def approve(self, *, deploy_id: int, user: str) -> Result:
        deploy = await self._load(deploy_id)
        if deploy is None:
            return refused(f"there is no deploy #{deploy_id}.")
        if deploy.state != "awaiting_approval":
            return refused(f"deploy #{deploy_id} is {_state(deploy)}, not waiting for approval.")
        _, env = self._lookup(deploy.service, deploy.environment)
        groups = await self.deps.directory.groups_of(user, env.approvers)
        verdict = gates.check_approval_rules(env, deploy.requested_by, user, groups)
        if not verdict.passed:
            return refused(verdict.reason)
        try:
            async with self.deps.db.transaction() as session:
                session.add(
                    Approval(deploy_id=deploy_id, approver=user, decision="approved", at=utc_now())
                )
                await session.flush()
                count = await session.scalar(
                    select(func.count()).where(
                        Approval.deploy_id == deploy_id, Approval.decision == "approved"
                    )
                )
                approvers = list(
                    await session.scalars(
                        select(Approval.approver)
                        .where(Approval.deploy_id == deploy_id, Approval.decision == "approved")
                        .order_by(Approval.id)
                    )
                )
                details = dict(deploy.details or {})
                details["approved_by"] = approvers
                started = False
                if (count or 0) >= env.approvals:
                    started = await transition(
                        session,
                        deploy_id,
                        ["awaiting_approval"],
                        "running",
                        details=details,
                        started_at=utc_now(),
                    )
                else:
                    await session.execute(
                        update(Deploy).where(Deploy.id == deploy_id).values(details=details)
                    )
        except IntegrityError:
            return refused(f"you have already approved deploy #{deploy_id}.")
        await self._audit(user, "deploy:approved", deploy_id)
        deploy = await self._load(deploy_id)
        assert deploy is not None
        await self._publish(deploy)
        if started:
            await self._say(
                deploy, f"Approved by {', '.join(f'<@{a}>' for a in approvers)}; starting."
            )
            self.start(deploy_id)
            return Result(True, Message(f"You approved deploy #{deploy_id}; it is starting."))
        remaining = env.approvals - (count or 0)
        return Result(True, Message(f"You approved deploy #{deploy_id}; {remaining} more needed."))

    async def reject(self, *, deploy_id: int, user: str) -> Result:
        deploy = await self._load(deploy_id)
        if deploy is None:
            return refused(f"there is no deploy #{deploy_id}.")
        _, env = self._lookup(deploy.service, deploy.environment)
        groups = await self.deps.directory.groups_of(user, env.approvers)
        if user != deploy.requested_by:
            verdict = gates.check_approval_rules(env, deploy.requested_by, user, groups)
            if not verdict.passed:
                return refused(verdict.reason)
        reason = (
            f"Rejected by <@{user}>."
            if user != deploy.requested_by
            else "Withdrawn by the requester."
        )
        async with self.deps.db.transaction() as session:
            moved = await transition(
                session,
                deploy_id,
                ["awaiting_approval"],
                "rejected",
                reason=reason,
                finished_at=utc_now(),
            )
            if moved:
                session.add(
                    Approval(deploy_id=deploy_id, approver=user, decision="rejected", at=utc_now())
                )
                await locks.release_for_deploy(session, deploy_id=deploy_id)
        if not moved:
            return refused(f"deploy #{deploy_id} is {_state(deploy)}, not waiting for approval.")
        await self._audit(user, "deploy:rejected", deploy_id)
        deploy = await self._load(deploy_id)
        assert deploy is not None
        await self._publish(deploy)
        return Result(True, Message(f"Deploy #{deploy_id} rejected; its lock is released."))

    async def expire_approvals(self) -> int:
        """Deploys whose approval did not come in time: expired, lock released, thread told."""
        now = self.deps.clock()
        async with self.deps.db.session() as session:
            due = list(
                await session.scalars(
                    select(Deploy.id).where(
                        Deploy.state == "awaiting_approval", Deploy.approval_expires_at <= now
                    )
                )
            )
        expired = 0
        for deploy_id in due:
            async with self.deps.db.transaction() as session:
                moved = await transition(
                    session,
                    deploy_id,
                    ["awaiting_approval"],
                    "expired",
                    reason="No approval arrived in time; the lock is released.",
                    finished_at=now,
                )
                if moved:
                    await locks.release_for_deploy(session, deploy_id=deploy_id)
            if moved:
                expired += 1
                await self._audit("system", "deploy:expired", deploy_id)
                deploy = await self._load(deploy_id)
                if deploy:
                    await self._publish(deploy)
        return expired

    # -- the run ---------------------------------------------------------------------------------
    async def _news_of(self, deploy_id: int) -> None:
        """Until the run has something to show (see `_Running.news`), a moment at most."""
        run = self.running.get(deploy_id)
        if run is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.quiet_step_seconds):
                    await run.news.wait()

    def start(
        self, deploy_id: int, deploy: Deploy | None = None, target: Target | None = None
    ) -> None:
        """Run a deploy in this process (its state says `running`). `deploy` is the row and
        `target` the target when the caller has just written and read them: saves reading again."""
        if deploy_id in self.running:
            return
        task = asyncio.ensure_future(self._run_guarded(deploy_id, deploy, target))
        self.running[deploy_id] = _Running(task)
        task.add_done_callback(lambda _: self.running.pop(deploy_id, None))

    async def stop_all(self) -> None:
        """Stop every deploy this process runs (shutdown); their state stays for recovery."""
        tasks = [run.task for run in self.running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.flush()

    async def wait(self, deploy_id: int) -> None:
        """Until this process has finished running the deploy (tests and shutdown)."""
        run = self.running.get(deploy_id)
        if run:
            await asyncio.shield(run.task)

    async def _run_guarded(
        self, deploy_id: int, known: Deploy | None = None, target: Target | None = None
    ) -> None:
        try:
            await self._run(deploy_id, known, target)
            await self.flush(deploy_id)
        except Exception:
            # Nothing may end a deploy silently: say it in the thread, keep the lock.
            log.exception("deploy #%s crashed", deploy_id)
            deploy = await self._load(deploy_id)
            if deploy is not None:
                async with self.deps.db.transaction() as session:
                    await transition(
                        session,
                        deploy_id,
                        ["running", "monitoring"],
                        "interrupted",
                        reason="opsbot hit an internal error while running this deploy; it is "
                        "interrupted and still holds the lock. Resume, roll back or release it.",
                    )
                deploy = await self._load(deploy_id)
                if deploy:
                    await self._publish(deploy)

    async def _run(
        self, deploy_id: int, known: Deploy | None = None, handed: Target | None = None
    ) -> None:
        deploy = known or await self._load(deploy_id)
        if deploy is None or deploy.state not in ("running", "monitoring"):
            if handed is not None:
                await handed.close()
            return
        svc, env = self._lookup(deploy.service, deploy.environment)
        details = dict(deploy.details or {})
        steps: list[dict[str, Any]] = [dict(s) for s in details.get("steps", [])]
        target = handed or self._target(svc, env.name)
        rollback = deploy.strategy == "rollback"
        # A rollback takes `previous_version` away and brings `version` back.
        context = DeployContext(
            svc.name,
            env.name,
            deploy.previous_version if rollback and deploy.previous_version else deploy.version,
            deploy.strategy,
            deploy.version if rollback else deploy.previous_version,
            state=dict(details.get("target_state") or {}),
            log=lambda line: self._say(deploy, line),
        )
        run = self.running[deploy_id]
        run.deploy, run.context, run.details = deploy, context, details

        async def persist() -> None:
            details["steps"] = steps
            details["target_state"] = context.state
            await self._save(deploy, details=_jsonable(details))
            await self._publish(deploy)
            run.news.set()

        try:
            for step_record in steps:
                if step_record["status"] in ("done", "skipped"):
                    continue
                if run.abort_by:
                    await self._stop(
                        deploy, target, context, steps, persist, aborted_by=run.abort_by
                    )
                    return
                if step_record["kind"] == "monitor" and deploy.state == "running":
                    async with self.deps.db.transaction() as session:
                        await transition(session, deploy_id, ["running"], "monitoring")
                    deploy.state = "monitoring"
                if step_record["kind"] == "wait" and run.promote_by:
                    # Promoted: the remaining waits between canary steps are skipped.
                    step_record.update(
                        status="skipped",
                        finished_at=utc_now().isoformat(),
                        summary=f"skipped: promoted by <@{run.promote_by}>",
                    )
                    continue
                if step_record["kind"] == "prepare" and "metric_baseline" not in details:
                    details["metric_baseline"] = await self._baseline(svc)
                step_record.update(status="running", started_at=utc_now().isoformat(), summary="")
                run.step_event = asyncio.Event()
                step = Step(
                    step_record["name"],
                    step_record["kind"],
                    _revive(step_record.get("params") or {}),
                )
                step_ctx = self._step_context(context, target, svc, env, run.step_event)
                try:
                    result = await self._run_step(step, step_ctx, persist)
                except StepAborted:
                    if run.abort_by is None and run.promote_by and step.kind == "wait":
                        step_record.update(
                            status="skipped",
                            finished_at=utc_now().isoformat(),
                            summary=f"skipped: promoted by <@{run.promote_by}>",
                        )
                        await persist()
                        continue
                    step_record.update(status="aborted", finished_at=utc_now().isoformat())
                    await self._stop(
                        deploy,
                        target,
                        context,
                        steps,
                        persist,
                        aborted_by=run.abort_by or "unknown",
                    )
                    return
                except (StepFailed, TargetError) as exc:
                    if isinstance(exc, TriggerFired):
                        details["auto_rollback"] = exc.rule
                    output = getattr(exc, "output", "")
                    step_record.update(
                        status="failed", finished_at=utc_now().isoformat(), summary=str(exc)[:200]
                    )
                    await self._fail(
                        deploy, target, context, steps, persist, step.name, str(exc), output
                    )
                    return
                context.state.update(result.state)
                status = "skipped" if result.summary.startswith("skipped") else "done"
                step_record.update(
                    status=status, finished_at=utc_now().isoformat(), summary=result.summary[:200]
                )
                # What changed the target (and its new state) is written at once; a quick check
                # or a skipped script rides along with the next write: after a crash it simply
                # runs again, which is safe.
                if step.kind in CHANGING_KINDS or result.output or result.state:
                    await persist()
                if result.output:
                    await self._say(deploy, f"Output of *{step.name}*:", result.output[-2900:])
            if rollback:
                await self._finish_rollback(deploy, persist)
            else:
                await self._finish(deploy, "succeeded", None, persist)
        finally:
            run.news.set()
            await target.close()

    def _auto_rule(self, deploy: Deploy) -> str | None:
        run = self.running.get(deploy.id)
        return run.details.get("auto_rollback") if run else None

    async def acknowledge(self, *, deploy_id: int, user: str) -> Result:
        """After an automatic rollback: someone has seen it; the environment unlocks."""
        deploy = await self._load(deploy_id)
        if deploy is None or not (deploy.details or {}).get("auto_rollback"):
            return refused(f"deploy #{deploy_id} was not rolled back automatically.")
        if not await self._may_act(deploy, user):
            return refused(f"only deployers of {deploy.environment} may acknowledge.")
        async with self.deps.db.transaction() as session:
            removed = await locks.release_manual(
                session, service=deploy.service, environment=deploy.environment
            )
        if removed is None:
            return refused(f"{deploy.service} in {deploy.environment} is no longer locked.")
        details = dict(deploy.details or {})
        details["acknowledged_by"] = user
        await self._save(deploy, details=details)
        await self._audit(user, "deploy:acknowledge", deploy_id)
        await self._publish(deploy)
        return Result(
            True,
            Message(f":unlock: {deploy.service} in {deploy.environment} is unlocked by <@{user}>."),
            public=True,
        )

    async def _finish_rollback(self, deploy: Deploy, persist: Any) -> None:
        reason = (
            f"Rolled back by <@{deploy.requested_by}>: {deploy.version} is back "
            f"(was {deploy.previous_version})."
        )
        await self._finish(deploy, "succeeded", reason, persist)
        if deploy.rollback_of_id is not None:
            async with self.deps.db.transaction() as session:
                await transition(
                    session,
                    deploy.rollback_of_id,
                    ["succeeded"],
                    "rolled_back",
                    reason=f"Rolled back by <@{deploy.requested_by}> to {deploy.version} "
                    f"(#{deploy.id}).",
                )
            undone = await self._load(deploy.rollback_of_id)
            if undone is not None:
                await self._publish(undone)

    async def _monitor(self, step_ctx: StepContext, persist: Any) -> StepResult:
        """The monitoring window with the rollback triggers (see bot/deploys/watch.py)."""
        env, svc = step_ctx.environment, step_ctx.service
        if not env.monitor:
            return StepResult(f"skipped: {env.name} has no monitoring window")
        catalog = self.deps.catalog
        run = self.running[self._deploy_id_of(step_ctx)]
        deploy = run.deploy
        source = make_source(catalog.metrics, env=self.deps.env) if svc.metrics else None
        interval = catalog.metrics.poll_interval
        try:
            result = await watch(
                source=source,
                service=svc,
                environment=env.name,
                triggers=catalog.rollback_triggers,
                duration=env.monitor,
                interval=interval,
                baseline=dict(run.details.get("metric_baseline") or {}),
                cancelled=step_ctx.cancelled,
                clock=self.deps.clock,
                target=step_ctx.target,
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
            details = run.details
            details["inconclusive"] = result.verdict.reason
            await persist()
            await self._say(
                deploy,
                f":grey_question: The monitoring window was inconclusive: {result.verdict.reason}. "
                "Promote to keep the new version, or Roll back.",
            )
            run.step_event.clear()
            await run.step_event.wait()
            details.pop("inconclusive", None)
            if run.abort_by:
                raise StepAborted("rolled back after an inconclusive window")
            return StepResult(
                f"accepted by <@{run.promote_by}> although inconclusive: {result.verdict.reason}"
            )
        return StepResult(
            f"every rollback trigger within its limit for {int(env.monitor.total_seconds())}s"
        )

    async def _baseline(self, svc: Service) -> dict[str, float]:
        """Metric values before the change, for triggers such as "p99 > 5× baseline"."""
        if not svc.metrics:
            return {}
        source = make_source(self.deps.catalog.metrics, env=self.deps.env)
        try:
            return await record_baseline(source, svc, self.deps.catalog.rollback_triggers)
        finally:
            await source.close()

    def _deploy_id_of(self, step_ctx: StepContext) -> int:
        for deploy_id, run in self.running.items():
            if run.context is step_ctx.deploy:
                return deploy_id
        raise LookupError("the step's deploy is not running here")

    @staticmethod
    async def _rollback_step(step_ctx: StepContext) -> StepResult:
        try:
            return await step_ctx.target.rollback(step_ctx.deploy)
        except TargetError as exc:
            raise StepFailed(str(exc)) from exc

    async def _run_step(self, step: Step, step_ctx: StepContext, persist: Any) -> StepResult:
        """Run one step; say it is running (a database write and a message update) only when it
        takes longer than a moment, so quick and skipped steps cost one write, not two.

        The step runs in this task, and a timer says it is running: a step with nothing to wait
        for (a skipped script, a baseline without metrics) finishes without giving up the event
        loop, so fifty deploys at once do not queue behind each other's work for every step
        (bench/deploy_overhead.py).
        """
        if step.kind == "rollback":
            work = self._rollback_step(step_ctx)
        elif step.kind == "monitor":
            work = self._monitor(step_ctx, persist)
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

    async def _finish(self, deploy: Deploy, state: str, reason: str | None, persist: Any) -> None:
        async with self.deps.db.transaction() as session:
            await transition(
                session,
                deploy.id,
                ["running", "monitoring", "interrupted"],
                state,
                reason=reason,
                finished_at=utc_now(),
            )
            await locks.release_for_deploy(session, deploy_id=deploy.id)
        deploy.state, deploy.reason = state, reason
        await audit.record(
            self.deps.db,
            actor="system",
            action=f"deploy:{state}",
            outcome="ok",
            detail={"deploy": deploy.id, "reason": reason},
        )
        await persist()
        await self._tell_finished(deploy, state, reason)

    async def _tell_finished(self, deploy: Deploy, state: str, reason: str | None) -> None:
        """Publish a finished deploy or rollback on the events bus (incident timelines)."""
        if self.deps.events is None or deploy.dry_run:
            return
        rollback = deploy.strategy == "rollback" or state == "rolled_back"
        if deploy.strategy == "rollback":
            text = (
                f"Rollback #{deploy.id} of {deploy.service} in {deploy.environment} to "
                f"{deploy.version} by <@{deploy.requested_by}> {state.replace('_', ' ')}"
            )
        else:
            text = (
                f"Deploy #{deploy.id} of {deploy.service} {deploy.version} to "
                f"{deploy.environment} by <@{deploy.requested_by}> {state.replace('_', ' ')}"
            )
        if reason:
            text += f": {reason}"
        await self.deps.events.publish(
            ServiceEvent(
                kind="rollback" if rollback else "deploy",
                text=text,
                at=utc_now(),
                service=deploy.service,
                actor=None if state == "rolled_back" else deploy.requested_by,
                key=f"deploy:{deploy.id}:{state}",
                data={
                    "deploy_id": deploy.id,
                    "environment": deploy.environment,
                    "version": deploy.version,
                    "previous_version": deploy.previous_version,
                    "state": state,
                    "strategy": deploy.strategy,
                    "automatic": bool(
                        (deploy.details or {}).get("auto_rollback") or self._auto_rule(deploy)
                    ),
                },
            )
        )

    async def _restore(self, target: Target, context: DeployContext) -> str | None:
        """Put back what the deploy changed; None when that worked, else why not."""
        try:
            await target.rollback(context)
        except (TargetError, Exception) as exc:
            log.exception("rollback of %s in %s failed", context.service, context.environment)
            return str(exc) or type(exc).__name__
        return None

    async def _fail(
        self,
        deploy: Deploy,
        target: Target,
        context: DeployContext,
        steps: list[dict[str, Any]],
        persist: Any,
        step_name: str,
        why: str,
        output: str,
    ) -> None:
        if output:
            await self._say(deploy, f"Output of *{step_name}*:", output[-2900:])
        changed = any(s["kind"] in CHANGING_KINDS and s["status"] != "pending" for s in steps)
        reason = f"Failed at step {step_name} because {why}."
        if deploy.strategy == "rollback":
            # Nothing to undo an undo with: say so, and keep the lock for a human.
            async with self.deps.db.transaction() as session:
                await transition(
                    session,
                    deploy.id,
                    ["running"],
                    "failed",
                    reason=f"{reason} The lock stays until someone releases it.",
                    finished_at=utc_now(),
                )
            deploy.state = "failed"
            await persist()
            await self._tell_finished(deploy, "failed", reason)
            return
        if not changed:
            await self._finish(deploy, "failed", reason + " Nothing had been changed.", persist)
            return
        problem = await self._restore(target, context)
        restored = context.previous_version or "the previous version"
        if problem is None:
            automatic = (deploy.details or {}).get("auto_rollback") or self._auto_rule(deploy)
            suffix = ""
            if automatic:
                suffix = (
                    f" {deploy.environment} stays locked until someone presses Acknowledge, so "
                    f"{deploy.version} is not deployed again by accident."
                )
            await self._finish(
                deploy, "rolled_back", f"{reason} Rolled back: {restored} is back.{suffix}", persist
            )
            if automatic:
                async with self.deps.db.transaction() as session:
                    await locks.acquire(
                        session,
                        service=deploy.service,
                        environment=deploy.environment,
                        holder="opsbot",
                        reason=f"automatic rollback of deploy #{deploy.id} ({automatic}); "
                        "press Acknowledge on its message",
                        sticky=True,
                    )
            return
        # The target is in an unknown state: keep the lock so nobody deploys over it.
        async with self.deps.db.transaction() as session:
            await transition(
                session,
                deploy.id,
                ["running", "monitoring"],
                "failed",
                reason=f"{reason} Rolling back to {restored} failed too: {problem}. The lock stays "
                "until someone releases it.",
                finished_at=utc_now(),
            )
        await persist()
        await self._tell_finished(deploy, "failed", f"{reason} Rolling back failed too: {problem}.")

    async def _stop(
        self,
        deploy: Deploy,
        target: Target,
        context: DeployContext,
        steps: list[dict[str, Any]],
        persist: Any,
        *,
        aborted_by: str,
    ) -> None:
        changed = any(s["kind"] in CHANGING_KINDS and s["status"] != "pending" for s in steps)
        problem = await self._restore(target, context) if changed else None
        reason = f"Aborted by <@{aborted_by}>."
        if changed:
            restored = context.previous_version or "the previous version"
            reason += (
                f" {restored} is back." if problem is None else f" Rolling back failed: {problem}."
            )
        for record in steps:
            if record["status"] == "pending":
                record["status"] = "skipped"
        await self._finish(deploy, "aborted", reason, persist)

    # -- buttons while running -------------------------------------------------------------------
    async def _may_act(self, deploy: Deploy, user: str) -> bool:
        _, env = self._lookup(deploy.service, deploy.environment)
        if user == deploy.requested_by:
            return True
        principals = [*env.deployers, *env.approvers]
        groups = await self.deps.directory.groups_of(user, principals)
        return not env.deployers or user in principals or bool(groups)

    async def _load_for(self, deploy_id: int, user: str, verb: str) -> Deploy | Result:
        """The deploy, if it exists and `user` may act on it; else the refusal to answer."""
        deploy = await self._load(deploy_id)
        if deploy is None:
            return refused(f"there is no deploy #{deploy_id}.")
        if not await self._may_act(deploy, user):
            return refused(f"only the requester or deployers of {deploy.environment} may {verb}.")
        return deploy

    async def abort(self, *, deploy_id: int, user: str) -> Result:
        deploy = await self._load(deploy_id)
        if deploy is None or deploy.state not in ("running", "monitoring"):
            state = deploy.state.replace("_", " ") if deploy else "unknown"
            return refused(f"deploy #{deploy_id} is {state}: there is nothing to abort.")
        if not await self._may_act(deploy, user):
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
            return refused(f"<@{run.abort_by}> is already aborting deploy #{deploy_id}.")
        run.abort_by = user
        run.step_event.set()
        await self._audit(user, "deploy:abort", deploy_id)
        return Result(
            True, Message(f"Aborting deploy #{deploy_id}; what it changed will be put back.")
        )

    async def promote(self, *, deploy_id: int, user: str) -> Result:
        deploy = await self._load(deploy_id)
        run = self.running.get(deploy_id)
        waiting = run is not None and bool(run.details.get("inconclusive"))
        if deploy is None or run is None or (deploy.strategy != "canary" and not waiting):
            return refused(
                f"deploy #{deploy_id} is neither a running canary nor waiting for a decision."
            )
        if not await self._may_act(deploy, user):
            return refused(
                f"only the requester, deployers or approvers of {deploy.environment} may promote."
            )
        run.promote_by = user
        run.step_event.set()
        await self._audit(user, "deploy:promote", deploy_id)
        return Result(
            True, Message(f"Promoting deploy #{deploy_id}: the remaining waits are skipped.")
        )

    # -- recovery --------------------------------------------------------------------------------
    async def recover(
        self, *, spare: Collection[int] = (), quiet_since: datetime | None = None
    ) -> int:
        """Deploys whose process is gone are interrupted; say what the target runs now.

        At start every running deploy is such a deploy, except those this process runs, those in
        `spare` (live peers run them) and, with `quiet_since`, those changed after it (a peer may
        have started them since its last heartbeat). Returns how many were interrupted.
        """
        query = select(Deploy).where(Deploy.state.in_(["requested", "running", "monitoring"]))
        if quiet_since is not None:
            query = query.where(Deploy.updated_at < quiet_since)
        async with self.deps.db.session() as session:
            stale = [
                deploy
                for deploy in await session.scalars(query)
                if deploy.id not in self.running and deploy.id not in spare
            ]
        interrupted = 0
        for deploy in stale:
            svc, env = self._lookup(deploy.service, deploy.environment)
            target = self._target(svc, env.name)
            try:
                found = (await target.current()).detail
            except TargetError as exc:
                found = f"could not read the target: {exc}"
            finally:
                await target.close()
            step = next(
                (
                    s["name"]
                    for s in (deploy.details or {}).get("steps", [])
                    if s["status"] == "running"
                ),
                None,
            )
            where = f" during step {step}" if step else ""
            reason = (
                f"opsbot stopped{where}. It found: {found}. The lock is still held: "
                "Resume, Roll back or Release lock."
            )
            async with self.deps.db.transaction() as session:
                moved = await transition(
                    session,
                    deploy.id,
                    ["requested", "running", "monitoring"],
                    "interrupted",
                    reason=reason,
                )
            if moved:
                interrupted += 1
                deploy.state, deploy.reason = "interrupted", reason
                await audit.record(
                    self.deps.db,
                    actor="system",
                    action="deploy:interrupted",
                    outcome="ok",
                    detail={"deploy": deploy.id, "found": found},
                )
                await self._publish(deploy)
                await self._say(deploy, f"Reconciled after a restart: {found}.")
        return interrupted

    async def resume(self, *, deploy_id: int, user: str) -> Result:
        deploy = await self._load_for(deploy_id, user, "resume")
        if isinstance(deploy, Result):
            return deploy
        async with self.deps.db.transaction() as session:
            moved = await transition(
                session, deploy_id, ["interrupted"], "running", reason=f"Resumed by <@{user}>."
            )
        if not moved:
            return refused(f"deploy #{deploy_id} is {_state(deploy)}, not interrupted.")
        await self._audit(user, "deploy:resume", deploy_id)
        self.start(deploy_id)
        return Result(True, Message(f"Resuming deploy #{deploy_id} from the step it was on."))

    async def roll_back_interrupted(self, *, deploy_id: int, user: str) -> Result:
        deploy = await self._load_for(deploy_id, user, "roll back")
        if isinstance(deploy, Result):
            return deploy
        async with self.deps.db.transaction() as session:
            moved = await transition(session, deploy_id, ["interrupted"], "running")
        if not moved:
            return refused(f"deploy #{deploy_id} is {_state(deploy)}, not interrupted.")
        deploy.state = "running"
        svc, env = self._lookup(deploy.service, deploy.environment)
        target = self._target(svc, env.name)
        details = dict(deploy.details or {})
        context = DeployContext(
            svc.name,
            env.name,
            deploy.version,
            deploy.strategy,
            deploy.previous_version,
            state=dict(details.get("target_state") or {}),
        )

        async def persist() -> None:
            await self._publish(deploy)

        try:
            problem = await self._restore(target, context)
        finally:
            await target.close()
        restored = deploy.previous_version or "the previous version"
        if problem is None:
            await self._finish(
                deploy, "rolled_back", f"Rolled back by <@{user}>: {restored} is back.", persist
            )
            return Result(True, Message(f"Deploy #{deploy_id} rolled back: {restored} is back."))
        async with self.deps.db.transaction() as session:
            await transition(
                session,
                deploy_id,
                ["running"],
                "interrupted",
                reason=f"Rolling back failed: {problem}. The lock is still held.",
            )
        return refused(f"rolling back deploy #{deploy_id} failed: {problem}")

    async def release_lock(self, *, deploy_id: int, user: str) -> Result:
        deploy = await self._load_for(deploy_id, user, "release the lock")
        if isinstance(deploy, Result):
            return deploy
        reason = f"Lock released by <@{user}>; the target was left as found (see the thread)."
        async with self.deps.db.transaction() as session:
            moved = await transition(
                session,
                deploy_id,
                ["interrupted", "failed"],
                "aborted",
                reason=reason,
                finished_at=utc_now(),
            )
            released = await locks.release_for_deploy(session, deploy_id=deploy_id)
        if not moved and not released:
            return refused(f"deploy #{deploy_id} holds no lock.")
        await self._audit(user, "deploy:release_lock", deploy_id)
        deploy = await self._load(deploy_id)
        if deploy:
            await self._publish(deploy)
        return Result(True, Message(f"The lock of deploy #{deploy_id} is released."))

    # -- read-only and manual locks --------------------------------------------------------------
    async def status(self, *, service: str | None) -> Result:
        names = [service] if service else self.deps.catalog.service_names()
        held = await locks.all_locks(self.deps.db, service=service)
        async with self.deps.db.session() as session:
            active = list(
                await session.scalars(
                    select(Deploy).where(Deploy.state.in_(ACTIVE_STATES)).order_by(Deploy.id)
                )
            )
        lines = []
        for name in names:
            svc = self.deps.catalog.service(name)
            if svc is None:
                continue
            for env_name in svc.targets:
                versions = await self._succeeded_versions(name, env_name)
                line = f"{name} {env_name}: {versions[0] if versions else 'no deploy yet'}"
                deploy = next(
                    (d for d in active if d.service == name and d.environment == env_name), None
                )
                if deploy:
                    line += f"; deploy #{deploy.id} of {deploy.version} is {_state(deploy)}"
                holder = held.get((name, env_name))
                if holder:
                    line += f"; {holder.describe()}"
                lines.append(line)
        return Result(
            True,
            Message(
                "*Deploy status* (last successful version per environment)",
                preformatted="\n".join(lines) or "no services",
            ),
        )

    async def history(self, *, service: str, environment: str | None) -> Result:
        statement = select(Deploy).where(Deploy.service == service, Deploy.dry_run.is_(False))
        if environment:
            statement = statement.where(Deploy.environment == environment)
        async with self.deps.db.session() as session:
            deploys = list(await session.scalars(statement.order_by(Deploy.id.desc()).limit(15)))
        lines = [
            f"#{d.id} {d.created_at:%Y-%m-%d %H:%M} {d.environment} {d.version} "
            f"{d.state.replace('_', ' ')} by <@{d.requested_by}>"
            for d in deploys
        ]
        where = f" in {environment}" if environment else ""
        return Result(
            True,
            Message(
                f"*History of {service}{where}*", preformatted="\n".join(lines) or "no deploys yet"
            ),
        )

    async def lock(self, *, service: str, environment: str, reason: str, user: str) -> Result:
        _, env = self._lookup(service, environment)
        groups = await self.deps.directory.groups_of(user, env.deployers)
        allowed = gates.check_deployer(env, user, groups)
        if not allowed.passed:
            return refused(allowed.reason)
        async with self.deps.db.transaction() as session:
            holder = await locks.acquire(
                session,
                service=service,
                environment=environment,
                holder=user,
                reason=reason,
                sticky=True,
            )
        if holder:
            return refused(f"{service} in {environment} is already {holder.describe()}.")
        return Result(
            True,
            Message(f":lock: {service} in {environment} is locked by <@{user}>: {reason}"),
            public=True,
        )

    async def unlock(self, *, service: str, environment: str, user: str) -> Result:
        _, env = self._lookup(service, environment)
        groups = await self.deps.directory.groups_of(user, env.deployers)
        allowed = gates.check_deployer(env, user, groups)
        if not allowed.passed:
            return refused(allowed.reason)
        async with self.deps.db.transaction() as session:
            removed = await locks.release_manual(session, service=service, environment=environment)
        if removed is None:
            holder = await locks.holder_of(self.deps.db, service=service, environment=environment)
            if holder:
                return refused(
                    f"{service} in {environment} is {holder.describe()}: a deploy's lock is "
                    "released by the deploy (or its Release lock button), not by unlock."
                )
            return refused(f"{service} in {environment} is not locked.")
        return Result(
            True,
            Message(
                f":unlock: {service} in {environment} is unlocked by <@{user}> "
                f"(was: {removed.reason})."
            ),
            public=True,
        )


# Built once, run with each deploy's values as parameters (the deploy's hot path: building a
# statement with its values costs more than running it, bench/deploy_overhead.py).
_UPDATE_DEPLOY = update(Deploy).where(Deploy.id == bindparam("deploy_id"))


def _lock_refusal(service: str, environment: str, holder: locks.LockHolder) -> gates.GateResult:
    return gates.GateResult(
        "lock", False, f"lock: {service} in {environment} is {holder.describe()}."
    )


def _state(deploy: Deploy) -> str:
    return deploy.state.replace("_", " ")


def _revive(value: Any) -> Any:
    """The inverse of `_jsonable` for what the engine stored."""
    if isinstance(value, dict):
        if set(value) == {"seconds"}:
            return timedelta(seconds=value["seconds"])
        return {k: _revive(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_revive(v) for v in value]
    return value


def _jsonable(value: Any) -> Any:
    """Step params hold durations; JSON columns want plain values."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "total_seconds"):
        return {"seconds": value.total_seconds()}
    return value


__all__ = ["DEPLOY_FINAL_STATES", "DeployDeps", "Deploys", "Directory", "Result", "transition"]
