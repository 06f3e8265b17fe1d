"""Playbooks as data: load `playbooks/*.yml`, expand them for a target, and run their steps.

A playbook is the runbook of one deploy strategy written as a list of steps (see
docs/playbooks.md). Commands run as argument lists, never through a shell; `{service}`, `{env}`,
`{version}` and `{previous_version}` are substituted inside each argument. The engine persists
what a step returns (`StepResult.state`) and decides what happens next; this module only knows
how to carry out one step or one custom check.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import shlex
import shutil
import signal
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import aiohttp
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from bot.catalog import Environment, PositiveDuration, Service, format_duration
from bot.deploys.gates import GateResult
from bot.deploys.health import HealthSnapshot, check_health, diff_health
from bot.messages import text
from bot.targets.base import DeployContext, StepResult, Target, TargetError

__all__ = [
    "KINDS",
    "OUTPUT_LINES",
    "PLACEHOLDERS",
    "STRATEGIES",
    "TARGET_KINDS",
    "Check",
    "Playbook",
    "PlaybookError",
    "Step",
    "StepAborted",
    "StepContext",
    "StepFailed",
    "expand_steps",
    "load_playbooks",
    "playbook_for",
    "run_check",
    "run_step",
]

PLACEHOLDERS: frozenset[str] = frozenset({"service", "env", "version", "previous_version"})
STRATEGIES: tuple[str, ...] = ("rolling", "blue-green", "canary", "recreate")
# Target actions, in the order the Target interface requires them.
TARGET_KINDS: tuple[str, ...] = ("prepare", "wait_ready", "shift_traffic", "finalize", "cleanup")
OUTPUT_LINES = 100  # the tail of a command's output kept for the deploy thread
_MAX_LINE = 2000  # characters kept of one output line
DEFAULT_READY_TIMEOUT = timedelta(minutes=5)
_T = TypeVar("_T")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


# --- the data ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    name: str
    kind: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Check:
    name: str
    run: tuple[str, ...] | None
    http_get: str | None
    expect_status: int
    timeout: timedelta


@dataclass(frozen=True)
class Playbook:
    name: str
    description: str
    strategies: tuple[str, ...]
    checks: tuple[Check, ...]
    steps: tuple[Step, ...]


class PlaybookError(Exception):
    """Playbooks cannot be used; `problems` are lines `file: where: what is wrong`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class StepFailed(Exception):
    """A step failed; `str(error)` is one sentence for the thread, `output` the command's tail."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.output = output


class StepAborted(Exception):
    """The deploy was cancelled while the step ran; the step stopped early."""


# --- validation (the YAML format) ---------------------------------------------------------------


def _check_placeholders(value: str) -> str:
    unknown = sorted(set(_PLACEHOLDER.findall(value)) - PLACEHOLDERS)
    if unknown:
        allowed = ", ".join("{" + name + "}" for name in sorted(PLACEHOLDERS))
        raise ValueError(f"unknown placeholder {{{unknown[0]}}} in {value!r} (allowed: {allowed})")
    return value


def _check_url(value: str) -> str:
    if not re.match(r"https?://[^/\s]", value):
        raise ValueError(f"bad URL {value!r} (write http://… or https://…)")
    return _check_placeholders(value)


Argument = Annotated[str, Field(min_length=1), AfterValidator(_check_placeholders)]
Argv = Annotated[list[Argument], Field(min_length=1)]
Url = Annotated[str, AfterValidator(_check_url)]
Status = Annotated[int, Field(ge=100, le=599)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Run(_Model):
    argv: Argv
    timeout: PositiveDuration = timedelta(minutes=10)
    when_exists: bool = False


class _HttpCheck(_Model):
    url: Url
    expect_status: Status = 200
    retries: int = Field(default=3, ge=0)
    interval: PositiveDuration = timedelta(seconds=10)
    timeout: PositiveDuration = timedelta(seconds=10)


class _NoParams(_Model):
    pass


class _WaitReady(_Model):
    timeout: PositiveDuration | None = None


class _Smoke(_Model):
    timeout: PositiveDuration | None = None


def _check_percents(value: list[int] | None) -> list[int] | None:
    if value is not None and any(b <= a for a, b in itertools.pairwise(value)):
        raise ValueError(f"steps must increase, got {value}")
    return value


class _ShiftTraffic(_Model):
    steps: Annotated[
        list[Annotated[int, Field(ge=1, le=100)]] | None,
        Field(min_length=1),
        AfterValidator(_check_percents),
    ] = None
    step_wait: PositiveDuration | None = None


class _Monitor(_Model):
    # Unset: the environment's `monitor:` and the catalog's `metrics.poll_interval`; no guard.
    duration: PositiveDuration | None = None
    interval: PositiveDuration | None = None
    polls: int | None = Field(default=None, ge=1)


class _Wait(_Model):
    duration: PositiveDuration


_PARAMS: dict[str, type[_Model]] = {
    "run": _Run,
    "http_check": _HttpCheck,
    "health_baseline": _NoParams,
    "health_diff": _NoParams,
    "prepare": _NoParams,
    "wait_ready": _WaitReady,
    "smoke": _Smoke,
    "shift_traffic": _ShiftTraffic,
    "finalize": _NoParams,
    "monitor": _Monitor,
    "cleanup": _NoParams,
    "wait": _Wait,
}
KINDS: tuple[str, ...] = tuple(_PARAMS)


class _CheckModel(_Model):
    name: Annotated[str, Field(min_length=1)]
    run: Argv | None = None
    http_get: Url | None = None
    expect_status: Status = 200
    timeout: PositiveDuration = timedelta(minutes=1)


class _PlaybookModel(_Model):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    description: str = ""
    strategies: list[Literal["rolling", "blue-green", "canary", "recreate"]] = Field(
        default_factory=list
    )
    checks: list[dict[str, Any]] = Field(default_factory=list)
    steps: Annotated[list[dict[str, Any]], Field(min_length=1)]


def _describe(error: Any) -> tuple[str, str]:
    """(key path, message) for one pydantic error, in the words of the catalog's errors."""
    loc = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return loc, "unknown key"
    if kind == "missing":
        return loc, "required, but missing"
    if kind == "value_error":
        return loc, str(error["ctx"]["error"])
    message = error["msg"]
    return loc, message[:1].lower() + message[1:]


