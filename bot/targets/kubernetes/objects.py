"""Kubernetes objects as the API's JSON: names, labels and state keys, and pure rules over them
(kubectl's rollout-complete rule, image tags, selectors, cloning a Deployment)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from bot.targets.base import TargetError

JsonDict = dict[str, Any]

# The label on blue-green pods and the key of the Service selector that picks the live colour.
COLOUR_LABEL = "colour"
COLOURS = ("blue", "green")
# The label that sets canary pods apart from the main Deployment's (the Service ignores it).
TRACK_LABEL = "track"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
# Annotations `kubectl rollout undo` leaves alone on the Deployment (kubectl's annotationsToSkip).
UNDO_SKIPPED_ANNOTATIONS = frozenset(
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

# Keys this target keeps in DeployContext.state.
STATE_DEPLOYMENT = "k8s_deployment"  # the Deployment whose rollout wait_ready watches
STATE_PREVIOUS_IMAGE = "previous_image"  # the image that ran before the deploy
STATE_PREVIOUS_REVISION = "previous_revision"  # the main Deployment's revision before the deploy
STATE_LIVE_COLOUR = "live_colour"  # blue-green: the colour serving before the deploy
STATE_NEW_COLOUR = "new_colour"  # blue-green: the colour that gets the new version
STATE_CANARY = "canary_deployment"  # canary: the canary Deployment's name


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


def ready_counts(deployment: JsonDict) -> str:
    status = rollout_status(deployment)
    return f"{status.available}/{status.wanted} ready"


def image_tag(image: str) -> str | None:
    """`registry:5000/shop/checkout:v42` -> `v42`; a digest when there is no tag; None if bare."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.rsplit(":", 1)[1]
    return digest or None


def container_of(workload: JsonDict, container: str) -> JsonDict:
    """The container called `container` of a Deployment or ReplicaSet."""
    containers = workload["spec"]["template"]["spec"]["containers"]
    for candidate in containers:
        if candidate["name"] == container:
            return candidate
    names = ", ".join(c["name"] for c in containers)
    raise TargetError(
        f"{workload['metadata']['name']} has no container '{container}' (it has: {names})"
    )


def clone_deployment(
    source: JsonDict,
    name: str,
    labels: dict[str, str],
    *,
    container: str,
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
        if key not in UNDO_SKIPPED_ANNOTATIONS
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
    container_of(clone, container)["image"] = image
    return clone


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


def pod_ready(pod: JsonDict) -> bool:
    """Ready = an IP, the Ready condition True, and not terminating."""
    status = pod.get("status") or {}
    if not status.get("podIP") or pod["metadata"].get("deletionTimestamp"):
        return False
    return any(
        condition.get("type") == "Ready" and condition.get("status") == "True"
        for condition in status.get("conditions") or []
    )


def other_colour(colour: str) -> str:
    return COLOURS[1] if colour == COLOURS[0] else COLOURS[0]


def revision(workload: JsonDict) -> int:
    annotations = workload["metadata"].get("annotations") or {}
    try:
        return int(annotations.get(REVISION_ANNOTATION, "0"))
    except ValueError:
        return 0
