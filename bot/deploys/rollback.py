"""Manual rollback: `/rollback` and the Rollback buttons.

Two paths, decided again on every request (a button's value can be old or made up):

- The emergency path, for a version that succeeded in the same environment before: no
  analysis, no approval, no freeze or promotion gate, but who may act, the lock and the audit
  stay. It is a deploy row of strategy `rollback` (its `version` is what comes back, its
  `previous_version` what is taken away, `rollback_of_id` the deploy it undoes) with one step,
  which puts that version back and then checks that it runs. It takes the same (service,
  environment) lock as a deploy, in the transaction that creates it, so twenty people pressing
  Rollback at once produce one rollback; the others are told who is doing it.
- Any other version is a deploy: `/deploy`'s own request (bot/deploys/requests.py) with every
  gate and the approval by someone else, marked as a rollback by its `rollback_of_id`.
"""

from __future__ import annotations

from bot import audit
from bot.db.models import Deploy, utc_now
from bot.deploys import gates, locks
from bot.deploys.messaging import ROLLBACK_CONFIRM, is_rollback
from bot.deploys.service import Deploys
from bot.deploys.states import DeployState
from bot.messages import Button, Mention, Message, Result, Text, refused, text

ROLLBACK_STEP = {"name": "roll back", "kind": "rollback", "params": {}, "status": "pending"}


class Rollbacks:
    """`/rollback` and the Rollback buttons."""

    def __init__(self, deploys: Deploys) -> None:
        self.deploys = deploys
        self.deps = deploys.deps

    async def _authorized(self, user: str, environment: str) -> gates.GateResult:
        env = self.deps.catalog.environment(environment)
        assert env is not None
        groups = await self.deps.directory.groups_of(user, env.deployers)
        return gates.check_deployer(env, user, groups)

    async def _what(
        self, service: str, environment: str, version: str | None
    ) -> tuple[Deploy, str] | Result:
        last = await self.deploys.store.last_succeeded(service, environment)
        if last is None:
            return refused(
                f"opsbot has no successful deploy of {service} in {environment} to roll back."
            )
        restore = version or last.previous_version
        if not restore:
            return refused(
                f"deploy #{last.id} put {last.version} on {environment} with nothing known before "
                f"it: name the version to restore (`/rollback {service} {environment} <version>`)."
            )
        if restore == last.version:
            return refused(f"{service} in {environment} already runs {restore}.")
        return last, restore

    async def _emergency(self, service: str, environment: str, restore: str) -> bool:
        """May this rollback skip approval? Only to a version that succeeded there before."""
        return restore in await self.deploys.store.succeeded_versions(service, environment)

    async def _as_deploy(self, last: Deploy, restore: str, user: str) -> Result:
        """A version that has not succeeded in the environment: a deploy through every gate."""
        return await self.deploys.request(
            service=last.service,
            environment=last.environment,
            version=restore,
            strategy=None,
            dry_run=False,
            requester=user,
            rollback_of=last,
        )

    async def offer(
        self, *, service: str, environment: str, version: str | None, user: str
    ) -> Result:
        """`/rollback`: the emergency path says exactly what it would restore, behind a confirm
        dialog; any other version is requested as a deploy at once (gates, approval)."""
        allowed = await self._authorized(user, environment)
        if not allowed.passed:
            return refused(allowed.reason)
        what = await self._what(service, environment, version)
        if isinstance(what, Result):
            return what
        last, restore = what
        if not await self._emergency(service, environment, restore):
            return await self._as_deploy(last, restore, user)
        text = (
            f"Roll back {service} in {environment} from {last.version} to {restore}? "
            f"{restore} succeeded in {environment} before, so it skips analysis and approval."
        )
        confirm = (
            "Roll back?",
            f"Puts {restore} back on {environment} in place of {last.version}.",
        )
        value = f"{service}|{environment}|{restore}"
        button = Button(
            ROLLBACK_CONFIRM, f"Roll back to {restore}", value, "danger", confirm=confirm
        )
        return Result(True, Message(text, buttons=(button,)))

    async def start(
        self, *, service: str, environment: str, version: str | None, user: str
    ) -> Result:
        """Carry out a confirmed rollback (exactly once, however many press the button)."""
        svc = self.deps.catalog.service(service)
        if svc is None or environment not in svc.targets:
            return refused(f"{service} has no target in {environment}.")
        allowed = await self._authorized(user, environment)
        if not allowed.passed:
            return refused(allowed.reason)
        what = await self._what(service, environment, version)
        if isinstance(what, Result):
            return what
        last, restore = what
        if not await self._emergency(service, environment, restore):
            return await self._as_deploy(last, restore, user)
        row = await self._create(last, restore, user)
        if isinstance(row, Result):
            return row
        await self.deploys.publish(row)
        self.deploys.start(row.id)
        return Result(
            True, Message(f"Rolling back {service} in {environment} to {restore} (#{row.id}).")
        )

    async def _create(self, last: Deploy, restore: str, user: str) -> Deploy | Result:
        """The rollback's row with its lock and audit entry; the refusal when the lock is held."""
        service, environment = last.service, last.environment
        details = last.details or {}
        # What the target needs to undo the last deploy (e.g. which colour was live) describes
        # how to put back exactly the version before it, and only when that deploy changed it.
        undoes_last = restore == last.previous_version and last.strategy != "rollback"
        target_state = dict(details.get("target_state") or {}) if undoes_last else {}
        now = utc_now()
        async with self.deps.db.transaction() as session:
            row = Deploy(
                service=service,
                environment=environment,
                version=restore,
                previous_version=last.version,
                strategy="rollback",
                state=str(DeployState.RUNNING),
                requested_by=user,
                rollback_of_id=last.id,
                details={
                    "steps": [dict(ROLLBACK_STEP)],
                    "target_state": target_state,
                    "approved_by": [],
                },
                created_at=now,
                started_at=now,
            )
            session.add(row)
            await session.flush()
            holder = await locks.acquire(
                session, service=service, environment=environment, holder=user, deploy_id=row.id
            )
            if holder is not None:
                await session.rollback()
                return refused(await self._busy(service, environment, holder))
            await audit.record(
                session,
                actor=user,
                action="rollback:requested",
                outcome="running",
                detail={"deploy": row.id, "of": last.id, "restore": restore},
            )
        return row

    async def _busy(self, service: str, environment: str, holder: locks.LockHolder) -> Text:
        if holder.deploy_id:
            async with self.deps.db.session() as session:
                other = await session.get(Deploy, holder.deploy_id)
            if other is not None and is_rollback(other):
                since = holder.since.strftime("%H:%M:%S UTC")
                return text(
                    Mention(other.requested_by),
                    f" is already rolling back {service} in {environment} "
                    f"to {other.version} (#{other.id}, since {since}).",
                )
        return text(f"{service} in {environment} is ", holder.describe(), ".")


def parse_value(value: str) -> tuple[str, str, str] | None:
    parts = value.split("|")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 and all(parts) else None


__all__ = ["Rollbacks", "parse_value"]
