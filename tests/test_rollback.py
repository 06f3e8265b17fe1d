"""Manual rollback: `/rollback` and the Rollback buttons, against the fake Kubernetes API."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot import audit
from bot.catalog import Catalog, load_catalog
from bot.db.session import Database
from bot.deploys import messaging
from tests.conftest import TEST_CATALOG, RunningBot, start_bot
from tests.fakes.kubernetes import FakeKubernetes
from tests.fakes.slack import FakeSlack
from tests.helpers.deploys import deploy_messages, deploys, finish
from tests.helpers.messages import buttons, replies, text_of

V2 = "registry.example/checkout:v2"


@pytest.fixture
async def deployed(
    fake_slack: FakeSlack,
    database: Database,
    catalog: Catalog,
    kube: FakeKubernetes,
    tmp_path: Path,
) -> AsyncIterator[RunningBot]:
    """checkout ran v2, then v3, in dev."""
    environ = {"KUBECONFIG": str(kube.kubeconfig(tmp_path / "kubeconfig"))}
    async with start_bot(fake_slack, database, catalog, environ=environ) as running:
        for version in ("v2", "v3"):
            await running.slack.command("/deploy", f"checkout dev {version}")
            await finish(running)
        yield running


async def test_rollback_names_what_it_restores_and_restores_it(
    deployed: RunningBot, kube: FakeKubernetes
) -> None:
    await deployed.slack.command("/rollback", "checkout dev")
    await finish(deployed)
    offer = deployed.fake.messages[-1]
    assert "Roll back checkout in dev from v3 to v2?" in (offer.text or "")
    confirm_button = buttons(offer)[messaging.ROLLBACK_CONFIRM]
    assert "Puts v2 back on dev in place of v3" in str(confirm_button["confirm"])
    assert kube.image("shop-dev", "checkout") == "registry.example/checkout:v3"

    await deployed.slack.click(messaging.ROLLBACK_CONFIRM, value=confirm_button["value"])
    await finish(deployed)
    assert kube.image("shop-dev", "checkout") == V2
    first, second, rollback = await deploys(deployed.services.db)
    assert (rollback.strategy, rollback.state, rollback.version) == ("rollback", "succeeded", "v2")
    assert rollback.reason == "Rolled back by <@U0ALICE>: v2 is back (was v3)."
    assert second.state == "rolled_back" and "#3" in (second.reason or "")
    assert first.state == "succeeded"
    headlines = [(m.text or "").splitlines()[0] for m in deploy_messages(deployed)]
    assert "*Rollback #3: checkout in dev to v2* — succeeded" in headlines
    assert "*Deploy #2: checkout v3 to dev* — rolled back" in headlines
    actions = [e.action for e in await audit.entries(deployed.services.db)]
    assert "rollback:requested" in actions and "button:rollback_confirm" in actions
    # Runbook Post-Rollback: the rollback's message offers to declare an incident, filled in.
    rollback_message = next(
        m for m in deploy_messages(deployed) if (m.text or "").startswith("*Rollback #3")
    )
    declare = buttons(rollback_message)[messaging.DECLARE_INCIDENT]
    assert json.loads(declare["value"]) == {
        "service": "checkout",
        "title": "checkout rolled back from v3 to v2 in dev",
        "deploy_id": 3,
    }


async def test_twenty_clicks_make_one_rollback(deployed: RunningBot, kube: FakeKubernetes) -> None:
    message = deploy_messages(deployed)[-1]
    rollback_button = buttons(message)[messaging.ROLLBACK_DEPLOY]
    assert rollback_button["value"] == "checkout|dev|v2"
    kube.paused = True  # the first rollback is still going when the other clicks land
    await asyncio.gather(
        *(
            deployed.slack.click(
                messaging.ROLLBACK_DEPLOY, value=rollback_button["value"], user_id=user
            )
            for user in ["U0ALICE"] * 10 + ["U0BOB"] * 10
        )
    )
    await deployed.settle()
    kube.paused = False
    await finish(deployed)
    rollbacks = [d for d in await deploys(deployed.services.db) if d.strategy == "rollback"]
    assert len(rollbacks) == 1
    assert rollbacks[0].state == "succeeded"
    busy = [t for t in replies(deployed) if "is already rolling back checkout in dev to v2" in t]
    assert len(busy) == 19
    assert kube.image("shop-dev", "checkout") == V2


async def test_rollback_respects_who_may_deploy(deployed: RunningBot) -> None:
    await deployed.slack.command("/rollback", "checkout prod", user_id="U0MALLORY")
    await finish(deployed)
    assert "deployer:" in replies(deployed)[-1]


async def test_rollback_needs_something_to_go_back_to(deployed: RunningBot) -> None:
    await deployed.slack.command("/rollback", "checkout staging")
    await finish(deployed)
    assert "no successful deploy of checkout in staging" in replies(deployed)[-1]
    await deployed.slack.command("/rollback", "checkout dev v3")
    await finish(deployed)
    assert "already runs v3" in replies(deployed)[-1]


async def test_a_finished_deploy_offers_its_rollback(deployed: RunningBot) -> None:
    message = deploy_messages(deployed)[-1]
    assert "v3 to dev* — succeeded" in (message.text or "")
    assert "Puts v2 back on dev in place of v3" in text_of(message)


# ---------------------------------------------------------------- rollback is not a back door

FREEZE = (
    "    require_previous: true\n"
    "    freeze: [{cron: '0 0 * * *', duration: 24h, timezone: UTC, reason: year end}]"
)


async def deploy_to_prod(bot: RunningBot, version: str) -> None:
    """Through staging, then prod with U0APPROVER's approval."""
    await bot.slack.command("/deploy", f"checkout staging {version}")
    await finish(bot)
    await bot.slack.command("/deploy", f"checkout prod {version}")
    await finish(bot)
    approve = buttons(deploy_messages(bot)[-1])[messaging.APPROVE]
    await bot.slack.click(messaging.APPROVE, value=approve["value"], user_id="U0APPROVER")
    await finish(bot)
    assert (await deploys(bot.services.db))[-1].state == "succeeded"


