"""Canary on Kubernetes: a Deployment `<deployment>-canary` (label `track: canary`, same app
labels, so the Service sends it a share of the requests) is scaled per step; at 100 % the main
Deployment gets the new image and the canary is deleted at finalize."""

from __future__ import annotations

import math

from bot.targets.base import DeployContext, StepResult
from bot.targets.kubernetes.objects import (
    STATE_CANARY,
    STATE_DEPLOYMENT,
    STATE_PREVIOUS_IMAGE,
    STATE_PREVIOUS_REVISION,
    TRACK_LABEL,
    JsonDict,
    clone_deployment,
    image_tag,
    ready_counts,
    revision,
)
from bot.targets.kubernetes.rollout import Rollouts
from bot.targets.kubernetes.undo import rollout_undo


class Canary:
    """The canary steps of one target."""

    def __init__(self, rollouts: Rollouts) -> None:
        self.rollouts = rollouts
        self.api = rollouts.api
        self.config = rollouts.config

    @property
    def name(self) -> str:
        return f"{self.config.deployment}-canary"

    async def prepare(self, ctx: DeployContext) -> StepResult:
        main = await self.api.read(self.config.deployment)
        image = self.rollouts.image(ctx.version)
        name = self.name
        state: JsonDict = {
            STATE_DEPLOYMENT: name,
            STATE_CANARY: name,
            STATE_PREVIOUS_IMAGE: ctx.state.get(STATE_PREVIOUS_IMAGE)
            or self.rollouts.container(main)["image"],
            STATE_PREVIOUS_REVISION: ctx.state.get(STATE_PREVIOUS_REVISION) or revision(main),
        }
        canary = await self.api.find(name)
        if canary is None:
            body = clone_deployment(
                main,
                name,
                {TRACK_LABEL: "canary"},
                container=self.config.container,
                image=image,
                replicas=1,
            )
            await self.api.create(body)
            return StepResult(
                f"created {name} with {image_tag(image)} (1 replica beside "
                f"{main['spec'].get('replicas', 1)} of {self.config.deployment})",
                output=f"POST deployments/{self.api.ns}: {name} image {image}",
                state=state,
            )
        result = await self.rollouts.set_image(ctx, canary, image, remember=False)
        return StepResult(result.summary, output=result.output, state=state)

    async def shift(self, ctx: DeployContext, percent: int) -> StepResult:
        main_name, name = self.config.deployment, self.name
        main = await self.api.read(main_name)
        main_replicas = main["spec"].get("replicas", 1)
        wanted = math.ceil(main_replicas * percent / 100)
        lines = [await self.rollouts.scale(name, wanted)]
        if wanted:
            _, waited = await self.rollouts.wait_rolled_out(ctx, name, self.config.ready_timeout)
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
        image = self.rollouts.image(ctx.version)
        patched = await self.rollouts.set_image(ctx, main, image, remember=False)
        deployment, lines = await self.rollouts.wait_rolled_out(
            ctx, self.config.deployment, self.config.ready_timeout
        )
        return StepResult(
            f"{self.config.deployment} runs {ctx.version} ({ready_counts(deployment)}); "
            f"{self.name} stays until finalize",
            output="\n".join([patched.output, *lines]).strip(),
        )

    async def finalize(self, ctx: DeployContext) -> StepResult:
        main = await self.api.read(self.config.deployment)
        lines: list[str] = []
        # A playbook without a 100 % step still ends with the new version everywhere.
        if self.rollouts.container(main)["image"] != self.rollouts.image(ctx.version):
            lines.append((await self._promote_main(ctx, main)).output)
        deleted = await self.api.delete(self.name)
        gone = "deleted" if deleted else "already gone:"
        return StepResult(
            f"{self.config.deployment} serves {ctx.version} alone; {gone} {self.name}",
            output="\n".join(lines),
        )

    async def cleanup(self) -> StepResult:
        if await self.api.delete(self.name):
            return StepResult(f"deleted {self.name}")
        return StepResult(f"nothing to clean up: {self.name} is already gone")

    async def rollback(self, ctx: DeployContext) -> StepResult:
        name = self.name
        deleted = await self.api.delete(name)
        parts = [f"deleted {name}" if deleted else f"{name} already gone"]
        output = ""
        main = await self.api.read(self.config.deployment)
        previous_image = ctx.state.get(STATE_PREVIOUS_IMAGE) or self.rollouts.previous_image(ctx)
        # Judge by what runs, not by a flag: a crash may land between the patch and saving state.
        if previous_image and self.rollouts.container(main)["image"] != previous_image:
            undone = await rollout_undo(self.rollouts, ctx, self.config.deployment)
            parts.append(undone.summary)
            output = undone.output
        else:
            parts.append(f"{self.config.deployment} was not changed")
        return StepResult("; ".join(parts), output=output)
