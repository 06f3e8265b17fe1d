"""Only the workspace opsbot is installed in may use it: others are refused with 403 and audited.

A valid signature says a request came from Slack, not from which workspace: an app distributed
to several workspaces signs them all with one secret. The installation is what `auth.test` of the
bot token says (Bolt's authorization asks once and puts it in the context); every request over
HTTP or Socket Mode is compared with it before a listener runs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from slack_bolt.async_app import AsyncApp
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot import audit
from bot.db.session import Database
from handlers.common import HandlerDeps

log = logging.getLogger("opsbot.handlers")

ACTION = "foreign workspace"


def foreign_workspace(
    *,
    installed_team: str | None,
    installed_enterprise: str | None,
    team: str | None,
    enterprise: str | None,
) -> str | None:
    """Why a request from (team, enterprise) is not for this installation; None when it is.

    An org-wide installation (no team of its own) takes every workspace of its organisation.
    """
    if team is None and enterprise is None:
        return "the request names no workspace"
    if enterprise is not None and enterprise != installed_enterprise:
        return f"organisation {enterprise} is not the one opsbot is installed in"
    if installed_team is None:
        return None if installed_enterprise is not None else "opsbot's installation is unknown"
    if team is not None and team != installed_team:
        return f"workspace {team} is not the one opsbot is installed in"
    return None


class OnlyTheInstalledWorkspace(AsyncMiddleware):
    """Bolt middleware, after Bolt's authorization: a foreign request gets 403 and an audit row.

    A middleware object rather than a function: Bolt injects a function's arguments by name on
    every request, which cost more than the check itself (it runs on every ack).
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],  # Bolt calls it so
    ) -> BoltResponse | None:
        context = req.context
        installed = context.authorize_result
        reason = foreign_workspace(
            installed_team=installed.team_id if installed else None,
            installed_enterprise=installed.enterprise_id if installed else None,
            team=context.team_id,
            enterprise=context.enterprise_id,
        )
        if reason is None:
            return await next()
        log.warning("refused a request from another workspace: %s", reason)
        await audit.record(
            self.db,
            actor=context.user_id or "unknown",
            action=ACTION,
            outcome="refused",
            channel=context.channel_id,
            detail={"team_id": context.team_id, "enterprise_id": context.enterprise_id},
        )
        return BoltResponse(status=403, body=f"opsbot refuses this request: {reason}")


def register(app: AsyncApp, deps: HandlerDeps) -> None:
    """Refuse, before any listener, what comes from another workspace or organisation."""
    app.use(OnlyTheInstalledWorkspace(deps.services.db))
