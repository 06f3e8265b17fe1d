"""The catalog's small value types (names, Slack ids, URLs, clock times …) and their checks,
and the base of every catalog model."""

from __future__ import annotations

import itertools
import re
import string
from datetime import time
from typing import Annotated, Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

SMOKE_PLACEHOLDERS: frozenset[str] = frozenset({"env", "service", "version"})
# `{pod_ip}`: on a Kubernetes target the health check runs once per ready pod (see HealthCheck).
HEALTH_URL_PLACEHOLDERS: frozenset[str] = frozenset({"env", "service", "pod_ip"})
WEEKDAYS: tuple[str, ...] = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_METRIC_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_SLACK_PRINCIPAL = re.compile(r"[UWS][A-Z0-9]{2,}")
_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,}")
_SLACK_CHANNEL = re.compile(r"[CG][A-Z0-9]{2,}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PD_ESCALATION_POLICY = re.compile(r"P[A-Z0-9]{2,}")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


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
TrafficSteps = Annotated[list[int], Field(min_length=1), AfterValidator(_check_steps)]
ImageName = Annotated[str, AfterValidator(_check_image)]
ArtifactUrl = Annotated[str, AfterValidator(_check_artifact)]
HostName = Annotated[str, AfterValidator(_check_host)]
# A command as an argument list (never a shell string), each argument with smoke placeholders.
CommandLine = Annotated[
    list[Annotated[NonEmptyStr, AfterValidator(_check_argument)]],
    BeforeValidator(_check_command),
    Field(min_length=1),
]


def problem(field: str, message: str) -> PydanticCustomError:
    """A model-level problem that belongs to one of the model's keys (`field`)."""
    return PydanticCustomError("opsbot", message, {"field": field})


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def check_escalation_policy(policy: str | None) -> None:
    """A model's `escalation_policy`, when given, must be a PagerDuty escalation policy id."""
    if policy is not None and not _PD_ESCALATION_POLICY.fullmatch(policy):
        raise problem(
            "escalation_policy", f"{policy!r} is not a PagerDuty escalation policy id (P…)"
        )
