"""The Kubernetes target end to end: the official asyncio client over HTTP, against a fake."""

from __future__ import annotations

import itertools
import socket
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes.aio import client as k8s
from kubernetes.aio.config import load_kube_config

from bot.catalog import KubernetesTarget
from bot.plugins import make_target as build_target
from bot.targets.base import DeployContext, TargetError
from bot.targets.kubernetes import KubernetesDeployTarget, image_tag, rollout_status
from tests.fakes.kubernetes import FakeKubernetes, running_fake_kubernetes

NS = "shop"
IMAGE = "registry.example/checkout"
OLD, NEW = f"{IMAGE}:v41", f"{IMAGE}:v42"
READY = timedelta(seconds=5)

MakeTarget = Callable[..., KubernetesDeployTarget]


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(KubernetesDeployTarget, "poll_interval", 0.01)


@pytest.fixture
async def fake() -> AsyncIterator[FakeKubernetes]:
    async with running_fake_kubernetes(tick=0.01) as server:
        yield server


@pytest.fixture
async def make_target(fake: FakeKubernetes, tmp_path: Path) -> AsyncIterator[MakeTarget]:
    kubeconfig = fake.kubeconfig(tmp_path / "kubeconfig")
    targets: list[KubernetesDeployTarget] = []

    def make(strategy: str = "rolling", **overrides: Any) -> KubernetesDeployTarget:
        fields: dict[str, Any] = {
            "kind": "kubernetes",
            "namespace": NS,
            "deployment": "checkout",
            "container": "app",
            "image": IMAGE,
            "service": "checkout" if strategy == "blue-green" else None,
            "context": "fake",
            "strategy": strategy,
            "ready_timeout": timedelta(seconds=5),
        }
        config = KubernetesTarget(**(fields | overrides))
        env = {"KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)}
        target = KubernetesDeployTarget(config, service="checkout", environment="prod", env=env)
        targets.append(target)
        return target

    yield make
    for target in targets:
        await target.close()


def context(strategy: str = "rolling", **state: Any) -> DeployContext:
    return DeployContext(
        service="checkout",
        environment="prod",
        version="v42",
        strategy=strategy,
        previous_version="v41",
        state=dict(state),
    )


async def run_step(ctx: DeployContext, step: Any) -> Any:
    """Run one target action and merge its state, as the engine does."""
    result = await step
    ctx.state.update(result.state)
    return result


def revisions(fake: FakeKubernetes, name: str) -> list[int]:
    annotation = "deployment.kubernetes.io/revision"
    return [int(rs["metadata"]["annotations"][annotation]) for rs in fake.replicasets(NS, name)]


def writes_to(fake: FakeKubernetes, fragment: str) -> list[str]:
    return [f"{r.method} {r.path}" for r in fake.writes() if fragment in r.path]


# ---------------------------------------------------------------------------------------- rolling


async def test_rolling_deploy_runs_new_image_with_a_new_revision(
    fake: FakeKubernetes, make_target: MakeTarget
) -> None:
    fake.add_deployment(NS, "checkout", OLD)
    target, ctx = make_target(), context()
    logged: list[str] = []

    async def log(line: str) -> None:
        logged.append(line)

    ctx.log = log

    prepared = await run_step(ctx, target.prepare(ctx))
    ready = await run_step(ctx, target.wait_ready(ctx, timeout=READY))

    assert fake.image(NS, "checkout") == NEW
    assert "v41 → v42" in prepared.summary
    assert ready.summary == "checkout runs v42 (3/3 ready)"
    assert revisions(fake, "checkout") == [1, 2]
    assert ctx.state["previous_image"] == OLD
    assert ctx.state["previous_revision"] == 1
    patch = next(r for r in fake.writes() if r.method == "PATCH")
    assert patch.content_type == "application/strategic-merge-patch+json"
    assert patch.body == {
        "spec": {"template": {"spec": {"containers": [{"name": "app", "image": NEW}]}}}
    }
    # Progress is logged only when the numbers move.
    assert logged and all(a != b for a, b in itertools.pairwise(logged))
    assert logged[-1] == "checkout: 3/3 updated, 3 available"


async def test_prepare_twice_patches_once(fake: FakeKubernetes, make_target: MakeTarget) -> None:
    fake.add_deployment(NS, "checkout", OLD)
    target, ctx = make_target(), context()

    await run_step(ctx, target.prepare(ctx))
    again = await run_step(ctx, target.prepare(ctx))

    assert "already runs" in again.summary
    assert writes_to(fake, "/deployments/checkout") == [
        "PATCH /apis/apps/v1/namespaces/shop/deployments/checkout"
    ]
    assert revisions(fake, "checkout") == [1, 2]
    # The retry keeps what ran before the deploy, not its own first attempt.
    assert ctx.state["previous_image"] == OLD
    assert ctx.state["previous_revision"] == 1


async def test_rollout_that_never_becomes_ready_reports_progress_deadline(
    fake: FakeKubernetes, make_target: MakeTarget
) -> None:
    fake.add_deployment(NS, "checkout", OLD)
    fake.never_ready(NS, "checkout")
    target, ctx = make_target(), context()
    await run_step(ctx, target.prepare(ctx))

    with pytest.raises(TargetError, match="ProgressDeadlineExceeded") as raised:
        await target.wait_ready(ctx, timeout=READY)

    assert "checkout rollout failed" in str(raised.value)
    assert "Traceback" not in str(raised.value)


async def test_wait_ready_gives_up_after_the_timeout_with_counts(
    make_target: MakeTarget, tmp_path: Path
) -> None:
    # A controller that does not move within the test: the rollout stays at its first step.
    async with running_fake_kubernetes(tick=60) as slow:
        slow.add_deployment(NS, "checkout", OLD)
        config = KubernetesTarget(
            kind="kubernetes", namespace=NS, deployment="checkout", container="app", image=IMAGE
        )
        env = {"KUBECONFIG": str(slow.kubeconfig(tmp_path / "slow"))}
        target = KubernetesDeployTarget(config, service="checkout", environment="prod", env=env)
        try:
            ctx = context()
            await run_step(ctx, target.prepare(ctx))
            with pytest.raises(TargetError) as raised:
                await target.wait_ready(ctx, timeout=timedelta(seconds=1))
        finally:
            await target.close()

    assert str(raised.value) == "checkout not ready after 1s: 1/3 updated, 3 available"
    assert raised.value.retryable is False


async def test_current_reports_the_running_tag(
    fake: FakeKubernetes, make_target: MakeTarget
) -> None:
    fake.add_deployment(NS, "checkout", OLD)

    running = await make_target().current()

    assert running.version == "v41"
    assert running.detail == f"3/3 pods of checkout run {OLD}"


async def test_plan_lists_every_call_and_writes_nothing(
    fake: FakeKubernetes, make_target: MakeTarget
) -> None:
    fake.add_deployment(NS, "checkout", OLD)

    lines = make_target().plan(context())

    assert lines == [
        "GET deployments/shop/checkout: read container app image and revision",
        f"PATCH deployments/shop/checkout: container app image {NEW}",
        "GET deployments/shop/checkout every 0.01s until rolled out (up to 5s)",
    ]
    assert fake.requests == []


async def test_rollback_restores_the_previous_replicaset_template_by_json_patch(
    fake: FakeKubernetes, make_target: MakeTarget
) -> None:
    fake.add_deployment(NS, "checkout", OLD)
    target, ctx = make_target(), context()
    await run_step(ctx, target.prepare(ctx))
    await run_step(ctx, target.wait_ready(ctx, timeout=READY))

    result = await target.rollback(ctx)

    assert fake.image(NS, "checkout") == OLD
    assert result.summary == "checkout rolled back to v41 (3/3 ready)"
    undo = fake.writes()[-1]
    assert undo.method == "PATCH"
    assert undo.content_type == "application/json-patch+json"
    assert [op["path"] for op in undo.body] == ["/spec/template", "/metadata/annotations"]
    assert "pod-template-hash" not in undo.body[0]["value"]["metadata"]["labels"]
    # Kubernetes reuses the old ReplicaSet and makes it the newest revision, as on a cluster.
    assert revisions(fake, "checkout") == [2, 3]
    # A second rollback finds the template already in place and writes nothing.
    writes = len(fake.writes())
    await target.rollback(ctx)
    assert len(fake.writes()) == writes


async def test_rollback_without_state_takes_the_revision_before_the_current(
    fake: FakeKubernetes, make_target: MakeTarget
) -> None:
    fake.add_deployment(NS, "checkout", OLD)
    target, ctx = make_target(), context()
    await run_step(ctx, target.prepare(ctx))
    await fake.wait_for(lambda: rollout_status(fake.deployment(NS, "checkout")).done)

    blank = DeployContext(service="checkout", environment="prod", version="v42", strategy="rolling")
    await target.rollback(blank)

    assert fake.image(NS, "checkout") == OLD


# ------------------------------------------------------------------------------------ blue-green


def seed_blue_green(fake: FakeKubernetes) -> None:
    fake.add_deployment(NS, "checkout-blue", OLD, labels={"app": "checkout", "colour": "blue"})
    fake.add_service(NS, "checkout", {"app": "checkout", "colour": "blue"})


async def test_blue_green_updates_the_idle_colour_and_switches_only_at_100(
    fake: FakeKubernetes, make_target: MakeTarget
) -> None:
    seed_blue_green(fake)
    target = make_target("blue-green")
    running = await target.current()
    ctx = context("blue-green", **running.state)

    assert running.version == "v41"
    assert make_target("blue-green").plan(ctx)[3] == (
        f"PATCH deployments/shop/checkout-green: container app image {NEW}, "
        "replicas as checkout-blue"
    )
    await run_step(ctx, target.prepare(ctx))
    ready = await run_step(ctx, target.wait_ready(ctx, timeout=READY))

    green = fake.deployment(NS, "checkout-green")
    assert fake.image(NS, "checkout-green") == NEW
    assert green["spec"]["replicas"] == 3
    assert green["spec"]["template"]["metadata"]["labels"] == {"app": "checkout", "colour": "green"}
    assert ready.summary == "checkout-green runs v42 (3/3 ready)"
    assert fake.service(NS, "checkout")["spec"]["selector"]["colour"] == "blue"
    assert fake.image(NS, "checkout-blue") == OLD

    with pytest.raises(TargetError, match="blue-green moves all traffic at once"):
        await target.shift_traffic(ctx, 50)
    assert fake.service(NS, "checkout")["spec"]["selector"]["colour"] == "blue"

    await run_step(ctx, target.shift_traffic(ctx, 100))
    assert fake.service(NS, "checkout")["spec"]["selector"] == {
        "app": "checkout",
        "colour": "green",
    }
    assert (await target.current()).version == "v42"

    await run_step(ctx, target.finalize(ctx))
    cleaned = await run_step(ctx, target.cleanup(ctx))
    assert cleaned.summary == "deleted checkout-blue (the previous colour)"
    assert not fake.has_deployment(NS, "checkout-blue")

    # After cleanup, a rollback brings the deleted colour back with the previous version.
    await target.rollback(ctx)
    assert fake.image(NS, "checkout-blue") == OLD
    assert fake.service(NS, "checkout")["spec"]["selector"]["colour"] == "blue"
    assert (await target.current()).version == "v41"


async def test_blue_green_rollback_switches_the_selector_back(
    fake: FakeKubernetes, make_target: MakeTarget
) -> None:
    seed_blue_green(fake)
    # The idle colour exists from an earlier deploy, scaled down: prepare reuses it.
    fake.add_deployment(
        NS,
        "checkout-green",
        f"{IMAGE}:v40",
        replicas=1,
        labels={"app": "checkout", "colour": "green"},
    )
    target, ctx = make_target("blue-green"), context("blue-green")
    await run_step(ctx, target.prepare(ctx))
    await run_step(ctx, target.wait_ready(ctx, timeout=READY))
    await run_step(ctx, target.shift_traffic(ctx, 100))

    result = await target.rollback(ctx)

    assert fake.service(NS, "checkout")["spec"]["selector"]["colour"] == "blue"
    assert "switched back to checkout-blue (v41)" in result.summary
    assert fake.deployment(NS, "checkout-green")["spec"]["replicas"] == 3
    assert not [r for r in fake.writes() if r.method == "POST"]
    # Cleanup after a rollback would delete what serves: it refuses.
    with pytest.raises(TargetError, match="will not delete checkout-blue"):
        await target.cleanup(ctx)


# ---------------------------------------------------------------------------------------- canary


async def test_canary_steps_scale_the_canary_then_promote_and_finalize(
    fake: FakeKubernetes, make_target: MakeTarget
) -> None:
    fake.add_deployment(NS, "checkout", OLD)
    target, ctx = make_target("canary"), context("canary")

    await run_step(ctx, target.prepare(ctx))
    await run_step(ctx, target.wait_ready(ctx, timeout=READY))
    canary = fake.deployment(NS, "checkout-canary")
    assert canary["spec"]["template"]["metadata"]["labels"] == {
        "app": "checkout",
        "track": "canary",
    }
    assert fake.image(NS, "checkout-canary") == NEW

    scaled = []
    for percent in (10, 50):
        result = await run_step(ctx, target.shift_traffic(ctx, percent))
        scaled.append(fake.deployment(NS, "checkout-canary")["spec"]["replicas"])
        assert fake.image(NS, "checkout") == OLD
    assert scaled == [1, 2]
    assert result.summary == (
        "checkout-canary: 2 pod(s) with v42 beside 3 of checkout (about 40 % of requests)"
    )

    await run_step(ctx, target.shift_traffic(ctx, 100))
    assert fake.image(NS, "checkout") == NEW
    assert rollout_status(fake.deployment(NS, "checkout")).done

    finalized = await run_step(ctx, target.finalize(ctx))
    assert not fake.has_deployment(NS, "checkout-canary")
    assert finalized.summary == "checkout serves v42 alone; deleted checkout-canary"


async def test_canary_rollback_removes_the_canary_and_leaves_main_alone(
    fake: FakeKubernetes, make_target: MakeTarget
) -> None:
    fake.add_deployment(NS, "checkout", OLD)
    target, ctx = make_target("canary"), context("canary")
    await run_step(ctx, target.prepare(ctx))
    await run_step(ctx, target.shift_traffic(ctx, 10))

    result = await target.rollback(ctx)

    assert not fake.has_deployment(NS, "checkout-canary")
    assert fake.image(NS, "checkout") == OLD
    assert result.summary == "deleted checkout-canary; checkout was not changed"
    assert not [w for w in writes_to(fake, "checkout") if w.endswith("/deployments/checkout")]


async def test_canary_rollback_after_promotion_undoes_main(
    fake: FakeKubernetes, make_target: MakeTarget
) -> None:
    fake.add_deployment(NS, "checkout", OLD)
    target, ctx = make_target("canary"), context("canary")
    await run_step(ctx, target.prepare(ctx))
    await run_step(ctx, target.shift_traffic(ctx, 100))

    result = await target.rollback(ctx)

    assert fake.image(NS, "checkout") == OLD
    assert not fake.has_deployment(NS, "checkout-canary")
    assert "checkout rolled back to v41" in result.summary


# ---------------------------------------------------------------------------------------- errors


async def test_api_error_becomes_target_error_with_status_and_message(
    fake: FakeKubernetes, make_target: MakeTarget
) -> None:
    fake.add_deployment(NS, "checkout", OLD)
    fake.fail_next("PATCH", "/deployments/checkout", status=500)
    target, ctx = make_target(), context()

    with pytest.raises(TargetError) as raised:
        await target.prepare(ctx)

    assert str(raised.value) == (
        "Kubernetes API answered PATCH deployments/shop/checkout with HTTP 500: "
        "etcdserver: request timed out"
    )
    assert raised.value.retryable is True


async def test_missing_deployment_is_reported_not_retried(make_target: MakeTarget) -> None:
    with pytest.raises(TargetError) as raised:
        await make_target().current()

    assert "HTTP 404" in str(raised.value)
    assert 'deployments.apps "checkout" not found' in str(raised.value)
    assert raised.value.retryable is False


async def test_unreachable_api_server_is_a_retryable_error(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: x, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: x, user: u}}]\n"
    )
    config = KubernetesTarget(
        kind="kubernetes", namespace=NS, deployment="checkout", container="app", image=IMAGE
    )
    target = KubernetesDeployTarget(
        config, service="checkout", environment="prod", env={"KUBECONFIG": str(kubeconfig)}
    )
    try:
        with pytest.raises(TargetError) as raised:
            await target.current()
    finally:
        await target.close()

    assert raised.value.retryable is True
    assert str(raised.value).startswith(
        f"cannot reach the Kubernetes API at http://127.0.0.1:{port} for GET deployments/shop/"
    )


