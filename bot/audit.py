"""The audit log: an append-only record of every command, button and automatic action."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.db.models import AuditEntry, utc_now
from bot.db.session import Database

__all__ = ["AuditEntry", "entries", "record"]

_INSERT = insert(AuditEntry)  # built once; each entry's values are its parameters


async def record(
    db_or_session: Database | AsyncSession | AsyncConnection,
    *,
    actor: str,
    action: str,
    outcome: str,
    channel: str | None = None,
    detail: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> None:
    """Append one audit entry, on its own or in the given session's (connection's) transaction."""
    values = {
        "at": utc_now(),
        "actor": actor,
        "channel": channel,
        "action": action,
        "outcome": outcome,
        "detail": detail,
        "request_id": request_id,
    }
    if isinstance(db_or_session, AsyncSession):
        # Part of the caller's transaction: the entry commits (or rolls back) with the change.
        db_or_session.add(AuditEntry(**values))
        return
    if isinstance(db_or_session, AsyncConnection):
        await db_or_session.execute(_INSERT, values)  # in the caller's transaction
        return
    # On its own: one Core INSERT committing by itself (every request writes one).
    async with db_or_session.autocommit() as connection:
        await connection.execute(_INSERT, values)


async def entries(db: Database, *, limit: int = 100, action: str | None = None) -> list[AuditEntry]:
    """The latest audit entries, newest first, optionally only those of one action."""
    statement = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)
    if action is not None:
        statement = statement.where(AuditEntry.action == action)
    async with db.session() as session:
        return list(await session.scalars(statement))
