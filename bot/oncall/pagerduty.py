"""The official `pagerduty` clients (Events API v2, REST API v2), made async with to_thread.

The clients are synchronous (httpx2); every call runs in a worker thread so the event loop keeps
serving Slack. Their own retries (network errors, 5xx, 429) are bounded here; whatever still fails
becomes a `PagerDutyError` whose message says what happened without the keys.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pagerduty

from bot.certificates import default_ssl_context
from bot.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

# PagerDuty's severities; opsbot's incident severities map onto them.
PD_SEVERITIES = ("critical", "error", "warning", "info")
_BY_INCIDENT_SEVERITY = {"P0": "critical", "P1": "error", "P2": "warning", "P3": "info"}


def pagerduty_severity(severity: str) -> str:
    """PagerDuty's name for an alert or incident severity (`P1` → `error`, `warning` → itself)."""
    lowered = severity.strip().lower()
    if lowered in PD_SEVERITIES:
        return lowered
    return _BY_INCIDENT_SEVERITY.get(severity.strip().upper(), "critical")


class PagerDutyError(Exception):
    """PagerDuty could not be reached or refused a request; the text is safe to show in Slack."""


class PagerDutyApi:
    """Events and REST clients for one PagerDuty account, configured from Settings.

    Retry settings are attributes so tests (and operators via code) can lower them: the client
    sleeps `sleep_timer * 2**n` seconds between attempts.
    """

    sleep_timer = 1.5
    max_network_attempts = 3
    server_error_retries = 2
    rate_limit_retries = 3
    timeout = 20.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._events: dict[str, pagerduty.EventsApiV2Client] = {}
        self._rest: pagerduty.RestApiV2Client | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ configuration

    @property
    def has_rest(self) -> bool:
        return bool(self.settings.pagerduty_api_key)

    def _ssl_context(self) -> ssl.SSLContext:
        """System CAs plus PAGERDUTY_CA_FILE (else SSL_CERT_FILE from the bot's environment)."""
        extra = self.settings.pagerduty_ca_file or self.settings.environ.get("SSL_CERT_FILE")
        return default_ssl_context({"SSL_CERT_FILE": str(extra)} if extra else {})

    def _tune(self, client: pagerduty.ApiClient) -> None:
        client.sleep_timer = self.sleep_timer
        client.max_network_attempts = self.max_network_attempts
        client.timeout = self.timeout
        for status in (500, 502, 503, 504):
            client.retry[status] = self.server_error_retries
        # Unbounded by default: a rate-limited PagerDuty would hold a worker thread forever.
        client.retry[429] = self.rate_limit_retries

    def _events_client(self, routing_key: str) -> pagerduty.EventsApiV2Client:
        with self._lock:
            client = self._events.get(routing_key)
            if client is None:
                client = _checked_url(
                    "PAGERDUTY_EVENTS_URL",
                    lambda: pagerduty.EventsApiV2Client(
                        routing_key,
                        base_url=self.settings.pagerduty_events_url.rstrip("/"),
                        verify=self._ssl_context(),
                    ),
                )
                self._tune(client)
                self._events[routing_key] = client
            return client

    def _rest_client(self) -> pagerduty.RestApiV2Client:
        if not self.settings.pagerduty_api_key:
            raise PagerDutyError("PAGERDUTY_API_KEY is not set, so the REST API cannot be used")
        with self._lock:
            if self._rest is None:
                key = self.settings.pagerduty_api_key
                client = _checked_url(
                    "PAGERDUTY_API_URL",
                    lambda: pagerduty.RestApiV2Client(
                        key,
                        default_from=self.settings.pagerduty_from,
                        base_url=self.settings.pagerduty_api_url.rstrip("/"),
                        verify=self._ssl_context(),
                    ),
                )
                self._tune(client)
                self._rest = client
            return self._rest

    def close(self) -> None:
        """Close every HTTP connection the clients hold."""
        with self._lock:
            clients: list[Any] = [*self._events.values(), self._rest]
            self._events.clear()
            self._rest = None
        for client in clients:
            if client is not None:
                client.close()

    # ------------------------------------------------------------------ calls

    async def _call(self, what: str, function: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(function)
        except PagerDutyError:
            raise
        except pagerduty.HttpError as exc:
            raise PagerDutyError(f"{what}: {_describe_http_error(exc)}") from exc
        except pagerduty.Error as exc:
            cause = exc.__cause__
            detail = f"{type(cause).__name__}: {cause}" if cause else str(exc)
            raise PagerDutyError(f"{what}: PagerDuty is unreachable ({detail[:200]})") from exc
        except pagerduty.UrlError as exc:
            raise PagerDutyError(f"{what}: {exc}") from exc
        except OSError as exc:
            raise PagerDutyError(f"{what}: {type(exc).__name__}: {exc}") from exc

    async def trigger(
        self,
        routing_key: str,
        *,
        dedup_key: str,
        summary: str,
        source: str,
        severity: str,
        custom_details: dict[str, Any] | None = None,
    ) -> str:
        """Events API v2 trigger; returns the dedup_key PagerDuty used."""

        def send() -> str:
            return self._events_client(routing_key).trigger(
                summary[:1024],
                source,
                dedup_key=dedup_key,
                severity=pagerduty_severity(severity),
                custom_details=custom_details or None,
            )

        return await self._call("trigger", send)

    async def acknowledge(self, routing_key: str, dedup_key: str) -> None:
        await self._call(
            "acknowledge", lambda: self._events_client(routing_key).acknowledge(dedup_key)
        )

    async def resolve(self, routing_key: str, dedup_key: str) -> None:
        await self._call("resolve", lambda: self._events_client(routing_key).resolve(dedup_key))

    async def oncalls(self, escalation_policy: str) -> list[dict[str, Any]]:
        """Everyone on call for one escalation policy (REST `GET /oncalls`, all pages)."""

        def fetch() -> list[dict[str, Any]]:
            return self._rest_client().list_all(
                "oncalls",
                params={"escalation_policy_ids": [escalation_policy], "include": ["users"]},
            )

        return await self._call("on-call lookup", fetch)

    async def incident_for(self, dedup_key: str) -> dict[str, Any] | None:
        """The PagerDuty incident opened by events with this dedup_key (its incident_key)."""

        def fetch() -> list[dict[str, Any]]:
            return self._rest_client().list_all("incidents", params={"incident_key": dedup_key})

        incidents = await self._call("incident lookup", fetch)
        return incidents[0] if incidents else None

    async def escalate(self, incident_id: str, level: int) -> None:
        """Move an incident to escalation `level` (REST `PUT /incidents/{id}`, needs `From`)."""
        if not self.settings.pagerduty_from:
            raise PagerDutyError(
                "PAGERDUTY_FROM is not set: PagerDuty needs a user's e-mail to escalate"
            )

        def put() -> Any:
            return self._rest_client().rput(
                f"incidents/{incident_id}",
                json={"type": "incident_reference", "escalation_level": level},
            )

        await self._call("escalation", put)


def _checked_url(variable: str, build: Callable[[], T]) -> T:
    try:
        return build()
    except pagerduty.UrlError as exc:
        raise PagerDutyError(f"{variable}: {exc} (the pagerduty client refuses http://)") from exc


def _describe_http_error(exc: pagerduty.HttpError) -> str:
    response = exc.response
    status = getattr(response, "status_code", None)
    detail = ""
    try:
        body = response.json()
    except Exception:  # a body that is not JSON says nothing more
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            detail = str(error.get("message") or "")
            errors = error.get("errors")
            if errors:
                detail += f" ({'; '.join(map(str, errors))})"
        elif body.get("message"):
            detail = str(body["message"])
            if body.get("errors"):
                detail += f" ({'; '.join(map(str, body['errors']))})"
    text = f"PagerDuty answered HTTP {status}"
    return f"{text}: {detail[:300]}" if detail else text
