"""The AWS Lambda target: publish the artifact as a new version and move an alias onto it in steps.

The runbook's option C as API calls. `prepare` runs UpdateFunctionCode from the artifact in S3
and PublishVersion (the opsbot version goes into the version's Description, which is how
`current()` tells what runs); `shift_traffic(p)` leaves the alias on the previous version and
sends p % to the new one through the alias's RoutingConfig; 100 % and `finalize` point the alias
at the new version with an empty routing config; `rollback` points it back, routing config `{}`.

boto3 is synchronous, so every call runs in a worker thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    ProfileNotFound,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from bot.catalog import LambdaTarget
from bot.targets.base import (
    DeployContext,
    Running,
    StepResult,
    Target,
    TargetError,
)

__all__ = ["AwsError", "AwsSessions", "LambdaDeployTarget"]

# Keys this target keeps in DeployContext.state.
STATE_VERSION = "lambda_version"  # the Lambda version number published for this deploy
STATE_PREVIOUS = "previous_lambda_version"  # the alias's FunctionVersion before the deploy

# AWS answers that mean "try again shortly" rather than "this cannot work".
_RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceException",
        "ServiceUnavailable",
        "InternalFailure",
        "ResourceConflictException",  # another update of the function is still in progress
        "PreconditionFailedException",  # the alias changed between our read and our write
    }
)
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NoSuchBucket", "NotFound"})
# Lambda applies an update asynchronously; how long `prepare` waits for LastUpdateStatus.
_UPDATE_TIMEOUT = timedelta(minutes=5)


class AwsError(TargetError):
    """A failed AWS call; `code` is AWS's error code (e.g. ResourceNotFoundException)."""

    def __init__(self, message: str, *, code: str, retryable: bool = False) -> None:
        super().__init__(message, retryable=retryable)
        self.code = code


