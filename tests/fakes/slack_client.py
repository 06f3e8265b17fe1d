"""SlackRequests: sends slash commands, clicks, events and modal submissions as Slack does.

Bodies have the fields, encodings and headers of Slack's own requests (a form body for commands, a
`payload=<json>` form field for interactions, JSON for events), signed with the signing secret.
"""

from __future__ import annotations

import itertools
import json
import secrets
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import aiohttp

from bot.console.standin import SlackStandIn
from bot.web import slack_signature

__all__ = ["SlackRequests"]

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
_VERIFICATION_TOKEN = "xVerificationTokenDeprecated"  # Slack still sends the legacy token field
_USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"
_POST_OPTIONS = ("content_type", "retry_num", "retry_reason", "headers", "signed", "timestamp")


class SlackRequests:
    """Builds, signs and POSTs Slack's requests to `{base_url}/slack/events`."""

    def __init__(
        self, base_url: str, signing_secret: str, *, fake: SlackStandIn | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.signing_secret = signing_secret
        self.fake = fake
        self._counter = itertools.count(1)
        self.team_id = fake.team_id if fake else "T0OPSBOT"
        self.team_domain = fake.team_domain if fake else "opsbot"
        self.app_id = fake.app_id if fake else "A0OPSBOT"
        self.bot_user_id = fake.bot_user_id if fake else "U0OPSBOT"

    # ------------------------------------------------------------------ request bodies

    def trigger_id(self) -> str:
        """A fresh trigger_id (registered with the fake so its 3-second expiry applies)."""
        if self.fake is not None:
            return self.fake.issue_trigger_id()
        n = next(self._counter)
        return f"{1000000000 + n}.{4000000000 + n}.{secrets.token_hex(16)}"

    def _channel_name(self, channel_id: str) -> str:
        name = self.fake.channel_name(channel_id) if self.fake else None
        return name or channel_id.lower()

    def _response_url(self, channel_id: str, user_id: str, message_ts: str | None = None) -> str:
        if self.fake is not None:
            return self.fake.response_url(channel_id, user_id, message_ts=message_ts)
        kind = "actions" if message_ts else "commands"
        return f"https://hooks.slack.com/{kind}/{self.team_id}/{next(self._counter)}/unreachable"

    def slash_command_body(
        self,
        command: str,
        text: str,
        *,
        user_id: str = "U0ALICE",
        user_name: str = "alice",
        channel_id: str = "C0DEPLOYS",
        trigger_id: str | None = None,
        response_url: str | None = None,
    ) -> str:
        """The form body of a slash command, fields in Slack's order."""
        fields = {
            "token": _VERIFICATION_TOKEN,
            "team_id": self.team_id,
            "team_domain": self.team_domain,
            "channel_id": channel_id,
            "channel_name": self._channel_name(channel_id),
            "user_id": user_id,
            "user_name": user_name,
            "command": command,
            "text": text,
            "api_app_id": self.app_id,
            "is_enterprise_install": "false",
            "response_url": response_url or self._response_url(channel_id, user_id),
            "trigger_id": trigger_id or self.trigger_id(),
        }
        return urlencode(fields)

    def block_actions_payload(
        self,
        *,
        action_id: str,
        value: str | None = None,
        block_id: str = "b",
        user_id: str = "U0ALICE",
        user_name: str = "alice",
        channel_id: str = "C0DEPLOYS",
        message_ts: str = "1700000000.000100",
        trigger_id: str | None = None,
        response_url: str | None = None,
    ) -> dict[str, Any]:
        """The block_actions payload; with a fake, the message and button are taken from it."""
        message = self.fake.find_message(channel_id, message_ts) if self.fake else None
        element = _find_element(message.blocks if message else [], action_id)
        if element is not None:
            block_id = element.get("_block_id", block_id)
            if value is None:
                value = element.get("value")
        action: dict[str, Any] = {
            "action_id": action_id,
            "block_id": block_id,
            "text": (element or {}).get("text") or {"type": "plain_text", "text": action_id},
            "type": (element or {}).get("type", "button"),
            "action_ts": f"{time.time():.6f}",
        }
        if value is not None:
            action["value"] = value
        is_ephemeral = message is not None and message.ephemeral_for is not None
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {
                "id": user_id,
                "username": user_name,
                "name": user_name,
                "team_id": self.team_id,
            },
            "api_app_id": self.app_id,
            "token": _VERIFICATION_TOKEN,
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel_id,
                "is_ephemeral": is_ephemeral,
            },
            "trigger_id": trigger_id or self.trigger_id(),
            "team": {"id": self.team_id, "domain": self.team_domain},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel_id, "name": self._channel_name(channel_id)},
            "state": {"values": {}},
            "response_url": response_url
            or self._response_url(channel_id, user_id, message_ts=message_ts),
            "actions": [action],
        }
        if not is_ephemeral:  # Slack leaves the message out of ephemeral interactions
            payload["message"] = {
                "type": "message",
                "user": self.bot_user_id,
                "bot_id": "B" + self.bot_user_id[1:],
                "app_id": self.app_id,
                "team": self.team_id,
                "ts": message_ts,
                "text": message.text if message else "",
                "blocks": message.blocks if message else [],
            }
            if message is not None and message.thread_ts:
                payload["message"]["thread_ts"] = message.thread_ts
                payload["container"]["thread_ts"] = message.thread_ts
        return payload

    def block_actions_body(
        self,
        *,
        action_id: str,
        value: str | None = None,
        block_id: str = "b",
        user_id: str = "U0ALICE",
        user_name: str = "alice",
        channel_id: str = "C0DEPLOYS",
        message_ts: str = "1700000000.000100",
        trigger_id: str | None = None,
        response_url: str | None = None,
    ) -> str:
        """Form body `payload=<json>` of a block_actions interaction (see block_actions_payload)."""
        payload = self.block_actions_payload(
            action_id=action_id,
            value=value,
            block_id=block_id,
            user_id=user_id,
            user_name=user_name,
            channel_id=channel_id,
            message_ts=message_ts,
            trigger_id=trigger_id,
            response_url=response_url,
        )
        return urlencode({"payload": json.dumps(payload)})

    def view_submission_body(
        self,
        *,
        callback_id: str,
        values: dict[str, dict[str, dict[str, Any]]],
        view_id: str | None = None,
        private_metadata: str = "",
        user_id: str = "U0ALICE",
        user_name: str = "alice",
        trigger_id: str | None = None,
    ) -> str:
        """Form body of a view_submission; values is Slack's state.values (block → action → value).

        With a fake and a view_id it knows, the submitted view is the one the bot opened.
        """
        stored = dict(self.fake.views.get(view_id, {})) if self.fake and view_id else {}
        view: dict[str, Any] = {
            "id": view_id or f"V{next(self._counter):08d}",
            "team_id": self.team_id,
            "type": "modal",
            "blocks": [],
            "private_metadata": private_metadata,
            "callback_id": callback_id,
            "hash": f"{int(time.time())}.abc",
            "title": {"type": "plain_text", "text": "opsbot"},
            "root_view_id": view_id,
            "previous_view_id": None,
            "app_id": self.app_id,
            "external_id": "",
            "app_installed_team_id": self.team_id,
            "bot_id": "B" + self.bot_user_id[1:],
            **stored,
        }
        view["state"] = {"values": values}
        if private_metadata or "private_metadata" not in stored:
            view["private_metadata"] = private_metadata
        payload = {
            "type": "view_submission",
            "team": {"id": self.team_id, "domain": self.team_domain},
            "user": {
                "id": user_id,
                "username": user_name,
                "name": user_name,
                "team_id": self.team_id,
            },
            "api_app_id": self.app_id,
            "token": _VERIFICATION_TOKEN,
            "trigger_id": trigger_id or self.trigger_id(),
            "view": view,
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        return urlencode({"payload": json.dumps(payload)})

    def event_body(self, event: dict[str, Any], *, event_id: str | None = None) -> str:
        """JSON body of an Events API event_callback."""
        now = int(time.time())
        body = {
            "token": _VERIFICATION_TOKEN,
            "team_id": self.team_id,
            "context_team_id": self.team_id,
            "context_enterprise_id": None,
            "api_app_id": self.app_id,
            "event": {"event_ts": f"{now}.000000", **event},
            "type": "event_callback",
            "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": now,
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": f"4-{uuid.uuid4().hex}",
        }
        return json.dumps(body)

    def url_verification_body(self, challenge: str) -> str:
        return json.dumps(
            {"token": _VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}
        )

    # ------------------------------------------------------------------ signing and sending

    def sign(self, body: str | bytes, *, timestamp: int | None = None) -> dict[str, str]:
        """X-Slack-Request-Timestamp and X-Slack-Signature (v0=HMAC-SHA256 of v0:{ts}:{body})."""
        request_timestamp = str(int(time.time()) if timestamp is None else timestamp)
        raw = body.encode() if isinstance(body, str) else body
        signature = slack_signature(self.signing_secret, request_timestamp, raw)
        return {"X-Slack-Request-Timestamp": request_timestamp, "X-Slack-Signature": signature}

    async def post(
        self,
        body: str | bytes,
        *,
        content_type: str | None = None,
        retry_num: int | None = None,
        retry_reason: str = "http_timeout",
        headers: dict[str, str] | None = None,
        signed: bool = True,
        timestamp: int | None = None,
    ) -> tuple[int, str, dict[str, str]]:
        """POST body to {base_url}/slack/events; returns (status, text, headers).

        content_type defaults to JSON for a body starting with "{", else form-encoded.
        """
        raw = body.encode() if isinstance(body, str) else body
        if content_type is None:
            content_type = JSON if raw.lstrip().startswith(b"{") else FORM
        request_headers = {
            "Content-Type": content_type,
            "User-Agent": _USER_AGENT,
            "Accept": "application/json,*/*",
            "Accept-Encoding": "gzip,deflate",
        }
        if signed:
            request_headers.update(self.sign(raw, timestamp=timestamp))
        if retry_num is not None:
            request_headers["X-Slack-Retry-Num"] = str(retry_num)
            request_headers["X-Slack-Retry-Reason"] = retry_reason
        request_headers.update(headers or {})
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.base_url}/slack/events", data=raw, headers=request_headers) as res,
        ):
            return res.status, await res.text(), dict(res.headers)

    async def command(
        self, command: str, text: str, **kwargs: Any
    ) -> tuple[int, str, dict[str, str]]:
        """Send a slash command; kwargs go to slash_command_body or post."""
        post_options, body_options = _split_options(kwargs)
        return await self.post(
            self.slash_command_body(command, text, **body_options), **post_options
        )

    async def click(
        self, action_id: str, value: str | None = None, **kwargs: Any
    ) -> tuple[int, str, dict[str, str]]:
        """Press a button; kwargs go to block_actions_body or post."""
        post_options, body_options = _split_options(kwargs)
        body = self.block_actions_body(action_id=action_id, value=value, **body_options)
        return await self.post(body, **post_options)

    async def submit(
        self, callback_id: str, values: dict[str, dict[str, dict[str, Any]]], **kwargs: Any
    ) -> tuple[int, str, dict[str, str]]:
        """Submit a modal; kwargs go to view_submission_body or post."""
        post_options, body_options = _split_options(kwargs)
        body = self.view_submission_body(callback_id=callback_id, values=values, **body_options)
        return await self.post(body, **post_options)

    async def event(
        self, event: dict[str, Any], *, event_id: str | None = None, **kwargs: Any
    ) -> tuple[int, str, dict[str, str]]:
        """Deliver an Events API event; kwargs go to post (e.g. retry_num for a redelivery)."""
        return await self.post(self.event_body(event, event_id=event_id), **kwargs)


def _split_options(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    post_options = {k: v for k, v in kwargs.items() if k in _POST_OPTIONS}
    body_options = {k: v for k, v in kwargs.items() if k not in _POST_OPTIONS}
    return post_options, body_options


def _find_element(blocks: list[dict[str, Any]], action_id: str) -> dict[str, Any] | None:
    """The interactive element with action_id in a message's blocks (with its block_id)."""
    for block in blocks:
        elements = list(block.get("elements") or [])
        if isinstance(block.get("accessory"), dict):
            elements.append(block["accessory"])
        for element in elements:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                found = dict(element)
                if "block_id" in block:
                    found["_block_id"] = block["block_id"]
                return found
    return None
