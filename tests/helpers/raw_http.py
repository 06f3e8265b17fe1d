"""HTTP/1.1 over a raw socket, for requests that a well-behaved client library refuses to send.

aiohttp's client will not send a header twice in a way we control, NUL bytes, non-UTF-8 header
values, conflicting framing or broken chunks; Slack's endpoint must answer all of them, so tests
write the bytes themselves and read back the status line, the headers and the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Iterable

Header = tuple[str | bytes, str | bytes]


@dataclasses.dataclass(frozen=True)
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    seconds: float

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def http_request(
    headers: Iterable[Header],
    body: bytes = b"",
    *,
    path: str | bytes = "/slack/events",
    host: str = "127.0.0.1",
    content_length: bool = True,
) -> bytes:
    """A POST with exactly these header lines, in this order (plus Host, and Content-Length of
    the body unless `content_length` is false), then the body as given."""
    lines = [b"POST " + _bytes(path) + b" HTTP/1.1", b"Host: " + host.encode()]
    lines += [_bytes(name) + b": " + _bytes(value) for name, value in headers]
    if content_length:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def send_raw(
    port: int, request: bytes, *, timeout: float = 5.0, host: str = "127.0.0.1"
) -> RawResponse:
    """Write `request` and read one response; TimeoutError if none arrives within `timeout`.

    The request may be incomplete on purpose (a body that never comes): the response is read
    without closing our side, as a stalled client would.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        async with asyncio.timeout(timeout):
            writer.write(request)
            # The server may answer and close before it has read all we send: that is fine.
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")[:-2]
            status = int(status_line.split(" ", 2)[1])
            headers = [tuple(h.split(": ", 1)) for h in header_lines]
            length = next((int(v) for k, v in headers if k.lower() == "content-length"), None)
            body = await reader.readexactly(length) if length is not None else b""
        return RawResponse(status, headers, body, loop.time() - started)  # type: ignore[arg-type]
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