def _problems(err: ValidationError, where: str, allowed: Sequence[str] = ()) -> list[str]:
    problems = []
    for error in err.errors(include_url=False):
        loc, message = _describe(error)
        if error["type"] == "extra_forbidden" and allowed:
            message += f" (allowed: {', '.join(allowed)})"
        problems.append(f"{where}: {loc}: {message}" if loc else f"{where}: {message}")
    return problems


def _parse_step(raw: Any, where: str, problems: list[str]) -> Step | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected a mapping with name and kind")
        return None
    name, kind = raw.get("name"), raw.get("kind")
    if isinstance(name, str) and name:
        where = f"{where} ({name})"
    else:
        problems.append(f"{where}: name: required, a non-empty text")
    if kind not in _PARAMS:
        said = "required, but missing" if kind is None else f"unknown kind {kind!r}"
        problems.append(f"{where}: kind: {said} (kinds: {', '.join(KINDS)})")
        return None
    model = _PARAMS[kind]
    params = {key: value for key, value in raw.items() if key not in ("name", "kind")}
    try:
        validated = model.model_validate(params)
    except ValidationError as err:
        allowed = ["name", "kind", *model.model_fields]
        problems.extend(_problems(err, where, allowed))
        return None
    if not isinstance(name, str) or not name:
        return None
    # Unset optional keys are left out: their defaults depend on the target and the catalog.
    values = {
        key: getattr(validated, key)
        for key in model.model_fields
        if getattr(validated, key) is not None
    }
    if kind == "run":
        values["argv"] = tuple(values["argv"])
    return Step(name=name, kind=kind, params=values)


