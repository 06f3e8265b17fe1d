"""`kubectl rollout undo`, done the way kubectl does it, client-side: copy the wanted ReplicaSet's
pod template back onto the Deployment with a JSON Patch."""

from __future__ import annotations

import copy

from bot.targets.base import DeployContext, StepResult, TargetError
from bot.targets.kubernetes.objects import (
    HASH_LABEL,
    STATE_PREVIOUS_IMAGE,
    STATE_PREVIOUS_REVISION,
    UNDO_SKIPPED_ANNOTATIONS,
    JsonDict,
    image_tag,
    ready_counts,
    revision,
)
from bot.targets.kubernetes.rollout import Rollouts


async def rollout_undo(rollouts: Rollouts, ctx: DeployContext, name: str) -> StepResult:
    """Put an older ReplicaSet's template back on Deployment `name` and wait for it."""
    api = rollouts.api
    deployment = await api.read(name)
    owned = await api.replicasets(deployment)
    if not owned:
        raise TargetError(f"cannot roll back {name}: it has no ReplicaSets to go back to")
    target = _undo_target(rollouts, ctx, name, owned)
    template = copy.deepcopy(target["spec"]["template"])
    template.setdefault("metadata", {}).setdefault("labels", {}).pop(HASH_LABEL, None)
    image = rollouts.container(target)["image"]
    if template == deployment["spec"]["template"]:
        note = f"{name} already runs the template of revision {revision(deployment)} ({image})"
    else:
        operations = [
            {"op": "replace", "path": "/spec/template", "value": template},
            {
                "op": "replace",
                "path": "/metadata/annotations",
                "value": _annotations(deployment, target),
            },
        ]
        await api.patch_deployment(name, operations)
        note = f"{name}: template of revision {revision(target)} ({image}) restored"
    deployment, lines = await rollouts.wait_rolled_out(ctx, name, rollouts.config.ready_timeout)
    return StepResult(
        f"{name} rolled back to {image_tag(image)} ({ready_counts(deployment)})",
        output="\n".join([note, *lines]),
    )


def _undo_target(
    rollouts: Rollouts, ctx: DeployContext, name: str, owned: list[JsonDict]
) -> JsonDict:
    """The ReplicaSet to go back to: the remembered revision, else the previous image."""
    wanted_revision = ctx.state.get(STATE_PREVIOUS_REVISION)
    previous_image = ctx.state.get(STATE_PREVIOUS_IMAGE) or rollouts.previous_image(ctx)
    target = next((rs for rs in owned if revision(rs) == wanted_revision), None)
    if target is None and previous_image:
        # Kubernetes renumbers a ReplicaSet it reuses, so after a retried rollback the
        # revision is gone but the image is still there.
        target = next(
            (rs for rs in reversed(owned) if rollouts.container(rs)["image"] == previous_image),
            None,
        )
    if target is None and wanted_revision is None and not previous_image and len(owned) > 1:
        target = owned[-2]  # kubectl's default: the revision before the current one
    if target is None:
        kept = ", ".join(str(revision(rs)) for rs in owned)
        wanted = (
            f"revision {wanted_revision}"
            if wanted_revision is not None
            else (previous_image or "an earlier revision")
        )
        raise TargetError(
            f"cannot roll back {name}: no ReplicaSet with {wanted} (kept revisions: {kept})"
        )
    return target


def _annotations(deployment: JsonDict, target: JsonDict) -> JsonDict:
    """kubectl's rule: the Deployment keeps its skipped annotations, takes the ReplicaSet's rest."""
    annotations = {
        key: value
        for key, value in (deployment["metadata"].get("annotations") or {}).items()
        if key in UNDO_SKIPPED_ANNOTATIONS
    }
    annotations |= {
        key: value
        for key, value in (target["metadata"].get("annotations") or {}).items()
        if key not in UNDO_SKIPPED_ANNOTATIONS
    }
    return annotations
