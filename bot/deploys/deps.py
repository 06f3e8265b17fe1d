"""What the deploy domain is built from, and the few questions every part of it asks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bot import audit
from bot.catalog import Catalog, Environment, Service
from bot.db.models import Deploy, utc_now
from bot.db.session import Database
from bot.deploys.playbook import Playbook
from bot.directory import Directory
from bot.events import EventBus
from bot.messages import Notifier
from bot.plugins import make_target
from bot.targets.base import Target


@dataclass
class DeployDeps:
    db: Database
    catalog: Catalog
    notifier: Notifier
    directory: Directory
    playbooks: Mapping[str, Playbook]
    env: Mapping[str, str]
    workdir: Path
    target_factory: Callable[..., Target] = make_target
    clock: Callable[[], datetime] = utc_now
    # Finished deploys and rollbacks are told here (incident timelines listen); None: nobody.
    events: EventBus | None = None

    def lookup(self, service: str, environment: str) -> tuple[Service, Environment]:
        svc = self.catalog.service(service)
        env = self.catalog.environment(environment)
        assert svc is not None and env is not None  # the grammar validated both
        return svc, env

    def target(self, service: Service, environment: str) -> Target:
        return self.target_factory(
            service.targets[environment],
            service=service.name,
            environment=environment,
            env=self.env,
        )

    async def may_act(self, deploy: Deploy, user: str) -> bool:
        """May `user` press the buttons of `deploy` (its requester, a deployer or an approver)?"""
        _, env = self.lookup(deploy.service, deploy.environment)
        if user == deploy.requested_by:
            return True
        principals = [*env.deployers, *env.approvers]
        groups = await self.directory.groups_of(user, principals)
        return not env.deployers or user in principals or bool(groups)

    async def audit(self, actor: str, action: str, deploy_id: int) -> None:
        await audit.record(
            self.db, actor=actor, action=action, outcome="ok", detail={"deploy": deploy_id}
        )
