"""Health checks of every instance: a `{pod_ip}` health URL is checked on every ready pod.

The fake Kubernetes API gives the pods loopback addresses (127.0.0.2, 127.0.0.3 …; Linux routes
all of 127/8 to the loopback interface) and a small aiohttp server answers on each of them, on one
port, with the status the test chooses per pod. Nothing outside this machine is contacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web

from bot.catalog import (
    DEFAULT_ROLLBACK_TRIGGERS,
    Environment,
    HealthCheck,
    RollbackTrigger,
    Service,
    load_catalog,
)
from bot.db.session import Database
from bot.deploys.health import HealthSnapshot, InstanceHealth, check_health, diff_health
from bot.deploys.playbook import Step, StepContext, run_step
from bot.deploys.watch import watch
from bot.plugins import Plugins, make_target
from bot.targets.base import DeployContext, Target
from bot.targets.kubernetes import KubernetesDeployTarget
from tests.conftest import TEST_CATALOG, start_bot
from tests.fakes.kubernetes import FakeKubernetes
from tests.fakes.slack import FakeSlack
from tests.helpers.deploys import deploy_messages, deploys, finish
from tests.helpers.messages import text_of

OLD_WEB = "registry.example/web:v1"
PODS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
HEALTH_TRIGGER = RollbackTrigger.model_validate(
    next(t for t in DEFAULT_ROLLBACK_TRIGGERS if t["metric"] == "health_failing")
)


# --- one health server per pod address ---------------------------------------------------------


@dataclass
class PodServers:
    """Health endpoints on several loopback addresses, one port; answers chosen per address."""

    port: int = 0
    statuses: dict[str, int] = field(default_factory=dict)  # address → status (default 200)
    hits: dict[str, int] = field(default_factory=dict)  # address → requests served
    delay: float = 0.0  # seconds each answer takes
    in_flight: int = 0
    most_in_flight: int = 0

    def url(self, path: str = "/healthz/{service}") -> str:
        return f"http://{{pod_ip}}:{self.port}{path}"

    def fail(self, *addresses: str, status: int = 503) -> None:
        for address in addresses:
            self.statuses[address] = status


@contextlib.asynccontextmanager
async def running_pod_servers(addresses: Iterable[str]) -> AsyncIterator[PodServers]:
    servers = PodServers()

    async def healthz(request: web.Request) -> web.Response:
        address = request.transport.get_extra_info("sockname")[0]  # type: ignore[union-attr]
        servers.hits[address] = servers.hits.get(address, 0) + 1
        servers.in_flight += 1
        servers.most_in_flight = max(servers.most_in_flight, servers.in_flight)
        try:
            await asyncio.sleep(servers.delay)
        finally:
            servers.in_flight -= 1
        status = servers.statuses.get(address, 200)
        return web.json_response({"address": address, "status": status}, status=status)

    app = web.Application()
    app.router.add_get("/{tail:.*}", healthz)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    addresses = list(addresses)
    try:
        for _ in range(20):  # the first address picks a free port; the others must get it too
            sites: list[web.TCPSite] = []
            try:
                first = web.TCPSite(runner, addresses[0], 0)
                await first.start()
                sites.append(first)
                port = first._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
                for address in addresses[1:]:
                    site = web.TCPSite(runner, address, port)
                    await site.start()
                    sites.append(site)
            except OSError:
                for site in sites:
                    await site.stop()
                continue
            servers.port = port
            break
        else:
            raise RuntimeError(f"no port free on all of {addresses}")
        yield servers
    finally:
        await runner.cleanup()


@pytest.fixture
async def pods() -> AsyncIterator[PodServers]:
    async with running_pod_servers([*PODS, "127.0.0.5", "127.0.0.6"]) as servers:
        yield servers


# --- a per-pod checker against the fake Kubernetes API ------------------------------------------


def web_service(url: str, **target: object) -> Service:
    return Service.model_validate(
        {
            "name": "web",
            "targets": {
                "dev": {
                    "kind": "kubernetes",
                    "namespace": "web-dev",
                    "deployment": "web",
                    "container": "app",
                    "image": "registry.example/web",
                    **target,
                }
            },
            "health": {"url": url, "timeout": "2s"},
        }
    )


BuildTarget = Callable[[FakeKubernetes, Path, Service], Target]


@pytest.fixture
async def k8s_target() -> AsyncIterator[BuildTarget]:
    """Builds the service's Kubernetes target on clients shared by the test, closed after it."""
    plugins = Plugins()

    def build(kube: FakeKubernetes, tmp_path: Path, svc: Service) -> Target:
        environ = {"KUBECONFIG": str(kube.kubeconfig(tmp_path / "kubeconfig"))}
        target = svc.targets["dev"]
        return plugins.make_target(target, service=svc.name, environment="dev", env=environ)

    yield build
    await plugins.close()


