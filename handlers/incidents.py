"""`/incident`, its declare form (a modal), its buttons, and pins / 📌 reactions in its channels."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.commands import (
    IncidentCommander,
    IncidentDeclare,
    IncidentForm,
    IncidentList,
    IncidentResolve,
    IncidentRole,
    IncidentSeverity,
    IncidentStats,
    IncidentUpdate,
)
from bot.incidents import messaging
from bot.messages import Message, Outcome, Reply
from bot.services import Services
from handlers.common import (
    HandlerDeps,
    Request,
    Respond,
    answer,
    ephemeral_responder,
    record_button,
    send_reply,
)
from handlers.views import incident_form

log = logging.getLogger("opsbot.handlers.incidents")

PIN_REACTIONS = ("pushpin", "round_pushpin")
Ack = Callable[..., Awaitable[Any]]
Answer = tuple[Reply | None, Outcome]


# -- slash command routes -------------------------------------------------------------------------


async def modal(services: Services, form: IncidentForm, request: Request) -> Answer:
    """`/incident` alone: the form is opened at once by `open_form_first` (it needs the trigger)."""
    return None, Outcome("ok", {"form": "opened"})


async def declare(services: Services, form: IncidentDeclare, request: Request) -> Answer:
    return answer(
        await services.incidents.declare(
            title=form.title, severity=form.severity, declared_by=request.user_id
        )
    )


async def update(services: Services, form: IncidentUpdate, request: Request) -> Answer:
    return answer(
        await services.incidents.update(
            channel_id=request.channel_id, text=form.text, user=request.user_id
        )
    )


async def severity(services: Services, form: IncidentSeverity, request: Request) -> Answer:
    return answer(
        await services.incidents.set_severity(
            channel_id=request.channel_id, severity=form.severity, user=request.user_id
        )
    )


async def commander(services: Services, form: IncidentCommander, request: Request) -> Answer:
    return answer(
        await services.incidents.set_commander(
            channel_id=request.channel_id, who=form.who, user=request.user_id
        )
    )


async def role(services: Services, form: IncidentRole, request: Request) -> Answer:
    return answer(
        await services.incidents.set_role(
            channel_id=request.channel_id, role=form.role, who=form.who, user=request.user_id
        )
    )


async def resolve(services: Services, form: IncidentResolve, request: Request) -> Answer:
    return answer(
        await services.incidents.resolve(
            channel_id=request.channel_id, summary=form.text, user=request.user_id
        )
    )


async def list_incidents(services: Services, form: IncidentList, request: Request) -> Answer:
    if form.args:
        text = ":warning: usage: `/incident list` (it takes no arguments)."
        return Reply(Message(text)), Outcome("invalid")
    return answer(await services.incidents.list_active())


async def stats(services: Services, form: IncidentStats, request: Request) -> Answer:
    return answer(await services.incidents.stats(args=list(form.args)))


# Acknowledge, on the incident channel's first message; its value is the incident's id.
acknowledge = record_button(
    "incident",
    lambda s, n, user: s.incidents.acknowledge(incident_id=n, user=user),
    lambda incident_id: {"incident": f"INC-{incident_id}"},
)


# -- the declare form -----------------------------------------------------------------------------


async def open_form(
    services: Services,
    client: AsyncWebClient,
    *,
    trigger_id: str,
    channel_id: str | None,
    user_id: str,
    prefill: dict[str, Any],
) -> None:
    """Open the declare form; Slack trouble is told to the user (ephemeral), never lost."""
    title = str(prefill.get("title") or "")[: incident_form.TITLE_LIMIT]
    named = [str(prefill["service"])] if prefill.get("service") else []
    chosen, _ = services.incidents.check_services(named)
    suggestion = await services.incidents.suggest(title=title, services=chosen)
    origin = {k: prefill[k] for k in ("alert_id", "deploy_id") if isinstance(prefill.get(k), int)}
    view = incident_form.declare_view(
        service_names=services.catalog.service_names(),
        suggestion=suggestion,
        title=title,
        chosen=chosen or services.incidents.recognise_services(title),
        metadata={"channel": channel_id, "origin": origin},
    )
    try:
        await client.views_open(trigger_id=trigger_id, view=view)
    except SlackApiError as exc:
        error = exc.response.get("error")
        log.warning("could not open the incident form: %s", error)
        if channel_id:
            text = (
                f":warning: Slack did not open the incident form ({error}). "
                "Declare with `/incident declare [P0-P3] <title>` instead."
            )
            try:
                await client.chat_postEphemeral(channel=channel_id, user=user_id, text=text)
            except SlackApiError:
                log.exception("could not tell %s that the form did not open", user_id)


def _prefill(value: str) -> dict[str, Any] | None:
    try:
        data = json.loads(value) if value else {}
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def start_opening_form(
    deps: HandlerDeps,
    client: AsyncWebClient,
    body: dict[str, Any],
    *,
    channel_id: str | None,
    user_id: str,
    prefill: dict[str, Any],
) -> None:
    """Open the form now, next to the ack, not behind the queue: a trigger_id lives 3 seconds."""
    trigger_id = str(body.get("trigger_id") or "")

    async def work() -> None:
        await open_form(
            deps.services,
            client,
            trigger_id=trigger_id,
            channel_id=channel_id,
            user_id=user_id,
            prefill=prefill,
        )

    deps.services.work.start_now(work, what="opening the incident form")


# -- listeners ------------------------------------------------------------------------------------


def open_form_first(deps: HandlerDeps, client: AsyncWebClient) -> Callable[..., Awaitable[None]]:
    """`/incident` alone opens the form now; the command listener still acks and audits."""

    async def middleware(body: dict[str, Any], next_: Callable[[], Awaitable[Any]]) -> None:
        if body.get("command") == "/incident" and not str(body.get("text") or "").strip():
            start_opening_form(
                deps,
                client,
                body,
                channel_id=body.get("channel_id"),
                user_id=str(body.get("user_id") or ""),
                prefill={},
            )
        await next_()

    return middleware


def declare_button(deps: HandlerDeps, client: AsyncWebClient) -> Callable[..., Awaitable[None]]:
    """Declare incident on an alert or a rollback: the same form, filled in."""

    async def on_declare_button(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        request = Request.of_action(deps.services, body, respond)
        await ack()
        action = (body.get("actions") or [{}])[0]
        prefill = _prefill(str(action.get("value") or ""))
        if prefill is not None:
            start_opening_form(
                deps,
                client,
                body,
                channel_id=request.channel_id,
                user_id=request.user_id,
                prefill=prefill,
            )

        async def audited() -> Outcome:
            if prefill is None:
                text = ":warning: this button carries no incident details; nothing was done."
                await send_reply(request.respond, Reply(Message(text)))
                return Outcome("invalid")
            return Outcome("ok", {"form": "opened", **prefill})

        deps.after_ack(request, action=f"button:{messaging.DECLARE}", work=audited)

    return on_declare_button


def form_submitted(deps: HandlerDeps, client: AsyncWebClient) -> Callable[..., Awaitable[None]]:
    """The declare form's submission: refused per field in the ack, or declared after it."""

    async def on_submit(ack: Ack, body: dict[str, Any]) -> None:
        form = incident_form.submitted(body.get("view") or {})
        errors = form.errors()
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        user_id = (body.get("user") or {}).get("id", "unknown")
        respond = ephemeral_responder(client, form.channel_id, user_id)
        request = Request(body, user_id, form.channel_id, respond)

        async def work() -> Outcome:
            result = await deps.services.incidents.declare(
                title=form.title,
                severity=form.severity,
                description=form.description,
                services=form.services or None,
                declared_by=user_id,
                origin=form.origin,
            )
            reply, outcome = answer(result)
            await send_reply(respond, Reply(reply.message))
            return outcome

        deps.after_ack(request, action="view:incident_declare", work=work)

    return on_submit