def live_prod_image(kube: FakeKubernetes) -> str:
    colour = kube.service("shop", "checkout")["spec"]["selector"]["colour"]
    return kube.image("shop", f"checkout-{colour}")


@pytest.fixture
async def in_prod(
    fake_slack: FakeSlack,
    database: Database,
    catalog: Catalog,
    kube: FakeKubernetes,
    tmp_path: Path,
) -> AsyncIterator[RunningBot]:
    """checkout ran v2, then v3, in prod; v7 succeeded in staging only."""
    environ = {"KUBECONFIG": str(kube.kubeconfig(tmp_path / "kubeconfig"))}
    async with start_bot(fake_slack, database, catalog, environ=environ) as running:
        for version in ("v2", "v3"):
            await deploy_to_prod(running, version)
        await running.slack.command("/deploy", "checkout staging v7")
        await finish(running)
        yield running


async def test_a_rollback_to_a_version_new_to_prod_is_refused_by_the_deploy_gates(
    deployed: RunningBot, kube: FakeKubernetes
) -> None:
    """v9 never succeeded in prod (nor in staging): no approval-free path, the promotion gate
    refuses it, whether asked by command or by a button value made up by hand."""
    for version in ("v2", "v3"):
        await deploy_to_prod(deployed, version)
    rows_before = len(await deploys(deployed.services.db))
    writes_before = len(kube.writes())

    await deployed.slack.command("/rollback", "checkout prod v9")
    await finish(deployed)
    answer = replies(deployed)[-1]
    assert "rollback of checkout in prod to v9" in answer and "refused by promotion" in answer
    assert messaging.ROLLBACK_CONFIRM not in text_of(deployed.fake.messages[-1])

    await deployed.slack.click(messaging.ROLLBACK_CONFIRM, value="checkout|prod|v9")
    await finish(deployed)
    assert "refused by promotion: v9 has not succeeded in staging" in replies(deployed)[-1]
    assert len(await deploys(deployed.services.db)) == rows_before
    assert kube.writes()[writes_before:] == []
    assert live_prod_image(kube) == "registry.example/checkout:v3"


