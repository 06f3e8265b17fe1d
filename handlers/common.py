"""What every listener shares: its dependencies, the work after the ack, audit and error reports."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot import audit
from bot.commands import Parsed
from bot.dedup import claim_request, request_key
from bot.logging import request_id_var, user_id_var
from bot.messages import Message, Outcome, Reply, Result
from bot.services import Services
from bot.slack.blocks import to_payload

log = logging.getLogger("opsbot.handlers")

Respond = Callable[..., Awaitable[Any]]


def reply_payload(reply: Reply) -> dict[str, Any]:
    """Arguments for Bolt's `respond()` / `ack()`."""
    payload = to_payload(reply.message)
    payload["response_type"] = "in_channel" if reply.public else "ephemeral"
    if reply.replace_original:
        payload["replace_original"] = True
    return payload


def pooled_respond(services: Services, body: dict[str, Any], fallback: Respond) -> Respond:
    """`respond()` over the bot's one HTTP session to Slack.

    Bolt's own `respond` opens a new HTTP session, so a new connection (and in production a TLS
    handshake with hooks.slack.com) for every reply; 50 deploys at once paid for 50 of them
    (bench/deploy_overhead.py). Without a response_url (Socket Mode events, say) Bolt's is used.
    """
    url = body.get("response_url")
    session = services.client.session
    if not isinstance(url, str) or not url or session is None:
        return fallback

    async def respond(**payload: Any) -> Any:
        message = {key: value for key, value in payload.items() if value is not None}
        webhook = AsyncWebhookClient(url=url, session=session, timeout=10)
        return await webhook.send_dict(message)

    return respond


def ephemeral_responder(client: AsyncWebClient, channel: str | None, user: str) -> Respond:
    """A `respond` for requests without a response_url (a modal): ephemeral, or a DM."""

    async def respond(**payload: Any) -> None:
        payload.pop("response_type", None)
        payload.pop("replace_original", None)
        if channel:
            try:
                await client.chat_postEphemeral(channel=channel, user=user, **payload)
                return
            except SlackApiError:
                log.info("could not answer %s in %s; sending a direct message", user, channel)
        await client.chat_postMessage(channel=user, **payload)

    return respond


async def send_reply(respond: Respond, reply: Reply) -> None:
    try:
        await respond(**reply_payload(reply))
    except Exception:
        # The user cannot be told (the response_url is gone or Slack is down); the log must say.
        log.exception("could not deliver a reply to the user")


@dataclass(frozen=True)
class Request:
    """One Slack request as a listener hands it on: who asked, where, and how to answer."""

    body: dict[str, Any]
    user_id: str
    channel_id: str | None
    respond: Respond

    @classmethod
    def of_command(cls, services: Services, body: dict[str, Any], respond: Respond) -> Request:
        """A slash command's request (its fields are at the top of the body)."""
        return cls(
            body,
            body.get("user_id", "unknown"),
            body.get("channel_id"),
            pooled_respond(services, body, respond),
        )

    @classmethod
    def of_action(cls, services: Services, body: dict[str, Any], respond: Respond) -> Request:
        """A button press's request (an interaction payload: user and channel are objects)."""
        return cls(
            body,
            (body.get("user") or {}).get("id", "unknown"),
            (body.get("channel") or {}).get("id"),
            pooled_respond(services, body, respond),
        )


