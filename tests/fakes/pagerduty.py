"""FakePagerDuty: Events API v2 and the REST API v2 parts opsbot uses, over HTTPS on loopback.

Use it through `running_fake_pagerduty()`: the certificate comes from a `trustme` CA whose PEM is
at `.ca_path` (give it to the bot as PAGERDUTY_CA_FILE or SSL_CERT_FILE). It speaks:

- `POST /v2/enqueue` (Events API v2): trigger / acknowledge / resolve; 202 with
  `{"status": "success", "message": "Event processed", "dedup_key": ...}`, 400 with
  `{"status": "invalid event", "message": "Event object is invalid", "errors": [...]}`.
- `GET /oncalls` (`escalation_policy_ids[]`, `include[]=users`, offset/limit/more pagination),
  `GET /incidents` (`incident_key`), `PUT /incidents/{id}` (escalation_level, status; needs the
  `From` header), each checking `Authorization: Token token=<api_key>`.

Every request is recorded (`requests`), who is on call is set per policy and level
(`set_oncall`), and failures can be injected (`fail_next`, `refuse_connections`).
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web
from multidict import CIMultiDict

__all__ = ["FakePagerDuty", "OncallUser", "Recorded", "running_fake_pagerduty"]

API_KEY = "pd-test-api-key-0123456789"
SEVERITIES = ("critical", "error", "warning", "info")
ACTIONS = ("trigger", "acknowledge", "resolve")
JsonDict = dict[str, Any]


@dataclass(frozen=True)
class Recorded:
    """One request as PagerDuty received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: CIMultiDict[str]
    json: Any


@dataclass(frozen=True)
class OncallUser:
    id: str
    name: str
    email: str


@dataclass
class _Fault:
    status: int | None  # None: drop the connection without an answer
    remaining: int
    path: str | None