def step_context(
    svc: Service, target: Target, state: dict[str, object] | None = None
) -> StepContext:
    return StepContext(
        deploy=DeployContext("web", "dev", "v2", "rolling", "v1", state=dict(state or {})),
        target=target,
        service=svc,
        environment=Environment(name="dev"),
        workdir=Path("."),
        env={},
        cancelled=asyncio.Event(),
    )


@pytest.fixture
def web_pods(kube: FakeKubernetes) -> FakeKubernetes:
    kube.add_deployment("web-dev", "web", OLD_WEB, replicas=3)
    kube.set_pod_ips("web-dev", "web", PODS)
    return kube


async def test_ready_pods_are_those_with_an_ip_and_the_ready_condition(
    kube: FakeKubernetes, tmp_path: Path, k8s_target: BuildTarget
) -> None:
    kube.add_deployment("web-dev", "web", OLD_WEB, replicas=3)
    kube.set_pod_ips("web-dev", "web", ["127.0.0.2", None, "127.0.0.4"])  # one still Pending
    kube.add_deployment("web-dev", "other", OLD_WEB, replicas=2, labels={"app": "other"})
    target = k8s_target(kube, tmp_path, web_service("http://{pod_ip}/"))
    assert isinstance(target, KubernetesDeployTarget)
    pods = await target.ready_pods()
    assert [pod.address for pod in pods] == ["127.0.0.2", "127.0.0.4"]
    assert all(pod.name.startswith("web-") for pod in pods)
    listed = [r for r in kube.requests if r.method == "GET" and "/pods" in r.path]
    assert listed and listed[-1].query.get("labelSelector") == "app=web"


async def test_blue_green_checks_the_live_colour_pods(
    kube: FakeKubernetes, tmp_path: Path, k8s_target: BuildTarget
) -> None:
    kube.set_pod_ips("shop", "checkout-blue", ["127.0.0.7", "127.0.0.8"])
    svc = Service.model_validate(
        {
            "name": "checkout",
            "targets": {
                "dev": {
                    "kind": "kubernetes",
                    "namespace": "shop",
                    "deployment": "checkout",
                    "container": "app",
                    "image": "registry.example/checkout",
                    "service": "checkout",
                    "strategy": "blue-green",
                }
            },
        }
    )
    target = k8s_target(kube, tmp_path, svc)
    pods = await target.instances() or []
    assert [p.address for p in pods] == ["127.0.0.7", "127.0.0.8"]
    assert all(p.name.startswith("checkout-blue-") for p in pods)
    listed = [r for r in kube.requests if r.method == "GET" and r.path.endswith("/pods")]
    assert listed[-1].query.get("labelSelector") == "app=checkout,colour=blue"


async def test_a_pod_listing_failure_is_reported_as_no_data(
    web_pods: FakeKubernetes, tmp_path: Path, k8s_target: BuildTarget
) -> None:
    svc = web_service("http://{pod_ip}:8080/healthz")
    assert svc.health is not None
    web_pods.fail_next("GET", "/pods", status=403)
    target = k8s_target(web_pods, tmp_path, svc)
    snapshot = await check_health(svc.health, service="web", environment="dev", target=target)
    assert snapshot.no_data
    assert snapshot.summary().startswith(
        "cannot list the pods of web in dev: Kubernetes API answered"
        " GET pods/web-dev?labelSelector=app=web with HTTP 403"
    )


