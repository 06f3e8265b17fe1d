"""The catalog `opsbot.yml`: environments, services and policies, validated with pydantic.

`load_catalog()` reads the file, substitutes `${VAR}` in scalar values, validates everything and
reports every problem at once as `file:line: key.path: what is wrong` (a `CatalogError`).
The defaults of every policy (alerts, rollback triggers, on-call deadlines, postmortem due date,
certificate warning) are the numbers of the deployment runbook.
"""

from __future__ import annotations

import difflib
import itertools
import os
import re
import string
import types
from collections.abc import Iterator, Mapping
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from apscheduler.triggers.cron import CronTrigger
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "RESERVED_SERVICE_NAMES",
    "AlertRule",
    "BusinessHours",
    "Catalog",
    "CatalogError",
    "ComposeTarget",
    "Environment",
    "FreezeWindow",
    "HealthCheck",
    "Incidents",
    "KubernetesTarget",
    "LambdaTarget",
    "MetricsSource",
    "Oncall",
    "OncallSchedule",
    "PagerDuty",
    "RollbackTrigger",
    "Service",
    "ServiceAlert",
    "Shift",
    "Slack",
    "SlackChannels",
    "SmokeTest",
    "Target",
    "TlsCertificate",
    "load_catalog",
    "parse_duration",
]

