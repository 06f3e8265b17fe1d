"""Slack listeners: parse, authorize, call one domain function, render. No business logic."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.app import Services


def register_all(app: AsyncApp, services: Services) -> None:
    """Register every listener; the catch-alls in `actions` go last."""
    from handlers import actions, commands, deploy  # noqa: F401 - deploy registers its routes

    commands.register(app, services)
    # Listeners of events, views and specific actions go here, before the catch-alls in
    # `actions` (Bolt runs the first listener that matches).
    # --- oncall (issue 5) ---
    # --- alerts (issue 5) ---
    # --- incidents (issue 6) ---
    # --- postmortems (issue 6) ---
    actions.register(app, services)
