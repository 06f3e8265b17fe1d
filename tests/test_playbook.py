"""Playbooks: loading and validation, expansion per target, and running every kind of step."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

from bot.catalog import (
    Catalog,
    ComposeTarget,
    Environment,
    KubernetesTarget,
    LambdaTarget,
    MetricsSource,
    RollbackTrigger,
    Service,
)
from bot.db.models import utc_now
from bot.deploys.monitor import TriggerFired, monitor_window
from bot.deploys.playbook import (
    Check,
    Playbook,
    PlaybookError,
    Step,
    StepAborted,
    StepContext,
    StepFailed,
    expand_steps,
    load_playbooks,
    playbook_for,
    run_check,
    run_step,
)
from bot.deploys.watch import health_guard_tripped
from bot.targets.base import DeployContext, Running, StepResult, Target, TargetError
from tests.helpers.messages import verdict

SHIPPED = Path(__file__).resolve().parent.parent / "playbooks"
PYTHON = sys.executable
MS = timedelta(milliseconds=1)


# --- loading -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> dict[str, Playbook]:
    return load_playbooks(SHIPPED)


def test_shipped_playbooks_load_and_serve_every_strategy(shipped: dict[str, Playbook]) -> None:
    assert {name: playbook.strategies for name, playbook in shipped.items()} == {
        "rolling": ("rolling",),
        "blue-green": ("blue-green",),
        "canary": ("canary",),
        "recreate": ("recreate",),
    }
    for playbook in shipped.values():
        assert playbook.description
        kinds = [step.kind for step in playbook.steps]
        # The runbook's Step 1 scripts come first, optional where the repository lacks them.
        assert [step.params["argv"][0] for step in playbook.steps[:3]] == [
            "./scripts/verify-environment.sh",
            "./scripts/backup-database.sh",
            "./scripts/health-check.sh",
        ]
        assert all(s.params["when_exists"] for s in playbook.steps if s.kind == "run")
        assert kinds.index("health_baseline") < kinds.index("prepare")
        assert kinds[-2:] == ["monitor", "cleanup"]


@pytest.mark.parametrize(
    ("name", "kinds"),
    [
        (
            "blue-green",
            ["health_baseline", "prepare", "wait_ready", "smoke", "shift_traffic", "health_diff",
             "monitor", "cleanup"],
        ),
        (
            "canary",
            ["health_baseline", "prepare", "wait_ready", "smoke", "shift_traffic", "finalize",
             "health_diff", "monitor", "cleanup"],
        ),
        (
            "recreate",
            ["health_baseline", "prepare", "wait_ready", "shift_traffic", "finalize", "smoke",
             "health_diff", "monitor", "cleanup"],
        ),
    ],
)  # fmt: skip
def test_shipped_playbooks_follow_the_runbook(
    shipped: dict[str, Playbook], name: str, kinds: list[str]
) -> None:
    assert [step.kind for step in shipped[name].steps if step.kind != "run"] == kinds


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param(
            "name: bad\nsteps:\n  - {name: deploy, kind: prepare}\n  - {name: go, kind: shell}\n",
            "bad.yml: steps[1] (go): kind: unknown kind 'shell' (kinds: run, http_check,"
            " health_baseline, health_diff, prepare, wait_ready, smoke, shift_traffic, finalize,"
            " monitor, cleanup, wait)",
            id="unknown kind",
        ),
        pytest.param(
            "name: bad\nsteps:\n  - {name: deploy, kind: prepare, image: x}\n",
            "bad.yml: steps[0] (deploy): image: unknown key (allowed: name, kind)",
            id="unknown key",
        ),
        pytest.param(
            "name: bad\nsteps:\n  - {name: pause, kind: wait, duration: 10}\n",
            "bad.yml: steps[0] (pause): duration: bad duration 10 (write e.g. 30s, 15m, 2h, 30d)",
            id="bare number as duration",
        ),
        pytest.param(
            "name: bad\nsteps:\n  - {name: check, kind: run, argv: './check.sh && rm -rf /'}\n",
            "bad.yml: steps[0] (check): argv: input should be a valid list",
            id="shell string",
        ),
        pytest.param(
            'name: bad\nsteps:\n  - {name: check, kind: run, argv: [./check.sh, "{region}"]}\n',
            "bad.yml: steps[0] (check): argv.1: unknown placeholder {region} in '{region}'"
            " (allowed: {env}, {previous_version}, {service}, {version})",
            id="unknown placeholder",
        ),
        pytest.param(
            "name: bad\nsteps:\n  - {name: go, kind: shift_traffic, steps: [50, 10]}\n",
            "bad.yml: steps[0] (go): steps: steps must increase, got [50, 10]",
            id="decreasing percentages",
        ),
        pytest.param(
            "name: bad\nsteps:\n  - {kind: prepare}\n",
            "bad.yml: steps[0]: name: required, a non-empty text",
            id="step without name",
        ),
        pytest.param(
            "name: bad\nsteps:\n  - {name: go, kind: shift_traffic}\n"
            "  - {name: up, kind: prepare}\n",
            "bad.yml: steps[1] (up): prepare must come before shift_traffic (targets act in the"
            " order prepare -> wait_ready -> shift_traffic -> finalize -> cleanup)",
            id="target order",
        ),
        pytest.param(
            "name: bad\nsteps:\n  - {name: a, kind: prepare}\n  - {name: a, kind: finalize}\n",
            "bad.yml: steps[1] (a): duplicate step name (also steps[0])",
            id="duplicate step name",
        ),
        pytest.param(
            "name: bad\nchecks:\n  - {name: lint}\nsteps:\n  - {name: a, kind: prepare}\n",
            "bad.yml: checks[0] (lint): write exactly one of run (an argument list) or http_get"
            " (a URL)",
            id="check without run or http_get",
        ),
        pytest.param(
            "name: bad\nstrategies: [rolling, yolo]\nsteps:\n  - {name: a, kind: prepare}\n",
            "bad.yml: strategies.1: input should be 'rolling', 'blue-green', 'canary' or"
            " 'recreate'",
            id="unknown strategy",
        ),
        pytest.param("name: bad\nsteps: [\n", "bad.yml: invalid YAML (line 3):", id="invalid YAML"),
    ],
)
def test_bad_playbook_names_file_and_step(tmp_path: Path, text: str, problem: str) -> None:
    write(tmp_path, "good.yml", "name: good\nsteps:\n  - {name: deploy, kind: prepare}\n")
    write(tmp_path, "bad.yml", text)
    with pytest.raises(PlaybookError) as raised:
        load_playbooks(tmp_path)
    assert len(raised.value.problems) == 1
    assert raised.value.problems[0].startswith(f"{tmp_path / problem}")


def test_two_playbooks_cannot_both_serve_a_strategy(tmp_path: Path) -> None:
    write(tmp_path, "a.yml", "name: a\nstrategies: [canary]\nsteps: [{name: x, kind: prepare}]\n")
    write(tmp_path, "b.yml", "name: b\nstrategies: [canary]\nsteps: [{name: x, kind: prepare}]\n")
    with pytest.raises(PlaybookError) as raised:
        load_playbooks(tmp_path)
    assert raised.value.problems == [
        f"{tmp_path / 'b.yml'}: strategies: canary is already served by playbook 'a';"
        " a strategy has one default playbook"
    ]


# --- choosing and expanding ----------------------------------------------------------------------

K8S = {"kind": "kubernetes", "namespace": "shop", "deployment": "checkout", "container": "app",
       "image": "registry.example/checkout"}  # fmt: skip


def service(**fields: Any) -> Service:
    return Service.model_validate({"name": "checkout", "targets": {"prod": K8S}, **fields})


def test_playbook_for_prefers_the_service_own_playbook(shipped: dict[str, Playbook]) -> None:
    assert playbook_for(shipped, service=service(), strategy="canary").name == "canary"
    own = service(playbook="blue-green")
    assert playbook_for(shipped, service=own, strategy="canary").name == "blue-green"


def test_playbook_for_says_what_is_missing(shipped: dict[str, Playbook]) -> None:
    with pytest.raises(PlaybookError, match="checkout names playbook 'hotfix', which does not"):
        playbook_for(shipped, service=service(playbook="hotfix"), strategy="rolling")
    only_canary = {"canary": shipped["canary"]}
    with pytest.raises(PlaybookError, match="no playbook serves the strategy 'rolling'"):
        playbook_for(only_canary, service=service(), strategy="rolling")


def shifts(steps: list[Step]) -> list[tuple[str, str, Any]]:
    return [
        (step.name, step.kind, step.params.get("percent", step.params.get("duration")))
        for step in steps
        if step.kind in ("shift_traffic", "wait")
    ]


def test_canary_shifts_traffic_in_steps_with_waits_between(shipped: dict[str, Playbook]) -> None:
    target = KubernetesTarget.model_validate(
        {**K8S, "strategy": "canary", "steps": [10, 50, 100], "step_wait": "5m"}
    )
    steps = expand_steps(shipped["canary"], target_config=target)
    assert shifts(steps) == [
        ("shift traffic 10%", "shift_traffic", 10),
        ("shift traffic 10%: wait 5m", "wait", timedelta(minutes=5)),
        ("shift traffic 50%", "shift_traffic", 50),
        ("shift traffic 50%: wait 5m", "wait", timedelta(minutes=5)),
        ("shift traffic 100%", "shift_traffic", 100),
    ]
    assert [step.kind for step in steps].index("finalize") > [step.name for step in steps].index(
        "shift traffic 100%"
    )
    assert len({step.name for step in steps}) == len(steps)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        # A Kubernetes target keeps its (default) steps for strategy canary only.
        (KubernetesTarget.model_validate(K8S), [100]),
        (KubernetesTarget.model_validate({**K8S, "strategy": "blue-green", "service": "c"}), [100]),
        (
            LambdaTarget.model_validate(
                {"kind": "lambda", "function": "f", "alias": "live", "steps": [25, 100],
                 "artifact": "s3://artifacts/f/{version}.zip"}
            ),
            [25, 100],
        ),
        (
            ComposeTarget.model_validate(
                {"kind": "compose", "project": "shop", "file": "compose.yml", "service": "web"}
            ),
            [100],
        ),
    ],
)  # fmt: skip
def test_targets_without_steps_shift_all_traffic_at_once(
    shipped: dict[str, Playbook], target: Any, expected: list[int]
) -> None:
    steps = expand_steps(shipped["rolling"], target_config=target)
    assert [s.params["percent"] for s in steps if s.kind == "shift_traffic"] == expected


def test_wait_ready_takes_the_target_ready_timeout(shipped: dict[str, Playbook]) -> None:
    k8s = KubernetesTarget.model_validate({**K8S, "ready_timeout": "7m"})
    compose = ComposeTarget.model_validate(
        {"kind": "compose", "project": "shop", "file": "compose.yml", "service": "web"}
    )
    for target, timeout in ((k8s, timedelta(minutes=7)), (compose, timedelta(minutes=5))):
        steps = expand_steps(shipped["rolling"], target_config=target)
        assert [s.params for s in steps if s.kind == "wait_ready"] == [{"timeout": timeout}]


# --- running -------------------------------------------------------------------------------------


@dataclass
class RecordingTarget(Target):
    """A target that records what the playbook asked of it."""

    kind = "recording"
    strategies = ("rolling", "canary")
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    fail_on: str | None = None
    ready_after: float = 0.0

    def _act(self, *call: Any) -> StepResult:
        self.calls.append(call)
        if call[0] == self.fail_on:
            raise TargetError(f"{call[0]} refused: quota exceeded")
        return StepResult(summary=f"{call[0]} done", state={call[0]: True})

    async def current(self) -> Running:
        return Running(version="v41", detail="v41 runs")

    def plan(self, ctx: DeployContext) -> list[str]:
        return []

    async def prepare(self, ctx: DeployContext) -> StepResult:
        return self._act("prepare", ctx.version)

    async def wait_ready(self, ctx: DeployContext, *, timeout: timedelta) -> StepResult:
        await asyncio.sleep(self.ready_after)
        return self._act("wait_ready", timeout)

    async def shift_traffic(self, ctx: DeployContext, percent: int) -> StepResult:
        return self._act("shift_traffic", percent)

    async def finalize(self, ctx: DeployContext) -> StepResult:
        return self._act("finalize")

    async def cleanup(self, ctx: DeployContext) -> StepResult:
        return self._act("cleanup")

    async def rollback(self, ctx: DeployContext) -> StepResult:
        return self._act("rollback")


def context(
    workdir: Path,
    *,
    svc: Service | None = None,
    env: Environment | None = None,
    target: Target | None = None,
    version: str = "v42",
    previous_version: str | None = "v41",
) -> StepContext:
    return StepContext(
        deploy=DeployContext(
            service="checkout",
            environment="prod",
            version=version,
            strategy="rolling",
            previous_version=previous_version,
        ),
        target=target or RecordingTarget(),
        service=svc or service(),
        environment=env or Environment(name="prod"),
        workdir=workdir,
        env={"PATH": os.environ["PATH"]},
        cancelled=asyncio.Event(),
    )


def run(*argv: str, **params: Any) -> Step:
    return Step("command", "run", {"argv": argv, **params})


def python(code: str, *args: str) -> tuple[str, ...]:
    return (PYTHON, "-c", code, *args)


async def test_run_substitutes_placeholders_per_argument(tmp_path: Path) -> None:
    code = "import os, sys; print(sys.argv[1:], os.getcwd(), os.environ['OPSBOT_VERSION'])"
    step = run(*python(code, "{service}", "--env={env}", "{version}", "{previous_version}"))
    result = await run_step(step, context(tmp_path))
    assert result.output == f"['checkout', '--env=prod', 'v42', 'v41'] {tmp_path} v42"
    assert result.summary.endswith(" succeeded")


async def test_run_never_uses_a_shell(tmp_path: Path) -> None:
    version = "v42; touch pwned $(touch pwned2)"
    step = run(*python("import sys; print(sys.argv[1])", "{version}"))
    result = await run_step(step, context(tmp_path, version=version))
    assert result.output == version
    assert files_in(tmp_path) == []


async def test_unknown_previous_version_fails_instead_of_passing_an_empty_argument(
    tmp_path: Path,
) -> None:
    step = run(*python("pass", "{previous_version}"))
    with pytest.raises(StepFailed, match=r"\{previous_version\} in '\{previous_version\}' is"):
        await run_step(step, context(tmp_path, previous_version=None))


async def test_run_times_out_and_kills_the_command_with_its_children(tmp_path: Path) -> None:
    spawn = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    with pytest.raises(StepFailed) as raised:
        await run_step(run(*python(spawn), timeout=timedelta(seconds=2)), context(tmp_path))
    assert time.monotonic() - started < 5
    assert str(raised.value).endswith(" timed out after 2s")
    child = int(raised.value.output)
    await wait_until_gone(child)


def files_in(directory: Path) -> list[Path]:
    return list(directory.iterdir())


def is_running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie was killed and waits to be reaped


async def wait_until_gone(pid: int) -> None:
    for _ in range(200):
        if not is_running(pid):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"process {pid} still runs")


async def test_run_keeps_the_last_100_lines_of_output(tmp_path: Path) -> None:
    step = run(*python("import sys\nfor i in range(150): print(f'line {i}')\nsys.exit(3)"))
    with pytest.raises(StepFailed) as raised:
        await run_step(step, context(tmp_path))
    assert str(raised.value).endswith(" exited with status 3")
    lines = raised.value.output.splitlines()
    assert lines == [f"line {i}" for i in range(50, 150)]


async def test_run_reports_a_missing_command(tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match=r"command not found \(\./scripts/nope\.sh\)"):
        await run_step(run("./scripts/nope.sh", "{env}"), context(tmp_path))


async def test_when_exists_skips_a_script_the_repository_does_not_have(tmp_path: Path) -> None:
    step = run("./scripts/verify-environment.sh", "{env}", when_exists=True)
    result = await run_step(step, context(tmp_path))
    assert result == StepResult(
        summary=f"skipped: ./scripts/verify-environment.sh does not exist in {tmp_path}"
    )


async def test_when_exists_runs_a_script_the_repository_has(tmp_path: Path) -> None:
    script = tmp_path / "scripts" / "verify-environment.sh"
    script.parent.mkdir()
    script.write_text(f"#!{PYTHON}\nimport sys\nprint('verified', sys.argv[1])\n")
    script.chmod(0o755)
    step = run("./scripts/verify-environment.sh", "{env}", when_exists=True)
    result = await run_step(step, context(tmp_path))
    assert result.output == "verified prod"
    assert result.summary == "./scripts/verify-environment.sh prod succeeded"


async def abort_soon(ctx: StepContext) -> None:
    await asyncio.sleep(0.05)
    ctx.cancelled.set()


@pytest.mark.parametrize(
    "step",
    [
        Step("pause", "wait", {"duration": timedelta(minutes=10)}),
        Step("monitor", "monitor", {"duration": timedelta(minutes=10)}),
        run(*python("import time; time.sleep(60)")),
        Step("ready", "wait_ready", {"timeout": timedelta(minutes=10)}),
    ],
    ids=["wait", "monitor", "run", "wait_ready"],
)
async def test_abort_stops_a_step_quickly(tmp_path: Path, step: Step) -> None:
    ctx = context(tmp_path, target=RecordingTarget(ready_after=60))
    # The monitoring window is run by the engine, with the catalog (bot/deploys/monitor.py).
    work = monitor(step, ctx) if step.kind == "monitor" else run_step(step, ctx)
    started = time.monotonic()
    with pytest.raises(StepAborted):
        await asyncio.gather(work, abort_soon(ctx))
    assert time.monotonic() - started < 1


async def test_nothing_starts_once_the_deploy_is_cancelled(tmp_path: Path) -> None:
    target = RecordingTarget()
    ctx = context(tmp_path, target=target)
    ctx.cancelled.set()
    with pytest.raises(StepAborted):
        await run_step(Step("deploy", "prepare", {}), ctx)
    assert target.calls == []


async def test_target_steps_call_the_target_in_order(tmp_path: Path) -> None:
    target = RecordingTarget()
    ctx = context(tmp_path, target=target)
    playbook = Playbook(
        name="p",
        description="",
        strategies=(),
        checks=(),
        steps=(
            Step("deploy", "prepare", {}),
            Step("ready", "wait_ready", {}),
            Step("shift", "shift_traffic", {"steps": [20, 100], "step_wait": MS}),
            Step("finalize", "finalize", {}),
            Step("clean up", "cleanup", {}),
        ),
    )
    results = [await run_step(step, ctx) for step in expand_steps(playbook, target_config=object())]
    assert target.calls == [
        ("prepare", "v42"),
        ("wait_ready", timedelta(minutes=5)),
        ("shift_traffic", 20),
        ("shift_traffic", 100),
        ("finalize",),
        ("cleanup",),
    ]
    assert results[0] == StepResult(summary="prepare done", state={"prepare": True})


async def test_target_error_becomes_step_failed(tmp_path: Path) -> None:
    ctx = context(tmp_path, target=RecordingTarget(fail_on="finalize"))
    with pytest.raises(StepFailed, match=r"^finalize refused: quota exceeded$"):
        await run_step(Step("finalize", "finalize", {}), ctx)


async def test_smoke_runs_the_service_smoke_command(tmp_path: Path) -> None:
    code = "import sys; print('smoke', *sys.argv[1:])"
    svc = service(smoke={"command": [PYTHON, "-c", code, "{service}", "{env}", "{version}"]})
    result = await run_step(Step("smoke test", "smoke", {}), context(tmp_path, svc=svc))
    assert result.output == "smoke checkout prod v42"
    slow = service(smoke={"command": [PYTHON, "-c", "import time; time.sleep(9)"], "timeout": "1s"})
    with pytest.raises(StepFailed, match=r"timed out after 1s$"):
        await run_step(Step("smoke test", "smoke", {}), context(tmp_path, svc=slow))


async def test_steps_without_their_catalog_entry_are_skipped(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    for step, summary in [
        (Step("smoke", "smoke", {}), "skipped: checkout has no smoke test in the catalog"),
        (Step("baseline", "health_baseline", {}),
         "skipped: checkout has no health URL in the catalog"),
    ]:  # fmt: skip
        assert await run_step(step, ctx) == StepResult(summary=summary)


# --- HTTP steps against a local server -----------------------------------------------------------


@dataclass
class HealthServer:
    url: str
    statuses: list[int]  # answers to give, in order; the last one repeats
    requests: list[str] = field(default_factory=list)


@pytest.fixture
async def health() -> AsyncIterator[HealthServer]:
    server = HealthServer(url="", statuses=[200])

    async def answer(request: web.Request) -> web.Response:
        server.requests.append(request.path)
        status = server.statuses.pop(0) if len(server.statuses) > 1 else server.statuses[0]
        return web.Response(status=status, text=f"{request.path} says {status}")

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


def http_check(url: str, **params: Any) -> Step:
    return Step("http", "http_check", {"url": url, "interval": MS, **params})


async def test_http_check_retries_until_the_expected_status(
    tmp_path: Path, health: HealthServer
) -> None:
    health.statuses = [503, 503, 200]
    step = http_check(f"{health.url}/ready/{{service}}/{{version}}", retries=3)
    result = await run_step(step, context(tmp_path))
    assert result.summary == f"GET {health.url}/ready/checkout/v42 answered 200 (attempt 3 of 4)"
    assert health.requests == ["/ready/checkout/v42"] * 3


async def test_http_check_fails_after_its_retries(tmp_path: Path, health: HealthServer) -> None:
    health.statuses = [503]
    with pytest.raises(StepFailed) as raised:
        await run_step(http_check(f"{health.url}/ready", retries=1), context(tmp_path))
    assert str(raised.value) == f"GET {health.url}/ready answered 503, expected 200 (2 attempts)"


async def test_http_check_reports_an_unreachable_url(tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match=r"^GET http://127\.0\.0\.1:9/ failed: .*\(1 attempt\)$"):
        await run_step(http_check("http://127.0.0.1:9/", retries=0), context(tmp_path))


async def test_health_baseline_keeps_status_and_body_digest(
    tmp_path: Path, health: HealthServer
) -> None:
    svc = service(health={"url": f"{health.url}/health/{{service}}/{{env}}"})
    result = await run_step(Step("baseline", "health_baseline", {}), context(tmp_path, svc=svc))
    url = f"{health.url}/health/checkout/prod"
    assert result.summary == f"health baseline: GET {url} answered 200"
    baseline = result.state["health_baseline"]
    assert baseline["status"] == 200
    assert baseline["digest"].startswith("sha256:") and len(baseline["digest"]) == 71


def monitoring(health: HealthServer, seconds: str = "1s") -> tuple[Service, Environment]:
    svc = service(health={"url": f"{health.url}/health"})
    return svc, Environment(name="prod", monitor=seconds)


@dataclass
class MonitorRun:
    """What the monitoring window needs of a running deploy (bot/deploys/monitor.py)."""

    details: dict[str, Any] = field(default_factory=dict)
    step_event: asyncio.Event = field(default_factory=asyncio.Event)
    promote_by: str | None = None
    abort_by: str | None = None


async def monitor(
    step: Step,
    ctx: StepContext,
    *,
    poll_interval: timedelta = timedelta(seconds=15),
    triggers: list[dict[str, Any]] | None = None,
) -> StepResult:
    """Run the `monitor` step as the engine does, with the catalog's poll interval and triggers
    (the runbook's defaults unless given)."""
    catalog = SimpleNamespace(
        metrics=MetricsSource(poll_interval=poll_interval),
        rollback_triggers=(
            [RollbackTrigger.model_validate(t) for t in triggers]
            if triggers is not None
            else Catalog.model_fields["rollback_triggers"].get_default(call_default_factory=True)
        ),
    )
    deps = SimpleNamespace(catalog=catalog, env={}, clock=utc_now)

    async def nothing(*_: Any) -> None:
        return None

    return await monitor_window(
        step,
        ctx,
        deps=deps,
        run=MonitorRun(),
        persist=nothing,
        say=nothing,  # type: ignore[arg-type]
    )


async def test_monitor_step_duration_and_interval_override_the_environment_and_catalog(
    tmp_path: Path, health: HealthServer
) -> None:
    svc, env = monitoring(health, "10m")  # the environment's window: ten minutes
    step = Step("monitor", "monitor", {"duration": timedelta(seconds=1), "interval": 100 * MS})
    started = time.monotonic()
    ctx = context(tmp_path, svc=svc, env=env)
    result = await monitor(step, ctx, poll_interval=timedelta(seconds=15))
    assert 1 <= time.monotonic() - started < 3
    assert result.summary == "every rollback trigger within its limit for 1s"
    # One health poll every 100 ms for a second (not one every 15 s for ten minutes).
    assert 8 <= len(health.requests) <= 12, health.requests


async def test_monitor_step_defaults_to_the_environment_window_and_catalog_interval(
    tmp_path: Path, health: HealthServer
) -> None:
    svc, env = monitoring(health, "1s")
    started = time.monotonic()
    result = await monitor(
        Step("monitor", "monitor", {}), context(tmp_path, svc=svc, env=env), poll_interval=250 * MS
    )
    assert 1 <= time.monotonic() - started < 3
    assert result.summary == "every rollback trigger within its limit for 1s"
    assert 4 <= len(health.requests) <= 6, health.requests


async def test_monitor_is_skipped_without_a_window(tmp_path: Path, health: HealthServer) -> None:
    svc, env = monitoring(health, "0s")
    result = await monitor(Step("monitor", "monitor", {}), context(tmp_path, svc=svc, env=env))
    assert result.summary == "skipped: prod has no monitoring window"
    assert health.requests == []


async def test_monitor_polls_guard_fails_when_most_of_the_last_polls_failed(
    tmp_path: Path, health: HealthServer
) -> None:
    svc, env = monitoring(health, "10m")
    health.statuses = [503, 200, 503, 503, 200]  # then 200 for ever; no trigger watches health
    step = Step("monitor", "monitor", {"interval": 20 * MS, "polls": 4})
    with pytest.raises(TriggerFired) as raised:
        await monitor(step, context(tmp_path, svc=svc, env=env), triggers=[])
    assert raised.value.rule == "health-polls"
    assert str(raised.value).startswith(
        f"the health check failed 3 of the last 4 polls while monitoring:"
        f" GET {health.url}/health answered 503. Values every 0s: 1, 0, 1, 1 "
    )
    assert len(health.requests) == 4


async def test_monitor_polls_guard_tolerates_a_minority_of_failed_polls(
    tmp_path: Path, health: HealthServer
) -> None:
    svc, env = monitoring(health, "1s")
    health.statuses = [503, 200]  # one failure in the last four polls is tolerated
    step = Step("monitor", "monitor", {"interval": 20 * MS, "polls": 4})
    result = await monitor(step, context(tmp_path, svc=svc, env=env), triggers=[])
    assert result.summary == "every rollback trigger within its limit for 1s"
    assert len(health.requests) > 10


@pytest.mark.parametrize(
    ("polls", "window", "tripped"),
    [
        ([], 4, False),
        ([False], 4, False),
        ([False, False], 4, False),
        ([False, False, False], 4, True),
        ([False, False, True, True], 4, False),
        ([False, False, False, True, True, True, True], 4, False),
        ([True, False, True, False, False], 4, True),
        ([False], 1, True),
    ],
)
def test_health_guard(polls: list[bool], window: int, tripped: bool) -> None:
    assert health_guard_tripped(polls, window) is tripped


# --- custom checks -------------------------------------------------------------------------------


def check(**fields: Any) -> Check:
    defaults: dict[str, Any] = {
        "name": "ci",
        "run": None,
        "http_get": None,
        "expect_status": 200,
        "timeout": timedelta(seconds=5),
    }
    return Check(**{**defaults, **fields})


async def test_run_check_passes_and_refuses_by_exit_status(tmp_path: Path) -> None:
    passing = check(run=python("pass", "{version}"))
    assert verdict(await run_check(passing, context(tmp_path))) == (
        "check:ci",
        True,
        f"check:ci: {PYTHON} -c pass v42 passed",
    )
    failing = check(run=python("import sys; print('3 tests failed'); sys.exit(1)"))
    result = await run_check(failing, context(tmp_path))
    assert result.passed is False
    assert verdict(result)[2].endswith(" exited with status 1: 3 tests failed")


async def test_http_check_gate(tmp_path: Path, health: HealthServer) -> None:
    health.statuses = [409]
    gate = check(name="change-window", http_get=f"{health.url}/open/{{env}}", expect_status=204)
    assert verdict(await run_check(gate, context(tmp_path))) == (
        "check:change-window",
        False,
        f"check:change-window: GET {health.url}/open/prod answered 409, expected 204",
    )


async def test_run_keeps_long_lines_in_bounded_form(tmp_path: Path) -> None:
    step = run(*python("print('x' * 100_000); print('done')"))
    result = await run_step(step, context(tmp_path))
    assert result.output.splitlines() == ["x" * 2000 + " […]", "done"]
