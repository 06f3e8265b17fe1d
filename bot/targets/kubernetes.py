"""The Kubernetes target: release an image tag to a Deployment as rolling, recreate, blue-green or
canary, through the official asyncio client (`kubernetes.aio`).

The runbook's option A as API calls:

- rolling / recreate: strategic-merge patch the container image on the Deployment and wait with
  kubectl's rollout-complete rule; the Deployment's own `spec.strategy` decides how pods are
  replaced. Rollback is `kubectl rollout undo` done the way kubectl does it, client-side: copy the
  wanted ReplicaSet's pod template back onto the Deployment with a JSON Patch.
- blue-green: two Deployments `<deployment>-blue` and `<deployment>-green`; the Service's selector
  label `colour` says which one is live. The idle colour gets the new image, the selector switches
  at 100 %, cleanup deletes the old colour (`kubectl delete deployment myapp-green`).
- canary: a Deployment `<deployment>-canary` (label `track: canary`, same app labels, so the
  Service sends it a share of the requests) is scaled per step; at 100 % the main Deployment gets
  the new image and the canary is deleted at finalize.

Every API failure becomes a TargetError naming the call, the HTTP status and the API's message;
an unreachable API server is `retryable`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import aiohttp
from kubernetes.aio import client as k8s
from kubernetes.aio.client.exceptions import ApiException
from kubernetes.aio.config import load_kube_config

from bot.catalog import KubernetesTarget, format_duration
from bot.targets.base import (
    DeployContext,
    Instance,
    Running,
    StepResult,
    Target,
    TargetError,
    register_kind,
)

__all__ = ["COLOUR_LABEL", "KubernetesDeployTarget", "RolloutStatus", "rollout_status"]

# The label on blue-green pods and the key of the Service selector that picks the live colour.
COLOUR_LABEL = "colour"
COLOURS = ("blue", "green")
# The label that sets canary pods apart from the main Deployment's (the Service ignores it).
TRACK_LABEL = "track"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
# Annotations `kubectl rollout undo` leaves alone on the Deployment (kubectl's annotationsToSkip).
_UNDO_SKIPPED_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION_ANNOTATION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)
# Metadata a new object must not carry over from the one it is cloned from.
_SERVER_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "ownerReferences",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
# Statuses that mean "the API server is struggling, try again" rather than "this cannot work".
_RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})

# Keys this target keeps in DeployContext.state.
STATE_DEPLOYMENT = "k8s_deployment"  # the Deployment whose rollout wait_ready watches
STATE_PREVIOUS_IMAGE = "previous_image"  # the image that ran before the deploy
STATE_PREVIOUS_REVISION = "previous_revision"  # the main Deployment's revision before the deploy
STATE_LIVE_COLOUR = "live_colour"  # blue-green: the colour serving before the deploy
STATE_NEW_COLOUR = "new_colour"  # blue-green: the colour that gets the new version
STATE_CANARY = "canary_deployment"  # canary: the canary Deployment's name

JsonDict = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class RolloutStatus:
    """A Deployment's rollout judged by kubectl's rule (`kubectl rollout status`)."""

    done: bool
    failure: str | None  # set when the rollout cannot finish (ProgressDeadlineExceeded)
    wanted: int
    updated: int
    available: int
    replicas: int
    observed: bool  # the controller has seen the latest spec

    @property
    def progress(self) -> str:
        if not self.observed:
            return "waiting for the controller to see the new spec"
        return f"{self.updated}/{self.wanted} updated, {self.available} available"


def rollout_status(deployment: JsonDict) -> RolloutStatus:
    """Pure: kubectl's rollout-complete rule over a Deployment as a dict (API field names)."""
    metadata, spec, status = deployment["metadata"], deployment["spec"], deployment.get("status")
    status = status or {}
    wanted = spec.get("replicas", 1)
    updated = status.get("updatedReplicas") or 0
    available = status.get("availableReplicas") or 0
    replicas = status.get("replicas") or 0
    observed = metadata.get("generation", 0) <= (status.get("observedGeneration") or 0)
    failure = None
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and (
            condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            failure = condition.get("message") or "progress deadline exceeded"
    done = (
        observed
        and failure is None
        and updated == wanted
        and replicas == updated
        and available == updated
    )
    return RolloutStatus(done, failure, wanted, updated, available, replicas, observed)


def image_tag(image: str) -> str | None:
    """`registry:5000/shop/checkout:v42` -> `v42`; a digest when there is no tag; None if bare."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.rsplit(":", 1)[1]
    return digest or None


_SHARED_CLIENTS: dict[tuple[Any, ...], tuple[str | None, Any]] = {}


async def close_clients() -> None:
    """Close the Kubernetes clients this event loop shares between targets (at shutdown)."""
    loop = asyncio.get_running_loop()
    for key in [key for key in _SHARED_CLIENTS if key[0] is loop]:
        _, client = _SHARED_CLIENTS.pop(key)
        await client.close()


# How long the Deployment `current()` read may stand in for the next read of it (the first step
# of the deploy that asked, moments later); any write by the target discards it.
JUST_READ_SECONDS = 2.0


@register_kind("kubernetes")
class KubernetesDeployTarget(Target):
    """One service's Deployment(s) in one namespace of one cluster."""

    kind: ClassVar[str] = "kubernetes"
    strategies: ClassVar[tuple[str, ...]] = ("rolling", "recreate", "blue-green", "canary")
    # Seconds between two reads of a rollout; tests lower it.
    poll_interval: ClassVar[float] = 1.0
    # A single API call may not hang longer than this (the client's default is 5 minutes).
    request_timeout: ClassVar[float] = 30.0

    def __init__(
        self,
        config: KubernetesTarget,
        *,
        service: str,
        environment: str,
        env: Mapping[str, str],
    ) -> None:
        self.config = config
        self.service = service
        self.environment = environment
        self._env = dict(env)
        # (when, name, Deployment) of `current()`'s read, for the next read of it (one use).
        self._just_read: tuple[float, str, JsonDict] | None = None
        self._api_client: k8s.ApiClient | None = None
        self._host = "?"
        self._connect_lock = asyncio.Lock()

    # ------------------------------------------------------------------ names

    @property
    def _ns(self) -> str:
        return self.config.namespace

    def _image(self, version: str) -> str:
        return f"{self.config.image}:{version}"

    def _colour_deployment(self, colour: str) -> str:
        return f"{self.config.deployment}-{colour}"

    @property
    def _canary_name(self) -> str:
        return f"{self.config.deployment}-canary"

    def _ref(self, name: str) -> str:
        return f"deployments/{self._ns}/{name}"

    @property
    def _service_ref(self) -> str:
        return f"services/{self._ns}/{self.config.service}"

    # ------------------------------------------------------------------ the interface

    async def current(self) -> Running:
        if self.config.strategy == "blue-green":
            colour = await self._live_colour()
            deployment = await self._read(self._colour_deployment(colour))
            running = self._running(deployment)
            return Running(running.version, running.detail, {STATE_LIVE_COLOUR: colour})
        deployment = await self._read(self.config.deployment)
        # The deploy that asked usually goes on with this target at once, and its first step
        # reads the same Deployment: let that one read use this answer (bench/deploy_overhead).
        self._just_read = (asyncio.get_running_loop().time(), self.config.deployment, deployment)
        return self._running(deployment)

    def plan(self, ctx: DeployContext) -> list[str]:
        image = self._image(ctx.version)
        container = self.config.container
        wait = (
            f"every {self.poll_interval:g}s until rolled out "
            f"(up to {format_duration(self.config.ready_timeout)})"
        )
        strategy = self.config.strategy
        if strategy == "blue-green":
            live = ctx.state.get(STATE_LIVE_COLOUR)
            idle = _other(live) if live else "<idle colour>"
            live_name = self._colour_deployment(live or "<live colour>")
            idle_name = self._colour_deployment(idle)
            return [
                f"GET {self._service_ref}: read the live colour (selector {COLOUR_LABEL})",
                f"GET {self._ref(live_name)}: read replicas and pod template",
                f"GET {self._ref(idle_name)} (POST deployments/{self._ns} to create it from "
                f"{live_name} if missing)",
                f"PATCH {self._ref(idle_name)}: container {container} image {image}, "
                f"replicas as {live_name}",
                f"GET {self._ref(idle_name)} {wait}",
                f"PATCH {self._service_ref}: selector {COLOUR_LABEL}={idle}",
                f"DELETE {self._ref(live_name)} (cleanup)",
            ]
        main = self.config.deployment
        if strategy == "canary":
            canary = self._canary_name
            lines = [
                f"GET {self._ref(main)}: read replicas, pod template and revision",
                f"POST deployments/{self._ns}: {canary}, a copy of {main} with image {image} "
                f"and label {TRACK_LABEL}=canary, 1 replica",
                f"GET {self._ref(canary)} {wait}",
            ]
            for percent in self.config.steps:
                if percent < 100:
                    lines.append(
                        f"PATCH {self._ref(canary)}: replicas ceil({main} replicas × {percent} %)"
                    )
                    lines.append(f"GET {self._ref(canary)} {wait}")
            lines += [
                f"PATCH {self._ref(canary)}: replicas as {main} (100 %)",
                f"PATCH {self._ref(main)}: container {container} image {image}",
                f"GET {self._ref(main)} {wait}",
                f"DELETE {self._ref(canary)} (finalize)",
            ]
            return lines
        return [
            f"GET {self._ref(main)}: read container {container} image and revision",
            f"PATCH {self._ref(main)}: container {container} image {image}",
            f"GET {self._ref(main)} {wait}",
        ]

    async def prepare(self, ctx: DeployContext) -> StepResult:
        if self.config.strategy == "blue-green":
            return await self._prepare_blue_green(ctx)
        if self.config.strategy == "canary":
            return await self._prepare_canary(ctx)
        return await self._prepare_rolling(ctx)

    async def wait_ready(self, ctx: DeployContext, *, timeout: timedelta) -> StepResult:
        name = ctx.state.get(STATE_DEPLOYMENT) or self._watched_default()
        deployment, lines = await self._wait_rolled_out(ctx, name, timeout)
        return StepResult(self._ready_summary(deployment), output="\n".join(lines))

    async def shift_traffic(self, ctx: DeployContext, percent: int) -> StepResult:
        if not 0 <= percent <= 100:
            raise TargetError(f"cannot send {percent} % of traffic: use 0–100")
        if self.config.strategy == "blue-green":
            return await self._shift_blue_green(ctx, percent)
        if self.config.strategy == "canary":
            return await self._shift_canary(ctx, percent)
        return StepResult(
            f"{self.config.deployment} already serves {ctx.version} from every updated pod "
            f"({self.config.strategy} update: no separate traffic step)"
        )

    async def finalize(self, ctx: DeployContext) -> StepResult:
        if self.config.strategy == "blue-green":
            new = ctx.state.get(STATE_NEW_COLOUR, "?")
            live = ctx.state.get(STATE_LIVE_COLOUR, "?")
            return StepResult(
                f"{self._colour_deployment(new)} serves all traffic; "
                f"{self._colour_deployment(live)} kept for a fast rollback until cleanup"
            )
        if self.config.strategy == "canary":
            return await self._finalize_canary(ctx)
        return StepResult(
            f"nothing to finalize: the {self.config.strategy} update replaced every pod "
            f"of {self.config.deployment}"
        )

    async def cleanup(self, ctx: DeployContext) -> StepResult:
        if self.config.strategy == "blue-green":
            return await self._cleanup_blue_green(ctx)
        if self.config.strategy == "canary":
            deleted = await self._delete(self._canary_name)
            if deleted:
                return StepResult(f"deleted {self._canary_name}")
            return StepResult(f"nothing to clean up: {self._canary_name} is already gone")
        return StepResult(
            f"nothing to clean up: Kubernetes keeps the old ReplicaSet of "
            f"{self.config.deployment} for `rollout undo`"
        )

    async def rollback(self, ctx: DeployContext) -> StepResult:
        if self.config.strategy == "blue-green":
            return await self._rollback_blue_green(ctx)
        if self.config.strategy == "canary":
            return await self._rollback_canary(ctx)
        return await self._undo(ctx, self.config.deployment)

    async def instances(self) -> list[Instance]:
        return await self.ready_pods()

    async def ready_pods(self) -> list[Instance]:
        """The ready pods serving now, by name: those the Deployment's selector matches (for
        blue-green, the live colour's; for canary, the main Deployment's selector, which matches
        the canary's pods too). Ready = an IP, the Ready condition True, and not terminating."""
        if self.config.strategy == "blue-green":
            name = self._colour_deployment(await self._live_colour())
        else:
            name = self.config.deployment
        deployment = await self._read(name)
        selector = label_selector(deployment["spec"].get("selector") or {})
        if not selector:
            raise TargetError(f"{self._ref(name)} has no pod selector: its pods cannot be listed")
        listing = await self._call(
            f"GET pods/{self._ns}?labelSelector={selector}",
            lambda: self._core.list_namespaced_pod(
                self._ns, label_selector=selector, _request_timeout=self.request_timeout
            ),
        )
        ready = [
            Instance(pod["metadata"]["name"], pod["status"]["podIP"])
            for pod in self._plain(listing)["items"]
            if _pod_ready(pod)
        ]
        return sorted(ready, key=lambda instance: instance.name)

    async def close(self) -> None:
        # The client is shared with other targets of the same cluster: `close_clients` ends it.
        if self._api_client is not None and not self._shared:
            await self._api_client.close()
        self._api_client = None

    # ------------------------------------------------------------------ rolling / recreate

    async def _prepare_rolling(self, ctx: DeployContext) -> StepResult:
        name = self.config.deployment
        deployment = await self._read(name)
        result = await self._set_image(ctx, deployment, self._image(ctx.version))
        strategy_type = (deployment["spec"].get("strategy") or {}).get("type", "RollingUpdate")
        return StepResult(
            result.summary,
            output=f"{result.output}\nDeployment strategy: {strategy_type}".strip(),
            state={STATE_DEPLOYMENT: name, **result.state},
        )

    async def _set_image(
        self, ctx: DeployContext, deployment: JsonDict, image: str, *, remember: bool = True
    ) -> StepResult:
        """Patch the container image unless it already runs it; remember what ran before."""
        name = deployment["metadata"]["name"]
        before = self._container(deployment)["image"]
        revision = _revision(deployment)
        state: JsonDict = {}
        if remember:
            # Keep the first answer: a retried step sees its own earlier patch as "current".
            state[STATE_PREVIOUS_IMAGE] = ctx.state.get(STATE_PREVIOUS_IMAGE) or (
                before if before != image else self._previous_image(ctx)
            )
            if STATE_PREVIOUS_REVISION in ctx.state:
                state[STATE_PREVIOUS_REVISION] = ctx.state[STATE_PREVIOUS_REVISION]
            elif before != image:
                state[STATE_PREVIOUS_REVISION] = revision
        if before == image:
            return StepResult(f"{name} already runs {image}; nothing to patch", state=state)
        patch = {"spec": {"template": {"spec": {"containers": [self._container_patch(image)]}}}}
        await self._patch_deployment(name, patch)
        return StepResult(
            f"{name}: image {image_tag(before)} → {image_tag(image)} (was revision {revision})",
            output=f"PATCH {self._ref(name)}: container {self.config.container} image {image}",
            state=state,
        )

    async def _undo(self, ctx: DeployContext, name: str) -> StepResult:
        """`kubectl rollout undo`, client-side: put an older ReplicaSet's template back."""
        deployment = await self._read(name)
        owned = await self._replicasets(deployment)
        if not owned:
            raise TargetError(f"cannot roll back {name}: it has no ReplicaSets to go back to")
        current_revision = _revision(deployment)
        wanted_revision = ctx.state.get(STATE_PREVIOUS_REVISION)
        previous_image = ctx.state.get(STATE_PREVIOUS_IMAGE) or self._previous_image(ctx)
        target = next((rs for rs in owned if _revision(rs) == wanted_revision), None)
        if target is None and previous_image:
            # Kubernetes renumbers a ReplicaSet it reuses, so after a retried rollback the
            # revision is gone but the image is still there.
            target = next(
                (rs for rs in reversed(owned) if self._container(rs)["image"] == previous_image),
                None,
            )
        if target is None and wanted_revision is None and not previous_image and len(owned) > 1:
            target = owned[-2]  # kubectl's default: the revision before the current one
        if target is None:
            kept = ", ".join(str(_revision(rs)) for rs in owned)
            wanted = (
                f"revision {wanted_revision}"
                if wanted_revision is not None
                else (previous_image or "an earlier revision")
            )
            raise TargetError(
                f"cannot roll back {name}: no ReplicaSet with {wanted} (kept revisions: {kept})"
            )
        template = copy.deepcopy(target["spec"]["template"])
        template.setdefault("metadata", {}).setdefault("labels", {}).pop(HASH_LABEL, None)
        image = self._container(target)["image"]
        if template == deployment["spec"]["template"]:
            note = f"{name} already runs the template of revision {current_revision} ({image})"
        else:
            annotations = {
                key: value
                for key, value in (deployment["metadata"].get("annotations") or {}).items()
                if key in _UNDO_SKIPPED_ANNOTATIONS
            }
            annotations |= {
                key: value
                for key, value in (target["metadata"].get("annotations") or {}).items()
                if key not in _UNDO_SKIPPED_ANNOTATIONS
            }
            operations = [
                {"op": "replace", "path": "/spec/template", "value": template},
                {"op": "replace", "path": "/metadata/annotations", "value": annotations},
            ]
            await self._patch_deployment(name, operations)
            note = f"{name}: template of revision {_revision(target)} ({image}) restored"
        deployment, lines = await self._wait_rolled_out(ctx, name, self.config.ready_timeout)
        return StepResult(
            f"{name} rolled back to {image_tag(image)} ({self._ready_counts(deployment)})",
            output="\n".join([note, *lines]),
        )

    # ------------------------------------------------------------------ blue-green

    async def _prepare_blue_green(self, ctx: DeployContext) -> StepResult:
        live = ctx.state.get(STATE_LIVE_COLOUR) or await self._live_colour()
        new = ctx.state.get(STATE_NEW_COLOUR) or _other(live)
        live_name, new_name = self._colour_deployment(live), self._colour_deployment(new)
        image = self._image(ctx.version)
        live_deployment = await self._read(live_name)
        state: JsonDict = {
            STATE_DEPLOYMENT: new_name,
            STATE_LIVE_COLOUR: live,
            STATE_NEW_COLOUR: new,
            STATE_PREVIOUS_IMAGE: ctx.state.get(STATE_PREVIOUS_IMAGE)
            or self._container(live_deployment)["image"],
        }
        replicas = live_deployment["spec"].get("replicas", 1)
        idle = await self._find(new_name)
        if idle is None:
            body = self._clone(
                live_deployment, new_name, {COLOUR_LABEL: new}, image=image, replicas=replicas
            )
            await self._create(body)
            return StepResult(
                f"created {new_name} from {live_name} with {image_tag(image)} "
                f"({replicas} replicas)",
                output=f"POST deployments/{self._ns}: {new_name} image {image}",
                state=state,
            )
        changes: JsonDict = {}
        if idle["spec"].get("replicas", 1) != replicas:
            changes["replicas"] = replicas
        if self._container(idle)["image"] != image:
            changes["template"] = {"spec": {"containers": [self._container_patch(image)]}}
        if not changes:
            return StepResult(
                f"{new_name} already runs {image} with {replicas} replicas", state=state
            )
        await self._patch_deployment(new_name, {"spec": changes})
        return StepResult(
            f"{new_name}: image {image_tag(self._container(idle)['image'])} → "
            f"{image_tag(image)}, {replicas} replicas (idle; {live_name} still serves)",
            output=f"PATCH {self._ref(new_name)}: {json.dumps({'spec': changes})}",
            state=state,
        )

    async def _shift_blue_green(self, ctx: DeployContext, percent: int) -> StepResult:
        if percent == 0:
            live = self._colour_deployment(self._require(ctx, STATE_LIVE_COLOUR))
            return StepResult(f"0 %: {live} keeps all traffic")
        if percent < 100:
            raise TargetError(
                f"blue-green moves all traffic at once; {percent} % needs strategy canary"
            )
        new = self._require(ctx, STATE_NEW_COLOUR)
        await self._switch_service(new)
        return StepResult(
            f"{self.config.service} now sends all traffic to {self._colour_deployment(new)}",
            output=f"PATCH {self._service_ref}: selector {COLOUR_LABEL}={new}",
        )

    async def _cleanup_blue_green(self, ctx: DeployContext) -> StepResult:
        old = self._require(ctx, STATE_LIVE_COLOUR)
        old_name = self._colour_deployment(old)
        # Never delete what serves: a rollback (or a person) may have switched back.
        if await self._live_colour() == old:
            raise TargetError(
                f"will not delete {old_name}: {self.config.service} still sends traffic to it"
            )
        if await self._delete(old_name):
            return StepResult(f"deleted {old_name} (the previous colour)")
        return StepResult(f"nothing to clean up: {old_name} is already gone")

    async def _rollback_blue_green(self, ctx: DeployContext) -> StepResult:
        serving = await self._live_colour()
        back_to = ctx.state.get(STATE_LIVE_COLOUR) or _other(serving)
        name = self._colour_deployment(back_to)
        if serving == back_to:
            return StepResult(f"{self.config.service} still sends all traffic to {name}")
        deployment = await self._find(name)
        if deployment is None:
            raise TargetError(
                f"cannot switch back: {name} was already deleted (cleanup ran); "
                "deploy the previous version again instead"
            )
        if deployment["spec"].get("replicas", 1) == 0:
            # Someone scaled the old colour down: bring it back before it gets traffic.
            serving_deployment = await self._read(self._colour_deployment(serving))
            replicas = serving_deployment["spec"].get("replicas", 1)
            await self._patch_deployment(name, {"spec": {"replicas": replicas}})
        deployment, lines = await self._wait_rolled_out(ctx, name, self.config.ready_timeout)
        await self._switch_service(back_to)
        return StepResult(
            f"{self.config.service} switched back to {name} "
            f"({image_tag(self._container(deployment)['image'])}); "
            f"{self._colour_deployment(serving)} left running for inspection",
            output="\n".join(
                [*lines, f"PATCH {self._service_ref}: selector {COLOUR_LABEL}={back_to}"]
            ),
        )

    async def _live_colour(self) -> str:
        service = await self._read_service()
        colour = (service["spec"].get("selector") or {}).get(COLOUR_LABEL)
        if colour not in COLOURS:
            raise TargetError(
                f"Service {self._ns}/{self.config.service} has no selector "
                f"{COLOUR_LABEL}=blue|green (found {colour!r}); blue-green needs one"
            )
        return colour

    async def _switch_service(self, colour: str) -> None:
        service = await self._read_service()
        if (service["spec"].get("selector") or {}).get(COLOUR_LABEL) == colour:
            return
        await self._call(
            f"PATCH {self._service_ref}",
            lambda: self._core.patch_namespaced_service(
                self.config.service,
                self._ns,
                {"spec": {"selector": {COLOUR_LABEL: colour}}},
                _request_timeout=self.request_timeout,
            ),
        )

    # ------------------------------------------------------------------ canary

    async def _prepare_canary(self, ctx: DeployContext) -> StepResult:
        main = await self._read(self.config.deployment)
        image = self._image(ctx.version)
        name = self._canary_name
        state: JsonDict = {
            STATE_DEPLOYMENT: name,
            STATE_CANARY: name,
            STATE_PREVIOUS_IMAGE: ctx.state.get(STATE_PREVIOUS_IMAGE)
            or self._container(main)["image"],
            STATE_PREVIOUS_REVISION: ctx.state.get(STATE_PREVIOUS_REVISION) or _revision(main),
        }
        canary = await self._find(name)
        if canary is None:
            body = self._clone(main, name, {TRACK_LABEL: "canary"}, image=image, replicas=1)
            await self._create(body)
            return StepResult(
                f"created {name} with {image_tag(image)} (1 replica beside "
                f"{main['spec'].get('replicas', 1)} of {self.config.deployment})",
                output=f"POST deployments/{self._ns}: {name} image {image}",
                state=state,
            )
        result = await self._set_image(ctx, canary, image, remember=False)
        return StepResult(result.summary, output=result.output, state=state)

    async def _shift_canary(self, ctx: DeployContext, percent: int) -> StepResult:
        main_name, name = self.config.deployment, self._canary_name
        main = await self._read(main_name)
        main_replicas = main["spec"].get("replicas", 1)
        wanted = math.ceil(main_replicas * percent / 100)
        lines = [await self._scale(name, wanted)]
        if wanted:
            _, waited = await self._wait_rolled_out(ctx, name, self.config.ready_timeout)
            lines += waited
        if percent < 100:
            share = round(100 * wanted / (wanted + main_replicas)) if wanted else 0
            return StepResult(
                f"{name}: {wanted} pod(s) with {ctx.version} beside {main_replicas} of "
                f"{main_name} (about {share} % of requests)",
                output="\n".join(lines),
            )
        promoted = await self._promote_main(ctx, main)
        return StepResult(promoted.summary, output="\n".join([*lines, promoted.output]))

    async def _promote_main(self, ctx: DeployContext, main: JsonDict) -> StepResult:
        image = self._image(ctx.version)
        patched = await self._set_image(ctx, main, image, remember=False)
        deployment, lines = await self._wait_rolled_out(
            ctx, self.config.deployment, self.config.ready_timeout
        )
        return StepResult(
            f"{self.config.deployment} runs {ctx.version} ({self._ready_counts(deployment)}); "
            f"{self._canary_name} stays until finalize",
            output="\n".join([patched.output, *lines]).strip(),
        )

    async def _finalize_canary(self, ctx: DeployContext) -> StepResult:
        main = await self._read(self.config.deployment)
        lines: list[str] = []
        # A playbook without a 100 % step still ends with the new version everywhere.
        if self._container(main)["image"] != self._image(ctx.version):
            lines.append((await self._promote_main(ctx, main)).output)
        deleted = await self._delete(self._canary_name)
        gone = "deleted" if deleted else "already gone:"
        return StepResult(
            f"{self.config.deployment} serves {ctx.version} alone; {gone} {self._canary_name}",
            output="\n".join(lines),
        )

    async def _rollback_canary(self, ctx: DeployContext) -> StepResult:
        name = self._canary_name
        deleted = await self._delete(name)
        parts = [f"deleted {name}" if deleted else f"{name} already gone"]
        output = ""
        main = await self._read(self.config.deployment)
        previous_image = ctx.state.get(STATE_PREVIOUS_IMAGE) or self._previous_image(ctx)
        # Judge by what runs, not by a flag: a crash may land between the patch and saving state.
        if previous_image and self._container(main)["image"] != previous_image:
            undone = await self._undo(ctx, self.config.deployment)
            parts.append(undone.summary)
            output = undone.output
        else:
            parts.append(f"{self.config.deployment} was not changed")
        return StepResult("; ".join(parts), output=output)

    async def _scale(self, name: str, replicas: int) -> str:
        deployment = await self._read(name)
        if deployment["spec"].get("replicas", 1) == replicas:
            return f"{name} already has {replicas} replica(s)"
        await self._patch_deployment(name, {"spec": {"replicas": replicas}})
        return f"PATCH {self._ref(name)}: replicas {replicas}"

    # ------------------------------------------------------------------ shared pieces

    def _watched_default(self) -> str:
        if self.config.strategy == "canary":
            return self._canary_name
        if self.config.strategy == "blue-green":
            raise TargetError("nothing to wait for: prepare has not chosen the new colour yet")
        return self.config.deployment

    async def _wait_rolled_out(
        self, ctx: DeployContext, name: str, timeout: timedelta
    ) -> tuple[JsonDict, list[str]]:
        """Poll until kubectl would call the rollout complete; the progress lines it logged."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout.total_seconds()
        lines: list[str] = []
        while True:
            deployment = await self._read(name)
            status = rollout_status(deployment)
            if status.failure is not None:
                raise TargetError(
                    f"{name} rollout failed: ProgressDeadlineExceeded ({status.failure}; "
                    f"{status.progress})"
                )
            line = f"{name}: {status.progress}"
            if not lines or lines[-1] != line:
                lines.append(line)
                await ctx.log(line)
            if status.done:
                return deployment, lines
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TargetError(
                    f"{name} not ready after {format_duration(timeout)}: "
                    f"{status.updated}/{status.wanted} updated, {status.available} available"
                )
            await asyncio.sleep(min(self.poll_interval, remaining))

    def _running(self, deployment: JsonDict) -> Running:
        name = deployment["metadata"]["name"]
        image = self._container(deployment)["image"]
        status = deployment.get("status") or {}
        ready = status.get("readyReplicas") or 0
        wanted = deployment["spec"].get("replicas", 1)
        return Running(image_tag(image), f"{ready}/{wanted} pods of {name} run {image}")

    def _ready_summary(self, deployment: JsonDict) -> str:
        name = deployment["metadata"]["name"]
        tag = image_tag(self._container(deployment)["image"])
        return f"{name} runs {tag} ({self._ready_counts(deployment)})"

    @staticmethod
    def _ready_counts(deployment: JsonDict) -> str:
        status = rollout_status(deployment)
        return f"{status.available}/{status.wanted} ready"

    def _container(self, workload: JsonDict) -> JsonDict:
        """The configured container of a Deployment or ReplicaSet."""
        containers = workload["spec"]["template"]["spec"]["containers"]
        for container in containers:
            if container["name"] == self.config.container:
                return container
        names = ", ".join(c["name"] for c in containers)
        raise TargetError(
            f"{workload['metadata']['name']} has no container '{self.config.container}' "
            f"(it has: {names})"
        )

    def _container_patch(self, image: str) -> JsonDict:
        return {"name": self.config.container, "image": image}

    def _previous_image(self, ctx: DeployContext) -> str | None:
        return self._image(ctx.previous_version) if ctx.previous_version else None

    @staticmethod
    def _require(ctx: DeployContext, key: str) -> str:
        value = ctx.state.get(key)
        if not value:
            raise TargetError(f"the deploy's state has no {key}: prepare has not run")
        return str(value)

    def _clone(
        self,
        source: JsonDict,
        name: str,
        labels: dict[str, str],
        *,
        image: str,
        replicas: int,
    ) -> JsonDict:
        """A new Deployment from a live one: its spec, with extra labels on the object, its
        selector and its pods (so the two Deployments never claim each other's pods)."""
        metadata = {
            key: value
            for key, value in copy.deepcopy(source["metadata"]).items()
            if key not in _SERVER_METADATA
        }
        metadata["name"] = name
        metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
        metadata["annotations"] = {
            key: value
            for key, value in (metadata.get("annotations") or {}).items()
            if key not in _UNDO_SKIPPED_ANNOTATIONS
        }
        metadata["annotations"]["opsbot/cloned-from"] = source["metadata"]["name"]
        spec = copy.deepcopy(source["spec"])
        spec["replicas"] = replicas
        spec["selector"]["matchLabels"] = {**(spec["selector"].get("matchLabels") or {}), **labels}
        template_metadata = spec["template"].setdefault("metadata", {})
        template_labels = {**(template_metadata.get("labels") or {}), **labels}
        template_labels.pop(HASH_LABEL, None)
        template_metadata["labels"] = template_labels
        clone = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec}
        self._container(clone)["image"] = image
        return clone

    # ------------------------------------------------------------------ API calls

    async def _read(self, name: str) -> JsonDict:
        just_read, self._just_read = self._just_read, None
        if just_read is not None:
            at, read_name, deployment = just_read
            if read_name == name and asyncio.get_running_loop().time() - at < JUST_READ_SECONDS:
                return deployment
        deployment = await self._get_deployment(name, not_found_ok=False)
        assert deployment is not None
        return deployment

    async def _find(self, name: str) -> JsonDict | None:
        """The Deployment, or None when it does not exist."""
        return await self._get_deployment(name, not_found_ok=True)

    async def _get_deployment(self, name: str, *, not_found_ok: bool) -> JsonDict | None:
        """GET a Deployment as the API's JSON. Deployments are read while every rollout is
        watched, so this skips the client's model round trip (JSON → strict pydantic model →
        JSON again): ~1.8 ms a read saved (bench/deploy_overhead.py)."""
        what = f"GET {self._ref(name)}"
        body = await self._raw(
            what,
            lambda: self._apps.read_namespaced_deployment_without_preload_content(
                name, self._ns, _request_timeout=self.request_timeout
            ),
            not_found_ok=not_found_ok,
        )
        if body is None:
            return None
        try:
            answer = json.loads(body)
        except ValueError as error:
            raise TargetError(f"the Kubernetes API answered {what} with no JSON") from error
        if not isinstance(answer, dict):
            raise TargetError(f"the Kubernetes API answered {what} with no Deployment")
        return answer

    async def _patch_deployment(self, name: str, patch: JsonDict | list[JsonDict]) -> None:
        """PATCH a Deployment: a dict is a strategic-merge patch, a list a JSON patch. Nothing
        here needs the answer, so it is not turned into the client's models, which cost more
        than the request on the path of every deploy (bench/deploy_overhead.py)."""
        await self._raw(
            f"PATCH {self._ref(name)}",
            lambda: self._apps.patch_namespaced_deployment_without_preload_content(
                name, self._ns, patch, _request_timeout=self.request_timeout
            ),
        )

    async def _raw(
        self, what: str, send: Callable[[], Awaitable[Any]], *, not_found_ok: bool = False
    ) -> bytes | None:
        """The body of a call made `*_without_preload_content` (None for a 404 that is fine);
        an error status becomes the same TargetError as from the client's other calls."""

        async def call() -> tuple[int, str | None, bytes]:
            response = await send()
            try:
                return response.status, response.reason, await response.read()
            finally:
                response.release()

        status, reason, body = await self._call(what, call)
        if status == 404 and not_found_ok:
            return None
        if status >= 400:
            error = ApiException(status=status, reason=reason)
            error.body = body.decode("utf-8", "replace")
            raise TargetError(
                f"Kubernetes API answered {what} with HTTP {status}: {_api_message(error)}",
                retryable=status in _RETRYABLE_STATUSES,
            )
        return body

    async def _read_service(self) -> JsonDict:
        if not self.config.service:
            raise TargetError("no Service configured for this Kubernetes target")
        model = await self._call(
            f"GET {self._service_ref}",
            lambda: self._core.read_namespaced_service(
                self.config.service, self._ns, _request_timeout=self.request_timeout
            ),
        )
        return self._plain(model)

    async def _replicasets(self, deployment: JsonDict) -> list[JsonDict]:
        """The Deployment's ReplicaSets (by label and owner), oldest revision first."""
        match_labels = deployment["spec"]["selector"].get("matchLabels") or {}
        selector = ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))
        listing = await self._call(
            f"GET replicasets/{self._ns}?labelSelector={selector}",
            lambda: self._apps.list_namespaced_replica_set(
                self._ns, label_selector=selector, _request_timeout=self.request_timeout
            ),
        )
        uid = deployment["metadata"]["uid"]
        owned = [
            rs
            for rs in self._plain(listing)["items"]
            if any(ref.get("uid") == uid for ref in rs["metadata"].get("ownerReferences") or [])
        ]
        return sorted(owned, key=_revision)

    async def _create(self, body: JsonDict) -> None:
        await self._call(
            f"POST deployments/{self._ns} ({body['metadata']['name']})",
            lambda: self._apps.create_namespaced_deployment(
                self._ns, k8s.V1Deployment.from_dict(body), _request_timeout=self.request_timeout
            ),
        )

    async def _delete(self, name: str) -> bool:
        """Delete a Deployment and (in the background) its pods; False if it was already gone."""
        try:
            await self._call(
                f"DELETE {self._ref(name)}",
                lambda: self._apps.delete_namespaced_deployment(
                    name,
                    self._ns,
                    propagation_policy="Background",
                    _request_timeout=self.request_timeout,
                ),
                not_found_ok=True,
            )
        except _NotFound:
            return False
        return True

    async def _call(
        self,
        what: str,
        request: Callable[[], Awaitable[T]],
        *,
        not_found_ok: bool = False,
    ) -> T:
        """One API call; every failure becomes a one-sentence TargetError (never a traceback)."""
        if not what.startswith("GET "):
            self._just_read = None  # a change makes what `current()` read stale
        await self._connect()
        try:
            return await request()
        except ApiException as error:
            if not_found_ok and error.status == 404:
                raise _NotFound from None
            raise TargetError(
                f"Kubernetes API answered {what} with HTTP {error.status}: {_api_message(error)}",
                retryable=error.status in _RETRYABLE_STATUSES,
            ) from error
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            reason = str(error) or type(error).__name__
            raise TargetError(
                f"cannot reach the Kubernetes API at {self._host} for {what}: {reason}",
                retryable=True,
            ) from error
        except ValueError as error:
            # The generated models are strict: an answer (or a body) they reject lands here.
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise TargetError(
                f"the Kubernetes client could not handle {what}: {first_line}"
            ) from error

    _shared = False

    async def _connect(self) -> None:
        """Load the kubeconfig into a private Configuration on first use (never the global
        default, so two targets can talk to two clusters)."""
        if self._api_client is not None:
            return
        async with self._connect_lock:
            if self._api_client is not None:
                return
            paths, existing = _kubeconfig_files(self._env)
            if not existing:
                raise TargetError(f"no kubeconfig found at {paths} (set KUBECONFIG)")
            # One client per kubeconfig, context and event loop: building an ApiClient loads the
            # system CA bundle (tens of ms), which 50 deploys at once must not pay 100 times.
            key = (
                asyncio.get_running_loop(),
                tuple((path, os.stat(path).st_mtime_ns) for path in existing),
                self.config.context,
            )
            shared = _SHARED_CLIENTS.get(key)
            if shared is not None:
                self._host, self._api_client = shared
                self._shared = True
                return
            configuration = k8s.Configuration()
            context = f" (context {self.config.context})" if self.config.context else ""
            try:
                await load_kube_config(
                    config_file=os.pathsep.join(existing),
                    context=self.config.context,
                    client_configuration=configuration,
                    persist_config=False,
                )
            except Exception as error:  # the loader raises many kinds; all mean "bad kubeconfig"
                raise TargetError(
                    f"cannot use the kubeconfig {paths}{context}: {error}".strip()
                ) from error
            if not _names_a_proxy(self._env):
                # The client's session trusts the environment: before every request aiohttp
                # looks up proxy variables and ~/.netrc in a worker thread. With no proxy named
                # that is pure cost (bench/deploy_overhead.py), so the lookup is turned off.
                configuration.client_session_kwargs = {"trust_env": False}
            self._host = configuration.host
            self._api_client = k8s.ApiClient(configuration)
            _SHARED_CLIENTS[key] = (self._host, self._api_client)
            self._shared = True

    @property
    def _apps(self) -> k8s.AppsV1Api:
        if self._api_client is None:  # only `_call` uses it, after connecting
            raise RuntimeError("the Kubernetes client is not connected")
        return k8s.AppsV1Api(self._api_client)

    @property
    def _core(self) -> k8s.CoreV1Api:
        if self._api_client is None:
            raise RuntimeError("the Kubernetes client is not connected")
        return k8s.CoreV1Api(self._api_client)

    def _plain(self, model: Any) -> JsonDict:
        """A generated model as the API's JSON (camelCase keys), which is what we reason in."""
        if self._api_client is None:
            raise RuntimeError("the Kubernetes client is not connected")
        return self._api_client.sanitize_for_serialization(model)


