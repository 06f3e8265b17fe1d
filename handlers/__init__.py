"""Slack listeners: parse, authorize, call one domain function, render. No business logic.

Each module's `register(app, deps)` wires its listeners, routes and buttons; `bot.app` lists them.
"""