@dataclass
class _Incident:
    id: str
    number: int
    incident_key: str
    routing_key: str
    title: str
    status: str = "triggered"
    urgency: str = "high"
    escalation_level: int = 1
    escalation_policy: str | None = None
    created_at: str = field(default_factory=lambda: _iso(datetime.now(UTC)))
    log: list[str] = field(default_factory=list)


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class FakePagerDuty:
    """The fake's state and its aiohttp handlers; start it with `running_fake_pagerduty()`."""

    def __init__(self, *, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self.requests: list[Recorded] = []
        self.events: list[JsonDict] = []  # accepted Events API bodies, in order
        self.incidents: dict[str, _Incident] = {}
        self.integrations: dict[str, str] = {}  # routing key -> escalation policy id
        self._oncalls: dict[str, dict[int, tuple[list[OncallUser], datetime | None]]] = {}
        self._faults: list[_Fault] = []
        self._changed = asyncio.Condition()
        self.url = ""
        self.ca_path = Path()
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._ssl: ssl.SSLContext | None = None

    # ------------------------------------------------------------------ set-up by tests

    def set_oncall(
        self, policy: str, level: int, *users: OncallUser, until: datetime | None = None
    ) -> None:
        """Who is on call at `level` of escalation policy `policy` (no users: nobody), and
        until when (default: six days from the request)."""
        self._oncalls.setdefault(policy, {})[level] = (list(users), until)

    def add_integration(self, routing_key: str, policy: str) -> None:
        """Events sent with `routing_key` open incidents on escalation policy `policy`."""
        self.integrations[routing_key] = policy

    def fail_next(self, times: int = 1, *, status: int = 500, path: str | None = None) -> None:
        """Answer the next `times` requests (to `path`, if given) with HTTP `status`."""
        self._faults.append(_Fault(status, times, path))

    def drop_next(self, times: int = 1, *, path: str | None = None) -> None:
        """Close the next `times` connections (to `path`, if given) without answering."""
        self._faults.append(_Fault(None, times, path))

    async def refuse_connections(self) -> None:
        """Stop listening: connecting fails with ECONNREFUSED until `accept_connections()`."""
        if self._site is not None:
            await self._site.stop()
            self._site = None
        if self._runner is not None and self._runner.server is not None:
            for connection in self._runner.server.connections:  # kept-alive ones too
                connection.force_close()

    async def accept_connections(self) -> None:
        """Listen again on the same port."""
        if self._site is None and self._runner is not None:
            self._site = web.TCPSite(
                self._runner, "127.0.0.1", self.port, ssl_context=self._ssl, reuse_address=True
            )
            await self._site.start()

    def environ(self, *, sender: str = "opsbot@example.com") -> dict[str, str]:
        """The environment variables that point opsbot at this fake (Settings.from_env)."""
        return {
            "PAGERDUTY_API_KEY": self.api_key,
            "PAGERDUTY_API_URL": self.url,
            "PAGERDUTY_EVENTS_URL": self.url,
            "PAGERDUTY_CA_FILE": str(self.ca_path),
            "PAGERDUTY_FROM": sender,
        }

    def settings_changes(self, *, sender: str = "opsbot@example.com") -> dict[str, Any]:
        """The same as Settings fields, for `dataclasses.replace(settings, **changes)`."""
        return {
            "pagerduty_api_key": self.api_key,
            "pagerduty_api_url": self.url,
            "pagerduty_events_url": self.url,
            "pagerduty_ca_file": self.ca_path,
            "pagerduty_from": sender,
        }

    # ------------------------------------------------------------------ inspection

    def requests_to(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def incident_for(self, dedup_key: str) -> _Incident | None:
        return next((i for i in self.incidents.values() if i.incident_key == dedup_key), None)

    async def wait_for(
        self, predicate: Callable[[Recorded], bool], timeout: float = 5.0, *, start: int = 0
    ) -> Recorded:
        """The first recorded request (from requests[start:] on) satisfying predicate."""

        def found() -> Recorded | None:
            return next((r for r in self.requests[start:] if predicate(r)), None)

        async with self._changed:
            try:
                async with asyncio.timeout(timeout):
                    return await self._changed.wait_for(found)  # type: ignore[return-value]
            except TimeoutError:
                seen = [(r.method, r.path) for r in self.requests]
                raise TimeoutError(f"no matching request within {timeout}s; seen {seen}") from None

    # ------------------------------------------------------------------ server

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record_and_fault])
        app.router.add_post("/v2/enqueue", self._enqueue)
        app.router.add_get("/oncalls", self._list_oncalls)
        app.router.add_get("/incidents", self._list_incidents)
        app.router.add_get("/incidents/{id}", self._get_incident)
        app.router.add_put("/incidents/{id}", self._update_incident)
        return app

    async def start(self, directory: Path) -> None:
        ca = trustme.CA()
        self.ca_path = directory / "pagerduty-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._ssl)
        with socket.socket() as probe:  # a fixed port, so refusing and accepting again works
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._runner = web.AppRunner(self.app())
        await self._runner.setup()
        await self.accept_connections()
        self.url = f"https://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    @web.middleware
    async def _record_and_fault(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        body: Any = None
        raw = await request.read()
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
        query: dict[str, list[str]] = {}
        for key, value in request.query.items():
            query.setdefault(key, []).append(value)
        self.requests.append(
            Recorded(request.method, request.path, query, CIMultiDict(request.headers), body)
        )
        try:
            fault = self._take_fault(request.path)
            if fault is not None:
                if fault.status is None:
                    assert request.transport is not None
                    request.transport.close()
                    raise web.HTTPInternalServerError()  # never reaches the client
                return _error(fault.status, "Injected failure", code=2999)
            if request.path != "/v2/enqueue":
                authorization = request.headers.get("Authorization", "")
                if authorization != f"Token token={self.api_key}":
                    return _error(401, "Unauthorized", code=2006)
            return await handler(request)
        finally:
            async with self._changed:
                self._changed.notify_all()

    def _take_fault(self, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.path is None or fault.path == path:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    # ------------------------------------------------------------------ Events API v2

    async def _enqueue(self, request: web.Request) -> web.StreamResponse:
        try:
            event = await request.json()
        except ValueError:
            return _invalid_event(["Event object is not valid JSON"])
        errors = _event_errors(event)
        if errors:
            return _invalid_event(errors)
        action = event["event_action"]
        dedup_key = event.get("dedup_key") or f"fake-{len(self.events) + 1:06d}"
        self.events.append(event)
        incident = self.incident_for(dedup_key)
        if action == "trigger":
            if incident is None or incident.status == "resolved":
                number = len(self.incidents) + 1
                incident = _Incident(
                    id=f"Q{number:05d}FAKE",
                    number=number,
                    incident_key=dedup_key,
                    routing_key=event["routing_key"],
                    title=event["payload"]["summary"],
                    escalation_policy=self.integrations.get(event["routing_key"]),
                )
                self.incidents[incident.id] = incident
            incident.log.append("trigger")
        elif incident is not None and incident.status != "resolved":
            incident.status = "acknowledged" if action == "acknowledge" else "resolved"
            incident.log.append(action)
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": dedup_key},
            status=202,
        )

    # ------------------------------------------------------------------ REST API v2

    async def _list_oncalls(self, request: web.Request) -> web.StreamResponse:
        policies = request.query.getall("escalation_policy_ids[]", [])
        include_users = "users" in request.query.getall("include[]", [])
        entries: list[JsonDict] = []
        now = datetime.now(UTC)
        for policy, levels in self._oncalls.items():
            if policies and policy not in policies:
                continue
            for level in sorted(levels):
                users, until = levels[level]
                for user in users:
                    entries.append(
                        _oncall_json(policy, level, user, include_users, now=now, until=until)
                    )
        return _page(request, "oncalls", entries)

    async def _list_incidents(self, request: web.Request) -> web.StreamResponse:
        key = request.query.get("incident_key")
        statuses = request.query.getall("statuses[]", [])
        entries = [
            self._incident_json(incident)
            for incident in self.incidents.values()
            if (key is None or incident.incident_key == key)
            and (not statuses or incident.status in statuses)
        ]
        return _page(request, "incidents", entries)

    async def _get_incident(self, request: web.Request) -> web.StreamResponse:
        incident = self.incidents.get(request.match_info["id"])
        if incident is None:
            return _error(404, "Not Found", code=2100)
        return web.json_response({"incident": self._incident_json(incident)})

    async def _update_incident(self, request: web.Request) -> web.StreamResponse:
        incident = self.incidents.get(request.match_info["id"])
        if incident is None:
            return _error(404, "Not Found", code=2100)
        if not request.headers.get("From"):
            return _error(
                400,
                "Invalid Input Provided",
                code=2001,
                errors=["The From header is required and must be a valid user's email."],
            )
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "Invalid Input Provided", code=2001, errors=["invalid JSON"])
        update = body.get("incident") if isinstance(body, dict) else None
        if not isinstance(update, dict):
            return _error(400, "Invalid Input Provided", code=2001, errors=["incident missing"])
        level = update.get("escalation_level")
        if level is not None:
            if not isinstance(level, int) or level < 1:
                return _error(
                    400, "Invalid Input Provided", code=2001, errors=["bad escalation_level"]
                )
            incident.escalation_level = level
            # Escalating re-triggers the incident for the next level, as PagerDuty does.
            incident.status = "triggered"
            incident.log.append(f"escalate:{level}")
        status = update.get("status")
        if status is not None:
            if status not in ("acknowledged", "resolved"):
                return _error(400, "Invalid Input Provided", code=2001, errors=["bad status"])
            incident.status = status
            incident.log.append(status)
        return web.json_response({"incident": self._incident_json(incident)})

    def _incident_json(self, incident: _Incident) -> JsonDict:
        url = f"{self.url}/incidents/{incident.id}"
        policy = incident.escalation_policy
        return {
            "id": incident.id,
            "type": "incident",
            "summary": f"[#{incident.number}] {incident.title}",
            "self": url,
            "html_url": f"https://fake.pagerduty.com/incidents/{incident.id}",
            "incident_number": incident.number,
            "title": incident.title,
            "status": incident.status,
            "urgency": incident.urgency,
            "incident_key": incident.incident_key,
            "created_at": incident.created_at,
            "escalation_level": incident.escalation_level,
            "escalation_policy": (
                {"id": policy, "type": "escalation_policy_reference", "summary": policy}
                if policy
                else None
            ),
        }


