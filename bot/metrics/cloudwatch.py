"""CloudWatch as a metrics source: one GetMetricData call answers many queries at once.

A query names one metric statistic, or the ratio of two (see docs/metrics.md):

    AWS/Lambda:Errors{FunctionName=thumbnails}:Sum:60
    AWS/Lambda:Errors{FunctionName=thumbnails}:Sum:60 / AWS/Lambda:Invocations{FunctionName=x}:Sum

`parse_query` is the whole grammar; it raises ValueError with the reason and the expected form.
A ratio is divided here, per timestamp present on both sides, rather than with CloudWatch metric
math, so it behaves the same against moto (whose metric math is only trivial) and real AWS.

`range_many` puts every distinct metric statistic of all its queries (a denominator shared by
several ratios is asked for once) into one GetMetricData request, 500 per request at most.
boto3 is synchronous, so the request runs in a worker thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ProfileNotFound

from bot.catalog import parse_duration
from bot.metrics.base import (
    MetricSource,
    MetricsUnavailable,
    Sample,
    Series,
    check_range,
    many_failed,
    utc,
)

__all__ = ["CloudWatchQuery", "CloudWatchSource", "MetricStat", "parse_query"]

# GetMetricData takes at most 500 MetricDataQueries per request.
MAX_QUERIES_PER_CALL = 500
# An instant query looks this many periods back for the latest datapoint.
INSTANT_PERIODS = 5
# The period of an instant query that does not name one.
DEFAULT_PERIOD = 60

SYNTAX = "Namespace:MetricName{Dim=Value,…}:Stat[:period]"
EXAMPLE = "AWS/Lambda:Errors{FunctionName=thumbnails}:Sum:60"
_BASIC_STATS = {
    stat.lower(): stat for stat in ("Sum", "Average", "Minimum", "Maximum", "SampleCount", "IQM")
}
# Extended statistics: percentiles (p99, p99.9) and trimmed/winsorized forms (tm90, tm(10%:90%)).
_EXTENDED_STAT = re.compile(r"(?:p|tm|wm|tc|ts)(?:100|\d{1,2}(?:\.\d+)?)|(?:tm|wm|tc|ts|pr)\(.+\)")
_NAME = re.compile(r"[^\s:{}=,]+")  # no spaces, ':', braces, '=' or ','
_HIGH_RESOLUTION_PERIODS = (1, 5, 10, 30)
_RATIO = re.compile(r"\s+/\s+")


@dataclass(frozen=True)
class MetricStat:
    """One metric statistic: what a single MetricStat of GetMetricData asks for."""

    namespace: str
    metric: str
    dimensions: tuple[tuple[str, str], ...]  # sorted by name
    stat: str
    period: int | None  # seconds; None: the range's step (or 60 s for an instant query)

    def __str__(self) -> str:
        dimensions = ",".join(f"{name}={value}" for name, value in self.dimensions)
        text = f"{self.namespace}:{self.metric}{{{dimensions}}}:{self.stat}"
        return text if self.period is None else f"{text}:{self.period}"

    def request(self, period: int) -> dict[str, Any]:
        return {
            "Metric": {
                "Namespace": self.namespace,
                "MetricName": self.metric,
                "Dimensions": [{"Name": name, "Value": value} for name, value in self.dimensions],
            },
            "Period": period,
            "Stat": self.stat,
        }


@dataclass(frozen=True)
class CloudWatchQuery:
    """A parsed query: one statistic, or `numerator / denominator` divided per timestamp."""

    numerator: MetricStat
    denominator: MetricStat | None = None

    @property
    def terms(self) -> tuple[MetricStat, ...]:
        return (self.numerator,) if self.denominator is None else (self.numerator, self.denominator)

    @property
    def labels(self) -> dict[str, str]:
        """The series' labels: the dimensions (of a ratio: those both sides agree on)."""
        labels = dict(self.numerator.dimensions)
        if self.denominator is not None:
            other = dict(self.denominator.dimensions)
            labels = {name: value for name, value in labels.items() if other.get(name) == value}
        return labels


