"""`kubectl rollout undo`, done the way kubectl does it, client-side: copy the wanted ReplicaSet's
pod template back onto the Deployment with a JSON Patch; the wanted one is the ReplicaSet that ran
the version to bring back (by image), not merely the one before."""

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
    """Put the wanted version's template back on Deployment `name` and wait for it.

    The wanted version is `ctx.previous_version` (its image as remembered, or as configured):
    the ReplicaSet that ran it is found by its image, never by position alone, so a rollback
    to an older version brings that version back. When Kubernetes no longer keeps a
    ReplicaSet with it, the image itself is written."""
    api = rollouts.api
    deployment = await api.read(name)
    owned = await api.replicasets(deployment)
    wanted_image = _wanted_image(rollouts, ctx)
    target = _undo_target(rollouts, ctx, name, owned, wanted_image)
    if target is None:
        assert wanted_image is not None
        patched = await rollouts.set_image(ctx, deployment, wanted_image, remember=False)
        image, note = (
            wanted_image,
            f"no ReplicaSet of {name} kept {wanted_image}: {patched.summary}",
        )
    else:
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


def _wanted_image(rollouts: Rollouts, ctx: DeployContext) -> str | None:
    """The image of the version to bring back: the remembered one when it is that version."""
    remembered = ctx.state.get(STATE_PREVIOUS_IMAGE)
    if not ctx.previous_version:
        return remembered
    if remembered and image_tag(remembered) == ctx.previous_version:
        return str(remembered)
    return rollouts.previous_image(ctx)


def _undo_target(
    rollouts: Rollouts,
    ctx: DeployContext,
    name: str,
    owned: list[JsonDict],
    wanted_image: str | None,
) -> JsonDict | None:
    """The ReplicaSet to go back to: the remembered revision if it ran the wanted image, else
    the newest that ran it; None when none did (then the image is written instead)."""
    wanted_revision = ctx.state.get(STATE_PREVIOUS_REVISION)

    def runs_wanted(rs: JsonDict) -> bool:
        return wanted_image is None or rollouts.container(rs)["image"] == wanted_image

    target = next((rs for rs in owned if revision(rs) == wanted_revision and runs_wanted(rs)), None)
    if target is None and wanted_image:
        # Kubernetes renumbers a ReplicaSet it reuses, so after a retried rollback the
        # revision is gone but the image is still there.
        target = next((rs for rs in reversed(owned) if runs_wanted(rs)), None)
        return target
    if target is None and wanted_revision is None and len(owned) > 1:
        target = owned[-2]  # kubectl's default: the revision before the current one
    if target is None:
        kept = ", ".join(str(revision(rs)) for rs in owned) or "none"
        wanted = (
            f"revision {wanted_revision}" if wanted_revision is not None else "an earlier revision"
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