async def test_a_rollback_to_a_version_new_to_prod_waits_for_someone_elses_approval(
    in_prod: RunningBot, kube: FakeKubernetes
) -> None:
    writes_before = len(kube.writes())
    messages_before = len(in_prod.fake.messages)
    await in_prod.slack.command("/rollback", "checkout prod v7")
    await finish(in_prod)
    rollback = (await deploys(in_prod.services.db))[-1]
    assert (rollback.state, rollback.version, rollback.rollback_of_id) == (
        "awaiting_approval",
        "v7",
        4,  # the deploy of v3 to prod
    )
    assert "waits for 1 approval(s) from <@U0APPROVER>" in replies(in_prod)[-1]
    message = deploy_messages(in_prod)[-1]
    assert (message.text or "").startswith(
        f"*Rollback #{rollback.id}: checkout in prod to v7* — waiting for approval"
    )
    # Until approved: nothing written, and nothing says the rollback started.
    said = [text_of(m) + (m.text or "") for m in in_prod.fake.messages[messages_before:]]
    assert not any("Rolling back" in s or "started" in s or "starting" in s for s in said)
    assert kube.writes()[writes_before:] == []

    approve = buttons(message)[messaging.APPROVE]
    await in_prod.slack.click(messaging.APPROVE, value=approve["value"], user_id="U0ALICE")
    await finish(in_prod)
    assert "requested this deploy and cannot approve it" in replies(in_prod)[-1]
    assert (await deploys(in_prod.services.db))[-1].state == "awaiting_approval"
    assert kube.writes()[writes_before:] == []

    await in_prod.slack.click(messaging.APPROVE, value=approve["value"], user_id="U0APPROVER")
    await finish(in_prod)
    rows = await deploys(in_prod.services.db)
    rollback = rows[-1]
    undone = next(d for d in rows if d.id == rollback.rollback_of_id)
    assert rollback.state == "succeeded", rollback.reason
    assert live_prod_image(kube) == "registry.example/checkout:v7"
    assert rollback.reason == "Rolled back by <@U0ALICE>: v7 is back (was v3)."
    assert undone.state == "rolled_back" and f"#{rollback.id}" in (undone.reason or "")

    await in_prod.slack.command("/deploy", "history checkout prod")
    await finish(in_prod)
    listing = text_of(in_prod.fake.messages[-1])
    assert "prod rollback to v7 succeeded by" in listing
    assert "prod v3 rolled back by" in listing


async def test_the_requester_can_withdraw_a_rollback_which_releases_the_lock(
    in_prod: RunningBot, kube: FakeKubernetes
) -> None:
    await in_prod.slack.command("/rollback", "checkout prod v7")
    await finish(in_prod)
    reject = buttons(deploy_messages(in_prod)[-1])[messaging.REJECT]
    await in_prod.slack.click(messaging.REJECT, value=reject["value"], user_id="U0ALICE")
    await finish(in_prod)
    withdrawn = (await deploys(in_prod.services.db))[-1]
    assert (withdrawn.state, withdrawn.reason) == ("rejected", "Withdrawn by the requester.")
    assert "its lock is released" in replies(in_prod)[-1]
    await in_prod.slack.command("/deploy", "status checkout")
    await finish(in_prod)
    assert "prod: v3" in text_of(in_prod.fake.messages[-1])
    assert "locked" not in text_of(in_prod.fake.messages[-1])
    # The lock is free: the emergency path runs at once.
    await in_prod.slack.command("/rollback", "checkout prod")
    await finish(in_prod)
    confirm = buttons(in_prod.fake.messages[-1])[messaging.ROLLBACK_CONFIRM]
    await in_prod.slack.click(messaging.ROLLBACK_CONFIRM, value=confirm["value"])
    await finish(in_prod)
    assert live_prod_image(kube) == "registry.example/checkout:v2"


