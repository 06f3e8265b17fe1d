"""The composition root's table of plug-ins: the target kinds and metric sources the catalog may
name, and the clients their instances share.

Nothing registers itself: a new kind is a row here. `Plugins` owns the shared clients (one
Kubernetes ApiClient per cluster and event loop, one boto3 session per AWS profile); the
composition root (bot/app.py) creates one and closes it at shutdown. The module functions
`make_target` and `make_source` build one plug-in with clients of its own, for callers outside a
running bot (tests, a single check).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from bot.targets.base import Target, TargetError

if TYPE_CHECKING:
    from bot.catalog import ComposeTarget, KubernetesTarget, LambdaTarget, MetricsSource
    from bot.metrics.base import MetricSource
    from bot.targets.aws_lambda import AwsSessions
    from bot.targets.kubernetes import KubernetesClients

__all__ = [
    "METRIC_SOURCES",
    "TARGET_KINDS",
    "Plugins",
    "SharedClients",
    "make_source",
    "make_target",
]

# Each plug-in's module is imported when the first one of its kind is built: the Kubernetes
# client and boto3 take a noticeable part of a second to import, and a bot whose catalog names
# neither should not pay for them (nor carry them in its heap) at start.


class SharedClients:
    """The clients targets of one process share, each made on first use; `close()` at shutdown."""

    def __init__(self) -> None:
        self._kubernetes: KubernetesClients | None = None
        self._aws: AwsSessions | None = None

    @property
    def kubernetes(self) -> KubernetesClients:
        if self._kubernetes is None:
            from bot.targets.kubernetes import KubernetesClients

            self._kubernetes = KubernetesClients()
        return self._kubernetes

    @property
    def aws(self) -> AwsSessions:
        if self._aws is None:
            from bot.targets.aws_lambda import AwsSessions

            self._aws = AwsSessions()
        return self._aws

    async def close(self) -> None:
        if self._kubernetes is not None:
            await self._kubernetes.close()


# A target builder: (catalog entry, shared clients or None, service=, environment=, env=).


def _kubernetes(config: KubernetesTarget, clients: SharedClients | None, **where: Any) -> Target:
    from bot.targets.kubernetes import KubernetesDeployTarget

    shared = clients.kubernetes if clients else None
    return KubernetesDeployTarget(config, clients=shared, **where)


def _lambda(config: LambdaTarget, clients: SharedClients | None, **where: Any) -> Target:
    from bot.targets.aws_lambda import LambdaDeployTarget

    return LambdaDeployTarget(config, sessions=clients.aws if clients else None, **where)


def _compose(config: ComposeTarget, clients: SharedClients | None, **where: Any) -> Target:
    from bot.targets.compose import ComposeDeployTarget

    return ComposeDeployTarget(config, **where)


def _prometheus(config: MetricsSource, *, env: Mapping[str, str]) -> MetricSource:
    from bot.metrics.prometheus import PrometheusSource

    return PrometheusSource(str(config.url or "http://localhost:9090"))


def _cloudwatch(config: MetricsSource, *, env: Mapping[str, str]) -> MetricSource:
    from bot.metrics.cloudwatch import CloudWatchSource

    # CloudWatch reads AWS_ENDPOINT_URL, AWS_REGION and the credentials from `env`.
    return CloudWatchSource(region=config.region, env=env)


# The catalog's `kind:` of a service's target -> how to build it.
TARGET_KINDS: Mapping[str, Callable[..., Target]] = MappingProxyType(
    {"kubernetes": _kubernetes, "lambda": _lambda, "compose": _compose}
)
# The catalog's `metrics.source` -> how to build it.
METRIC_SOURCES: Mapping[str, Callable[..., MetricSource]] = MappingProxyType(
    {"prometheus": _prometheus, "cloudwatch": _cloudwatch}
)


class Plugins:
    """Builds targets and metric sources from the catalog, sharing clients between targets."""

    def __init__(self, clients: SharedClients | None = None) -> None:
        self.clients = clients or SharedClients()

    def make_target(
        self, config: Any, *, service: str, environment: str, env: Mapping[str, str]
    ) -> Target:
        """The target for one service in one environment, on this process's shared clients."""
        return _build_target(config, service, environment, env, self.clients)

    async def close(self) -> None:
        await self.clients.close()


def make_target(config: Any, *, service: str, environment: str, env: Mapping[str, str]) -> Target:
    """Build the target for one service in one environment from its catalog entry.

    `config` is the catalog's target model (its `kind` picks the class); `env` is the process
    environment (KUBECONFIG, AWS_ENDPOINT_URL, AWS_REGION, PATH …) so tests can point elsewhere.
    The target has clients of its own, released by its `close()`.
    """
    return _build_target(config, service, environment, env, None)


def _build_target(
    config: Any,
    service: str,
    environment: str,
    env: Mapping[str, str],
    clients: SharedClients | None,
) -> Target:
    factory = TARGET_KINDS.get(config.kind)
    if factory is None:
        raise TargetError(f"opsbot has no target of kind '{config.kind}'")
    return factory(config, clients, service=service, environment=environment, env=env)


def make_source(config: MetricsSource, *, env: Mapping[str, str]) -> MetricSource:
    """Build the source the catalog's `metrics:` section names.

    `env` is the process environment: CloudWatch reads AWS_ENDPOINT_URL, AWS_REGION and the
    credentials from it (so tests point it at moto); Prometheus needs only the catalog's `url`.
    """
    factory = METRIC_SOURCES.get(config.source)
    if factory is None:
        raise ValueError(f"unknown metrics source {config.source!r} (use prometheus or cloudwatch)")
    return factory(config, env=env)
