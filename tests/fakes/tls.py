"""A TLS server on loopback presenting a `trustme` certificate that expires when a test says."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import trustme


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


@asynccontextmanager
async def tls_server(ca: trustme.CA, not_after: datetime) -> AsyncIterator[int]:
    """A TLS server on 127.0.0.1 presenting a certificate valid until `not_after`; its port."""
    leaf = ca.issue_cert("127.0.0.1", not_after=not_after)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    server = await asyncio.start_server(_answer, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
