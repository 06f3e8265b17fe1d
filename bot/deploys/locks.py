"""One deploy at a time per service and environment, and sticky manual locks with a reason."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.db.models import Lock, utc_now
from bot.db.session import Database
from bot.db.statements import insert_or_ignore
from bot.messages import Mention, Text, text, verbatim


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock, for refusals ("locked by @alice since 10:02: db migration")."""

    holder: str
    since: datetime
    reason: str | None
    sticky: bool
    deploy_id: int | None

    def describe(self) -> Text:
        since = self.since.strftime("%Y-%m-%d %H:%M UTC")
        what = f"deploy #{self.deploy_id}" if self.deploy_id else "a manual lock"
        said = text("locked by ", Mention(self.holder), f" since {since} ({what})")
        return text(said, ": ", verbatim(self.reason)) if self.reason else said


def unknown_holder() -> LockHolder:
    """A lock that was taken a moment ago and is gone when read: reported, not retried."""
    return LockHolder(holder="unknown", since=utc_now(), reason=None, sticky=False, deploy_id=None)


_HOLDER = select(Lock.holder, Lock.acquired_at, Lock.reason, Lock.sticky, Lock.deploy_id).where(
    Lock.service == bindparam("service"), Lock.environment == bindparam("environment")
)


def _holder(lock: Lock) -> LockHolder:
    return LockHolder(lock.holder, lock.acquired_at, lock.reason, lock.sticky, lock.deploy_id)


async def acquire(
    session: AsyncSession | AsyncConnection,
    *,
    service: str,
    environment: str,
    holder: str,
    deploy_id: int | None = None,
    reason: str | None = None,
    sticky: bool = False,
) -> LockHolder | None:
    """Take the lock in the caller's transaction; None on success, else who holds it."""
    values = {
        "service": service,
        "environment": environment,
        "holder": holder,
        "deploy_id": deploy_id,
        "reason": reason,
        "sticky": sticky,
        "acquired_at": utc_now(),
    }
    if await insert_or_ignore(session, Lock, values):
        return None
    existing = await _read_holder(session, service=service, environment=environment)
    # None: released between our insert and our read; report, don't retry.
    return existing or unknown_holder()


async def release_for_deploy(session: AsyncSession, *, deploy_id: int) -> bool:
    """Release the lock a deploy holds (never someone else's); True if one was released."""
    result = cast(
        CursorResult[Any],
        await session.execute(
            delete(Lock).where(Lock.deploy_id == deploy_id, Lock.sticky.is_(False))
        ),
    )
    return result.rowcount > 0


async def release_manual(
    session: AsyncSession, *, service: str, environment: str
) -> LockHolder | None:
    """Remove a sticky lock; returns what was removed, None if there was no sticky lock."""
    existing = await session.get(Lock, (service, environment), with_for_update=True)
    if existing is None or not existing.sticky:
        return None
    removed = _holder(existing)
    await session.execute(
        delete(Lock).where(
            Lock.service == service, Lock.environment == environment, Lock.sticky.is_(True)
        )
    )
    return removed


async def holder_of(db: Database, *, service: str, environment: str) -> LockHolder | None:
    """Who holds the lock now (a read without a transaction: it may change the next moment)."""
    async with db.autocommit() as connection:
        return await _read_holder(connection, service=service, environment=environment)


async def _read_holder(
    session: AsyncSession | AsyncConnection, *, service: str, environment: str
) -> LockHolder | None:
    # One Core select, built once: no ORM objects for a read that only reports.
    values = {"service": service, "environment": environment}
    row = (await session.execute(_HOLDER, values)).first()
    return (
        LockHolder(row.holder, row.acquired_at, row.reason, row.sticky, row.deploy_id)
        if row
        else None
    )


async def all_locks(
    db: Database, *, service: str | None = None
) -> dict[tuple[str, str], LockHolder]:
    statement = select(Lock)
    if service:
        statement = statement.where(Lock.service == service)
    async with db.session() as session:
        return {
            (lock.service, lock.environment): _holder(lock)
            for lock in await session.scalars(statement)
        }
