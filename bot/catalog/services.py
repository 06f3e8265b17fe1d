"""The catalog's `services:`: where each runs per environment (its targets), and its checks."""

from __future__ import annotations

import string
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from bot.catalog.alerts import ServiceAlert
from bot.catalog.durations import Duration, PositiveDuration
from bot.catalog.fields import (
    ArtifactUrl,
    CommandLine,
    HealthUrl,
    ImageName,
    MetricName,
    Model,
    Name,
    NonEmptyStr,
    SlackChannel,
    SlackPrincipal,
    TrafficSteps,
    check_escalation_policy,
    problem,
)

# Subcommands of /deploy: a service with one of these names could never be addressed.
RESERVED_SERVICE_NAMES: frozenset[str] = frozenset(
    {"help", "status", "history", "lock", "unlock", "list"}
)
# Metrics the bot measures itself instead of querying a service's `metrics` map.
BUILTIN_METRICS: frozenset[str] = frozenset({"health_failing"})


class KubernetesTarget(Model):
    kind: Literal["kubernetes"]
    namespace: NonEmptyStr
    deployment: NonEmptyStr
    container: NonEmptyStr
    image: ImageName
    service: str | None = None
    context: str | None = None
    strategy: Literal["rolling", "blue-green", "canary", "recreate"] = "rolling"
    # canary: the canary Deployment gets these percentages of the replicas, `step_wait` apart.
    steps: TrafficSteps = Field(default_factory=lambda: [10, 50, 100])
    step_wait: Duration = timedelta(minutes=2)
    # How long a rollout may take before the deploy fails (kubectl's progress deadline applies too).
    ready_timeout: Duration = timedelta(minutes=5)

    @model_validator(mode="after")
    def _check_service(self) -> KubernetesTarget:
        if self.strategy == "blue-green" and not self.service:
            raise problem(
                "service", "required for strategy blue-green (the Service whose selector switches)"
            )
        return self


class LambdaTarget(Model):
    kind: Literal["lambda"]
    function: NonEmptyStr
    alias: NonEmptyStr
    artifact: ArtifactUrl
    region: str | None = None
    strategy: Literal["canary"] = "canary"
    steps: TrafficSteps = Field(default_factory=lambda: [10, 50, 100])
    step_wait: Duration = timedelta(minutes=2)


class ComposeTarget(Model):
    kind: Literal["compose"]
    project: NonEmptyStr
    file: NonEmptyStr
    service: NonEmptyStr
    strategy: Literal["recreate"] = "recreate"
    # The compose file names the tag as ${VERSION} (or this variable); opsbot sets it per deploy.
    version_variable: Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")] = "VERSION"


Target = Annotated[KubernetesTarget | LambdaTarget | ComposeTarget, Field(discriminator="kind")]
TARGET_KINDS: tuple[str, ...] = ("kubernetes", "lambda", "compose")


class HealthCheck(Model):
    """`url` is checked once, or, when it names `{pod_ip}` and the environment's target is
    Kubernetes, once per ready pod of the Deployment (bot/deploys/health.py)."""

    url: HealthUrl
    timeout: PositiveDuration = timedelta(seconds=5)

    @property
    def per_instance(self) -> bool:
        """Whether the URL names `{pod_ip}`, i.e. is one URL per instance."""
        return any(
            field == "pod_ip" for _, field, _, _ in string.Formatter().parse(self.url) if field
        )

    def url_for(self, *, env: str, service: str, pod_ip: str | None = None) -> str:
        """The URL with its placeholders filled in. Without `pod_ip`, `{pod_ip}` stays as it is
        (a URL that cannot be fetched as such); an IPv6 address is bracketed, as URLs need."""
        if pod_ip is None:
            address = "{pod_ip}"
        else:
            address = f"[{pod_ip}]" if ":" in pod_ip and not pod_ip.startswith("[") else pod_ip
        return self.url.format(env=env, service=service, pod_ip=address)


class SmokeTest(Model):
    command: CommandLine
    timeout: PositiveDuration = timedelta(minutes=5)

    def argv(self, *, env: str, service: str, version: str) -> list[str]:
        """The command with its placeholders filled in; it runs without a shell."""
        return [arg.format(env=env, service=service, version=version) for arg in self.command]


class PagerDuty(Model):
    routing_key: NonEmptyStr = Field(repr=False)
    escalation_policy: str | None = None

    @model_validator(mode="after")
    def _check_policy(self) -> PagerDuty:
        check_escalation_policy(self.escalation_policy)
        return self


def _check_service_name(value: str) -> str:
    if value in RESERVED_SERVICE_NAMES:
        raise ValueError(
            f"{value!r} is a reserved word (a /deploy subcommand:"
            f" {', '.join(sorted(RESERVED_SERVICE_NAMES))})"
        )
    return value


ServiceName = Annotated[Name, AfterValidator(_check_service_name)]


class Service(Model):
    name: ServiceName
    aliases: list[ServiceName] = Field(default_factory=list)
    owners: list[SlackPrincipal] = Field(default_factory=list)
    channel: SlackChannel | None = None
    targets: Annotated[dict[str, Target], Field(min_length=1)]
    health: HealthCheck | None = None
    smoke: SmokeTest | None = None
    metrics: dict[MetricName, NonEmptyStr] = Field(default_factory=dict)
    pagerduty: PagerDuty | None = None
    playbook: Name | None = None
    # Changes to the catalog's `alerts` for this service only (see `Catalog.alert_rules`).
    alerts: list[ServiceAlert] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_builtin_metrics(self) -> Service:
        clashes = sorted(BUILTIN_METRICS & set(self.metrics))
        if clashes:
            raise problem(
                "metrics", f"{clashes[0]} is measured by opsbot itself; choose another name"
            )
        return self

    def target(self, environment: str) -> KubernetesTarget | LambdaTarget | ComposeTarget | None:
        return self.targets.get(environment)
