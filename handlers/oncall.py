"""`/oncall [service]`, and thread replies that tell a page someone is engaged."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.catalog import format_duration
from bot.commands import OncallShow
from bot.messages import Message, Outcome, Reply, text
from bot.oncall.schedule import OnCall, OncallUnavailable
from bot.services import Services
from bot.slack.render import mrkdwn
from handlers.common import HandlerDeps, Request


def _describe(oncall: OnCall) -> str:
    primary = mrkdwn(text(oncall.primary.shown)) if oncall.primary else "nobody"
    secondary = mrkdwn(text(oncall.secondary.shown)) if oncall.secondary else "nobody"
    if oncall.source == "pagerduty":
        source = f"PagerDuty, escalation policy {oncall.escalation_policy}"
    else:
        source = "static rotation in the catalog"
    until = f", until {oncall.until:%a %Y-%m-%d %H:%M} UTC" if oncall.until else ""
    return f"primary {primary}, secondary {secondary} ({source}{until})"


async def show(services: Services, form: OncallShow, request: Request) -> tuple[Reply, Outcome]:
    wanted = form.service
    if wanted:
        entry = services.catalog.service(wanted)
        names = [entry.name if entry else wanted]
    else:
        names = services.catalog.service_names()
    lines = []
    failures = 0
    # Services sharing an escalation policy (or the one static rotation) cost one look-up.
    seen: dict[str | None, OnCall | str] = {}
    for name in names:
        key = (
            "static"
            if services.oncall.provider == "static"
            else services.oncall.escalation_policy(name)
        )
        if key not in seen:
            try:
                seen[key] = await services.oncall.who(name)
            except OncallUnavailable as exc:
                seen[key] = str(exc)
        found = seen[key]
        if isinstance(found, str):
            failures += 1
            lines.append(f"• *{name}*: unknown: {found}")
        else:
            lines.append(f"• *{name}*: {_describe(found)}")
    policy = services.catalog.oncall
    sla = (
        f"SLA: acknowledge within {format_duration(policy.ack_within)}, engage within "
        f"{format_duration(policy.engage_within)}; a missed acknowledgment pages the secondary."
    )
    if not names:
        lines.append("No services in the catalog.")
    message = Message("\n".join(lines), title="On call", context=sla)
    outcome = "ok" if failures == 0 else "unavailable"
    return Reply(message), Outcome(outcome, {"services": len(names), "unknown": failures})


def register(app: AsyncApp, deps: HandlerDeps) -> None:
    """`/oncall`; and a person's reply in a page's thread marks the page engaged (runbook:
    engage in 30 min)."""
    deps.routes[OncallShow] = show
    services = deps.services

    async def in_open_page_thread(event: dict[str, Any]) -> bool:
        if event.get("subtype") or event.get("bot_id") or not event.get("user"):
            return False
        thread_ts = event.get("thread_ts")
        if not thread_ts or thread_ts == event.get("ts"):
            return False
        return await services.paging.has_open_page(str(event.get("channel")), str(thread_ts))

    async def on_reply(
        ack: Callable[..., Awaitable[Any]], body: dict[str, Any], event: dict[str, Any]
    ) -> None:
        await ack()
        user = str(event.get("user"))
        channel = str(event.get("channel"))

        async def work() -> Outcome:
            keys = await services.paging.engaged_in_thread(channel, str(event["thread_ts"]), user)
            return Outcome("ok", {"pages": keys})

        # Events have no one to answer; failures are logged and audited.
        request = Request(body, user, channel, respond=nobody)
        deps.after_ack(request, action="event:page-engaged", work=work)

    app.event("message", matchers=[in_open_page_thread])(on_reply)


async def nobody(**_: Any) -> None:
    """The `respond` of an event: there is no one to answer."""
