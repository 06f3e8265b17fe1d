"""Rolling out an image to one Deployment and watching it: the pieces every strategy uses, and the
rolling / recreate strategy itself (the Deployment's own `spec.strategy` replaces the pods)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bot.catalog import KubernetesTarget, format_duration
from bot.targets.base import DeployContext, Running, StepResult, TargetError
from bot.targets.kubernetes.api import KubernetesApi
from bot.targets.kubernetes.objects import (
    STATE_DEPLOYMENT,
    STATE_PREVIOUS_IMAGE,
    STATE_PREVIOUS_REVISION,
    JsonDict,
    container_of,
    image_tag,
    ready_counts,
    revision,
    rollout_status,
)


class Rollouts:
    """Patch, scale and wait for the Deployments of one target."""

    def __init__(self, api: KubernetesApi, config: KubernetesTarget, poll_interval: float) -> None:
        self.api = api
        self.config = config
        self.poll_interval = poll_interval

    def image(self, version: str) -> str:
        return f"{self.config.image}:{version}"

    def previous_image(self, ctx: DeployContext) -> str | None:
        return self.image(ctx.previous_version) if ctx.previous_version else None

    def container(self, workload: JsonDict) -> JsonDict:
        """The configured container of a Deployment or ReplicaSet."""
        return container_of(workload, self.config.container)

    def container_patch(self, image: str) -> JsonDict:
        return {"name": self.config.container, "image": image}

    async def prepare_rolling(self, ctx: DeployContext) -> StepResult:
        name = self.config.deployment
        deployment = await self.api.read(name)
        result = await self.set_image(ctx, deployment, self.image(ctx.version))
        strategy_type = (deployment["spec"].get("strategy") or {}).get("type", "RollingUpdate")
        return StepResult(
            result.summary,
            output=f"{result.output}\nDeployment strategy: {strategy_type}".strip(),
            state={STATE_DEPLOYMENT: name, **result.state},
        )

    async def set_image(
        self, ctx: DeployContext, deployment: JsonDict, image: str, *, remember: bool = True
    ) -> StepResult:
        """Patch the container image unless it already runs it; remember what ran before."""
        name = deployment["metadata"]["name"]
        before = self.container(deployment)["image"]
        was_revision = revision(deployment)
        state: JsonDict = {}
        if remember:
            # Keep the first answer: a retried step sees its own earlier patch as "current".
            state[STATE_PREVIOUS_IMAGE] = ctx.state.get(STATE_PREVIOUS_IMAGE) or (
                before if before != image else self.previous_image(ctx)
            )
            if STATE_PREVIOUS_REVISION in ctx.state:
                state[STATE_PREVIOUS_REVISION] = ctx.state[STATE_PREVIOUS_REVISION]
            elif before != image:
                state[STATE_PREVIOUS_REVISION] = was_revision
        if before == image:
            return StepResult(f"{name} already runs {image}; nothing to patch", state=state)
        patch = {"spec": {"template": {"spec": {"containers": [self.container_patch(image)]}}}}
        await self.api.patch_deployment(name, patch)
        return StepResult(
            f"{name}: image {image_tag(before)} → {image_tag(image)} (was revision {was_revision})",
            output=f"PATCH {self.api.ref(name)}: container {self.config.container} image {image}",
            state=state,
        )

    async def scale(self, name: str, replicas: int) -> str:
        deployment = await self.api.read(name)
        if deployment["spec"].get("replicas", 1) == replicas:
            return f"{name} already has {replicas} replica(s)"
        await self.api.patch_deployment(name, {"spec": {"replicas": replicas}})
        return f"PATCH {self.api.ref(name)}: replicas {replicas}"

    async def wait_rolled_out(
        self, ctx: DeployContext, name: str, timeout: timedelta
    ) -> tuple[JsonDict, list[str]]:
        """Poll until kubectl would call the rollout complete; the progress lines it logged."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout.total_seconds()
        lines: list[str] = []
        while True:
            deployment = await self.api.read(name)
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

    def running(self, deployment: JsonDict) -> Running:
        name = deployment["metadata"]["name"]
        image = self.container(deployment)["image"]
        status = deployment.get("status") or {}
        ready = status.get("readyReplicas") or 0
        wanted = deployment["spec"].get("replicas", 1)
        return Running(image_tag(image), f"{ready}/{wanted} pods of {name} run {image}")

    def ready_summary(self, deployment: JsonDict) -> str:
        name = deployment["metadata"]["name"]
        tag = image_tag(self.container(deployment)["image"])
        return f"{name} runs {tag} ({ready_counts(deployment)})"


def require(ctx: DeployContext, key: str) -> str:
    """A value `prepare` put into the deploy's state."""
    value = ctx.state.get(key)
    if not value:
        raise TargetError(f"the deploy's state has no {key}: prepare has not run")
    return str(value)
