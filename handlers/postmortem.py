"""`/postmortem [INC-<n>]` and `/postmortem done INC-<n>`: call the postmortem service, render."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.commands import PostmortemDone, PostmortemDraft
from bot.incidents.postmortem import PostmortemResult
from bot.messages import Outcome, Reply
from bot.services import Services
from handlers.common import HandlerDeps, Request


def answer(result: PostmortemResult) -> tuple[Reply, Outcome]:
    detail: dict[str, object] = {"incident": result.incident} if result.incident else {}
    if result.postmortem_id is not None:
        detail.update(postmortem=result.postmortem_id, file=result.file_id)
    outcome = Outcome("ok" if result.ok else "refused", detail)
    return Reply(result.message, public=result.public), outcome


async def draft(
    services: Services, form: PostmortemDraft, request: Request
) -> tuple[Reply, Outcome]:
    # No INC-<n>: the incident whose channel this is (the service says so when there is none).
    incident = form.incident or request.channel_id or ""
    return answer(
        await services.postmortems.draft(incident, request.user_id, where=request.channel_id)
    )


async def done(services: Services, form: PostmortemDone, request: Request) -> tuple[Reply, Outcome]:
    return answer(
        await services.postmortems.done(form.incident, request.user_id, where=request.channel_id)
    )


def register(app: AsyncApp, deps: HandlerDeps) -> None:
    deps.routes.update({PostmortemDraft: draft, PostmortemDone: done})