async def test_missing_kubeconfig_or_context_is_a_clear_error(tmp_path: Path) -> None:
    config = KubernetesTarget(
        kind="kubernetes", namespace=NS, deployment="checkout", container="app", image=IMAGE
    )
    target = KubernetesDeployTarget(
        config, service="checkout", environment="prod", env={"HOME": str(tmp_path)}
    )
    with pytest.raises(TargetError, match=r"no kubeconfig found at .*\.kube/config"):
        await target.current()


async def test_unknown_context_is_a_clear_error(
    fake: FakeKubernetes, make_target: MakeTarget
) -> None:
    target = make_target(context="production")  # overrides the fixture's context
    with pytest.raises(TargetError, match=r"cannot use the kubeconfig .* \(context production\)"):
        await target.current()


# ---------------------------------------------------------------------------------------- pieces


def test_the_catalog_kind_kubernetes_builds_this_target() -> None:
    config = KubernetesTarget(
        kind="kubernetes", namespace=NS, deployment="checkout", container="app", image=IMAGE
    )
    target = build_target(config, service="checkout", environment="prod", env={})
    assert isinstance(target, KubernetesDeployTarget)


@pytest.mark.parametrize(
    ("image", "tag"),
    [
        ("registry.example/checkout:v42", "v42"),
        ("registry.example:5000/shop/checkout:1.2.3", "1.2.3"),
        ("registry.example:5000/shop/checkout", None),
        ("checkout@sha256:abc", "sha256:abc"),
    ],
)
def test_image_tag(image: str, tag: str | None) -> None:
    assert image_tag(image) == tag


