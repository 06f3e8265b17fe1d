"""Asking for a deploy: every gate, a dry run, and approval (approve, reject, expiry)."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from bot.catalog import Environment, Service
from bot.db.models import Approval, Deploy, utc_now
from bot.deploys import gates, locks
from bot.deploys.certificate_gate import certificate_gates
from bot.deploys.deps import DeployDeps
from bot.deploys.engine import DeployEngine
from bot.deploys.playbook import (
    Playbook,
    PlaybookError,
    Step,
    StepContext,
    expand_steps,
    playbook_for,
    run_check,
)
from bot.deploys.publisher import DeployPublisher
from bot.deploys.states import DeployEvent, DeployState
from bot.deploys.store import DeployStore, jsonable, move
from bot.messages import Mention, Message, Result, fmt, join, refused, stored, text
from bot.targets.base import DeployContext, Target, TargetError


class DeployRequests:
    def __init__(
        self,
        deps: DeployDeps,
        store: DeployStore,
        publisher: DeployPublisher,
        engine: DeployEngine,
    ) -> None:
        self.deps = deps
        self.store = store
        self.publisher = publisher
        self.engine = engine

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
        rollback_of: Deploy | None = None,
    ) -> Result:
        """`/deploy <service> <env> [<version>]`: check every gate, then start or await approval.

        `rollback_of` is the succeeded deploy a rollback undoes: a rollback to a version that has
        not succeeded in the environment before is a deploy like any other, marked as a rollback.
        """
        svc, env = self.deps.lookup(service, environment)
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
        chosen = await self._version(svc, env, version, results)
        if isinstance(chosen, Result):
            return chosen
        version = chosen
        results.extend(
            await certificate_gates(
                self.deps.catalog, svc, env, now=self.deps.clock(), environ=self.deps.env
            )
        )
        try:
            playbook = playbook_for(self.deps.playbooks, service=svc, strategy=strategy)
        except PlaybookError as exc:
            return refused(f"no playbook for this deploy: {'; '.join(exc.problems)}")
        # The lock is read here only when the answer needs it: a refusal names the lock before
        # lesser gates, a dry run shows it, and custom checks are not run against a locked
        # target. Otherwise the deploy takes it atomically when it is created, and a holder found
        # there is refused with the same sentence: a database round trip less per deploy.
        if dry_run or playbook.checks or gates.evaluate(results):
            holder = await self.store.lock_holder(svc.name, env.name)
            if holder:
                results.append(_lock_refusal(svc.name, env.name, holder))
        target = self.deps.target(svc, env.name)
        handed_on = False
        try:
            running = await target.current()
            context = DeployContext(
                svc.name, env.name, version, strategy, running.version, state=dict(running.state)
            )
            await self._custom_checks(playbook, context, target, svc, env, results)
            steps = expand_steps(playbook, target_config=target_config)
            if dry_run:
                plan = target.plan(context)
                return _dry_run_answer(context, results, plan, steps)
            failure = gates.evaluate(results)
            if failure:
                return _refused_by(failure, svc.name, version, env.name, rollback_of)
            # The run goes on with this target (and what it just read): one API read less.
            handed_on = True
            return await self._create(svc, env, context, requester, steps, target, rollback_of)
        except TargetError as exc:
            return refused(f"cannot read what runs in {env.name}: {exc}")
        finally:
            if not handed_on:
                await target.close()

    async def _version(
        self,
        svc: Service,
        env: Environment,
        version: str | None,
        results: list[gates.GateResult],
    ) -> str | Result:
        """The version to deploy (without one: promote what succeeded in the environment
        before), with the promotion gate added to `results`; or the refusal."""
        previous_env = self.deps.catalog.previous_environment(env.name)
        if version is None:
            if previous_env is None:
                return refused(
                    f"give a version: {env.name} is the first environment, so there is nothing to "
                    "promote from (`/deploy <service> <env> <version>`)."
                )
            promoted = await self.store.succeeded_versions(svc.name, previous_env.name)
            if not promoted:
                return refused(
                    f"give a version: nothing has succeeded in {previous_env.name} yet to promote "
                    f"to {env.name}."
                )
            version = promoted[0]
        if env.require_previous and previous_env is not None:
            succeeded = await self.store.succeeded_versions(svc.name, previous_env.name)
            results.append(gates.check_promotion(self.deps.catalog, env, version, succeeded))
        return version

    async def _custom_checks(
        self,
        playbook: Playbook,
        context: DeployContext,
        target: Target,
        svc: Service,
        env: Environment,
        results: list[gates.GateResult],
    ) -> None:
        """The playbook's own gates, run only when every other gate passed."""
        if gates.evaluate(results):
            return
        step_ctx = StepContext(
            deploy=context,
            target=target,
            service=svc,
            environment=env,
            workdir=self.deps.workdir,
            env=self.deps.env,
            cancelled=asyncio.Event(),
        )
        for check in playbook.checks:
            results.append(await run_check(check, step_ctx))

    async def _create(
        self,
        svc: Service,
        env: Environment,
        context: DeployContext,
        requester: str,
        steps: list[Step],
        target: Target,
        rollback_of: Deploy | None = None,
    ) -> Result:
        """Record the deploy with its lock and audit entry, post its message, and start it (or
        wait for approval). `target` is handed on to the run, which closes it."""
        values = self._new_row(env, context, requester, steps)
        version = context.version
        detail: dict[str, Any] = {"service": svc.name, "environment": env.name, "version": version}
        if rollback_of is not None:
            values["rollback_of_id"] = rollback_of.id
            detail.update(of=rollback_of.id, restore=version)
        started = False
        try:
            deploy_id = await self.store.create(
                values,
                action="rollback:requested" if rollback_of else "deploy:requested",
                detail=detail,
            )
            if deploy_id is None:
                holder = await self.store.lock_holder(svc.name, env.name)
                lock = _lock_refusal(svc.name, env.name, holder or locks.unknown_holder())
                return _refused_by(lock, svc.name, version, env.name, rollback_of)
            deploy = Deploy(id=deploy_id, **values)
            if deploy.state == DeployState.RUNNING:
                self.engine.start(deploy.id, deploy, target)
                started = True
                # The change goes first, the messages about it right after: the run posts the
                # deploy's message with its first news (a write to the target, a step that takes
                # longer than a moment, or its end), and the reply waits for that, at most a
                # moment. Fifty deploys at once reach their targets without queuing behind each
                # other's Slack messages and bookkeeping (bench/deploy_overhead.py).
                await self.engine.news_of(deploy.id)
                await self.publisher.posted(deploy)
            if not deploy.message_ts:
                await self.publisher.publish(deploy)
            what = f"Deploy #{deploy.id} of {svc.name} {version} to {env.name}"
            if rollback_of is not None:
                what = f"Rollback #{deploy.id} of {svc.name} in {env.name} to {version}"
            if started:
                answer = text(f"{what} started.")
            else:
                approvers = join(", ", map(Mention, env.approvers))
                answer = text(f"{what} waits for {env.approvals} approval(s) from ", approvers, ".")
            if rollback_of is not None:
                answer += text(
                    f" {version} has not succeeded in {env.name} before, so this rollback is a "
                    "deploy and passed every deploy gate."
                )
        finally:
            if not started:
                await target.close()
        return Result(True, Message(answer))

    def _new_row(
        self, env: Environment, context: DeployContext, requester: str, steps: list[Step]
    ) -> dict[str, Any]:
        now = self.deps.clock()
        state = DeployState.AWAITING_APPROVAL if env.approvals else DeployState.RUNNING
        details = {
            "steps": [
                {"name": s.name, "kind": s.kind, "params": s.params, "status": "pending"}
                for s in steps
            ],
            "target_state": {},
            "approved_by": [],
        }
        return {
            "service": context.service,
            "environment": env.name,
            "version": context.version,
            "previous_version": context.previous_version,
            "strategy": context.strategy,
            "state": str(state),
            "requested_by": requester,
            "dry_run": False,
            "details": jsonable(details),
            "created_at": now,
            "updated_at": now,
            "started_at": None if env.approvals else now,
            "approval_expires_at": now + env.approval_timeout if env.approvals else None,
            "rollback_of_id": None,
        }

    # -- approval --------------------------------------------------------------------------------
    async def approve(self, *, deploy_id: int, user: str) -> Result:
        deploy = await self.store.load(deploy_id)
        if deploy is None:
            return refused(f"there is no deploy #{deploy_id}.")
        if deploy.state != DeployState.AWAITING_APPROVAL:
            return refused(f"deploy #{deploy_id} is {_state(deploy)}, not waiting for approval.")
        _, env = self.deps.lookup(deploy.service, deploy.environment)
        groups = await self.deps.directory.groups_of(user, env.approvers)
        verdict = gates.check_approval_rules(env, deploy.requested_by, user, groups)
        if not verdict.passed:
            return refused(verdict.reason)
        try:
            count, approvers, started = await self._record_approval(deploy, user, env)
        except IntegrityError:
            return refused(f"you have already approved deploy #{deploy_id}.")
        await self.deps.audit(user, "deploy:approved", deploy_id)
        deploy = await self.store.load(deploy_id)
        assert deploy is not None
        await self.publisher.publish(deploy)
        if started:
            await self.publisher.say(
                deploy, fmt("Approved by {}; starting.", join(", ", map(Mention, approvers)))
            )
            self.engine.start(deploy_id)
            return Result(True, Message(f"You approved deploy #{deploy_id}; it is starting."))
        remaining = env.approvals - count
        return Result(True, Message(f"You approved deploy #{deploy_id}; {remaining} more needed."))

    async def _record_approval(
        self, deploy: Deploy, user: str, env: Environment
    ) -> tuple[int, list[str], bool]:
        """Store `user`'s approval: (approvals so far, the approvers, whether it starts now)."""
        deploy_id = deploy.id
        async with self.deps.db.transaction() as session:
            session.add(
                Approval(deploy_id=deploy_id, approver=user, decision="approved", at=utc_now())
            )
            await session.flush()
            approved = (Approval.deploy_id == deploy_id, Approval.decision == "approved")
            count = await session.scalar(select(func.count()).where(*approved)) or 0
            approvers = list(
                await session.scalars(
                    select(Approval.approver).where(*approved).order_by(Approval.id)
                )
            )
            details = dict(deploy.details or {})
            details["approved_by"] = approvers
            started = False
            if count >= env.approvals:
                started = await move(
                    session, deploy_id, DeployEvent.APPROVE, details=details, started_at=utc_now()
                )
            else:
                await session.execute(
                    update(Deploy).where(Deploy.id == deploy_id).values(details=details)
                )
        return count, approvers, started

    async def reject(self, *, deploy_id: int, user: str) -> Result:
        deploy = await self.store.load(deploy_id)
        if deploy is None:
            return refused(f"there is no deploy #{deploy_id}.")
        _, env = self.deps.lookup(deploy.service, deploy.environment)
        groups = await self.deps.directory.groups_of(user, env.approvers)
        if user != deploy.requested_by:
            verdict = gates.check_approval_rules(env, deploy.requested_by, user, groups)
            if not verdict.passed:
                return refused(verdict.reason)
        # The reason is kept with the deploy and shown in its message.
        reason = (
            stored(text("Rejected by ", Mention(user), "."))
            if user != deploy.requested_by
            else "Withdrawn by the requester."
        )
        async with self.deps.db.transaction() as session:
            moved = await move(
                session, deploy_id, DeployEvent.REJECT, reason=reason, finished_at=utc_now()
            )
            if moved:
                session.add(
                    Approval(deploy_id=deploy_id, approver=user, decision="rejected", at=utc_now())
                )
                await locks.release_for_deploy(session, deploy_id=deploy_id)
        if not moved:
            return refused(f"deploy #{deploy_id} is {_state(deploy)}, not waiting for approval.")
        await self.deps.audit(user, "deploy:rejected", deploy_id)
        deploy = await self.store.load(deploy_id)
        assert deploy is not None
        await self.publisher.publish(deploy)
        return Result(True, Message(f"Deploy #{deploy_id} rejected; its lock is released."))

    async def expire_approvals(self) -> int:
        """Deploys whose approval did not come in time: expired, lock released, thread told."""
        now = self.deps.clock()
        async with self.deps.db.session() as session:
            due = list(
                await session.scalars(
                    select(Deploy.id).where(
                        Deploy.state == DeployState.AWAITING_APPROVAL,
                        Deploy.approval_expires_at <= now,
                    )
                )
            )
        expired = 0
        for deploy_id in due:
            async with self.deps.db.transaction() as session:
                moved = await move(
                    session,
                    deploy_id,
                    DeployEvent.EXPIRE,
                    reason="No approval arrived in time; the lock is released.",
                    finished_at=now,
                )
                if moved:
                    await locks.release_for_deploy(session, deploy_id=deploy_id)
            if moved:
                expired += 1
                await self.deps.audit("system", "deploy:expired", deploy_id)
                deploy = await self.store.load(deploy_id)
                if deploy:
                    await self.publisher.publish(deploy)
        return expired


