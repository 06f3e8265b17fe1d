"""The baseline for bench/ack_latency.py: a bare slack-bolt AsyncApp served the same way."""

from __future__ import annotations

import os

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

app = AsyncApp(
    client=AsyncWebClient(
        token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"]
    ),
    signing_secret=os.environ["SLACK_SIGNING_SECRET"],
)


@app.command("/deploy")
async def deploy(ack) -> None:  # type: ignore[no-untyped-def]
    await ack(text="usage: /deploy <service> <env> [<version>]", response_type="ephemeral")


async def events(request: web.Request) -> web.Response:
    return await to_aiohttp_response(await app.async_dispatch(await to_bolt_request(request)))


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


if __name__ == "__main__":
    server = web.Application()
    server.router.add_post("/slack/events", events)
    server.router.add_get("/healthz", healthz)
    web.run_app(server, host="127.0.0.1", port=int(os.environ["PORT"]), access_log=None, print=None)