def _deployment(generation: int = 2, **status: Any) -> dict[str, Any]:
    return {"metadata": {"generation": generation}, "spec": {"replicas": 3}, "status": status}


@pytest.mark.parametrize(
    ("deployment", "done", "failure"),
    [
        (
            _deployment(observedGeneration=2, replicas=3, updatedReplicas=3, availableReplicas=3),
            True,
            None,
        ),
        (
            _deployment(observedGeneration=1, replicas=3, updatedReplicas=3, availableReplicas=3),
            False,
            None,
        ),
        (
            _deployment(observedGeneration=2, replicas=4, updatedReplicas=3, availableReplicas=3),
            False,
            None,
        ),
        (
            _deployment(observedGeneration=2, replicas=3, updatedReplicas=2, availableReplicas=3),
            False,
            None,
        ),
        (
            _deployment(observedGeneration=2, replicas=3, updatedReplicas=3, availableReplicas=2),
            False,
            None,
        ),
        (
            _deployment(
                observedGeneration=2,
                conditions=[
                    {
                        "type": "Progressing",
                        "status": "False",
                        "reason": "ProgressDeadlineExceeded",
                        "message": "stuck",
                    }
                ],
            ),
            False,
            "stuck",
        ),
    ],
)
def test_rollout_status_follows_kubectls_rule(
    deployment: dict[str, Any], done: bool, failure: str | None
) -> None:
    status = rollout_status(deployment)
    assert (status.done, status.failure) == (done, failure)


async def test_fake_lists_ready_pods_with_addresses(fake: FakeKubernetes, tmp_path: Path) -> None:
    fake.add_deployment(NS, "checkout", OLD, replicas=2)
    configuration = k8s.Configuration()
    await load_kube_config(
        config_file=str(fake.kubeconfig(tmp_path / "kc")),
        client_configuration=configuration,
        persist_config=False,
    )
    async with k8s.ApiClient(configuration) as api:
        pods = await k8s.CoreV1Api(api).list_namespaced_pod(NS, label_selector="app=checkout")

    assert len(pods.items) == 2
    for pod in pods.items:
        assert pod.status.pod_ip.startswith("10.244.")
        assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, False),
        ({"HTTPS_PROXY": "http://proxy:3128"}, True),
        ({"http_proxy": "http://proxy:3128"}, True),
        ({"NETRC": "/home/me/.netrc"}, True),
        ({"HTTPS_PROXY": ""}, False),
        ({"NO_PROXY": "localhost"}, False),
    ],
)
def test_the_environment_lookup_stays_on_only_when_a_proxy_is_named(
    env: dict[str, str], expected: bool
) -> None:
    from bot.targets.kubernetes.clients import _names_a_proxy

    assert _names_a_proxy(env) is expected
