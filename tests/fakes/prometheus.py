"""A real Prometheus for tests, and a tiny exporter for it to scrape whose numbers the test sets.

Prometheus itself is not faked: `running_prometheus` starts the Debian package's binary on a free
loopback port with its own config and storage in a temporary directory (never the system
service), waits until it is ready and has scraped every target, and stops it afterwards.

    exporter = Exporter()
    exporter.set_traffic("checkout", rate=50, error_ratio=0.1, latency=0.3)
    async with running_exporter(exporter), running_prometheus([exporter.target]) as prometheus:
        source = PrometheusSource(prometheus.url)

The exporter serves `/metrics` in the Prometheus text format: `http_requests_total{service,code}`
and the histogram `http_request_duration_seconds{service}`. Its counters grow with wall-clock time
at the rate the test set, as a real service's would, so `rate()` over them gives back that rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import aiohttp
from aiohttp import web

__all__ = [
    "LATENCY_BUCKETS",
    "Exporter",
    "PrometheusMissing",
    "PrometheusServer",
    "prometheus_missing",
    "running_exporter",
    "running_prometheus",
    "wait_for",
]

T = TypeVar("T")

# The default buckets of the official client libraries.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
ENSURE_SCRIPT = "scripts/ensure-prometheus.sh"
_START_TIMEOUT = 30.0  # seconds until /-/ready and every target up
_STOP_TIMEOUT = 5.0


# --- the exporter ----------------------------------------------------------------------------


@dataclass
class _Traffic:
    """One service's settings and the counters they have produced so far."""

    rate: float = 0.0  # requests per second
    error_ratio: float = 0.0  # share of requests answered 500
    latency: float = 0.05  # seconds every request takes
    ok: float = 0.0
    errors: float = 0.0
    duration_sum: float = 0.0
    buckets: list[float] = field(default_factory=lambda: [0.0] * len(LATENCY_BUCKETS))

    def advance(self, seconds: float) -> None:
        requests = self.rate * seconds
        self.errors += requests * self.error_ratio
        self.ok += requests * (1 - self.error_ratio)
        self.duration_sum += requests * self.latency
        for index, upper in enumerate(LATENCY_BUCKETS):
            if self.latency <= upper:
                self.buckets[index] += requests