async def test_in_a_freeze_only_the_emergency_path_rolls_back_and_it_is_fast(
    in_prod: RunningBot,
    fake_slack: FakeSlack,
    database: Database,
    kube: FakeKubernetes,
    tmp_path: Path,
) -> None:
    """v2 succeeded in prod before: it comes back at once on the requester's own confirmation,
    freeze or not. v7 never ran in prod: the freeze refuses it."""
    path = tmp_path / "frozen.yml"
    path.write_text(TEST_CATALOG.read_text().replace("    require_previous: true", FREEZE))
    environ = {"KUBECONFIG": str(kube.kubeconfig(tmp_path / "kubeconfig"))}
    async with start_bot(
        fake_slack, database, load_catalog(path, {}), environ=environ, config_path=path
    ) as frozen:
        await frozen.slack.command("/rollback", "checkout prod v7")
        await finish(frozen)
        assert "refused by freeze: prod is frozen for year end" in replies(frozen)[-1]

        await frozen.slack.command("/rollback", "checkout prod")
        await finish(frozen)
        offer = frozen.fake.messages[-1]
        assert "from v3 to v2?" in (offer.text or "")
        assert "v2 succeeded in prod before" in (offer.text or "")
        confirm = buttons(offer)[messaging.ROLLBACK_CONFIRM]
        writes_before = len(kube.writes())
        confirmed_at = time.monotonic()
        await frozen.slack.click(messaging.ROLLBACK_CONFIRM, value=confirm["value"])
        await finish(frozen)
        first_write = kube.writes()[writes_before]
        assert first_write.at - confirmed_at < 3
        assert live_prod_image(kube) == "registry.example/checkout:v2"
        rollback = (await deploys(database))[-1]
        assert (rollback.strategy, rollback.state) == ("rollback", "succeeded"), rollback.reason
        assert rollback.approval_expires_at is None
        assert "*Rollback #" in (deploy_messages(frozen)[-1].text or "")
        assert "checkout in prod to v2* — succeeded" in (deploy_messages(frozen)[-1].text or "")


async def test_a_rollback_to_an_older_version_restores_that_version(
    deployed: RunningBot, kube: FakeKubernetes
) -> None:
    """v2, v3, v4 ran in dev: a rollback to v2 brings v2 back, not the v3 before v4."""
    await deployed.slack.command("/deploy", "checkout dev v4")
    await finish(deployed)
    await deployed.slack.command("/rollback", "checkout dev v2")
    await finish(deployed)
    confirm = buttons(deployed.fake.messages[-1])[messaging.ROLLBACK_CONFIRM]
    await deployed.slack.click(messaging.ROLLBACK_CONFIRM, value=confirm["value"])
    await finish(deployed)
    assert kube.image("shop-dev", "checkout") == V2
    rollback = (await deploys(deployed.services.db))[-1]
    assert (rollback.state, rollback.reason) == (
        "succeeded",
        "Rolled back by <@U0ALICE>: v2 is back (was v4).",
    )
    await deployed.slack.command("/deploy", "history checkout dev")
    await finish(deployed)
    listing = text_of(deployed.fake.messages[-1])
    assert "dev rollback to v2 succeeded by" in listing
    assert "dev v4 rolled back by" in listing


async def test_a_rollback_announces_the_version_that_actually_runs(
    deployed: RunningBot, kube: FakeKubernetes
) -> None:
    """v7 never ran in dev: no approvals there, so it is deployed (every gate passes) and the
    message that says "to v7 — succeeded" is true."""
    await deployed.slack.command("/rollback", "checkout dev v7")
    await finish(deployed)
    assert kube.image("shop-dev", "checkout") == "registry.example/checkout:v7"
    rollback = (await deploys(deployed.services.db))[-1]
    assert (rollback.state, rollback.version, rollback.previous_version) == (
        "succeeded",
        "v7",
        "v3",
    )
    headline = (deploy_messages(deployed)[-1].text or "").splitlines()[0]
    assert headline == f"*Rollback #{rollback.id}: checkout in dev to v7* — succeeded"
    assert f"Rollback #{rollback.id} of checkout in dev to v7 started." in replies(deployed)[-1]
