"""Health checks of every instance: the pre-deploy baseline, the post-deploy diff, and the value of
the `health_failing` metric behind the runbook's "health check failures > 50 % of instances".

A service's `health.url` is one instance, unless it names `{pod_ip}` and the environment's target
can list its instances (Kubernetes: every ready pod of the Deployment, `Target.instances()`); then
the URL is filled in and fetched once per instance, at most `MAX_CONCURRENT` at a time. An answer
below 400 is healthy; another status, a refused connection or a timeout is failing. No instance at
all (no ready pods, or none that can be listed) is no data, never healthy: `HealthSnapshot.value`
is then NaN, which rule evaluation treats as a missing sample (inconclusive).
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp

from bot.catalog import HealthCheck, format_duration
from bot.metrics.rules import fraction_failing
from bot.targets.base import Instance, Target, TargetError

__all__ = [
    "BODY_KEPT",
    "INSTANCE_BODY_KEPT",
    "MAX_CONCURRENT",
    "HealthSnapshot",
    "InstanceHealth",
    "check_health",
    "diff_health",
    "fetch",
]

MAX_CONCURRENT = 10  # health requests in flight at once, per check
BODY_KEPT = 4000  # characters of a health answer kept for the post-deploy diff
INSTANCE_BODY_KEPT = 1000  # the same, per pod (a deploy keeps every pod's answer)
_NAMES_SHOWN = 5  # failing instances named in a one-line summary


@dataclass(frozen=True)
class InstanceHealth:
    """One instance's answer to its health URL."""

    name: str  # the pod's name; for a single health URL, the URL itself
    url: str
    status: int | None  # None: no answer (see `error`)
    error: str | None = None
    digest: str | None = None  # sha256 of the body
    size: int = 0  # bytes of the body
    body: str = ""  # the first BODY_KEPT characters

    @property
    def ok(self) -> bool:
        return self.status is not None and self.status < 400

    @property
    def outcome(self) -> str:
        """What happened, in a few words: "answered 503", "got no answer within 5s" …"""
        if self.status is not None:
            return f"answered {self.status}"
        return self.error or "no answer"

    def to_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"name": self.name, "url": self.url, "status": self.status}
        if self.error is not None:
            state["error"] = self.error
        else:
            state.update(digest=self.digest, bytes=self.size, body=self.body)
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> InstanceHealth:
        url = str(state.get("url", ""))
        status = state.get("status")
        return cls(
            name=str(state.get("name") or url),
            url=url,
            status=int(status) if isinstance(status, int) else None,
            error=state.get("error"),
            digest=state.get("digest"),
            size=int(state.get("bytes") or 0),
            body=str(state.get("body") or ""),
        )


