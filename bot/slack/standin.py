"""A small, stateful local Slack Web API (and response_url endpoint) served by aiohttp on loopback.

`opsbot shell` runs the bot against it, and the test fake (`tests/fakes/slack.py`) extends it.
It speaks the wire protocol slack_sdk speaks to slack.com: POST or GET `/api/<method>`, arguments
in the query string, a form body or a JSON body, a Bearer token; answers are `{"ok": true, ...}`
or `{"ok": false, "error": "..."}` with HTTP 200.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]
MessageSource = Literal["api", "response_url"]

# Form fields that slack_sdk JSON-encodes into a string when it sends a form body.
_JSON_ENCODED_FIELDS = ("blocks", "attachments", "view", "metadata")
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_CHANNEL_NAME_ALLOWED = re.compile(r"^[a-z0-9_\-]+$")
_FIRST_TS_MICROS = 1_700_000_000_000_100
_TS_STEP_MICROS = 100
_TRIGGER_ID_LIFETIME_SECONDS = 3.0
_MAX_TEXT_CHARS = 40_000
_MAX_BLOCKS_PER_MESSAGE = 50
_MAX_BLOCKS_PER_VIEW = 100
_MAX_SECTION_TEXT_CHARS = 3000
_MAX_TOPIC_CHARS = 250


@dataclass
class ApiCall:
    """One request as it reached the stand-in (Web API method or a response_url POST)."""

    method: str
    args: JsonDict
    headers: Mapping[str, str]
    at: float = 0.0  # time.monotonic() when the request arrived; rate-limit tests check spacing
    http_method: str = "POST"
    path: str = ""
    token: str | None = None
    status: int = 200
    response: Any = None


@dataclass
class Message:
    """A message as Slack would show it now (updated in place by chat.update / replace_original)."""

    channel: str
    ts: str
    thread_ts: str | None
    text: str
    blocks: list[JsonDict]
    user: str
    ephemeral_for: str | None = None
    source: MessageSource = "api"
    updated: bool = False
    deleted: bool = False
    attachments: list[JsonDict] = field(default_factory=list)
    reactions: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Answer:
    """What the stand-in sends back for one request."""

    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    text: bool = False  # body is a plain string (response_url answers "ok")


@dataclass
class _ResponseUrl:
    channel: str
    user: str
    message_ts: str | None
    uses: int = 0
    last_ts: str | None = None


# files
@dataclass
class SharedFile:
    """A file uploaded through files.getUploadURLExternal / upload URL / completeUploadExternal."""

    id: str
    name: str
    length: int
    title: str = ""
    content: bytes | None = None  # None until the bytes are POSTed to the upload URL
    channels: list[str] = field(default_factory=list)
    initial_comment: str = ""
    thread_ts: str | None = None
    user: str = ""
    message_ts: str | None = None  # the file-share message posted in the (first) channel
    completed: bool = False

    @property
    def text(self) -> str:
        """The content as UTF-8 text (what a test asserts on)."""
        return (self.content or b"").decode("utf-8")


class SlackApiFailure(Exception):
    """Raised inside a method handler to answer `{"ok": false, "error": ...}`."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


MethodHandler = Callable[[ApiCall], JsonDict]
OnMessage = Callable[[Message], Awaitable[None] | None]