def parse_query(text: str) -> CloudWatchQuery:
    """Parse `Namespace:MetricName{Dim=Value,…}:Stat[:period]`, or two of them joined by ` / `."""
    parts = _RATIO.split(text.strip())
    if not parts[0]:
        raise _bad(text, "it is empty")
    if len(parts) > 2:
        raise _bad(text, "only one ratio is supported (A / B)")
    terms = [_parse_term(text, part) for part in parts]
    return CloudWatchQuery(numerator=terms[0], denominator=terms[1] if len(terms) > 1 else None)


def _bad(text: str, reason: str) -> ValueError:
    return ValueError(
        f"bad CloudWatch query {text.strip()!r}: {reason}; write {SYNTAX}, e.g. {EXAMPLE},"
        " or two of them joined by ' / '"
    )


def _parse_term(text: str, term: str) -> MetricStat:
    if term == "/" or term.startswith("/ ") or term.endswith(" /"):
        raise _bad(text, "a ratio needs a metric on both sides of ' / '")
    dimensions: dict[str, str] = {}
    if "{" in term or "}" in term:
        head, brace, rest = term.partition("{")
        inside, closing, tail = rest.partition("}")
        if not brace or not closing or "{" in inside or "{" in tail or "}" in tail:
            raise _bad(text, f"unbalanced braces in {term!r}")
        names = head.split(":")
        items = [piece.strip() for piece in inside.split(",")] if inside.strip() else []
        for item in items:
            name, equals, value = item.partition("=")
            name, value = name.strip(), value.strip()
            if not equals or not name or not value:
                raise _bad(text, f"bad dimension {item!r} (write Name=Value)")
            if name in dimensions:
                raise _bad(text, f"dimension {name!r} appears twice")
            dimensions[name] = value
        if tail and not tail.startswith(":"):
            raise _bad(text, f"expected ':' and the statistic after '}}', got {tail!r}")
        rest_parts = tail[1:].split(":") if tail else []
    else:
        all_parts = term.split(":")
        names, rest_parts = all_parts[:2], all_parts[2:]
    if len(names) != 2 or not all(_NAME.fullmatch(name) for name in names):
        raise _bad(text, f"{term!r} does not start with Namespace:MetricName")
    if not rest_parts and _is_stat(names[-1]):
        raise _bad(text, f"{term!r} has no namespace (e.g. AWS/Lambda:Errors:Sum)")
    if not rest_parts or not rest_parts[0]:
        raise _bad(text, f"{term!r} has no statistic (add :Sum, :Average, :Maximum, :p99, …)")
    if len(rest_parts) > 2:
        raise _bad(text, f"{term!r} has too many ':' parts")
    stat = _parse_stat(text, rest_parts[0])
    period = _parse_period(text, rest_parts[1]) if len(rest_parts) == 2 else None
    namespace, metric = names
    return MetricStat(
        namespace=namespace,
        metric=metric,
        dimensions=tuple(sorted(dimensions.items())),
        stat=stat,
        period=period,
    )


def _is_stat(word: str) -> bool:
    return word.lower() in _BASIC_STATS or _EXTENDED_STAT.fullmatch(word) is not None


def _parse_stat(text: str, word: str) -> str:
    basic = _BASIC_STATS.get(word.lower())
    if basic is not None:
        return basic
    if _EXTENDED_STAT.fullmatch(word):
        return word
    raise _bad(
        text,
        f"unknown statistic {word!r} (use Sum, Average, Minimum, Maximum, SampleCount"
        " or a percentile such as p99)",
    )


def _parse_period(text: str, word: str) -> int:
    try:
        seconds = int(word) if word.isdigit() else int(parse_duration(word).total_seconds())
    except ValueError:
        raise _bad(text, f"bad period {word!r} (seconds such as 60, or 1m, 5m)") from None
    if seconds not in _HIGH_RESOLUTION_PERIODS and (seconds <= 0 or seconds % 60):
        raise _bad(
            text,
            f"period {word!r} is not one CloudWatch accepts (1, 5, 10, 30 seconds"
            " or a multiple of 60)",
        )
    return seconds


