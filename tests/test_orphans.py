"""Deploys of a replica that died: its live peers spare them while it beats, then recover them.

Two bots share one PostgreSQL database. Replica A runs a deploy (the rollout is paused, so it stays
running). Replica B starting, or B's scheduler job, must not interrupt a deploy that A runs; once A
is gone (no heartbeat, the deploy unchanged for a while) B's job interrupts it and offers Resume.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from bot.catalog import Catalog
from bot.db.models import Replica, utc_now
from bot.db.session import Database
from bot.deploys import messaging
from tests.conftest import start_bot
from tests.fakes.kubernetes import FakeKubernetes
from tests.fakes.slack import FakeSlack
from tests.helpers.deploys import deploy_messages, deploys
from tests.helpers.messages import buttons, text_of


async def test_a_live_peers_deploy_is_spared_and_a_dead_peers_deploy_is_recovered(
    fake_slack: FakeSlack,
    postgres_database: Database,
    catalog: Catalog,
    kube: FakeKubernetes,
    tmp_path: Path,
) -> None:
    environ = {"KUBECONFIG": str(kube.kubeconfig(tmp_path / "kubeconfig"))}
    kube.paused = True  # A's rollout makes no progress: its deploy stays running
    async with (
        start_bot(fake_slack, postgres_database, catalog, environ=environ) as a,
        start_bot(fake_slack, postgres_database, catalog, environ=environ) as b,
    ):
        await a.slack.command("/deploy", "checkout dev v2")
        await a.settle()
        await fake_slack.wait_for_message(lambda m: "▶ wait until ready" in text_of(m))
        await a.services.replicas.beat()
        await b.services.replicas.beat()

        # B starts: A's deploy is A's.
        spare = await b.services.replicas.live_deploys()
        assert await b.services.deploys.recover(spare=spare) == 0

        # Five quiet minutes later (a long wait step: the deploy row does not change) A still
        # beats, listing its deploy: B's scheduler job leaves it alone.
        later = utc_now() + timedelta(minutes=5)
        a.services.replicas.clock = b.services.replicas.clock = lambda: later
        await a.services.replicas.beat()
        assert await b.services.replicas.recover_orphans(b.services.deploys) == 0
        (deploy,) = await deploys(postgres_database)
        assert deploy.state == "running"

        # A dies: its run is gone and its heartbeat stops. B's job, a minute on, recovers it.
        for running in list(a.services.deploys.running.values()):
            running.task.cancel()
        a_minute_on = later + timedelta(minutes=1)
        b.services.replicas.clock = lambda: a_minute_on
        assert await b.services.replicas.recover_orphans(b.services.deploys) == 1
        (deploy,) = await deploys(postgres_database)
        assert deploy.state == "interrupted"
        assert "during step wait until ready" in (deploy.reason or "")
        message = deploy_messages(b)[-1]
        assert {messaging.RESUME, messaging.ROLL_BACK, messaging.RELEASE_LOCK} <= set(
            buttons(message)
        )
        # Once is enough: the next run finds nothing more to do.
        assert await b.services.replicas.recover_orphans(b.services.deploys) == 0
        kube.paused = False


async def test_a_replica_that_stops_cleanly_leaves_the_registry(
    fake_slack: FakeSlack, postgres_database: Database, catalog: Catalog
) -> None:
    async with start_bot(fake_slack, postgres_database, catalog) as bot:
        registry = bot.services.replicas
        await registry.beat()
        async with postgres_database.session() as session:
            assert await session.get(Replica, registry.id) is not None
        await registry.stop()
        async with postgres_database.session() as session:
            assert await session.get(Replica, registry.id) is None