class SlackStandIn:
    """A local Slack: Web API methods, response_url endpoints, and the state they change."""

    response_url_max_uses = 5  # Slack: "up to five times within 30 minutes"

    def __init__(
        self,
        *,
        team_id: str = "T0OPSBOT",
        bot_user_id: str = "U0OPSBOT",
        users: list[dict[str, Any]] | None = None,
        usergroups: dict[str, list[str]] | None = None,
        team_domain: str = "opsbot",
    ) -> None:
        self.team_id = team_id
        self.team_domain = team_domain
        self.bot_user_id = bot_user_id
        self.bot_id = "B" + bot_user_id[1:]
        self.app_id = "A" + bot_user_id[1:]
        self.calls: list[ApiCall] = []
        self.messages: list[Message] = []
        self.on_message: OnMessage | None = None
        self.users: dict[str, JsonDict] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.channels: dict[str, JsonDict] = {}
        self.views: dict[str, JsonDict] = {}
        self.home_views: dict[str, JsonDict] = {}
        self.files: dict[str, SharedFile] = {}  # files: by id, in upload order
        self._upload_urls: dict[str, str] = {}  # files: upload URL secret -> file id
        self._ts_counter = itertools.count(_FIRST_TS_MICROS, _TS_STEP_MICROS)
        self._id_counter = itertools.count(1)
        self._trigger_ids: dict[str, float] = {}
        self._used_trigger_ids: set[str] = set()
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._pending_events: list[Message] = []
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._handlers: dict[str, MethodHandler] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "conversations.create": self._conversations_create,
            "conversations.invite": self._conversations_invite,
            "conversations.join": self._conversations_join,
            "conversations.setTopic": self._conversations_set_topic,
            "conversations.setPurpose": self._conversations_set_purpose,
            "conversations.info": self._conversations_info,
            "conversations.members": self._conversations_members,
            "conversations.archive": self._conversations_archive,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "users.info": self._users_info,
            "users.list": self._users_list,
            "users.lookupByEmail": self._users_lookup_by_email,
            "usergroups.users.list": self._usergroups_users_list,
            "reactions.add": self._reactions_add,
            "apps.connections.open": self._apps_connections_open,
        }
        self._handlers.update(self._file_methods())  # files
        self.add_user(bot_user_id, "opsbot", "", "opsbot", is_bot=True)
        for user in users or []:
            if "profile" in user:
                self.users[user["id"]] = user
            else:
                self.add_user(
                    user["id"], user["name"], user.get("email", ""), user.get("real_name", "")
                )
        for group_id, user_ids in (usergroups or {}).items():
            self.set_usergroup(group_id, user_ids)

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
        app.router.add_post("/upload/v1/{secret}", self._handle_file_upload)  # files

    # ------------------------------------------------------------------ state helpers

    def add_user(
        self, id: str, name: str, email: str, real_name: str, *, is_bot: bool = False
    ) -> JsonDict:
        """Add (or replace) a workspace member; returns the Slack user object."""
        user: JsonDict = {
            "id": id,
            "team_id": self.team_id,
            "name": name,
            "deleted": False,
            "real_name": real_name,
            "tz": "Etc/UTC",
            "tz_label": "Coordinated Universal Time",
            "tz_offset": 0,
            "is_admin": False,
            "is_owner": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": int(time.time()),
            "profile": {
                "real_name": real_name,
                "real_name_normalized": real_name,
                "display_name": name,
                "display_name_normalized": name,
                "email": email,
                "team": self.team_id,
            },
        }
        if is_bot:
            user["profile"]["bot_id"] = self.bot_id
            del user["profile"]["email"]
        self.users[id] = user
        return user

    def set_usergroup(self, group_id: str, user_ids: list[str]) -> None:
        self.usergroups[group_id] = list(user_ids)

    def add_channel(
        self, id: str, name: str, *, is_private: bool = False, members: list[str] | None = None
    ) -> JsonDict:
        """Make a channel known by id and name (so chat.postMessage(channel="#deploys") works)."""
        channel: JsonDict = {
            "id": id,
            "name": name,
            "name_normalized": name,
            "is_channel": not id.startswith("D"),
            "is_group": False,
            "is_im": id.startswith("D"),
            "is_private": is_private,
            "is_archived": False,
            "is_general": False,
            "is_member": True,
            "created": int(time.time()),
            "creator": self.bot_user_id,
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
            "members": list(dict.fromkeys([self.bot_user_id, *(members or [])])),
        }
        self.channels[id] = channel
        return channel

    def response_url(self, channel: str, user: str, *, message_ts: str | None = None) -> str:
        """A fresh URL on this server that takes response_url POSTs like hooks.slack.com does.

        With message_ts (a block action's message), replace_original/delete_original act on that
        message; without it they act on the last message posted through this URL.
        """
        hook_id = next(self._id_counter)
        secret = secrets.token_hex(12)
        kind = "actions" if message_ts else "commands"
        path = f"/{kind}/{self.team_id}/{hook_id}/{secret}"
        self._response_urls[path] = _ResponseUrl(channel, user, message_ts)
        return f"{self.base_url}{path}"

    def issue_trigger_id(self) -> str:
        """A trigger_id like Slack puts in interactive payloads; it expires after 3 seconds."""
        n = next(self._id_counter)
        trigger_id = f"{1000000000 + n}.{4000000000 + n}.{secrets.token_hex(16)}"
        self._trigger_ids[trigger_id] = time.monotonic()
        return trigger_id

    def find_message(self, channel: str, ts: str) -> Message | None:
        for message in self.messages:
            if message.channel == channel and message.ts == ts:
                return message
        return None

    def channel_name(self, channel_id: str) -> str | None:
        channel = self.channels.get(channel_id)
        return None if channel is None else channel["name"]

    def _next_ts(self) -> str:
        micros = next(self._ts_counter)
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _resolve_channel(self, value: Any) -> str:
        """Channel id for an id, a name or '#name' (a user id means the bot's DM with them)."""
        if not isinstance(value, str) or not value:
            raise SlackApiFailure("channel_not_found")
        if _CHANNEL_ID.match(value):
            if value not in self.channels:
                self.add_channel(value, value.lower())
            return value
        if _USER_ID.match(value):
            dm_id = "D" + value[1:]
            if dm_id not in self.channels:
                self.add_channel(dm_id, value, members=[value])
            return dm_id
        name = value.removeprefix("#")
        for channel in self.channels.values():
            if channel["name"] == name:
                return str(channel["id"])
        raise SlackApiFailure("channel_not_found")

    def _emit(self, message: Message) -> None:
        self._pending_events.append(message)

    # ------------------------------------------------------------------ HTTP plumbing

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        call = ApiCall(
            method=method,
            args={},
            headers=request.headers,
            at=time.monotonic(),
            http_method=request.method,
            path=request.path,
        )
        try:
            call.args = await self._read_args(request)
        except ValueError:
            return await self._finish(call, Answer({"ok": False, "error": "invalid_json"}))
        call.token = self._token(request, call.args)
        return await self._finish(call, self._answer(call))

    async def _handle_response_url(self, request: web.Request) -> web.StreamResponse:
        call = ApiCall(
            method="response_url",
            args={},
            headers=request.headers,
            at=time.monotonic(),
            http_method=request.method,
            path=request.path,
        )
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return await self._finish(call, Answer("invalid_payload", status=400, text=True))
        call.args = body
        return await self._finish(call, self._answer(call))

    async def _finish(self, call: ApiCall, answer: Answer) -> web.StreamResponse:
        call.status = answer.status
        call.response = answer.body
        self.calls.append(call)
        events, self._pending_events = self._pending_events, []
        for message in events:
            await self._notify_message(message)
        await self._after_call(call)
        if answer.text:
            return web.Response(
                text=str(answer.body),
                status=answer.status,
                headers=answer.headers,
                content_type="text/html",
            )
        headers = {"x-oauth-scopes": "chat:write,commands,channels:manage,users:read"}
        headers.update(answer.headers)
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

    def _answer(self, call: ApiCall) -> Answer:
        """Answer one call; subclasses wrap this to inject faults."""
        if call.method == "response_url":
            return self._answer_response_url(call)
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

    # ------------------------------------------------------------------ response_url

    def _answer_response_url(self, call: ApiCall) -> Answer:
        hook = self._response_urls.get(call.path)
        if hook is None:
            return Answer("expired_url", status=404, text=True)
        if hook.uses >= self.response_url_max_uses:
            return Answer("used_url", status=404, text=True)
        body = call.args
        original_ts = hook.message_ts or hook.last_ts
        original = self.find_message(hook.channel, original_ts) if original_ts else None
        if _truthy(body.get("delete_original")):
            hook.uses += 1
            if original is not None:
                self._delete(original)
            return Answer("ok", text=True)
        text = body.get("text") or ""
        blocks = body.get("blocks") or []
        if not text and not blocks:
            return Answer("no_text", status=400, text=True)
        if not isinstance(blocks, list) or _block_errors(blocks, _MAX_BLOCKS_PER_MESSAGE):
            return Answer("invalid_blocks", status=400, text=True)
        hook.uses += 1
        if _truthy(body.get("replace_original")) and original is not None:
            original.text, original.blocks, original.updated = text, blocks, True
            self._emit(original)
            return Answer("ok", text=True)
        in_channel = body.get("response_type") == "in_channel"
        message = Message(
            channel=hook.channel,
            ts=self._next_ts(),
            thread_ts=body.get("thread_ts"),
            text=text,
            blocks=blocks,
            user=self.bot_user_id,
            ephemeral_for=None if in_channel else hook.user,
            source="response_url",
        )
        hook.last_ts = message.ts
        self.messages.append(message)
        self._emit(message)
        return Answer("ok", text=True)

    def _delete(self, message: Message) -> None:
        self.messages.remove(message)
        message.deleted = True
        self._emit(message)

    # ------------------------------------------------------------------ message rendering

    def _message_json(self, message: Message) -> JsonDict:
        data: JsonDict = {
            "type": "message",
            "user": message.user,
            "text": message.text,
            "ts": message.ts,
            "team": self.team_id,
        }
        if message.user == self.bot_user_id:
            data.update({"bot_id": self.bot_id, "app_id": self.app_id})
        if message.blocks:
            data["blocks"] = message.blocks
        if message.attachments:
            data["attachments"] = message.attachments
        if message.thread_ts:
            data["thread_ts"] = message.thread_ts
        replies = [
            m
            for m in self.messages
            if m.thread_ts == message.ts and m.channel == message.channel and m.ts != message.ts
        ]
        if replies and not message.thread_ts:
            data.update({"thread_ts": message.ts, "reply_count": len(replies)})
        if message.updated:
            data["edited"] = {"user": message.user, "ts": message.ts}
        if message.reactions:
            data["reactions"] = [
                {"name": name, "users": users, "count": len(users)}
                for name, users in message.reactions.items()
            ]
        return data

    def _message_content(self, args: JsonDict) -> tuple[str, list[JsonDict], list[JsonDict]]:
        text = args.get("text") or ""
        blocks = args.get("blocks") or []
        attachments = args.get("attachments") or []
        if not isinstance(blocks, list):
            raise SlackApiFailure("invalid_blocks_format")
        if not isinstance(attachments, list):
            raise SlackApiFailure("invalid_attachments")
        if not text and not blocks and not attachments:
            raise SlackApiFailure("no_text")
        if len(text) > _MAX_TEXT_CHARS:
            raise SlackApiFailure("msg_too_long")
        errors = _block_errors(blocks, _MAX_BLOCKS_PER_MESSAGE)
        if errors:
            raise SlackApiFailure(
                "invalid_blocks", errors=errors, response_metadata={"messages": errors}
            )
        return text, blocks, attachments

    def _existing_message(self, channel: str, ts: Any) -> Message:
        message = self.find_message(channel, ts) if isinstance(ts, str) else None
        if message is None or message.ephemeral_for is not None:
            raise SlackApiFailure("message_not_found")
        return message

    # ------------------------------------------------------------------ methods: auth / apps

    def _auth_test(self, call: ApiCall) -> JsonDict:
        result: JsonDict = {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_domain,
            "user": self.users[self.bot_user_id]["name"],
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "is_enterprise_install": False,
        }
        if call.token and call.token.startswith("xoxb-"):
            result["bot_id"] = self.bot_id
        return result

    def _apps_connections_open(self, call: ApiCall) -> JsonDict:
        # The stand-in has no Socket Mode; the test fake serves it.
        raise SlackApiFailure("not_allowed_token_type")

    # ------------------------------------------------------------------ methods: chat

    def _chat_post_message(self, call: ApiCall) -> JsonDict:
        channel = self._resolve_channel(call.args.get("channel"))
        text, blocks, attachments = self._message_content(call.args)
        thread_ts = call.args.get("thread_ts") or None
        message = Message(
            channel=channel,
            ts=self._next_ts(),
            thread_ts=thread_ts,
            text=text,
            blocks=blocks,
            user=self.bot_user_id,
            attachments=attachments,
        )
        self.messages.append(message)
        self._emit(message)
        return {"channel": channel, "ts": message.ts, "message": self._message_json(message)}

    def _chat_update(self, call: ApiCall) -> JsonDict:
        channel = self._resolve_channel(call.args.get("channel"))
        message = self._existing_message(channel, call.args.get("ts"))
        text, blocks, attachments = self._message_content(call.args)
        message.text = text
        if "blocks" in call.args:
            message.blocks = blocks
        if "attachments" in call.args:
            message.attachments = attachments
        message.updated = True
        self._emit(message)
        return {
            "channel": channel,
            "ts": message.ts,
            "text": message.text,
            "message": self._message_json(message),
        }

    def _chat_delete(self, call: ApiCall) -> JsonDict:
        channel = self._resolve_channel(call.args.get("channel"))
        message = self._existing_message(channel, call.args.get("ts"))
        self._delete(message)
        return {"channel": channel, "ts": message.ts}

    def _chat_post_ephemeral(self, call: ApiCall) -> JsonDict:
        channel = self._resolve_channel(call.args.get("channel"))
        user = call.args.get("user")
        if not isinstance(user, str) or not user:
            raise SlackApiFailure("user_not_in_channel")
        text, blocks, attachments = self._message_content(call.args)
        message = Message(
            channel=channel,
            ts=self._next_ts(),
            thread_ts=call.args.get("thread_ts") or None,
            text=text,
            blocks=blocks,
            user=self.bot_user_id,
            ephemeral_for=user,
            attachments=attachments,
        )
        self.messages.append(message)
        self._emit(message)
        return {"message_ts": message.ts}

    def _chat_get_permalink(self, call: ApiCall) -> JsonDict:
        channel = self._resolve_channel(call.args.get("channel"))
        message = self._existing_message(channel, call.args.get("message_ts"))
        digits = message.ts.replace(".", "")
        permalink = f"https://{self.team_domain}.slack.com/archives/{channel}/p{digits}"
        if message.thread_ts and message.thread_ts != message.ts:
            permalink += f"?thread_ts={message.thread_ts}&cid={channel}"
        return {"channel": channel, "permalink": permalink}

    # ------------------------------------------------------------------ methods: conversations

    def _channel_arg(self, call: ApiCall) -> JsonDict:
        return self.channels[self._resolve_channel(call.args.get("channel"))]

    def _channel_json(self, channel: JsonDict) -> JsonDict:
        data = {k: v for k, v in channel.items() if k != "members"}
        data["num_members"] = len(channel["members"])
        return data

    def _conversations_create(self, call: ApiCall) -> JsonDict:
        name = call.args.get("name")
        if not isinstance(name, str) or not name:
            raise SlackApiFailure("invalid_name_required")
        if len(name) > 80:
            raise SlackApiFailure("invalid_name_maxlength")
        if not _CHANNEL_NAME_ALLOWED.match(name):
            raise SlackApiFailure("invalid_name_specials")
        if not re.search(r"[a-z0-9]", name):
            raise SlackApiFailure("invalid_name_punctuation")
        if any(channel["name"] == name for channel in self.channels.values()):
            raise SlackApiFailure("name_taken")
        channel_id = f"C{next(self._id_counter):08d}"
        channel = self.add_channel(
            channel_id, name, is_private=_truthy(call.args.get("is_private"))
        )
        return {"channel": self._channel_json(channel)}

    def _conversations_invite(self, call: ApiCall) -> JsonDict:
        channel = self._channel_arg(call)
        raw_users = call.args.get("users")
        user_ids = [u.strip() for u in str(raw_users or "").split(",") if u.strip()]
        if not user_ids:
            raise SlackApiFailure("no_user")
        if self.bot_user_id in user_ids:
            raise SlackApiFailure("cant_invite_self")
        missing = [u for u in user_ids if u not in self.users]
        if missing:
            raise SlackApiFailure(
                "user_not_found",
                errors=[{"user": u, "ok": False, "error": "user_not_found"} for u in missing],
            )
        if channel["is_archived"]:
            raise SlackApiFailure("is_archived")
        new = [u for u in user_ids if u not in channel["members"]]
        if not new:
            raise SlackApiFailure("already_in_channel")
        channel["members"].extend(new)
        return {"channel": self._channel_json(channel)}

    def _conversations_join(self, call: ApiCall) -> JsonDict:
        channel = self._channel_arg(call)
        if self.bot_user_id not in channel["members"]:
            channel["members"].append(self.bot_user_id)
        return {"channel": self._channel_json(channel)}

    def _set_channel_text(self, call: ApiCall, key: str, value_arg: str) -> JsonDict:
        channel = self._channel_arg(call)
        value = str(call.args.get(value_arg) or "")
        if len(value) > _MAX_TOPIC_CHARS:
            raise SlackApiFailure("too_long")
        if channel["is_archived"]:
            raise SlackApiFailure("is_archived")
        channel[key] = {"value": value, "creator": self.bot_user_id, "last_set": int(time.time())}
        return {"channel": self._channel_json(channel)}

    def _conversations_set_topic(self, call: ApiCall) -> JsonDict:
        return self._set_channel_text(call, "topic", "topic")

    def _conversations_set_purpose(self, call: ApiCall) -> JsonDict:
        return self._set_channel_text(call, "purpose", "purpose")

    def _conversations_info(self, call: ApiCall) -> JsonDict:
        return {"channel": self._channel_json(self._channel_arg(call))}

    def _conversations_members(self, call: ApiCall) -> JsonDict:
        channel = self._channel_arg(call)
        return {"members": list(channel["members"]), "response_metadata": {"next_cursor": ""}}

    def _conversations_archive(self, call: ApiCall) -> JsonDict:
        channel = self._channel_arg(call)
        if channel["is_archived"]:
            raise SlackApiFailure("already_archived")
        channel["is_archived"] = True
        return {}

    def _conversations_history(self, call: ApiCall) -> JsonDict:
        channel = self._channel_arg(call)
        oldest = float(call.args.get("oldest") or 0)
        latest = float(call.args.get("latest") or "inf")
        limit = int(call.args.get("limit") or 100)
        inclusive = _truthy(call.args.get("inclusive"))  # incidents: oldest/latest included
        visible = [
            m
            for m in self.messages
            if m.channel == channel["id"]
            and m.ephemeral_for is None
            and (not m.thread_ts or m.thread_ts == m.ts)
            and _within(m.ts, oldest, latest, inclusive)
        ]
        visible.reverse()  # newest first, like Slack
        return {
            "messages": [self._message_json(m) for m in visible[:limit]],
            "has_more": len(visible) > limit,
            "pin_count": 0,
            "response_metadata": {"next_cursor": ""},
        }

    def _conversations_replies(self, call: ApiCall) -> JsonDict:
        channel = self._channel_arg(call)
        ts = call.args.get("ts")
        parent = self.find_message(channel["id"], ts) if isinstance(ts, str) else None
        if parent is None:
            raise SlackApiFailure("thread_not_found")
        if parent.thread_ts and parent.thread_ts != parent.ts:
            # incidents: the ts of a reply reads that reply, as on Slack
            return {
                "messages": [self._message_json(parent)],
                "has_more": False,
                "response_metadata": {"next_cursor": ""},
            }
        thread = [parent] + [
            m
            for m in self.messages
            if m.channel == channel["id"]
            and m.thread_ts == ts
            and m.ts != ts
            and m.ephemeral_for is None
        ]
        return {
            "messages": [self._message_json(m) for m in thread],
            "has_more": False,
            "response_metadata": {"next_cursor": ""},
        }

    # ------------------------------------------------------------------ methods: views

    def _take_trigger_id(self, call: ApiCall) -> None:
        trigger_id = call.args.get("trigger_id") or call.args.get("interactivity_pointer")
        if not isinstance(trigger_id, str) or not trigger_id:
            raise SlackApiFailure("invalid_arguments")
        if trigger_id in self._used_trigger_ids:
            raise SlackApiFailure("exchanged_trigger_id")
        issued_at = self._trigger_ids.get(trigger_id)
        if issued_at is not None and time.monotonic() - issued_at > _TRIGGER_ID_LIFETIME_SECONDS:
            raise SlackApiFailure("expired_trigger_id")
        self._used_trigger_ids.add(trigger_id)

    def _view_arg(self, call: ApiCall) -> JsonDict:
        view = call.args.get("view")
        if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
            raise SlackApiFailure("invalid_arguments")
        errors = _block_errors(view.get("blocks") or [], _MAX_BLOCKS_PER_VIEW)
        title = (view.get("title") or {}).get("text", "")
        if view["type"] == "modal" and not title:
            errors.append("missing required field: title [json-pointer:/view/title]")
        if len(title) > 24:
            errors.append("must be less than 25 characters [json-pointer:/view/title/text]")
        if errors:
            raise SlackApiFailure("invalid_arguments", response_metadata={"messages": errors})
        return view

    def _store_view(
        self, view: JsonDict, *, view_id: str | None = None, previous_view_id: str | None = None
    ) -> JsonDict:
        view_id = view_id or f"V{next(self._id_counter):08d}"
        stored: JsonDict = {
            "id": view_id,
            "team_id": self.team_id,
            "type": view["type"],
            "title": view.get("title"),
            "submit": view.get("submit"),
            "close": view.get("close"),
            "blocks": view.get("blocks") or [],
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "external_id": view.get("external_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "root_view_id": view_id,
            "previous_view_id": previous_view_id,
            "app_id": self.app_id,
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        self.views[view_id] = stored
        return stored

    def _views_open(self, call: ApiCall) -> JsonDict:
        view = self._view_arg(call)
        self._take_trigger_id(call)
        return {"view": self._store_view(view)}

    def _views_push(self, call: ApiCall) -> JsonDict:
        view = self._view_arg(call)
        self._take_trigger_id(call)
        return {"view": self._store_view(view)}

    def _views_update(self, call: ApiCall) -> JsonDict:
        view = self._view_arg(call)
        view_id = call.args.get("view_id")
        external_id = call.args.get("external_id")
        current = None
        if view_id:
            current = self.views.get(view_id)
        elif external_id:
            current = next(
                (v for v in self.views.values() if v["external_id"] == external_id), None
            )
        if current is None:
            raise SlackApiFailure("not_found")
        expected_hash = call.args.get("hash")
        if expected_hash and expected_hash != current["hash"]:
            raise SlackApiFailure("hash_conflict")
        return {"view": self._store_view(view, view_id=current["id"])}

    def _views_publish(self, call: ApiCall) -> JsonDict:
        view = self._view_arg(call)
        user_id = call.args.get("user_id")
        if user_id not in self.users:
            raise SlackApiFailure("user_not_found")
        stored = self._store_view(view)
        self.home_views[user_id] = stored
        return {"view": stored}

    # ------------------------------------------------------------------ methods: users, reactions

    def _users_info(self, call: ApiCall) -> JsonDict:
        user = self.users.get(call.args.get("user", ""))
        if user is None:
            raise SlackApiFailure("user_not_found")
        return {"user": user}

    def _users_list(self, call: ApiCall) -> JsonDict:
        return {"members": list(self.users.values()), "response_metadata": {"next_cursor": ""}}

    def _users_lookup_by_email(self, call: ApiCall) -> JsonDict:
        email = str(call.args.get("email") or "").lower()
        for user in self.users.values():
            if email and user["profile"].get("email", "").lower() == email:
                return {"user": user}
        raise SlackApiFailure("users_not_found")

    def _usergroups_users_list(self, call: ApiCall) -> JsonDict:
        group = self.usergroups.get(call.args.get("usergroup", ""))
        if group is None:
            raise SlackApiFailure("no_such_subteam")
        return {"users": list(group)}

    def _reactions_add(self, call: ApiCall) -> JsonDict:
        channel = self._resolve_channel(call.args.get("channel"))
        message = self._existing_message(channel, call.args.get("timestamp"))
        name = str(call.args.get("name") or "").strip(":")
        if not name:
            raise SlackApiFailure("invalid_name")
        reacted = message.reactions.setdefault(name, [])
        if self.bot_user_id in reacted:
            raise SlackApiFailure("already_reacted")
        reacted.append(self.bot_user_id)
        return {}

    # files ----------------------------------------------------------------------------------
    # Slack's three-step upload (what slack_sdk's files_upload_v2 does): files.getUploadURLExternal
    # hands out an upload URL (here on this server) and a file id; the client POSTs the bytes
    # there; files.completeUploadExternal shares the uploaded files into a channel.

    def _file_methods(self) -> dict[str, MethodHandler]:
        return {
            "files.getUploadURLExternal": self._files_get_upload_url_external,
            "files.completeUploadExternal": self._files_complete_upload_external,
            "files.info": self._files_info,
        }

    def shared_files(self, channel: str | None = None) -> list[SharedFile]:
        """Files shared by completeUploadExternal (into `channel`, when given), oldest first."""
        return [
            f
            for f in self.files.values()
            if f.completed and (channel is None or channel in f.channels)
        ]

    def _files_get_upload_url_external(self, call: ApiCall) -> JsonDict:
        filename = call.args.get("filename")
        length = str(call.args.get("length") or "")
        if not isinstance(filename, str) or not filename:
            raise SlackApiFailure("invalid_arguments")
        if not length.isdigit() or int(length) <= 0:
            raise SlackApiFailure("invalid_arguments")
        file_id = f"F{next(self._id_counter):08d}"
        secret = secrets.token_urlsafe(24)
        self.files[file_id] = SharedFile(id=file_id, name=filename, length=int(length))
        self._upload_urls[secret] = file_id
        return {"upload_url": f"{self.base_url}/upload/v1/{secret}", "file_id": file_id}

    async def _handle_file_upload(self, request: web.Request) -> web.StreamResponse:
        """The upload URL: takes the raw bytes (or a multipart `file` part), answers `OK - <n>`."""
        call = ApiCall(
            method="file_upload",
            args={},
            headers=request.headers,
            at=time.monotonic(),
            http_method=request.method,
            path=request.path,
        )
        file_id = self._upload_urls.get(request.match_info["secret"])
        if request.content_type == "multipart/form-data":
            form = await request.post()
            part = form.get("file") or form.get("filename")
            content = part.file.read() if isinstance(part, web.FileField) else str(part).encode()
        else:
            content = await request.read()
        call.args = {"file_id": file_id, "size": len(content)}
        if file_id is None or self.files[file_id].content is not None:
            status, text = 404, "invalid upload url"
        else:
            self.files[file_id].content = content
            status, text = 200, f"OK - {len(content)}"
        call.status, call.response = status, text
        self.calls.append(call)
        await self._after_call(call)
        return web.Response(text=text, status=status, content_type="text/plain")

    def _files_complete_upload_external(self, call: ApiCall) -> JsonDict:
        raw = call.args.get("files")
        try:
            wanted = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            raise SlackApiFailure("invalid_arguments") from None
        if not isinstance(wanted, list) or not wanted:
            raise SlackApiFailure("invalid_arguments")
        channel_ids: list[str] = []
        named = [call.args.get("channel_id"), *str(call.args.get("channels") or "").split(",")]
        for value in named:
            if isinstance(value, str) and value.strip():
                channel_ids.append(self._resolve_channel(value.strip()))
        for channel_id in channel_ids:
            channel = self.channels[channel_id]
            if channel["is_archived"]:
                raise SlackApiFailure("is_archived")
            if self.bot_user_id not in channel["members"]:
                raise SlackApiFailure("not_in_channel")
        shared: list[SharedFile] = []
        for item in wanted:
            file = self.files.get(str((item or {}).get("id")))
            if file is None or file.content is None or file.completed:
                raise SlackApiFailure("file_not_found")
            shared.append(file)
        comment = str(call.args.get("initial_comment") or "")
        thread_ts = call.args.get("thread_ts") or None
        for file, item in zip(shared, wanted, strict=True):
            file.title = str(item.get("title") or file.name)
            file.channels = channel_ids
            file.initial_comment = comment
            file.thread_ts = thread_ts
            file.user = self.bot_user_id
            file.completed = True
        if channel_ids:
            # Slack posts one message that carries the files (and the comment) in each channel.
            for channel_id in channel_ids:
                message = Message(
                    channel=channel_id,
                    ts=self._next_ts(),
                    thread_ts=thread_ts,
                    text=comment,
                    blocks=[],
                    user=self.bot_user_id,
                )
                self.messages.append(message)
                self._emit(message)
                for file in shared:
                    file.message_ts = file.message_ts or message.ts
        return {"files": [self._file_json(f) for f in shared]}

    def _files_info(self, call: ApiCall) -> JsonDict:
        file = self.files.get(str(call.args.get("file") or ""))
        if file is None or not file.completed:
            raise SlackApiFailure("file_not_found")
        return {"file": self._file_json(file), "content": file.text}

    def _file_json(self, file: SharedFile) -> JsonDict:
        name = file.name
        extension = name.rsplit(".", 1)[-1].lower() if "." in name else "text"
        base = f"https://files.slack.com/files-pri/{self.team_id}-{file.id}/{name}"
        return {
            "id": file.id,
            "created": int(time.time()),
            "timestamp": int(time.time()),
            "name": name,
            "title": file.title,
            "mimetype": "text/markdown" if extension in ("md", "markdown") else "text/plain",
            "filetype": "markdown" if extension in ("md", "markdown") else extension,
            "pretty_type": "Markdown (raw)" if extension in ("md", "markdown") else "Plain Text",
            "user": file.user,
            "size": len(file.content or b""),
            "mode": "snippet",
            "is_external": False,
            "is_public": True,
            "url_private": base,
            "url_private_download": base.replace("/files-pri/", "/files-pri/download/"),
            "permalink": f"https://{self.team_domain}.slack.com/files/{file.user}/{file.id}/{name}",
            "channels": list(file.channels),
            "groups": [],
            "ims": [],
            "initial_comment": {"comment": file.initial_comment} if file.initial_comment else {},
            "shares": {
                "public": {
                    channel: [{"ts": file.message_ts, "channel_name": self.channel_name(channel)}]
                    for channel in file.channels
                }
            },
        }

    # end of files ---------------------------------------------------------------------------

    # ------------------------------------------------------------------ incidents
    # A person's message (the stand-in otherwise holds only the bot's), so pins and 📌 reactions
    # on what people wrote can be tried.

    def post_as_user(
        self, channel: str, text: str, *, user: str, thread_ts: str | None = None
    ) -> Message:
        """Add a message written by `user` in `channel`, as if they had posted it."""
        message = Message(
            channel=self._resolve_channel(channel),
            ts=self._next_ts(),
            thread_ts=thread_ts,
            text=text,
            blocks=[],
            user=user,
        )
        self.messages.append(message)
        return message


# incidents: conversations.history's `inclusive` bounds.
def _within(ts: str, oldest: float, latest: float, inclusive: bool) -> bool:
    value = float(ts)
    return oldest <= value <= latest if inclusive else oldest < value < latest


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("1", "true", "yes")
    return bool(value)


def _text_length(text_object: Any) -> int:
    if isinstance(text_object, dict):
        return len(str(text_object.get("text", "")))
    return 0


def _block_errors(blocks: list[Any], max_blocks: int) -> list[str]:
    """The Block Kit limits Slack enforces most often, in Slack's own error wording."""
    errors: list[str] = []
    if len(blocks) > max_blocks:
        errors.append(f"no more than {max_blocks} items allowed [json-pointer:/blocks]")
    block_ids: set[str] = set()
    for index, block in enumerate(blocks):
        pointer = f"/blocks/{index}"
        if not isinstance(block, dict) or "type" not in block:
            errors.append(f"missing required field: type [json-pointer:{pointer}]")
            continue
        block_id = block.get("block_id")
        if isinstance(block_id, str):
            if len(block_id) > 255:
                errors.append(f"must be less than 256 characters [json-pointer:{pointer}/block_id]")
            if block_id in block_ids:
                errors.append(f"duplicate block_id [json-pointer:{pointer}/block_id]")
            block_ids.add(block_id)
        kind = block["type"]
        if kind == "section":
            if "text" not in block and "fields" not in block:
                errors.append(f"must provide text or fields [json-pointer:{pointer}]")
            if _text_length(block.get("text")) > _MAX_SECTION_TEXT_CHARS:
                errors.append(
                    f"must be less than 3001 characters [json-pointer:{pointer}/text/text]"
                )
            fields = block.get("fields") or []
            if len(fields) > 10:
                errors.append(f"no more than 10 items allowed [json-pointer:{pointer}/fields]")
            for field_index, field_object in enumerate(fields):
                if _text_length(field_object) > 2000:
                    errors.append(
                        "must be less than 2001 characters "
                        f"[json-pointer:{pointer}/fields/{field_index}/text]"
                    )
        elif kind == "header":
            if _text_length(block.get("text")) > 150:
                errors.append(
                    f"must be less than 151 characters [json-pointer:{pointer}/text/text]"
                )
        elif kind == "context":
            if len(block.get("elements") or []) > 10:
                errors.append(f"no more than 10 items allowed [json-pointer:{pointer}/elements]")
        elif kind == "actions" and len(block.get("elements") or []) > 25:
            errors.append(f"no more than 25 items allowed [json-pointer:{pointer}/elements]")
    return errors
