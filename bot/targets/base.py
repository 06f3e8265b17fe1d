"""The one interface every deploy target implements (Kubernetes, AWS Lambda, Docker Compose).

A deploy is a playbook of steps; the target actions among them are the methods below, always
called in this order by the engine (some may be skipped by a playbook):

    prepare -> wait_ready -> [smoke] -> shift_traffic(p) ... -> finalize -> [monitor] -> cleanup

Each action returns a `StepResult`: one line for the deploy's checklist, optional longer output
for its thread, and `state` to persist. The engine stores the merged `state` with the deploy after
every step and hands it back in `DeployContext.state`, so a target never keeps anything that matters
in memory (a restarted bot resumes or rolls back from it). Every action is safe to call again with
the same state (it checks before it writes), because a crash may land between a write and the
state being saved.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar


class TargetError(Exception):
    """The target refused or failed. `str(error)` is one sentence for the deploy thread."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class Running:
    """What runs in an environment now."""

    version: str | None  # image tag / artifact version / compose tag; None when nothing runs
    detail: (
        str  # one human line, e.g. "3/3 pods of checkout-blue run registry.example/checkout:v41"
    )
    state: dict[str, Any] = field(default_factory=dict)  # e.g. {"live_colour": "blue"}


@dataclass(frozen=True)
class StepResult:
    summary: str  # one line for the checklist, e.g. "checkout-green runs v42 (3/3 ready)"
    output: str = ""  # longer detail for the deploy's thread (command output, API answers)
    state: dict[str, Any] = field(default_factory=dict)  # merged into DeployContext.state


@dataclass(frozen=True)
class Instance:
    """One ready copy of the service (a Kubernetes pod), for per-instance health checks."""

    name: str  # e.g. the pod's name
    address: str  # the IP address its health endpoint listens on


async def _discard(line: str) -> None:
    return None


@dataclass
class DeployContext:
    """What a target action knows about the deploy it serves."""

    service: str
    environment: str
    version: str
    strategy: str
    previous_version: str | None = None
    # Persisted between steps and across restarts; targets read it and return updates.
    state: dict[str, Any] = field(default_factory=dict)
    # Posts a line of progress into the deploy's thread (rate-limited by the caller).
    log: Callable[[str], Awaitable[None]] = _discard


class Target(abc.ABC):
    """A place a service runs in one environment."""

    kind: ClassVar[str]
    strategies: ClassVar[tuple[str, ...]]

    @abc.abstractmethod
    async def current(self) -> Running:
        """What runs now (read only)."""

    @abc.abstractmethod
    def plan(self, ctx: DeployContext) -> list[str]:
        """Every call a deploy of `ctx.version` would make, in order; changes nothing."""

    @abc.abstractmethod
    async def prepare(self, ctx: DeployContext) -> StepResult:
        """Put the new version in place without moving (all) traffic to it."""

    @abc.abstractmethod
    async def wait_ready(self, ctx: DeployContext, *, timeout: timedelta) -> StepResult:
        """Wait until the new version is ready; TargetError on failure or timeout."""

    @abc.abstractmethod
    async def shift_traffic(self, ctx: DeployContext, percent: int) -> StepResult:
        """Send `percent` % of traffic to the new version (100 = all of it)."""

    @abc.abstractmethod
    async def finalize(self, ctx: DeployContext) -> StepResult:
        """Make the new version the only one serving."""

    @abc.abstractmethod
    async def cleanup(self, ctx: DeployContext) -> StepResult:
        """Remove what the deploy kept for a fast rollback (old colour, canary)."""

    @abc.abstractmethod
    async def rollback(self, ctx: DeployContext) -> StepResult:
        """Put back `ctx.previous_version` (or what `ctx.state` says ran before)."""

    async def instances(self) -> list[Instance] | None:
        """The ready instances serving now (read only), for a health URL with `{pod_ip}`.

        None means this kind of target cannot tell its instances apart: its health URL is one
        instance. An empty list means it can, and none is ready (no data, not health).
        """
        return None

    async def close(self) -> None:
        """Release clients and connections."""
        return None
