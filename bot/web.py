"""The HTTP face of the bot: /slack/events (guarded), /healthz, /readyz and /metrics."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.services import Services

log = logging.getLogger("opsbot.web")

MAX_BODY_BYTES = 1024 * 1024
SIGNATURE_WINDOW_SECONDS = 60 * 5
SERVICES_KEY = web.AppKey("services", Services)
BOLT_KEY = web.AppKey("bolt", AsyncApp)


class BadRequest(Exception):
    """The body is signed but cannot be read as a Slack request."""


def parse(body: str, headers: Any, query: str) -> AsyncBoltRequest:
    """Parse once, as Bolt does; raise BadRequest for what Bolt would answer with a 500."""
    try:
        bolt_request = AsyncBoltRequest(body=body, query=query, headers=headers)
    except ValueError:  # json.JSONDecodeError included
        raise BadRequest("the body or its payload field is not valid JSON") from None
    except (AttributeError, TypeError):
        raise BadRequest("the body or its payload field is not a JSON object") from None
    if not isinstance(bolt_request.body, dict):
        raise BadRequest("the body or its payload field is not a JSON object")
    return bolt_request


def classify(data: dict[str, Any]) -> tuple[str, str]:
    """(kind, command) of a parsed Slack request, for metrics; BadRequest if it is neither."""
    if "command" in data:
        command = data["command"]
        if not isinstance(command, str) or not command.startswith("/") or len(command) > 40:
            raise BadRequest("the command field is not a slash command")
        return "slash_command", command
    kind = data.get("type")
    if not isinstance(kind, str):
        raise BadRequest("the body is neither a slash command, an interaction nor an event")
    if kind == "event_callback":
        event = data.get("event")
        return kind, f"event:{event.get('type', 'unknown') if isinstance(event, dict) else '?'}"
    return kind, kind


def slack_signature(secret: str, timestamp: str, raw: bytes) -> str:
    """Slack's v0 request signature: HMAC-SHA256 of `v0:{timestamp}:{body}`.

    slack_sdk's SignatureVerifier decodes the body as UTF-8 first; a signed body that is not UTF-8
    must still be recognised as signed (and then refused with 400), so this works on bytes.
    """
    base = b"v0:" + timestamp.encode() + b":" + raw
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_by_slack(secret: str, raw: bytes, *, timestamp: str, signature: str) -> bool:
    """Slack's v0 signature over the raw bytes, with a 5-minute window on the timestamp."""
    if not secret or not timestamp.isdigit() or not signature.startswith("v0="):
        return False
    if abs(time.time() - int(timestamp)) > SIGNATURE_WINDOW_SECONDS:
        return False
    return hmac.compare_digest(slack_signature(secret, timestamp, raw), signature)


async def slack_events(request: web.Request) -> web.Response:
    started = time.perf_counter()
    services = request.app[SERVICES_KEY]
    metrics = services.metrics
    raw = await request.read()
    if not signed_by_slack(
        services.settings.slack_signing_secret or "",
        raw,
        timestamp=request.headers.get("X-Slack-Request-Timestamp", ""),
        signature=request.headers.get("X-Slack-Signature", ""),
    ):
        metrics.requests.labels("unknown", "unauthorized").inc()
        return web.json_response({"error": "invalid signature or stale timestamp"}, status=401)
    try:
        bolt_request = parse(raw.decode("utf-8"), request.headers, request.query_string)
        kind, command = classify(bolt_request.body)
    except (UnicodeDecodeError, BadRequest) as exc:
        reason = "the body is not UTF-8" if isinstance(exc, UnicodeDecodeError) else str(exc)
        metrics.requests.labels("unknown", "bad_request").inc()
        return web.json_response({"error": reason}, status=400)

    bolt = request.app[BOLT_KEY]
    services.work.gate.enter()
    try:
        bolt_response = await bolt.async_dispatch(bolt_request)
    except Exception:
        log.exception("Bolt failed on a %s request", kind)
        bolt_response = None
    finally:
        services.work.gate.leave()
    if bolt_response is None or bolt_response.status >= 500:
        # Never a 500: Slack would show the user an opaque failure and may retry.
        metrics.requests.labels(command, "error").inc()
        response = web.json_response(
            {
                "response_type": "ephemeral",
                "text": ":x: opsbot hit an internal error on this request; it has been logged.",
            }
        )
    else:
        outcome = "ok" if bolt_response.status < 400 else f"http_{bolt_response.status}"
        metrics.requests.labels(command, outcome).inc()
        response = await to_aiohttp_response(bolt_response)
    metrics.ack_seconds.labels(kind).observe(time.perf_counter() - started)
    return response


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    if await services.db.ping():
        return web.json_response({"status": "ready", "database": "reachable"})
    return web.json_response({"status": "not ready", "database": "unreachable"}, status=503)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[SERVICES_KEY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@web.middleware
async def no_stack_traces(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response({"error": "internal error, logged"}, status=500)


def build_web_app(services: Services, bolt: AsyncApp) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[no_stack_traces])
    app[SERVICES_KEY] = services
    app[BOLT_KEY] = bolt
    app.router.add_post("/slack/events", slack_events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
