"""Manual rollback, the fast path: no analysis, no approval, but who may act and the audit stay.

A rollback is a deploy row of strategy `rollback` (its `version` is what comes back, its
`previous_version` what is taken away, `rollback_of_id` the deploy it undoes) with one step. It
takes the same (service, environment) lock as a deploy, in the transaction that creates it, so
twenty people pressing Rollback at once produce one rollback; the others are told who is doing it.
"""

from __future__ import annotations

from bot import audit
from bot.db.models import Deploy, utc_now
from bot.deploys import gates, locks
from bot.deploys.messaging import ROLLBACK_CONFIRM
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

    async def offer(
        self, *, service: str, environment: str, version: str | None, user: str
    ) -> Result:
        """`/rollback`: say exactly what would be restored, behind a confirm dialog."""
        allowed = await self._authorized(user, environment)
        if not allowed.passed:
            return refused(allowed.reason)
        what = await self._what(service, environment, version)
        if isinstance(what, Result):
            return what
        last, restore = what
        text = (
            f"Roll back {service} in {environment} from {last.version} to {restore}? "
            "It skips analysis and approval."
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
                    # What the target needs to undo the deploy (e.g. which colour was live).
                    "target_state": dict((last.details or {}).get("target_state") or {}),
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
        await self.deploys.publish(row)
        self.deploys.start(row.id)
        return Result(
            True, Message(f"Rolling back {service} in {environment} to {restore} (#{row.id}).")
        )

    async def _busy(self, service: str, environment: str, holder: locks.LockHolder) -> Text:
        if holder.deploy_id:
            async with self.deps.db.session() as session:
                other = await session.get(Deploy, holder.deploy_id)
            if other is not None and other.strategy == "rollback":
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
