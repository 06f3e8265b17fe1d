"""The HTTP face of the bot: /slack/events (guarded), /healthz, /readyz and /metrics."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.services import Services

log = logging.getLogger("opsbot.web")

MAX_BODY_BYTES = 1024 * 1024
SIGNATURE_WINDOW_SECONDS = 60 * 5
# Slack gives up on an ack after 3 s: a body still arriving after that is not from Slack.
BODY_SECONDS = 3.0
# Slack's deepest payloads (rich text in a message in a block_actions payload) nest about 15 levels.
MAX_JSON_DEPTH = 64
# aiohttp's HTTP parser limits, per connection (RequestHandler's arguments; see build_runner).
# Slack never compresses a request: with auto_decompress off a gzip body is refused, not inflated.
SERVER_LIMITS: dict[str, Any] = {
    "max_line_size": 8190,
    "max_field_size": 8190,
    "max_headers": 64,
    "auto_decompress": False,
}
SERVICES_KEY = web.AppKey("services", Services)
BOLT_KEY = web.AppKey("bolt", AsyncApp)

_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # ASCII digits only: str.isdigit() also takes "١٧" and "¹"
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
_PERCENT_NON_ASCII = re.compile(rb"%[89a-fA-F][0-9a-fA-F]")
_JSON_ESCAPED_SURROGATE = re.compile(rb"(?:\\|%5[cC])u[dD][89a-fA-F]")
_OPENING_BRACKETS = (b"{", b"[", b"%7B", b"%7b", b"%5B", b"%5b")


class Refused(Exception):
    """A request the edge answers itself, before Bolt sees it: status, reason and metric outcome."""

    OUTCOMES: ClassVar[dict[int, str]] = {
        400: "bad_request",
        401: "unauthorized",
        413: "too_large",
    }

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    @property
    def outcome(self) -> str:
        return self.OUTCOMES[self.status]


class BadRequest(Refused):
    """The body is signed but cannot be read as a Slack request."""

    def __init__(self, reason: str) -> None:
        super().__init__(400, reason)


def parse(raw: bytes, headers: Any, query: str) -> AsyncBoltRequest:
    """Parse once, as Bolt does; raise BadRequest for what Bolt would answer with a 500."""
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8") from None
    try:
        bolt_request = AsyncBoltRequest(body=body, query=query, headers=headers)
    except RecursionError:
        raise BadRequest(f"the JSON is nested more than {MAX_JSON_DEPTH} levels deep") from None
    except ValueError:  # json.JSONDecodeError included
        raise BadRequest("the body or its payload field is not valid JSON") from None
    except (AttributeError, TypeError, LookupError):
        raise BadRequest("the body or its payload field is not a JSON object") from None
    if not isinstance(bolt_request.body, dict):
        raise BadRequest("the body or its payload field is not a JSON object")
    # Bolt's own test for a form body; it decodes form fields with errors="replace".
    is_form = bolt_request.content_type != "application/json" and not body.startswith("{")
    if is_form and _PERCENT_NON_ASCII.search(raw):
        try:
            parse_qsl(body, keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:
            raise BadRequest("a form field is not UTF-8") from None
    check_json(bolt_request.body, raw)
    return bolt_request


def check_json(data: dict[str, Any], raw: bytes) -> None:
    """BadRequest if the parsed body nests deeper than MAX_JSON_DEPTH or holds a lone surrogate.

    Both are looked for only when the raw bytes could hold them (enough opening brackets, an
    escaped surrogate), so a slash command — the ack latency path — costs a few byte counts.
    """
    deep = sum(map(raw.count, _OPENING_BRACKETS)) > MAX_JSON_DEPTH
    surrogates = _JSON_ESCAPED_SURROGATE.search(raw) is not None
    if not (deep or surrogates):
        return
    level: list[Any] = [data]  # the containers at one depth, walked a level at a time
    for _depth in range(MAX_JSON_DEPTH):
        below: list[Any] = []
        for container in level:
            items = container.values() if isinstance(container, dict) else container
            if surrogates and not _all_unicode(container):
                raise BadRequest("the JSON holds a lone surrogate, which is not text")
            below.extend(item for item in items if isinstance(item, (dict, list)))
        if not below:
            return
        level = below
    raise BadRequest(f"the JSON is nested more than {MAX_JSON_DEPTH} levels deep")


def _all_unicode(container: dict[str, Any] | list[Any]) -> bool:
    """Whether every string key and value directly in `container` encodes as UTF-8."""
    texts = [*container, *container.values()] if isinstance(container, dict) else container
    try:
        for text in texts:
            if isinstance(text, str):
                text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
    if not secret or not fresh(timestamp) or not _SIGNATURE.fullmatch(signature):
        return False
    return hmac.compare_digest(slack_signature(secret, timestamp, raw), signature)


def fresh(timestamp: str) -> bool:
    """Whether `timestamp` is plain ASCII digits within the signature window of now."""
    if not _TIMESTAMP.fullmatch(timestamp):
        return False
    return abs(time.time() - int(timestamp)) <= SIGNATURE_WINDOW_SECONDS


def one_header(request: web.Request, name: str) -> str:
    """The value of a header that must come at most once ("" when absent)."""
    values = request.headers.getall(name, ())
    if len(values) > 1:
        raise Refused(400, f"{name} was sent more than once")
    return values[0] if values else ""


async def read_signed_body(request: web.Request, secret: str) -> bytes:
    """The raw body of a request signed by Slack, or Refused (400, 401 or 413) saying why.

    Headers are judged before the body is read: a body Slack would not send (compressed, over
    the size limit) or one that comes without a fresh signature is never read.
    """
    timestamp = one_header(request, "X-Slack-Request-Timestamp")
    signature = one_header(request, "X-Slack-Signature")
    if one_header(request, "Content-Encoding").lower() not in ("", "identity"):
        raise Refused(400, "Slack does not compress its requests: Content-Encoding is refused")
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise Refused(413, f"the body is over {MAX_BODY_BYTES} bytes")
    if not secret or not fresh(timestamp) or not _SIGNATURE.fullmatch(signature):
        raise Refused(401, "invalid signature or stale timestamp")
    try:
        if request.content.is_eof():  # the usual case: the body came with the headers
            raw = await request.read()
        else:
            async with asyncio.timeout(BODY_SECONDS):
                raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Refused(413, f"the body is over {MAX_BODY_BYTES} bytes") from None
    except TimeoutError:
        raise Refused(400, f"the body did not arrive within {BODY_SECONDS:g} s") from None
    except (web.RequestPayloadError, HttpProcessingError, ConnectionError):
        raise Refused(400, "the body could not be read (broken framing)") from None
    if not signed_by_slack(secret, raw, timestamp=timestamp, signature=signature):
        raise Refused(401, "invalid signature or stale timestamp")
    return raw


async def slack_events(request: web.Request) -> web.Response:
    started = time.perf_counter()
    services = request.app[SERVICES_KEY]
    metrics = services.metrics
    try:
        raw = await read_signed_body(request, services.settings.slack_signing_secret or "")
        bolt_request = parse(raw, request.headers, request.query_string)
        kind, command = classify(bolt_request.body)
    except Refused as refusal:
        metrics.requests.labels("unknown", refusal.outcome).inc()
        return web.json_response({"error": refusal.reason}, status=refusal.status)

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


class _ClientErrorLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server log, where a request it could not parse is one line, not a traceback.

    aiohttp answers bytes it cannot parse as HTTP (broken framing, a NUL in a header, a line over
    the limit) with 400 itself, and logs each at ERROR with a traceback: the client's mistake,
    not the bot's, and a way for anyone to fill the log. Other errors are logged as they come.
    """

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            first_line = (exc.message or type(exc).__name__).splitlines()[0]
            level, kwargs["exc_info"] = logging.INFO, None
            msg, args = f"{msg}: refused with {exc.code or 400}: %r", (*args, first_line)
        super().log(level, msg, *args, **kwargs)


def build_runner(app: web.Application, **options: Any) -> web.AppRunner:
    """The runner that serves `app`, with the HTTP edge's parser limits and its quiet error log."""
    server_log = _ClientErrorLog(logging.getLogger("aiohttp.server"), {})
    return web.AppRunner(app, logger=server_log, **SERVER_LIMITS, **options)
