"""After a restart, or when a replica is gone: deploys nobody runs any more are interrupted, and
people resume them, roll them back, or release their lock."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import select

from bot import audit
from bot.db.models import Deploy, utc_now
from bot.deploys import locks
from bot.deploys.deps import DeployDeps
from bot.deploys.endings import DeployEndings
from bot.deploys.engine import DeployEngine
from bot.deploys.publisher import DeployPublisher
from bot.deploys.states import DeployEvent, DeployState, sources
from bot.deploys.store import DeployStore, move
from bot.messages import Mention, Message, Result, refused, stored, text
from bot.targets.base import DeployContext, TargetError


class DeployRecovery:
    def __init__(
        self,
        deps: DeployDeps,
        store: DeployStore,
        publisher: DeployPublisher,
        engine: DeployEngine,
        endings: DeployEndings,
    ) -> None:
        self.deps = deps
        self.store = store
        self.publisher = publisher
        self.engine = engine
        self.endings = endings

    async def recover(
        self, *, spare: Collection[int] = (), quiet_since: datetime | None = None
    ) -> int:
        """Deploys whose process is gone are interrupted; say what the target runs now.

        At start every running deploy is such a deploy, except those this process runs, those in
        `spare` (live peers run them) and, with `quiet_since`, those changed after it (a peer may
        have started them since its last heartbeat). Returns how many were interrupted.
        """
        query = select(Deploy).where(Deploy.state.in_(sources(DeployEvent.INTERRUPT)))
        if quiet_since is not None:
            query = query.where(Deploy.updated_at < quiet_since)
        async with self.deps.db.session() as session:
            stale = [
                deploy
                for deploy in await session.scalars(query)
                if deploy.id not in self.engine.running and deploy.id not in spare
            ]
        interrupted = 0
        for deploy in stale:
            if await self._interrupt(deploy):
                interrupted += 1
        return interrupted

    async def _interrupt(self, deploy: Deploy) -> bool:
        """Mark one orphaned deploy interrupted, saying what its target runs; True if it was."""
        svc, env = self.deps.lookup(deploy.service, deploy.environment)
        target = self.deps.target(svc, env.name)
        try:
            found = (await target.current()).detail
        except TargetError as exc:
            found = f"could not read the target: {exc}"
        finally:
            await target.close()
        steps = (deploy.details or {}).get("steps", [])
        step = next((s["name"] for s in steps if s["status"] == "running"), None)
        where = f" during step {step}" if step else ""
        reason = (
            f"opsbot stopped{where}. It found: {found}. The lock is still held: "
            "Resume, Roll back or Release lock."
        )
        if not await self.store.move(deploy.id, DeployEvent.INTERRUPT, reason=reason):
            return False
        deploy.state, deploy.reason = DeployState.INTERRUPTED, reason
        await audit.record(
            self.deps.db,
            actor="system",
            action="deploy:interrupted",
            outcome="ok",
            detail={"deploy": deploy.id, "found": found},
        )
        await self.publisher.publish(deploy)
        await self.publisher.say(deploy, f"Reconciled after a restart: {found}.")
        return True

    async def _load_for(self, deploy_id: int, user: str, verb: str) -> Deploy | Result:
        """The deploy, if it exists and `user` may act on it; else the refusal to answer."""
        deploy = await self.store.load(deploy_id)
        if deploy is None:
            return refused(f"there is no deploy #{deploy_id}.")
        if not await self.deps.may_act(deploy, user):
            return refused(f"only the requester or deployers of {deploy.environment} may {verb}.")
        return deploy

    async def resume(self, *, deploy_id: int, user: str) -> Result:
        deploy = await self._load_for(deploy_id, user, "resume")
        if isinstance(deploy, Result):
            return deploy
        reason = stored(text("Resumed by ", Mention(user), "."))
        moved = await self.store.move(deploy_id, DeployEvent.RESUME, reason=reason)
        if not moved:
            return refused(f"deploy #{deploy_id} is {_state(deploy)}, not interrupted.")
        await self.deps.audit(user, "deploy:resume", deploy_id)
        self.engine.start(deploy_id)
        return Result(True, Message(f"Resuming deploy #{deploy_id} from the step it was on."))

    async def roll_back_interrupted(self, *, deploy_id: int, user: str) -> Result:
        deploy = await self._load_for(deploy_id, user, "roll back")
        if isinstance(deploy, Result):
            return deploy
        if not await self.store.move(deploy_id, DeployEvent.RESUME):
            return refused(f"deploy #{deploy_id} is {_state(deploy)}, not interrupted.")
        deploy.state = DeployState.RUNNING
        svc, env = self.deps.lookup(deploy.service, deploy.environment)
        target = self.deps.target(svc, env.name)
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
            await self.publisher.publish(deploy)

        try:
            problem = await self.endings.restore(target, context)
        finally:
            await target.close()
        restored = deploy.previous_version or "the previous version"
        if problem is None:
            reason = text("Rolled back by ", Mention(user), f": {restored} is back.")
            await self.endings.finish(deploy, DeployEvent.ROLL_BACK, reason, persist)
            return Result(True, Message(f"Deploy #{deploy_id} rolled back: {restored} is back."))
        await self.store.move(
            deploy_id,
            DeployEvent.INTERRUPT,
            reason=f"Rolling back failed: {problem}. The lock is still held.",
        )
        return refused(f"rolling back deploy #{deploy_id} failed: {problem}")

    async def release_lock(self, *, deploy_id: int, user: str) -> Result:
        deploy = await self._load_for(deploy_id, user, "release the lock")
        if isinstance(deploy, Result):
            return deploy
        reason = stored(
            text(
                "Lock released by ",
                Mention(user),
                "; the target was left as found (see the thread).",
            )
        )
        async with self.deps.db.transaction() as session:
            moved = await move(
                session, deploy_id, DeployEvent.RELEASE, reason=reason, finished_at=utc_now()
            )
            released = await locks.release_for_deploy(session, deploy_id=deploy_id)
        if not moved and not released:
            return refused(f"deploy #{deploy_id} holds no lock.")
        await self.deps.audit(user, "deploy:release_lock", deploy_id)
        deploy = await self.store.load(deploy_id)
        if deploy:
            await self.publisher.publish(deploy)
        return Result(True, Message(f"The lock of deploy #{deploy_id} is released."))


def _state(deploy: Deploy) -> str:
    return DeployState(deploy.state).words
