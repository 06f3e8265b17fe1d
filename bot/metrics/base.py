"""The one interface every metrics source implements (Prometheus, CloudWatch), and its values.

A query answers with a list of `Series`: the labels that tell the series apart (PromQL labels,
CloudWatch dimensions) and their samples, oldest first. `instant` gives one sample per series,
`range` a sample every `step`. A source that cannot answer (unreachable, refused, a query error)
raises `MetricsUnavailable` with one line saying which source and why; rule evaluation treats that
as "no data" and says so, rather than as a value.

`range_many` asks several queries in as few requests as the source allows (CloudWatch: one
GetMetricData for up to 500 metrics; Prometheus: concurrent requests), so polling a rule costs
one round trip for every service at once.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self

__all__ = [
    "MetricSource",
    "MetricsUnavailable",
    "Sample",
    "Series",
    "by_label",
    "check_range",
    "utc",
]


@dataclass(frozen=True)
class Sample:
    at: datetime  # UTC, timezone-aware
    value: float  # never NaN (sources drop NaN samples); may be ±inf (e.g. x / 0)


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    samples: tuple[Sample, ...]

    @property
    def last(self) -> Sample | None:
        """The newest sample, or None for a series without samples."""
        return self.samples[-1] if self.samples else None


@dataclass(eq=False)
class MetricsUnavailable(Exception):
    """The source cannot answer. `str(error)` is one line: which source, which query, and why.

    From `range_many`/`instant_many`, `failures` maps each failed query's key to its reason and
    `results` holds the answers of the queries that did succeed, so one broken query does not
    blind the bot to every other service.
    """

    message: str
    failures: dict[str, str] = field(default_factory=dict)
    results: dict[str, list[Series]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class MetricSource(abc.ABC):
    """A place to ask for metric values. Implementations hold one connection pool; `close()` it."""

    name: str = "metrics"  # for messages: "Prometheus http://…", "CloudWatch eu-central-1"
    # True when `instant(at=t)` answers samples stamped exactly `t` (Prometheus evaluates the
    # query at t); CloudWatch answers at its datapoints' own times. The alert loop then fetches
    # only the one new point of each poll.
    instant_on_grid: bool = False

    @abc.abstractmethod
    async def instant(self, query: str, *, at: datetime | None = None) -> list[Series]:
        """The value of every series of `query` at `at` (default: now), one sample each."""

    @abc.abstractmethod
    async def range(
        self, query: str, *, start: datetime, end: datetime, step: timedelta
    ) -> list[Series]:
        """The values of `query` from `start` to `end`, one sample every `step`."""

    async def range_many(
        self, queries: Mapping[str, str], *, start: datetime, end: datetime, step: timedelta
    ) -> dict[str, list[Series]]:
        """`range` for several queries (key -> query) at once; answers by the same keys.

        The default asks concurrently; sources that can batch (CloudWatch) override it.
        Raises `MetricsUnavailable` naming the failed keys, with the successful answers attached.
        """
        return await _gather(
            self,
            {
                key: self.range(query, start=start, end=end, step=step)
                for key, query in queries.items()
            },
        )

    async def instant_many(
        self, queries: Mapping[str, str], *, at: datetime | None = None
    ) -> dict[str, list[Series]]:
        """`instant` for several queries (key -> query) at once; answers by the same keys."""
        return await _gather(
            self, {key: self.instant(query, at=at) for key, query in queries.items()}
        )

    async def close(self) -> None:  # noqa: B027 - a source without connections has nothing to do
        """Release connections; the source is not used afterwards."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


async def _gather(
    source: MetricSource, calls: Mapping[str, Awaitable[list[Series]]]
) -> dict[str, list[Series]]:
    keys = list(calls)
    answers = await asyncio.gather(*calls.values(), return_exceptions=True)
    results: dict[str, list[Series]] = {}
    failures: dict[str, str] = {}
    for key, answer in zip(keys, answers, strict=True):
        if isinstance(answer, MetricsUnavailable):
            failures[key] = str(answer)
        elif isinstance(answer, BaseException):
            raise answer
        else:
            results[key] = answer
    if failures:
        raise many_failed(source.name, failures, results, total=len(keys))
    return results


def many_failed(
    source_name: str,
    failures: dict[str, str],
    results: dict[str, list[Series]],
    *,
    total: int,
) -> MetricsUnavailable:
    """The error for a batch in which some queries failed: the first reason, and how many."""
    first_key, first_reason = next(iter(failures.items()))
    others = len(failures) - 1
    more = f" (and {others} more of {total} queries)" if others else ""
    return MetricsUnavailable(
        f"{source_name}: query {first_key!r} failed{more}: {first_reason}",
        failures=failures,
        results=results,
    )


def utc(moment: datetime) -> datetime:
    """`moment` as an aware UTC datetime; a naive one is refused (its zone would be a guess)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} has no timezone: pass an aware datetime (UTC)")
    return moment.astimezone(UTC)


def check_range(start: datetime, end: datetime, step: timedelta) -> tuple[datetime, datetime]:
    """Validate a range query's bounds; (start, end) in UTC."""
    start, end = utc(start), utc(end)
    if end <= start:
        raise ValueError(f"range end {end.isoformat()} is not after start {start.isoformat()}")
    if step <= timedelta(0):
        raise ValueError(f"range step must be positive, got {step}")
    return start, end


def by_label(series: list[Series], label: str = "service") -> dict[str, Series]:
    """Index the answer of one query for every service (`sum by (service) (…)`) by that label.

    A series without the label is filed under "" (a query about one service answers with one
    unlabelled series). Two series under the same key mean the query did not aggregate by
    `label`: that is a mistake in the query, reported as ValueError rather than guessed at.
    """
    indexed: dict[str, Series] = {}
    for one in series:
        key = one.labels.get(label, "")
        if key in indexed:
            where = f"{label}={key!r}" if key else f"without a {label!r} label"
            raise ValueError(
                f"the query answered more than one series {where}: aggregate it with"
                f" `by ({label})` (or narrow it to one series per {label})"
            )
        indexed[key] = one
    return indexed