class Exporter:
    """An HTTP service's metrics: request counters by service and code, and a latency histogram."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._since = clock()
        self._services: dict[str, _Traffic] = {}
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.scrapes = 0

    @property
    def target(self) -> str:
        """`host:port` as a scrape config's static target."""
        if self.port is None:
            raise RuntimeError("the exporter is not running (use running_exporter)")
        return f"127.0.0.1:{self.port}"

    def set_traffic(
        self,
        service: str,
        *,
        rate: float | None = None,
        error_ratio: float | None = None,
        latency: float | None = None,
    ) -> None:
        """Change what `service` does from now on; what it did so far stays in its counters."""
        if error_ratio is not None and not 0 <= error_ratio <= 1:
            raise ValueError(f"error_ratio must be between 0 and 1, got {error_ratio}")
        self._advance()
        traffic = self._services.setdefault(service, _Traffic())
        if rate is not None:
            traffic.rate = rate
        if error_ratio is not None:
            traffic.error_ratio = error_ratio
        if latency is not None:
            traffic.latency = latency

    def set_request_rate(self, service: str, rate: float) -> None:
        self.set_traffic(service, rate=rate)

    def set_error_ratio(self, service: str, error_ratio: float) -> None:
        self.set_traffic(service, error_ratio=error_ratio)

    def set_latency(self, service: str, latency: float) -> None:
        self.set_traffic(service, latency=latency)

    def render(self) -> str:
        """The current counters in the Prometheus text exposition format (version 0.0.4)."""
        self._advance()
        lines = [
            "# HELP http_requests_total Requests served, by service and status code.",
            "# TYPE http_requests_total counter",
        ]
        for service, traffic in sorted(self._services.items()):
            # Both codes from the start, as instrumented services pre-register them: a service
            # without errors then answers 0 to an error ratio instead of no series at all.
            lines.append(f'http_requests_total{{service="{service}",code="200"}} {traffic.ok!r}')
            lines.append(
                f'http_requests_total{{service="{service}",code="500"}} {traffic.errors!r}'
            )
        lines += [
            "# HELP http_request_duration_seconds Request latency.",
            "# TYPE http_request_duration_seconds histogram",
        ]
        for service, traffic in sorted(self._services.items()):
            total = traffic.ok + traffic.errors
            for upper, count in zip(LATENCY_BUCKETS, traffic.buckets, strict=True):
                lines.append(
                    f'http_request_duration_seconds_bucket{{service="{service}",le="{upper}"}}'
                    f" {count!r}"
                )
            lines += [
                f'http_request_duration_seconds_bucket{{service="{service}",le="+Inf"}} {total!r}',
                f'http_request_duration_seconds_sum{{service="{service}"}}'
                f" {traffic.duration_sum!r}",
                f'http_request_duration_seconds_count{{service="{service}"}} {total!r}',
            ]
        return "\n".join(lines) + "\n"

    def _advance(self) -> None:
        now = self._clock()
        elapsed, self._since = now - self._since, now
        for traffic in self._services.values():
            traffic.advance(elapsed)

    async def _metrics(self, request: web.Request) -> web.Response:
        self.scrapes += 1
        return web.Response(
            text=self.render(), content_type="text/plain", headers={"X-Exporter": "opsbot-test"}
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@asynccontextmanager
async def running_exporter(exporter: Exporter | None = None) -> AsyncIterator[Exporter]:
    """Serve `exporter` (or a new one) on a free loopback port for the block."""
    exporter = exporter or Exporter()
    await exporter.start()
    try:
        yield exporter
    finally:
        await exporter.stop()


# --- Prometheus --------------------------------------------------------------------------------


class PrometheusMissing(RuntimeError):
    """The prometheus binary is not installed: the tests that need it fail with this message."""


@dataclass(frozen=True)
class PrometheusServer:
    url: str  # http://127.0.0.1:PORT
    process: asyncio.subprocess.Process
    directory: Path  # config, storage and log

    def log(self) -> str:
        return _tail(self.directory / "prometheus.log")


def prometheus_missing() -> str:
    """Why the tests cannot run Prometheus here, or "" when its binary is on PATH."""
    if shutil.which("prometheus") is not None:
        return ""
    return (
        "the 'prometheus' binary is not on PATH; these tests need a real Prometheus:"
        f" run `bash {ENSURE_SCRIPT}` (it installs Debian's prometheus package)"
    )


@asynccontextmanager
async def running_prometheus(
    targets: Sequence[str], *, scrape_interval: str = "1s"
) -> AsyncIterator[PrometheusServer]:
    """Run a private Prometheus scraping `targets` (host:port) every `scrape_interval`.

    Yields once Prometheus is ready and every target is `up`; stops it when the block ends.
    Raises PrometheusMissing when the binary is not installed (run scripts/ensure-prometheus.sh).
    """
    binary = shutil.which("prometheus")
    if binary is None:
        raise PrometheusMissing(prometheus_missing())
    with tempfile.TemporaryDirectory(prefix="opsbot-prometheus-") as tmp:
        directory = Path(tmp)
        config = directory / "prometheus.yml"
        # JSON is YAML: no YAML writer needed. The scrape timeout may not exceed the interval.
        config.write_text(
            json.dumps(
                {
                    "global": {
                        "scrape_interval": scrape_interval,
                        "scrape_timeout": scrape_interval,
                        "evaluation_interval": scrape_interval,
                    },
                    "scrape_configs": [
                        {"job_name": "exporter", "static_configs": [{"targets": list(targets)}]}
                    ],
                }
            )
        )
        server = await _start(binary, directory, config)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
                await _wait_until_scraped(server, http, targets)
            yield server
        finally:
            await _stop(server.process)


async def _start(binary: str, directory: Path, config: Path) -> PrometheusServer:
    """Start Prometheus and wait for /-/ready; a port taken meanwhile is retried with another."""
    for _ in range(3):
        port = _free_port()
        log_path = directory / "prometheus.log"
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
                cwd=directory,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        server = PrometheusServer(
            url=f"http://127.0.0.1:{port}", process=process, directory=directory
        )
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:

            async def ready(server: PrometheusServer = server) -> bool:
                if server.process.returncode is not None:
                    return True  # exited: stop waiting, the log says why
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(f"{server.url}/-/ready") as response:
                        return response.status == 200
                return False

            await wait_for(ready, timeout=_START_TIMEOUT, what=f"Prometheus ready at {server.url}")
        if process.returncode is None:
            return server
        if "address already in use" not in server.log():
            raise RuntimeError(
                f"prometheus exited with status {process.returncode}:\n{server.log()}"
            )
    raise RuntimeError(f"prometheus found no free port:\n{server.log()}")


async def _wait_until_scraped(
    server: PrometheusServer, http: aiohttp.ClientSession, targets: Sequence[str]
) -> None:
    wanted = set(targets)
    last_seen: list[dict[str, object]] = []

    async def all_up() -> bool:
        nonlocal last_seen
        if server.process.returncode is not None:
            raise RuntimeError(
                f"prometheus exited with status {server.process.returncode}:\n{server.log()}"
            )
        async with http.get(f"{server.url}/api/v1/targets", params={"state": "active"}) as answer:
            last_seen = (await answer.json())["data"]["activeTargets"]
        up = {t["labels"]["instance"] for t in last_seen if t["health"] == "up"}  # type: ignore[index]
        return wanted <= up

    try:
        await wait_for(all_up, timeout=_START_TIMEOUT, what="every target up")
    except TimeoutError as err:
        states = ", ".join(
            f"{t.get('scrapeUrl')}: {t.get('health')} {t.get('lastError') or ''}".strip()
            for t in last_seen
        )
        raise TimeoutError(f"{err} (targets: {states or 'none'})") from None


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), _STOP_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()


# --- helpers -----------------------------------------------------------------------------------


async def wait_for(
    check: Callable[[], Awaitable[T]], *, timeout: float, what: str, interval: float = 0.1
) -> T:
    """Call `check` until it returns something truthy, and return that; TimeoutError after
    `timeout` seconds, naming `what` was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"waited {timeout:g}s for {what}")
        await asyncio.sleep(interval)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""
