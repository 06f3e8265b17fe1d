"""opsbot as a separate process: a free port for it to serve on, and waiting until it is healthy."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import aiohttp


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_healthy(port: int, process: Any) -> None:
    """Wait until the process answers /healthz on port (fail if it exits first)."""
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            if process.returncode is not None:
                raise AssertionError(f"opsbot exited: {(await process.stderr.read()).decode()}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise AssertionError("opsbot never answered /healthz")
