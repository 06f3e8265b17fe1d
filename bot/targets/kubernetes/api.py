"""The Kubernetes API calls of one target (one namespace of one cluster), as the API's JSON.

Every API failure becomes a TargetError naming the call, the HTTP status and the API's message;
an unreachable API server is `retryable`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, TypeVar

import aiohttp
from kubernetes.aio import client as k8s
from kubernetes.aio.client.exceptions import ApiException

from bot.catalog import KubernetesTarget
from bot.targets.base import TargetError
from bot.targets.kubernetes.clients import KubernetesClients
from bot.targets.kubernetes.objects import COLOUR_LABEL, JsonDict, revision
from bot.targets.kubernetes.read_cache import JustRead

# Statuses that mean "the API server is struggling, try again" rather than "this cannot work".
_RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})

T = TypeVar("T")


class KubernetesApi:
    """The Deployments, ReplicaSets, pods and Service of one target, read and written."""

    # A single API call may not hang longer than this (the client's default is 5 minutes).
    request_timeout: ClassVar[float] = 30.0

    def __init__(
        self, config: KubernetesTarget, env: Mapping[str, str], clients: KubernetesClients
    ) -> None:
        self.config = config
        self._env = dict(env)
        self._clients = clients
        self.just_read = JustRead()
        self._api_client: k8s.ApiClient | None = None
        self._host = "?"
        self._connect_lock = asyncio.Lock()

    # --- names ---------------------------------------------------------------------------------

    @property
    def ns(self) -> str:
        return self.config.namespace

    def ref(self, name: str) -> str:
        return f"deployments/{self.ns}/{name}"

    @property
    def service_ref(self) -> str:
        return f"services/{self.ns}/{self.config.service}"

    # --- Deployments ---------------------------------------------------------------------------

    async def read(self, name: str) -> JsonDict:
        """GET a Deployment (or take `current()`'s read of it, see read_cache.py)."""
        kept = self.just_read.take(name)
        if kept is not None:
            return kept
        deployment = await self._get_deployment(name, not_found_ok=False)
        assert deployment is not None
        return deployment

    async def find(self, name: str) -> JsonDict | None:
        """The Deployment, or None when it does not exist."""
        return await self._get_deployment(name, not_found_ok=True)

    async def _get_deployment(self, name: str, *, not_found_ok: bool) -> JsonDict | None:
        """GET a Deployment as the API's JSON. Deployments are read while every rollout is
        watched, so this skips the client's model round trip (JSON → strict pydantic model →
        JSON again): ~1.8 ms a read saved (bench/deploy_overhead.py)."""
        what = f"GET {self.ref(name)}"
        body = await self._raw(
            what,
            lambda: self._apps.read_namespaced_deployment_without_preload_content(
                name, self.ns, _request_timeout=self.request_timeout
            ),
            not_found_ok=not_found_ok,
        )
        if body is None:
            return None
        try:
            answer = json.loads(body)
        except ValueError as error:
            raise TargetError(f"the Kubernetes API answered {what} with no JSON") from error
        if not isinstance(answer, dict):
            raise TargetError(f"the Kubernetes API answered {what} with no Deployment")
        return answer

    async def patch_deployment(self, name: str, patch: JsonDict | list[JsonDict]) -> None:
        """PATCH a Deployment: a dict is a strategic-merge patch, a list a JSON patch. Nothing
        here needs the answer, so it is not turned into the client's models, which cost more
        than the request on the path of every deploy (bench/deploy_overhead.py)."""
        await self._raw(
            f"PATCH {self.ref(name)}",
            lambda: self._apps.patch_namespaced_deployment_without_preload_content(
                name, self.ns, patch, _request_timeout=self.request_timeout
            ),
        )

    async def create(self, body: JsonDict) -> None:
        await self._call(
            f"POST deployments/{self.ns} ({body['metadata']['name']})",
            lambda: self._apps.create_namespaced_deployment(
                self.ns, k8s.V1Deployment.from_dict(body), _request_timeout=self.request_timeout
            ),
        )

    async def delete(self, name: str) -> bool:
        """Delete a Deployment and (in the background) its pods; False if it was already gone."""
        try:
            await self._call(
                f"DELETE {self.ref(name)}",
                lambda: self._apps.delete_namespaced_deployment(
                    name,
                    self.ns,
                    propagation_policy="Background",
                    _request_timeout=self.request_timeout,
                ),
                not_found_ok=True,
            )
        except _NotFound:
            return False
        return True

    async def replicasets(self, deployment: JsonDict) -> list[JsonDict]:
        """The Deployment's ReplicaSets (by label and owner), oldest revision first."""
        match_labels = deployment["spec"]["selector"].get("matchLabels") or {}
        selector = ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))
        listing = await self._call(
            f"GET replicasets/{self.ns}?labelSelector={selector}",
            lambda: self._apps.list_namespaced_replica_set(
                self.ns, label_selector=selector, _request_timeout=self.request_timeout
            ),
        )
        uid = deployment["metadata"]["uid"]
        owned = [
            rs
            for rs in self._plain(listing)["items"]
            if any(ref.get("uid") == uid for ref in rs["metadata"].get("ownerReferences") or [])
        ]
        return sorted(owned, key=revision)

    async def pods(self, selector: str) -> list[JsonDict]:
        """The pods a label selector (in the API's query syntax) matches."""
        listing = await self._call(
            f"GET pods/{self.ns}?labelSelector={selector}",
            lambda: self._core.list_namespaced_pod(
                self.ns, label_selector=selector, _request_timeout=self.request_timeout
            ),
        )
        return self._plain(listing)["items"]

    # --- the Service ---------------------------------------------------------------------------

    async def read_service(self) -> JsonDict:
        if not self.config.service:
            raise TargetError("no Service configured for this Kubernetes target")
        model = await self._call(
            f"GET {self.service_ref}",
            lambda: self._core.read_namespaced_service(
                self.config.service, self.ns, _request_timeout=self.request_timeout
            ),
        )
        return self._plain(model)

    async def select_colour(self, colour: str) -> None:
        """PATCH the Service's selector to send all traffic to `colour`."""
        await self._call(
            f"PATCH {self.service_ref}",
            lambda: self._core.patch_namespaced_service(
                self.config.service,
                self.ns,
                {"spec": {"selector": {COLOUR_LABEL: colour}}},
                _request_timeout=self.request_timeout,
            ),
        )

    # --- calls ---------------------------------------------------------------------------------

    async def _raw(
        self, what: str, send: Callable[[], Awaitable[Any]], *, not_found_ok: bool = False
    ) -> bytes | None:
        """The body of a call made `*_without_preload_content` (None for a 404 that is fine);
        an error status becomes the same TargetError as from the client's other calls."""

        async def call() -> tuple[int, str | None, bytes]:
            response = await send()
            try:
                return response.status, response.reason, await response.read()
            finally:
                response.release()

        status, reason, body = await self._call(what, call)
        if status == 404 and not_found_ok:
            return None
        if status >= 400:
            error = ApiException(status=status, reason=reason)
            error.body = body.decode("utf-8", "replace")
            raise TargetError(
                f"Kubernetes API answered {what} with HTTP {status}: {_api_message(error)}",
                retryable=status in _RETRYABLE_STATUSES,
            )
        return body

    async def _call(
        self,
        what: str,
        request: Callable[[], Awaitable[T]],
        *,
        not_found_ok: bool = False,
    ) -> T:
        """One API call; every failure becomes a one-sentence TargetError (never a traceback)."""
        if not what.startswith("GET "):
            self.just_read.forget()  # a change makes what `current()` read stale
        await self._connect()
        try:
            return await request()
        except ApiException as error:
            if not_found_ok and error.status == 404:
                raise _NotFound from None
            raise TargetError(
                f"Kubernetes API answered {what} with HTTP {error.status}: {_api_message(error)}",
                retryable=error.status in _RETRYABLE_STATUSES,
            ) from error
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            reason = str(error) or type(error).__name__
            raise TargetError(
                f"cannot reach the Kubernetes API at {self._host} for {what}: {reason}",
                retryable=True,
            ) from error
        except ValueError as error:
            # The generated models are strict: an answer (or a body) they reject lands here.
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise TargetError(
                f"the Kubernetes client could not handle {what}: {first_line}"
            ) from error

    async def _connect(self) -> None:
        """Take the cluster's shared client on first use."""
        if self._api_client is not None:
            return
        async with self._connect_lock:
            if self._api_client is None:
                self._host, self._api_client = await self._clients.connect(
                    self._env, self.config.context
                )

    def disconnect(self) -> None:
        """Let go of the client (its owner, KubernetesClients, closes it)."""
        self._api_client = None

    @property
    def _apps(self) -> k8s.AppsV1Api:
        if self._api_client is None:  # only `_call` uses it, after connecting
            raise RuntimeError("the Kubernetes client is not connected")
        return k8s.AppsV1Api(self._api_client)

    @property
    def _core(self) -> k8s.CoreV1Api:
        if self._api_client is None:
            raise RuntimeError("the Kubernetes client is not connected")
        return k8s.CoreV1Api(self._api_client)

    def _plain(self, model: Any) -> JsonDict:
        """A generated model as the API's JSON (camelCase keys), which is what we reason in."""
        if self._api_client is None:
            raise RuntimeError("the Kubernetes client is not connected")
        return self._api_client.sanitize_for_serialization(model)


class _NotFound(Exception):
    """Internal: a 404 the caller asked to treat as "absent"."""


def _api_message(error: ApiException) -> str:
    """The API's own sentence from its Status body, else the HTTP reason."""
    try:
        body = json.loads(error.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(error.reason or "no message")
