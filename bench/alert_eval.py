"""What one alert poll costs with 10,000 services × 5 rules, and how fast a breach reaches Slack.

A Prometheus-API stand-in (tests/fakes/prometheus_api.py, aiohttp, in its own process so the bot
side has a core to itself) answers `query_range` and `query` for five `sum by (service) (…)`
queries, one series per service. opsbot's `Alerting` runs in this process against a SQLite
database and a Slack stand-in, polled on the scheduler's rhythm. After some quiet polls one
service's error rate jumps above the critical threshold (t0); the script measures until that
alert's message reaches Slack (t1). It prints, per steady poll, the time, the queries Prometheus
received and the RSS, and t1 − t0 against the goal: `for` + one poll interval + 1 s.

    .venv/bin/python bench/alert_eval.py [--services 10000] [--interval 5s] [--polls 8]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.alerts.service import Alerting  # noqa: E402
from bot.catalog import load_catalog, parse_duration  # noqa: E402
from bot.console.standin import Message, SlackStandIn  # noqa: E402
from bot.db.session import Database  # noqa: E402
from bot.events import EventBus  # noqa: E402
from bot.slack.notifier import SlackNotifier  # noqa: E402

METRICS = {
    # metric: (query, healthy value, rule)
    "error_rate": (
        'sum by (service) (rate(http_requests_total{code=~"5.."}[1m]))'
        " / sum by (service) (rate(http_requests_total[1m]))",
        0.001,
        "{name: error-rate-critical, metric: error_rate, op: '>', threshold: 0.05, for: 10s,"
        " severity: critical}",
    ),
    "latency_p99": (
        "histogram_quantile(0.99, sum by (service, le)"
        " (rate(http_request_duration_seconds_bucket[1m])))",
        0.2,
        "{name: latency-p99-warning, metric: latency_p99, op: '>', threshold: 2, for: 20s,"
        " severity: warning}",
    ),
    "cpu": (
        'avg by (service) (rate(container_cpu_usage_seconds_total{container="app"}[1m]))',
        0.3,
        "{name: cpu-warning, metric: cpu, op: '>', threshold: 0.8, for: 30s, severity: warning}",
    ),
    "disk_free": (
        "min by (service) (node_filesystem_avail_bytes / node_filesystem_size_bytes)",
        0.6,
        "{name: disk-free-critical, metric: disk_free, op: '<', threshold: 0.1, for: 0s,"
        " severity: critical}",
    ),
    "saturation": (
        "max by (service) (queue_depth / queue_capacity)",
        0.1,
        "{name: saturation-warning, metric: saturation, op: '>', threshold: 0.9, for: 10s,"
        " severity: warning}",
    ),
}
HEALTHY = {query: healthy for query, healthy, _ in METRICS.values()}
ERROR_QUERY = METRICS["error_rate"][0]


def catalog_text(services: int, prometheus_url: str, interval: str) -> str:
    lines = [
        "slack: {channels: {deploys: C0DEPLOYS, alerts: C0ALERTS, incidents: C0INCIDENTS}}",
        "environments: [{name: prod}]",
        "services:",
    ]
    lines += [
        f"  - {{name: svc-{n:05d}, targets: {{prod: {{kind: compose, project: p, file: f.yml,"
        f" service: web}}}}}}"
        for n in range(services)
    ]
    lines += [f"metrics:\n  url: '{prometheus_url}'\n  poll_interval: {interval}\n  queries:"]
    lines += [f"    {metric}: '{query}'" for metric, (query, _, _) in METRICS.items()]
    lines += ["alerts:"] + [f"  - {rule}" for _, _, rule in METRICS.values()]
    return "\n".join(lines) + "\n"


def serve_prometheus(
    services: int, port: Synchronized, breach_at: Synchronized, requests: Synchronized
) -> None:
    """The Prometheus API stand-in, in a process of its own."""
    from aiohttp import web

    from tests.fakes.prometheus_api import PrometheusApi

    names = [f"svc-{n:05d}" for n in range(services)]
    victim = victim_of(services)

    def valued(query: str, healthy: float) -> Callable[[str, float], float]:
        def value(service: str, t: float) -> float:
            if query == ERROR_QUERY and service == victim and 0 < breach_at.value <= t:
                return 0.2
            return healthy

        return value

    async def main() -> None:
        api = PrometheusApi()
        for query, healthy in HEALTHY.items():
            api.answer(query, names, valued(query, healthy))

        Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

        def counted(handler: Handler) -> Handler:
            async def count(request: web.Request) -> web.StreamResponse:
                with requests.get_lock():
                    requests.value += 1
                return await handler(request)

            return count

        api._range = counted(api._range)  # type: ignore[method-assign]
        api._instant = counted(api._instant)  # type: ignore[method-assign]
        await api.start()
        port.value = int(api.url.rsplit(":", 1)[1])
        await asyncio.Event().wait()

    asyncio.run(main())


def victim_of(services: int) -> str:
    """The service whose error rate jumps: one in the middle of the catalog."""
    return f"svc-{services // 2:05d}"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run(services: int, interval_text: str, polls: int) -> None:
    interval = parse_duration(interval_text).total_seconds()
    port: Synchronized = multiprocessing.Value("i", 0)
    breach_at: Synchronized = multiprocessing.Value("d", 0.0)
    requests: Synchronized = multiprocessing.Value("i", 0)
    server = multiprocessing.Process(
        target=serve_prometheus, args=(services, port, breach_at, requests), daemon=True
    )
    server.start()
    while port.value == 0:  # noqa: ASYNC110 - another process sets it; no event to await
        await asyncio.sleep(0.05)
    workdir = Path(tempfile.mkdtemp(prefix="opsbot-alert-eval-"))
    path = workdir / "opsbot.yml"
    path.write_text(catalog_text(services, f"http://127.0.0.1:{port.value}", interval_text))
    loaded = time.perf_counter()
    catalog = load_catalog(path, {})
    print(f"catalog: {services} services loaded in {time.perf_counter() - loaded:.1f} s")

    slack = SlackStandIn()
    await slack.start()
    posted = asyncio.Event()
    posted_at: list[float] = []

    def watch(message: Message) -> None:
        if f"{victim_of(services)}: error-rate-critical" in str(message.blocks) and not posted_at:
            posted_at.append(time.monotonic())
            posted.set()

    slack.on_message = watch
    from bot.app import build_client
    from bot.settings import Settings

    client = build_client(
        Settings(slack_bot_token="xoxb-bench", slack_api_url=slack.api_url), "xoxb-bench"
    )
    database = Database(f"sqlite+aiosqlite:///{workdir / 'alerts.db'}")
    await database.upgrade()
    rss_before = rss_mb()
    alerting = Alerting(
        db=database, catalog=catalog, notifier=SlackNotifier(client), events=EventBus()
    )
    durations: list[float] = []
    queries: list[int] = []
    received: list[int] = []
    cpu: list[float] = []  # the bot's own CPU per poll (the stand-in runs in another process)
    rss: list[float] = []
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tick = 0
        breach_mono = 0.0
        first_poll = 0.0
        while True:
            await asyncio.sleep(max(0.0, start + tick * interval - loop.time()))
            before = requests.value
            cpu_before = time.process_time()
            report = await alerting.poll()
            cpu_used = time.process_time() - cpu_before
            tick += 1
            if tick == 1:
                first_poll = report.duration
                continue
            if tick <= polls + 1:
                durations.append(report.duration)
                cpu.append(cpu_used)
                queries.append(report.queries)
                received.append(requests.value - before)
                rss.append(rss_mb())
            if tick == polls + 1:
                # The breach: half a poll interval after this poll, as bad luck would have it.
                await asyncio.sleep(interval / 2)
                breach_mono = time.monotonic()
                breach_at.value = time.time()
            if breach_mono and posted.is_set():
                break
            if breach_mono and time.monotonic() - breach_mono > 120:
                raise TimeoutError("the breach never reached Slack")
    finally:
        await alerting.close()
        await client.session.close()  # type: ignore[union-attr]
        await slack.stop()
        await database.dispose()
        server.terminate()
    delay = posted_at[0] - breach_mono
    goal = 10 + interval + 1
    print(
        f"{services} services × {len(METRICS)} rules; poll interval {interval_text};"
        f" first poll (fills the {alerting.window.keep.total_seconds():.0f} s window):"
        f" {first_poll:.2f} s"
    )
    print(
        f"steady polls ({len(durations)}): median {statistics.median(durations):.3f} s,"
        f" max {max(durations):.3f} s; queries per poll {sorted(set(queries))},"
        f" received by Prometheus {sorted(set(received))};"
        f" bot CPU per poll median {statistics.median(cpu):.3f} s"
    )
    print(
        f"RSS: {rss_before:.0f} MB before the alert loop, {max(rss):.0f} MB after"
        f" {len(rss)} polls (bot, Slack stand-in and catalog; Prometheus stand-in not included)"
    )
    print(
        f"breach (error rate 0.1 % → 20 %, rule > 5 % for 10s) → Slack post: {delay:.2f} s"
        f" (goal ≤ {goal:.1f} s = for + one poll interval + 1 s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--interval", default="5s")
    parser.add_argument("--polls", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(run(args.services, args.interval, args.polls))


if __name__ == "__main__":
    main()
