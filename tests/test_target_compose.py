"""The Compose target against the `docker` stand-in: the commands it runs and what it reports."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.catalog import ComposeTarget
from bot.plugins import make_target
from bot.targets.base import DeployContext, TargetError
from bot.targets.compose import STATE_PREVIOUS, ComposeDeployTarget, image_tag, parse_ps

FAKES = Path(__file__).resolve().parent / "fakes"
BASE = ["compose", "-p", "shop", "-f", "/srv/shop/compose.yml"]
PS = [*BASE, "ps", "--all", "--format", "json", "web"]
PULL = [*BASE, "pull", "web"]
UP = [*BASE, "up", "-d", "--no-deps", "web"]
UP_FORCED = [*BASE, "up", "-d", "--force-recreate", "--no-deps", "web"]


@dataclass
class Docker:
    """The stand-in's files and the environment that puts it first on PATH."""

    env: dict[str, str]
    log: Path
    state: Path

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def changes(self) -> list[tuple[list[str], str | None]]:
        """Every call but the read-only `ps`, as (argv, the VERSION it saw)."""
        return [(c["argv"], c["version"]) for c in self.calls() if c["argv"] != PS]

    def running(self, version: str) -> None:
        """Start the world with `web` running `version`, as an earlier deploy left it."""
        self.state.write_text(
            json.dumps(
                {
                    "web": {
                        "Name": "shop-web-1",
                        "Image": f"registry.example/web:{version}",
                        "Service": "web",
                        "Project": "shop",
                        "State": "running",
                        "Health": "",
                        "Status": "Up 3 days",
                    }
                }
            )
        )


@pytest.fixture
def docker(tmp_path: Path) -> Docker:
    log, state = tmp_path / "docker.jsonl", tmp_path / "state.json"
    # The stand-in's `#!/usr/bin/env python3` finds the interpreter running the tests first: it
    # starts much faster than a version manager's shim would.
    path = [str(FAKES), str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)]
    env = {
        "PATH": os.pathsep.join(path),
        "DOCKER_STANDIN_LOG": str(log),
        "DOCKER_STANDIN_STATE": str(state),
        "DOCKER_STANDIN_IMAGE": "registry.example/web",
    }
    docker = Docker(env=env, log=log, state=state)
    docker.running("v1")
    return docker


def make(env: dict[str, str], **kwargs: Any) -> ComposeDeployTarget:
    config = ComposeTarget(
        kind="compose", project="shop", file="/srv/shop/compose.yml", service="web"
    )
    kwargs.setdefault("poll_interval", 0.01)
    return ComposeDeployTarget(config, service="web", environment="staging", env=env, **kwargs)


def deploy_of(version: str, **state: Any) -> DeployContext:
    return DeployContext(
        service="web",
        environment="staging",
        version=version,
        strategy="recreate",
        state=dict(state),
    )


async def deploy(target: ComposeDeployTarget, ctx: DeployContext) -> None:
    """The engine's order for a recreate deploy, keeping each step's state."""
    for step in (
        target.prepare(ctx),
        target.wait_ready(ctx, timeout=timedelta(seconds=5)),
        target.shift_traffic(ctx, 100),
        target.finalize(ctx),
        target.cleanup(ctx),
    ):
        result = await step
        ctx.state.update(result.state)


async def test_deploy_pulls_then_recreates_the_service_with_version_set(docker: Docker) -> None:
    target = make(docker.env)
    ctx = deploy_of("v2")

    await deploy(target, ctx)

    assert docker.changes() == [(PULL, "v2"), (UP, "v2")]
    assert {tuple(c["argv"]) for c in docker.calls()} == {tuple(PS), tuple(PULL), tuple(UP)}
    assert ctx.state == {STATE_PREVIOUS: "v1"}


async def test_prepare_keeps_the_command_output_for_the_thread(docker: Docker) -> None:
    result = await make(docker.env).prepare(deploy_of("v2"))

    assert "docker compose -p shop -f /srv/shop/compose.yml pull web" in result.output
    assert "web Pulled" in result.output


async def test_failed_pull_reports_docker_s_stderr_and_recreates_nothing(docker: Docker) -> None:
    docker.env["DOCKER_STANDIN_FAIL"] = "pull"
    target = make(docker.env)

    with pytest.raises(TargetError, match=r"manifest for registry\.example/web:v2 not found"):
        await target.prepare(deploy_of("v2"))

    assert docker.changes() == [(PULL, "v2")]
    assert (await target.current()).version == "v1"


async def test_current_reports_the_tag_of_the_recreated_container(docker: Docker) -> None:
    target = make(docker.env)
    before = await target.current()
    assert before.version == "v1"

    await deploy(target, deploy_of("v2"))

    after = await target.current()
    assert after.version == "v2"
    assert "registry.example/web:v2" in after.detail


async def test_rollback_recreates_on_the_previous_tag(docker: Docker) -> None:
    target = make(docker.env)
    ctx = deploy_of("v2")
    await deploy(target, ctx)

    result = await target.rollback(ctx)

    assert docker.changes()[-1] == (UP_FORCED, "v1")
    assert (await target.current()).version == "v1"
    assert "v1" in result.summary


