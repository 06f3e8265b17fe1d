"""FakeKubernetes: a small kube-apiserver stand-in that the official `kubernetes` client talks to.

It serves the Deployment, ReplicaSet, Service and Pod endpoints opsbot's Kubernetes target uses,
over real HTTP on 127.0.0.1, with complete objects (the client's generated models are strict and
reject partial ones). A background "controller" moves rollouts forward one step every `tick`
seconds, so waiting, stalls and rollbacks behave as they would against a cluster:

    async with running_fake_kubernetes() as fake:
        fake.add_deployment("shop", "checkout", "registry.example/checkout:v41")
        env = {"KUBECONFIG": str(fake.kubeconfig(tmp_path / "kubeconfig"))}

Patches follow the API's three JSON flavours (strategic merge, merge, JSON Patch). Everything a
client sent is in `requests`, so tests assert on what reached the API.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

__all__ = ["FakeKubernetes", "RecordedRequest", "running_fake_kubernetes"]

JsonDict = dict[str, Any]

REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
TOKEN = "fake-kubernetes-token"
CONTEXT = "fake"

# Lists the strategic-merge patch merges element-wise, by this key (as Kubernetes' patchMergeKey
# tags do); every other list is replaced whole, like in the real API.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "conditions": "type",
    "ownerReferences": "uid",
}
# Where the middleware leaves the parsed JSON body for the handlers.
_BODY: web.RequestKey[Any] = web.RequestKey("fake_kubernetes_body")
# How many ticks a stalled rollout waits before reporting ProgressDeadlineExceeded.
_STALL_TICKS = 3


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any  # parsed JSON, or None
    at: float = field(default_factory=time.monotonic)  # when it arrived (bench/deploy_overhead.py)


@dataclass
class _Fault:
    method: str
    path_contains: str
    status: int
    remaining: int


class _PatchError(Exception):
    pass


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str, details: JsonDict | None = None) -> JsonDict:
    status: JsonDict = {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        status["details"] = details
    return status


def _error(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(_status(code, reason, message), status=code)


def parse_label_selector(selector: str) -> Callable[[dict[str, str]], bool]:
    """The equality-based label selector grammar: `a=b,c==d,e!=f,g,!h`."""
    tests: list[Callable[[dict[str, str]], bool]] = []
    for raw in filter(None, (part.strip() for part in selector.split(","))):
        if "!=" in raw:
            key, value = (s.strip() for s in raw.split("!=", 1))
            tests.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif "=" in raw:
            key, value = (s.strip() for s in raw.replace("==", "=").split("=", 1))
            tests.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif raw.startswith("!"):
            absent = raw[1:].strip()
            tests.append(lambda labels, k=absent: k not in labels)
        else:
            tests.append(lambda labels, k=raw: k in labels)
    return lambda labels: all(test(labels) for test in tests)


# ---------------------------------------------------------------------------------------- patches


def strategic_merge(target: Any, patch: Any) -> Any:
    """Apply a strategic-merge patch (the subset Kubernetes clients send for Deployments)."""
    if not isinstance(patch, dict) or not isinstance(target, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif key in _MERGE_KEYS and isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_list(result[key], value, _MERGE_KEYS[key])
        elif isinstance(value, dict) and value.get("$patch") == "replace":
            result[key] = {k: v for k, v in value.items() if k != "$patch"}
        elif isinstance(value, dict) and value.get("$patch") == "delete":
            result.pop(key, None)
        else:
            result[key] = strategic_merge(result.get(key), value)
    return result


def _merge_list(current: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    merged = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise _PatchError(f"list items must carry the merge key '{merge_key}'")
        index = next(
            (i for i, old in enumerate(merged) if old.get(merge_key) == item[merge_key]), None
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del merged[index]
        elif index is None:
            merged.append(copy.deepcopy(item))
        else:
            merged[index] = strategic_merge(merged[index], item)
    return merged


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge, null deletes, lists are replaced."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: JsonDict, operations: list[Any]) -> JsonDict:
    """RFC 6902 JSON Patch with the operations clients use: add, replace, remove, test."""
    result = copy.deepcopy(target)
    for operation in operations:
        if not isinstance(operation, dict) or "path" not in operation:
            raise _PatchError("every operation needs an op and a path")
        op, path = operation.get("op"), operation["path"]
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]
        if not parts:
            raise _PatchError(f"cannot {op} the whole object")
        parent: Any = result
        for part in parts[:-1]:
            parent = _step(parent, part, path)
        last = parts[-1]
        if op == "test":
            if _step(parent, last, path) != operation.get("value"):
                raise _PatchError(f"test failed at {path}")
        elif op in ("add", "replace"):
            value = copy.deepcopy(operation.get("value"))
            if isinstance(parent, list):
                index = len(parent) if last == "-" else _index(parent, last, path, op == "add")
                if op == "add":
                    parent.insert(index, value)
                else:
                    parent[index] = value
            else:
                if op == "replace" and last not in parent:
                    raise _PatchError(f"replace operation does not apply: doc is missing {path}")
                parent[last] = value
        elif op == "remove":
            if isinstance(parent, list):
                del parent[_index(parent, last, path, False)]
            elif last in parent:
                del parent[last]
            else:
                raise _PatchError(f"remove operation does not apply: doc is missing {path}")
        else:
            raise _PatchError(f"unsupported JSON Patch operation {op!r}")
    return result


def _step(node: Any, part: str, path: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, path, False)]
    if isinstance(node, dict) and part in node:
        return node[part]
    raise _PatchError(f"doc is missing path: {path}")


def _index(items: list[Any], part: str, path: str, inserting: bool) -> int:
    if not part.isdigit() or int(part) > len(items) - (0 if inserting else 1):
        raise _PatchError(f"bad array index in {path}")
    return int(part)


# ------------------------------------------------------------------------------------ the server


class FakeKubernetes:
    """In-memory Deployments, ReplicaSets, Services and Pods behind the Kubernetes REST API."""

    def __init__(self, *, tick: float = 0.05) -> None:
        self.tick = tick  # seconds between controller steps
        # While paused, rollouts make no progress (a slow cluster; a bot restarting mid-rollout).
        self.paused = False
        self.requests: list[RecordedRequest] = []
        self._deployments: dict[tuple[str, str], JsonDict] = {}
        self._replicasets: dict[tuple[str, str], JsonDict] = {}
        self._services: dict[tuple[str, str], JsonDict] = {}
        # Per-ReplicaSet count of pods that are up and available (the rest are starting).
        self._available: dict[tuple[str, str], int] = {}
        self._never_ready: set[tuple[str, str]] = set()
        # Per-Deployment pod addresses set by a test (set_pod_ips); others get 10.244.x.y.
        self._pod_ips: dict[tuple[str, str], list[str | None]] = {}
        self._stalled_ticks: dict[tuple[str, str], int] = {}
        self._faults: list[_Fault] = []
        self._versions = itertools.count(1000)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._controller: asyncio.Task[None] | None = None
        self.port: int | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application(middlewares=[self._middleware])
        apps = "/apis/apps/v1/namespaces/{ns}"
        app.router.add_get(apps + "/deployments", self._list_deployments)
        app.router.add_post(apps + "/deployments", self._create_deployment)
        app.router.add_get(apps + "/deployments/{name}", self._get_deployment)
        app.router.add_patch(apps + "/deployments/{name}", self._patch_deployment)
        app.router.add_delete(apps + "/deployments/{name}", self._delete_deployment)
        app.router.add_get(apps + "/replicasets", self._list_replicasets)
        core = "/api/v1/namespaces/{ns}"
        app.router.add_get(core + "/services/{name}", self._get_service)
        app.router.add_patch(core + "/services/{name}", self._patch_service)
        app.router.add_get(core + "/pods", self._list_pods)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.port = self._runner.addresses[0][1]
        self._controller = asyncio.create_task(self._run_controller())

    async def stop(self) -> None:
        if self._controller is not None:
            self._controller.cancel()
            with suppress(asyncio.CancelledError):
                await self._controller
            self._controller = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("FakeKubernetes is not started")
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig(self, path: Path, *, context: str = CONTEXT) -> Path:
        """Write a kubeconfig whose `context` points at this server with a bearer token."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "opsbot", "user": {"token": TOKEN}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "opsbot"}}],
            "current-context": context,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config))
        return path

    # ------------------------------------------------------------------ seeding and inspection

    def add_deployment(
        self,
        namespace: str,
        name: str,
        image: str,
        replicas: int = 3,
        labels: dict[str, str] | None = None,
        *,
        container: str = "app",
        strategy: str = "RollingUpdate",
    ) -> JsonDict:
        """A Deployment already rolled out (revision 1, all replicas available)."""
        labels = dict(labels or {"app": name})
        body = {
            "metadata": {"name": name, "labels": dict(labels)},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": dict(labels)},
                "strategy": {"type": strategy},
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {
                        "containers": [
                            {"name": container, "image": image, "ports": [{"containerPort": 8080}]}
                        ]
                    },
                },
            },
        }
        deployment = self._store_new_deployment(namespace, body)
        # Seeded Deployments start settled, as if they had been running for a while.
        for rs in self._owned_replicasets(deployment):
            rs["spec"]["replicas"] = replicas
            self._available[self._key(rs)] = replicas
            self._refresh_replicaset_status(rs)
        self._refresh_deployment_status(deployment, settled=True)
        return copy.deepcopy(deployment)

    def add_service(self, namespace: str, name: str, selector: dict[str, str]) -> JsonDict:
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": self._new_metadata(namespace, name, {}),
            "spec": {
                "selector": dict(selector),
                "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
                "type": "ClusterIP",
                "clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10"],
                "sessionAffinity": "None",
            },
            "status": {"loadBalancer": {}},
        }
        self._services[(namespace, name)] = service
        return copy.deepcopy(service)

    def deployment(self, namespace: str, name: str) -> JsonDict:
        return copy.deepcopy(self._deployments[(namespace, name)])

    def has_deployment(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self._deployments

    def service(self, namespace: str, name: str) -> JsonDict:
        return copy.deepcopy(self._services[(namespace, name)])

    def replicasets(self, namespace: str, deployment: str) -> list[JsonDict]:
        """The Deployment's ReplicaSets, oldest revision first."""
        owned = self._owned_replicasets(self._deployments[(namespace, deployment)])
        return [copy.deepcopy(rs) for rs in sorted(owned, key=_revision)]

    def image(self, namespace: str, name: str, container: str = "app") -> str:
        containers = self._deployments[(namespace, name)]["spec"]["template"]["spec"]["containers"]
        return next(c["image"] for c in containers if c["name"] == container)

    def writes(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method not in ("GET", "HEAD")]

    def never_ready(self, namespace: str, name: str) -> None:
        """New pods of this Deployment never become available; the rollout then reports
        Progressing=False with reason ProgressDeadlineExceeded."""
        self._never_ready.add((namespace, name))

    def set_pod_ips(self, namespace: str, deployment: str, ips: list[str | None]) -> None:
        """Give the Deployment's pods these addresses, in order: the newest ReplicaSet's pods
        first, then older ones'. `None` is a pod without an IP yet (Pending, not Ready); pods
        beyond the list keep their default address. Tests use loopback addresses (127.0.0.2,
        127.0.0.3 …) so a health check can reach a server per pod."""
        self._pod_ips[(namespace, deployment)] = list(ips)

    def fail_next(self, method: str, path_contains: str, status: int = 500, times: int = 1) -> None:
        """Answer the next `times` matching requests with `status` and a Status body."""
        self._faults.append(_Fault(method.upper(), path_contains, status, times))

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Wait until predicate() is truthy (checked after every request and controller step)."""
        async with self._changed:
            try:
                async with asyncio.timeout(timeout):
                    return await self._changed.wait_for(predicate)
            except TimeoutError:
                raise TimeoutError(f"condition not met within {timeout}s") from None

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ------------------------------------------------------------------ HTTP plumbing

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                content_type=request.content_type,
                body=body,
            )
        )
        try:
            if request.headers.get("Authorization") != f"Bearer {TOKEN}":
                return _error(401, "Unauthorized", "Unauthorized")
            for fault in self._faults:
                if (
                    fault.remaining > 0
                    and fault.method == request.method
                    and fault.path_contains in request.path
                ):
                    fault.remaining -= 1
                    return _error(fault.status, "InternalError", "etcdserver: request timed out")
            request[_BODY] = body
            return await handler(request)
        finally:
            await self._notify()

    def _key(self, obj: JsonDict) -> tuple[str, str]:
        return (obj["metadata"]["namespace"], obj["metadata"]["name"])

    def _new_metadata(self, namespace: str, name: str, given: JsonDict) -> JsonDict:
        metadata = copy.deepcopy(given)
        for server_owned in ("uid", "resourceVersion", "creationTimestamp", "generation"):
            metadata.pop(server_owned, None)
        metadata.update(
            name=name,
            namespace=namespace,
            uid=str(uuid.uuid4()),
            resourceVersion=str(next(self._versions)),
            creationTimestamp=_now(),
        )
        return metadata

    def _touch(self, obj: JsonDict) -> None:
        obj["metadata"]["resourceVersion"] = str(next(self._versions))

    # ------------------------------------------------------------------ deployments

    async def _list_deployments(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        matches = parse_label_selector(request.query.get("labelSelector", ""))
        items = [
            d
            for (d_ns, _), d in sorted(self._deployments.items())
            if d_ns == ns and matches(d["metadata"].get("labels", {}))
        ]
        return web.json_response(_list("DeploymentList", "apps/v1", items))

    async def _get_deployment(self, request: web.Request) -> web.Response:
        deployment = self._deployments.get(_path_key(request))
        if deployment is None:
            return _not_found("deployments.apps", request.match_info["name"])
        return web.json_response(deployment)

    async def _create_deployment(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        body = request[_BODY]
        if not isinstance(body, dict) or not body.get("metadata", {}).get("name"):
            return _error(422, "Invalid", "Deployment.apps is invalid: metadata.name: Required")
        name = body["metadata"]["name"]
        if (ns, name) in self._deployments:
            return _error(409, "AlreadyExists", f'deployments.apps "{name}" already exists')
        problem = _invalid_deployment(body)
        if problem:
            return _error(422, "Invalid", f'Deployment.apps "{name}" is invalid: {problem}')
        deployment = self._store_new_deployment(ns, body)
        return web.json_response(deployment, status=201)

    async def _patch_deployment(self, request: web.Request) -> web.Response:
        key = _path_key(request)
        deployment = self._deployments.get(key)
        if deployment is None:
            return _not_found("deployments.apps", key[1])
        try:
            patched = _apply_patch(deployment, request.content_type, request[_BODY])
        except _PatchError as error:
            return _error(422, "Invalid", f"the patch could not be applied: {error}")
        problem = _invalid_deployment(patched)
        if problem:
            return _error(422, "Invalid", f'Deployment.apps "{key[1]}" is invalid: {problem}')
        # The server owns identity and status; a patch cannot move them.
        for owned in ("uid", "creationTimestamp", "generation", "name", "namespace"):
            patched["metadata"][owned] = deployment["metadata"][owned]
        patched["status"] = deployment["status"]
        if patched["spec"] != deployment["spec"]:
            patched["metadata"]["generation"] += 1
        if patched != deployment:
            self._touch(patched)
        self._deployments[key] = patched
        if patched["spec"]["template"] != deployment["spec"]["template"]:
            self._roll_out(patched)
        self._scale_replicasets(patched)
        self._refresh_deployment_status(patched)
        return web.json_response(patched)

    async def _delete_deployment(self, request: web.Request) -> web.Response:
        key = _path_key(request)
        deployment = self._deployments.pop(key, None)
        if deployment is None:
            return _not_found("deployments.apps", key[1])
        # Background cascading deletion: its ReplicaSets (and their pods) go with it.
        for rs in self._owned_replicasets(deployment):
            self._replicasets.pop(self._key(rs), None)
            self._available.pop(self._key(rs), None)
        details = {"name": key[1], "group": "apps", "kind": "deployments"}
        details["uid"] = deployment["metadata"]["uid"]
        return web.json_response(_status(200, "", "", details))

    def _store_new_deployment(self, namespace: str, body: JsonDict) -> JsonDict:
        name = body["metadata"]["name"]
        spec = copy.deepcopy(body["spec"])
        spec.setdefault("replicas", 1)
        spec.setdefault("strategy", {"type": "RollingUpdate"})
        if spec["strategy"].get("type", "RollingUpdate") == "RollingUpdate":
            spec["strategy"].setdefault(
                "rollingUpdate", {"maxSurge": "25%", "maxUnavailable": "25%"}
            )
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        metadata = self._new_metadata(namespace, name, body.get("metadata", {}))
        metadata["generation"] = 1
        metadata.setdefault("annotations", {})
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata,
            "spec": spec,
            "status": {},
        }
        self._deployments[(namespace, name)] = deployment
        self._roll_out(deployment)
        self._scale_replicasets(deployment)
        self._refresh_deployment_status(deployment)
        return deployment

    # ------------------------------------------------------------------ the controller

    def _owned_replicasets(self, deployment: JsonDict) -> list[JsonDict]:
        uid = deployment["metadata"]["uid"]
        return [
            rs
            for rs in self._replicasets.values()
            if any(ref["uid"] == uid for ref in rs["metadata"].get("ownerReferences", []))
        ]

    def _new_replicaset(self, deployment: JsonDict) -> JsonDict | None:
        template_hash = _template_hash(deployment["spec"]["template"])
        return next(
            (
                rs
                for rs in self._owned_replicasets(deployment)
                if rs["metadata"]["labels"].get(HASH_LABEL) == template_hash
            ),
            None,
        )

    def _roll_out(self, deployment: JsonDict) -> None:
        """The pod template changed: find or create its ReplicaSet and make it the newest
        revision (as the Deployment controller does, which is what makes `rollout undo` work)."""
        owned = self._owned_replicasets(deployment)
        revision = max((_revision(rs) for rs in owned), default=0) + 1
        rs = self._new_replicaset(deployment)
        if rs is None:
            rs = self._create_replicaset(deployment)
        rs["metadata"]["annotations"][REVISION] = str(revision)
        self._touch(rs)
        deployment["metadata"]["annotations"][REVISION] = str(revision)
        self._stalled_ticks.pop(self._key(deployment), None)

    def _create_replicaset(self, deployment: JsonDict) -> JsonDict:
        ns, name = self._key(deployment)
        template = copy.deepcopy(deployment["spec"]["template"])
        template_hash = _template_hash(template)
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = template_hash
        labels = dict(template["metadata"]["labels"])
        selector = copy.deepcopy(deployment["spec"]["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = template_hash
        replicas = deployment["spec"]["replicas"]
        metadata = self._new_metadata(ns, f"{name}-{template_hash}", {"labels": labels})
        metadata["generation"] = 1
        metadata["annotations"] = {
            "deployment.kubernetes.io/desired-replicas": str(replicas),
            "deployment.kubernetes.io/max-replicas": str(replicas + 1),
        }
        metadata["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": name,
                "uid": deployment["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        rs = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": metadata,
            "spec": {"replicas": 0, "selector": selector, "template": template},
            "status": {"replicas": 0, "observedGeneration": 1},
        }
        self._replicasets[(ns, metadata["name"])] = rs
        self._available[(ns, metadata["name"])] = 0
        return rs

    def _scale_replicasets(self, deployment: JsonDict) -> None:
        """Bring the new ReplicaSet up by one and the old ones down by one, at most; called on
        every write and every tick, so a rollout takes a few ticks."""
        new = self._new_replicaset(deployment)
        if new is None:
            return
        wanted = deployment["spec"]["replicas"]
        key = self._key(new)
        old = [rs for rs in self._owned_replicasets(deployment) if rs is not new]
        if new["spec"]["replicas"] > wanted:
            new["spec"]["replicas"] = wanted
            self._available[key] = min(self._available[key], wanted)
        elif new["spec"]["replicas"] < wanted:
            new["spec"]["replicas"] += 1
        # Old pods go only once new ones are available (maxUnavailable honoured, roughly).
        surplus = sum(rs["spec"]["replicas"] for rs in old) + self._available[key] - wanted
        for rs in old:
            if surplus <= 0:
                break
            if rs["spec"]["replicas"] > 0:
                rs["spec"]["replicas"] -= 1
                self._available[self._key(rs)] = min(
                    self._available[self._key(rs)], rs["spec"]["replicas"]
                )
                surplus -= 1
        for rs in [new, *old]:
            self._refresh_replicaset_status(rs)

    def _refresh_replicaset_status(self, rs: JsonDict) -> None:
        available = self._available[self._key(rs)]
        rs["status"] = {
            "replicas": rs["spec"]["replicas"],
            "fullyLabeledReplicas": rs["spec"]["replicas"],
            "readyReplicas": available,
            "availableReplicas": available,
            "observedGeneration": rs["metadata"]["generation"],
        }

    def _refresh_deployment_status(self, deployment: JsonDict, settled: bool = False) -> None:
        owned = self._owned_replicasets(deployment)
        new = self._new_replicaset(deployment)
        replicas = sum(rs["spec"]["replicas"] for rs in owned)
        available = sum(self._available[self._key(rs)] for rs in owned)
        updated = new["spec"]["replicas"] if new else 0
        wanted = deployment["spec"]["replicas"]
        status = deployment["status"]
        if settled:
            status["observedGeneration"] = deployment["metadata"]["generation"]
        status.update(
            replicas=replicas,
            updatedReplicas=updated,
            readyReplicas=available,
            availableReplicas=available,
            unavailableReplicas=max(wanted - available, 0),
        )
        status.setdefault("observedGeneration", 0)
        now = _now()
        new_name = new["metadata"]["name"] if new else "?"
        stalled = self._stalled_ticks.get(self._key(deployment), 0) >= _STALL_TICKS
        complete = updated == wanted and replicas == wanted and available == wanted
        if stalled:
            progressing = (
                "False",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{new_name}" has timed out progressing.',
            )
        elif complete:
            progressing = (
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{new_name}" has successfully progressed.',
            )
        else:
            progressing = (
                "True",
                "ReplicaSetUpdated",
                f'ReplicaSet "{new_name}" is progressing.',
            )
        available_ok = available >= wanted - _max_unavailable(deployment)
        conditions = [
            {
                "type": "Available",
                "status": "True" if available_ok else "False",
                "reason": "MinimumReplicasAvailable"
                if available_ok
                else "MinimumReplicasUnavailable",
                "message": "Deployment has minimum availability."
                if available_ok
                else "Deployment does not have minimum availability.",
                "lastUpdateTime": now,
                "lastTransitionTime": now,
            },
            {
                "type": "Progressing",
                "status": progressing[0],
                "reason": progressing[1],
                "message": progressing[2],
                "lastUpdateTime": now,
                "lastTransitionTime": now,
            },
        ]
        old_conditions = {c["type"]: c for c in status.get("conditions", [])}
        for condition in conditions:
            old = old_conditions.get(condition["type"])
            if old and (old["status"], old["reason"]) == (condition["status"], condition["reason"]):
                condition["lastTransitionTime"] = old["lastTransitionTime"]
                condition["lastUpdateTime"] = old["lastUpdateTime"]
        if status.get("conditions") != conditions:
            status["conditions"] = conditions
            self._touch(deployment)

    def _step(self) -> bool:
        """One controller pass over every Deployment; True when anything changed."""
        changed = False
        for key, deployment in list(self._deployments.items()):
            before = copy.deepcopy(deployment["status"])
            generation = deployment["metadata"]["generation"]
            deployment["status"]["observedGeneration"] = generation
            new = self._new_replicaset(deployment)
            if new is not None:
                new_key = self._key(new)
                if self._available[new_key] < new["spec"]["replicas"]:
                    if key in self._never_ready:
                        self._stalled_ticks[key] = self._stalled_ticks.get(key, 0) + 1
                    else:
                        self._available[new_key] += 1
            self._scale_replicasets(deployment)
            self._refresh_deployment_status(deployment)
            if deployment["status"] != before:
                self._touch(deployment)
                changed = True
        return changed

    async def _run_controller(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            if not self.paused and self._step():
                await self._notify()

    # ------------------------------------------------------------------ replicasets and pods

    async def _list_replicasets(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        matches = parse_label_selector(request.query.get("labelSelector", ""))
        items = [
            rs
            for (rs_ns, _), rs in sorted(self._replicasets.items())
            if rs_ns == ns and matches(rs["metadata"].get("labels", {}))
        ]
        return web.json_response(_list("ReplicaSetList", "apps/v1", items))

    async def _list_pods(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        matches = parse_label_selector(request.query.get("labelSelector", ""))
        pods = [
            pod
            for (rs_ns, _), rs in sorted(self._replicasets.items())
            if rs_ns == ns
            for pod in self._pods_of(rs)
            if matches(pod["metadata"]["labels"])
        ]
        return web.json_response(_list("PodList", "v1", pods))

    def _pods_of(self, rs: JsonDict) -> list[JsonDict]:
        ns, name = self._key(rs)
        available = self._available[(ns, name)]
        # Stable per-ReplicaSet addresses so a test can tell pods apart.
        subnet = int(hashlib.sha256(name.encode()).hexdigest()[:2], 16)
        pool, offset = self._pod_ip_pool(rs)
        pods = []
        for index in range(rs["spec"]["replicas"]):
            ip: str | None = f"10.244.{subnet}.{index + 10}"
            if offset + index < len(pool):
                ip = pool[offset + index]
            ready = index < available and ip is not None
            addressed = {"podIP": ip, "podIPs": [{"ip": ip}]} if ip is not None else {}
            pods.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": f"{name}-{index:05x}",
                        "namespace": ns,
                        "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{name}/{index}")),
                        "resourceVersion": rs["metadata"]["resourceVersion"],
                        "creationTimestamp": rs["metadata"]["creationTimestamp"],
                        "labels": dict(rs["spec"]["template"]["metadata"]["labels"]),
                        "ownerReferences": [
                            {
                                "apiVersion": "apps/v1",
                                "kind": "ReplicaSet",
                                "name": name,
                                "uid": rs["metadata"]["uid"],
                                "controller": True,
                                "blockOwnerDeletion": True,
                            }
                        ],
                    },
                    "spec": copy.deepcopy(rs["spec"]["template"]["spec"]),
                    "status": {
                        "phase": "Running" if ip is not None else "Pending",
                        **addressed,
                        "hostIP": "192.168.0.10",
                        "startTime": rs["metadata"]["creationTimestamp"],
                        "conditions": [
                            {
                                "type": "Ready",
                                "status": "True" if ready else "False",
                                "lastTransitionTime": rs["metadata"]["creationTimestamp"],
                            },
                            {
                                "type": "ContainersReady",
                                "status": "True" if ready else "False",
                                "lastTransitionTime": rs["metadata"]["creationTimestamp"],
                            },
                        ],
                    },
                }
            )
        return pods

    def _pod_ip_pool(self, rs: JsonDict) -> tuple[list[str | None], int]:
        """The addresses a test set for the ReplicaSet's Deployment, and where this
        ReplicaSet's pods start in that list (newer ReplicaSets' pods come first)."""
        ns, _ = self._key(rs)
        owner = next(
            (
                r["name"]
                for r in rs["metadata"].get("ownerReferences", [])
                if r["kind"] == "Deployment"
            ),
            None,
        )
        pool = self._pod_ips.get((ns, owner or ""))
        deployment = self._deployments.get((ns, owner or ""))
        if pool is None or deployment is None:
            return [], 0
        offset = 0
        for sibling in sorted(self._owned_replicasets(deployment), key=_revision, reverse=True):
            if sibling is rs:
                break
            offset += sibling["spec"]["replicas"]
        return pool, offset

    # ------------------------------------------------------------------ services

    async def _get_service(self, request: web.Request) -> web.Response:
        service = self._services.get(_path_key(request))
        if service is None:
            return _not_found("services", request.match_info["name"])
        return web.json_response(service)

    async def _patch_service(self, request: web.Request) -> web.Response:
        key = _path_key(request)
        service = self._services.get(key)
        if service is None:
            return _not_found("services", key[1])
        try:
            patched = _apply_patch(service, request.content_type, request[_BODY])
        except _PatchError as error:
            return _error(422, "Invalid", f"the patch could not be applied: {error}")
        for owned in ("uid", "creationTimestamp", "name", "namespace"):
            patched["metadata"][owned] = service["metadata"][owned]
        if patched != service:
            self._touch(patched)
        self._services[key] = patched
        return web.json_response(patched)


# ---------------------------------------------------------------------------------------- helpers


def _path_key(request: web.Request) -> tuple[str, str]:
    return (request.match_info["ns"], request.match_info["name"])


def _not_found(resource: str, name: str) -> web.Response:
    return _error(404, "NotFound", f'{resource} "{name}" not found')


def _list(kind: str, api_version: str, items: list[JsonDict]) -> JsonDict:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"resourceVersion": "1"},
        "items": items,
    }


def _apply_patch(obj: JsonDict, content_type: str, body: Any) -> JsonDict:
    if content_type == "application/json-patch+json":
        if not isinstance(body, list):
            raise _PatchError("a JSON Patch body is a list of operations")
        return json_patch(obj, body)
    if not isinstance(body, dict):
        raise _PatchError(f"a {content_type} body is an object")
    if content_type == "application/strategic-merge-patch+json":
        return strategic_merge(obj, body)
    if content_type == "application/merge-patch+json":
        return merge_patch(obj, body)
    raise _PatchError(f"unsupported patch content type {content_type!r}")


def _invalid_deployment(deployment: JsonDict) -> str | None:
    """The validation checks a client could trip over; None when the object is acceptable."""
    spec = deployment.get("spec") or {}
    match_labels = (spec.get("selector") or {}).get("matchLabels") or {}
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if not match_labels:
        return "spec.selector: Required value"
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return "spec.template.metadata.labels: Invalid value: `selector` does not match template"
    containers = (template.get("spec") or {}).get("containers") or []
    if not containers or any(not c.get("name") or not c.get("image") for c in containers):
        return "spec.template.spec.containers: Required value"
    if not isinstance(spec.get("replicas", 1), int) or spec.get("replicas", 1) < 0:
        return "spec.replicas: Invalid value"
    return None


def _template_hash(template: JsonDict) -> str:
    clean = copy.deepcopy(template)
    clean.get("metadata", {}).get("labels", {}).pop(HASH_LABEL, None)
    digest = hashlib.sha256(json.dumps(clean, sort_keys=True).encode()).hexdigest()
    return digest[:10]


def _revision(rs: JsonDict) -> int:
    return int(rs["metadata"].get("annotations", {}).get(REVISION, "0"))


def _max_unavailable(deployment: JsonDict) -> int:
    strategy = deployment["spec"].get("strategy", {})
    if strategy.get("type") == "Recreate":
        return deployment["spec"]["replicas"]
    return deployment["spec"]["replicas"] // 4


@asynccontextmanager
async def running_fake_kubernetes(*, tick: float = 0.05) -> AsyncIterator[FakeKubernetes]:
    """Start a FakeKubernetes on a free loopback port for the duration of the block."""
    fake = FakeKubernetes(tick=tick)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
