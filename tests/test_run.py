"""`opsbot run` as operators start it: HTTP on PORT, or Socket Mode with SLACK_APP_TOKEN."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

from bot import audit
from bot.app import build_bolt_app, build_services
from bot.catalog import Catalog
from bot.commands import DeployRequest
from bot.db.session import Database
from bot.messages import Message, Outcome, Reply
from handlers.common import Routes
from tests.conftest import BOT_TOKEN, SIGNING_SECRET, TEST_CATALOG, bot_settings
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_client import SlackRequests
from tests.helpers.processes import free_port, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
APP_TOKEN = "xapp-1-A0OPSBOT-1234-abcdef"


def command_payload(requests: SlackRequests, command: str, text: str) -> dict[str, Any]:
    return dict(parse_qsl(requests.slash_command_body(command, text)))


@contextlib.asynccontextmanager
async def opsbot_process(env: dict[str, str], tmp_path: Path) -> AsyncIterator[Any]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSBOT_"))}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        env={**clean, "OPSBOT_CONFIG": str(TEST_CATALOG), **env},
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_opsbot_run_serves_http_and_stops_cleanly(
    fake_slack: FakeSlack, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": fake_slack.api_url,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'run.db'}",
        "PORT": str(port),
        "HOST": "127.0.0.1",
    }
    async with opsbot_process(env, tmp_path) as process:
        await wait_healthy(port, process)
        requests = SlackRequests(f"http://127.0.0.1:{port}", SIGNING_SECRET, fake=fake_slack)
        status, text, _ = await requests.command("/deploy", "help")
        assert status == 200
        assert "/deploy status [<service>]" in text
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/readyz") as ready,
        ):
            assert ready.status == 200
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
        logs = (await process.stderr.read()).decode()
    assert BOT_TOKEN not in logs and SIGNING_SECRET not in logs
    assert '"message": "serving Slack on port' in logs


async def test_opsbot_run_connects_in_socket_mode(fake_slack: FakeSlack, tmp_path: Path) -> None:
    env = {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_APP_TOKEN": APP_TOKEN,
        "SLACK_API_URL": fake_slack.api_url,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'socket.db'}",
        "PORT": str(free_port()),
        "HOST": "127.0.0.1",
    }
    async with opsbot_process(env, tmp_path) as process:
        await fake_slack.wait_socket_connected(timeout=30)
        requests = SlackRequests("http://unused", SIGNING_SECRET, fake=fake_slack)
        ack = await fake_slack.socket_send(
            "slash_commands", command_payload(requests, "/oncall", "help")
        )
        assert "/oncall [<service>]" in str(ack["payload"])
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
        logs = (await process.stderr.read()).decode()
    assert APP_TOKEN not in logs and BOT_TOKEN not in logs


async def test_socket_mode_retries_run_the_work_once(
    fake_slack: FakeSlack, database: Database, catalog: Catalog
) -> None:
    settings = bot_settings(fake_slack, database, slack_app_token=APP_TOKEN)
    services = build_services(settings, catalog, database)
    routes: Routes = {}
    handler = AsyncSocketModeHandler(build_bolt_app(services, routes), APP_TOKEN)

    async def post(services: Any, form: Any, request: Any) -> Any:
        await services.client.chat_postMessage(channel="C0DEPLOYS", text="deploying")
        return Reply(Message("started")), Outcome("ok")

    routes[DeployRequest] = post
    await handler.connect_async()
    try:
        await fake_slack.wait_socket_connected()
        requests = SlackRequests("http://unused", SIGNING_SECRET, fake=fake_slack)
        payload = command_payload(requests, "/deploy", "checkout dev v7")
        await fake_slack.socket_send("slash_commands", payload)
        await fake_slack.socket_send(
            "slash_commands", payload, retry_attempt=1, retry_reason="timeout"
        )
        await services.tracker.idle(within=10)
    finally:
        await handler.close_async()
    assert len(fake_slack.calls_to("chat.postMessage")) == 1
    entries = await audit.entries(database, action="/deploy checkout")
    assert [e.outcome for e in entries] == ["ok"]


@pytest.mark.parametrize("path", ["examples/opsbot.yml", "tests/data/opsbot.yml"])
async def test_check_config_accepts_the_shipped_catalogs(path: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "check-config",
        str(ROOT / path),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    assert out.decode().startswith("ok: ")


async def test_check_config_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "opsbot.yml"
    bad.write_text(
        "environments:\n  - {name: dev}\n  - {name: dev}\nservices:\n"
        "  - {name: status, targets: {prd: {kind: compose, project: p, file: f.yml, service: s}}}\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "check-config", str(bad), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    lines = out.decode().splitlines()
    assert process.returncode == 1
    assert len(lines) >= 3
    assert all(line.startswith(f"{bad}:") for line in lines)


async def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    env = {**os.environ, "DATABASE_URL": url}
    for _ in range(2):  # and again: idempotent
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "db", "upgrade", env=env, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await process.communicate()
        assert process.returncode == 0
        assert out.decode().strip() == "database is up to date"
    database = Database(url)
    try:
        await audit.record(database, actor="U1", action="/deploy help", outcome="usage")
        assert len(await audit.entries(database)) == 1
    finally:
        await database.dispose()
