"""`/deploy` and the buttons on deploy messages: parse, call one deploy service method, render."""

from __future__ import annotations

from typing import Any

from bot.app import Services
from bot.commands import Parsed
from bot.deploys import messaging
from bot.deploys.rollback import parse_value
from bot.messages import Message, Outcome, Reply
from handlers.actions import button
from handlers.commands import route
from handlers.common import Respond, answer, send_reply


@route("/deploy", "deploy")
async def deploy(services: Services, parsed: Parsed, context: dict[str, Any]) -> Any:
    args = parsed.args
    return answer(
        await services.deploys.request(
            service=str(args["service"]),
            environment=str(args["environment"]),
            version=args["version"],  # type: ignore[arg-type]
            strategy=args["strategy"],  # type: ignore[arg-type]
            dry_run=bool(args["dry_run"]),
            requester=context["user_id"],
        )
    )


@route("/deploy", "status")
async def status(services: Services, parsed: Parsed, context: dict[str, Any]) -> Any:
    return answer(await services.deploys.status(service=parsed.args["service"]))  # type: ignore[arg-type]


@route("/deploy", "history")
async def history(services: Services, parsed: Parsed, context: dict[str, Any]) -> Any:
    return answer(
        await services.deploys.history(
            service=str(parsed.args["service"]),
            environment=parsed.args["environment"],  # type: ignore[arg-type]
        )
    )


@route("/deploy", "lock")
async def lock(services: Services, parsed: Parsed, context: dict[str, Any]) -> Any:
    args = parsed.args
    return answer(
        await services.deploys.lock(
            service=str(args["service"]),
            environment=str(args["environment"]),
            reason=str(args["reason"]),
            user=context["user_id"],
        )
    )


@route("/deploy", "unlock")
async def unlock(services: Services, parsed: Parsed, context: dict[str, Any]) -> Any:
    args = parsed.args
    return answer(
        await services.deploys.unlock(
            service=str(args["service"]),
            environment=str(args["environment"]),
            user=context["user_id"],
        )
    )


@route("/rollback", "rollback")
async def rollback(services: Services, parsed: Parsed, context: dict[str, Any]) -> Any:
    args = parsed.args
    return answer(
        await services.rollbacks.offer(
            service=str(args["service"]),
            environment=str(args["environment"]),
            version=args["version"],  # type: ignore[arg-type]
            user=context["user_id"],
        )
    )


async def _rollback_button(
    services: Services, action: dict[str, Any], body: dict[str, Any], respond: Respond
) -> Outcome:
    """Confirmed in Slack's dialog already: roll back (once, however many press it)."""
    what = parse_value(str(action.get("value", "")))
    if what is None:
        await send_reply(respond, Reply(Message(":warning: this button names no rollback.")))
        return Outcome("invalid")
    service, environment, version = what
    user = (body.get("user") or {}).get("id", "unknown")
    result = await services.rollbacks.start(
        service=service, environment=environment, version=version, user=user
    )
    reply, outcome = answer(result)
    await send_reply(respond, reply)
    outcome.detail.update(service=service, environment=environment, version=version)
    return outcome


button(messaging.ROLLBACK_CONFIRM)(_rollback_button)
button(messaging.ROLLBACK_DEPLOY)(_rollback_button)


def _deploy_button(method: str) -> Any:
    async def press(
        services: Services, action: dict[str, Any], body: dict[str, Any], respond: Respond
    ) -> Outcome:
        value = str(action.get("value", ""))
        if not value.isdigit():
            await send_reply(respond, Reply(Message(":warning: this button names no deploy.")))
            return Outcome("invalid")
        user = (body.get("user") or {}).get("id", "unknown")
        result = await getattr(services.deploys, method)(deploy_id=int(value), user=user)
        reply, outcome = answer(result)
        await send_reply(respond, reply)
        outcome.detail["deploy"] = int(value)
        return outcome

    return press


button(messaging.APPROVE)(_deploy_button("approve"))
button(messaging.REJECT)(_deploy_button("reject"))
button(messaging.ABORT)(_deploy_button("abort"))
button(messaging.PROMOTE)(_deploy_button("promote"))
button(messaging.RESUME)(_deploy_button("resume"))
button(messaging.ROLL_BACK)(_deploy_button("roll_back_interrupted"))
button(messaging.RELEASE_LOCK)(_deploy_button("release_lock"))
button(messaging.ACKNOWLEDGE)(_deploy_button("acknowledge"))
