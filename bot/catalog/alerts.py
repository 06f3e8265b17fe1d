"""The catalog's metrics source, alert rules, rollback triggers and watched TLS certificates,
with the runbook's defaults."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from bot.catalog.durations import Duration, PositiveDuration
from bot.catalog.fields import (
    HostName,
    MetricName,
    Model,
    Name,
    NonEmptyStr,
    Threshold,
    WebUrl,
    problem,
)


class MetricsSource(Model):
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
            raise problem("url", "only used with source: prometheus (cloudwatch takes region)")
        return self


class AlertRule(Model):
    """Fires when `metric op threshold` holds for `for_` (YAML key `for`)."""

    name: Name
    metric: MetricName
    op: Literal[">", "<"]
    threshold: Threshold
    for_: Duration = Field(default=timedelta(0), alias="for")
    severity: Literal["warning", "critical"]


class ServiceAlert(Model):
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


class RollbackTrigger(Model):
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
            raise problem(
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


def default_rules(model: type[BaseModel], rows: list[dict[str, Any]]) -> Any:
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


class TlsCertificate(Model):
    host: HostName
    port: int = Field(default=443, ge=1, le=65535)
    warn_before: PositiveDuration = timedelta(days=30)
