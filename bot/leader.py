"""One scheduler per database: leader election with a PostgreSQL advisory lock.

Several replicas may serve Slack against one PostgreSQL database, but timed work (polling metrics,
escalating missed deadlines, reminders) must run once. Each replica keeps trying to take a
session-level advisory lock on a connection of its own, outside the pool; the one that holds it is
the leader and runs the scheduler. The lock lives as long as that connection: when the leader dies
(crash, kill -9, lost network) PostgreSQL ends its session and frees the lock, and the next replica
to try takes it, within `retry_every` seconds. The leader checks its connection on the same
period and steps down the moment the check fails, so two leaders never run at once for longer than
one check.

SQLite is one replica by definition (one file, one process): it is always the leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg
from sqlalchemy import make_url

log = logging.getLogger(__name__)

# pg_try_advisory_lock takes a bigint; this one spells "opsbot" and a version, so it cannot collide
# with the migration lock (bot.db.session) or, in practice, another application's.
SCHEDULER_LOCK_ID = 0x6F7073626F740005

Callback = Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


class Leadership:
    """Campaigns for the scheduler lock until `stop()`; calls `on_elected` / `on_deposed`."""

    def __init__(
        self,
        database_url: str,
        *,
        retry_every: float = 5.0,
        on_elected: Callback = _nothing,
        on_deposed: Callback = _nothing,
        check_timeout: float = 5.0,
    ) -> None:
        url = make_url(database_url)
        self.dialect = url.get_backend_name()
        self._dsn = (
            url.set(drivername="postgresql").render_as_string(hide_password=False)
            if self.dialect == "postgresql"
            else ""
        )
        self.retry_every = retry_every
        self.check_timeout = check_timeout
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self.is_leader = False
        self.rounds = 0  # campaign rounds completed
        self._round_done = asyncio.Condition()
        self.elected = asyncio.Event()  # set while this replica leads (for tests and /metrics)
        self._connection: asyncpg.Connection | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin campaigning in the background."""
        self._task = asyncio.ensure_future(self._campaign())

    async def campaigned(self, rounds: int) -> None:
        """Return once `rounds` more campaign rounds have completed (for tests and tools)."""
        async with self._round_done:
            target = self.rounds + rounds
            await self._round_done.wait_for(lambda: self.rounds >= target)

    async def stop(self) -> None:
        """Stop campaigning; a leader steps down and frees the lock for the next replica."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._step_down("stopping")

    async def _campaign(self) -> None:
        while not self._stop.is_set():
            try:
                if self.is_leader:
                    await self._check()
                else:
                    await self._try_to_lead()
            except Exception:  # a campaign never dies: log, and try again next period
                log.exception("leader election failed; retrying in %.1f s", self.retry_every)
            async with self._round_done:
                self.rounds += 1
                self._round_done.notify_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.retry_every)

    async def _try_to_lead(self) -> None:
        if self.dialect != "postgresql":
            await self._become_leader("the database is SQLite: one replica, always the leader")
            return
        if self._connection is None or self._connection.is_closed():
            self._connection = await asyncpg.connect(
                self._dsn,
                timeout=self.check_timeout,
                server_settings={"application_name": "opsbot-scheduler-leader"},
            )
        got = await self._connection.fetchval(
            "SELECT pg_try_advisory_lock($1)", SCHEDULER_LOCK_ID, timeout=self.check_timeout
        )
        if got:
            await self._become_leader("took the scheduler lock")

    async def _check(self) -> None:
        if self.dialect != "postgresql":
            return
        try:
            assert self._connection is not None
            await self._connection.fetchval("SELECT 1", timeout=self.check_timeout)
        except Exception as exc:
            await self._step_down(f"lost the lock's connection ({type(exc).__name__})")

    async def _become_leader(self, why: str) -> None:
        self.is_leader = True
        self.elected.set()
        log.info("this replica now runs the scheduler: %s", why)
        await self.on_elected()

    async def _step_down(self, why: str) -> None:
        was_leader = self.is_leader
        self.is_leader = False
        self.elected.clear()
        connection, self._connection = self._connection, None
        if connection is not None:
            # Closing the session frees the advisory lock at once for the other replicas.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), self.check_timeout)
            if not connection.is_closed():
                connection.terminate()
        if was_leader:
            # Stopping is routine; losing the lock while running is worth a warning.
            level = logging.INFO if self._stop.is_set() else logging.WARNING
            log.log(level, "this replica no longer runs the scheduler: %s", why)
            await self.on_deposed()
