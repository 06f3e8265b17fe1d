"""What travels between the stand-in and its clients: calls, answers, messages, files, failures."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

JsonDict = dict[str, Any]
MessageSource = Literal["api", "response_url"]


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


def truthy(value: Any) -> bool:
    """A boolean argument as Slack reads it from a form ("true", "1") or JSON (true)."""
    if isinstance(value, str):
        return value.lower() in ("1", "true", "yes")
    return bool(value)
