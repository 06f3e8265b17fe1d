"""`opsbot shell`: type slash commands, see Slack's replies as text, press buttons with `click N`.

It runs the very same Bolt app and handlers as `opsbot run`: each line becomes a signed Slack
request dispatched into the app, and the app's Web API calls land on a local stand-in.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import secrets
import sys
import time
from typing import Any, TextIO
from urllib.parse import urlencode

from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.app import build_bolt_app, build_services
from bot.catalog import Catalog
from bot.console.standin import Message, SlackStandIn
from bot.db.session import Database
from bot.services import Services
from bot.settings import Settings
from bot.web import slack_signature

CONSOLE_HELP = """\
Type a slash command as you would in Slack, e.g. `/deploy help`.
  as U123 /deploy …   act as another Slack user
  click N             press button [N]
  help                this text;  quit  leave"""

LINE = re.compile(r"^(?:as\s+(?P<user>[UW][A-Z0-9]+)\s+)?(?P<rest>.*)$")
MRKDWN_LINK = re.compile(r"<([^|>]+)\|([^>]+)>")


def _plain(text: str) -> str:
    # A terminal shows code blocks as they are: drop Slack's ``` fences.
    return MRKDWN_LINK.sub(r"\2", text).replace("```", "")


def _text_of(element: dict[str, Any] | None) -> str:
    if not element:
        return ""
    return _plain(str(element.get("text", "")))


class Console:
    def __init__(
        self, bolt: AsyncApp, services: Services, standin: SlackStandIn, *, user: str, channel: str
    ) -> None:
        self.bolt = bolt
        self.services = services
        self.standin = standin
        self.user = user
        self.channel = channel
        self.out: TextIO = sys.stdout
        self.buttons: list[tuple[dict[str, Any], str, str | None]] = []
        self.secret = services.settings.slack_signing_secret or ""

    # -- showing what Slack would show --------------------------------------------------------
    def render(self, text: str, blocks: list[dict[str, Any]] | None, *, where: str) -> str:
        lines = [f"── {where} ──"]
        if not blocks:
            lines.append(_plain(text))
        for block in blocks or []:
            kind = block.get("type")
            if kind == "header":
                lines.append(f"== {_text_of(block.get('text'))} ==")
            elif kind == "section":
                if block.get("text"):
                    lines.append(_text_of(block["text"]))
                for field in block.get("fields", []):
                    lines.append("  " + _text_of(field).replace("\n", ": ", 1))
            elif kind == "context":
                lines.extend(_text_of(element) for element in block.get("elements", []))
            elif kind == "divider":
                lines.append("────")
            elif kind == "actions":
                for element in block.get("elements", []):
                    self.buttons.append((element, self.channel, None))
                    lines.append(f"  [{len(self.buttons)}] {_text_of(element.get('text'))}")
        return "\n".join(lines)

    def show(self, message: Message) -> None:
        where = f"#{message.channel}"
        if message.thread_ts:
            where += " (thread)"
        if message.ephemeral_for:
            where += " (only you)"
        if message.updated:
            where += " (updated)"
        before = len(self.buttons)
        print(self.render(message.text or "", message.blocks, where=where), file=self.out)
        for index in range(before, len(self.buttons)):
            element, _, _ = self.buttons[index]
            self.buttons[index] = (element, message.channel, message.ts)
        self.out.flush()

    # -- acting like Slack ----------------------------------------------------------------------
    async def dispatch(self, body: str, content_type: str) -> None:
        timestamp = str(int(time.time()))
        headers = {
            "content-type": [content_type],
            "x-slack-request-timestamp": [timestamp],
            "x-slack-signature": [slack_signature(self.secret, timestamp, body.encode())],
        }
        response = await self.bolt.async_dispatch(AsyncBoltRequest(body=body, headers=headers))
        if response.body and response.status < 400:
            try:
                answer = json.loads(response.body)
            except ValueError:
                answer = {"text": response.body}
            if answer.get("text") or answer.get("blocks"):
                where = f"#{self.channel} (only you)"
                print(self.render(answer.get("text", ""), answer.get("blocks"), where=where))
        elif response.status >= 400:
            print(f"console: the bot answered HTTP {response.status}: {response.body}")
        await self.services.tracker.idle(within=120)
        self.out.flush()

    async def command(self, user: str, line: str) -> None:
        command, _, text = line.partition(" ")
        body = urlencode(
            {
                "token": "console",
                "team_id": self.standin.team_id,
                "team_domain": "console",
                "channel_id": self.channel,
                "channel_name": "console",
                "user_id": user,
                "user_name": user.lower(),
                "command": command,
                "text": text.strip(),
                "api_app_id": "A0CONSOLE",
                "response_url": self.standin.response_url(self.channel, user),
                "trigger_id": f"{time.time():.6f}.{secrets.token_hex(4)}",
            }
        )
        await self.dispatch(body, "application/x-www-form-urlencoded")

    async def click(self, user: str, number: int) -> None:
        if not 1 <= number <= len(self.buttons):
            print(f"console: there is no button [{number}] (buttons: 1–{len(self.buttons)})")
            return
        element, channel, message_ts = self.buttons[number - 1]
        payload = {
            "type": "block_actions",
            "team": {"id": self.standin.team_id, "domain": "console"},
            "user": {"id": user, "username": user.lower(), "team_id": self.standin.team_id},
            "api_app_id": "A0CONSOLE",
            "trigger_id": f"{time.time():.6f}.{secrets.token_hex(4)}",
            "channel": {"id": channel, "name": "console"},
            "container": {"type": "message", "channel_id": channel, "message_ts": message_ts},
            "response_url": self.standin.response_url(channel, user),
            "actions": [
                {
                    "type": "button",
                    "action_id": element.get("action_id"),
                    "block_id": element.get("block_id", "console"),
                    "value": element.get("value", ""),
                    "text": element.get("text"),
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        await self.dispatch(
            urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded"
        )

    async def handle(self, raw: str) -> bool:
        """Run one typed line; False when the user wants to leave."""
        line = raw.strip()
        if not line or line.startswith("#"):
            return True
        if line in ("quit", "exit"):
            return False
        match = LINE.match(line)
        assert match is not None  # the pattern matches any line
        user, rest = match["user"] or self.user, match["rest"].strip()
        if rest == "help":
            print(CONSOLE_HELP)
        elif rest.startswith("/"):
            await self.command(user, rest)
        elif re.fullmatch(r"click\s+\d+", rest):
            await self.click(user, int(rest.split()[1]))
        else:
            print(f"console: cannot read {rest!r}; type help")
        return True


def _people(catalog: Catalog, *extra: str) -> set[str]:
    """The Slack user ids the catalog names (owners, approvers, deployers, on-call shifts)."""
    named: set[str] = set(extra)
    for service in catalog.services:
        named.update(service.owners)
    for environment in catalog.environments:
        named.update(environment.approvers)
        named.update(environment.deployers)
    if catalog.oncall.schedule is not None:
        for shift in catalog.oncall.schedule.shifts:
            named.update(p for p in (shift.primary, shift.secondary) if p)
    return {person for person in named if re.fullmatch(r"[UW][A-Z0-9]+", person)}


async def run_console(settings: Settings, catalog: Catalog, *, user: str, channel: str) -> int:
    standin = SlackStandIn()
    await standin.start()
    # The workspace the console stands in for has the people the catalog names, so inviting
    # them to an incident channel or mentioning them works as in Slack.
    for person in sorted(_people(catalog, user)):
        name = person.lower()
        standin.add_user(person, name, f"{name}@console.example", person)
    console_settings = dataclasses.replace(
        settings,
        slack_bot_token="xoxb-console",
        slack_signing_secret=secrets.token_hex(16),
        slack_app_token=None,
        slack_api_url=standin.api_url,
    )
    database = Database(settings.database_url)
    services = None
    try:
        await database.upgrade()
        services = build_services(console_settings, catalog, database)
        await services.deploys.recover()
        console = Console(build_bolt_app(services), services, standin, user=user, channel=channel)
        standin.on_message = console.show
        interactive = sys.stdin.isatty()
        if interactive:
            print(f"opsbot console — {catalog.summary}. Type help.")
        loop = asyncio.get_running_loop()
        while True:
            if interactive:
                print("opsbot> ", end="", flush=True)
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line or not await console.handle(line):
                break
    finally:
        if services is not None:
            await services.deploys.stop_all()
            await services.close()
        await standin.stop()
        await database.dispose()
    return 0
