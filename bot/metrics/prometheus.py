"""Prometheus as a metrics source: PromQL over its HTTP API (`/api/v1/query`, `…/query_range`).

Values arrive as strings ("0.1", "NaN", "+Inf"); NaN samples (0/0, a quantile of no data) are
dropped, infinities kept. An error answer (`status: error`, HTTP 4xx/5xx) becomes
`MetricsUnavailable` carrying Prometheus's own text, e.g. `bad_data: 1:14: parse error: …`.
Connection failures (refused, reset, DNS) are retried twice with a short backoff; a timeout is
not retried, because a slow Prometheus only gets slower when asked the same heavy query again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from bot.metrics.base import MetricSource, MetricsUnavailable, Sample, Series, check_range, utc

__all__ = ["PrometheusSource"]

log = logging.getLogger(__name__)

# How much of a query and of a non-JSON error body go into a one-line message.
_QUERY_IN_MESSAGE = 120
_BODY_IN_MESSAGE = 200


class PrometheusSource(MetricSource):
    """One Prometheus server; one aiohttp session (connection pool) for all its queries."""

    instant_on_grid = True

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.25,
        max_concurrency: int = 8,
    ) -> None:
        self.url = url.rstrip("/")
        self.name = f"Prometheus {self.url}"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retries = retries
        self._backoff = backoff
        # range_many fans out; a bound keeps a big catalog from queueing hundreds of requests.
        self._max_concurrency = max_concurrency
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None

    async def instant(self, query: str, *, at: datetime | None = None) -> list[Series]:
        params = {"query": query}
        if at is not None:
            params["time"] = _unix(at)
        data = await self._get("/api/v1/query", params, query)
        return _series(data, query, source=self.name)

    async def range(
        self, query: str, *, start: datetime, end: datetime, step: timedelta
    ) -> list[Series]:
        start, end = check_range(start, end, step)
        params = {
            "query": query,
            "start": _unix(start),
            "end": _unix(end),
            "step": f"{step.total_seconds():g}",
        }
        data = await self._get("/api/v1/query_range", params, query)
        return _series(data, query, source=self.name)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- HTTP -------------------------------------------------------------------------------

    def _client(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        # Built on first use: a ClientSession belongs to the running event loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, headers={"Accept": "application/json"}
            )
            self._slots = asyncio.Semaphore(self._max_concurrency)
        assert self._slots is not None
        return self._session, self._slots

    async def _get(self, path: str, params: Mapping[str, str], query: str) -> dict[str, Any]:
        session, slots = self._client()
        attempts = self._retries + 1
        for attempt in range(1, attempts + 1):
            try:
                async with slots, session.get(self.url + path, params=params) as response:
                    body = await response.read()
                    return self._decode(response.status, response.reason, body, query)
            except TimeoutError as err:  # first: aiohttp's timeouts are connection errors too
                raise MetricsUnavailable(
                    f"{self.name} did not answer within {self._timeout.total:g}s"
                    f" (query {_short(query)})"
                ) from err
            except aiohttp.ClientConnectionError as err:
                reason = _one_line(str(err) or type(err).__name__)
                if attempt == attempts:
                    raise MetricsUnavailable(
                        f"{self.name} is unreachable: {reason} (after {attempts} attempts)"
                    ) from err
                log.info("%s: %s; retry %d of %d", self.name, reason, attempt, attempts - 1)
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
            except aiohttp.ClientError as err:  # e.g. a malformed URL or answer: not worth a retry
                raise MetricsUnavailable(
                    f"{self.name}: request failed: {_one_line(str(err) or type(err).__name__)}"
                ) from err
        raise AssertionError("unreachable")  # the loop returns or raises

    def _decode(self, status: int, reason: str | None, body: bytes, query: str) -> dict[str, Any]:
        """The `data` of a successful answer; anything else as MetricsUnavailable."""
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if isinstance(answer, dict) and answer.get("status") == "error":
            # Prometheus explains itself: errorType bad_data (a parse error), execution, timeout…
            error_type = answer.get("errorType") or f"HTTP {status}"
            raise MetricsUnavailable(
                f"{self.name}: query {_short(query)} failed:"
                f" {error_type}: {_one_line(str(answer.get('error', '')))}"
            )
        if status != 200:
            text = _one_line(body.decode("utf-8", "replace"))[:_BODY_IN_MESSAGE]
            raise MetricsUnavailable(
                f"{self.name}: query {_short(query)} failed: HTTP {status} {reason or ''}".rstrip()
                + (f": {text}" if text else "")
            )
        if not (isinstance(answer, dict) and answer.get("status") == "success"):
            raise MetricsUnavailable(
                f"{self.name}: the answer to {_short(query)} is not Prometheus API JSON"
            )
        data = answer.get("data")
        if not isinstance(data, dict):
            raise MetricsUnavailable(f"{self.name}: the answer to {_short(query)} has no data")
        return data


def _series(data: Mapping[str, Any], query: str, *, source: str) -> list[Series]:
    """Series from `data` of any result type; NaN samples and series left empty are dropped."""
    result_type = data.get("resultType")
    result = data.get("result")
    if result_type == "scalar":
        entries: list[dict[str, Any]] = [{"metric": {}, "value": result}]
    elif result_type in ("vector", "matrix"):
        entries = result or []
    else:
        raise MetricsUnavailable(
            f"{source}: query {_short(query)} answered a {result_type}, not numbers"
        )
    found = []
    # Every series of a range answer shares the same few timestamps (one per step): convert each
    # once. With 10,000 series this halves the decoding time of an alert poll (bench/alert_eval).
    moments: dict[float, datetime] = {}
    for entry in entries:
        pairs = entry["values"] if "values" in entry else [entry.get("value")]
        samples = []
        for pair in pairs:
            if pair is None:
                continue
            timestamp, text = pair
            value = float(text)  # Prometheus writes "NaN", "+Inf", "-Inf": float() reads them
            if value != value:  # NaN: no value at all (0/0, a quantile without observations)
                continue
            at = moments.get(timestamp)
            if at is None:
                at = moments[timestamp] = datetime.fromtimestamp(float(timestamp), tz=UTC)
            samples.append(Sample(at=at, value=value))
        if samples:
            found.append(Series(labels=dict(entry.get("metric") or {}), samples=tuple(samples)))
    return found


def _unix(moment: datetime) -> str:
    return f"{utc(moment).timestamp():.3f}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _short(query: str) -> str:
    query = _one_line(query)
    if len(query) > _QUERY_IN_MESSAGE:
        query = query[: _QUERY_IN_MESSAGE - 1] + "…"
    return repr(query)
