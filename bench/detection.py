"""How fast a breach becomes a rollback: breach injected at t0, rollback's first target write at t1.

Runs `python -m bot run` against the fake Kubernetes API, a local Slack stand-in and a real
Prometheus (Debian's package) scraping an exporter this script controls. It deploys checkout v2 to
an environment with a monitoring window, and once the window is running makes half the requests
fail (t0). It reports t1 − t0, where t1 is the rollback's first write to the Kubernetes API.
Goal: the trigger's `for` duration + at most one poll interval + 1 s.

    .venv/bin/python bench/detection.py [--for 10s] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ack_latency import SECRET, TOKEN, free_port, wait_healthy  # noqa: E402
from bot.catalog import parse_duration  # noqa: E402
from bot.console.standin import Message, SlackStandIn  # noqa: E402
from tests.fakes.kubernetes import running_fake_kubernetes  # noqa: E402
from tests.fakes.prometheus import running_exporter, running_prometheus  # noqa: E402
from tests.fakes.slack_client import SlackRequests  # noqa: E402

POLL = 1.0
RATE_WINDOW = "4s"


def catalog(prometheus_url: str, trigger_for: str) -> str:
    query = (
        f'sum(rate(http_requests_total{{service="checkout",code=~"5.."}}[{RATE_WINDOW}]))'
        f' / sum(rate(http_requests_total{{service="checkout"}}[{RATE_WINDOW}]))'
    )
    return f"""
slack: {{channels: {{deploys: C0DEPLOYS, alerts: C0ALERTS, incidents: C0INCIDENTS}}}}
environments: [{{name: dev, monitor: 10m}}]
services:
  - name: checkout
    targets:
      dev: {{kind: kubernetes, namespace: shop, deployment: checkout, container: app,
             image: registry.example/checkout}}
    metrics: {{error_rate: '{query}'}}
metrics: {{source: prometheus, url: '{prometheus_url}', poll_interval: {int(POLL)}s}}
rollback_triggers:
  - {{name: error-rate, metric: error_rate, op: '>', threshold: 0.05, for: {trigger_for}}}
"""


async def one_round(trigger_for: str, workdir: Path) -> float:
    async with (
        running_exporter() as exporter,
        running_prometheus([exporter.target], scrape_interval="1s") as prometheus,
        running_fake_kubernetes(tick=0.05) as kube,
    ):
        exporter.set_traffic("checkout", rate=100, error_ratio=0.0)
        kube.add_deployment("shop", "checkout", "registry.example/checkout:v1", replicas=3)
        (workdir / "opsbot.yml").write_text(catalog(prometheus.url, trigger_for))
        standin = SlackStandIn()
        await standin.start()
        monitoring = asyncio.Event()

        def watch(message: Message) -> None:
            if "▶ monitor" in str(message.blocks):
                monitoring.set()

        standin.on_message = watch
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPSBOT_"))}
        env.update(
            SLACK_BOT_TOKEN=TOKEN,
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=standin.api_url,
            OPSBOT_CONFIG=str(workdir / "opsbot.yml"),
            OPSBOT_PLAYBOOKS=str(ROOT / "playbooks"),
            DATABASE_URL=f"sqlite+aiosqlite:///{workdir}/detection-{time.time_ns()}.db",
            KUBECONFIG=str(kube.kubeconfig(workdir / "kubeconfig")),
            PORT=str(port),
            HOST="127.0.0.1",
            LOG_LEVEL="WARNING",
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", env=env, cwd=workdir
        )
        try:
            url = f"http://127.0.0.1:{port}"
            await wait_healthy(url, process)
            await SlackRequests(url, SECRET, fake=standin).command("/deploy", "checkout dev v2")
            async with asyncio.timeout(120):
                await monitoring.wait()
            writes_before = len(kube.writes())
            breach = time.monotonic()
            exporter.set_traffic("checkout", error_ratio=0.5)

            def rollback_write() -> bool:
                return len(kube.writes()) > writes_before

            await kube.wait_for(rollback_write, timeout=300)
            first_write = next(r.at for r in kube.writes()[writes_before:])
            return first_write - breach
        finally:
            process.terminate()
            await process.wait()
            await standin.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--for", dest="trigger_for", default="10s")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    holding = parse_duration(args.trigger_for).total_seconds()
    workdir = Path(tempfile.mkdtemp(prefix="opsbot-detection-"))
    delays = [await one_round(args.trigger_for, workdir) for _ in range(args.rounds)]
    goal = holding + POLL + 1.0
    print("rounds:", ", ".join(f"{d:.2f} s" for d in delays))
    print(
        f"error rate 0 % → 50 % at t0; trigger error_rate > 5 % for {args.trigger_for}; "
        f"poll {POLL:.0f}s; Prometheus scrape 1s, rate window {RATE_WINDOW}; {args.rounds} rounds"
    )
    print(
        f"t0 → rollback's first target write: median {statistics.median(delays):.2f} s, "
        f"max {max(delays):.2f} s (goal ≤ {goal:.1f} s = for + one poll + 1 s)"
    )


if __name__ == "__main__":
    asyncio.run(main())