def period_for(step: timedelta) -> int:
    """The CloudWatch period closest to `step` from above: 1, 5, 10, 30 s or whole minutes."""
    seconds = math.ceil(step.total_seconds())
    for period in _HIGH_RESOLUTION_PERIODS:
        if seconds <= period:
            return period
    return math.ceil(seconds / 60) * 60


class CloudWatchSource(MetricSource):
    """CloudWatch in one region; the endpoint and credentials come from the given environment."""

    def __init__(
        self,
        *,
        region: str | None,
        env: Mapping[str, str],
        max_attempts: int = 3,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
    ) -> None:
        region = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if not region:
            raise ValueError(
                "CloudWatch metrics need a region: set metrics.region in the catalog or AWS_REGION"
            )
        self.region = region
        self.endpoint_url = env.get("AWS_ENDPOINT_URL_CLOUDWATCH") or env.get("AWS_ENDPOINT_URL")
        self.name = f"CloudWatch {region}" + (
            f" at {self.endpoint_url}" if self.endpoint_url else ""
        )
        self._env = dict(env)
        # A poll repeats soon anyway: fail within seconds rather than botocore's 60 s reads.
        self._config = Config(
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        self._client: Any = None
        self._client_lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The boto3 CloudWatch client, built on first use (slow: call it from a worker thread)."""
        with self._client_lock:
            if self._client is None:
                env = self._env
                try:
                    session = boto3.session.Session(profile_name=env.get("AWS_PROFILE"))
                except ProfileNotFound as err:
                    raise MetricsUnavailable(f"{self.name}: {err}") from err
                self._client = session.client(
                    "cloudwatch",
                    region_name=self.region,
                    endpoint_url=self.endpoint_url,
                    aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
                    aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
                    aws_session_token=env.get("AWS_SESSION_TOKEN"),
                    config=self._config,
                )
            return self._client

    async def close(self) -> None:
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def instant(self, query: str, *, at: datetime | None = None) -> list[Series]:
        return (await self.instant_many({"": query}, at=at))[""]

    async def range(
        self, query: str, *, start: datetime, end: datetime, step: timedelta
    ) -> list[Series]:
        return (await self.range_many({"": query}, start=start, end=end, step=step))[""]

    async def range_many(
        self, queries: Mapping[str, str], *, start: datetime, end: datetime, step: timedelta
    ) -> dict[str, list[Series]]:
        start, end = check_range(start, end, step)
        parsed = {key: parse_query(query) for key, query in queries.items()}
        resolved = {key: _with_period(query, period_for(step)) for key, query in parsed.items()}
        return await self._ask(resolved, start=start, end=end)

    async def instant_many(
        self, queries: Mapping[str, str], *, at: datetime | None = None
    ) -> dict[str, list[Series]]:
        """The latest datapoint of each query within its last few periods (at most one each)."""
        end = utc(at) if at is not None else datetime.now(UTC)
        parsed = {key: parse_query(query) for key, query in queries.items()}
        resolved = {key: _with_period(query, DEFAULT_PERIOD) for key, query in parsed.items()}
        longest = max(
            (term.period or DEFAULT_PERIOD for q in resolved.values() for term in q.terms),
            default=DEFAULT_PERIOD,
        )
        start = end - timedelta(seconds=longest * INSTANT_PERIODS)
        answers = await self._ask(resolved, start=start, end=end)
        return {
            key: [
                Series(labels=one.labels, samples=one.samples[-1:]) for one in series if one.samples
            ]
            for key, series in answers.items()
        }

    async def _ask(
        self, queries: Mapping[str, CloudWatchQuery], *, start: datetime, end: datetime
    ) -> dict[str, list[Series]]:
        stats = list(dict.fromkeys(term for query in queries.values() for term in query.terms))
        if not stats:
            return {}
        # CloudWatch rounds a recent StartTime down to the whole minute (to the period, for
        # the high-resolution 1-30 s ones) and buckets from there; moto buckets from StartTime
        # as given. Rounding it ourselves makes both answer with the same timestamps.
        rounding = min(max(stat.period or DEFAULT_PERIOD for stat in stats), 60)
        aligned = datetime.fromtimestamp(start.timestamp() // rounding * rounding, tz=UTC)
        data, errors = await asyncio.to_thread(self._fetch, stats, aligned, end)
        results: dict[str, list[Series]] = {}
        failures: dict[str, str] = {}
        for key, query in queries.items():
            broken = [errors[term] for term in query.terms if term in errors]
            if broken:
                failures[key] = broken[0]
                continue
            samples = _combine(query, data)
            results[key] = [Series(labels=query.labels, samples=samples)] if samples else []
        if failures:
            raise many_failed(self.name, failures, results, total=len(queries))
        return results

    def _fetch(
        self, stats: list[MetricStat], start: datetime, end: datetime
    ) -> tuple[dict[MetricStat, dict[datetime, float]], dict[MetricStat, str]]:
        """GetMetricData for all statistics, 500 per request: (datapoints, errors) by statistic."""
        ids = {f"m{index}": stat for index, stat in enumerate(stats)}
        data: dict[MetricStat, dict[datetime, float]] = {stat: {} for stat in stats}
        errors: dict[MetricStat, str] = {}
        names = list(ids)
        for first in range(0, len(names), MAX_QUERIES_PER_CALL):
            chunk = names[first : first + MAX_QUERIES_PER_CALL]
            request: dict[str, Any] = {
                "MetricDataQueries": [
                    {"Id": name, "MetricStat": ids[name].request(ids[name].period or 0)}
                    for name in chunk
                ],
                "StartTime": start,
                "EndTime": end,
                "ScanBy": "TimestampAscending",
            }
            while True:  # pages of one request (NextToken) when there are many datapoints
                answer = self._call(request)
                for result in answer.get("MetricDataResults", []):
                    stat = ids[result["Id"]]
                    status = result.get("StatusCode", "Complete")
                    if status not in ("Complete", "PartialData"):
                        messages = "; ".join(m.get("Value", "") for m in result.get("Messages", []))
                        errors[stat] = f"{stat}: {status}" + (f": {messages}" if messages else "")
                    for at, value in zip(result["Timestamps"], result["Values"], strict=True):
                        data[stat][at.astimezone(UTC)] = float(value)
                token = answer.get("NextToken")
                if not token:
                    break
                request["NextToken"] = token
        return data, errors

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.client.get_metric_data(**request)
        except ClientError as err:
            error = err.response.get("Error", {})
            raise MetricsUnavailable(
                f"{self.name}: GetMetricData failed: {error.get('Code', 'error')}:"
                f" {' '.join(str(error.get('Message', err)).split())}"
            ) from err
        except NoCredentialsError as err:
            raise MetricsUnavailable(
                f"{self.name}: no AWS credentials (set AWS_ACCESS_KEY_ID and"
                " AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
            ) from err
        except BotoCoreError as err:  # unreachable endpoint, timeouts, DNS
            raise MetricsUnavailable(
                f"{self.name} is unreachable: {' '.join(str(err).split())}"
            ) from err


def _with_period(query: CloudWatchQuery, period: int) -> CloudWatchQuery:
    """The query with `period` filled in where it names none."""
    terms = [term if term.period else replace(term, period=period) for term in query.terms]
    return CloudWatchQuery(numerator=terms[0], denominator=terms[1] if len(terms) > 1 else None)


def _combine(
    query: CloudWatchQuery, data: Mapping[MetricStat, Mapping[datetime, float]]
) -> tuple[Sample, ...]:
    numerator = data[query.numerator]
    if query.denominator is None:
        return tuple(Sample(at=at, value=value) for at, value in sorted(numerator.items()))
    denominator = data[query.denominator]
    # Only where both sides have a datapoint, and never x / 0: "no data" rather than a guess.
    return tuple(
        Sample(at=at, value=numerator[at] / denominator[at])
        for at in sorted(numerator.keys() & denominator.keys())
        if denominator[at] != 0
    )