def _dry_run_answer(
    context: DeployContext,
    results: list[gates.GateResult],
    plan: list[str],
    steps: list[Step],
) -> Result:
    verdict = gates.evaluate(results)
    # The code block shows people as it always has, in the kept form (a code block pings nobody).
    gate_lines = [f"{'✓' if r.passed else '✗'} {stored(r.reason)}" for r in results]
    head = (
        f"*Dry run:* deploy {context.service} {context.version} to {context.environment} "
        f"({context.strategy}); now running: {context.previous_version or 'nothing'}. "
        "Nothing was changed."
    )
    verdict_text = (
        text("It would be refused: ", verdict.reason) if verdict else "Every gate passes."
    )
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
    return Result(True, Message(text(f"{head}\n", verdict_text), preformatted=body))


def _refused_by(
    gate: gates.GateResult,
    service: str,
    version: str,
    environment: str,
    rollback_of: Deploy | None = None,
) -> Result:
    what = f"deploy of {service} {version} to {environment}"
    if rollback_of is not None:
        what = (
            f"rollback of {service} in {environment} to {version} (a deploy: {version} has not "
            f"succeeded in {environment} before)"
        )
    return refused(text(f"{what} refused by ", gate.reason))


def _lock_refusal(service: str, environment: str, holder: locks.LockHolder) -> gates.GateResult:
    return gates.GateResult(
        "lock", False, text(f"lock: {service} in {environment} is ", holder.describe(), ".")
    )


def _state(deploy: Deploy) -> str:
    return DeployState(deploy.state).words