def _oncall_json(
    policy: str,
    level: int,
    user: OncallUser,
    include_users: bool,
    *,
    now: datetime,
    until: datetime | None,
) -> JsonDict:
    user_json: JsonDict = {
        "id": user.id,
        "type": "user_reference",
        "summary": user.name,
        "self": f"https://api.pagerduty.com/users/{user.id}",
        "html_url": f"https://fake.pagerduty.com/users/{user.id}",
    }
    if include_users:  # `include[]=users` expands the reference into the full user
        user_json.update(type="user", name=user.name, email=user.email)
    return {
        "escalation_policy": {
            "id": policy,
            "type": "escalation_policy_reference",
            "summary": f"Policy {policy}",
        },
        "escalation_level": level,
        "schedule": None,
        "user": user_json,
        "start": _iso(now - timedelta(days=1)),
        "end": _iso(until or now + timedelta(days=6)),
    }


def _page(request: web.Request, name: str, entries: list[JsonDict]) -> web.StreamResponse:
    try:
        offset = int(request.query.get("offset", "0"))
        limit = int(request.query.get("limit", "25"))
    except ValueError:
        return _error(400, "Invalid Input Provided", code=2001, errors=["offset/limit"])
    limit = max(1, min(limit, 100))
    chunk = entries[offset : offset + limit]
    return web.json_response(
        {
            name: chunk,
            "limit": limit,
            "offset": offset,
            "more": offset + limit < len(entries),
            "total": None,
        }
    )


