"""How a deploy ends: succeeded, failed, rolled back or aborted, with the lock, the audit entry,
the message and the events bus told; and putting back what a deploy changed."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bot import audit
from bot.db.models import Deploy, utc_now
from bot.deploys import locks
from bot.deploys.deps import DeployDeps
from bot.deploys.messaging import is_rollback
from bot.deploys.publisher import DeployPublisher
from bot.deploys.states import DeployEvent, DeployState, destination, next_state
from bot.deploys.store import DeployStore, move
from bot.events import ServiceEvent
from bot.messages import Mention, RichText, stored, text
from bot.targets.base import DeployContext, Target, TargetError

log = logging.getLogger(__name__)

Persist = Callable[[], Awaitable[None]]
# Steps that change the target: once one has started, a failure must put things back.
CHANGING_KINDS = ("prepare", "shift_traffic", "finalize", "rollback")


def changed_target(steps: list[dict[str, Any]]) -> bool:
    """Has a step that changes the target started?"""
    return any(s["kind"] in CHANGING_KINDS and s["status"] != "pending" for s in steps)


class DeployEndings:
    def __init__(self, deps: DeployDeps, store: DeployStore, publisher: DeployPublisher) -> None:
        self.deps = deps
        self.store = store
        self.publisher = publisher

    async def finish(
        self,
        deploy: Deploy,
        event: DeployEvent,
        said: RichText | None,
        persist: Persist,
        *,
        automatic: str | None = None,
    ) -> None:
        """End the run as `event` says, release its lock, and tell everyone."""
        reason = None if said is None else stored(said)
        async with self.deps.db.transaction() as session:
            await move(session, deploy.id, event, reason=reason, finished_at=utc_now())
            await locks.release_for_deploy(session, deploy_id=deploy.id)
        state = next_state(deploy.state, event)
        deploy.state, deploy.reason = state, reason
        await audit.record(
            self.deps.db,
            actor="system",
            action=f"deploy:{state}",
            outcome="ok",
            detail={"deploy": deploy.id, "reason": reason},
        )
        await persist()
        await self.tell_finished(deploy, state, said, automatic=automatic)

    async def finish_rollback(self, deploy: Deploy, persist: Persist) -> None:
        """A rollback (fast, or through every gate) succeeded: it and the deploy it undid say so.
        `deploy.version` is what runs now: the rollback step checked it (engine.py)."""
        by = text("Rolled back by ", Mention(deploy.requested_by))
        reason = text(by, f": {deploy.version} is back (was {deploy.previous_version}).")
        await self.finish(deploy, DeployEvent.SUCCEED, reason, persist)
        if deploy.rollback_of_id is not None:
            await self.store.move(
                deploy.rollback_of_id,
                DeployEvent.UNDO,
                reason=stored(text(by, f" to {deploy.version} (#{deploy.id}).")),
            )
            undone = await self.store.load(deploy.rollback_of_id)
            if undone is not None:
                await self.publisher.publish(undone)

    async def tell_finished(
        self, deploy: Deploy, state: str, reason: RichText | None, *, automatic: str | None = None
    ) -> None:
        """Publish a finished deploy or rollback on the events bus (incident timelines)."""
        if self.deps.events is None or deploy.dry_run:
            return
        rollback = is_rollback(deploy) or state == DeployState.ROLLED_BACK
        if is_rollback(deploy):
            what = (
                f"Rollback #{deploy.id} of {deploy.service} in {deploy.environment} to "
                f"{deploy.version} by "
            )
        else:
            what = (
                f"Deploy #{deploy.id} of {deploy.service} {deploy.version} to "
                f"{deploy.environment} by "
            )
        said = text(what, Mention(deploy.requested_by), f" {DeployState(state).words}")
        if reason:
            said += text(": ", reason)
        await self.deps.events.publish(
            ServiceEvent(
                kind="rollback" if rollback else "deploy",
                text=stored(said),
                at=utc_now(),
                service=deploy.service,
                actor=None if state == DeployState.ROLLED_BACK else deploy.requested_by,
                key=f"deploy:{deploy.id}:{state}",
                data={
                    "deploy_id": deploy.id,
                    "environment": deploy.environment,
                    "version": deploy.version,
                    "previous_version": deploy.previous_version,
                    "state": str(state),
                    "strategy": deploy.strategy,
                    "automatic": bool((deploy.details or {}).get("auto_rollback") or automatic),
                },
            )
        )

    @staticmethod
    async def restore(target: Target, context: DeployContext) -> str | None:
        """Put back what the deploy changed; None when that worked, else why not."""
        try:
            await target.rollback(context)
        except (TargetError, Exception) as exc:
            log.exception("rollback of %s in %s failed", context.service, context.environment)
            return str(exc) or type(exc).__name__
        return None

    async def fail(
        self,
        deploy: Deploy,
        target: Target,
        context: DeployContext,
        steps: list[dict[str, Any]],
        persist: Persist,
        *,
        step_name: str,
        why: str,
        automatic: str | None,
    ) -> None:
        """A step failed: put back what changed (keeping the lock when that fails too)."""
        reason = f"Failed at step {step_name} because {why}."
        if deploy.strategy == "rollback":
            # Nothing to undo an undo with: say so, and keep the lock for a human.
            await self.store.move(
                deploy.id,
                DeployEvent.FAIL,
                reason=f"{reason} The lock stays until someone releases it.",
                finished_at=utc_now(),
            )
            deploy.state = destination(DeployEvent.FAIL)
            await persist()
            await self.tell_finished(deploy, deploy.state, reason)
            return
        if not changed_target(steps):
            failed = reason + " Nothing had been changed."
            await self.finish(deploy, DeployEvent.FAIL, failed, persist, automatic=automatic)
            return
        problem = await self.restore(target, context)
        restored = context.previous_version or "the previous version"
        if problem is None:
            await self._rolled_back(deploy, reason, restored, persist, automatic)
            return
        # The target is in an unknown state: keep the lock so nobody deploys over it.
        await self.store.move(
            deploy.id,
            DeployEvent.FAIL,
            reason=f"{reason} Rolling back to {restored} failed too: {problem}. The lock stays "
            "until someone releases it.",
            finished_at=utc_now(),
        )
        await persist()
        await self.tell_finished(
            deploy,
            DeployState.FAILED,
            f"{reason} Rolling back failed too: {problem}.",
            automatic=automatic,
        )

    async def _rolled_back(
        self, deploy: Deploy, reason: str, restored: str, persist: Persist, automatic: str | None
    ) -> None:
        automatic = (deploy.details or {}).get("auto_rollback") or automatic
        suffix = ""
        if automatic:
            suffix = (
                f" {deploy.environment} stays locked until someone presses Acknowledge, so "
                f"{deploy.version} is not deployed again by accident."
            )
        await self.finish(
            deploy,
            DeployEvent.ROLL_BACK,
            f"{reason} Rolled back: {restored} is back.{suffix}",
            persist,
            automatic=automatic,
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

    async def stop(
        self,
        deploy: Deploy,
        target: Target,
        context: DeployContext,
        steps: list[dict[str, Any]],
        persist: Persist,
        *,
        aborted_by: str,
    ) -> None:
        """Aborted by a person: put back what changed, skip the rest."""
        changed = changed_target(steps)
        problem = await self.restore(target, context) if changed else None
        reason = text("Aborted by ", Mention(aborted_by), ".")
        if changed:
            restored = context.previous_version or "the previous version"
            reason += text(
                f" {restored} is back." if problem is None else f" Rolling back failed: {problem}."
            )
        for record in steps:
            if record["status"] == "pending":
                record["status"] = "skipped"
        await self.finish(deploy, DeployEvent.ABORT, reason, persist)