async def test_baseline_records_every_pod(
    web_pods: FakeKubernetes, pods: PodServers, tmp_path: Path, k8s_target: BuildTarget
) -> None:
    pods.fail("127.0.0.3")
    svc = web_service(pods.url())
    target = k8s_target(web_pods, tmp_path, svc)
    result = await run_step(Step("baseline", "health_baseline", {}), step_context(svc, target))
    names = sorted(p.name for p in await target.instances() or [])
    assert result.summary == f"health baseline: 1 of 3 instances failing: {names[1]} (answered 503)"
    baseline = result.state["health_baseline"]
    assert baseline["per_instance"] is True
    recorded = {i["name"]: (i["url"], i["status"]) for i in baseline["instances"]}
    port = pods.port
    assert recorded == {
        names[0]: (f"http://127.0.0.2:{port}/healthz/web", 200),
        names[1]: (f"http://127.0.0.3:{port}/healthz/web", 503),
        names[2]: (f"http://127.0.0.4:{port}/healthz/web", 200),
    }
    assert pods.hits == {"127.0.0.2": 1, "127.0.0.3": 1, "127.0.0.4": 1}
    assert f"{names[1]}: answered 503 (http://127.0.0.3:{port}/healthz/web)" in result.output


async def test_diff_shows_each_pod_whose_status_changed(
    web_pods: FakeKubernetes, pods: PodServers, tmp_path: Path, k8s_target: BuildTarget
) -> None:
    svc = web_service(pods.url())
    target = k8s_target(web_pods, tmp_path, svc)
    baseline = await run_step(Step("baseline", "health_baseline", {}), step_context(svc, target))
    pods.fail("127.0.0.4", status=500)
    ctx = step_context(svc, target, baseline.state)
    result = await run_step(Step("diff", "health_diff", {}), ctx)
    sick = sorted(p.name for p in await target.instances() or [])[2]
    assert result.summary == (
        "health: 3/3 healthy before, 2/3 healthy after; 0 gone, 0 new, 1 changed status"
        f" — failing now: {sick} (answered 500)"
    )
    assert f"~ {sick}: answered 200 → answered 500" in result.output
    assert "--- pre-deploy-health (3 of 3 instances healthy)" in result.output
    assert "+++ post-deploy-health (1 of 3 instances failing)" in result.output


async def test_diff_after_a_rollout_shows_pods_gone_and_new(
    web_pods: FakeKubernetes, pods: PodServers, tmp_path: Path, k8s_target: BuildTarget
) -> None:
    svc = web_service(pods.url())
    target = k8s_target(web_pods, tmp_path, svc)
    ctx = step_context(svc, target)
    old = {p.name for p in await target.instances() or []}
    baseline = await run_step(Step("baseline", "health_baseline", {}), ctx)
    ctx.deploy.state.update(baseline.state)
    await target.prepare(ctx.deploy)
    await target.wait_ready(ctx.deploy, timeout=timedelta(seconds=20))
    new = {p.name for p in await target.instances() or []}
    assert len(new) == 3 and not new & old
    result = await run_step(Step("diff", "health_diff", {}), ctx)
    assert (
        result.summary
        == "health: 3/3 healthy before, 3/3 healthy after; 3 gone, 3 new, 0 changed status"
    )
    for name in old:
        assert f"- {name}: answered 200" in result.output
    for name in new:
        assert f"+ {name}: answered 200" in result.output


def test_diff_of_snapshots_names_gone_new_and_changed() -> None:
    def pod(name: str, status: int | None) -> InstanceHealth:
        error = None if status else "failed: Cannot connect to host"
        return InstanceHealth(name, f"http://{name}/", status, error=error, body="{}")

    before = HealthSnapshot(True, (pod("a", 200), pod("b", 200), pod("c", 200)))
    after = HealthSnapshot(True, (pod("b", None), pod("c", 200), pod("d", 503)))
    summary, output = diff_health(before, after)
    assert summary == (
        "health: 3/3 healthy before, 1/3 healthy after; 1 gone, 1 new, 1 changed status"
        " — failing now: b (failed: Cannot connect to host), d (answered 503)"
    )
    assert output.splitlines()[2:6] == [
        "- a: answered 200  (http://a/)",
        "+ d: answered 503  (http://d/)",
        "~ b: answered 200 → failed: Cannot connect to host  (http://b/)",
        "  c: answered 200  (http://c/)",
    ]
    gone = HealthSnapshot(
        True, (), problem="no ready pods of web in dev: nothing to check, no data"
    )
    summary, output = diff_health(before, gone)
    assert (
        summary == "health: 3/3 healthy before, no instances after; 3 gone, 0 new, 0 changed status"
    )
    assert "+++ post-deploy-health (no ready pods of web in dev" in output


