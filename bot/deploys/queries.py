"""What people ask about deploys (status, history) and the sticky locks they set by hand."""

from __future__ import annotations

from sqlalchemy import select

from bot.db.models import Deploy
from bot.deploys import gates, locks
from bot.deploys.deps import DeployDeps
from bot.deploys.messaging import is_rollback
from bot.deploys.publisher import DeployPublisher
from bot.deploys.states import ACTIVE_STATES, DeployState
from bot.deploys.store import DeployStore
from bot.messages import Emoji, Mention, Message, Result, fmt, refused, stored, text, verbatim


class DeployQueries:
    def __init__(self, deps: DeployDeps, store: DeployStore, publisher: DeployPublisher) -> None:
        self.deps = deps
        self.store = store
        self.publisher = publisher

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
                versions = await self.store.succeeded_versions(name, env_name)
                line = f"{name} {env_name}: {versions[0] if versions else 'no deploy yet'}"
                deploy = next(
                    (d for d in active if d.service == name and d.environment == env_name), None
                )
                if deploy:
                    line += f"; deploy #{deploy.id} of {deploy.version} is {_state(deploy)}"
                holder = held.get((name, env_name))
                if holder:  # in a code block: people as they are kept (it pings nobody)
                    line += f"; {stored(holder.describe())}"
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
        # In a code block: people as they are kept (it pings nobody).
        lines = [
            stored(
                text(
                    f"#{d.id} {d.created_at:%Y-%m-%d %H:%M} {d.environment} "
                    f"{'rollback to ' if is_rollback(d) else ''}{d.version} "
                    f"{_state(d)} by ",
                    Mention(d.requested_by),
                )
            )
            for d in deploys
        ]
        where = f" in {environment}" if environment else ""
        return Result(
            True,
            Message(
                f"*History of {service}{where}*", preformatted="\n".join(lines) or "no deploys yet"
            ),
        )

    async def _deployer(self, user: str, environment: str) -> gates.GateResult:
        env = self.deps.catalog.environment(environment)
        assert env is not None  # the grammar validated it
        groups = await self.deps.directory.groups_of(user, env.deployers)
        return gates.check_deployer(env, user, groups)

    async def lock(self, *, service: str, environment: str, reason: str, user: str) -> Result:
        allowed = await self._deployer(user, environment)
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
            return refused(text(f"{service} in {environment} is already ", holder.describe(), "."))
        said = text(
            Emoji("lock"),
            f" {service} in {environment} is locked by ",
            Mention(user),
            ": ",
            verbatim(reason),
        )
        return Result(True, Message(said), public=True)

    async def unlock(self, *, service: str, environment: str, user: str) -> Result:
        allowed = await self._deployer(user, environment)
        if not allowed.passed:
            return refused(allowed.reason)
        async with self.deps.db.transaction() as session:
            removed = await locks.release_manual(session, service=service, environment=environment)
        if removed is None:
            holder = await self.store.lock_holder(service, environment)
            if holder:
                return refused(
                    text(
                        f"{service} in {environment} is ",
                        holder.describe(),
                        ": a deploy's lock is released by the deploy (or its Release lock "
                        "button), not by unlock.",
                    )
                )
            return refused(f"{service} in {environment} is not locked.")
        said = text(
            Emoji("unlock"),
            f" {service} in {environment} is unlocked by ",
            Mention(user),
            " (was: ",
            verbatim(str(removed.reason)),
            ").",
        )
        return Result(True, Message(said), public=True)

    async def acknowledge(self, *, deploy_id: int, user: str) -> Result:
        """After an automatic rollback: someone has seen it; the environment unlocks."""
        deploy = await self.store.load(deploy_id)
        if deploy is None or not (deploy.details or {}).get("auto_rollback"):
            return refused(f"deploy #{deploy_id} was not rolled back automatically.")
        if not await self.deps.may_act(deploy, user):
            return refused(f"only deployers of {deploy.environment} may acknowledge.")
        async with self.deps.db.transaction() as session:
            removed = await locks.release_manual(
                session, service=deploy.service, environment=deploy.environment
            )
        if removed is None:
            return refused(f"{deploy.service} in {deploy.environment} is no longer locked.")
        details = dict(deploy.details or {})
        details["acknowledged_by"] = user
        await self.store.save(deploy, details=details)
        await self.deps.audit(user, "deploy:acknowledge", deploy_id)
        await self.publisher.publish(deploy)
        said = fmt(
            "{} {} in {} is unlocked by {}.",
            Emoji("unlock"),
            text(deploy.service),
            text(deploy.environment),
            Mention(user),
        )
        return Result(True, Message(said), public=True)


def _state(deploy: Deploy) -> str:
    return DeployState(deploy.state).words