def _event_errors(event: Any) -> list[str]:
    if not isinstance(event, dict):
        return ["Event object must be a JSON object"]
    errors = []
    if not isinstance(event.get("routing_key"), str) or not event["routing_key"]:
        errors.append("'routing_key' is missing or blank")
    action = event.get("event_action")
    if action not in ACTIONS:
        errors.append("'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
    if action in ("acknowledge", "resolve") and not event.get("dedup_key"):
        errors.append("'dedup_key' is required for acknowledge and resolve")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            errors.append("'payload' is missing")
        else:
            for key in ("summary", "source"):
                if not isinstance(payload.get(key), str) or not payload[key]:
                    errors.append(f"'payload.{key}' is missing or blank")
            if payload.get("severity") not in SEVERITIES:
                errors.append("'payload.severity' is invalid (critical, error, warning, info)")
            if len(str(payload.get("summary", ""))) > 1024:
                errors.append("'payload.summary' is longer than 1024 characters")
    return errors


def _invalid_event(errors: list[str]) -> web.StreamResponse:
    return web.json_response(
        {"status": "invalid event", "message": "Event object is invalid", "errors": errors},
        status=400,
    )


def _error(
    status: int, message: str, *, code: int, errors: list[str] | None = None
) -> web.Response:
    body: JsonDict = {"error": {"message": message, "code": code}}
    if errors:
        body["error"]["errors"] = errors
    return web.json_response(body, status=status)


@asynccontextmanager
async def running_fake_pagerduty() -> AsyncIterator[FakePagerDuty]:
    """A started FakePagerDuty; `.url` is https://127.0.0.1:<port>, `.ca_path` its CA's PEM."""
    fake = FakePagerDuty()
    with tempfile.TemporaryDirectory(prefix="fake-pagerduty-") as directory:
        await fake.start(Path(directory))
        try:
            yield fake
        finally:
            await fake.stop()