async def test_checks_run_concurrently_but_bounded(
    kube: FakeKubernetes, pods: PodServers, tmp_path: Path, k8s_target: BuildTarget
) -> None:
    five = [*PODS, "127.0.0.5", "127.0.0.6"]
    kube.add_deployment("web-dev", "web", OLD_WEB, replicas=5)
    kube.set_pod_ips("web-dev", "web", five)
    svc = web_service(pods.url())
    assert svc.health is not None
    target = k8s_target(kube, tmp_path, svc)
    pods.delay = 0.3
    snapshot = await check_health(svc.health, service="web", environment="dev", target=target)
    assert len(snapshot.instances) == 5 and snapshot.value == 0.0
    assert pods.most_in_flight == 5  # all at once by default (the bound is 10)
    pods.most_in_flight = 0
    bounded = await check_health(
        svc.health, service="web", environment="dev", target=target, limit=2
    )
    assert len(bounded.instances) == 5 and pods.most_in_flight == 2


async def test_no_ready_pods_is_no_data(
    kube: FakeKubernetes, tmp_path: Path, k8s_target: BuildTarget
) -> None:
    kube.add_deployment("web-dev", "web", OLD_WEB, replicas=2)
    kube.set_pod_ips("web-dev", "web", [None, None])
    svc = web_service("http://{pod_ip}:8080/healthz")
    assert svc.health is not None
    target = k8s_target(kube, tmp_path, svc)
    snapshot = await check_health(svc.health, service="web", environment="dev", target=target)
    assert snapshot.instances == () and math.isnan(snapshot.value) and snapshot.no_data
    assert snapshot.summary() == "no ready pods of web in dev: nothing to check, no data"


# --- the monitoring window's health_failing trigger ---------------------------------------------


async def watch_web(svc: Service, target: Target | None, seconds: float = 1.0) -> object:
    return await watch(
        source=None,
        service=svc,
        environment="dev",
        triggers=[HEALTH_TRIGGER],
        duration=timedelta(seconds=seconds),
        interval=timedelta(milliseconds=200),
        baseline={},
        cancelled=asyncio.Event(),
        target=target,
    )


async def test_rollback_fires_when_two_of_three_pods_fail(
    web_pods: FakeKubernetes, pods: PodServers, tmp_path: Path, k8s_target: BuildTarget
) -> None:
    svc = web_service(pods.url())
    target = k8s_target(web_pods, tmp_path, svc)
    names = sorted(p.name for p in await target.instances() or [])
    pods.fail("127.0.0.2")
    web_pods.set_pod_ips("web-dev", "web", ["127.0.0.2", "127.0.0.3", "127.0.0.9"])  # nobody there
    result = await watch_web(svc, target, seconds=10)
    assert result.state == "fired"  # type: ignore[attr-defined]
    verdict = result.verdict  # type: ignore[attr-defined]
    assert verdict.rule == "health-failing" and verdict.newest == pytest.approx(2 / 3)
    assert verdict.reason.startswith(
        "health_failing > 0.5: breached (last 0.667, limit 0.5) — 2 of 3 instances failing:"
        f" {names[0]} (answered 503), {names[2]} (failed: "
    )
    explained = result.explain(interval=timedelta(milliseconds=200))  # type: ignore[attr-defined]
    assert "2 of 3 instances failing" in explained and "Values every 0s: 0.6667" in explained