def _parse_check(raw: Any, where: str, problems: list[str]) -> Check | None:
    if isinstance(raw, dict) and isinstance(raw.get("name"), str):
        where = f"{where} ({raw['name']})"
    try:
        model = _CheckModel.model_validate(raw)
    except ValidationError as err:
        problems.extend(_problems(err, where, list(_CheckModel.model_fields)))
        return None
    if (model.run is None) == (model.http_get is None):
        problems.append(f"{where}: write exactly one of run (an argument list) or http_get (a URL)")
        return None
    return Check(
        name=model.name,
        run=tuple(model.run) if model.run is not None else None,
        http_get=model.http_get,
        expect_status=model.expect_status,
        timeout=model.timeout,
    )


def _order_problems(steps: Sequence[Step], where: str) -> list[str]:
    """Target actions must follow the Target interface's order, each at most once."""
    problems: list[str] = []
    seen: dict[str, int] = {}
    names: dict[str, int] = {}
    for index, step in enumerate(steps):
        if step.name in names:
            problems.append(
                f"{where}: steps[{index}] ({step.name}): duplicate step name"
                f" (also steps[{names[step.name]}])"
            )
        names.setdefault(step.name, index)
        if step.kind not in TARGET_KINDS:
            continue
        if step.kind in seen:
            problems.append(
                f"{where}: steps[{index}] ({step.name}): {step.kind} appears twice"
                f" (also steps[{seen[step.kind]}])"
            )
            continue
        later = [kind for kind in seen if TARGET_KINDS.index(kind) > TARGET_KINDS.index(step.kind)]
        if later:
            order = " -> ".join(TARGET_KINDS)
            problems.append(
                f"{where}: steps[{index}] ({step.name}): {step.kind} must come before {later[0]}"
                f" (targets act in the order {order})"
            )
        seen[step.kind] = index
    return problems


def _parse_playbook(path: Path, problems: list[str]) -> Playbook | None:
    where = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        problems.append(f"{where}: cannot read the file: {err}")
        return None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        problems.append(f"{where}: invalid YAML{line}: {getattr(err, 'problem', None) or err}")
        return None
    try:
        model = _PlaybookModel.model_validate(data)
    except ValidationError as err:
        problems.extend(_problems(err, where, list(_PlaybookModel.model_fields)))
        return None
    count = len(problems)
    steps = [
        _parse_step(raw, f"{where}: steps[{i}]", problems) for i, raw in enumerate(model.steps)
    ]
    checks = [
        _parse_check(raw, f"{where}: checks[{i}]", problems) for i, raw in enumerate(model.checks)
    ]
    if len(problems) > count:
        return None
    parsed_steps = tuple(step for step in steps if step is not None)
    parsed_checks = tuple(check for check in checks if check is not None)
    problems.extend(_order_problems(parsed_steps, where))
    check_names = [check.name for check in parsed_checks]
    for name in sorted({name for name in check_names if check_names.count(name) > 1}):
        problems.append(f"{where}: checks: duplicate check name {name!r}")
    if len(problems) > count:
        return None
    return Playbook(
        name=model.name,
        description=model.description.strip(),
        strategies=tuple(model.strategies),
        checks=parsed_checks,
        steps=parsed_steps,
    )


def load_playbooks(directory: Path) -> dict[str, Playbook]:
    """Every `*.yml`/`*.yaml` playbook in `directory` by name; PlaybookError lists all problems."""
    problems: list[str] = []
    playbooks: dict[str, Playbook] = {}
    files: dict[str, Path] = {}
    owners: dict[str, str] = {}
    paths = sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")])
    for path in paths:
        playbook = _parse_playbook(path, problems)
        if playbook is None:
            continue
        if playbook.name in playbooks:
            problems.append(
                f"{path}: name: playbook {playbook.name!r} is already defined in"
                f" {files[playbook.name]}"
            )
            continue
        for strategy in playbook.strategies:
            if strategy in owners:
                problems.append(
                    f"{path}: strategies: {strategy} is already served by playbook"
                    f" {owners[strategy]!r}; a strategy has one default playbook"
                )
            owners.setdefault(strategy, playbook.name)
        playbooks[playbook.name] = playbook
        files[playbook.name] = path
    if problems:
        raise PlaybookError(problems)
    return playbooks


