"""Which opsbot processes are alive, and which deploys each runs: finding orphaned deploys.

Every replica writes a heartbeat row every `interval` with the ids of the deploys it runs. A deploy
in a running state that no live replica lists, and that has not changed for `stale_after`, lost its
process (a crash, kill -9, a lost machine). The elected replica reconciles such deploys as a
restarted bot reconciles its own: the deploy becomes interrupted, keeps its lock, and its thread
says what the target runs now and offers Resume / Roll back / Release lock.

Before this, a replica that started reconciled every running deploy, including those a live peer
was running; now it spares what live peers list.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update

from bot.db.models import Replica, utc_now
from bot.db.session import Database
from bot.db.statements import insert_or_ignore

if TYPE_CHECKING:
    from bot.deploys.service import Deploys

log = logging.getLogger(__name__)


class ReplicaRegistry:
    """This process's heartbeat, and what the live ones run."""

    def __init__(
        self,
        db: Database,
        running: Callable[[], Collection[int]],
        *,
        interval: timedelta = timedelta(seconds=10),
        stale_after: timedelta = timedelta(seconds=30),
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.db = db
        self.running = running
        self.interval = interval
        self.stale_after = stale_after
        self.clock = clock
        host = socket.gethostname()[:200]
        self.id = f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._host = host
        self._task: asyncio.Task[None] | None = None

    async def beat(self) -> None:
        """Write this replica's heartbeat and the deploys it runs now."""
        now = self.clock()
        deploys = sorted(self.running())
        async with self.db.transaction() as session:
            moved = await session.execute(
                update(Replica)
                .where(Replica.id == self.id)
                .values(heartbeat_at=now, deploys=deploys)
            )
            if moved.rowcount == 0:  # type: ignore[attr-defined]
                await insert_or_ignore(
                    session,
                    Replica,
                    {
                        "id": self.id,
                        "host": self._host,
                        "pid": os.getpid(),
                        "started_at": now,
                        "heartbeat_at": now,
                        "deploys": deploys,
                    },
                )

    def start(self) -> None:
        """Beat every `interval` in the background (the first beat is awaited by the caller)."""
        self._task = asyncio.ensure_future(self._beating())

    async def _beating(self) -> None:
        while True:
            await asyncio.sleep(self.interval.total_seconds())
            try:
                await self.beat()
            except Exception:  # the database may be away a moment; the next beat retries
                log.warning("could not write the replica heartbeat", exc_info=True)

    async def stop(self) -> None:
        """Stop beating and remove this replica: its deploys are left for whoever recovers them."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            async with self.db.transaction() as session:
                await session.execute(delete(Replica).where(Replica.id == self.id))

    async def live_deploys(self) -> set[int]:
        """The deploys that replicas with a fresh heartbeat (this one included) say they run."""
        fresh = self.clock() - self.stale_after
        async with self.db.session() as session:
            lists = await session.scalars(
                select(Replica.deploys).where(Replica.heartbeat_at >= fresh)
            )
            return {int(deploy) for listed in lists for deploy in listed or ()}

    async def recover_orphans(self, deploys: Deploys) -> int:
        """Scheduler job (elected replica): interrupt the deploys whose process is gone."""
        interrupted = await deploys.recover(
            spare=await self.live_deploys(), quiet_since=self.clock() - self.stale_after
        )
        if interrupted:
            log.warning("%d deploy(s) lost their opsbot process: see their threads", interrupted)
        await self.forget_dead()
        return interrupted

    async def forget_dead(self, older_than: timedelta = timedelta(days=1)) -> None:
        """Remove rows of replicas that stopped beating long ago (crashed without `stop`)."""
        async with self.db.transaction() as session:
            await session.execute(
                delete(Replica).where(Replica.heartbeat_at < self.clock() - older_than)
            )