async def test_one_of_three_pods_failing_does_not_roll_back(
    web_pods: FakeKubernetes, pods: PodServers, tmp_path: Path, k8s_target: BuildTarget
) -> None:
    svc = web_service(pods.url())
    target = k8s_target(web_pods, tmp_path, svc)
    pods.fail("127.0.0.3")
    result = await watch_web(svc, target, seconds=0.6)
    assert result.state == "passed"  # type: ignore[attr-defined]
    assert pods.hits["127.0.0.2"] >= 3 and pods.hits["127.0.0.3"] >= 3
    (verdict,) = result.verdicts  # type: ignore[attr-defined]
    assert verdict.state == "ok" and verdict.newest == pytest.approx(1 / 3)
    assert "1 of 3 instances failing" in verdict.reason


async def test_no_ready_pods_makes_the_window_inconclusive(
    kube: FakeKubernetes, tmp_path: Path, k8s_target: BuildTarget
) -> None:
    kube.add_deployment("web-dev", "web", OLD_WEB, replicas=0)
    svc = web_service("http://{pod_ip}:8080/healthz")
    result = await watch_web(svc, k8s_target(kube, tmp_path, svc), seconds=0.5)
    assert result.state == "inconclusive"  # type: ignore[attr-defined]
    assert result.verdict.reason == (  # type: ignore[attr-defined]
        "no data for health_failing in the last 0.4s: inconclusive"
        " — no ready pods of web in dev: nothing to check, no data"
    )


async def test_a_pod_ip_url_on_a_target_without_pods_is_no_data(tmp_path: Path) -> None:
    svc = Service.model_validate(
        {
            "name": "web",
            "targets": {
                "dev": {
                    "kind": "compose",
                    "project": "web",
                    "file": "compose.yml",
                    "service": "web",
                }
            },
            "health": {"url": "http://{pod_ip}:8080/healthz"},
        }
    )
    target = make_target(svc.targets["dev"], service="web", environment="dev", env={})
    result = await watch_web(svc, target, seconds=0.3)
    assert result.state == "inconclusive"  # type: ignore[attr-defined]
    assert result.verdict.reason.endswith(  # type: ignore[attr-defined]
        "health.url names {pod_ip}, but the compose target of web in dev has no pods to fill it"
        " with (only Kubernetes targets do)"
    )


async def test_a_url_without_pod_ip_is_one_instance(pods: PodServers) -> None:
    svc = web_service(f"http://127.0.0.5:{pods.port}/healthz/{{env}}")
    pods.fail("127.0.0.5")
    result = await watch_web(svc, None, seconds=5)
    assert result.state == "fired"  # type: ignore[attr-defined]
    assert result.verdict.reason == (  # type: ignore[attr-defined]
        "health_failing > 0.5: breached (last 1, limit 0.5)"
        f" — GET http://127.0.0.5:{pods.port}/healthz/dev answered 503"
    )
    assert pods.hits == {"127.0.0.5": 1}


@pytest.mark.parametrize(
    ("url", "pod_ip", "filled", "per_instance"),
    [
        ("http://{pod_ip}:8080/healthz", "10.1.2.3", "http://10.1.2.3:8080/healthz", True),
        ("http://{pod_ip}:8080/h", "fd00::7", "http://[fd00::7]:8080/h", True),
        ("http://{pod_ip}/{service}/{env}", None, "http://{pod_ip}/web/dev", True),
        ("https://web.{env}.example/healthz", "10.1.2.3", "https://web.dev.example/healthz", False),
    ],
)
def test_health_url_placeholders(
    url: str, pod_ip: str | None, filled: str, per_instance: bool
) -> None:
    health = HealthCheck(url=url)
    assert health.per_instance is per_instance
    assert health.url_for(env="dev", service="web", pod_ip=pod_ip) == filled


def test_only_known_placeholders_are_accepted() -> None:
    with pytest.raises(
        ValueError, match=r"unknown placeholder \{pod\} .*allowed: \{env\}, \{pod_ip\}"
    ):
        HealthCheck(url="http://{pod}:8080/")


# --- end to end: a deploy through the bot -------------------------------------------------------