def playbook_for(playbooks: Mapping[str, Playbook], *, service: Service, strategy: str) -> Playbook:
    """The service's own playbook (`playbook:` in the catalog), else the strategy's default."""
    if service.playbook is not None:
        named = playbooks.get(service.playbook)
        if named is None:
            known = ", ".join(sorted(playbooks)) or "none"
            raise PlaybookError(
                [f"{service.name} names playbook {service.playbook!r}, which does not exist"
                 f" (playbooks: {known})"]
            )  # fmt: skip
        return named
    for playbook in playbooks.values():
        if strategy in playbook.strategies:
            return playbook
    raise PlaybookError(
        [f"no playbook serves the strategy {strategy!r} of {service.name}; add one to playbooks/"
         " or name one with playbook: in the catalog"]
    )  # fmt: skip


def expand_steps(playbook: Playbook, *, target_config: Any) -> list[Step]:
    """The concrete steps for one target: shift_traffic becomes one step per percentage.

    Percentages come from the step's own `steps`, else from a canary target's `steps`; every other
    target shifts 100 % at once. Between two percentages a `wait` of `step_wait` (the step's, else
    the target's, else 2m) lets the new version serve. wait_ready takes its timeout from the step,
    else the target's `ready_timeout`, else 5m.
    """
    concrete: list[Step] = []
    for step in playbook.steps:
        if step.kind == "wait_ready":
            timeout = step.params.get("timeout") or getattr(
                target_config, "ready_timeout", DEFAULT_READY_TIMEOUT
            )
            concrete.append(Step(step.name, step.kind, {**step.params, "timeout": timeout}))
        elif step.kind == "shift_traffic":
            concrete.extend(_expand_shift(step, target_config))
        else:
            concrete.append(step)
    return concrete


def _expand_shift(step: Step, target_config: Any) -> list[Step]:
    percents = step.params.get("steps")
    if percents is None:
        is_canary = getattr(target_config, "strategy", None) == "canary"
        percents = getattr(target_config, "steps", None) if is_canary else None
    percents = list(percents or [100])
    if percents[-1] != 100:
        percents.append(100)  # a deploy always ends with all traffic on the new version
    step_wait = step.params.get("step_wait") or getattr(
        target_config, "step_wait", timedelta(minutes=2)
    )
    if percents == [100]:
        return [Step(step.name, "shift_traffic", {"percent": 100})]
    expanded: list[Step] = []
    for index, percent in enumerate(percents):
        if index:
            expanded.append(
                Step(
                    f"{step.name} {percents[index - 1]}%: wait {format_duration(step_wait)}",
                    "wait",
                    {"duration": step_wait},
                )
            )
        expanded.append(Step(f"{step.name} {percent}%", "shift_traffic", {"percent": percent}))
    return expanded


# --- running steps -------------------------------------------------------------------------------


@dataclass
class StepContext:
    deploy: DeployContext
    target: Target
    service: Service
    environment: Environment
    workdir: Path  # where `run` commands start (the service's repository checkout)
    env: Mapping[str, str]  # the environment of `run` commands (PATH, credentials …)
    cancelled: asyncio.Event  # set when the deploy is aborted: waits and commands stop early


async def run_step(step: Step, ctx: StepContext) -> StepResult:
    """Carry out one step; StepFailed when it fails, StepAborted when the deploy is cancelled."""
    if ctx.cancelled.is_set():
        raise StepAborted(f"aborted before {step.name}")
    handler = _HANDLERS.get(step.kind)
    if handler is None:
        raise StepFailed(f"{step.name}: unknown step kind {step.kind!r}")
    try:
        return await handler(step, ctx)
    except TargetError as err:
        raise StepFailed(str(err)) from err


def _values(ctx: StepContext) -> dict[str, str | None]:
    deploy = ctx.deploy
    return {
        "service": deploy.service,
        "env": deploy.environment,
        "version": deploy.version,
        "previous_version": deploy.previous_version,
    }


def _fill(text: str, ctx: StepContext) -> str:
    values = _values(ctx)

    def replace(match: re.Match[str]) -> str:
        name = match[1]
        if name not in values:
            return match[0]
        value = values[name]
        if value is None:
            raise StepFailed(
                f"{{{name}}} in {text!r} is unknown: nothing ran in {ctx.deploy.environment}"
                " before this deploy"
            )
        return value

    return _PLACEHOLDER.sub(replace, text)


