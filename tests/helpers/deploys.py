"""Deploys as the tests watch them: waiting for them to end, their rows, their channel messages."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from bot.db.models import Deploy
from bot.db.session import Database
from tests.conftest import RunningBot


async def finish(bot: RunningBot) -> None:
    """Wait for the command's work and for every deploy it started."""
    await bot.settle()
    while bot.services.deploys.running:
        await asyncio.gather(*(r.task for r in list(bot.services.deploys.running.values())))
    await bot.settle()
    await bot.services.deploys.flush()


async def deploys(db: Database) -> list[Deploy]:
    """Every deploy row, oldest first."""
    async with db.session() as session:
        return list(await session.scalars(select(Deploy).order_by(Deploy.id)))


def deploy_messages(bot: RunningBot) -> list[Any]:
    """The deploys' own messages in #deploys (not thread replies, not private answers)."""
    return [
        m
        for m in bot.fake.messages
        if m.channel == "C0DEPLOYS"
        and not m.thread_ts
        and m.source == "api"
        and not m.ephemeral_for
    ]