async def test_rollback_prefers_the_version_the_engine_names(docker: Docker) -> None:
    docker.running("v3")
    ctx = deploy_of("v3")
    ctx.previous_version = "v2"

    await make(docker.env).rollback(ctx)

    assert docker.changes() == [(UP_FORCED, "v2")]


async def test_rollback_without_a_previous_version_is_refused(docker: Docker) -> None:
    with pytest.raises(TargetError, match="no previous version"):
        await make(docker.env).rollback(deploy_of("v2"))
    assert docker.changes() == []


async def test_missing_docker_cli_is_a_clear_error(docker: Docker, tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    target = make({**docker.env, "PATH": str(empty)})

    with pytest.raises(TargetError, match="docker CLI not found on PATH"):
        await target.prepare(deploy_of("v2"))
    with pytest.raises(TargetError, match="docker CLI not found on PATH"):
        await target.current()


async def test_recreate_waits_for_the_healthcheck_to_pass(docker: Docker) -> None:
    docker.env["DOCKER_STANDIN_UP_STATE"] = "running/starting"
    docker.env["DOCKER_STANDIN_STARTING_POLLS"] = "2"
    target = make(docker.env)

    result = await target.shift_traffic(deploy_of("v2"), 100)

    assert "running/healthy" in result.summary
    polls_after_up = docker.calls()[[c["argv"] for c in docker.calls()].index(UP) + 1 :]
    assert len(polls_after_up) == 3  # starting, starting, healthy


async def test_a_container_that_exits_fails_at_once(docker: Docker) -> None:
    docker.env["DOCKER_STANDIN_UP_STATE"] = "exited"
    target = make(docker.env, ready_timeout=timedelta(minutes=5))

    with pytest.raises(TargetError, match=r"shop-web-1 \(registry.example/web:v2\) is exited"):
        await target.shift_traffic(deploy_of("v2"), 100)


async def test_a_hung_command_is_stopped_after_its_timeout(docker: Docker) -> None:
    docker.env["DOCKER_STANDIN_HANG"] = "pull"
    target = make(docker.env, command_timeout=timedelta(seconds=0.5))

    with pytest.raises(TargetError, match=r"did not finish within 0\.5 s") as stopped:
        await target.prepare(deploy_of("v2"))
    assert stopped.value.retryable is True


async def test_compose_cannot_split_traffic(docker: Docker) -> None:
    with pytest.raises(TargetError, match="recreate moves all of it at once"):
        await make(docker.env).shift_traffic(deploy_of("v2"), 10)
    assert docker.calls() == []


async def test_finalize_after_the_switch_changes_nothing(docker: Docker) -> None:
    target = make(docker.env)
    ctx = deploy_of("v2")
    await target.shift_traffic(ctx, 100)

    result = await target.finalize(ctx)

    assert "already" in result.summary
    assert docker.changes() == [(UP, "v2")]


async def test_plan_shows_the_argument_lists_and_runs_nothing(docker: Docker) -> None:
    lines = make(docker.env).plan(deploy_of("v2"))

    prefix = "VERSION=v2 docker compose -p shop -f /srv/shop/compose.yml"
    assert lines == [
        f"{prefix} ps --all --format json web  (remember the running tag)",
        f"{prefix} pull web",
        f"{prefix} up -d --no-deps web",
        f"{prefix} ps --all --format json web  (until running and healthy)",
    ]
    assert docker.calls() == []


async def test_make_target_builds_it_from_the_catalog_entry(docker: Docker) -> None:
    config = ComposeTarget(
        kind="compose", project="shop", file="/srv/shop/compose.yml", service="web"
    )
    target = make_target(config, service="web", environment="staging", env=docker.env)

    assert isinstance(target, ComposeDeployTarget)
    assert target.strategies == ("recreate",)
    assert (await target.current()).version == "v1"


@pytest.mark.parametrize(
    ("image", "tag"),
    [
        ("registry.example/web:v42", "v42"),
        ("registry.example:5000/team/web:2025.11.1", "2025.11.1"),
        ("registry.example:5000/web", "latest"),
        ("web@sha256:abc", "latest"),
        ("web:v1@sha256:abc", "v1"),
    ],
)
def test_image_tag(image: str, tag: str) -> None:
    assert image_tag(image) == tag


def test_ps_output_is_read_in_both_compose_formats() -> None:
    row = {"Name": "shop-web-1", "Image": "r/web:v2", "State": "running", "Health": "healthy"}
    lines = json.dumps(row) + "\n" + json.dumps({**row, "Name": "shop-web-2"}) + "\n"
    array = json.dumps([row])

    assert [c.name for c in parse_ps(lines)] == ["shop-web-1", "shop-web-2"]
    assert [c.tag for c in parse_ps(array)] == ["v2"]
    assert parse_ps("") == []
    with pytest.raises(TargetError, match="cannot read the output"):
        parse_ps("not json")