async def carry_out(
    services: Services,
    request: Request,
    *,
    action: str,
    work: Callable[[], Awaitable[Outcome]] | None = None,
    answered: Outcome | None = None,
) -> None:
    """Run one request's work exactly once, audit it, and report any failure to the user.

    `answered` is the outcome of a request the ack already fully answered (usage, a parse
    error): then the claim and the audit entry are one transaction and there is no work.
    """
    request_id = uuid.uuid4().hex[:12]
    request_id_var.set(request_id)
    user_id_var.set(request.user_id)
    key = request_key(request.body)
    kind = action.split(" ")[0]

    def audited(outcome: Outcome) -> dict[str, Any]:
        return {
            "actor": request.user_id,
            "channel": request.channel_id,
            "action": action,
            "outcome": outcome.name,
            "detail": outcome.detail or None,
            "request_id": request_id,
        }

    try:
        if answered is not None or work is None:
            outcome = answered or Outcome("ok")
            async with services.db.transaction() as session:
                fresh = await claim_request(session, key=key, kind=kind)
                if fresh:
                    await audit.record(session, **audited(outcome))
        else:
            fresh = await claim_request(services.db, key=key, kind=kind)
            if fresh:
                outcome = await _run(work, action, request_id, request.respond)
                await audit.record(services.db, **audited(outcome))
        if not fresh:
            log.info("ignored a repeated delivery of %s (%s)", action, key)
            outcome = Outcome("duplicate")
        services.metrics.actions.labels(action, outcome.name).inc()
    except Exception as exc:
        # The database itself failed (claim or audit): say so rather than pretend.
        log.exception("could not record %s", action)
        services.metrics.actions.labels(action, "error").inc()
        text = (
            f":x: opsbot could not record `{action}` ({type(exc).__name__}); "
            f"its state store may be down. Request `{request_id}`."
        )
        await send_reply(request.respond, Reply(Message(text)))


async def _run(
    work: Callable[[], Awaitable[Outcome]], action: str, request_id: str, respond: Respond
) -> Outcome:
    try:
        return await work()
    except Exception as exc:
        log.exception("%s failed", action)
        text = (
            f":x: `{action}` failed: {type(exc).__name__}: {str(exc)[:300] or 'no detail'}. "
            f"Nothing more was done. The error is logged as request `{request_id}`."
        )
        await send_reply(respond, Reply(Message(text)))
        return Outcome("error", {"error": type(exc).__name__})


def answer(result: Result) -> tuple[Reply, Outcome]:
    """A domain action's result as the reply and the audited outcome of a route."""
    return Reply(result.message, public=result.public), Outcome("ok" if result.ok else "refused")


# What a command's form does: (services, form, request) -> the reply and the audited outcome.
RouteWork = Callable[[Services, Any, Request], Awaitable[tuple[Reply | None, Outcome]]]
# What a button does: (services, the button's value, request) -> the audited outcome.
ButtonWork = Callable[[Services, str, Request], Awaitable[Outcome]]
Routes = dict[type[Parsed], RouteWork]


def record_button(
    names: str,
    act: Callable[[Services, int, str], Awaitable[Result]],
    detail: Callable[[int], dict[str, object]],
) -> ButtonWork:
    """A button whose value is a record's id (a deploy, an alert, an incident).

    `act(services, record_id, user_id)` is the one domain call; `detail` what the audit keeps.
    """

    async def press(services: Services, value: str, request: Request) -> Outcome:
        if not value.isdigit():
            text = f":warning: this button names no {names}."
            await send_reply(request.respond, Reply(Message(text)))
            return Outcome("invalid")
        reply, outcome = answer(await act(services, int(value), request.user_id))
        await send_reply(request.respond, reply)
        outcome.detail.update(detail(int(value)))
        return outcome

    return press


@dataclass
class HandlerDeps:
    """What every `register(app, deps)` receives: the services and this app's tables.

    `routes` (a command's form -> its work) and `buttons` (action_id -> its work) are filled by
    the handler modules' `register` and read by the listeners in `commands` and `actions`.
    """

    services: Services
    routes: Routes = field(default_factory=dict)
    buttons: dict[str, ButtonWork] = field(default_factory=dict)

    def after_ack(
        self,
        request: Request,
        *,
        action: str,
        work: Callable[[], Awaitable[Outcome]] | None = None,
        answered: Outcome | None = None,
        only_if: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        """Ack first, then this: run `work` once, audited, failures told (see `carry_out`).

        `only_if`, when given, is asked first (after the ack): False drops the request unaudited.
        """

        async def later() -> None:
            if only_if is not None and not await only_if():
                return
            await carry_out(self.services, request, action=action, work=work, answered=answered)

        self.services.work.after_ack(later)
