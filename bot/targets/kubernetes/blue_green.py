"""Blue-green on Kubernetes: two Deployments `<deployment>-blue` and `<deployment>-green`; the
Service's selector label `colour` says which one is live. The idle colour gets the new image, the
selector switches at 100 %, cleanup deletes the old colour (`kubectl delete deployment …`)."""

from __future__ import annotations

import json

from bot.targets.base import DeployContext, StepResult, TargetError
from bot.targets.kubernetes.objects import (
    COLOUR_LABEL,
    COLOURS,
    STATE_DEPLOYMENT,
    STATE_LIVE_COLOUR,
    STATE_NEW_COLOUR,
    STATE_PREVIOUS_IMAGE,
    JsonDict,
    clone_deployment,
    image_tag,
    other_colour,
)
from bot.targets.kubernetes.rollout import Rollouts, require


class BlueGreen:
    """The blue-green steps of one target."""

    def __init__(self, rollouts: Rollouts) -> None:
        self.rollouts = rollouts
        self.api = rollouts.api
        self.config = rollouts.config

    def deployment(self, colour: str) -> str:
        return f"{self.config.deployment}-{colour}"

    async def live_colour(self) -> str:
        service = await self.api.read_service()
        colour = (service["spec"].get("selector") or {}).get(COLOUR_LABEL)
        if colour not in COLOURS:
            raise TargetError(
                f"Service {self.api.ns}/{self.config.service} has no selector "
                f"{COLOUR_LABEL}=blue|green (found {colour!r}); blue-green needs one"
            )
        return colour

    async def prepare(self, ctx: DeployContext) -> StepResult:
        live = ctx.state.get(STATE_LIVE_COLOUR) or await self.live_colour()
        new = ctx.state.get(STATE_NEW_COLOUR) or other_colour(live)
        live_name, new_name = self.deployment(live), self.deployment(new)
        image = self.rollouts.image(ctx.version)
        live_deployment = await self.api.read(live_name)
        state: JsonDict = {
            STATE_DEPLOYMENT: new_name,
            STATE_LIVE_COLOUR: live,
            STATE_NEW_COLOUR: new,
            STATE_PREVIOUS_IMAGE: ctx.state.get(STATE_PREVIOUS_IMAGE)
            or self.rollouts.container(live_deployment)["image"],
        }
        replicas = live_deployment["spec"].get("replicas", 1)
        idle = await self.api.find(new_name)
        if idle is None:
            body = clone_deployment(
                live_deployment,
                new_name,
                {COLOUR_LABEL: new},
                container=self.config.container,
                image=image,
                replicas=replicas,
            )
            await self.api.create(body)
            return StepResult(
                f"created {new_name} from {live_name} with {image_tag(image)} "
                f"({replicas} replicas)",
                output=f"POST deployments/{self.api.ns}: {new_name} image {image}",
                state=state,
            )
        changes: JsonDict = {}
        if idle["spec"].get("replicas", 1) != replicas:
            changes["replicas"] = replicas
        if self.rollouts.container(idle)["image"] != image:
            changes["template"] = {"spec": {"containers": [self.rollouts.container_patch(image)]}}
        if not changes:
            return StepResult(
                f"{new_name} already runs {image} with {replicas} replicas", state=state
            )
        await self.api.patch_deployment(new_name, {"spec": changes})
        return StepResult(
            f"{new_name}: image {image_tag(self.rollouts.container(idle)['image'])} → "
            f"{image_tag(image)}, {replicas} replicas (idle; {live_name} still serves)",
            output=f"PATCH {self.api.ref(new_name)}: {json.dumps({'spec': changes})}",
            state=state,
        )

    async def shift(self, ctx: DeployContext, percent: int) -> StepResult:
        if percent == 0:
            live = self.deployment(require(ctx, STATE_LIVE_COLOUR))
            return StepResult(f"0 %: {live} keeps all traffic")
        if percent < 100:
            raise TargetError(
                f"blue-green moves all traffic at once; {percent} % needs strategy canary"
            )
        new = require(ctx, STATE_NEW_COLOUR)
        await self._switch_service(new)
        return StepResult(
            f"{self.config.service} now sends all traffic to {self.deployment(new)}",
            output=f"PATCH {self.api.service_ref}: selector {COLOUR_LABEL}={new}",
        )

    def finalize(self, ctx: DeployContext) -> StepResult:
        new = ctx.state.get(STATE_NEW_COLOUR, "?")
        live = ctx.state.get(STATE_LIVE_COLOUR, "?")
        return StepResult(
            f"{self.deployment(new)} serves all traffic; "
            f"{self.deployment(live)} kept for a fast rollback until cleanup"
        )

    async def cleanup(self, ctx: DeployContext) -> StepResult:
        old = require(ctx, STATE_LIVE_COLOUR)
        old_name = self.deployment(old)
        # Never delete what serves: a rollback (or a person) may have switched back.
        if await self.live_colour() == old:
            raise TargetError(
                f"will not delete {old_name}: {self.config.service} still sends traffic to it"
            )
        if await self.api.delete(old_name):
            return StepResult(f"deleted {old_name} (the previous colour)")
        return StepResult(f"nothing to clean up: {old_name} is already gone")

    async def rollback(self, ctx: DeployContext) -> StepResult:
        serving = await self.live_colour()
        back_to = ctx.state.get(STATE_LIVE_COLOUR) or other_colour(serving)
        name = self.deployment(back_to)
        if serving == back_to:
            return StepResult(f"{self.config.service} still sends all traffic to {name}")
        deployment = await self.api.find(name)
        if deployment is None and not ctx.previous_version:
            raise TargetError(
                f"cannot switch back: {name} was already deleted (cleanup ran); "
                "deploy the previous version again instead"
            )
        await self._give_version(ctx, name, deployment, serving)
        deployment, lines = await self.rollouts.wait_rolled_out(
            ctx, name, self.config.ready_timeout
        )
        await self._switch_service(back_to)
        return StepResult(
            f"{self.config.service} switched back to {name} "
            f"({image_tag(self.rollouts.container(deployment)['image'])}); "
            f"{self.deployment(serving)} left running for inspection",
            output="\n".join(
                [*lines, f"PATCH {self.api.service_ref}: selector {COLOUR_LABEL}={back_to}"]
            ),
        )

    async def _give_version(
        self, ctx: DeployContext, name: str, deployment: JsonDict | None, serving: str
    ) -> None:
        """Make the colour to switch back to run `ctx.previous_version` with the serving
        colour's replicas: recreate it when cleanup deleted it, patch it when it runs another
        version (a rollback to an older one) or was scaled down."""
        serving_deployment = await self.api.read(self.deployment(serving))
        replicas = serving_deployment["spec"].get("replicas", 1)
        wanted = self.rollouts.image(ctx.previous_version) if ctx.previous_version else None
        if deployment is None:
            assert wanted is not None
            colour = name.rsplit("-", 1)[-1]
            body = clone_deployment(
                serving_deployment,
                name,
                {COLOUR_LABEL: colour},
                container=self.config.container,
                image=wanted,
                replicas=replicas,
            )
            await self.api.create(body)
            return
        changes: JsonDict = {}
        if deployment["spec"].get("replicas", 1) == 0:
            changes["replicas"] = replicas
        image = self.rollouts.container(deployment)["image"]
        if wanted and image_tag(image) != ctx.previous_version:
            changes["template"] = {"spec": {"containers": [self.rollouts.container_patch(wanted)]}}
        if changes:
            await self.api.patch_deployment(name, {"spec": changes})

    async def _switch_service(self, colour: str) -> None:
        service = await self.api.read_service()
        if (service["spec"].get("selector") or {}).get(COLOUR_LABEL) == colour:
            return
        await self.api.select_colour(colour)
