"""A Prometheus HTTP API stand-in whose answers a test (or a benchmark) scripts exactly.

The real Prometheus (tests/fakes/prometheus.py) is the reference; this stand-in is for what it
cannot do quickly: answer for 10,000 services, or give a value that changes at an exact instant.
It serves `GET /api/v1/query_range` and `/api/v1/query` in Prometheus's JSON format, evaluating
each query it knows at every step: a query is registered with the services it answers for and a
function `value(service, t) -> float | None` (None: no sample at t). An unknown query answers
`bad_data` as Prometheus does for a query it cannot parse; `fail_with(status)` makes every request
fail until cleared. Every request is recorded (`requests`), so a test sees what reached it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

__all__ = ["PrometheusApi", "QueryRequest", "Timeline", "running_prometheus_api"]

ValueAt = Callable[[str, float], float | None]


@dataclass
class QueryRequest:
    path: str
    query: str
    start: float | None
    end: float | None
    step: float | None


@dataclass
class Timeline:
    """Per service, values that change at given instants: `set(service, value, since=t)`."""

    changes: dict[str, list[tuple[float, float | None]]] = field(default_factory=dict)

    def set(self, service: str, value: float | None, *, since: float) -> None:
        points = self.changes.setdefault(service, [])
        points.append((since, value))
        points.sort(key=lambda point: point[0])

    def __call__(self, service: str, t: float) -> float | None:
        current: float | None = None
        for since, value in self.changes.get(service, []):
            if since > t:
                break
            current = value
        return current


@dataclass
class _Query:
    services: list[str]
    value: ValueAt
    label: str
    # `{"service": "checkout"}` per service, serialized once: answers for 10,000 services are
    # built at every poll of the benchmark.
    metrics: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.metrics = [json.dumps({self.label: service}) for service in self.services]


class PrometheusApi:
    def __init__(self) -> None:
        self.queries: dict[str, _Query] = {}
        self.requests: list[QueryRequest] = []
        self.failure: int | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    def answer(
        self, query: str, services: Iterable[str], value: ValueAt, *, label: str = "service"
    ) -> None:
        """Answer `query` with one series per service (labelled `label`), valued by `value`."""
        self.queries[query] = _Query(list(services), value, label)

    def fail_with(self, status: int | None) -> None:
        """Answer every request with this HTTP status (503: Prometheus is down); None: recover."""
        self.failure = status

    async def _range(self, request: web.Request) -> web.StreamResponse:
        params = request.query
        query = params.get("query", "")
        start, end, step = (float(params[name]) for name in ("start", "end", "step"))
        self.requests.append(QueryRequest("query_range", query, start, end, step))
        if self.failure is not None:
            return web.Response(status=self.failure, text="service unavailable")
        known = self.queries.get(query)
        if known is None:
            return _error(f"1:1: parse error: unknown query {query!r}")
        count = int((end - start) // step) + 1
        times = [start + index * step for index in range(count)]
        parts = []
        stamps = [f"{t:.3f}" for t in times]
        for service, metric in zip(known.services, known.metrics, strict=True):
            values = []
            for t, stamp in zip(times, stamps, strict=True):
                value = known.value(service, t)
                if value is not None:
                    values.append(f'[{stamp},"{value!r}"]')
            if values:
                parts.append(f'{{"metric":{metric},"values":[{",".join(values)}]}}')
        body = (
            '{"status":"success","data":{"resultType":"matrix","result":[' + ",".join(parts) + "]}}"
        )
        return web.Response(text=body, content_type="application/json")

    async def _instant(self, request: web.Request) -> web.StreamResponse:
        params = request.query
        query = params.get("query", "")
        at = float(params.get("time", "0"))
        self.requests.append(QueryRequest("query", query, None, at, None))
        if self.failure is not None:
            return web.Response(status=self.failure, text="service unavailable")
        known = self.queries.get(query)
        if known is None:
            return _error(f"1:1: parse error: unknown query {query!r}")
        result = []
        for service in known.services:
            value = known.value(service, at)
            if value is not None:
                result.append({"metric": {known.label: service}, "value": [at, repr(value)]})
        return web.json_response(
            {"status": "success", "data": {"resultType": "vector", "result": result}}
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v1/query_range", self._range)
        app.router.add_get("/api/v1/query", self._instant)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _error(message: str) -> web.Response:
    return web.json_response(
        {"status": "error", "errorType": "bad_data", "error": message}, status=400
    )


@asynccontextmanager
async def running_prometheus_api() -> AsyncIterator[PrometheusApi]:
    api = PrometheusApi()
    await api.start()
    try:
        yield api
    finally:
        await api.stop()
