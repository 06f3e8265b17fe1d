"""The bot over real HTTP, as Slack sees it: signatures, acks, retries, bad bodies, buttons."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from bot import audit
from bot.commands import COMMANDS, DeployRequest, RollbackRequest
from bot.messages import Message, Outcome, Reply
from tests.conftest import RunningBot

COMMAND_NAMES = sorted(COMMANDS)


def ack_of(text: str) -> dict[str, Any]:
    return json.loads(text)


def ephemeral_texts(bot: RunningBot) -> list[str]:
    return [m.text or "" for m in bot.fake.messages if m.ephemeral_for]


@pytest.mark.parametrize("command", COMMAND_NAMES)
async def test_every_command_answers_help_with_its_usage(bot: RunningBot, command: str) -> None:
    status, text, _ = await bot.slack.command(command, "help")
    assert status == 200
    answer = ack_of(text)
    assert answer["response_type"] == "ephemeral"
    assert f"`{command} help`" in json.dumps(answer["blocks"])
    await bot.settle()
    entries = await audit.entries(bot.services.db, action=f"{command} help")
    assert [(e.actor, e.outcome) for e in entries] == [("U0ALICE", "usage")]


@pytest.mark.parametrize(
    ("command", "text", "expected"),
    [
        ("/deploy", "frobnicate", "unknown service or subcommand 'frobnicate'"),
        ("/deploy", "checkout prd", "unknown environment 'prd'. Did you mean prod?"),
        ("/deploy", "checkout prod v1 --fast", "unknown option --fast"),
        ("/rollback", "frobnicate", "a rollback needs a service and an environment"),
        ("/incident", "frobnicate", "unknown subcommand 'frobnicate'"),
        ("/postmortem", "frobnicate", "unknown subcommand or incident 'frobnicate'"),
        ("/oncall", "a b", "usage: `/oncall [<service>]`"),
    ],
)
async def test_unknown_subcommands_get_the_reason_and_usage(
    bot: RunningBot, command: str, text: str, expected: str
) -> None:
    status, body, _ = await bot.slack.command(command, text)
    assert status == 200
    answer = ack_of(body)
    assert answer["response_type"] == "ephemeral"
    assert expected in answer["text"]
    assert f"`{command} help`" in json.dumps(answer["blocks"])


async def test_a_typo_offers_the_corrected_command_as_a_button(bot: RunningBot) -> None:
    _, body, _ = await bot.slack.command("/incident", "delcare P1 checkout is down")
    answer = ack_of(body)
    assert "Did you mean declare?" in answer["text"]
    actions = [b for b in answer["blocks"] if b["type"] == "actions"]
    button = actions[0]["elements"][0]
    assert button["value"] == "/incident declare P1 checkout is down"
    await bot.settle()

    status, _, _ = await bot.slack.click(button["action_id"], value=button["value"])
    assert status == 200
    await bot.settle()
    declared = await bot.fake.wait_for_message(lambda m: "INC-1 declared (P1)" in m.text)
    assert "checkout is down" in declared.text
    entries = await audit.entries(bot.services.db, action="button:rerun_command")
    assert [e.outcome for e in entries] == ["ok"]


async def test_unknown_button_is_answered_not_ignored(bot: RunningBot) -> None:
    status, _, _ = await bot.slack.click("button_from_an_old_version", value="x")
    assert status == 200
    await bot.settle()
    assert any("no longer supported" in t for t in ephemeral_texts(bot))


async def test_unknown_command_is_answered(bot: RunningBot) -> None:
    status, body, _ = await bot.slack.command("/frobnicate", "now")
    assert status == 200
    assert "opsbot does not know /frobnicate" in body
    await bot.settle()
    entries = await audit.entries(bot.services.db, action="unknown command")
    assert [(e.outcome, e.detail) for e in entries] == [("invalid", {"command": "/frobnicate"})]


@pytest.fixture
def posting_route(bot: RunningBot) -> None:
    """A stand-in for a feature's work: it posts to the deploys channel once per run."""

    async def post_once(services: Any, form: Any, request: Any) -> Any:
        await services.client.chat_postMessage(channel="C0DEPLOYS", text=f"deploying {form}")
        return Reply(Message("started")), Outcome("ok")

    bot.routes[DeployRequest] = post_once


