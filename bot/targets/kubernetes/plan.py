"""What a Kubernetes deploy would do, call by call, for `--dry-run` (pure: no API is asked)."""

from __future__ import annotations

from bot.catalog import KubernetesTarget, format_duration
from bot.targets.base import DeployContext
from bot.targets.kubernetes.objects import (
    COLOUR_LABEL,
    STATE_LIVE_COLOUR,
    TRACK_LABEL,
    other_colour,
)


def plan_calls(config: KubernetesTarget, ctx: DeployContext, poll_interval: float) -> list[str]:
    """Every API call a deploy of `ctx.version` would make, in order."""
    ns = config.namespace
    image = f"{config.image}:{ctx.version}"
    container = config.container
    wait = (
        f"every {poll_interval:g}s until rolled out (up to {format_duration(config.ready_timeout)})"
    )

    def ref(name: str) -> str:
        return f"deployments/{ns}/{name}"

    if config.strategy == "blue-green":
        service_ref = f"services/{ns}/{config.service}"
        live = ctx.state.get(STATE_LIVE_COLOUR)
        idle = other_colour(live) if live else "<idle colour>"
        live_name = f"{config.deployment}-{live or '<live colour>'}"
        idle_name = f"{config.deployment}-{idle}"
        return [
            f"GET {service_ref}: read the live colour (selector {COLOUR_LABEL})",
            f"GET {ref(live_name)}: read replicas and pod template",
            f"GET {ref(idle_name)} (POST deployments/{ns} to create it from "
            f"{live_name} if missing)",
            f"PATCH {ref(idle_name)}: container {container} image {image}, replicas as {live_name}",
            f"GET {ref(idle_name)} {wait}",
            f"PATCH {service_ref}: selector {COLOUR_LABEL}={idle}",
            f"DELETE {ref(live_name)} (cleanup)",
        ]
    main = config.deployment
    if config.strategy == "canary":
        canary = f"{main}-canary"
        lines = [
            f"GET {ref(main)}: read replicas, pod template and revision",
            f"POST deployments/{ns}: {canary}, a copy of {main} with image {image} "
            f"and label {TRACK_LABEL}=canary, 1 replica",
            f"GET {ref(canary)} {wait}",
        ]
        for percent in config.steps:
            if percent < 100:
                lines.append(f"PATCH {ref(canary)}: replicas ceil({main} replicas × {percent} %)")
                lines.append(f"GET {ref(canary)} {wait}")
        lines += [
            f"PATCH {ref(canary)}: replicas as {main} (100 %)",
            f"PATCH {ref(main)}: container {container} image {image}",
            f"GET {ref(main)} {wait}",
            f"DELETE {ref(canary)} (finalize)",
        ]
        return lines
    return [
        f"GET {ref(main)}: read container {container} image and revision",
        f"PATCH {ref(main)}: container {container} image {image}",
        f"GET {ref(main)} {wait}",
    ]
