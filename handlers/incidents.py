"""`/incident`, its declare form (a modal), its buttons, and pins / 📌 reactions in its channels."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.app import Services
from bot.commands import Parsed
from bot.incidents import messaging
from bot.incidents.classify import DEFINITIONS, SEVERITY_ORDER, Suggestion
from bot.messages import Message, Outcome, Reply
from handlers.actions import button
from handlers.commands import route
from handlers.common import Respond, answer, carry_out, send_reply

log = logging.getLogger("opsbot.handlers.incidents")

MODAL_CALLBACK = "incident_declare_modal"
PIN_REACTIONS = ("pushpin", "round_pushpin")
_FORMS: set[asyncio.Task[None]] = set()  # forms being opened (a reference keeps the task alive)


# -- slash command routes -------------------------------------------------------------------------


@route("/incident", "modal")
async def modal(services: Services, parsed: Parsed, context: dict[str, Any]) -> Any:
    """`/incident` alone: the form is opened at once by `open_form_first` (it needs the trigger)."""
    return None, Outcome("ok", {"form": "opened"})


@route("/incident", "declare")
async def declare(services: Services, parsed: Parsed, context: dict[str, Any]) -> Any:
    args = parsed.args
    return answer(
        await services.incidents.declare(
            title=str(args["title"]),
            severity=args["severity"],  # type: ignore[arg-type]
            declared_by=context["user_id"],
        )
    )


@route("/incident", "update")
async def update(services: Services, parsed: Parsed, context: dict[str, Any]) -> Any:
    return answer(
        await services.incidents.update(
            channel_id=context["channel_id"], text=str(parsed.args["text"]), user=context["user_id"]
        )
    )


@route("/incident", "severity")
async def severity(services: Services, parsed: Parsed, context: dict[str, Any]) -> Any:
    return answer(
        await services.incidents.set_severity(
            channel_id=context["channel_id"],
            severity=str(parsed.args["severity"]),
            user=context["user_id"],
        )
    )


@route("/incident", "commander")
async def commander(services: Services, parsed: Parsed, context: dict[str, Any]) -> Any:
    (who,) = parsed.args["args"]  # type: ignore[misc]
    return answer(
        await services.incidents.set_commander(
            channel_id=context["channel_id"], who=str(who), user=context["user_id"]
        )
    )


@route("/incident", "role")
async def role(services: Services, parsed: Parsed, context: dict[str, Any]) -> Any:
    name, who = parsed.args["args"]  # type: ignore[misc]
    return answer(
        await services.incidents.set_role(
            channel_id=context["channel_id"], role=str(name), who=str(who), user=context["user_id"]
        )
    )


@route("/incident", "resolve")
async def resolve(services: Services, parsed: Parsed, context: dict[str, Any]) -> Any:
    return answer(
        await services.incidents.resolve(
            channel_id=context["channel_id"],
            summary=str(parsed.args["text"]),
            user=context["user_id"],
        )
    )


@route("/incident", "list")
async def list_incidents(services: Services, parsed: Parsed, context: dict[str, Any]) -> Any:
    if parsed.args.get("args"):
        return Reply(
            Message(":warning: usage: `/incident list` (it takes no arguments).")
        ), Outcome("invalid")
    return answer(await services.incidents.list_active())


@route("/incident", "stats")
async def stats(services: Services, parsed: Parsed, context: dict[str, Any]) -> Any:
    return answer(await services.incidents.stats(args=list(parsed.args.get("args") or [])))  # type: ignore[call-overload]


@button(messaging.ACKNOWLEDGE)
async def acknowledge(
    services: Services, action: dict[str, Any], body: dict[str, Any], respond: Respond
) -> Outcome:
    value = str(action.get("value", ""))
    if not value.isdigit():
        await send_reply(respond, Reply(Message(":warning: this button names no incident.")))
        return Outcome("invalid")
    user = (body.get("user") or {}).get("id", "unknown")
    reply, outcome = answer(await services.incidents.acknowledge(incident_id=int(value), user=user))
    await send_reply(respond, reply)
    outcome.detail["incident"] = f"INC-{value}"
    return outcome


# -- the declare form -----------------------------------------------------------------------------


def _plain(text: str, limit: int = 75) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:limit]}


def _option(value: str, text: str) -> dict[str, Any]:
    return {"text": _plain(text), "value": value}


def declare_view(
    services: Services,
    *,
    suggestion: Suggestion,
    title: str = "",
    description: str = "",
    chosen: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The modal: title, description, severity (the suggestion preselected), services."""
    severities = [_option(s, f"{s} — {DEFINITIONS[s]}") for s in SEVERITY_ORDER]
    suggested = severities[SEVERITY_ORDER.index(suggestion.severity)]
    title_element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": "value",
        "max_length": 255,
        "placeholder": _plain("What is wrong, in a few words"),
    }
    if title:
        title_element["initial_value"] = title[:255]
    description_element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": "value",
        "multiline": True,
        "max_length": 3000,
    }
    if description:
        description_element["initial_value"] = description[:3000]
    blocks: list[dict[str, Any]] = [
        {
            "type": "input",
            "block_id": "title",
            "label": _plain("Title"),
            "element": title_element,
        },
        {
            "type": "input",
            "block_id": "description",
            "optional": True,
            "label": _plain("What do you see? Who is affected?"),
            "element": description_element,
        },
        {
            "type": "input",
            "block_id": "severity",
            "label": _plain("Severity"),
            "element": {
                "type": "static_select",
                "action_id": "value",
                "options": severities,
                "initial_option": suggested,
            },
        },
        {
            "type": "context",
            "block_id": "suggestion",
            "elements": [{"type": "mrkdwn", "text": suggestion.explain()[:2000]}],
        },
    ]
    options = [_option(name, name) for name in services.catalog.service_names()][:100]
    if options:
        services_element: dict[str, Any] = {
            "type": "multi_static_select",
            "action_id": "value",
            "options": options,
            "placeholder": _plain("Affected services"),
        }
        initial = [o for o in options if o["value"] in (chosen or [])]
        if initial:
            services_element["initial_options"] = initial
        blocks.append(
            {
                "type": "input",
                "block_id": "services",
                "optional": True,
                "label": _plain("Affected services"),
                "element": services_element,
            }
        )
    return {
        "type": "modal",
        "callback_id": MODAL_CALLBACK,
        "title": _plain("Declare an incident", 24),
        "submit": _plain("Declare"),
        "close": _plain("Cancel"),
        "private_metadata": json.dumps(metadata or {})[:3000],
        "blocks": blocks,
    }


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
    title = str(prefill.get("title") or "")[:255]
    named = [str(prefill["service"])] if prefill.get("service") else []
    chosen, _ = services.incidents.check_services(named)
    suggestion = await services.incidents.suggest(title=title, services=chosen)
    origin = {k: prefill[k] for k in ("alert_id", "deploy_id") if isinstance(prefill.get(k), int)}
    view = declare_view(
        services,
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


def _spawn(services: Services, work: Callable[[], Awaitable[None]]) -> None:
    """Run now, next to the ack, not behind the queue: a trigger_id lives three seconds."""
    services.tracker.started()

    async def run() -> None:
        try:
            await work()
        except Exception:
            log.exception("opening the incident form failed")
        finally:
            services.tracker.finished()

    task = asyncio.ensure_future(run())
    _FORMS.add(task)
    task.add_done_callback(_FORMS.discard)


def _prefill(value: str) -> dict[str, Any] | None:
    try:
        data = json.loads(value) if value else {}
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _form_values(view: dict[str, Any]) -> dict[str, Any]:
    values = (view.get("state") or {}).get("values") or {}

    def field(block: str) -> dict[str, Any]:
        return (values.get(block) or {}).get("value") or {}

    chosen = field("severity").get("selected_option") or {}
    return {
        "title": str(field("title").get("value") or "").strip(),
        "description": str(field("description").get("value") or "").strip(),
        "severity": chosen.get("value"),
        "services": [o.get("value") for o in field("services").get("selected_options") or []],
    }


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


# -- registration ---------------------------------------------------------------------------------


def register(app: AsyncApp, services: Services) -> None:
    async def open_form_first(body: dict[str, Any], next_: Callable[[], Awaitable[Any]]) -> None:
        """`/incident` alone opens the form now; the command listener still acks and audits."""
        if body.get("command") == "/incident" and not str(body.get("text") or "").strip():
            trigger_id = str(body.get("trigger_id") or "")

            async def work() -> None:
                await open_form(
                    services,
                    app.client,
                    trigger_id=trigger_id,
                    channel_id=body.get("channel_id"),
                    user_id=str(body.get("user_id") or ""),
                    prefill={},
                )

            _spawn(services, work)
        await next_()

    app.middleware(open_form_first)

    async def on_declare_button(
        ack: Callable[..., Awaitable[Any]], body: dict[str, Any], respond: Respond
    ) -> None:
        """Declare incident on an alert or a rollback: the same form, filled in."""
        await ack()
        action = (body.get("actions") or [{}])[0]
        prefill = _prefill(str(action.get("value") or ""))
        user_id = (body.get("user") or {}).get("id", "unknown")
        channel_id = (body.get("channel") or {}).get("id")
        if prefill is not None:
            trigger_id = str(body.get("trigger_id") or "")

            async def work() -> None:
                await open_form(
                    services,
                    app.client,
                    trigger_id=trigger_id,
                    channel_id=channel_id,
                    user_id=user_id,
                    prefill=prefill,
                )

            _spawn(services, work)

        async def audited() -> Outcome:
            if prefill is None:
                text = ":warning: this button carries no incident details; nothing was done."
                await send_reply(respond, Reply(Message(text)))
                return Outcome("invalid")
            return Outcome("ok", {"form": "opened", **prefill})

        async def after_ack() -> None:
            await carry_out(
                services,
                body=body,
                action=f"button:{messaging.DECLARE}",
                user_id=user_id,
                channel_id=channel_id,
                respond=respond,
                work=audited,
            )

        services.after_ack(after_ack)

    app.action(messaging.DECLARE)(on_declare_button)

    async def on_submit(ack: Callable[..., Awaitable[Any]], body: dict[str, Any]) -> None:
        view = body.get("view") or {}
        form = _form_values(view)
        errors = {}
        if not form["title"]:
            errors["title"] = "Give the incident a title."
        if form["severity"] not in SEVERITY_ORDER:
            errors["severity"] = "Choose a severity."
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        try:
            metadata = json.loads(view.get("private_metadata") or "{}")
        except ValueError:
            metadata = {}
        metadata = metadata if isinstance(metadata, dict) else {}
        user_id = (body.get("user") or {}).get("id", "unknown")
        channel_id = metadata.get("channel") if isinstance(metadata.get("channel"), str) else None
        origin = metadata.get("origin") if isinstance(metadata.get("origin"), dict) else {}
        respond = ephemeral_responder(app.client, channel_id, user_id)

        async def work() -> Outcome:
            result = await services.incidents.declare(
                title=form["title"],
                severity=form["severity"],
                description=form["description"],
                services=form["services"] or None,
                declared_by=user_id,
                origin=origin,
            )
            reply, outcome = answer(result)
            await send_reply(respond, Reply(reply.message))
            return outcome

        async def after_ack() -> None:
            await carry_out(
                services,
                body=body,
                action="view:incident_declare",
                user_id=user_id,
                channel_id=channel_id,
                respond=respond,
                work=work,
            )

        services.after_ack(after_ack)

    app.view(MODAL_CALLBACK)(on_submit)

    def timeline_listener(how: str) -> Callable[..., Awaitable[None]]:
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

            async def after_ack() -> None:
                # Only incident channels are audited; pins elsewhere are none of our business.
                if await services.incidents.by_channel(channel_id) is None:
                    return
                await carry_out(
                    services,
                    body=body,
                    action=f"event:{how}",
                    user_id=user_id,
                    channel_id=channel_id,
                    respond=ephemeral_responder(app.client, channel_id, user_id),
                    work=work,
                )

            services.after_ack(after_ack)

        return on_event

    app.event("pin_added")(timeline_listener("pin"))
    app.event("reaction_added")(timeline_listener("reaction"))
