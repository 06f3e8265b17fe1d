"""`/postmortem [INC-<n>]` and `/postmortem done INC-<n>`: call the postmortem service, render."""

from __future__ import annotations

from typing import Any

from bot.app import Services
from bot.commands import Parsed
from bot.incidents.postmortem import PostmortemResult
from bot.messages import Outcome, Reply
from handlers.commands import route


def answer(result: PostmortemResult) -> tuple[Reply, Outcome]:
    detail: dict[str, object] = {"incident": result.incident} if result.incident else {}
    if result.postmortem_id is not None:
        detail.update(postmortem=result.postmortem_id, file=result.file_id)
    outcome = Outcome("ok" if result.ok else "refused", detail)
    return Reply(result.message, public=result.public), outcome


@route("/postmortem", "draft")
async def draft(services: Services, parsed: Parsed, context: dict[str, Any]) -> Any:
    # No INC-<n>: the incident whose channel this is (the service says so when there is none).
    incident = parsed.args.get("incident") or context.get("channel_id") or ""
    return answer(
        await services.postmortems.draft(
            str(incident), context["user_id"], where=context.get("channel_id")
        )
    )


@route("/postmortem", "done")
async def done(services: Services, parsed: Parsed, context: dict[str, Any]) -> Any:
    return answer(
        await services.postmortems.done(
            str(parsed.args["incident"]), context["user_id"], where=context.get("channel_id")
        )
    )
