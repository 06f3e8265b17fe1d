"""`/deploy`, `/rollback` and the buttons on deploy messages: parse, call one method, render."""

from __future__ import annotations

from types import MappingProxyType

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
from bot.messages import Message, Outcome, Reply, Result
from bot.services import Services
from handlers.common import ButtonWork, HandlerDeps, Request, answer, record_button, send_reply

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


# The buttons on a deploy's message (their value is the deploy's id) -> the `Deploys` method each
# calls, as method(deploy_id=…, user=…).
DEPLOY_BUTTONS = MappingProxyType(
    {
        messaging.APPROVE: "approve",
        messaging.REJECT: "reject",
        messaging.ABORT: "abort",
        messaging.PROMOTE: "promote",
        messaging.RESUME: "resume",
        messaging.ROLL_BACK: "roll_back_interrupted",
        messaging.RELEASE_LOCK: "release_lock",
        messaging.ACKNOWLEDGE: "acknowledge",
    }
)


def deploy_button(method: str) -> ButtonWork:
    async def act(services: Services, deploy_id: int, user: str) -> Result:
        return await getattr(services.deploys, method)(deploy_id=deploy_id, user=user)

    return record_button("deploy", act, lambda deploy_id: {"deploy": deploy_id})


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
    deps.buttons[messaging.ROLLBACK_CONFIRM] = rollback_button
    deps.buttons[messaging.ROLLBACK_DEPLOY] = rollback_button
    for action_id, method in DEPLOY_BUTTONS.items():
        deps.buttons[action_id] = deploy_button(method)
