"""The Kubernetes target: release an image tag to a Deployment as rolling, recreate, blue-green or
canary, through the official asyncio client (`kubernetes.aio`).

The runbook's option A as API calls; each strategy lives in its own module (rollout.py for
rolling / recreate, blue_green.py, canary.py, undo.py for `kubectl rollout undo`), the API calls
in api.py, and this class picks the strategy for each step of the one target interface.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import ClassVar

from bot.catalog import KubernetesTarget
from bot.targets.base import DeployContext, Instance, Running, StepResult, Target, TargetError
from bot.targets.kubernetes.api import KubernetesApi
from bot.targets.kubernetes.blue_green import BlueGreen
from bot.targets.kubernetes.canary import Canary
from bot.targets.kubernetes.clients import KubernetesClients
from bot.targets.kubernetes.objects import (
    STATE_DEPLOYMENT,
    STATE_LIVE_COLOUR,
    label_selector,
    pod_ready,
)
from bot.targets.kubernetes.plan import plan_calls
from bot.targets.kubernetes.rollout import Rollouts
from bot.targets.kubernetes.undo import rollout_undo


class KubernetesDeployTarget(Target):
    """One service's Deployment(s) in one namespace of one cluster."""

    kind: ClassVar[str] = "kubernetes"
    strategies: ClassVar[tuple[str, ...]] = ("rolling", "recreate", "blue-green", "canary")
    # Seconds between two reads of a rollout; tests lower it.
    poll_interval: ClassVar[float] = 1.0

    def __init__(
        self,
        config: KubernetesTarget,
        *,
        service: str,
        environment: str,
        env: Mapping[str, str],
        clients: KubernetesClients | None = None,
    ) -> None:
        self.config = config
        self.service = service
        self.environment = environment
        # Without a holder of shared clients the target has its own, and closes it with itself.
        self._own_clients = KubernetesClients() if clients is None else None
        self._api = KubernetesApi(config, env, clients or self._own_clients)
        self._rollouts = Rollouts(self._api, config, self.poll_interval)
        self._blue_green = BlueGreen(self._rollouts)
        self._canary = Canary(self._rollouts)

    async def current(self) -> Running:
        if self.config.strategy == "blue-green":
            colour = await self._blue_green.live_colour()
            deployment = await self._api.read(self._blue_green.deployment(colour))
            running = self._rollouts.running(deployment)
            return Running(running.version, running.detail, {STATE_LIVE_COLOUR: colour})
        deployment = await self._api.read(self.config.deployment)
        # The deploy that asked usually goes on with this target at once, and its first step
        # reads the same Deployment: let that one read use this answer (read_cache.py).
        self._api.just_read.keep(self.config.deployment, deployment)
        return self._rollouts.running(deployment)

    def plan(self, ctx: DeployContext) -> list[str]:
        return plan_calls(self.config, ctx, self.poll_interval)

    async def prepare(self, ctx: DeployContext) -> StepResult:
        if self.config.strategy == "blue-green":
            return await self._blue_green.prepare(ctx)
        if self.config.strategy == "canary":
            return await self._canary.prepare(ctx)
        return await self._rollouts.prepare_rolling(ctx)

    async def wait_ready(self, ctx: DeployContext, *, timeout: timedelta) -> StepResult:
        name = ctx.state.get(STATE_DEPLOYMENT) or self._watched_default()
        deployment, lines = await self._rollouts.wait_rolled_out(ctx, name, timeout)
        return StepResult(self._rollouts.ready_summary(deployment), output="\n".join(lines))

    async def shift_traffic(self, ctx: DeployContext, percent: int) -> StepResult:
        if not 0 <= percent <= 100:
            raise TargetError(f"cannot send {percent} % of traffic: use 0–100")
        if self.config.strategy == "blue-green":
            return await self._blue_green.shift(ctx, percent)
        if self.config.strategy == "canary":
            return await self._canary.shift(ctx, percent)
        return StepResult(
            f"{self.config.deployment} already serves {ctx.version} from every updated pod "
            f"({self.config.strategy} update: no separate traffic step)"
        )

    async def finalize(self, ctx: DeployContext) -> StepResult:
        if self.config.strategy == "blue-green":
            return self._blue_green.finalize(ctx)
        if self.config.strategy == "canary":
            return await self._canary.finalize(ctx)
        return StepResult(
            f"nothing to finalize: the {self.config.strategy} update replaced every pod "
            f"of {self.config.deployment}"
        )

    async def cleanup(self, ctx: DeployContext) -> StepResult:
        if self.config.strategy == "blue-green":
            return await self._blue_green.cleanup(ctx)
        if self.config.strategy == "canary":
            return await self._canary.cleanup()
        return StepResult(
            f"nothing to clean up: Kubernetes keeps the old ReplicaSet of "
            f"{self.config.deployment} for `rollout undo`"
        )

    async def rollback(self, ctx: DeployContext) -> StepResult:
        if self.config.strategy == "blue-green":
            return await self._blue_green.rollback(ctx)
        if self.config.strategy == "canary":
            return await self._canary.rollback(ctx)
        return await rollout_undo(self._rollouts, ctx, self.config.deployment)

    async def instances(self) -> list[Instance]:
        return await self.ready_pods()

    async def ready_pods(self) -> list[Instance]:
        """The ready pods serving now, by name: those the Deployment's selector matches (for
        blue-green, the live colour's; for canary, the main Deployment's selector, which matches
        the canary's pods too). Ready = an IP, the Ready condition True, and not terminating."""
        if self.config.strategy == "blue-green":
            name = self._blue_green.deployment(await self._blue_green.live_colour())
        else:
            name = self.config.deployment
        deployment = await self._api.read(name)
        selector = label_selector(deployment["spec"].get("selector") or {})
        if not selector:
            raise TargetError(
                f"{self._api.ref(name)} has no pod selector: its pods cannot be listed"
            )
        ready = [
            Instance(pod["metadata"]["name"], pod["status"]["podIP"])
            for pod in await self._api.pods(selector)
            if pod_ready(pod)
        ]
        return sorted(ready, key=lambda instance: instance.name)

    async def close(self) -> None:
        # Shared clients belong to their holder (closed by the composition root); own ones end here.
        self._api.disconnect()
        if self._own_clients is not None:
            await self._own_clients.close()

    def _watched_default(self) -> str:
        if self.config.strategy == "canary":
            return self._canary.name
        if self.config.strategy == "blue-green":
            raise TargetError("nothing to wait for: prepare has not chosen the new colour yet")
        return self.config.deployment
