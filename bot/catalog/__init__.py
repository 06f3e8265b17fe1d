"""The catalog `opsbot.yml`: environments, services and policies, validated with pydantic.

The package's front door: callers import from `bot.catalog`. Inside it, one module per topic:
`durations` and `fields` (value types), `environments`, `services`, `alerts`, `oncall`,
`incidents` (the models), `schema` (the whole document), `checks` (references between
sections), `problems` (validation errors as sentences) and `loading` (YAML, `${VAR}`).
The defaults of every policy (alerts, rollback triggers, on-call deadlines, postmortem due date,
certificate warning) are the numbers of the deployment runbook.
"""

from bot.catalog.alerts import (
    DEFAULT_ALERTS,
    DEFAULT_ROLLBACK_TRIGGERS,
    AlertRule,
    MetricsSource,
    RollbackTrigger,
    ServiceAlert,
    TlsCertificate,
)
from bot.catalog.durations import Duration, PositiveDuration, format_duration, parse_duration
from bot.catalog.environments import Environment, FreezeWindow, Slack, SlackChannels
from bot.catalog.fields import WEEKDAYS
from bot.catalog.incidents import Incidents
from bot.catalog.loading import CatalogError, load_catalog
from bot.catalog.oncall import BusinessHours, Oncall, OncallSchedule, Shift
from bot.catalog.schema import Catalog
from bot.catalog.services import (
    RESERVED_SERVICE_NAMES,
    TARGET_KINDS,
    ComposeTarget,
    HealthCheck,
    KubernetesTarget,
    LambdaTarget,
    PagerDuty,
    Service,
    SmokeTest,
    Target,
)

__all__ = [
    "DEFAULT_ALERTS",
    "DEFAULT_ROLLBACK_TRIGGERS",
    "RESERVED_SERVICE_NAMES",
    "TARGET_KINDS",
    "WEEKDAYS",
    "AlertRule",
    "BusinessHours",
    "Catalog",
    "CatalogError",
    "ComposeTarget",
    "Duration",
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
    "PositiveDuration",
    "RollbackTrigger",
    "Service",
    "ServiceAlert",
    "Shift",
    "Slack",
    "SlackChannels",
    "SmokeTest",
    "Target",
    "TlsCertificate",
    "format_duration",
    "load_catalog",
    "parse_duration",
]
