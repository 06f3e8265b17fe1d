"""PrometheusSource against a real Prometheus scraping a test-controlled exporter every second."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from aiohttp import web

from bot.catalog import MetricsSource
from bot.metrics import MetricsUnavailable, Series, by_label
from bot.metrics.prometheus import PrometheusSource
from bot.plugins import make_source
from tests.fakes.prometheus import (
    Exporter,
    prometheus_missing,
    running_exporter,
    running_prometheus,
    wait_for,
)

# One Prometheus for the module (it takes a second or two to start): tests share its event loop.
pytestmark = pytest.mark.asyncio(loop_scope="module")

ERROR_RATIO = (
    'sum by (service) (rate(http_requests_total{code=~"5.."}[15s]))'
    " / sum by (service) (rate(http_requests_total[15s]))"
)
Handler = Callable[[web.Request], Awaitable[web.Response]]

# Absolute rates use a window shorter than the history the fixture waits for.
REQUEST_RATE = 'sum(rate(http_requests_total{{service="{service}"}}[5s]))'
HISTORY_SCRAPES = 7
P99_LATENCY = (
    "histogram_quantile(0.99,"
    " sum by (service, le) (rate(http_request_duration_seconds_bucket[15s])))"
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def prometheus_url() -> AsyncIterator[str]:
    exporter = Exporter()
    exporter.set_traffic("checkout", rate=50, error_ratio=0.10, latency=0.3)
    exporter.set_traffic("payments", rate=20, error_ratio=0.0, latency=0.03)
    if missing := prometheus_missing():
        pytest.fail(missing, pytrace=False)  # a failure, never a skip: CI must have Prometheus
    async with (
        running_exporter(exporter),
        running_prometheus([exporter.target], scrape_interval="1s") as prometheus,
    ):
        await gather_history(prometheus.url)
        yield prometheus.url


async def gather_history(url: str) -> None:
    """Wait for HISTORY_SCRAPES scrapes: rate() over a window the series is younger than
    extrapolates only part of the way, so absolute rates are right once the window is full."""
    async with PrometheusSource(url) as source:

        async def enough() -> bool:
            answer = await source.instant("count_over_time(up[1m])")
            return bool(answer) and answer[0].samples[0].value >= HISTORY_SCRAPES

        await wait_for(enough, timeout=20, what=f"{HISTORY_SCRAPES} scrapes of the exporter")


@pytest_asyncio.fixture(loop_scope="module")
async def source(prometheus_url: str) -> AsyncIterator[PrometheusSource]:
    async with PrometheusSource(prometheus_url) as source:
        yield source


async def answer_for_every_service(
    source: PrometheusSource, query: str, services: set[str]
) -> dict[str, Series]:
    """Poll `query` until it answers for all `services` (rate() needs two scrapes first)."""

    async def answered() -> dict[str, Series] | None:
        indexed = by_label(await source.instant(query))
        return indexed if services <= indexed.keys() else None

    return await wait_for(answered, timeout=20, what=f"{query} for {sorted(services)}")


async def test_error_ratio_by_service_comes_from_one_instant_query(
    source: PrometheusSource,
) -> None:
    by_service = await answer_for_every_service(source, ERROR_RATIO, {"checkout", "payments"})

    checkout, payments = by_service["checkout"], by_service["payments"]
    assert len(checkout.samples) == 1
    assert checkout.samples[0].value == pytest.approx(0.10, abs=0.01)
    assert payments.samples[0].value == 0.0
    assert checkout.labels == {"service": "checkout"}
    age = datetime.now(UTC) - checkout.samples[0].at
    assert timedelta(0) <= age < timedelta(seconds=5)


async def test_instant_query_at_a_past_time_is_evaluated_then(source: PrometheusSource) -> None:
    await answer_for_every_service(source, ERROR_RATIO, {"checkout"})
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)

    [series] = await source.instant(REQUEST_RATE.format(service="checkout"), at=at)

    assert series.samples[0].at == at
    assert series.samples[0].value == pytest.approx(50, rel=0.05)


async def test_range_query_returns_a_sample_every_step(source: PrometheusSource) -> None:
    await answer_for_every_service(source, ERROR_RATIO, {"checkout", "payments"})
    end = datetime.now(UTC)

    series = await source.range(
        ERROR_RATIO, start=end - timedelta(seconds=4), end=end, step=timedelta(seconds=1)
    )

    checkout = by_label(series)["checkout"]
    assert len(checkout.samples) >= 3
    steps = {b.at - a.at for a, b in zip(checkout.samples, checkout.samples[1:], strict=False)}
    assert steps == {timedelta(seconds=1)}
    assert all(sample.value == pytest.approx(0.10, abs=0.01) for sample in checkout.samples)


async def test_range_many_answers_every_query_by_its_key(source: PrometheusSource) -> None:
    await answer_for_every_service(source, ERROR_RATIO, {"checkout", "payments"})
    end = datetime.now(UTC)
    queries = {
        service: REQUEST_RATE.format(service=service) for service in ("checkout", "payments")
    }

    answers = await source.range_many(
        queries, start=end - timedelta(seconds=3), end=end, step=timedelta(seconds=1)
    )

    assert answers.keys() == {"checkout", "payments"}
    [checkout], [payments] = answers["checkout"], answers["payments"]
    assert by_label([checkout]).keys() == {""}  # one unlabelled series per service
    assert checkout.samples[-1].value == pytest.approx(50, rel=0.05)
    assert payments.samples[-1].value == pytest.approx(20, rel=0.05)


async def test_p99_latency_from_the_histogram(source: PrometheusSource) -> None:
    by_service = await answer_for_every_service(source, P99_LATENCY, {"checkout", "payments"})

    # Every request of checkout takes 0.3 s: its p99 lies in the bucket (0.25, 0.5].
    assert 0.25 < by_service["checkout"].samples[0].value <= 0.5
    assert 0.025 < by_service["payments"].samples[0].value <= 0.05


async def test_nan_samples_are_dropped_and_infinity_kept(source: PrometheusSource) -> None:
    assert await source.instant("vector(0) / 0") == []
    [infinite] = await source.instant("vector(1) / 0")
    assert infinite.samples[0].value == float("inf")
    [scalar] = await source.instant("scalar(vector(2))")
    assert scalar.samples[0].value == 2.0


async def test_bad_promql_reports_prometheus_error(source: PrometheusSource) -> None:
    with pytest.raises(MetricsUnavailable) as caught:
        await source.instant("sum(rate(http_requests_total[5m])")

    message = str(caught.value)
    assert "bad_data" in message
    assert "parse error" in message
    assert source.url in message
    assert "\n" not in message


async def test_string_result_is_not_a_number(source: PrometheusSource) -> None:
    with pytest.raises(MetricsUnavailable, match="answered a string"):
        await source.instant('"hello"')


async def test_unreachable_prometheus_is_unavailable_after_retries() -> None:
    # A port that was free a moment ago: nothing listens there.
    async with running_exporter() as exporter:
        url = f"http://{exporter.target}"
    async with PrometheusSource(url, backoff=0.01) as source:
        with pytest.raises(MetricsUnavailable) as caught:
            await source.instant("up")

    message = str(caught.value)
    assert message.startswith(f"Prometheus {url} is unreachable:")
    assert "after 3 attempts" in message


async def test_make_source_builds_prometheus_from_the_catalog(prometheus_url: str) -> None:
    async with make_source(
        MetricsSource(source="prometheus", url=prometheus_url), env={}
    ) as source:
        assert isinstance(source, PrometheusSource)
        [up] = await source.instant("up")
        assert up.samples[0].value == 1.0


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    """A one-route HTTP server standing where Prometheus should be (a proxy, a hung server)."""
    app = web.Application()
    app.router.add_get("/api/v1/query", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_proxy_error_page_is_reported_with_its_status() -> None:
    async def bad_gateway(request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html><h1>502 Bad Gateway</h1>\n</html>")

    async with serving(bad_gateway) as url, PrometheusSource(url) as source:
        with pytest.raises(MetricsUnavailable) as caught:
            await source.instant("up")

    assert str(caught.value) == (
        f"Prometheus {url}: query 'up' failed: HTTP 502 Bad Gateway:"
        " <html><h1>502 Bad Gateway</h1> </html>"
    )


async def test_slow_prometheus_times_out_without_retrying() -> None:
    calls = 0

    async def hang(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        await asyncio.sleep(1)  # longer than the timeout; short, as shutdown waits for it
        return web.json_response({"status": "success", "data": {"resultType": "vector"}})

    async with serving(hang) as url, PrometheusSource(url, timeout=0.2) as source:
        with pytest.raises(MetricsUnavailable, match=r"did not answer within 0\.2s"):
            await source.instant("up")

    assert calls == 1
