"""The Lambda target against moto's server over HTTP: canary steps, refusals, rollback, plan."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest

from bot.catalog import LambdaTarget
from bot.plugins import make_target
from bot.targets.aws_lambda import STATE_PREVIOUS, STATE_VERSION, LambdaDeployTarget
from bot.targets.base import DeployContext, TargetError
from tests.fakes.aws import (
    LambdaFunction,
    MotoServer,
    aws_client,
    create_lambda_function,
    put_artifact,
    running_moto,
)

ALIAS = "live"


def artifact_of(function: str) -> str:
    return f"s3://artifacts/{function}/{{version}}.zip"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    # One server for the module: starting it is cheap, but each test gets its own function.
    with running_moto() as server:
        yield server


@pytest.fixture
def function(moto: MotoServer) -> LambdaFunction:
    name = f"thumbnails-{uuid.uuid4().hex[:8]}"
    deployed = create_lambda_function(
        moto.env, function=name, alias=ALIAS, artifact=artifact_of(name), version="v1"
    )
    put_artifact(moto.env, artifact_of(name), "v2")
    return deployed


def make(function: LambdaFunction, env: dict[str, str], **kwargs: Any) -> LambdaDeployTarget:
    config = LambdaTarget(
        kind="lambda",
        function=function.function,
        alias=function.alias,
        artifact=artifact_of(function.function),
        **kwargs.pop("config", {}),
    )
    return LambdaDeployTarget(
        config, service="thumbnails", environment="prod", env=env, poll_interval=0.05, **kwargs
    )


@pytest.fixture
async def target(function: LambdaFunction, moto: MotoServer) -> AsyncIterator[LambdaDeployTarget]:
    target = make(function, moto.env)
    yield target
    await target.close()


def deploy_of(version: str, **state: Any) -> DeployContext:
    return DeployContext(
        service="thumbnails",
        environment="prod",
        version=version,
        strategy="canary",
        previous_version="v1",
        state=dict(state),
    )


def alias_of(moto: MotoServer, function: LambdaFunction) -> tuple[str, dict[str, float]]:
    """What AWS says the alias is: (FunctionVersion, AdditionalVersionWeights)."""
    alias = aws_client(moto.env, "lambda").get_alias(FunctionName=function.function, Name=ALIAS)
    routing = alias.get("RoutingConfig") or {}
    return alias["FunctionVersion"], routing.get("AdditionalVersionWeights") or {}


def published_versions(moto: MotoServer, function: LambdaFunction) -> list[str]:
    answer = aws_client(moto.env, "lambda").list_versions_by_function(
        FunctionName=function.function
    )
    return [entry["Version"] for entry in answer["Versions"] if entry["Version"] != "$LATEST"]


def code_sha(moto: MotoServer, function: LambdaFunction) -> str:
    client = aws_client(moto.env, "lambda")
    return client.get_function_configuration(FunctionName=function.function)["CodeSha256"]


async def prepared(target: LambdaDeployTarget, ctx: DeployContext) -> DeployContext:
    """Run prepare and keep its state, as the engine does between steps."""
    result = await target.prepare(ctx)
    ctx.state.update(result.state)
    return ctx


async def test_canary_routes_weights_to_the_new_version_then_moves_the_alias(
    target: LambdaDeployTarget, function: LambdaFunction, moto: MotoServer
) -> None:
    ctx = await prepared(target, deploy_of("v2"))
    assert ctx.state == {STATE_VERSION: "2", STATE_PREVIOUS: "1"}
    assert alias_of(moto, function) == ("1", {})  # prepare moves no traffic

    ready = await target.wait_ready(ctx, timeout=timedelta(seconds=5))
    assert "Active" in ready.summary

    await target.shift_traffic(ctx, 10)
    assert alias_of(moto, function) == ("1", {"2": 0.1})
    running = await target.current()
    assert running.version == "v1"
    assert "10 % on version 2 (v2)" in running.detail

    await target.shift_traffic(ctx, 50)
    assert alias_of(moto, function) == ("1", {"2": 0.5})

    await target.shift_traffic(ctx, 100)
    assert alias_of(moto, function) == ("2", {})
    await target.finalize(ctx)
    assert alias_of(moto, function) == ("2", {})

    running = await target.current()
    assert running.version == "v2"
    assert "%" not in running.detail
    assert (await target.cleanup(ctx)).summary


async def test_missing_artifact_is_refused_before_anything_changes(
    target: LambdaDeployTarget, function: LambdaFunction, moto: MotoServer
) -> None:
    code_before = code_sha(moto, function)
    versions_before = published_versions(moto, function)

    with pytest.raises(TargetError, match=r"artifact s3://artifacts/.+/v9\.zip not found"):
        await target.prepare(deploy_of("v9"))

    assert code_sha(moto, function) == code_before
    assert published_versions(moto, function) == versions_before
    assert alias_of(moto, function) == ("1", {})


async def test_rollback_mid_canary_puts_the_alias_back_with_an_empty_routing_config(
    target: LambdaDeployTarget, function: LambdaFunction, moto: MotoServer
) -> None:
    ctx = await prepared(target, deploy_of("v2"))
    await target.shift_traffic(ctx, 50)

    result = await target.rollback(ctx)

    assert alias_of(moto, function) == ("1", {})
    assert "version 1" in result.summary
    assert (await target.current()).version == "v1"


async def test_rollback_without_deploy_state_finds_the_version_by_its_description(
    target: LambdaDeployTarget, function: LambdaFunction, moto: MotoServer
) -> None:
    ctx = await prepared(target, deploy_of("v2"))
    await target.finalize(ctx)
    assert alias_of(moto, function) == ("2", {})

    # A rollback pressed later in an alert thread knows only the version people saw before.
    await target.rollback(deploy_of("v2"))

    assert alias_of(moto, function) == ("1", {})


async def test_rollback_to_a_version_never_published_is_refused(
    target: LambdaDeployTarget, function: LambdaFunction, moto: MotoServer
) -> None:
    ctx = DeployContext(service="thumbnails", environment="prod", version="v2", strategy="canary")
    ctx.previous_version = "v0"
    with pytest.raises(TargetError, match="no published version of v0"):
        await target.rollback(ctx)
    assert alias_of(moto, function) == ("1", {})


async def test_plan_lists_the_calls_and_changes_nothing(
    target: LambdaDeployTarget, function: LambdaFunction, moto: MotoServer
) -> None:
    code_before = code_sha(moto, function)
    versions_before = published_versions(moto, function)
    name = function.function

    lines = target.plan(deploy_of("v2"))

    assert f"lambda:UpdateFunctionCode {name} from s3://artifacts/{name}/v2.zip" in lines
    assert f"lambda:PublishVersion {name} with description v2" in lines
    updates = [line for line in lines if line.startswith("lambda:UpdateAlias")]
    assert updates[0].startswith("lambda:UpdateAlias live → 10 % on the new version")
    assert updates[1].startswith("lambda:UpdateAlias live → 50 % on the new version")
    assert updates[2] == "lambda:UpdateAlias live → 100 % on the new version"
    assert code_sha(moto, function) == code_before
    assert published_versions(moto, function) == versions_before
    assert alias_of(moto, function) == ("1", {})


async def test_prepare_called_again_publishes_nothing_twice(
    target: LambdaDeployTarget, function: LambdaFunction, moto: MotoServer
) -> None:
    ctx = await prepared(target, deploy_of("v2"))
    versions = published_versions(moto, function)

    again = await target.prepare(ctx)

    assert "already published" in again.summary
    assert published_versions(moto, function) == versions


async def test_shift_before_prepare_is_refused(target: LambdaDeployTarget) -> None:
    with pytest.raises(TargetError, match="prepare did not run"):
        await target.shift_traffic(deploy_of("v2"), 10)


async def test_aws_refusal_names_the_error_code(moto: MotoServer) -> None:
    ghost = LambdaFunction(
        function="no-such-function", alias=ALIAS, version="v1", version_number="1"
    )
    put_artifact(moto.env, artifact_of(ghost.function), "v2")
    target = make(ghost, moto.env)

    with pytest.raises(TargetError, match="ResourceNotFoundException") as refused:
        await target.prepare(deploy_of("v2"))
    assert refused.value.retryable is False


async def test_unreachable_aws_is_a_retryable_error(function: LambdaFunction) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_REGION": "eu-central-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    target = make(function, env, max_attempts=1, connect_timeout=1.0)

    with pytest.raises(TargetError, match="cannot reach AWS") as failed:
        await target.current()
    assert failed.value.retryable is True


async def test_region_in_the_catalog_wins_over_aws_region(
    function: LambdaFunction, moto: MotoServer
) -> None:
    env = {**moto.env, "AWS_REGION": "us-east-1"}  # moto keeps each region apart
    target = make(function, env, config={"region": "eu-central-1"})

    assert (await target.current()).version == "v1"


async def test_make_target_builds_it_from_the_catalog_entry(
    function: LambdaFunction, moto: MotoServer
) -> None:
    config = LambdaTarget(
        kind="lambda",
        function=function.function,
        alias=ALIAS,
        artifact=artifact_of(function.function),
    )
    target = make_target(config, service="thumbnails", environment="prod", env=moto.env)

    assert isinstance(target, LambdaDeployTarget)
    assert target.strategies == ("canary",)
    running = await target.current()
    assert running.version == "v1"
    assert running.state == {"live_lambda_version": function.version_number}
    await target.close()