# Subcommands of /deploy: a service with one of these names could never be addressed.
RESERVED_SERVICE_NAMES: frozenset[str] = frozenset(
    {"help", "status", "history", "lock", "unlock", "list"}
)
# Metrics the bot measures itself instead of querying a service's `metrics` map.
BUILTIN_METRICS: frozenset[str] = frozenset({"health_failing"})
SMOKE_PLACEHOLDERS: frozenset[str] = frozenset({"env", "service", "version"})
# `{pod_ip}`: on a Kubernetes target the health check runs once per ready pod (see HealthCheck).
HEALTH_URL_PLACEHOLDERS: frozenset[str] = frozenset({"env", "service", "pod_ip"})
WEEKDAYS: tuple[str, ...] = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_DURATION_HINT = "(write e.g. 30s, 15m, 2h, 30d)"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_METRIC_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_SLACK_PRINCIPAL = re.compile(r"[UWS][A-Z0-9]{2,}")
_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,}")
_SLACK_CHANNEL = re.compile(r"[CG][A-Z0-9]{2,}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PD_ESCALATION_POLICY = re.compile(r"P[A-Z0-9]{2,}")
_CHANNEL_PREFIX = re.compile(r"[a-z0-9][a-z0-9_-]{0,20}")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


# --- durations and small value types -------------------------------------------------------


def parse_duration(text: str) -> timedelta:
    """Parse `30s`, `15m`, `2h`, `30d` or a combination such as `1h30m` (units in that order)."""
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or not any(match.groups()):
        raise ValueError(f"bad duration {text!r} {_DURATION_HINT}")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    try:
        return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:
        raise ValueError(f"duration {text!r} is too long") from None


def format_duration(value: timedelta) -> str:
    """The inverse of parse_duration, for messages: 90 minutes -> '1h30m'."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _to_timedelta(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        return parse_duration(value)
    # A bare number is ambiguous (seconds? minutes?), so it is refused like any other text.
    raise ValueError(f"bad duration {value!r} {_DURATION_HINT}")


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


def _check_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"bad name {value!r} (use lowercase letters, digits, '-' and '_', at most 63)"
        )
    return value


def _check_metric_name(value: str) -> str:
    if not _METRIC_NAME.fullmatch(value):
        raise ValueError(
            f"bad metric name {value!r} (a name such as error_rate: lowercase letters, digits"
            " and '_'; the query itself belongs in a service's metrics map)"
        )
    return value


def _check_principal(value: str) -> str:
    if not _SLACK_PRINCIPAL.fullmatch(value):
        raise ValueError(f"{value!r} is not a Slack user or user-group id (U…, W… or S…)")
    return value


def _check_channel(value: str) -> str:
    if not _SLACK_CHANNEL.fullmatch(value):
        raise ValueError(f"{value!r} is not a Slack channel id (C… or G…)")
    return value


def _check_person(value: str) -> str:
    if not (_SLACK_USER.fullmatch(value) or _EMAIL.fullmatch(value)):
        raise ValueError(f"{value!r} is not a Slack user id (U… or W…) or an e-mail address")
    return value


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown timezone {value!r} (write an IANA name such as Europe/Berlin or UTC)"
        ) from None
    return value


def _check_cron(value: str) -> str:
    fields = value.split()
    if len(fields) != 5:
        raise ValueError(
            f"bad cron expression {value!r}: expected 5 fields"
            f" (minute hour day-of-month month day-of-week), got {len(fields)}"
        )
    # APScheduler 3 counts weekdays from 0 = Monday, crontab from 0 = Sunday: names are unambiguous.
    if re.search(r"\d", fields[4]):
        raise ValueError(
            f"bad cron expression {value!r}: write the day of week as names (MON-FRI, SAT,SUN),"
            " not numbers"
        )
    try:
        CronTrigger.from_crontab(value, timezone="UTC")
    except ValueError as err:
        raise ValueError(f"bad cron expression {value!r}: {err}") from None
    return value


def _check_http_url(value: str, placeholders: frozenset[str] = frozenset()) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"bad URL {value!r} (write http://… or https://…)")
    _check_placeholders(value, placeholders)
    return value


def _check_placeholders(value: str, allowed: frozenset[str]) -> None:
    try:
        names = {field for _, field, _, _ in string.Formatter().parse(value) if field is not None}
    except ValueError:
        raise ValueError(f"bad placeholder in {value!r} (write e.g. {{env}})") from None
    unknown = sorted(names - allowed)
    if unknown:
        allowed_text = ", ".join("{" + name + "}" for name in sorted(allowed)) or "none"
        raise ValueError(
            f"unknown placeholder {{{unknown[0]}}} in {value!r} (allowed: {allowed_text})"
        )


def _to_clock(value: Any) -> time:
    if isinstance(value, time):
        return value
    match = _CLOCK.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"bad time of day {value!r} (write HH:MM, e.g. 09:00 or 18:30)")
    return time(int(match[1]), int(match[2]))


def _to_weekday(value: Any) -> str:
    text = value.strip().upper() if isinstance(value, str) else value
    if text not in WEEKDAYS:
        raise ValueError(f"bad day {value!r} (write one of {', '.join(WEEKDAYS)})")
    return text


def _to_threshold(value: Any) -> Any:
    if isinstance(value, str) and value.strip().endswith("%"):
        raise ValueError(
            f"write ratios as fractions, not percentages: {value.strip()!r} is"
            f" {_percent_as_fraction(value)}"
        )
    return value


def _percent_as_fraction(value: str) -> str:
    try:
        return repr(float(value.strip().rstrip("%")) / 100)
    except ValueError:
        return "a fraction between 0 and 1"


def _check_image(value: str) -> str:
    last_segment = value.rsplit("/", 1)[-1]
    if ":" in last_segment or "@" in value:
        raise ValueError(
            f"write the image without a tag or digest ({value!r}); the deployed version is the tag"
        )
    if not value or any(char.isspace() for char in value):
        raise ValueError(f"bad image name {value!r}")
    return value


def _check_artifact(value: str) -> str:
    if not value.startswith("s3://") or "/" not in value[len("s3://") :]:
        raise ValueError(f"bad artifact {value!r} (write s3://bucket/key/{{version}}.zip)")
    if "{version}" not in value:
        raise ValueError(
            f"artifact {value!r} must contain {{version}} (e.g. s3://bucket/key/{{version}}.zip)"
        )
    _check_placeholders(value, frozenset({"version"}))
    return value


def _check_steps(value: list[int]) -> list[int]:
    if any(step < 1 or step > 100 for step in value):
        raise ValueError(f"steps are percentages between 1 and 100, got {value}")
    if any(later <= earlier for earlier, later in itertools.pairwise(value)):
        raise ValueError(f"steps must increase, got {value}")
    if value[-1] != 100:
        raise ValueError(f"the last step must be 100 (all traffic), got {value}")
    return value


def _check_host(value: str) -> str:
    if "://" in value or "/" in value:
        raise ValueError(f"write a host name, not a URL: {value!r}")
    if len(value) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in value.split(".")):
        raise ValueError(f"bad host name {value!r}")
    return value


def _check_command(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError(
            'must be an argument list such as [./scripts/smoke-test.sh, "{env}"],'
            " not a shell string"
        )
    return value


def _check_argument(value: str) -> str:
    _check_placeholders(value, SMOKE_PLACEHOLDERS)
    return value


Duration = Annotated[timedelta, BeforeValidator(_to_timedelta)]
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
Name = Annotated[str, AfterValidator(_check_name)]
MetricName = Annotated[str, AfterValidator(_check_metric_name)]
SlackPrincipal = Annotated[str, AfterValidator(_check_principal)]
SlackChannel = Annotated[str, AfterValidator(_check_channel)]
Person = Annotated[str, AfterValidator(_check_person)]
TimeZoneName = Annotated[str, AfterValidator(_check_timezone)]
CronExpression = Annotated[str, AfterValidator(_check_cron)]
WebUrl = Annotated[str, AfterValidator(_check_http_url)]
HealthUrl = Annotated[str, AfterValidator(lambda v: _check_http_url(v, HEALTH_URL_PLACEHOLDERS))]
ClockTime = Annotated[time, BeforeValidator(_to_clock)]
Weekday = Annotated[str, BeforeValidator(_to_weekday)]
Threshold = Annotated[float, BeforeValidator(_to_threshold)]
NonEmptyStr = Annotated[str, Field(min_length=1)]


def _problem(field: str, message: str) -> PydanticCustomError:
    """A model-level problem that belongs to one of the model's keys (`field`)."""
    return PydanticCustomError("opsbot", message, {"field": field})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- slack -------------------------------------------------------------------------------------


class SlackChannels(_Model):
    deploys: SlackChannel
    alerts: SlackChannel
    incidents: SlackChannel


class Slack(_Model):
    channels: SlackChannels
    incident_channel_prefix: str = "inc"

    @model_validator(mode="after")
    def _check_prefix(self) -> Slack:
        if not _CHANNEL_PREFIX.fullmatch(self.incident_channel_prefix):
            raise _problem(
                "incident_channel_prefix",
                f"bad channel prefix {self.incident_channel_prefix!r} (lowercase letters, digits,"
                " '-' and '_', at most 21)",
            )
        return self


# --- environments ------------------------------------------------------------------------------


class FreezeWindow(_Model):
    """Deploys are refused from each time `cron` fires until `duration` later."""

    cron: CronExpression
    duration: PositiveDuration
    timezone: TimeZoneName = "UTC"
    reason: str = ""

    @property
    def tzinfo(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def trigger(self) -> CronTrigger:
        """The APScheduler trigger of the window's starts, in the window's timezone."""
        return CronTrigger.from_crontab(self.cron, timezone=self.tzinfo)


class Environment(_Model):
    name: Name
    approvals: int = Field(default=0, ge=0)
    approvers: list[SlackPrincipal] = Field(default_factory=list)
    deployers: list[SlackPrincipal] = Field(default_factory=list)
    monitor: Duration = timedelta(0)
    require_previous: bool = False
    freeze: list[FreezeWindow] = Field(default_factory=list)
    # A deploy waiting for approval gives up (state `expired`, lock released) after this long.
    approval_timeout: Duration = timedelta(hours=1)

    @model_validator(mode="after")
    def _check_approvers(self) -> Environment:
        if self.approvals and not self.approvers:
            raise _problem(
                "approvers",
                f"required when approvals is {self.approvals}: who may approve deploys to"
                f" {self.name}?",
            )
        # Without a user group, fewer people than approvals can never approve a deploy.
        if not any(p.startswith("S") for p in self.approvers):
            people = len(set(self.approvers))
            if self.approvers and people < self.approvals:
                raise _problem(
                    "approvers",
                    f"{self.approvals} approvals need at least {self.approvals} approvers,"
                    f" got {people}",
                )
        return self


# --- services ----------------------------------------------------------------------------------


class KubernetesTarget(_Model):
    kind: Literal["kubernetes"]
    namespace: NonEmptyStr
    deployment: NonEmptyStr
    container: NonEmptyStr
    image: Annotated[str, AfterValidator(_check_image)]
    service: str | None = None
    context: str | None = None
    strategy: Literal["rolling", "blue-green", "canary", "recreate"] = "rolling"
    # canary: the canary Deployment gets these percentages of the replicas, `step_wait` apart.
    steps: Annotated[list[int], Field(min_length=1), AfterValidator(_check_steps)] = Field(
        default_factory=lambda: [10, 50, 100]
    )
    step_wait: Duration = timedelta(minutes=2)
    # How long a rollout may take before the deploy fails (kubectl's progress deadline applies too).
    ready_timeout: Duration = timedelta(minutes=5)

    @model_validator(mode="after")
    def _check_service(self) -> KubernetesTarget:
        if self.strategy == "blue-green" and not self.service:
            raise _problem(
                "service", "required for strategy blue-green (the Service whose selector switches)"
            )
        return self


class LambdaTarget(_Model):
    kind: Literal["lambda"]
    function: NonEmptyStr
    alias: NonEmptyStr
    artifact: Annotated[str, AfterValidator(_check_artifact)]
    region: str | None = None
    strategy: Literal["canary"] = "canary"
    steps: Annotated[list[int], Field(min_length=1), AfterValidator(_check_steps)] = Field(
        default_factory=lambda: [10, 50, 100]
    )
    step_wait: Duration = timedelta(minutes=2)


class ComposeTarget(_Model):
    kind: Literal["compose"]
    project: NonEmptyStr
    file: NonEmptyStr
    service: NonEmptyStr
    strategy: Literal["recreate"] = "recreate"
    # The compose file names the tag as ${VERSION} (or this variable); opsbot sets it per deploy.
    version_variable: Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")] = "VERSION"


Target = Annotated[KubernetesTarget | LambdaTarget | ComposeTarget, Field(discriminator="kind")]
TARGET_KINDS: tuple[str, ...] = ("kubernetes", "lambda", "compose")


class HealthCheck(_Model):
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


class SmokeTest(_Model):
    command: Annotated[
        list[Annotated[NonEmptyStr, AfterValidator(_check_argument)]],
        BeforeValidator(_check_command),
        Field(min_length=1),
    ]
    timeout: PositiveDuration = timedelta(minutes=5)

    def argv(self, *, env: str, service: str, version: str) -> list[str]:
        """The command with its placeholders filled in; it runs without a shell."""
        return [arg.format(env=env, service=service, version=version) for arg in self.command]


class PagerDuty(_Model):
    routing_key: NonEmptyStr = Field(repr=False)
    escalation_policy: str | None = None

    @model_validator(mode="after")
    def _check_policy(self) -> PagerDuty:
        policy = self.escalation_policy
        if policy is not None and not _PD_ESCALATION_POLICY.fullmatch(policy):
            raise _problem(
                "escalation_policy", f"{policy!r} is not a PagerDuty escalation policy id (P…)"
            )
        return self


def _check_service_name(value: str) -> str:
    if value in RESERVED_SERVICE_NAMES:
        raise ValueError(
            f"{value!r} is a reserved word (a /deploy subcommand:"
            f" {', '.join(sorted(RESERVED_SERVICE_NAMES))})"
        )
    return value


ServiceName = Annotated[Name, AfterValidator(_check_service_name)]


class Service(_Model):
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
            raise _problem(
                "metrics", f"{clashes[0]} is measured by opsbot itself; choose another name"
            )
        return self

    def target(self, environment: str) -> KubernetesTarget | LambdaTarget | ComposeTarget | None:
        return self.targets.get(environment)


# --- metrics, alerts and rollback triggers -----------------------------------------------------


class MetricsSource(_Model):
    source: Literal["prometheus", "cloudwatch"] = "prometheus"
    url: WebUrl | None = None
    region: str | None = None
    poll_interval: PositiveDuration = timedelta(seconds=15)
    # One query per metric answering for every service at once (`sum by (service) (…)`): its
    # series are told apart by `service_label`. A service's own `metrics` entry wins for it.
    queries: dict[MetricName, NonEmptyStr] = Field(default_factory=dict)
    service_label: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = "service"
    # The environment the metrics describe (alerts show its latest deploy); default: the last.
    environment: Name | None = None

    @model_validator(mode="after")
    def _default_url(self) -> MetricsSource:
        if self.source == "prometheus" and self.url is None:
            self.url = "http://localhost:9090"
        if self.source == "cloudwatch" and self.url is not None:
            raise _problem("url", "only used with source: prometheus (cloudwatch takes region)")
        return self


class AlertRule(_Model):
    """Fires when `metric op threshold` holds for `for_` (YAML key `for`)."""

    name: Name
    metric: MetricName
    op: Literal[">", "<"]
    threshold: Threshold
    for_: Duration = Field(default=timedelta(0), alias="for")
    severity: Literal["warning", "critical"]


class ServiceAlert(_Model):
    """One service's change to the alert rules: a catalog rule adjusted (only the keys given
    change) or switched off (`enabled: false`), or, under a new name, a rule of its own."""

    name: Name
    metric: MetricName | None = None
    op: Literal[">", "<"] | None = None
    threshold: Threshold | None = None
    for_: Duration | None = Field(default=None, alias="for")
    severity: Literal["warning", "critical"] | None = None
    enabled: bool = True

    def apply(self, base: AlertRule | None) -> AlertRule | None:
        """The rule for the service: `base` changed by this entry (None: switched off)."""
        if not self.enabled:
            return None
        given = self.model_dump(by_alias=True, exclude_none=True, exclude={"enabled"})
        merged = {**(base.model_dump(by_alias=True) if base else {}), **given}
        return AlertRule.model_validate(merged)


SERVICE_ALERT_REQUIRED: tuple[str, ...] = ("metric", "op", "threshold", "severity")


class RollbackTrigger(_Model):
    """Rolls a deploy back when `metric op threshold` (or `op baseline_factor × baseline`) holds."""

    name: Name
    metric: MetricName
    op: Literal[">", "<"]
    threshold: Threshold | None = None
    baseline_factor: float | None = Field(default=None, gt=0)
    for_: Duration = Field(default=timedelta(0), alias="for")

    @model_validator(mode="after")
    def _exactly_one_limit(self) -> RollbackTrigger:
        if (self.threshold is None) == (self.baseline_factor is None):
            raise _problem(
                "threshold",
                "write exactly one of threshold (an absolute value) or baseline_factor"
                " (a multiple of the pre-deploy baseline)",
            )
        return self

    def limit(self, baseline: float | None = None) -> float | None:
        """The value the metric is compared with; None when the baseline is unknown."""
        if self.threshold is not None:
            return self.threshold
        return None if baseline is None else baseline * (self.baseline_factor or 0)


def _rules(model: type[BaseModel], rows: list[dict[str, Any]]) -> Any:
    return lambda: [model.model_validate(row) for row in rows]


# The runbook's "Alerting Rules" table; ratios are fractions (0.01 = 1 %), latency in seconds.
DEFAULT_ALERTS: list[dict[str, Any]] = [
    {"name": "error-rate-warning", "metric": "error_rate", "op": ">", "threshold": 0.01,
     "for": "5m", "severity": "warning"},
    {"name": "error-rate-critical", "metric": "error_rate", "op": ">", "threshold": 0.05,
     "for": "2m", "severity": "critical"},
    {"name": "latency-p99-warning", "metric": "latency_p99", "op": ">", "threshold": 2.0,
     "for": "10m", "severity": "warning"},
    {"name": "cpu-warning", "metric": "cpu", "op": ">", "threshold": 0.80,
     "for": "15m", "severity": "warning"},
    {"name": "disk-free-critical", "metric": "disk_free", "op": "<", "threshold": 0.10,
     "for": "0s", "severity": "critical"},
]  # fmt: skip

# The runbook's "Automated Rollback Triggers".
DEFAULT_ROLLBACK_TRIGGERS: list[dict[str, Any]] = [
    {"name": "error-rate", "metric": "error_rate", "op": ">", "threshold": 0.05, "for": "2m"},
    {"name": "latency-p99-baseline", "metric": "latency_p99", "op": ">", "baseline_factor": 5,
     "for": "5m"},
    {"name": "health-failing", "metric": "health_failing", "op": ">", "threshold": 0.5,
     "for": "0s"},
]  # fmt: skip


# --- on-call, incidents, certificates ------------------------------------------------------------


class BusinessHours(_Model):
    timezone: TimeZoneName = "UTC"
    days: Annotated[list[Weekday], Field(min_length=1)] = Field(
        default_factory=lambda: list(WEEKDAYS[:5])
    )
    start: ClockTime = time(9, 0)
    end: ClockTime = time(18, 0)

    @model_validator(mode="after")
    def _check_order(self) -> BusinessHours:
        if self.end <= self.start:
            raise _problem("end", f"must be after start ({self.start:%H:%M})")
        return self

    def contains(self, when: datetime) -> bool:
        """Whether the aware datetime `when` falls inside business hours."""
        local = when.astimezone(ZoneInfo(self.timezone))
        return WEEKDAYS[local.weekday()] in self.days and self.start <= local.time() < self.end


class Shift(_Model):
    """Who is on duty in a static rotation, and the Events API routing keys that page them.

    A missing routing key falls back to the service's `pagerduty.routing_key`, then to
    `oncall.default_routing_key`.
    """

    primary: Person
    secondary: Person | None = None
    primary_routing_key: str | None = Field(default=None, repr=False)
    secondary_routing_key: str | None = Field(default=None, repr=False)


class OncallSchedule(_Model):
    """A static rotation: `shifts` take turns, one per day or week, handing off at `handoff`."""

    rotation: Literal["daily", "weekly"] = "weekly"
    start: date
    handoff: ClockTime = time(9, 0)
    timezone: TimeZoneName = "UTC"
    shifts: Annotated[list[Shift], Field(min_length=1)]

    def shift_at(self, when: datetime) -> Shift:
        """The shift on duty at the aware datetime `when` (handoffs follow local wall time)."""
        zone = ZoneInfo(self.timezone)
        first_handoff = datetime.combine(self.start, self.handoff, tzinfo=zone)
        period = timedelta(days=1 if self.rotation == "daily" else 7)
        index = (when.astimezone(zone) - first_handoff) // period
        return self.shifts[index % len(self.shifts)]


class Oncall(_Model):
    provider: Literal["pagerduty", "static"] = "pagerduty"
    ack_within: PositiveDuration = timedelta(minutes=15)
    engage_within: PositiveDuration = timedelta(minutes=30)
    business_hours: BusinessHours = Field(default_factory=BusinessHours)
    default_routing_key: str | None = Field(default=None, repr=False)
    escalation_policy: str | None = None
    schedule: OncallSchedule | None = None

    @model_validator(mode="after")
    def _check_provider(self) -> Oncall:
        if self.provider == "static" and self.schedule is None:
            raise _problem("schedule", "required when provider is static")
        if self.provider == "pagerduty" and self.schedule is not None:
            raise _problem("schedule", "only used with provider: static")
        policy = self.escalation_policy
        if policy is not None and not _PD_ESCALATION_POLICY.fullmatch(policy):
            raise _problem(
                "escalation_policy", f"{policy!r} is not a PagerDuty escalation policy id (P…)"
            )
        if self.engage_within < self.ack_within:
            raise _problem(
                "engage_within",
                f"must not be shorter than ack_within ({format_duration(self.ack_within)})",
            )
        return self


def _default_update_every() -> dict[str, timedelta]:
    return {"P0": timedelta(minutes=15), "P1": timedelta(minutes=30)}


class Incidents(_Model):
    # The runbook: a blameless postmortem within 48 hours of resolution.
    postmortem_due: PositiveDuration = timedelta(hours=48)
    # Also write each rendered postmortem into this folder (INC-<n>-<slug>.md); None: only Slack.
    postmortem_dir: Path | None = None
    # Remind the incident channel when no `/incident update` came for this long, per severity.
    update_every: dict[Literal["P0", "P1", "P2", "P3"], PositiveDuration] = Field(
        default_factory=_default_update_every
    )
    # P2: no page, a follow-up due this long after declaration.
    followup_after: PositiveDuration = timedelta(hours=24)


class TlsCertificate(_Model):
    host: Annotated[str, AfterValidator(_check_host)]
    port: int = Field(default=443, ge=1, le=65535)
    warn_before: PositiveDuration = timedelta(days=30)


# --- the catalog -------------------------------------------------------------------------------


class _Summary(str):
    """`catalog.summary` reads as a property and, for callers that call it, as a method."""

    __slots__ = ()

    def __call__(self) -> str:
        return str(self)


class Catalog(_Model):
    slack: Slack
    environments: Annotated[list[Environment], Field(min_length=1)]
    services: list[Service]
    metrics: MetricsSource = Field(default_factory=MetricsSource)
    alerts: list[AlertRule] = Field(default_factory=_rules(AlertRule, DEFAULT_ALERTS))
    rollback_triggers: list[RollbackTrigger] = Field(
        default_factory=_rules(RollbackTrigger, DEFAULT_ROLLBACK_TRIGGERS)
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
        problems = _cross_problems(self.model_dump(by_alias=True))
        if problems:
            raise ValueError("; ".join(f"{_format_path(loc)}: {msg}" for loc, msg in problems))
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


# --- checks across the document ------------------------------------------------------------------

Loc = tuple[str | int, ...]


def _indexed(data: Any, key: str) -> Iterator[tuple[int, dict[str, Any]]]:
    items = data.get(key) if isinstance(data, dict) else None
    if isinstance(items, list):
        for index, item in enumerate(items):
            if isinstance(item, dict):
                yield index, item


def _cross_problems(data: Any) -> list[tuple[Loc, str]]:
    """Problems that need more than one object: duplicates and references between sections."""
    problems: list[tuple[Loc, str]] = []

    def duplicates(section: str, what: str) -> None:
        seen: set[str] = set()
        for index, item in _indexed(data, section):
            name = item.get("name")
            if isinstance(name, str):
                if name in seen:
                    problems.append(((section, index, "name"), f"duplicate {what} name {name!r}"))
                seen.add(name)

    duplicates("environments", "environment")
    duplicates("services", "service")
    duplicates("alerts", "alert")
    duplicates("rollback_triggers", "rollback trigger")
    problems += _alert_problems(data)

    environments = list(_indexed(data, "environments"))
    env_names = [env.get("name") for _, env in environments]
    if environments and environments[0][1].get("require_previous") is True:
        problems.append(
            (
                ("environments", 0, "require_previous"),
                f"{env_names[0]} is the first environment: there is no previous one to require",
            )
        )

    owners: dict[str, str] = {}
    for _, service in _indexed(data, "services"):
        if isinstance(service.get("name"), str):
            owners.setdefault(service["name"], service["name"])
    for index, service in _indexed(data, "services"):
        name = service.get("name")
        aliases = service.get("aliases")
        for alias_index, alias in enumerate(aliases if isinstance(aliases, list) else []):
            if not isinstance(alias, str):
                continue
            if owners.get(alias, name) != name:
                problems.append(
                    (
                        ("services", index, "aliases", alias_index),
                        f"{alias!r} is already used by service {owners[alias]!r}",
                    )
                )
            else:
                owners[alias] = name
        targets = service.get("targets")
        if not isinstance(targets, dict) or not all(isinstance(n, str) for n in env_names):
            continue
        for env_name in targets:
            if env_name not in env_names:
                problems.append(
                    (
                        ("services", index, "targets", env_name),
                        f"unknown environment {env_name!r} (environments: {', '.join(env_names)})",
                    )
                )
                continue
            position = env_names.index(env_name)
            previous = env_names[position - 1] if position else None
            if (
                environments[position][1].get("require_previous") is True
                and previous is not None
                and previous not in targets
            ):
                problems.append(
                    (
                        ("services", index, "targets", env_name),
                        f"{env_name} requires a deploy to {previous} first (require_previous),"
                        f" but the service has no {previous} target",
                    )
                )
    return problems


def _alert_problems(data: Any) -> list[tuple[Loc, str]]:
    """A service's alert of its own must be complete; `metrics.environment` must exist."""
    problems: list[tuple[Loc, str]] = []
    if not isinstance(data, dict):
        return problems
    raw_alerts = data.get("alerts")
    if "alerts" in data and isinstance(raw_alerts, list):
        names = {rule.get("name") for rule in raw_alerts if isinstance(rule, dict)}
    else:
        names = {rule["name"] for rule in DEFAULT_ALERTS}
    for index, service in _indexed(data, "services"):
        seen: set[str] = set()
        for position, change in _indexed(service, "alerts"):
            name = change.get("name")
            where = ("services", index, "alerts", position)
            if not isinstance(name, str):
                continue
            if name in seen:
                problems.append(((*where, "name"), f"duplicate alert name {name!r}"))
            seen.add(name)
            missing = [key for key in SERVICE_ALERT_REQUIRED if change.get(key) is None]
            if name not in names and change.get("enabled") is not False and missing:
                known = ", ".join(sorted(n for n in names if isinstance(n, str))) or "none"
                problems.append(
                    (
                        (*where, "name"),
                        f"{name!r} is not one of the catalog's alerts ({known}), so it is a rule"
                        f" of its own and needs {', '.join(missing)}",
                    )
                )
    metrics = data.get("metrics")
    wanted = metrics.get("environment") if isinstance(metrics, dict) else None
    env_names = [env.get("name") for _, env in _indexed(data, "environments")]
    if isinstance(wanted, str) and env_names and wanted not in env_names:
        problems.append(
            (
                ("metrics", "environment"),
                f"unknown environment {wanted!r} (environments: {', '.join(map(str, env_names))})",
            )
        )
    return problems


# --- loading -------------------------------------------------------------------------------------


class CatalogError(Exception):
    """The catalog cannot be used; `problems` are lines `file:line: key.path: what is wrong`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_catalog(path: str | Path, environ: Mapping[str, str] | None = None) -> Catalog:
    """Read, substitute `${VAR}` from `environ` (default os.environ), and validate `path`."""
    document = _Document(str(path), os.environ if environ is None else environ)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogError([f"{path}:1: (file): no such file"]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise CatalogError([f"{path}:1: (file): cannot read the file: {err}"]) from None
    data = document.parse(text)
    if document.fatal:
        raise CatalogError(document.render())
    if data is None:
        document.add((), "the file is empty: expected slack, environments and services")
        raise CatalogError(document.render())

    if isinstance(data, dict):
        # Top-level `x-…` keys hold YAML anchors for reuse, as in Compose files.
        data = {key: value for key, value in data.items() if not key.startswith("x-")}
    for loc, message in _cross_problems(data):
        document.add(loc, message)
    try:
        catalog = Catalog.model_validate(data, context={"cross_checked": True})
    except ValidationError as err:
        for error in err.errors(include_url=False):
            loc, message = _describe_error(error, document)
            if not any(loc[: len(bad)] == bad for bad in document.failed_paths):
                document.add(loc, message)
        catalog = None
    if document.problems:
        raise CatalogError(document.render())
    assert catalog is not None
    return catalog


class _CatalogLoader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's base-60 numbers, so `end: 18:00` stays the text "18:00"."""


_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_CatalogLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_CatalogLoader.add_implicit_resolver(
    _INT,
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_CatalogLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9_]+(?:[eE][-+][0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)

_VARIABLE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VARIABLE_BODY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


class _Document:
    """One parse of the file: the data, the line of every key path, and problems so far."""

    def __init__(self, filename: str, environ: Mapping[str, str]) -> None:
        self.filename = filename
        self.environ = environ
        self.lines: dict[Loc, int] = {(): 1}
        self.problems: list[tuple[int, str]] = []
        self.failed_paths: list[Loc] = []
        self.from_variables: dict[Loc, list[str]] = {}
        self.fatal = False

    def add(self, loc: Loc, message: str, line: int | None = None, where: str = "") -> None:
        if line is None:
            line = next(
                self.lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in self.lines
            )
        problem = (line, f"{self.filename}:{line}: {where or _format_path(loc)}: {message}")
        if problem not in self.problems:
            self.problems.append(problem)

    def render(self) -> list[str]:
        return [text for _, text in sorted(self.problems, key=lambda problem: problem[0])]

    def parse(self, text: str) -> Any:
        loader = _CatalogLoader(text)
        try:
            node = loader.get_single_node()
            return None if node is None else self._convert(node, (), loader)
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            line = mark.line + 1 if mark else 1
            message = err.problem or err.context or "invalid YAML"
            if err.context and err.problem and err.problem.startswith("but "):
                message = f"{err.context}, {err.problem}"
            elif err.context and err.problem:
                opened = err.context_mark.line + 1 if err.context_mark else line
                where_opened = f", which starts on line {opened}" if opened != line else ""
                message = f"{err.problem} ({err.context}{where_opened})"
            self.add((), f"invalid YAML: {message}", line=line, where="(file)")
            self.fatal = True
            return None
        except yaml.YAMLError as err:  # pragma: no cover - every PyYAML parse error is marked
            self.add((), f"invalid YAML: {err}")
            self.fatal = True
            return None
        finally:
            loader.dispose()

    def _convert(self, node: yaml.Node, loc: Loc, loader: _CatalogLoader) -> Any:
        collection_tag = {yaml.MappingNode: _MAP_TAG, yaml.SequenceNode: _SEQ_TAG}.get(type(node))
        if collection_tag and node.tag != collection_tag:
            self._fail(loc, f"unsupported tag {node.tag!r}")
            return None
        if isinstance(node, yaml.MappingNode):
            own_keys = {id(key) for key, _ in node.value}
            loader.flatten_mapping(node)
            mapping: dict[str, Any] = {}
            first_lines: dict[str, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    self.add(loc, "keys must be plain words", line=key_node.start_mark.line + 1)
                    continue
                key = key_node.value
                line = key_node.start_mark.line + 1
                # Keys brought in by a `<<:` merge may be overridden; repeating a key may not.
                if key in first_lines and id(key_node) in own_keys:
                    self.add(
                        (*loc, key),
                        f"duplicate key {key!r} (first on line {first_lines[key]})",
                        line=line,
                    )
                if id(key_node) in own_keys:
                    first_lines.setdefault(key, line)
                self.lines[(*loc, key)] = line
                mapping[key] = self._convert(value_node, (*loc, key), loader)
            return mapping
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.lines[(*loc, index)] = item.start_mark.line + 1
                items.append(self._convert(item, (*loc, index), loader))
            return items
        try:
            value = loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as err:  # e.g. !!python/object
            self._fail(loc, str(err.problem))
            return node.value
        except ValueError as err:  # e.g. a timestamp such as 2025-13-01
            self._fail(loc, f"cannot read {node.value!r}: {err}")
            return node.value
        if node.tag == _STR_TAG and isinstance(value, str) and "${" in value:
            return self._substitute(value, loc)
        return value

    def _substitute(self, value: str, loc: Loc) -> str:
        def replace(match: re.Match[str]) -> str:
            if match[0] == "$${":
                return "${"
            body = _VARIABLE_BODY.fullmatch(match[1] or "") if match[0] != "${" else None
            if body is None:
                hint = "(write ${NAME} or ${NAME:-default})"
                self._fail(loc, f"bad variable reference {match[0]!r} {hint}")
                return match[0]
            name, default = body[1], body[2]
            self.from_variables.setdefault(loc, []).append(name)
            current = self.environ.get(name)
            if default is not None:
                return current or default
            if current is None:
                self._fail(loc, f"environment variable {name} is not set")
                return match[0]
            return current

        return _VARIABLE.sub(replace, value)

    def _fail(self, loc: Loc, message: str) -> None:
        self.add(loc, message)
        self.failed_paths.append(loc)


# --- pydantic errors as problems -----------------------------------------------------------------


def _format_path(loc: Loc) -> str:
    if not loc:
        return "(top level)"
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _walk(loc: tuple[Any, ...]) -> tuple[Loc, Any]:
    """Follow a pydantic error `loc` through the model: (the key path as written, its type).

    Pydantic puts the tag of a discriminated union (`kubernetes`) and `[key]` for dict keys into
    `loc`; neither is a key in the file, so both are dropped.
    """
    annotation: Any = Catalog
    path: list[str | int] = []
    for part in loc:
        current = _unwrap(annotation)
        origin = get_origin(current)
        if part == "[key]":
            annotation = None
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {field.alias or name: field for name, field in current.model_fields.items()}
            annotation = fields[part].annotation if part in fields else None
        elif origin is list:
            annotation = get_args(current)[0]
        elif origin is dict:
            annotation = get_args(current)[1]
        elif origin in (Union, types.UnionType):
            tagged = {_tag_of(_unwrap(member)): member for member in get_args(current)}
            if part in tagged:
                annotation = tagged[part]
                continue
            annotation = None
        else:
            annotation = None
        path.append(part)
    return tuple(path), annotation


def _tag_of(model: Any) -> str | None:
    if isinstance(model, type) and issubclass(model, BaseModel) and "kind" in model.model_fields:
        return get_args(model.model_fields["kind"].annotation)[0]
    return None


def _keys_of(annotation: Any) -> list[str]:
    model = _unwrap(annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [field.alias or name for name, field in model.model_fields.items()]
    return []


def _show(value: Any, loc: Loc, document: _Document) -> str:
    """A YAML-like rendering of the offending value; values from ${VAR} are not echoed."""
    if loc in document.from_variables:
        return "the value of " + ", ".join(f"${{{name}}}" for name in document.from_variables[loc])
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping (key: value)",
    "model_type": "a mapping (key: value)",
    "model_attributes_type": "a mapping (key: value)",
    "date_type": "a date (YYYY-MM-DD)",
    "date_parsing": "a date (YYYY-MM-DD)",
    "date_from_datetime_parsing": "a date (YYYY-MM-DD)",
}


def _describe_error(error: Any, document: _Document) -> tuple[Loc, str]:
    """Turn one pydantic error into (key path as written in the file, message)."""
    loc, _ = _walk(tuple(error["loc"]))
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "opsbot":
        return (*loc, ctx["field"]), error["msg"]
    if kind == "value_error":
        return loc, str(ctx["error"])
    if kind == "missing":
        return loc, "required, but missing"
    if kind == "extra_forbidden":
        allowed = _keys_of(_walk(tuple(error["loc"])[:-1])[1])
        unknown = str(loc[-1])
        guess = difflib.get_close_matches(unknown, allowed, n=1)
        hint = f"did you mean {guess[0]!r}?" if guess else f"allowed: {', '.join(allowed)}"
        return loc, f"unknown key {unknown!r} ({hint})"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        kinds = ", ".join(TARGET_KINDS)
        if kind == "union_tag_not_found":
            return (*loc, "kind"), f"required, but missing (one of {kinds})"
        return (*loc, "kind"), f"unknown kind {ctx['tag']!r} (kinds: {kinds})"
    if kind == "literal_error":
        return loc, f"must be {ctx['expected']}, got {_show(value, loc, document)}"
    if kind in _TYPE_NAMES:
        message = f"expected {_TYPE_NAMES[kind]}, got {_show(value, loc, document)}"
        if kind == "string_type" and isinstance(value, (int, float)):
            message += " (put it in quotes)"
        return loc, message
    if kind == "string_too_short":
        return loc, "must not be empty"
    if kind == "too_short":
        return loc, f"must have at least {ctx['min_length']} entry"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        sign = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<="}
        limit = f"{next(iter(ctx.values())):g}"
        return loc, f"must be {sign.get(kind, '<')} {limit}, got {_show(value, loc, document)}"
    message = error["msg"]  # pragma: no cover - a pydantic error type not seen above
    return loc, message[:1].lower() + message[1:]  # pragma: no cover