class _NotFound(Exception):
    """Internal: a 404 the caller asked to treat as "absent"."""


def _kubeconfig_files(env: Mapping[str, str]) -> tuple[str, list[str]]:
    """KUBECONFIG (a path list, as kubectl reads it) or ~/.kube/config; and those that exist.
    Sync on purpose: a stat or two, once per target."""
    home = env.get("HOME") or str(Path.home())
    paths = env.get("KUBECONFIG") or os.path.join(home, ".kube", "config")
    existing = [p for p in paths.split(os.pathsep) if p and Path(p).expanduser().exists()]
    return paths, existing


def label_selector(selector: JsonDict) -> str:
    """A LabelSelector (matchLabels, matchExpressions) in the API's query syntax."""
    parts = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = ",".join(expression.get("values") or [])
        if operator == "In":
            parts.append(f"{key} in ({values})")
        elif operator == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif operator == "Exists":
            parts.append(key)
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def _pod_ready(pod: JsonDict) -> bool:
    status = pod.get("status") or {}
    if not status.get("podIP") or pod["metadata"].get("deletionTimestamp"):
        return False
    return any(
        condition.get("type") == "Ready" and condition.get("status") == "True"
        for condition in status.get("conditions") or []
    )


def _other(colour: str) -> str:
    return COLOURS[1] if colour == COLOURS[0] else COLOURS[0]


def _revision(workload: JsonDict) -> int:
    annotations = workload["metadata"].get("annotations") or {}
    try:
        return int(annotations.get(REVISION_ANNOTATION, "0"))
    except ValueError:
        return 0


def _names_a_proxy(env: Mapping[str, str]) -> bool:
    """Whether the environment names an HTTP(S) proxy (or a netrc file) aiohttp would use."""
    names = ("http_proxy", "https_proxy", "all_proxy", "ws_proxy", "wss_proxy", "netrc")
    return any(env.get(name) or env.get(name.upper()) for name in names)


def _api_message(error: ApiException) -> str:
    """The API's own sentence from its Status body, else the HTTP reason."""
    try:
        body = json.loads(error.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(error.reason or "no message")