def timeline_listener(
    deps: HandlerDeps, client: AsyncWebClient, how: str
) -> Callable[..., Awaitable[None]]:
    """A pin, or a 📌 reaction, in an incident's channel: the message joins its timeline."""
    services = deps.services

    async def on_event(body: dict[str, Any], event: dict[str, Any]) -> None:
        if how == "reaction" and event.get("reaction") not in PIN_REACTIONS:
            return
        item = event.get("item") or {}
        channel_id = str(item.get("channel") or event.get("channel_id") or "")
        message = item.get("message") if isinstance(item.get("message"), dict) else {}
        ts = str(item.get("ts") or message.get("ts") or "")
        if item.get("type") != "message" or not channel_id or not ts:
            return
        user_id = str(event.get("user") or "unknown")

        async def work() -> Outcome:
            recorded = await services.incidents.record_message(
                channel_id=channel_id,
                ts=ts,
                by=user_id,
                how=how,
                text=message.get("text") if message else None,
                author=message.get("user") if message else None,
            )
            return Outcome("ok", {"recorded": recorded, "ts": ts})

        async def in_incident_channel() -> bool:
            # Only incident channels are audited; pins elsewhere are none of our business.
            return await services.incidents.by_channel(channel_id) is not None

        request = Request(
            body, user_id, channel_id, ephemeral_responder(client, channel_id, user_id)
        )
        deps.after_ack(request, action=f"event:{how}", work=work, only_if=in_incident_channel)

    return on_event


def register(app: AsyncApp, deps: HandlerDeps) -> None:
    deps.routes.update(
        {
            IncidentForm: modal,
            IncidentDeclare: declare,
            IncidentUpdate: update,
            IncidentSeverity: severity,
            IncidentCommander: commander,
            IncidentRole: role,
            IncidentResolve: resolve,
            IncidentList: list_incidents,
            IncidentStats: stats,
        }
    )
    deps.buttons[messaging.ACKNOWLEDGE] = acknowledge
    app.middleware(open_form_first(deps, app.client))
    app.action(messaging.DECLARE)(declare_button(deps, app.client))
    app.view(incident_form.CALLBACK_ID)(form_submitted(deps, app.client))
    app.event("pin_added")(timeline_listener(deps, app.client, "pin"))
    app.event("reaction_added")(timeline_listener(deps, app.client, "reaction"))
