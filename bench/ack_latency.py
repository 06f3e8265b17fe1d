"""Ack latency of /slack/events under concurrent signed slash commands, opsbot vs bare Bolt.

Starts each server as its own process on loopback (opsbot via `python -m bot run`), fires N signed
`/deploy help` commands at concurrency C from this process, and prints p50/p99/max of the time to
the ack, plus opsbot's idle and peak RSS. Slack's Web API is a local stand-in.

    .venv/bin/python bench/ack_latency.py [--requests 2000] [--concurrency 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.console.standin import SlackStandIn  # noqa: E402
from bot.web import slack_signature  # noqa: E402

SECRET = "bench-signing-secret"
TOKEN = "xoxb-bench-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def signed_command(standin: SlackStandIn) -> tuple[bytes, dict[str, str]]:
    body = urlencode(
        {
            "token": "bench",
            "team_id": standin.team_id,
            "channel_id": "C0BENCH",
            "user_id": "U0BENCH",
            "user_name": "bench",
            "command": "/deploy",
            "text": "help",
            "api_app_id": "A0BENCH",
            "response_url": standin.response_url("C0BENCH", "U0BENCH"),
            "trigger_id": f"{time.time():.6f}.{secrets.token_hex(6)}",
        }
    ).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": slack_signature(SECRET, timestamp, body),
    }
    return body, headers


async def wait_idle(pid: int) -> None:
    """Let the server finish the work the previous burst queued, so each burst starts idle."""
    previous = cpu_seconds(pid)
    for _ in range(120):
        await asyncio.sleep(0.5)
        now = cpu_seconds(pid)
        if now - previous < 0.02:
            return
        previous = now


async def wait_healthy(url: str, process: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            if process.returncode is not None:
                raise SystemExit(f"server exited with {process.returncode}")
            try:
                async with http.get(f"{url}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit("server never became healthy")


async def fire(url: str, standin: SlackStandIn, requests: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    failures = 0
    queue = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            nonlocal failures
            for _ in queue:
                body, headers = signed_command(standin)
                started = time.perf_counter()
                async with http.post(f"{url}/slack/events", data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        failures += 1
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    if failures:
        raise SystemExit(f"{failures} requests were not acknowledged with 200")
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(
    name: str, argv: list[str], env: dict[str, str], standin: SlackStandIn, args: argparse.Namespace
) -> dict[str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = await asyncio.create_subprocess_exec(
        *argv, env={**env, "PORT": str(port)}, cwd=args.workdir
    )
    if args.pin:
        # One core for the server, the other for this load generator: less noise between runs.
        os.sched_setaffinity(process.pid, {args.server_cpu})
    try:
        await wait_healthy(url, process)
        await fire(url, standin, 20, 1)  # first request: Bolt's auth.test, imports, DB warm-up
        await asyncio.sleep(1)
        idle = rss_mb(process.pid)
        await fire(url, standin, args.warmup, args.concurrency)
        await wait_idle(process.pid)
        cpu_before = cpu_seconds(process.pid)
        latencies = await fire(url, standin, args.requests, args.concurrency)
        cpu_during = cpu_seconds(process.pid) - cpu_before
        peak = rss_mb(process.pid)
    finally:
        process.terminate()
        await process.wait()
    ms = [value * 1000 for value in latencies]
    return {
        "p50": statistics.median(ms),
        "p99": percentile(ms, 0.99),
        "max": max(ms),
        "idle_rss": idle,
        "rss": peak,
        "cpu_ms": cpu_during * 1000 / args.requests,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=400)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians shown")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    args.pin = len(cpus) >= 2
    if args.pin:
        args.server_cpu = cpus[-1]
        os.sched_setaffinity(0, set(cpus[:-1]))
    args.workdir = tempfile.mkdtemp(prefix="opsbot-bench-")

    standin = SlackStandIn()
    await standin.start()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSBOT_"))}
    env = {
        **base_env,
        "SLACK_BOT_TOKEN": TOKEN,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": standin.api_url,
        "OPSBOT_CONFIG": str(ROOT / "examples" / "opsbot.yml"),
        "DATABASE_URL": args.database_url or f"sqlite+aiosqlite:///{args.workdir}/bench.db",
        "HOST": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
    }
    servers = {
        "bare Bolt": [sys.executable, str(ROOT / "bench" / "bare_bolt.py")],
        "opsbot": [sys.executable, "-m", "bot", "run"],
    }
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
    try:
        for _ in range(args.rounds):
            for name, argv in servers.items():
                rounds[name].append(await measure(name, argv, env, standin, args))
    finally:
        await standin.stop()
    bare, ours = (
        {key: statistics.median(r[key] for r in rounds[name]) for key in rounds[name][0]}
        for name in servers
    )

    database = "PostgreSQL" if "postgresql" in env["DATABASE_URL"] else "SQLite"
    pinning = "server and load generator on separate cores" if args.pin else "no pinning"
    print(
        f"{args.requests} signed /deploy help at concurrency {args.concurrency}, "
        f"median of {args.rounds} rounds, {os.cpu_count()} cores ({pinning}), "
        f"opsbot on {database}"
    )
    header = f"{'server':<10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    print(f"{header} {'idle RSS MB':>12} {'RSS MB':>8} {'CPU ms/req':>11}")
    for name, row in (("bare Bolt", bare), ("opsbot", ours)):
        print(
            f"{name:<10} {row['p50']:>8.1f} {row['p99']:>8.1f} {row['max']:>8.1f} "
            f"{row['idle_rss']:>12.1f} {row['rss']:>8.1f} {row['cpu_ms']:>11.2f}"
        )
    ratio = ours["p99"] / bare["p99"]
    print(f"p99 ratio opsbot/bare: {ratio:.2f} (goal ≤ 1.5, and opsbot p99 < 100 ms)")
    print(f"opsbot idle RSS: {ours['idle_rss']:.1f} MB (goal < 150 MB)")


if __name__ == "__main__":
    asyncio.run(main())
