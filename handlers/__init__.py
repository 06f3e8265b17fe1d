"""Slack listeners: parse, authorize, call one domain function, render. No business logic."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.app import Services


def register_all(app: AsyncApp, services: Services) -> None:
    """Register every listener; the catch-alls in `actions` go last (Bolt runs the first match)."""
    # deploy, alerts and postmortem register their routes and buttons when imported.
    from handlers import (  # noqa: F401
        actions,
        alerts,
        commands,
        deploy,
        incidents,
        oncall,
        postmortem,
    )

    commands.register(app, services)
    # Listeners of events, views and specific actions, before the catch-alls in `actions`.
    oncall.register(app, services)
    incidents.register(app, services)
    actions.register(app, services)
