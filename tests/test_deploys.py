"""`/deploy` end to end: signed Slack requests in, the fake Kubernetes API and Slack out."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import trustme
from aiohttp import web
from sqlalchemy import func, select

from bot import audit
from bot.catalog import Catalog, load_catalog
from bot.db.models import Lock, utc_now
from bot.db.session import Database
from bot.deploys import messaging
from tests.conftest import TEST_CATALOG, RunningBot, start_bot
from tests.fakes.aws import (
    MotoServer,
    aws_client,
    create_lambda_function,
    put_artifact,
    running_moto,
)
from tests.fakes.kubernetes import FakeKubernetes
from tests.fakes.slack import FakeSlack
from tests.fakes.tls import tls_server
from tests.helpers.deploys import deploy_messages, deploys, finish
from tests.helpers.messages import buttons, replies, text_of

OLD = "registry.example/checkout:v1"


@pytest.fixture
async def deploy_bot(
    fake_slack: FakeSlack,
    database: Database,
    catalog: Catalog,
    kube: FakeKubernetes,
    tmp_path: Path,
) -> AsyncIterator[RunningBot]:
    kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig")
    async with start_bot(
        fake_slack, database, catalog, environ={"KUBECONFIG": str(kubeconfig)}
    ) as running:
        yield running


async def test_deploy_to_dev_rolls_out_and_reports_every_step(
    deploy_bot: RunningBot, kube: FakeKubernetes
) -> None:
    status, _, _ = await deploy_bot.slack.command("/deploy", "checkout dev v2")
    assert status == 200
    await finish(deploy_bot)

    assert kube.image("shop-dev", "checkout") == "registry.example/checkout:v2"
    (deploy,) = await deploys(deploy_bot.services.db)
    assert (deploy.state, deploy.version, deploy.previous_version) == ("succeeded", "v2", "v1")
    (message,) = deploy_messages(deploy_bot)
    assert "succeeded" in (message.text or "")
    rendered = text_of(message)
    assert "✓ deploy" in rendered and "✓ wait until ready" in rendered
    assert len(deploy_bot.fake.calls_to("chat.update")) >= 3  # updated in place, step by step
    assert any("Deploy #1 of checkout v2 to dev started" in t for t in replies(deploy_bot))
    async with deploy_bot.services.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Lock)) == 0
    entries = await audit.entries(deploy_bot.services.db)
    actions = [e.action for e in entries]
    assert "deploy:requested" in actions and "deploy:succeeded" in actions
    (requested,) = [e for e in entries if e.action == "deploy:requested"]
    assert (requested.actor, requested.outcome) == ("U0ALICE", "running")
    assert requested.detail == {
        "deploy": deploy.id,
        "service": "checkout",
        "environment": "dev",
        "version": "v2",
    }
    # What runs now is read once before the image changes: the gates' read serves the first
    # step too (the Kubernetes API sees one GET, then the PATCH).
    first_patch = next(i for i, r in enumerate(kube.requests) if r.method == "PATCH")
    reads = [
        r
        for r in kube.requests[:first_patch]
        if r.method == "GET" and r.path.endswith("/deployments/checkout")
    ]
    assert len(reads) == 1


async def test_a_rollout_that_never_becomes_ready_fails_and_is_rolled_back(
    deploy_bot: RunningBot, kube: FakeKubernetes
) -> None:
    kube.never_ready("shop-dev", "checkout")
    await deploy_bot.slack.command("/deploy", "checkout dev v2")
    await finish(deploy_bot)

    (deploy,) = await deploys(deploy_bot.services.db)
    assert deploy.state == "rolled_back"
    assert deploy.reason and "Failed at step wait until ready" in deploy.reason
    assert "ProgressDeadlineExceeded" in deploy.reason
    assert "v1 is back" in deploy.reason
    assert kube.image("shop-dev", "checkout") == OLD


async def test_dry_run_shows_the_plan_and_changes_nothing(
    deploy_bot: RunningBot, kube: FakeKubernetes
) -> None:
    await deploy_bot.slack.command("/deploy", "checkout dev v9 --dry-run")
    await finish(deploy_bot)
    answer = "\n".join(replies(deploy_bot))
    assert "Dry run" in answer and "Nothing was changed" in answer
    preformatted = json.dumps([m.blocks for m in deploy_bot.fake.messages], ensure_ascii=False)
    assert "registry.example/checkout:v9" in preformatted
    assert kube.writes() == []
    assert await deploys(deploy_bot.services.db) == []


async def test_only_deployers_may_deploy_to_prod(deploy_bot: RunningBot) -> None:
    await deploy_bot.slack.command("/deploy", "checkout prod v2", user_id="U0MALLORY")
    await finish(deploy_bot)
    assert any("refused by deployer" in t for t in replies(deploy_bot))
    assert await deploys(deploy_bot.services.db) == []


async def test_prod_requires_staging_first(deploy_bot: RunningBot) -> None:
    await deploy_bot.slack.command("/deploy", "checkout prod v2")
    await finish(deploy_bot)
    assert any("refused by promotion" in t for t in replies(deploy_bot))


async def test_prod_waits_for_an_approver_not_the_requester(
    deploy_bot: RunningBot, kube: FakeKubernetes
) -> None:
    await deploy_bot.slack.command("/deploy", "checkout staging v2")
    await finish(deploy_bot)
    # No version: promote what succeeded in staging.
    await deploy_bot.slack.command("/deploy", "checkout prod")
    await finish(deploy_bot)
    prod = (await deploys(deploy_bot.services.db))[-1]
    assert (prod.state, prod.version) == ("awaiting_approval", "v2")
    message = deploy_messages(deploy_bot)[-1]
    approve = buttons(message)[messaging.APPROVE]

    await deploy_bot.slack.click(messaging.APPROVE, value=approve["value"], user_id="U0ALICE")
    await finish(deploy_bot)
    assert any("cannot approve" in t for t in replies(deploy_bot))
    await deploy_bot.slack.click(messaging.APPROVE, value=approve["value"], user_id="U0MALLORY")
    await finish(deploy_bot)
    assert (await deploys(deploy_bot.services.db))[-1].state == "awaiting_approval"

    await deploy_bot.slack.click(messaging.APPROVE, value=approve["value"], user_id="U0APPROVER")
    await finish(deploy_bot)
    prod = (await deploys(deploy_bot.services.db))[-1]
    assert prod.state == "succeeded", prod.reason
    assert kube.service("shop", "checkout")["spec"]["selector"]["colour"] == "green"
    assert kube.image("shop", "checkout-green") == "registry.example/checkout:v2"
    assert "<@U0APPROVER>" in text_of(deploy_messages(deploy_bot)[-1])


async def test_approval_expires_and_frees_the_lock(deploy_bot: RunningBot) -> None:
    deploys_service = deploy_bot.services.deploys
    await deploy_bot.slack.command("/deploy", "checkout staging v2")
    await finish(deploy_bot)
    await deploy_bot.slack.command("/deploy", "checkout prod v2")
    await finish(deploy_bot)
    deploys_service.deps.clock = lambda: utc_now() + timedelta(hours=2)
    assert await deploys_service.expire_approvals() == 1
    assert await deploys_service.expire_approvals() == 0
    prod = (await deploys(deploy_bot.services.db))[-1]
    assert prod.state == "expired"
    assert "expired" in (deploy_messages(deploy_bot)[-1].text or "")


async def test_manual_lock_refuses_deploys_with_who_and_why(deploy_bot: RunningBot) -> None:
    await deploy_bot.slack.command("/deploy", "lock checkout dev db migration running")
    await finish(deploy_bot)
    await deploy_bot.slack.command("/deploy", "checkout dev v3", user_id="U0BOB")
    await finish(deploy_bot)
    refusal = replies(deploy_bot)[-1]
    assert "refused by lock" in refusal and "<@U0ALICE>" in refusal
    assert "db migration running" in refusal

    await deploy_bot.slack.command("/deploy", "status checkout")
    await finish(deploy_bot)
    assert "db migration running" in text_of(deploy_bot.fake.messages[-1])

    await deploy_bot.slack.command("/deploy", "unlock checkout dev")
    await finish(deploy_bot)
    await deploy_bot.slack.command("/deploy", "checkout dev v3", user_id="U0BOB")
    await finish(deploy_bot)
    assert (await deploys(deploy_bot.services.db))[-1].state == "succeeded"


async def test_concurrent_deploys_of_one_service_run_exactly_once(
    deploy_bot: RunningBot, kube: FakeKubernetes
) -> None:
    kube.paused = True  # the first deploy must still hold the lock when the others arrive
    await asyncio.gather(
        *(deploy_bot.slack.command("/deploy", f"checkout dev v{n}") for n in range(2, 12))
    )
    await deploy_bot.settle()
    kube.paused = False
    await finish(deploy_bot)
    created = await deploys(deploy_bot.services.db)
    assert len(created) == 1
    assert sum("refused by lock" in t for t in replies(deploy_bot)) == 9


async def test_abort_puts_back_what_the_deploy_changed(
    deploy_bot: RunningBot, kube: FakeKubernetes
) -> None:
    kube.never_ready("shop-dev", "checkout")
    await deploy_bot.slack.command("/deploy", "checkout dev v2")
    await deploy_bot.settle()
    message = await deploy_bot.fake.wait_for_message(
        lambda m: m.channel == "C0DEPLOYS" and messaging.ABORT in text_of(m)
    )
    abort = buttons(message)[messaging.ABORT]
    await deploy_bot.slack.click(messaging.ABORT, value=abort["value"], user_id="U0BOB")
    await finish(deploy_bot)
    (deploy,) = await deploys(deploy_bot.services.db)
    assert deploy.state == "aborted"
    assert "Aborted by <@U0BOB>" in (deploy.reason or "")
    assert kube.image("shop-dev", "checkout") == OLD


async def test_a_restart_mid_deploy_is_reconciled_and_can_resume(
    fake_slack: FakeSlack,
    database: Database,
    catalog: Catalog,
    kube: FakeKubernetes,
    tmp_path: Path,
) -> None:
    environ = {"KUBECONFIG": str(kube.kubeconfig(tmp_path / "kubeconfig"))}
    kube.paused = True  # the rollout does not progress while the first process runs
    async with start_bot(fake_slack, database, catalog, environ=environ) as first:
        await first.slack.command("/deploy", "checkout dev v2")
        await first.settle()
        await fake_slack.wait_for_message(lambda m: "▶ wait until ready" in text_of(m))
        # The process dies: its task is gone, the database still says running.
        for running in list(first.services.deploys.running.values()):
            running.task.cancel()
    kube.paused = False

    async with start_bot(fake_slack, database, catalog, environ=environ) as second:
        assert await second.services.deploys.recover() == 1
        (deploy,) = await deploys(database)
        assert deploy.state == "interrupted"
        assert "during step wait until ready" in (deploy.reason or "")
        message = deploy_messages(second)[-1]
        assert {messaging.RESUME, messaging.ROLL_BACK, messaging.RELEASE_LOCK} <= set(
            buttons(message)
        )
        resume = buttons(message)[messaging.RESUME]
        await second.slack.click(messaging.RESUME, value=resume["value"])
        await finish(second)
        (deploy,) = await deploys(database)
        assert deploy.state == "succeeded", deploy.reason
        assert kube.image("shop-dev", "checkout") == "registry.example/checkout:v2"


async def test_a_freeze_and_an_expiring_certificate_block_prod(
    fake_slack: FakeSlack, database: Database, kube: FakeKubernetes, tmp_path: Path
) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with tls_server(ca, utc_now() + timedelta(days=10)) as port:
        text = TEST_CATALOG.read_text().replace(
            "    require_previous: true",
            "    require_previous: true\n"
            "    freeze: [{cron: '0 0 * * *', duration: 24h, timezone: UTC, reason: year end}]",
        )
        path = tmp_path / "opsbot.yml"
        path.write_text(text + f"certificates:\n  - {{host: 127.0.0.1, port: {port}}}\n")
        environ = {
            "KUBECONFIG": str(kube.kubeconfig(tmp_path / "kubeconfig")),
            "SSL_CERT_FILE": str(ca_file),
        }
        catalog = load_catalog(path, {})
        async with start_bot(
            fake_slack, database, catalog, environ=environ, config_path=path
        ) as running:
            await running.slack.command("/deploy", "checkout prod v2 --dry-run")
            await finish(running)
            answer = text_of(running.fake.messages[-1])
            assert "✗ freeze: prod is frozen for year end until" in answer
            assert "✗ certificates: the certificate of 127.0.0.1" in answer
            assert "It would be refused: freeze" in (running.fake.messages[-1].text or "")

            await running.slack.command("/deploy", "checkout prod v2")
            await finish(running)
            assert "refused by freeze" in replies(running)[-1]
    assert await deploys(database) == []


@pytest.fixture
def moto() -> Iterator[MotoServer]:
    with running_moto() as server:
        yield server
        # moto keeps its state per process, not per server: start the next test empty.
        urllib.request.urlopen(
            urllib.request.Request(f"{server.endpoint_url}/moto-api/reset", method="POST")
        ).close()


async def test_a_lambda_canary_can_be_promoted_past_its_waits(
    fake_slack: FakeSlack, database: Database, catalog: Catalog, moto: MotoServer
) -> None:
    artifact = "s3://artifacts/payments/{version}.zip"
    function = await asyncio.to_thread(
        create_lambda_function, moto.env, function="payments-staging", alias="live",
        artifact=artifact, version="v1",
    )  # fmt: skip
    await asyncio.to_thread(put_artifact, moto.env, artifact, "v2")
    async with start_bot(fake_slack, database, catalog, environ=dict(moto.env)) as running:
        await running.slack.command("/deploy", "payments staging v2")
        await running.settle()
        # The canary waits 2 minutes between steps unless someone promotes it.
        message = await fake_slack.wait_for_message(
            lambda m: "wait 2m" in text_of(m) and "▶" in text_of(m), timeout=15
        )
        promote = buttons(message)[messaging.PROMOTE]
        await running.slack.click(messaging.PROMOTE, value=promote["value"], user_id="U0BOB")
        await finish(running)
    (deploy,) = await deploys(database)
    assert deploy.state == "succeeded", deploy.reason
    assert "skipped: promoted by <@U0BOB>" in text_of(deploy_messages(running)[-1])
    lam = aws_client(moto.env, "lambda")
    alias = await asyncio.to_thread(lam.get_alias, FunctionName=function.function, Name="live")
    assert alias["FunctionVersion"] != function.version_number
    assert not (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights")


async def test_the_requester_can_withdraw_and_an_approver_reject(deploy_bot: RunningBot) -> None:
    await deploy_bot.slack.command("/deploy", "checkout staging v2")
    await finish(deploy_bot)
    for user, expected in (
        ("U0ALICE", "Withdrawn by the requester."),
        ("U0APPROVER", "Rejected by <@U0APPROVER>."),
    ):
        await deploy_bot.slack.command("/deploy", "checkout prod v2")
        await finish(deploy_bot)
        reject = buttons(deploy_messages(deploy_bot)[-1])[messaging.REJECT]
        await deploy_bot.slack.click(messaging.REJECT, value=reject["value"], user_id=user)
        await finish(deploy_bot)
        prod = (await deploys(deploy_bot.services.db))[-1]
        assert (prod.state, prod.reason) == ("rejected", expected)
    await deploy_bot.slack.click(messaging.REJECT, value=reject["value"], user_id="U0APPROVER")
    await finish(deploy_bot)
    assert "not waiting for approval" in replies(deploy_bot)[-1]


async def test_history_lists_deploys_newest_first(deploy_bot: RunningBot) -> None:
    for version in ("v2", "v3"):
        await deploy_bot.slack.command("/deploy", f"checkout dev {version}")
        await finish(deploy_bot)
    await deploy_bot.slack.command("/deploy", "history checkout dev")
    await finish(deploy_bot)
    listing = text_of(deploy_bot.fake.messages[-1])
    assert listing.index("dev v3 succeeded") < listing.index("dev v2 succeeded")


async def test_an_interrupted_deploy_can_be_rolled_back_or_released(
    fake_slack: FakeSlack,
    database: Database,
    catalog: Catalog,
    kube: FakeKubernetes,
    tmp_path: Path,
) -> None:
    environ = {"KUBECONFIG": str(kube.kubeconfig(tmp_path / "kubeconfig"))}
    kube.paused = True
    async with start_bot(fake_slack, database, catalog, environ=environ) as first:
        for service_env in ("checkout dev v2", "checkout staging v2"):
            await first.slack.command("/deploy", service_env)
        await first.settle()
        for env_name in ("dev", "staging"):
            await fake_slack.wait_for_message(
                lambda m, env_name=env_name: (
                    f"to {env_name}*" in (m.text or "") and "▶ wait until ready" in text_of(m)
                )
            )
        for running in list(first.services.deploys.running.values()):
            running.task.cancel()
    kube.paused = False
    async with start_bot(fake_slack, database, catalog, environ=environ) as second:
        assert await second.services.deploys.recover() == 2
        dev, staging = sorted(await deploys(database), key=lambda d: d.environment)
        await second.slack.click(messaging.ROLL_BACK, value=str(dev.id))
        await second.slack.click(messaging.RELEASE_LOCK, value=str(staging.id), user_id="U0BOB")
        await finish(second)
        dev, staging = sorted(await deploys(database), key=lambda d: d.environment)
        assert dev.state == "rolled_back" and "Rolled back by <@U0ALICE>" in (dev.reason or "")
        assert kube.image("shop-dev", "checkout") == OLD
        assert staging.state == "aborted" and "Lock released by <@U0BOB>" in (staging.reason or "")
        async with database.session() as session:
            assert await session.scalar(select(func.count()).select_from(Lock)) == 0
        # A second press finds nothing to do.
        await second.slack.click(messaging.RELEASE_LOCK, value=str(staging.id))
        await finish(second)
        assert "holds no lock" in replies(second)[-1]


async def test_the_thread_gets_the_health_diff_against_the_baseline(
    fake_slack: FakeSlack, database: Database, kube: FakeKubernetes, tmp_path: Path
) -> None:
    async def healthz(request: web.Request) -> web.Response:
        # What a service's health page often shows: which build answers.
        return web.json_response({"status": "ok", "image": kube.image("shop-dev", "checkout")})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        path = tmp_path / "opsbot.yml"
        path.write_text(
            TEST_CATALOG.read_text().replace(
                "    owners: [U0ALICE]\n",
                f"    owners: [U0ALICE]\n    health: {{url: 'http://127.0.0.1:{port}/healthz'}}\n",
                1,
            )
        )
        environ = {"KUBECONFIG": str(kube.kubeconfig(tmp_path / "kubeconfig"))}
        catalog = load_catalog(path, {})
        async with start_bot(
            fake_slack, database, catalog, environ=environ, config_path=path
        ) as running:
            await running.slack.command("/deploy", "checkout dev v2")
            await finish(running)
            (deploy,) = await deploys(database)
            assert deploy.state == "succeeded", deploy.reason
            assert "health: 200 before, 200 after; body changed" in text_of(
                deploy_messages(running)[-1]
            )
            thread = "\n".join(text_of(m) for m in fake_slack.messages if m.thread_ts)
            assert "--- pre-deploy-health" in thread
            assert (
                '-{\\"status\\": \\"ok\\", \\"image\\": \\"registry.example/checkout:v1\\"}'
                in thread
            )
            assert "registry.example/checkout:v2" in thread
    finally:
        await runner.cleanup()
