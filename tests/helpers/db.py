"""Putting rows straight into the database, for states a test cannot reach through Slack quickly."""

from __future__ import annotations

from typing import Any

from bot.db.session import Database


async def add(database: Database, *rows: Any) -> None:
    """Insert rows in one transaction, in order (each flushed, so later rows see its id)."""
    async with database.transaction() as session:
        for row in rows:
            session.add(row)
            await session.flush()
