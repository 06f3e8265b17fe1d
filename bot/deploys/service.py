"""The deploy domain's front: one method per thing a person (or the bot's start-up) can ask.

A deploy is a persisted state machine (bot/deploys/states.py). Its parts, each in its module:

    requests.py   `/deploy`: gates, dry run, approval, rejection and expiry
    engine.py     running a playbook's steps in this process; abort and promote
    monitor.py    the playbook's `monitor` step: the monitoring window and its triggers
    endings.py    how a run ends (succeeded, failed, rolled back, aborted) and putting back
    recovery.py   restarts and replicas: interrupted deploys, resume, roll back, release
    queries.py    status, history, manual locks and acknowledging an automatic rollback
    publisher.py  the deploy's one message (coalesced updates) and its thread
    store.py      the deploy table, and the guard every state change passes

Every transition is a conditional UPDATE (`store.move`), so a double click, a Slack retry or a
second replica cannot move a deploy twice. The lock on (service, environment) is taken in the same
statement that creates the deploy and released only by the deploy that holds it.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from bot.db.models import Deploy
from bot.deploys.deps import DeployDeps
from bot.deploys.endings import DeployEndings
from bot.deploys.engine import ActiveRun, DeployEngine
from bot.deploys.publisher import DeployPublisher
from bot.deploys.queries import DeployQueries
from bot.deploys.recovery import DeployRecovery
from bot.deploys.requests import DeployRequests
from bot.deploys.store import DeployStore
from bot.messages import Result
from bot.targets.base import Target


class Deploys:
    """The deploy service, composed of its parts (see the module's docstring)."""

    def __init__(self, deps: DeployDeps) -> None:
        self.deps = deps
        self.store = DeployStore(deps.db)
        self.publisher = DeployPublisher(deps, self.store)
        self.endings = DeployEndings(deps, self.store, self.publisher)
        self.engine = DeployEngine(deps, self.store, self.publisher, self.endings)
        self.requests = DeployRequests(deps, self.store, self.publisher, self.engine)
        self.recovery = DeployRecovery(deps, self.store, self.publisher, self.engine, self.endings)
        self.queries = DeployQueries(deps, self.store, self.publisher)

    @property
    def running(self) -> dict[int, ActiveRun]:
        """The deploys this process runs, by id."""
        return self.engine.running

    @property
    def update_interval(self) -> float:
        """Seconds between two updates of one deploy's message."""
        return self.publisher.update_interval

    @update_interval.setter
    def update_interval(self, seconds: float) -> None:
        self.publisher.update_interval = seconds

    # -- asking for a deploy ---------------------------------------------------------------------
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
        """`/deploy <service> <env> [<version>]`: check every gate, then start or await approval
        (`rollback_of`: the succeeded deploy a rollback through every gate undoes)."""
        return await self.requests.request(
            service=service,
            environment=environment,
            version=version,
            strategy=strategy,
            dry_run=dry_run,
            requester=requester,
            rollback_of=rollback_of,
        )

    async def approve(self, *, deploy_id: int, user: str) -> Result:
        return await self.requests.approve(deploy_id=deploy_id, user=user)

    async def reject(self, *, deploy_id: int, user: str) -> Result:
        return await self.requests.reject(deploy_id=deploy_id, user=user)

    async def expire_approvals(self) -> int:
        """Deploys whose approval did not come in time: expired, lock released, thread told."""
        return await self.requests.expire_approvals()

    # -- running ---------------------------------------------------------------------------------
    def start(
        self, deploy_id: int, deploy: Deploy | None = None, target: Target | None = None
    ) -> None:
        """Run a deploy in this process (its state says `running`)."""
        self.engine.start(deploy_id, deploy, target)

    async def abort(self, *, deploy_id: int, user: str) -> Result:
        return await self.engine.abort(deploy_id=deploy_id, user=user)

    async def promote(self, *, deploy_id: int, user: str) -> Result:
        return await self.engine.promote(deploy_id=deploy_id, user=user)

    async def wait(self, deploy_id: int) -> None:
        """Until this process has finished running the deploy (tests and shutdown)."""
        await self.engine.wait(deploy_id)

    async def stop_all(self) -> None:
        """Stop every deploy this process runs (shutdown); their state stays for recovery."""
        await self.engine.stop_all()

    async def publish(self, deploy: Deploy) -> None:
        """Post or update the deploy's message (for the rollback service)."""
        await self.publisher.publish(deploy)

    async def flush(self, deploy_id: int | None = None) -> None:
        """Wait until pending message updates (of one deploy, or all) have been sent."""
        await self.publisher.flush(deploy_id)

    # -- after a restart -------------------------------------------------------------------------
    async def recover(
        self, *, spare: Collection[int] = (), quiet_since: datetime | None = None
    ) -> int:
        """Deploys whose process is gone are interrupted; returns how many."""
        return await self.recovery.recover(spare=spare, quiet_since=quiet_since)

    async def resume(self, *, deploy_id: int, user: str) -> Result:
        return await self.recovery.resume(deploy_id=deploy_id, user=user)

    async def roll_back_interrupted(self, *, deploy_id: int, user: str) -> Result:
        return await self.recovery.roll_back_interrupted(deploy_id=deploy_id, user=user)

    async def release_lock(self, *, deploy_id: int, user: str) -> Result:
        return await self.recovery.release_lock(deploy_id=deploy_id, user=user)

    # -- reading, and manual locks ---------------------------------------------------------------
    async def status(self, *, service: str | None) -> Result:
        return await self.queries.status(service=service)

    async def history(self, *, service: str, environment: str | None) -> Result:
        return await self.queries.history(service=service, environment=environment)

    async def lock(self, *, service: str, environment: str, reason: str, user: str) -> Result:
        return await self.queries.lock(
            service=service, environment=environment, reason=reason, user=user
        )

    async def unlock(self, *, service: str, environment: str, user: str) -> Result:
        return await self.queries.unlock(service=service, environment=environment, user=user)

    async def acknowledge(self, *, deploy_id: int, user: str) -> Result:
        """After an automatic rollback: someone has seen it; the environment unlocks."""
        return await self.queries.acknowledge(deploy_id=deploy_id, user=user)


__all__ = ["DeployDeps", "Deploys", "Result"]
