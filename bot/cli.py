"""`opsbot run | shell | check-config [PATH] | db upgrade` (the command names are a contract)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from bot import logging as bot_logging
from bot.catalog import Catalog, CatalogError, load_catalog
from bot.settings import Settings, SettingsError

log = logging.getLogger("opsbot")

EXIT_OK, EXIT_PROBLEMS, EXIT_SETTINGS = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opsbot", description="ChatOps deploy and incident bot")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "run", help="serve Slack (HTTP on PORT, or Socket Mode with SLACK_APP_TOKEN)"
    )
    shell = commands.add_parser("shell", help="a console that stands in for Slack")
    shell.add_argument("--user", default="U0CONSOLE", help="the Slack user id you act as")
    shell.add_argument("--channel", default="C0CONSOLE", help="the channel you type in")
    check = commands.add_parser("check-config", help="validate the catalog (opsbot.yml)")
    check.add_argument("path", nargs="?", help="catalog path (default: $OPSBOT_CONFIG)")
    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_commands.add_parser("upgrade", help="apply the database migrations")
    return parser


def _fail(message: str, code: int) -> int:
    print(f"opsbot: {message}", file=sys.stderr)
    return code


def _load(settings: Settings) -> Catalog:
    catalog = load_catalog(settings.config_path, settings.environ)
    bot_logging.add_secrets(catalog.secrets())
    return catalog


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        return _fail(str(exc), EXIT_SETTINGS)
    bot_logging.configure(settings.log_level, settings.secrets())

    if args.command == "check-config":
        path = Path(args.path) if args.path else settings.config_path
        try:
            catalog = load_catalog(path, settings.environ)
        except CatalogError as exc:
            print("\n".join(exc.problems))
            return EXIT_PROBLEMS
        print(catalog.summary)
        return EXIT_OK

    if args.command == "db":
        from bot.db.session import Database

        async def upgrade() -> None:
            database = Database(settings.database_url)
            try:
                await database.upgrade()
            finally:
                await database.dispose()

        try:
            asyncio.run(upgrade())
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return _fail(f"DATABASE_URL: cannot upgrade the database: {reason}", EXIT_SETTINGS)
        print("database is up to date")
        return EXIT_OK

    if not settings.config_path.is_file():
        return _fail(
            f"OPSBOT_CONFIG: no catalog at {settings.config_path} "
            "(set OPSBOT_CONFIG to the path of your opsbot.yml; see examples/opsbot.yml)",
            EXIT_SETTINGS,
        )
    try:
        catalog = _load(settings)
    except CatalogError as exc:
        print(f"opsbot: OPSBOT_CONFIG: {settings.config_path} has problems:", file=sys.stderr)
        print("\n".join(exc.problems), file=sys.stderr)
        return EXIT_SETTINGS

    if args.command == "shell":
        from bot.console.shell import run_console

        return asyncio.run(run_console(settings, catalog, user=args.user, channel=args.channel))

    try:
        settings.require_slack()
    except SettingsError as exc:
        return _fail(str(exc), EXIT_SETTINGS)
    return asyncio.run(serve(settings, catalog))


async def serve(settings: Settings, catalog: Catalog) -> int:
    """Serve Slack until SIGINT or SIGTERM, then let running work finish."""
    from aiohttp import web

    from bot.app import build_bolt_app, build_services
    from bot.db.session import Database
    from bot.runtime import settle_garbage_collector
    from bot.scheduler import LeaderScheduler
    from bot.web import build_runner, build_web_app

    database = Database(settings.database_url)
    try:
        await database.upgrade()
    except Exception as exc:
        await database.dispose()
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return _fail(f"DATABASE_URL: cannot reach or upgrade the database: {reason}", EXIT_SETTINGS)
    await database.warm()
    services = build_services(settings, catalog, database)
    bolt = build_bolt_app(services)
    web_app = build_web_app(services, bolt)
    # Deploys that were running when the bot last stopped: say so and offer the way forward.
    # With PostgreSQL other replicas may be running some of them: those they list are spared.
    await services.replicas.beat()
    services.replicas.start()
    spare = await services.replicas.live_deploys() if database.dialect == "postgresql" else set()
    interrupted = await services.deploys.recover(spare=spare)
    if interrupted:
        log.warning(
            "%d deploy(s) were interrupted by the last stop: see their threads", interrupted
        )
    scheduler = LeaderScheduler(services)
    scheduler.start()
    runner = build_runner(web_app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host=os.environ.get("HOST", "0.0.0.0"), port=settings.port)
    await site.start()
    socket_handler = None
    if settings.socket_mode:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        socket_handler = AsyncSocketModeHandler(bolt, settings.slack_app_token)
        await socket_handler.connect_async()
        log.info("connected to Slack in Socket Mode; health on port %s", settings.port)
    else:
        log.info("serving Slack on port %s (POST /slack/events)", settings.port)

    settle_garbage_collector()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("shutting down: waiting for %d running request(s)", services.tracker.running)
    await scheduler.stop()
    if socket_handler is not None:
        await socket_handler.close_async()
    with contextlib.suppress(TimeoutError):
        await services.tracker.idle(within=20)
    # Deploys still running stop here, before their clients close under them: the database still
    # says running, and the next start reconciles them (interrupted, with Resume / Roll back).
    await services.deploys.stop_all()
    # Gone from the registry: the elected replica (if another runs) reconciles our deploys.
    await services.replicas.stop()
    await services.close()
    await runner.cleanup()
    await database.dispose()
    return EXIT_OK