async def test_slack_retries_never_run_the_action_twice(
    bot: RunningBot, posting_route: Any
) -> None:
    body = bot.slack.slash_command_body("/deploy", "checkout prod v42")
    first = await bot.slack.post(body)
    retries = await asyncio.gather(
        *(bot.slack.post(body, retry_num=n, retry_reason="http_timeout") for n in (1, 2, 3))
    )
    assert [r[0] for r in (first, *retries)] == [200, 200, 200, 200]
    await bot.settle()
    assert len(bot.fake.calls_to("chat.postMessage")) == 1
    entries = await audit.entries(bot.services.db, action="/deploy checkout")
    assert len(entries) == 1


async def test_work_that_fails_is_reported_to_the_user_and_audited(bot: RunningBot) -> None:
    async def explode(services: Any, form: Any, request: Any) -> Any:
        raise RuntimeError("the target API said no")

    bot.routes[RollbackRequest] = explode
    status, _, _ = await bot.slack.command("/rollback", "checkout prod")
    assert status == 200
    await bot.settle()
    texts = ephemeral_texts(bot)
    assert any("RuntimeError: the target API said no" in t for t in texts)
    entries = await audit.entries(bot.services.db, action="/rollback checkout")
    assert [e.outcome for e in entries] == ["error"]


async def test_bad_signatures_and_stale_timestamps_get_401(bot: RunningBot) -> None:
    body = bot.slack.slash_command_body("/deploy", "help")
    unsigned = await bot.slack.post(body, signed=False)
    stale = await bot.slack.post(body, timestamp=int(time.time()) - 6 * 60)
    forged = await bot.slack.post(body, headers={"X-Slack-Signature": "v0=" + "0" * 64})
    assert [unsigned[0], stale[0], forged[0]] == [401, 401, 401]
    assert bot.fake.messages == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"command=%2Fdeploy&text=\xff\xfe", "not UTF-8"),
        (b"payload=%7Bnot-json", "payload field is not valid JSON"),
        (urlencode({"payload": "[1, 2]"}).encode(), "not a JSON object"),
        (b"hello=world", "neither a slash command"),
        (b"command=deploy&text=x", "the command field is not a slash command"),
        (b"{not json", "is not valid JSON"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b'{"type": 5}', "neither a slash command"),
    ],
)
async def test_malformed_signed_bodies_get_400_not_500(
    bot: RunningBot, body: bytes, reason: str
) -> None:
    content_type = "application/json" if body[:1] in (b"{", b"[") else None
    kwargs = {"content_type": content_type} if content_type else {}
    status, text, _ = await bot.slack.post(body, **kwargs)
    assert status == 400
    assert reason in json.loads(text)["error"]


async def test_url_verification_echoes_the_challenge(bot: RunningBot) -> None:
    status, text, _ = await bot.slack.post(
        bot.slack.url_verification_body("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"),
        content_type="application/json",
    )
    assert status == 200
    assert "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" in text


async def test_events_nobody_handles_are_acknowledged(bot: RunningBot) -> None:
    event = {"type": "app_mention", "user": "U0ALICE", "text": "<@U0OPSBOT> hi", "channel": "C1"}
    status, _, _ = await bot.slack.post(
        bot.slack.event_body(event), content_type="application/json"
    )
    assert status == 200


async def test_health_readiness_and_metrics(bot: RunningBot) -> None:
    await bot.slack.command("/deploy", "help")
    await bot.slack.post(b"x=1", signed=False)
    await bot.settle()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{bot.base_url}/healthz") as health:
            assert health.status == 200
        async with http.get(f"{bot.base_url}/readyz") as ready:
            assert ready.status == 200
            assert (await ready.json())["database"] == "reachable"
        async with http.get(f"{bot.base_url}/metrics") as metrics:
            text = await metrics.text()
    assert 'opsbot_slack_requests_total{command="/deploy",outcome="ok"} 1.0' in text
    assert 'opsbot_slack_requests_total{command="unknown",outcome="unauthorized"} 1.0' in text
    assert 'opsbot_ack_seconds_count{kind="slash_command"} 1.0' in text
    assert 'opsbot_actions_total{action="/deploy help",outcome="usage"} 1.0' in text
