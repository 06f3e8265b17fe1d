"""Composition root: builds the Slack client, the services, and the Bolt app with its listeners."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts.service import Alerting
from bot.catalog import Catalog
from bot.db.session import Database
from bot.deploys.playbook import load_playbooks
from bot.deploys.rollback import Rollbacks
from bot.deploys.service import DeployDeps, Deploys
from bot.incidents.postmortem import PostmortemDeps, Postmortems
from bot.incidents.service import IncidentDeps, IncidentService
from bot.oncall.pagerduty import PagerDutyApi
from bot.oncall.paging import Paging
from bot.oncall.schedule import OncallDirectory
from bot.replicas import ReplicaRegistry
from bot.services import Services
from bot.settings import Settings
from bot.slack.files import SlackChannelMembers, SlackFileUploader
from bot.slack.notifier import SlackDirectory, SlackNotifier
from bot.slack.people import SlackPeople
from bot.slack.workspace import SlackWorkspace
from handlers import actions, alerts, commands, deploy, incidents, oncall, postmortem, workspace
from handlers.common import HandlerDeps, Routes

__all__ = ["build_bolt_app", "build_client", "build_services", "playbooks_dir"]

# Every module of listeners, in the order Bolt tries them (the first match runs): the specific
# listeners of events, views and actions first, the catch-alls in `actions` last.
LISTENERS = (deploy, alerts, postmortem, commands, oncall, incidents, actions)


def build_client(settings: Settings, token: str | None = None) -> AsyncWebClient:
    """The Web API client: `SLACK_API_URL`, and retries that honour HTTP 429 Retry-After."""
    # One HTTP session for every Web API call: without it slack_sdk opens a new connection (and
    # TLS handshake) per call, which dominated the bot's CPU per deploy in bench/deploy_overhead.
    client = AsyncWebClient(
        token=token or settings.slack_bot_token,
        base_url=settings.slack_api_url,
        timeout=10,
        session=aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)),
    )
    client.retry_handlers.extend(
        [
            AsyncRateLimitErrorRetryHandler(max_retry_count=5),
            AsyncServerErrorRetryHandler(max_retry_count=2),
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
        ]
    )
    return client


def playbooks_dir(settings: Settings) -> Path:
    """OPSBOT_PLAYBOOKS, else ./playbooks, else the playbooks shipped beside the package."""
    configured = settings.environ.get("OPSBOT_PLAYBOOKS")
    if configured:
        return Path(configured)
    local = Path("playbooks")
    if local.is_dir():
        return local
    return Path(__file__).resolve().parent.parent / "playbooks"


def build_services(
    settings: Settings, catalog: Catalog, db: Database, client: AsyncWebClient | None = None
) -> Services:
    services = Services(
        settings=settings, catalog=catalog, db=db, client=client or build_client(settings)
    )
    services.deploys = Deploys(
        DeployDeps(
            db=db,
            catalog=catalog,
            notifier=SlackNotifier(services.client),
            directory=SlackDirectory(services.client),
            playbooks=load_playbooks(playbooks_dir(settings)),
            env=settings.environ or dict(os.environ),
            # `run` steps and smoke tests run where the catalog lives (its scripts/ folder).
            workdir=settings.config_path.resolve().parent,
            target_factory=services.plugins.make_target,
        )
    )
    services.rollbacks = Rollbacks(services.deploys)
    services.replicas = ReplicaRegistry(db, running=lambda: list(services.deploys.running))
    # --- oncall and paging (issue 5) ---

    # One PagerDuty client set, shared; `services.paging.close()` closes it.
    services.oncall = OncallDirectory(
        catalog=catalog, pagerduty=PagerDutyApi(settings), people=SlackPeople(services.client)
    )
    services.paging = Paging(
        db=db,
        catalog=catalog,
        settings=settings,
        notifier=SlackNotifier(services.client),
        events=services.events,
        oncall=services.oncall,
    )
    # --- alerts (issue 5) ---

    services.alerts = Alerting(
        db=db,
        catalog=catalog,
        notifier=SlackNotifier(services.client),
        events=services.events,
        directory=services.deploys.deps.directory,
        env=settings.environ or dict(os.environ),
        paging=services.paging,
    )
    # --- incidents (issue 6) ---

    # Deploys and rollbacks tell the incident timelines when they finish.
    services.deploys.deps.events = services.events
    services.incidents = IncidentService(
        IncidentDeps(
            db=db,
            catalog=catalog,
            notifier=SlackNotifier(services.client),
            workspace=SlackWorkspace(services.client),
            events=services.events,
            paging=services.paging,
            oncall=services.oncall,
        )
    )
    # --- postmortems (issue 6) ---

    services.postmortems = Postmortems(
        PostmortemDeps(
            db=db,
            catalog=catalog,
            notifier=SlackNotifier(services.client),
            uploader=SlackFileUploader(services.client),
            members=SlackChannelMembers(services.client),
            # A team's playbooks folder may hold its own postmortem.md.j2.
            template_dirs=(playbooks_dir(settings),),
            base_dir=settings.config_path.resolve().parent,
        )
    )
    return services


class _DropTokenNotice(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN itself and then warns that our client's token wins: it does."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


def build_bolt_app(services: Services, routes: Routes | None = None) -> AsyncApp:
    """The one Bolt app: Slack over HTTP, Socket Mode and the console all dispatch into it.

    `routes` is the app's table of command forms to their work, filled here by the listeners'
    modules; pass one in to reach it afterwards (tests swap a form's work in it).
    """
    bolt_logger = logging.getLogger("slack_bolt")
    if not any(isinstance(f, _DropTokenNotice) for f in bolt_logger.filters):
        bolt_logger.addFilter(_DropTokenNotice())
    app = AsyncApp(
        client=services.client,
        signing_secret=services.settings.slack_signing_secret or "",
        # bot.web verifies every HTTP request before it reaches Bolt (on the raw bytes, so a
        # signed body that is not UTF-8 gets 400, not 500); Socket Mode has no signed request.
        request_verification_enabled=False,
        logger=bolt_logger,
    )
    deps = HandlerDeps(services, routes=routes if routes is not None else {})
    # Before any listener: a request from another workspace is refused (403) and audited.
    workspace.register(app, deps)
    for module in LISTENERS:
        module.register(app, deps)
    return app