@dataclass(frozen=True)
class HealthSnapshot:
    """Every instance's health at one moment."""

    per_instance: bool  # the URL names {pod_ip}: one result per pod
    instances: tuple[InstanceHealth, ...] = ()
    problem: str | None = None  # why no instance was checked (no ready pods, cannot list them)
    url: str = ""  # the URL as configured ({pod_ip} unfilled) or as fetched

    @property
    def failing(self) -> list[InstanceHealth]:
        return [instance for instance in self.instances if not instance.ok]

    @property
    def value(self) -> float:
        """The `health_failing` metric: the fraction of instances failing; NaN without any."""
        return fraction_failing([instance.ok for instance in self.instances])

    @property
    def no_data(self) -> bool:
        return math.isnan(self.value)

    def counts(self) -> str:
        """How many of how many: "2 of 3 instances failing", "3 of 3 instances healthy"."""
        total, failing = len(self.instances), len(self.failing)
        noun = "instance" if total == 1 else "instances"
        if failing == 0:
            return f"{total} of {total} {noun} healthy"
        return f"{failing} of {total} {noun} failing"

    def summary(self) -> str:
        """One line for a person: how many of how many fail, and which, and how."""
        if not self.instances:
            return self.problem or "no instance to check: no data"
        if not self.per_instance:
            (only,) = self.instances
            return f"GET {only.url} {only.outcome}"
        line = self.counts()
        return f"{line}: {_names(self.failing)}" if self.failing else line

    def to_state(self) -> dict[str, Any]:
        """What the deploy keeps; a single URL keeps the shape it always had."""
        if not self.per_instance and len(self.instances) == 1:
            return self.instances[0].to_state() | {"url": self.instances[0].url}
        return {
            "per_instance": self.per_instance,
            "url": self.url,
            "instances": [instance.to_state() for instance in self.instances],
            "problem": self.problem,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> HealthSnapshot:
        if "instances" not in state:  # one URL (also what deploys recorded before {pod_ip})
            instance = InstanceHealth.from_state(state)
            return cls(False, (instance,), url=instance.url)
        return cls(
            per_instance=bool(state.get("per_instance")),
            instances=tuple(InstanceHealth.from_state(s) for s in state.get("instances") or []),
            problem=state.get("problem"),
            url=str(state.get("url", "")),
        )


async def fetch(
    session: aiohttp.ClientSession,
    url: str,
    timeout: timedelta,
    *,
    name: str | None = None,
    keep: int = BODY_KEPT,
) -> InstanceHealth:
    """GET `url` once; a failure to answer is a result (status None), not an exception."""
    try:
        client_timeout = aiohttp.ClientTimeout(total=timeout.total_seconds())
        async with session.get(url, timeout=client_timeout, allow_redirects=False) as response:
            body = await response.read()
    except TimeoutError:
        error = f"got no answer within {format_duration(timeout)}"
        return InstanceHealth(name or url, url, None, error=error)
    except aiohttp.ClientError as err:
        error = f"failed: {err or type(err).__name__}"
        return InstanceHealth(name or url, url, None, error=error)
    return InstanceHealth(
        name or url,
        url,
        response.status,
        digest="sha256:" + hashlib.sha256(body).hexdigest(),
        size=len(body),
        body=body[:keep].decode("utf-8", errors="replace"),
    )


async def check_health(
    health: HealthCheck,
    *,
    service: str,
    environment: str,
    target: Target | None,
    session: aiohttp.ClientSession | None = None,
    limit: int = MAX_CONCURRENT,
) -> HealthSnapshot:
    """Check every instance of `service` in `environment` once (see the module docstring)."""
    if session is None:
        async with aiohttp.ClientSession() as own:
            return await check_health(
                health,
                service=service,
                environment=environment,
                target=target,
                session=own,
                limit=limit,
            )
    if not health.per_instance:
        url = health.url_for(env=environment, service=service)
        return HealthSnapshot(False, (await fetch(session, url, health.timeout),), url=url)
    template = health.url_for(env=environment, service=service)
    instances = await _instances(target, service=service, environment=environment)
    if isinstance(instances, str):
        return HealthSnapshot(True, (), problem=instances, url=template)
    gate = asyncio.Semaphore(max(limit, 1))

    async def one(instance: Instance) -> InstanceHealth:
        url = health.url_for(env=environment, service=service, pod_ip=instance.address)
        async with gate:
            return await fetch(
                session, url, health.timeout, name=instance.name, keep=INSTANCE_BODY_KEPT
            )

    results = await asyncio.gather(*(one(instance) for instance in instances))
    return HealthSnapshot(True, tuple(results), url=template)


async def _instances(
    target: Target | None, *, service: str, environment: str
) -> list[Instance] | str:
    """The ready instances, or why there are none to check (a sentence)."""
    where = f"{service} in {environment}"
    if target is None:
        return f"health.url names {{pod_ip}}, but opsbot has no target to list {where}'s pods"
    try:
        instances = await target.instances()
    except TargetError as err:
        return f"cannot list the pods of {where}: {err}"
    if instances is None:
        return (
            f"health.url names {{pod_ip}}, but the {target.kind} target of {where} has no pods"
            " to fill it with (only Kubernetes targets do)"
        )
    if not instances:
        return f"no ready pods of {where}: nothing to check, no data"
    return instances


def diff_health(before: HealthSnapshot, after: HealthSnapshot) -> tuple[str, str]:
    """Runbook Step 3 (`diff pre-deploy-health.log post-deploy-health.log`): a checklist line and
    the diff for the thread, per instance (gone, new, changed status, changed body)."""
    if not before.per_instance and not after.per_instance:
        return _diff_one(before, after)
    old = {instance.name: instance for instance in before.instances}
    new = {instance.name: instance for instance in after.instances}
    gone = [old[name] for name in old if name not in new]
    added = [new[name] for name in new if name not in old]
    kept = [(old[name], new[name]) for name in old if name in new]
    changed = [(b, a) for b, a in kept if b.status != a.status or b.error != a.error]
    lines = [
        f"--- pre-deploy-health ({_tally(before)})",
        f"+++ post-deploy-health ({_tally(after)})",
    ]
    lines += [f"- {i.name}: {i.outcome}  ({i.url})" for i in gone]
    lines += [f"+ {i.name}: {i.outcome}  ({i.url})" for i in added]
    for b, a in kept:
        if (b, a) in changed:
            lines.append(f"~ {a.name}: {b.outcome} → {a.outcome}  ({a.url})")
        else:
            lines.append(f"  {a.name}: {a.outcome}  ({a.url})")
    for b, a in kept:
        if a.error is None and b.error is None and b.digest != a.digest:
            lines.append(f"body of {a.name}:")
            lines += _unified(b.body, a.body)
    for instance in after.failing:
        if instance.error is None and instance.body:
            lines.append(f"{instance.name} answered {instance.status}: {instance.body[:300]}")
    changes = f"{len(gone)} gone, {len(added)} new, {len(changed)} changed status"
    summary = f"health: {_short(before)} before, {_short(after)} after; {changes}"
    if after.failing:
        summary += f" — failing now: {_names(after.failing)}"
    return summary, "\n".join(lines)


def _diff_one(before: HealthSnapshot, after: HealthSnapshot) -> tuple[str, str]:
    """One URL: the status before and after and a unified diff of the bodies."""
    (b,), (a,) = before.instances or (InstanceHealth("", "", None),), after.instances
    if a.status is None:
        return f"health after the deploy: GET {a.url} {a.outcome}", ""
    diff = "\n".join(_unified(b.body, a.body))
    changed = "body changed" if diff else "body unchanged"
    return f"health: {b.status} before, {a.status} after; {changed}", diff or a.body


def _unified(before: str, after: str) -> list[str]:
    return list(
        difflib.unified_diff(
            before.splitlines(),
            after.splitlines(),
            "pre-deploy-health",
            "post-deploy-health",
            lineterm="",
        )
    )


def _tally(snapshot: HealthSnapshot) -> str:
    if not snapshot.instances:
        return snapshot.problem or "no instances"
    return snapshot.counts()


def _short(snapshot: HealthSnapshot) -> str:
    """ "3/3 healthy" or "no ready pods"."""
    if not snapshot.instances:
        return "no instances"
    healthy = len(snapshot.instances) - len(snapshot.failing)
    return f"{healthy}/{len(snapshot.instances)} healthy"


def _names(failing: list[InstanceHealth]) -> str:
    named = ", ".join(f"{i.name} ({i.outcome})" for i in failing[:_NAMES_SHOWN])
    more = f" and {len(failing) - _NAMES_SHOWN} more" if len(failing) > _NAMES_SHOWN else ""
    return named + more
