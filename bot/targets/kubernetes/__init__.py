"""The Kubernetes target (one Deployment per service and environment) and the clients its targets
share; the modules inside say which part of a deploy each holds (see target.py)."""

from bot.targets.kubernetes.clients import KubernetesClients
from bot.targets.kubernetes.objects import COLOUR_LABEL, RolloutStatus, image_tag, rollout_status
from bot.targets.kubernetes.target import KubernetesDeployTarget

__all__ = [
    "COLOUR_LABEL",
    "KubernetesClients",
    "KubernetesDeployTarget",
    "RolloutStatus",
    "image_tag",
    "rollout_status",
]
