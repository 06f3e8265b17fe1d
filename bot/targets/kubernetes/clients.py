"""The Kubernetes API clients a process shares between its targets, owned by whoever builds them."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubernetes.aio import client as k8s
from kubernetes.aio.config import load_kube_config

from bot.targets.base import TargetError

__all__ = ["KubernetesClients"]


class KubernetesClients:
    """One ApiClient per kubeconfig, context and event loop, for every target that asks.

    Building an ApiClient loads the system CA bundle (tens of ms), which 50 deploys at once must
    not pay 100 times ("one Kubernetes client per cluster" in bench/README.md). The composition
    root creates one holder and closes it at shutdown; a target built without one makes its own.
    """

    def __init__(self) -> None:
        self._clients: dict[tuple[Any, ...], tuple[str, k8s.ApiClient]] = {}

    async def connect(self, env: Mapping[str, str], context: str | None) -> tuple[str, Any]:
        """(the API server's address, its ApiClient) for the kubeconfig `env` names.

        The kubeconfig is loaded into a private Configuration, never the global default, so two
        targets can talk to two clusters.
        """
        paths, existing = _kubeconfig_files(env)
        if not existing:
            raise TargetError(f"no kubeconfig found at {paths} (set KUBECONFIG)")
        key = (
            asyncio.get_running_loop(),
            tuple((path, os.stat(path).st_mtime_ns) for path in existing),
            context,
        )
        shared = self._clients.get(key)
        if shared is not None:
            return shared
        configuration = k8s.Configuration()
        where = f" (context {context})" if context else ""
        try:
            await load_kube_config(
                config_file=os.pathsep.join(existing),
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
        except Exception as error:  # the loader raises many kinds; all mean "bad kubeconfig"
            raise TargetError(
                f"cannot use the kubeconfig {paths}{where}: {error}".strip()
            ) from error
        if not _names_a_proxy(env):
            # The client's session trusts the environment: before every request aiohttp looks up
            # proxy variables and ~/.netrc in a worker thread. With no proxy named that is pure
            # cost (bench/deploy_overhead.py), so the lookup is turned off.
            configuration.client_session_kwargs = {"trust_env": False}
        shared = self._clients.get(key)  # another target connected while the config loaded
        if shared is None:
            shared = self._clients[key] = (configuration.host, k8s.ApiClient(configuration))
        return shared

    async def close(self) -> None:
        """Close the clients of this event loop (those of loops already closed are dropped)."""
        loop = asyncio.get_running_loop()
        clients, self._clients = self._clients, {}
        for key, (_, client) in clients.items():
            if key[0] is loop:
                await client.close()


def _kubeconfig_files(env: Mapping[str, str]) -> tuple[str, list[str]]:
    """KUBECONFIG (a path list, as kubectl reads it) or ~/.kube/config; and those that exist.
    Sync on purpose: a stat or two, once per target."""
    home = env.get("HOME") or str(Path.home())
    paths = env.get("KUBECONFIG") or os.path.join(home, ".kube", "config")
    existing = [p for p in paths.split(os.pathsep) if p and Path(p).expanduser().exists()]
    return paths, existing


def _names_a_proxy(env: Mapping[str, str]) -> bool:
    """Whether the environment names an HTTP(S) proxy (or a netrc file) aiohttp would use."""
    names = ("http_proxy", "https_proxy", "all_proxy", "ws_proxy", "wss_proxy", "netrc")
    return any(env.get(name) or env.get(name.upper()) for name in names)
