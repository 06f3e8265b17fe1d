"""`/deploy`, `/rollback` and the buttons on deploy messages: parse, call one method, render."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.commands import (
    DeployHistory,
    DeployLock,
    DeployRequest,
    DeployStatus,
    DeployUnlock,
    RollbackRequest,
)
from bot.deploys import messaging
from bot.deploys.rollback import parse_value
from bot.messages import Message, Outcome, Reply
from bot.services import Services
from handlers.common import ButtonWork, HandlerDeps, Request, answer, press_numbered, send_reply

Answer = tuple[Reply, Outcome]


async def deploy(services: Services, form: DeployRequest, request: Request) -> Answer:
    return answer(
        await services.deploys.request(
            service=form.service,
            environment=form.environment,
            version=form.version,
            strategy=form.strategy,
            dry_run=form.dry_run,
            requester=request.user_id,
        )
    )


async def status(services: Services, form: DeployStatus, request: Request) -> Answer:
    return answer(await services.deploys.status(service=form.service))


async def history(services: Services, form: DeployHistory, request: Request) -> Answer:
    return answer(
        await services.deploys.history(service=form.service, environment=form.environment)
    )


async def lock(services: Services, form: DeployLock, request: Request) -> Answer:
    return answer(
        await services.deploys.lock(
            service=form.service,
            environment=form.environment,
            reason=form.reason,
            user=request.user_id,
        )
    )


async def unlock(services: Services, form: DeployUnlock, request: Request) -> Answer:
    return answer(
        await services.deploys.unlock(
            service=form.service, environment=form.environment, user=request.user_id
        )
    )


async def rollback(services: Services, form: RollbackRequest, request: Request) -> Answer:
    return answer(
        await services.rollbacks.offer(
            service=form.service,
            environment=form.environment,
            version=form.version,
            user=request.user_id,
        )
    )


async def rollback_button(services: Services, value: str, request: Request) -> Outcome:
    """Confirmed in Slack's dialog already: roll back (once, however many press it)."""
    what = parse_value(value)
    if what is None:
        await send_reply(
            request.respond, Reply(Message(":warning: this button names no rollback."))
        )
        return Outcome("invalid")
    service, environment, version = what
    result = await services.rollbacks.start(
        service=service, environment=environment, version=version, user=request.user_id
    )
    reply, outcome = answer(result)
    await send_reply(request.respond, reply)
    outcome.detail.update(service=service, environment=environment, version=version)
    return outcome


def deploy_button(method: str) -> ButtonWork:
    """A button on a deploy's message: `Deploys.<method>(deploy_id=…, user=…)`."""

    async def press(services: Services, value: str, request: Request) -> Outcome:
        act: Any = getattr(services.deploys, method)
        return await press_numbered(
            request,
            value,
            names="deploy",
            act=lambda deploy_id: act(deploy_id=deploy_id, user=request.user_id),
            detail=lambda deploy_id: {"deploy": deploy_id},
        )

    return press


def register(app: AsyncApp, deps: HandlerDeps) -> None:
    deps.routes.update(
        {
            DeployRequest: deploy,
            DeployStatus: status,
            DeployHistory: history,
            DeployLock: lock,
            DeployUnlock: unlock,
            RollbackRequest: rollback,
        }
    )
    deps.buttons.update(
        {
            messaging.ROLLBACK_CONFIRM: rollback_button,
            messaging.ROLLBACK_DEPLOY: rollback_button,
            messaging.APPROVE: deploy_button("approve"),
            messaging.REJECT: deploy_button("reject"),
            messaging.ABORT: deploy_button("abort"),
            messaging.PROMOTE: deploy_button("promote"),
            messaging.RESUME: deploy_button("resume"),
            messaging.ROLL_BACK: deploy_button("roll_back_interrupted"),
            messaging.RELEASE_LOCK: deploy_button("release_lock"),
            messaging.ACKNOWLEDGE: deploy_button("acknowledge"),
        }
    )
