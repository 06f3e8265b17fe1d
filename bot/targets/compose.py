"""The Docker Compose target: pull the new image, then recreate one service on it (runbook B).

Every action runs `docker compose -p <project> -f <file> …` as an argument list (never through a
shell) with the catalog's version variable (`VERSION`) set to the deployed version, so the compose
file's `image: registry.example/web:${VERSION}` selects the tag. `up -d --no-deps <service>`
recreates only that service, which is the runbook's `down` + `up -d` without stopping its
dependencies. Compose cannot split traffic, so `shift_traffic` knows only 100 %.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import shlex
import shutil
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bot.catalog import ComposeTarget
from bot.targets.base import (
    DeployContext,
    Running,
    StepResult,
    Target,
    TargetError,
)

__all__ = ["ComposeDeployTarget", "Container", "image_tag", "parse_ps"]

# Key this target keeps in DeployContext.state.
STATE_PREVIOUS = "previous_tag"  # the tag the service ran before the deploy (for rollback)

_FAILED_STATES = frozenset({"exited", "dead"})
_STDERR_IN_ERROR = 600  # characters of a failed command's stderr quoted in the error


@dataclass(frozen=True)
class Container:
    """One line of `docker compose ps --format json`."""

    name: str
    image: str
    state: str  # running, restarting, exited, created, paused, dead …
    health: str  # "" without a healthcheck, else starting / healthy / unhealthy
    status: str  # Docker's human text, e.g. "Exited (1) 3 seconds ago"

    @property
    def tag(self) -> str:
        return image_tag(self.image)

    @property
    def ready(self) -> bool:
        return self.state == "running" and self.health in ("", "healthy")


@dataclass(frozen=True)
class _Completed:
    argv: list[str]
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return "\n".join(
            part for part in (f"$ {shlex.join(self.argv)}", self.stdout, self.stderr) if part
        )


def image_tag(image: str) -> str:
    """`registry.example:5000/web:v42` -> `v42` (Docker's default tag when none is written)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def parse_ps(text: str) -> list[Container]:
    """Read `ps --format json`: a JSON array (Compose < 2.21) or one object per line (newer)."""
    text = text.strip()
    if not text:
        return []
    try:
        if text.startswith("["):
            rows = json.loads(text)
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as err:
        raise TargetError(f"cannot read the output of docker compose ps: {err}") from err
    return [
        Container(
            name=str(row.get("Name", "")),
            image=str(row.get("Image", "")),
            state=str(row.get("State", "")).lower(),
            health=str(row.get("Health", "")).lower(),
            status=str(row.get("Status", "")),
        )
        for row in rows
        if isinstance(row, dict)
    ]


class ComposeDeployTarget(Target):
    """One service of one Compose project in one environment, recreated on each deploy."""

    kind = "compose"
    strategies = ("recreate",)

    def __init__(
        self,
        config: ComposeTarget,
        *,
        service: str,
        environment: str,
        env: Mapping[str, str],
        command_timeout: timedelta = timedelta(minutes=10),
        ready_timeout: timedelta = timedelta(minutes=2),
        poll_interval: float = 1.0,
    ) -> None:
        self.config = config
        self.service = service
        self.environment = environment
        self._env = dict(env)
        # Pulls of large images are slow; a hung daemon must still not hold a deploy forever.
        self._command_timeout = command_timeout
        # How long a recreated service may take to be running (and healthy, with a healthcheck).
        self._ready_timeout = ready_timeout
        self._poll_interval = poll_interval

    # --- what runs --------------------------------------------------------------------------

    async def current(self) -> Running:
        containers = await self._ps(version=None)
        running = [c for c in containers if c.state == "running"]
        service, project = self.config.service, self.config.project
        if not running:
            others = f" ({_states(containers)})" if containers else ""
            return Running(
                version=None, detail=f"no container of {service} runs in {project}{others}"
            )
        tags = collections.Counter(c.tag for c in running)
        version = tags.most_common(1)[0][0]
        images = ", ".join(sorted({c.image for c in running}))
        detail = f"{len(running)}/{len(containers)} containers of {service} run {images}"
        if any(c.health for c in running):
            detail += f" ({_healths(running)})"
        return Running(version=version, detail=detail, state={"tags": dict(tags)})

    def plan(self, ctx: DeployContext) -> list[str]:
        setting = f"{self.config.version_variable}={shlex.quote(ctx.version)}"
        steps = [
            (self._args("ps", "--all", "--format", "json"), "remember the running tag"),
            (self._args("pull"), ""),
            (self._args("up", "-d", "--no-deps"), ""),
            (self._args("ps", "--all", "--format", "json"), "until running and healthy"),
        ]
        return [
            f"{setting} {shlex.join(['docker', *args])}" + (f"  ({why})" if why else "")
            for args, why in steps
        ]

    # --- deploy actions ---------------------------------------------------------------------

    async def prepare(self, ctx: DeployContext) -> StepResult:
        state: dict[str, Any] = {}
        if STATE_PREVIOUS not in ctx.state:
            # Read before anything changes: after the recreate the old tag is gone from `ps`.
            running = [c for c in await self._ps(version=ctx.version) if c.state == "running"]
            state[STATE_PREVIOUS] = running[0].tag if running else None
        done = await self._run(self._args("pull"), version=ctx.version, ctx=ctx)
        return StepResult(
            summary=f"pulled the image of {self.config.service} {ctx.version}",
            output=done.output,
            state=state,
        )

    async def wait_ready(self, ctx: DeployContext, *, timeout: timedelta) -> StepResult:
        containers = await self._ps(version=ctx.version)
        service = self.config.service
        if not any(c.tag == ctx.version for c in containers):
            # Recreate starts the new version only when traffic moves to it (shift_traffic);
            # until then "ready" means the image is pulled, which prepare made sure of.
            now = _states(containers) if containers else "no container yet"
            return StepResult(
                summary=f"{ctx.version} is pulled; {service} is recreated on it at the switch"
                f" ({now})"
            )
        return await self._wait_running(ctx.version, timeout)

    async def shift_traffic(self, ctx: DeployContext, percent: int) -> StepResult:
        if percent != 100:
            raise TargetError(
                f"compose cannot send {percent} % of traffic: strategy recreate moves all of it"
                " at once"
            )
        return await self._recreate(ctx, ctx.version)

    async def finalize(self, ctx: DeployContext) -> StepResult:
        return await self._recreate(ctx, ctx.version)

    async def cleanup(self, ctx: DeployContext) -> StepResult:
        # Recreate keeps no old containers; old images stay so a rollback needs no pull.
        return StepResult(summary="nothing to clean up (recreate keeps no old containers)")

    async def rollback(self, ctx: DeployContext) -> StepResult:
        previous = ctx.previous_version or ctx.state.get(STATE_PREVIOUS)
        if not previous:
            raise TargetError(
                f"cannot roll back {self.config.service}: no previous version is known"
            )
        # --force-recreate as in the runbook: a crashed container of the same tag starts afresh.
        return await self._recreate(ctx, previous, force=True)

    # --- helpers ----------------------------------------------------------------------------

    async def _recreate(
        self, ctx: DeployContext, version: str, *, force: bool = False
    ) -> StepResult:
        """`up -d --no-deps` on `version` unless it runs and is ready already; then wait."""
        containers = await self._ps(version=version)
        if containers and all(c.tag == version and c.ready for c in containers):
            return StepResult(
                summary=f"{self.config.service} runs {version} already ({_states(containers)})"
            )
        flags = (
            ["up", "-d", "--force-recreate", "--no-deps"] if force else ["up", "-d", "--no-deps"]
        )
        done = await self._run(self._args(*flags), version=version, ctx=ctx)
        ready = await self._wait_running(version, self._ready_timeout)
        return StepResult(summary=ready.summary, output=f"{done.output}\n{ready.output}".strip())

    async def _wait_running(self, version: str, timeout: timedelta) -> StepResult:
        service = self.config.service
        deadline = time.monotonic() + timeout.total_seconds()
        while True:
            containers = await self._ps(version=version)
            mine = [c for c in containers if c.tag == version]
            for container in mine:
                # A crash or a failed healthcheck will not fix itself: fail now, not at timeout.
                if container.state in _FAILED_STATES or container.health == "unhealthy":
                    raise TargetError(
                        f"{container.name} ({container.image}) is {container.state}"
                        f"{'/' + container.health if container.health else ''}:"
                        f" {container.status}"
                    )
            if mine and len(mine) == len(containers) and all(c.ready for c in mine):
                return StepResult(
                    summary=f"{service} runs {version} ({_states(mine)})",
                    output="\n".join(f"{c.name} {c.image} {c.status}" for c in containers),
                )
            if time.monotonic() + self._poll_interval > deadline:
                now = _states(containers) if containers else "no container"
                raise TargetError(
                    f"{service} is not running {version} after"
                    f" {timeout.total_seconds():g} s ({now})"
                )
            await asyncio.sleep(self._poll_interval)

    async def _ps(self, *, version: str | None) -> list[Container]:
        done = await self._run(self._args("ps", "--all", "--format", "json"), version=version)
        return [c for c in parse_ps(done.stdout) if c.name]

    def _args(self, command: str, *flags: str) -> list[str]:
        """Arguments after `docker`: the project, the file, the command, its flags, the service."""
        config = self.config
        return ["compose", "-p", config.project, "-f", config.file, command, *flags, config.service]

    def _docker(self) -> str:
        # Resolved from the given PATH (not the bot's) so tests and configs choose the binary.
        found = shutil.which("docker", path=self._env.get("PATH", ""))
        if found is None:
            raise TargetError("docker CLI not found on PATH; install Docker or fix PATH")
        return found

    async def _run(
        self, args: Sequence[str], *, version: str | None, ctx: DeployContext | None = None
    ) -> _Completed:
        """Run `docker *args`; TargetError on a non-zero exit or after the command timeout."""
        argv = [self._docker(), *args]
        shown = ["docker", *args]
        env = dict(self._env)
        if version is not None:
            env[self.config.version_variable] = version
        if ctx is not None:
            await ctx.log(f"$ {shlex.join(shown)}")
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                # Its own process group: `docker compose` runs a plugin child that must die too.
                start_new_session=True,
            )
        except OSError as err:
            raise TargetError(f"cannot run {shlex.join(shown[:3])}: {err}") from err
        timeout = self._command_timeout.total_seconds()
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            raise TargetError(
                f"{shlex.join(shown)} did not finish within {timeout:g} s and was stopped",
                retryable=True,
            ) from None
        finally:
            if process.returncode is None:  # timed out or the deploy task was cancelled
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        done = _Completed(
            argv=shown,
            stdout=stdout.decode(errors="replace"),
            stderr=stderr.decode(errors="replace").strip(),
        )
        if process.returncode != 0:
            reason = done.stderr[-_STDERR_IN_ERROR:] or done.stdout.strip()[-_STDERR_IN_ERROR:]
            raise TargetError(
                f"{shlex.join(shown)} failed (exit {process.returncode}): {reason or 'no output'}"
            )
        return done


def _states(containers: Sequence[Container]) -> str:
    counts = collections.Counter(c.state + (f"/{c.health}" if c.health else "") for c in containers)
    return ", ".join(f"{count} {state}" for state, count in sorted(counts.items()))


def _healths(containers: Sequence[Container]) -> str:
    counts = collections.Counter(c.health or "no healthcheck" for c in containers)
    return ", ".join(f"{count} {health}" for health, count in sorted(counts.items()))