def web_catalog(tmp_path: Path, url: str, *, monitor: str | None = None) -> Path:
    text = TEST_CATALOG.read_text()
    if monitor:
        text = text.replace("  - {name: dev}", f"  - {{name: dev, monitor: {monitor}}}")
    text = text.replace(
        "services:\n",
        "services:\n"
        "  - name: web\n"
        "    owners: [U0ALICE]\n"
        f"    health: {{url: '{url}', timeout: 2s}}\n"
        "    targets:\n"
        "      dev: {kind: kubernetes, namespace: web-dev, deployment: web, container: app,"
        " image: registry.example/web}\n",
        1,
    )
    text += "metrics: {poll_interval: 1s}\n"
    path = tmp_path / "opsbot.yml"
    path.write_text(text)
    return path


async def test_a_deploy_records_every_pod_and_posts_the_per_pod_diff(
    fake_slack: FakeSlack,
    sqlite_database: Database,
    web_pods: FakeKubernetes,
    pods: PodServers,
    tmp_path: Path,
) -> None:
    path = web_catalog(tmp_path, pods.url())
    environ = {"KUBECONFIG": str(web_pods.kubeconfig(tmp_path / "kubeconfig"))}
    old = [p["metadata"]["name"] for p in web_pods.replicasets("web-dev", "web")]
    async with start_bot(
        fake_slack, sqlite_database, load_catalog(path, {}), environ=environ, config_path=path
    ) as bot:
        await bot.slack.command("/deploy", "web dev v2")
        await finish(bot)
        (deploy,) = await deploys(sqlite_database)
        assert deploy.state == "succeeded", deploy.reason
        baseline = deploy.details["target_state"]["health_baseline"]
        assert [i["status"] for i in baseline["instances"]] == [200, 200, 200]
        assert all(i["name"].startswith(old[0]) for i in baseline["instances"])
        checklist = text_of(deploy_messages(bot)[-1])
        assert "health baseline: 3 of 3 instances healthy" in checklist
        assert (
            "health: 3/3 healthy before, 3/3 healthy after; 3 gone, 3 new, 0 changed status"
            in checklist
        )
        thread = "\n".join(text_of(m) for m in fake_slack.messages if m.thread_ts)
        assert "--- pre-deploy-health (3 of 3 instances healthy)" in thread
        assert f"- {old[0]}-00000: answered 200" in thread
        new = web_pods.replicasets("web-dev", "web")[-1]["metadata"]["name"]
        assert f"+ {new}-00002: answered 200  (http://127.0.0.4:{pods.port}/healthz/web)" in thread
    assert pods.hits["127.0.0.2"] >= 2 and pods.hits["127.0.0.4"] >= 2


async def test_two_of_three_pods_failing_after_a_deploy_roll_it_back(
    fake_slack: FakeSlack,
    sqlite_database: Database,
    web_pods: FakeKubernetes,
    pods: PodServers,
    tmp_path: Path,
) -> None:
    path = web_catalog(tmp_path, pods.url(), monitor="30s")
    environ = {"KUBECONFIG": str(web_pods.kubeconfig(tmp_path / "kubeconfig"))}
    async with start_bot(
        fake_slack, sqlite_database, load_catalog(path, {}), environ=environ, config_path=path
    ) as bot:
        await bot.slack.command("/deploy", "web dev v2")
        await bot.settle()
        await fake_slack.wait_for_message(lambda m: "▶ monitor" in text_of(m), timeout=30)
        pods.fail("127.0.0.3", "127.0.0.4")  # two of the new version's three pods go bad
        try:
            async with asyncio.timeout(30):
                await finish(bot)
        except TimeoutError:
            thread = [text_of(m)[-300:] for m in fake_slack.messages if m.thread_ts]
            raise AssertionError(f"the deploy did not end within 30s: {thread}") from None
        (deploy,) = await deploys(sqlite_database)
        assert deploy.state == "rolled_back", deploy.reason
        reason = deploy.reason or ""
        assert "health_failing > 0.5: breached (last 0.667, limit 0.5)" in reason
        assert "2 of 3 instances failing: web-" in reason and "(answered 503)" in reason
        assert web_pods.image("web-dev", "web") == OLD_WEB
