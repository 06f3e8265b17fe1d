"""FakeSlack: the Slack stand-in plus waiting, fault injection, rate limits and Socket Mode.

Use it through `running_fake_slack()`; point `AsyncWebClient(base_url=fake.api_url)` at it, and
`AsyncSocketModeHandler(app, "xapp-...")` connects to its WebSocket through `apps.connections.open`.
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from bot.console.standin import Answer, ApiCall, JsonDict, Message, SlackApiFailure, SlackStandIn

__all__ = ["ApiCall", "FakeSlack", "Message", "running_fake_slack"]

_SERVER_ERRORS = {500: "internal_error", 503: "service_unavailable"}


@dataclass
class _Fault:
    status: int
    retry_after: int
    error: str | None
    remaining: int


class FakeSlack(SlackStandIn):
    """The stand-in with condition waits, injected failures, rate limits and Socket Mode."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._changed = asyncio.Condition()
        self._faults: dict[str, list[_Fault]] = collections.defaultdict(list)
        self._rate_limits: dict[str, float] = {}
        self._rate_windows: dict[tuple[str, str], collections.deque[float]] = (
            collections.defaultdict(collections.deque)
        )
        self._socket_tickets: set[str] = set()
        self._sockets: list[web.WebSocketResponse] = []
        self.socket_connects = 0  # connections accepted so far (a reconnect adds one)
        self._pending_acks: dict[str, asyncio.Future[JsonDict]] = {}
        self.socket_messages: list[JsonDict] = []  # everything the client sent over the socket
        self._handlers["apps.connections.open"] = self._apps_connections_open_socket

    # ------------------------------------------------------------------ lifecycle

    def _add_routes(self, app: web.Application) -> None:
        super()._add_routes(app)
        app.router.add_get("/socket-mode", self._handle_socket)

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"server shutting down")
        await super().stop()

    # ------------------------------------------------------------------ inspection and waiting

    def calls_to(self, method: str) -> list[ApiCall]:
        return [call for call in self.calls if call.method == method]

    def call_times(self, method: str) -> list[float]:
        """time.monotonic() of each call to method, in order (429-answered attempts included)."""
        return [call.at for call in self.calls_to(method)]

    async def _after_call(self, call: ApiCall) -> None:
        await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _wait(self, found: Callable[[], Any], timeout: float, what: str) -> Any:
        async with self._changed:
            try:
                async with asyncio.timeout(timeout):
                    return await self._changed.wait_for(found)
            except TimeoutError:
                raise TimeoutError(f"{what} within {timeout}s") from None

    async def wait_for(
        self,
        method: str,
        predicate: Callable[[ApiCall], bool] = lambda call: True,
        timeout: float = 5.0,
        *,
        start: int = 0,
    ) -> ApiCall:
        """The first call to method (from calls[start:] on) that satisfies predicate.

        Calls already made count, so there is no race with the code under test; pass
        `start=len(fake.calls)` to wait only for calls made from now on.
        """

        def found() -> ApiCall | None:
            for call in self.calls[start:]:
                if call.method == method and predicate(call):
                    return call
            return None

        try:
            return await self._wait(found, timeout, f"no matching {method} call")
        except TimeoutError as error:
            seen = [call.args for call in self.calls_to(method)]
            raise TimeoutError(f"{error}; {method} calls seen: {seen}") from None

    async def wait_for_message(
        self,
        predicate: Callable[[Message], bool] = lambda message: True,
        timeout: float = 5.0,
    ) -> Message:
        """The first message as it is now (posted or updated) that satisfies predicate."""

        def found() -> Message | None:
            return next((m for m in self.messages if predicate(m)), None)

        try:
            return await self._wait(found, timeout, "no matching message")
        except TimeoutError as error:
            texts = [(m.channel, m.text) for m in self.messages]
            raise TimeoutError(f"{error}; messages: {texts}") from None

    # ------------------------------------------------------------------ faults and rate limits

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int = 1,
        times: int = 1,
        error: str | None = None,
    ) -> None:
        """Answer the next `times` calls to method with a failure instead of handling them.

        error="channel_not_found" → HTTP 200 {"ok": false, "error": ...}; status=429 → HTTP 429 with
        Retry-After and {"ok": false, "error": "ratelimited"}; status=500/503 → that status.
        method may be "response_url" for POSTs to response URLs.
        """
        self._faults[method].append(_Fault(status, retry_after, error, times))

    def ratelimit(self, method: str, per_second: float | None) -> None:
        """Answer 429 + Retry-After when one channel gets more than per_second calls in 1 s.

        Only accepted calls count towards the window, as on Slack; None switches it off.
        """
        if per_second is None:
            self._rate_limits.pop(method, None)
        else:
            self._rate_limits[method] = per_second

    def _answer(self, call: ApiCall) -> Answer:
        faults = self._faults.get(call.method)
        if faults:
            fault = faults[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                faults.pop(0)
            return self._fault_answer(call, fault)
        limit = self._rate_limits.get(call.method)
        if limit is None:
            return super()._answer(call)
        window = self._rate_windows[(call.method, str(call.args.get("channel", "")))]
        while window and call.at - window[0] >= 1.0:
            window.popleft()
        if len(window) >= limit:
            retry_after = max(1, math.ceil(1.0 - (call.at - window[0])))
            return self._rate_limited(call, retry_after)
        answer = super()._answer(call)
        if answer.status == 200 and (answer.text or answer.body.get("ok")):
            window.append(call.at)
        return answer

    @staticmethod
    def _rate_limited(call: ApiCall, retry_after: int) -> Answer:
        headers = {"Retry-After": str(retry_after)}
        if call.method == "response_url":
            return Answer("rate_limited", status=429, headers=headers, text=True)
        return Answer({"ok": False, "error": "ratelimited"}, status=429, headers=headers)

    def _fault_answer(self, call: ApiCall, fault: _Fault) -> Answer:
        is_response_url = call.method == "response_url"
        if fault.error is not None:
            if is_response_url:
                return Answer(fault.error, status=fault.status or 400, text=True)
            return Answer({"ok": False, "error": fault.error})
        if fault.status == 429:
            return self._rate_limited(call, fault.retry_after)
        error = _SERVER_ERRORS.get(fault.status, "fatal_error")
        if is_response_url:
            return Answer(error, status=fault.status, text=True)
        return Answer({"ok": False, "error": error}, status=fault.status)

    # ------------------------------------------------------------------ Socket Mode

    def _apps_connections_open_socket(self, call: ApiCall) -> JsonDict:
        if not (call.token or "").startswith("xapp-"):
            raise SlackApiFailure("not_allowed_token_type")
        ticket = secrets.token_hex(16)
        self._socket_tickets.add(ticket)
        ws_url = self.base_url.replace("http://", "ws://", 1)
        return {"url": f"{ws_url}/socket-mode?ticket={ticket}&app_id={self.app_id}"}

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("ticket") not in self._socket_tickets:
            return web.Response(status=401, text="invalid_ticket")
        ws = web.WebSocketResponse(autoping=True)  # answers the SDK's ping frames with pongs
        await ws.prepare(request)
        self._sockets.append(ws)
        self.socket_connects += 1
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self._sockets),
                "debug_info": {
                    "host": "applink-fake",
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": self.app_id},
            }
        )
        await self._notify()
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(frame.data)
                except ValueError:
                    continue
                if not isinstance(data, dict):
                    continue
                self.socket_messages.append(data)
                pending = self._pending_acks.get(str(data.get("envelope_id")))
                if pending is not None and not pending.done():
                    pending.set_result(data)
        finally:
            self._sockets.remove(ws)
            await self._notify()
        return ws

    @property
    def socket_connections(self) -> int:
        return sum(1 for ws in self._sockets if not ws.closed)

    async def wait_socket_connected(
        self,
        timeout: float = 5.0,
        *,
        min_connects: int = 1,
    ) -> None:
        """Wait until a client holds an open connection (and got its hello).

        min_connects=2 waits for a reconnection, e.g. after socket_disconnect().
        """
        await self._wait(
            lambda: self.socket_connections > 0 and self.socket_connects >= min_connects,
            timeout,
            f"no Socket Mode connection (connections so far: {self.socket_connects})",
        )

    async def socket_send(
        self,
        envelope_type: str,
        payload: JsonDict,
        *,
        accepts_response_payload: bool | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
        timeout: float = 5.0,
    ) -> JsonDict:
        """Send an envelope to the newest connection and return the client's ack.

        The ack is `{"envelope_id": ...}` plus `"payload"` when the listener acked with content.
        accepts_response_payload defaults to what Slack sends: true for slash_commands and for
        interactive view_submission / block_suggestion payloads, false otherwise. Bolt sends no
        ack at all when no listener matched, so that times out (TimeoutError).
        """
        await self.wait_socket_connected(timeout)
        ws = next(ws for ws in reversed(self._sockets) if not ws.closed)
        if accepts_response_payload is None:
            accepts_response_payload = envelope_type == "slash_commands" or (
                envelope_type == "interactive"
                and payload.get("type") in ("view_submission", "block_suggestion")
            )
        envelope_id = str(uuid.uuid4())
        envelope: JsonDict = {
            "envelope_id": envelope_id,
            "type": envelope_type,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
        }
        if envelope_type == "events_api" or retry_attempt:
            envelope.update({"retry_attempt": retry_attempt, "retry_reason": retry_reason})
        ack: asyncio.Future[JsonDict] = asyncio.get_running_loop().create_future()
        self._pending_acks[envelope_id] = ack
        try:
            await ws.send_json(envelope)
            async with asyncio.timeout(timeout):
                return await ack
        except TimeoutError:
            raise TimeoutError(
                f"no ack for {envelope_type} envelope {envelope_id} within {timeout}s"
            ) from None
        finally:
            self._pending_acks.pop(envelope_id, None)

    async def socket_disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask connected clients to reconnect, as Slack does before it recycles a connection."""
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}}
        for ws in list(self._sockets):
            if not ws.closed:
                await ws.send_json(message)


@asynccontextmanager
async def running_fake_slack(**kwargs: Any) -> AsyncIterator[FakeSlack]:
    """Start a FakeSlack on a free loopback port for the duration of the block."""
    fake = FakeSlack(**kwargs)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
