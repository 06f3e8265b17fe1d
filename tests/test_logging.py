"""Logs are JSON lines shaped like the runbook's example, and never carry a secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from bot import logging as bot_logging
from bot.commands import DeployRequest
from bot.messages import Message, Outcome, Reply
from tests.conftest import BOT_TOKEN, SIGNING_SECRET, RunningBot


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    bot_logging.configure("DEBUG", [BOT_TOKEN, SIGNING_SECRET], stream=stream)
    yield stream
    bot_logging.configure("WARNING", [], stream=io.StringIO())


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_a_record_has_the_runbook_shape(log_stream: io.StringIO) -> None:
    bot_logging.request_id_var.set("abc123")
    bot_logging.user_id_var.set("U0ALICE")
    try:
        raise ValueError("Invalid email format")
    except ValueError:
        logging.getLogger("opsbot.test").exception("Failed to create user")
    (entry,) = [e for e in lines(log_stream) if e["message"] == "Failed to create user"]
    assert entry["level"] == "ERROR"
    assert entry["service"] == "opsbot"
    assert entry["request_id"] == "abc123"
    assert entry["user_id"] == "U0ALICE"
    assert entry["timestamp"].endswith("Z")
    assert entry["error"]["type"] == "ValueError"
    assert entry["error"]["message"] == "Invalid email format"
    assert "Traceback" in entry["error"]["stack"]


def test_secrets_and_token_shapes_are_redacted(log_stream: io.StringIO) -> None:
    log = logging.getLogger("opsbot.test")
    log.warning("token %s secret %s", BOT_TOKEN, SIGNING_SECRET)
    log.warning("someone pasted xoxp-1234-5678-abcdef and xapp-1-A0-99-ff into a command")
    text = log_stream.getvalue()
    assert BOT_TOKEN not in text and SIGNING_SECRET not in text
    assert "xoxp-1234" not in text and "xapp-1-A0" not in text
    assert text.count(bot_logging.REDACTED) == 4


async def test_no_secret_reaches_the_log_while_serving(
    bot: RunningBot, log_stream: io.StringIO
) -> None:
    async def post(services: Any, form: Any, request: Any) -> Any:
        await services.client.chat_postMessage(channel="C0DEPLOYS", text="hello")
        return Reply(Message("done")), Outcome("ok")

    bot.routes[DeployRequest] = post
    await bot.slack.command("/deploy", "checkout prod")
    await bot.settle()
    assert bot.fake.calls_to("chat.postMessage")
    text = log_stream.getvalue()
    # slack_sdk logs its requests at DEBUG, Authorization header included: all of it redacted.
    assert "chat.postMessage" in text
    assert BOT_TOKEN not in text
    assert SIGNING_SECRET not in text


def test_pagerduty_routing_keys_from_the_catalog_are_redacted(
    log_stream: io.StringIO, tmp_path: Any
) -> None:
    from bot.catalog import load_catalog
    from bot.cli import _load
    from bot.settings import Settings

    path = tmp_path / "opsbot.yml"
    path.write_text(
        "slack:\n  channels: {deploys: C0DEPLOYS, alerts: C0ALERTS, incidents: C0INCIDENTS}\n"
        "environments:\n  - {name: dev}\n"
        "services:\n"
        "  - name: checkout\n"
        "    targets: {dev: {kind: compose, project: shop, file: compose.yml, service: web}}\n"
        "    pagerduty: {routing_key: R0SERVICEKEY123}\n"
        "oncall: {default_routing_key: R0DEFAULTKEY456}\n"
    )
    assert sorted(load_catalog(path, {}).secrets()) == ["R0DEFAULTKEY456", "R0SERVICEKEY123"]
    _load(Settings(config_path=path))  # what `opsbot run` does before it serves
    logging.getLogger("opsbot.test").warning("paging with R0SERVICEKEY123 and R0DEFAULTKEY456")
    text = log_stream.getvalue()
    assert "R0SERVICEKEY123" not in text and "R0DEFAULTKEY456" not in text