async def _wait_cancelled(ctx: StepContext, seconds: float) -> bool:
    """Wait up to `seconds`; True when the deploy was cancelled meanwhile."""
    if seconds > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ctx.cancelled.wait(), timeout=seconds)
    return ctx.cancelled.is_set()


async def _race_cancel(awaitable: Awaitable[_T], ctx: StepContext, what: str) -> _T:
    """The result of `awaitable`, unless the deploy is cancelled first (then StepAborted)."""
    work = asyncio.ensure_future(awaitable)
    cancel = asyncio.ensure_future(ctx.cancelled.wait())
    try:
        await asyncio.wait({work, cancel}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        cancel.cancel()
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work
    if work.cancelled():
        raise StepAborted(f"aborted during {what}")
    return work.result()  # finished (or failed) before the abort: that outcome stands


# -- commands


def _skip_missing(argv: Sequence[str], ctx: StepContext) -> str | None:
    """Why a `when_exists` command is skipped (its program does not exist), or None."""
    program = argv[0]
    if "/" in program:
        path = Path(program) if os.path.isabs(program) else ctx.workdir / program
        return None if path.exists() else f"{program} does not exist in {ctx.workdir}"
    found = shutil.which(program, path=ctx.env.get("PATH", os.defpath))
    return None if found else f"{program} is not installed (not on PATH)"


def _command_env(ctx: StepContext) -> dict[str, str]:
    env = dict(ctx.env)
    env.update(
        OPSBOT_SERVICE=ctx.deploy.service,
        OPSBOT_ENVIRONMENT=ctx.deploy.environment,
        OPSBOT_VERSION=ctx.deploy.version,
        OPSBOT_PREVIOUS_VERSION=ctx.deploy.previous_version or "",
    )
    return env


async def _run_command(
    argv: Sequence[str], ctx: StepContext, *, timeout: timedelta
) -> tuple[int | None, str]:
    """Run `argv` in the workdir: (exit status, last OUTPUT_LINES lines); None = timed out.

    The command gets its own process group so a timeout or an abort stops its children too.
    """
    text = shlex.join(argv)
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=ctx.workdir,
            env=_command_env(ctx),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise StepFailed(f"{text}: command not found ({argv[0]})") from None
    except PermissionError:
        raise StepFailed(f"{text}: permission denied (is {argv[0]} executable?)") from None
    except OSError as err:
        raise StepFailed(f"{text}: cannot start: {err.strerror or err}") from None
    lines: deque[str] = deque(maxlen=OUTPUT_LINES)

    async def collect() -> int:
        # Read chunks, not lines: StreamReader.readline() fails on a line longer than 64 KiB.
        assert process.stdout is not None
        pending, truncated = b"", False
        while chunk := await process.stdout.read(65536):
            for index, part in enumerate(chunk.split(b"\n")):
                if index:  # a newline ended the line so far
                    lines.append(_line(pending, truncated))
                    pending, truncated = b"", False
                room = max(_MAX_LINE * 4 - len(pending), 0)  # 4 = the longest UTF-8 character
                truncated = truncated or len(part) > room
                pending += part[:room]
        if pending or truncated:
            lines.append(_line(pending, truncated))
        return await process.wait()

    work = asyncio.ensure_future(collect())
    cancel = asyncio.ensure_future(ctx.cancelled.wait())
    try:
        await asyncio.wait(
            {work, cancel}, timeout=timeout.total_seconds(), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        cancel.cancel()
        if not work.done():
            _kill(process)
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError, ProcessLookupError):
                await work
            await process.wait()
    output = "\n".join(lines)
    if work.cancelled():
        if ctx.cancelled.is_set():
            raise StepAborted(f"aborted during {text}")
        return None, output
    return work.result(), output


def _line(raw: bytes, truncated: bool) -> str:
    text = raw.decode("utf-8", errors="replace").rstrip("\r")
    if truncated or len(text) > _MAX_LINE:
        return text[:_MAX_LINE] + " […]"
    return text


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()


async def _run_argv(argv: Sequence[str], ctx: StepContext, timeout: timedelta) -> StepResult:
    text = shlex.join(argv)
    status, output = await _run_command(argv, ctx, timeout=timeout)
    if status is None:
        raise StepFailed(f"{text} timed out after {format_duration(timeout)}", output)
    if status != 0:
        how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
        raise StepFailed(f"{text} {how}", output)
    return StepResult(summary=f"{text} succeeded", output=output)


async def _step_run(step: Step, ctx: StepContext) -> StepResult:
    argv = [_fill(arg, ctx) for arg in step.params["argv"]]
    if step.params.get("when_exists"):
        why = _skip_missing(argv, ctx)
        if why is not None:
            return StepResult(summary=f"skipped: {why}")
    return await _run_argv(argv, ctx, step.params.get("timeout", timedelta(minutes=10)))


async def _step_smoke(step: Step, ctx: StepContext) -> StepResult:
    smoke = ctx.service.smoke
    if smoke is None:
        return StepResult(summary=f"skipped: {ctx.service.name} has no smoke test in the catalog")
    deploy = ctx.deploy
    argv = smoke.argv(env=deploy.environment, service=deploy.service, version=deploy.version)
    return await _run_argv(argv, ctx, step.params.get("timeout") or smoke.timeout)


# -- HTTP


async def _get(session: aiohttp.ClientSession, url: str, timeout: timedelta) -> tuple[int, bytes]:
    """GET `url`: (status, body); StepFailed with the reason when there is no answer."""
    try:
        client_timeout = aiohttp.ClientTimeout(total=timeout.total_seconds())
        async with session.get(url, timeout=client_timeout, allow_redirects=False) as response:
            return response.status, await response.read()
    except TimeoutError:
        raise StepFailed(f"GET {url} got no answer within {format_duration(timeout)}") from None
    except aiohttp.ClientError as err:
        raise StepFailed(f"GET {url} failed: {err or type(err).__name__}") from None


async def _step_http_check(step: Step, ctx: StepContext) -> StepResult:
    url = _fill(step.params["url"], ctx)
    expected: int = step.params.get("expect_status", 200)
    attempts = 1 + step.params.get("retries", 0)
    interval: timedelta = step.params.get("interval", timedelta(seconds=10))
    timeout: timedelta = step.params.get("timeout", timedelta(seconds=10))
    problem = ""
    async with aiohttp.ClientSession() as session:
        for attempt in range(1, attempts + 1):
            try:
                status, _ = await _race_cancel(_get(session, url, timeout), ctx, step.name)
            except StepFailed as err:
                problem = str(err)
            else:
                if status == expected:
                    tries = f" (attempt {attempt} of {attempts})" if attempt > 1 else ""
                    return StepResult(summary=f"GET {url} answered {status}{tries}")
                problem = f"GET {url} answered {status}, expected {expected}"
            if attempt < attempts and await _wait_cancelled(ctx, interval.total_seconds()):
                raise StepAborted(f"aborted during {step.name}")
    tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
    raise StepFailed(f"{problem} ({tries})")


async def _check_health(ctx: StepContext, what: str) -> HealthSnapshot:
    """Every instance's health now (bot/deploys/health.py); an abort stops the wait."""
    assert ctx.service.health is not None
    return await _race_cancel(
        check_health(
            ctx.service.health,
            service=ctx.deploy.service,
            environment=ctx.deploy.environment,
            target=ctx.target,
        ),
        ctx,
        what,
    )


async def _step_health_baseline(step: Step, ctx: StepContext) -> StepResult:
    if ctx.service.health is None:
        return StepResult(summary=f"skipped: {ctx.service.name} has no health URL in the catalog")
    # The baseline records what was there, healthy or not: a fix may be deployed onto a sick
    # service, so an unhealthy baseline is reported, not refused. It is kept for the
    # post-deploy diff (runbook Step 3: diff pre- and post-deploy health).
    snapshot = await _check_health(ctx, step.name)
    state = {"health_baseline": snapshot.to_state()}
    if not snapshot.per_instance:
        (only,) = snapshot.instances
        return StepResult(
            summary=f"health baseline: {snapshot.summary()}",
            output=only.body[:2000],
            state=state,
        )
    output = "\n".join(f"{i.name}: {i.outcome} ({i.url})" for i in snapshot.instances)
    return StepResult(summary=f"health baseline: {snapshot.summary()}", output=output, state=state)


async def _step_health_diff(step: Step, ctx: StepContext) -> StepResult:
    """Runbook Step 3: health after the deploy, as a diff against the recorded baseline."""
    before = ctx.deploy.state.get("health_baseline")
    if ctx.service.health is None or not before:
        return StepResult(summary="skipped: no health baseline to compare with")
    after = await _check_health(ctx, step.name)
    summary, output = diff_health(HealthSnapshot.from_state(before), after)
    return StepResult(summary=summary, output=output)


async def _step_wait(step: Step, ctx: StepContext) -> StepResult:
    duration: timedelta = step.params["duration"]
    if await _wait_cancelled(ctx, duration.total_seconds()):
        raise StepAborted(f"aborted during {step.name}")
    return StepResult(summary=f"waited {format_duration(duration)}")


# -- target actions


async def _step_prepare(step: Step, ctx: StepContext) -> StepResult:
    return await ctx.target.prepare(ctx.deploy)


async def _step_wait_ready(step: Step, ctx: StepContext) -> StepResult:
    timeout: timedelta = step.params.get("timeout") or DEFAULT_READY_TIMEOUT
    # Waiting is read-only, so an abort may interrupt it at any moment.
    return await _race_cancel(ctx.target.wait_ready(ctx.deploy, timeout=timeout), ctx, step.name)


async def _step_shift_traffic(step: Step, ctx: StepContext) -> StepResult:
    if "percent" not in step.params:
        raise ValueError(f"{step.name}: shift_traffic has no percent; run expand_steps() first")
    return await ctx.target.shift_traffic(ctx.deploy, int(step.params["percent"]))


async def _step_finalize(step: Step, ctx: StepContext) -> StepResult:
    return await ctx.target.finalize(ctx.deploy)


async def _step_cleanup(step: Step, ctx: StepContext) -> StepResult:
    return await ctx.target.cleanup(ctx.deploy)


_Handler = Callable[[Step, StepContext], Awaitable[StepResult]]
_HANDLERS: dict[str, _Handler] = {
    "run": _step_run,
    "http_check": _step_http_check,
    "health_baseline": _step_health_baseline,
    "health_diff": _step_health_diff,
    "prepare": _step_prepare,
    "wait_ready": _step_wait_ready,
    "smoke": _step_smoke,
    "shift_traffic": _step_shift_traffic,
    "finalize": _step_finalize,
    "cleanup": _step_cleanup,
    "wait": _step_wait,
}
# `monitor` is the engine's (bot/deploys/monitor.py): the window needs the run and the catalog.
assert set(_HANDLERS) == set(KINDS) - {"monitor"}


# --- custom checks -------------------------------------------------------------------------------


async def run_check(check: Check, ctx: StepContext) -> GateResult:
    """Run a playbook's custom gate; it passes on exit status 0 or the expected HTTP status."""
    gate = f"check:{check.name}"
    try:
        if check.run is not None:
            argv = [_fill(arg, ctx) for arg in check.run]
            command = shlex.join(argv)
            status, output = await _run_command(argv, ctx, timeout=check.timeout)
            if status == 0:
                return GateResult(gate, True, text(f"{gate}: {command} passed"))
            last = output.strip().splitlines()[-1:] if output.strip() else []
            said = f": {last[0]}" if last else ""
            if status is None:
                how = f"timed out after {format_duration(check.timeout)}"
            else:
                how = f"exited with status {status}"
            return GateResult(gate, False, text(f"{gate}: {command} {how}{said}"))
        assert check.http_get is not None
        url = _fill(check.http_get, ctx)
        async with aiohttp.ClientSession() as session:
            status, _ = await _race_cancel(_get(session, url, check.timeout), ctx, gate)
        if status == check.expect_status:
            return GateResult(gate, True, text(f"{gate}: GET {url} answered {status}"))
        return GateResult(
            gate,
            False,
            text(f"{gate}: GET {url} answered {status}, expected {check.expect_status}"),
        )
    except StepFailed as err:
        return GateResult(gate, False, text(f"{gate}: {err}"))
