"""Manual rollback: `/rollback` and the Rollback buttons, against the fake Kubernetes API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot import audit
from bot.catalog import Catalog
from bot.db.session import Database
from bot.deploys import messaging
from tests.conftest import RunningBot, start_bot
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
