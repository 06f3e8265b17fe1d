"""Leader election: one replica per PostgreSQL database runs the scheduler; another takes over."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace

import asyncpg
from apscheduler.schedulers.base import STATE_PAUSED, STATE_RUNNING
from sqlalchemy import make_url

from bot.catalog import Catalog
from bot.db.session import Database
from bot.leader import SCHEDULER_LOCK_ID, Leadership
from bot.scheduler import LeaderScheduler, job_intervals
from tests.conftest import start_bot
from tests.fakes.slack import FakeSlack

PERIOD = 0.2  # seconds between election attempts in these tests


@asynccontextmanager
async def campaigning(url: str, count: int) -> AsyncIterator[list[Leadership]]:
    replicas = [Leadership(url, retry_every=PERIOD) for _ in range(count)]
    for replica in replicas:
        replica.start()
    try:
        yield replicas
    finally:
        for replica in replicas:
            await replica.stop()


async def leaders_after(replicas: list[Leadership], rounds: int) -> list[Leadership]:
    """The leaders once every replica has campaigned `rounds` more times."""
    async with asyncio.timeout(10):
        await asyncio.gather(*(replica.campaigned(rounds) for replica in replicas))
    return [replica for replica in replicas if replica.is_leader]


async def wait_for_a_leader(replicas: list[Leadership], within: float) -> Leadership:
    done, pending = await asyncio.wait(
        [asyncio.ensure_future(replica.elected.wait()) for replica in replicas], timeout=within
    )
    for task in pending:
        task.cancel()
    assert done, f"no replica took over within {within} s"
    return next(replica for replica in replicas if replica.is_leader)


async def test_of_three_replicas_on_postgres_exactly_one_leads(postgres_url: str) -> None:
    async with campaigning(postgres_url, 3) as replicas:
        await wait_for_a_leader(replicas, within=5)
        assert len(await leaders_after(replicas, 5)) == 1


async def test_when_the_leader_stops_another_takes_over_within_one_period(
    postgres_url: str,
) -> None:
    async with campaigning(postgres_url, 2) as replicas:
        leader = await wait_for_a_leader(replicas, within=5)
        follower = next(replica for replica in replicas if replica is not leader)
        started = asyncio.get_running_loop().time()
        await leader.stop()
        await asyncio.wait_for(follower.elected.wait(), timeout=5)
        took = asyncio.get_running_loop().time() - started
        assert took <= 2 * PERIOD + 0.5
        assert [r for r in replicas if r.is_leader] == [follower]


async def test_a_leader_whose_connection_dies_steps_down_and_one_leader_remains(
    postgres_url: str,
) -> None:
    dsn = make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
    async with campaigning(postgres_url, 2) as replicas:
        leader = await wait_for_a_leader(replicas, within=5)
        admin = await asyncpg.connect(dsn)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks"
                " WHERE locktype = 'advisory' AND granted"
                " AND ((classid::bigint << 32) | objid::bigint) = $1",
                SCHEDULER_LOCK_ID,
            )
        finally:
            await admin.close()
        assert killed == 1
        # The old leader notices on its next check and steps down; whoever wins next leads alone.
        assert len(await leaders_after(replicas, 6)) == 1
        assert leader.elected.is_set() == leader.is_leader


async def test_a_killed_leader_process_is_replaced_within_one_period(
    postgres_url: str, tmp_path: Path
) -> None:
    """kill -9 of the leading process: PostgreSQL frees its lock and this replica takes over."""
    ready = tmp_path / "leading"
    script = textwrap.dedent(
        f"""
        import asyncio, pathlib
        from bot.leader import Leadership

        async def main():
            leadership = Leadership({postgres_url!r}, retry_every=0.1)
            leadership.start()
            await leadership.elected.wait()
            pathlib.Path({str(ready)!r}).write_text("yes")
            await asyncio.Event().wait()

        asyncio.run(main())
        """
    )
    other = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=Path(__file__).parent.parent
    )
    try:
        for _ in range(100):  # poll for the child's flag file, up to 10 s
            if ready.exists() or other.returncode is not None:
                break
            await asyncio.sleep(0.1)
        assert ready.exists(), "the child process never became leader"
        async with campaigning(postgres_url, 1) as (replica,):
            assert await leaders_after([replica], 3) == []
            os.kill(other.pid, signal.SIGKILL)
            await asyncio.wait_for(other.wait(), timeout=10)
            await asyncio.wait_for(replica.elected.wait(), timeout=2 * PERIOD + 1)
    finally:
        if other.returncode is None:
            other.kill()
            await asyncio.wait_for(other.wait(), timeout=10)


async def test_on_sqlite_the_only_replica_leads(sqlite_database: Database) -> None:
    async with campaigning(sqlite_database.url, 1) as (replica,):
        await asyncio.wait_for(replica.elected.wait(), timeout=2)


async def test_only_the_leading_replicas_scheduler_runs_its_jobs(
    fake_slack: FakeSlack, postgres_database: Database, catalog: Catalog
) -> None:
    async with start_bot(fake_slack, postgres_database, catalog) as bot:
        schedulers = [LeaderScheduler(bot.services, retry_every=PERIOD) for _ in range(2)]
        for scheduler in schedulers:
            scheduler.start()
        try:
            await wait_for_a_leader([s.leadership for s in schedulers], within=5)
            await leaders_after([s.leadership for s in schedulers], 3)
            states = sorted(s.scheduler.state for s in schedulers)
            assert states == sorted([STATE_RUNNING, STATE_PAUSED])
            leader = next(s for s in schedulers if s.leadership.is_leader)
            follower = next(s for s in schedulers if s is not leader)
            await leader.stop()
            await asyncio.wait_for(follower.leadership.elected.wait(), timeout=5)
            assert follower.scheduler.state == STATE_RUNNING
        finally:
            for scheduler in schedulers:
                await scheduler.stop()


def test_job_intervals_follow_the_catalog(catalog: Catalog) -> None:
    intervals = job_intervals(SimpleNamespace(catalog=catalog))  # type: ignore[arg-type]
    assert intervals["poll-alerts"] == catalog.metrics.poll_interval.total_seconds()
    # 15 min to acknowledge → checked every 15 s at most; 48 h postmortems → every 5 min.
    assert intervals["check-deadlines"] == 15
    assert intervals["remind-postmortems"] == 300
