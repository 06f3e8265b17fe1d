"""The whole catalog document (`Catalog`) from its topic models, and the lookups callers use."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, ValidationInfo, model_validator

from bot.catalog.alerts import (
    DEFAULT_ALERTS,
    DEFAULT_ROLLBACK_TRIGGERS,
    AlertRule,
    MetricsSource,
    RollbackTrigger,
    TlsCertificate,
    default_rules,
)
from bot.catalog.checks import cross_problems, format_path
from bot.catalog.environments import Environment, Slack
from bot.catalog.fields import Model
from bot.catalog.incidents import Incidents
from bot.catalog.oncall import Oncall
from bot.catalog.services import Service


class _Summary(str):
    """`catalog.summary` reads as a property and, for callers that call it, as a method."""

    __slots__ = ()

    def __call__(self) -> str:
        return str(self)


class Catalog(Model):
    slack: Slack
    environments: Annotated[list[Environment], Field(min_length=1)]
    services: list[Service]
    metrics: MetricsSource = Field(default_factory=MetricsSource)
    alerts: list[AlertRule] = Field(default_factory=default_rules(AlertRule, DEFAULT_ALERTS))
    rollback_triggers: list[RollbackTrigger] = Field(
        default_factory=default_rules(RollbackTrigger, DEFAULT_ROLLBACK_TRIGGERS)
    )
    oncall: Oncall = Field(default_factory=Oncall)
    incidents: Incidents = Field(default_factory=Incidents)
    certificates: list[TlsCertificate] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cross_check(self, info: ValidationInfo) -> Catalog:
        # load_catalog() runs these checks itself on the raw document, so it can report them
        # with line numbers even when other parts of the file are invalid.
        if info.context and info.context.get("cross_checked"):
            return self
        problems = cross_problems(self.model_dump(by_alias=True))
        if problems:
            raise ValueError("; ".join(f"{format_path(loc)}: {msg}" for loc, msg in problems))
        return self

    def environment(self, name: str) -> Environment | None:
        wanted = name.strip().lower()
        return next((env for env in self.environments if env.name == wanted), None)

    def alert_rules(self, service: Service) -> list[AlertRule]:
        """The alert rules of `service`: the catalog's `alerts` with the service's changes."""
        changes = {change.name: change for change in service.alerts}
        rules: list[AlertRule] = []
        for rule in self.alerts:
            change = changes.pop(rule.name, None)
            changed = change.apply(rule) if change else rule
            if changed is not None:
                rules.append(changed)
        rules += [rule for change in changes.values() if (rule := change.apply(None))]
        return rules

    @property
    def metrics_environment(self) -> str:
        """The environment the metrics describe: `metrics.environment`, else the last one."""
        return self.metrics.environment or self.environments[-1].name

    def service(self, name: str) -> Service | None:
        """The service called `name` or one of its aliases."""
        wanted = name.strip().lower()
        for service in self.services:
            if service.name == wanted or wanted in service.aliases:
                return service
        return None

    def environment_names(self) -> list[str]:
        return [env.name for env in self.environments]

    def service_names(self) -> list[str]:
        return [service.name for service in self.services]

    def previous_environment(self, name: str) -> Environment | None:
        """The environment before `name` in promotion order (None for the first or unknown)."""
        names = self.environment_names()
        wanted = name.strip().lower()
        if wanted not in names or names.index(wanted) == 0:
            return None
        return self.environments[names.index(wanted) - 1]

    def secrets(self) -> list[str]:
        """Values in the catalog that must never reach a log line: PagerDuty routing keys."""
        keys = [self.oncall.default_routing_key]
        keys.extend(s.pagerduty.routing_key for s in self.services if s.pagerduty)
        if self.oncall.schedule is not None:
            for shift in self.oncall.schedule.shifts:
                keys.extend((shift.primary_routing_key, shift.secondary_routing_key))
        return [key for key in keys if key]

    @property
    def summary(self) -> str:
        return _Summary(f"ok: {len(self.services)} services, {len(self.environments)} environments")
