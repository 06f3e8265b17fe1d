"""The stand-in's server: HTTP routes, reading arguments and tokens, and routing each Web API
method to the family (chat, conversations, views, users, files) that answers it."""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.console.standin.chat import ChatMethods
from bot.console.standin.conversations import ConversationMethods
from bot.console.standin.files import FileMethods
from bot.console.standin.response_urls import ResponseUrls
from bot.console.standin.users import UserMethods
from bot.console.standin.views import ViewMethods
from bot.console.standin.wire import (
    Answer,
    ApiCall,
    JsonDict,
    Message,
    MethodHandler,
    SharedFile,
    SlackApiFailure,
)
from bot.console.standin.workspace import Workspace

logger = logging.getLogger(__name__)

OnMessage = Callable[[Message], Awaitable[None] | None]

# Form fields that slack_sdk JSON-encodes into a string when it sends a form body.
_JSON_ENCODED_FIELDS = ("blocks", "attachments", "view", "metadata")
_SCOPES_HEADER = {"x-oauth-scopes": "chat:write,commands,channels:manage,users:read"}


class SlackStandIn(Workspace):
    """A local Slack: the workspace's state, served as Web API methods and response_url endpoints.

    Subclasses (the test fake) may wrap `_answer` to inject faults, extend `_add_routes`, replace
    entries of `_handlers`, and use `_after_call` to see every answered call.
    """

    def __init__(self, **workspace: Any) -> None:
        """Takes Workspace's arguments: team_id, bot_user_id, users, usergroups, team_domain."""
        super().__init__(**workspace)
        self.calls: list[ApiCall] = []
        self.on_message: OnMessage | None = None
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._response_urls = ResponseUrls(self)
        self._views = ViewMethods(self)
        self._files = FileMethods(self, lambda path: f"{self.base_url}{path}")
        self._handlers: dict[str, MethodHandler] = {
            **UserMethods(self).methods(),
            **ChatMethods(self).methods(),
            **ConversationMethods(self).methods(),
            **self._views.methods(),
            **self._files.methods(),
            "apps.connections.open": self._apps_connections_open,
        }

    # ------------------------------------------------------------------ state the console reads

    @property
    def views(self) -> dict[str, JsonDict]:
        """Views opened, pushed, updated or published, by id."""
        return self._views.views

    @property
    def home_views(self) -> dict[str, JsonDict]:
        """Each user's published Home tab."""
        return self._views.home_views

    @property
    def files(self) -> dict[str, SharedFile]:
        """Files by id, in upload order (shared or not)."""
        return self._files.files

    def shared_files(self, channel: str | None = None) -> list[SharedFile]:
        """Files shared by completeUploadExternal (into `channel`, when given), oldest first."""
        return self._files.shared_files(channel)

    def issue_trigger_id(self) -> str:
        """A trigger_id like Slack puts in interactive payloads; it expires after 3 seconds."""
        return self._views.issue_trigger_id()

    def response_url(self, channel: str, user: str, *, message_ts: str | None = None) -> str:
        """A fresh URL on this server that takes response_url POSTs like hooks.slack.com does.

        With message_ts (a block action's message), replace_original/delete_original act on that
        message; without it they act on the last message posted through this URL.
        """
        return self.base_url + self._response_urls.issue(channel, user, message_ts=message_ts)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Serve on host:port (port 0 picks a free one); api_url is valid afterwards."""
        app = web.Application()
        self._add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self._base_url = f"http://{bound_host}:{bound_port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the Slack stand-in is not started")
        return self._base_url

    @property
    def api_url(self) -> str:
        """The base_url for AsyncWebClient, e.g. http://127.0.0.1:PORT/api/."""
        return f"{self.base_url}/api/"

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/commands/{team}/{hook_id}/{secret}", self._handle_response_url)
        app.router.add_post("/actions/{team}/{hook_id}/{secret}", self._handle_response_url)
        app.router.add_post("/upload/v1/{secret}", self._handle_file_upload)

    # ------------------------------------------------------------------ HTTP plumbing

    @staticmethod
    def _call(request: web.Request, method: str) -> ApiCall:
        return ApiCall(
            method=method,
            args={},
            headers=request.headers,
            at=time.monotonic(),
            http_method=request.method,
            path=request.path,
        )

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        call = self._call(request, request.match_info["method"])
        try:
            call.args = await self._read_args(request)
        except ValueError:
            return await self._finish(call, Answer({"ok": False, "error": "invalid_json"}))
        call.token = self._token(request, call.args)
        return await self._finish(call, self._answer(call))

    async def _handle_response_url(self, request: web.Request) -> web.StreamResponse:
        call = self._call(request, "response_url")
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return await self._finish(call, Answer("invalid_payload", status=400, text=True))
        call.args = body
        return await self._finish(call, self._answer(call))

    async def _handle_file_upload(self, request: web.Request) -> web.StreamResponse:
        """The upload URL: takes the raw bytes (or a multipart `file` part), answers `OK - <n>`."""
        call = self._call(request, "file_upload")
        if request.content_type == "multipart/form-data":
            form = await request.post()
            part = form.get("file") or form.get("filename")
            content = part.file.read() if isinstance(part, web.FileField) else str(part).encode()
        else:
            content = await request.read()
        status, text, file_id = self._files.receive_upload(request.match_info["secret"], content)
        call.args = {"file_id": file_id, "size": len(content)}
        call.status, call.response = status, text
        self.calls.append(call)
        await self._after_call(call)
        return web.Response(text=text, status=status, content_type="text/plain")

    async def _finish(self, call: ApiCall, answer: Answer) -> web.StreamResponse:
        call.status = answer.status
        call.response = answer.body
        self.calls.append(call)
        for message in self.take_events():
            await self._notify_message(message)
        await self._after_call(call)
        if answer.text:
            return web.Response(
                text=str(answer.body),
                status=answer.status,
                headers=answer.headers,
                content_type="text/html",
            )
        headers = {**_SCOPES_HEADER, **answer.headers}
        return web.json_response(answer.body, status=answer.status, headers=headers)

    async def _notify_message(self, message: Message) -> None:
        if self.on_message is None:
            return
        try:
            result = self.on_message(message)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("on_message callback failed")

    async def _after_call(self, call: ApiCall) -> None:
        """Hook for subclasses (the test fake wakes its waiters here)."""

    @staticmethod
    async def _read_args(request: web.Request) -> JsonDict:
        args: JsonDict = dict(request.query)
        if request.content_type == "application/json":
            raw = await request.read()
            if raw:
                body = json.loads(raw)
                if not isinstance(body, dict):
                    raise ValueError("JSON body is not an object")
                args.update(body)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            args.update({k: v for k, v in form.items() if isinstance(v, str)})
        for name in _JSON_ENCODED_FIELDS:
            value = args.get(name)
            if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
                # Undecodable JSON stays a string: the method answers invalid_*_format.
                with contextlib.suppress(ValueError):
                    args[name] = json.loads(value)
        return args

    @staticmethod
    def _token(request: web.Request, args: JsonDict) -> str | None:
        authorization = request.headers.get("Authorization", "")
        token = args.pop("token", None)
        if authorization.startswith("Bearer "):
            return authorization.removeprefix("Bearer ").strip() or None
        return token if isinstance(token, str) and token else None

    # ------------------------------------------------------------------ routing

    def _answer(self, call: ApiCall) -> Answer:
        """Answer one call; subclasses wrap this to inject faults."""
        if call.method == "response_url":
            return self._response_urls.answer(call)
        handler = self._handlers.get(call.method)
        if handler is None:
            return Answer({"ok": False, "error": "unknown_method", "req_method": call.method})
        if call.token is None:
            return Answer({"ok": False, "error": "not_authed"})
        if not call.token.startswith(("xoxb-", "xoxp-", "xapp-")):
            return Answer({"ok": False, "error": "invalid_auth"})
        if call.token.startswith("xapp-") and call.method != "apps.connections.open":
            return Answer({"ok": False, "error": "not_allowed_token_type"})
        try:
            return Answer({"ok": True, **handler(call)})
        except SlackApiFailure as failure:
            return Answer({"ok": False, "error": failure.error, **failure.extra})

    def _apps_connections_open(self, call: ApiCall) -> JsonDict:
        # The stand-in has no Socket Mode; the test fake serves it.
        raise SlackApiFailure("not_allowed_token_type")