class LambdaDeployTarget(Target):
    """One Lambda function's alias in one environment, deployed by weighted alias routing."""

    kind = "lambda"
    strategies = ("canary",)

    def __init__(
        self,
        config: LambdaTarget,
        *,
        service: str,
        environment: str,
        env: Mapping[str, str],
        max_attempts: int = 3,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        poll_interval: float = 1.0,
        sessions: AwsSessions | None = None,
    ) -> None:
        self.config = config
        # Without a holder of shared sessions the target keeps its own.
        self._sessions = sessions or AwsSessions()
        self.service = service
        self.environment = environment
        self._env = dict(env)
        self._poll_interval = poll_interval
        # Few, quick retries: the engine retries retryable errors itself and reports them, and a
        # person waits in Slack meanwhile, so botocore's defaults (60 s reads) are far too patient.
        self._botocore_config = Config(
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()

    # --- what runs --------------------------------------------------------------------------

    async def current(self) -> Running:
        alias = await self._get_alias()
        where = f"{self.config.function}:{self.config.alias}"
        if alias is None:
            return Running(version=None, detail=f"alias {where} does not exist")
        live = alias["FunctionVersion"]
        weights = _weights(alias)
        version = await self._description(live)
        detail = f"{where} → version {live} ({version or 'no opsbot version'})"
        state: dict[str, Any] = {"live_lambda_version": live}
        if weights:
            shares = []
            for number, weight in sorted(weights.items()):
                other = await self._description(number)
                shares.append(f"{_percent(weight)} % on version {number} ({other or '?'})")
            detail += ", " + ", ".join(shares)
            state["additional_version_weights"] = weights
        return Running(version=version, detail=detail, state=state)

    def plan(self, ctx: DeployContext) -> list[str]:
        function, alias = self.config.function, self.config.alias
        uri = self.config.artifact.format(version=ctx.version)
        previous = ctx.state.get(STATE_PREVIOUS)
        old = f"version {previous}" if previous else "the version it is on now"
        lines = [
            f"s3:HeadObject {uri} (refuse the deploy if the artifact is missing)",
            f"lambda:GetAlias {function}:{alias} (remember {old} for a rollback)",
            f"lambda:UpdateFunctionCode {function} from {uri}",
            f"lambda:PublishVersion {function} with description {ctx.version}",
            f"lambda:GetFunctionConfiguration {function} until the new version is Active",
        ]
        for percent in self.config.steps:
            if percent < 100:
                lines.append(
                    f"lambda:UpdateAlias {alias} → {percent} % on the new version,"
                    f" the rest on {old}"
                )
            else:
                lines.append(f"lambda:UpdateAlias {alias} → 100 % on the new version")
        return lines

    # --- deploy actions ---------------------------------------------------------------------

    async def prepare(self, ctx: DeployContext) -> StepResult:
        function = self.config.function
        published = ctx.state.get(STATE_VERSION)
        if published is not None:
            # A retried step after a crash: the version exists already, publish nothing twice.
            existing = await self._configuration(published)
            if existing.get("Description") == ctx.version:
                return StepResult(
                    summary=f"{function} version {published} ({ctx.version}) already published",
                    state={STATE_VERSION: published},
                )
        if STATE_PREVIOUS in ctx.state:
            previous = ctx.state[STATE_PREVIOUS]
        else:
            alias = await self._get_alias()
            previous = alias["FunctionVersion"] if alias else None

        bucket, key = _split_s3(self.config.artifact.format(version=ctx.version))
        uri = f"s3://{bucket}/{key}"
        # Lambda answers a missing object with a generic InvalidParameterValueException (moto even
        # installs empty code); asking S3 first refuses a mistyped version before anything changes.
        try:
            await self._call("s3", "head_object", Bucket=bucket, Key=key)
        except AwsError as err:
            if err.code in _NOT_FOUND_CODES:
                raise TargetError(f"artifact {uri} not found; nothing was changed") from err
            raise

        await self._wait_for_update(timeout=_UPDATE_TIMEOUT)  # an earlier update still running
        await ctx.log(f"lambda:UpdateFunctionCode {function} from {uri}")
        updated = await self._call(
            "lambda", "update_function_code", FunctionName=function, S3Bucket=bucket, S3Key=key
        )
        await self._wait_for_update(timeout=_UPDATE_TIMEOUT)
        # CodeSha256 makes AWS refuse to publish if someone else changed the code meanwhile.
        version = await self._call(
            "lambda",
            "publish_version",
            FunctionName=function,
            Description=ctx.version,
            CodeSha256=updated["CodeSha256"],
        )
        number = version["Version"]
        summary = f"{function} version {number} published from {uri}"
        if version.get("Description") != ctx.version:
            # Lambda publishes nothing new for unchanged code and returns the existing version.
            summary += f" (same code as {version.get('Description') or 'an earlier version'})"
        if previous:
            summary += f"; alias {self.config.alias} stays on version {previous} for now"
        return StepResult(
            summary=summary,
            output=_dump(
                {
                    "UpdateFunctionCode": _pick(updated, "CodeSha256", "CodeSize", "RevisionId"),
                    "PublishVersion": _pick(version, "Version", "Description", "State"),
                }
            ),
            state={STATE_VERSION: number, STATE_PREVIOUS: previous},
        )

    async def wait_ready(self, ctx: DeployContext, *, timeout: timedelta) -> StepResult:
        number = self._published(ctx)
        deadline = time.monotonic() + timeout.total_seconds()
        interval = self._poll_interval
        while True:
            configuration = await self._configuration(number)
            state = configuration.get("State", "Active")
            if state == "Active":
                return StepResult(
                    summary=f"{self.config.function} version {number} ({ctx.version}) is Active",
                    output=_dump(_pick(configuration, "Version", "State", "LastUpdateStatus")),
                )
            if state == "Failed":
                reason = configuration.get("StateReason") or "no reason given"
                raise TargetError(
                    f"{self.config.function} version {number} failed to become Active: {reason}"
                )
            if time.monotonic() + interval > deadline:
                raise TargetError(
                    f"{self.config.function} version {number} is still {state} after"
                    f" {_seconds(timeout)}"
                )
            await asyncio.sleep(interval)
            interval = min(interval * 2, 10.0)

    async def shift_traffic(self, ctx: DeployContext, percent: int) -> StepResult:
        if not 0 <= percent <= 100:
            raise TargetError(f"cannot send {percent} % of traffic (0 to 100)")
        new = self._published(ctx)
        previous = ctx.state.get(STATE_PREVIOUS)
        if percent == 100 or not previous or previous == new:
            # Nothing to split against: the whole alias moves (a first deploy, or a redeploy
            # of the code that already runs).
            summary = await self._point_alias(new, {})
            if percent < 100:
                summary += f" (nothing older to keep {100 - percent} % on)"
            return StepResult(summary=summary)
        weights = {new: percent / 100} if percent else {}
        return StepResult(summary=await self._point_alias(previous, weights))

    async def finalize(self, ctx: DeployContext) -> StepResult:
        return StepResult(summary=await self._point_alias(self._published(ctx), {}))

    async def cleanup(self, ctx: DeployContext) -> StepResult:
        # Old versions are what a later rollback points at; deleting them would remove that.
        return StepResult(summary="nothing to clean up (old Lambda versions stay for rollbacks)")

    async def rollback(self, ctx: DeployContext) -> StepResult:
        target = ctx.state.get(STATE_PREVIOUS)
        if not target and ctx.previous_version:
            target = await self._version_described(ctx.previous_version)
        if not target:
            wanted = ctx.previous_version or "the version before the deploy"
            raise TargetError(
                f"cannot roll back {self.config.function}: no published version of {wanted}"
            )
        return StepResult(summary=await self._point_alias(target, {}, verb="back on"))

    async def close(self) -> None:
        with self._clients_lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    # --- helpers ----------------------------------------------------------------------------

    def _published(self, ctx: DeployContext) -> str:
        number = ctx.state.get(STATE_VERSION)
        if number is None:
            raise TargetError(
                f"no new version of {self.config.function} is published yet (prepare did not run)"
            )
        return str(number)

    async def _point_alias(self, number: str, weights: dict[str, float], verb: str = "→") -> str:
        """Set the alias to `number` plus `weights` unless it is there already; a summary line."""
        function, name = self.config.function, self.config.alias
        routing = {"AdditionalVersionWeights": weights}
        alias = await self._get_alias()
        if alias is None:
            await self._call(
                "lambda",
                "create_alias",
                FunctionName=function,
                Name=name,
                FunctionVersion=number,
                RoutingConfig=routing,
            )
        elif alias["FunctionVersion"] != number or _weights(alias) != weights:
            # RevisionId: AWS refuses the write if someone moved the alias since we read it.
            await self._call(
                "lambda",
                "update_alias",
                FunctionName=function,
                Name=name,
                FunctionVersion=number,
                RoutingConfig=routing,
                RevisionId=alias["RevisionId"],
            )
        if not weights:
            return f"alias {name} of {function} {verb} version {number}, no routing config"
        shares = ", ".join(f"{_percent(w)} % on version {v}" for v, w in sorted(weights.items()))
        return f"alias {name} of {function} {verb} version {number}, {shares}"

    async def _get_alias(self) -> dict[str, Any] | None:
        try:
            return await self._call(
                "lambda", "get_alias", FunctionName=self.config.function, Name=self.config.alias
            )
        except AwsError as err:
            if err.code == "ResourceNotFoundException":
                return None
            raise

    async def _configuration(self, qualifier: str) -> dict[str, Any]:
        return await self._call(
            "lambda",
            "get_function_configuration",
            FunctionName=self.config.function,
            Qualifier=qualifier,
        )

    async def _description(self, number: str) -> str | None:
        return (await self._configuration(number)).get("Description") or None

    async def _version_described(self, version: str) -> str | None:
        """The newest published Lambda version whose Description is the opsbot `version`."""

        def newest() -> str | None:
            paginator = self._client("lambda").get_paginator("list_versions_by_function")
            found: list[int] = []
            for page in paginator.paginate(FunctionName=self.config.function):
                for entry in page.get("Versions", []):
                    if entry["Version"] != "$LATEST" and entry.get("Description") == version:
                        found.append(int(entry["Version"]))
            return str(max(found)) if found else None

        return await self._run("lambda:ListVersionsByFunction", newest)

    async def _wait_for_update(self, *, timeout: timedelta) -> None:
        """Wait until $LATEST has no update in progress; TargetError if the last one failed."""
        deadline = time.monotonic() + timeout.total_seconds()
        interval = self._poll_interval
        while True:
            configuration = await self._configuration("$LATEST")
            status = configuration.get("LastUpdateStatus", "Successful")
            if status == "Successful":
                return
            if status == "Failed":
                reason = configuration.get("LastUpdateStatusReason") or "no reason given"
                code = configuration.get("LastUpdateStatusReasonCode") or "Failed"
                raise TargetError(f"updating {self.config.function} failed: {code}: {reason}")
            if time.monotonic() + interval > deadline:
                raise TargetError(
                    f"{self.config.function} is still updating after {_seconds(timeout)}",
                    retryable=True,
                )
            await asyncio.sleep(interval)
            interval = min(interval * 2, 10.0)

    async def _call(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        """One API call in a worker thread; AWS failures become `AwsError`."""
        label = f"{service}:{_pascal(operation)}"
        return await self._run(label, lambda: getattr(self._client(service), operation)(**params))

    async def _run(self, label: str, work: Callable[[], Any]) -> Any:
        try:
            return await asyncio.to_thread(work)
        except TargetError:
            raise
        except ClientError as err:
            error = err.response.get("Error", {})
            code = str(error.get("Code") or "Unknown")
            message = error.get("Message") or err.response.get("message") or str(err)
            raise AwsError(
                f"AWS {label} failed: {code}: {message}",
                code=code,
                retryable=code in _RETRYABLE_CODES,
            ) from err
        except (BotoConnectionError, HTTPClientError) as err:
            # Unreachable endpoint or a timeout: worth retrying later, unlike a refusal.
            raise AwsError(
                f"AWS {label} failed: cannot reach AWS: {err}",
                code="ConnectionError",
                retryable=True,
            ) from err
        except NoCredentialsError as err:
            raise AwsError(
                f"AWS {label} failed: no AWS credentials (set AWS_ACCESS_KEY_ID or AWS_PROFILE)",
                code="NoCredentials",
            ) from err
        except BotoCoreError as err:
            raise AwsError(f"AWS {label} failed: {err}", code=type(err).__name__) from err

    def _client(self, service: str) -> Any:
        """The boto3 client for `service`, built once (in a worker thread: loading is slow)."""
        with self._clients_lock:
            client = self._clients.get(service)
            if client is None:
                client = self._clients[service] = self._new_client(service)
            return client

    def _new_client(self, service: str) -> Any:
        env = self._env
        region = self.config.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if not region:
            raise TargetError(
                f"no AWS region for {self.config.function}: set region in the catalog or AWS_REGION"
            )
        # Service-specific endpoints win, as in the AWS CLI (AWS_ENDPOINT_URL_S3 for S3).
        endpoint = env.get(f"AWS_ENDPOINT_URL_{service.upper()}") or env.get("AWS_ENDPOINT_URL")
        with self._sessions.lock:  # botocore sessions are not thread-safe; their clients are
            session = self._sessions.session(env.get("AWS_PROFILE"))
            return session.client(
                service,
                region_name=region,
                endpoint_url=endpoint,
                aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
                aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
                aws_session_token=env.get("AWS_SESSION_TOKEN"),
                config=self._botocore_config,
            )


class AwsSessions:
    """One boto3 session per profile, for every Lambda target of a process that shares it.

    A session caches the parsed API models, which makes a client cost milliseconds instead of
    ~0.1 s of CPU (a target is built per request). The composition root owns one holder.
    """

    def __init__(self) -> None:
        self._sessions: dict[str | None, boto3.Session] = {}
        # botocore sessions are not thread-safe (their clients are): hold it while using one.
        self.lock = threading.Lock()

    def session(self, profile: str | None) -> boto3.Session:
        """The session of `profile` (None: the default); call with `lock` held."""
        session = self._sessions.get(profile)
        if session is None:
            try:
                session = self._sessions[profile] = boto3.Session(profile_name=profile)
            except ProfileNotFound as err:
                raise TargetError(f"AWS profile {profile!r} not found") from err
        return session


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _weights(alias: Mapping[str, Any]) -> dict[str, float]:
    routing = alias.get("RoutingConfig") or {}
    return dict(routing.get("AdditionalVersionWeights") or {})


def _percent(weight: float) -> str:
    return f"{weight * 100:g}"


def _seconds(duration: timedelta) -> str:
    return f"{duration.total_seconds():g} s"


def _pascal(operation: str) -> str:
    return "".join(part.capitalize() for part in operation.split("_"))


def _pick(answer: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {key: answer[key] for key in keys if key in answer}


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)
