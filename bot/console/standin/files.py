"""files.*: Slack's three-step upload, as slack_sdk's files_upload_v2 does it.

files.getUploadURLExternal hands out an upload URL (on the stand-in's server) and a file id; the
client POSTs the bytes there; files.completeUploadExternal shares the uploaded files into a channel.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable

from bot.console.standin.wire import (
    ApiCall,
    JsonDict,
    Message,
    MethodHandler,
    SharedFile,
    SlackApiFailure,
)
from bot.console.standin.workspace import Workspace


class FileMethods:
    """The files.* family and the upload URLs it hands out."""

    def __init__(self, workspace: Workspace, url_for: Callable[[str], str]) -> None:
        self.workspace = workspace
        self._url_for = url_for  # a path on the stand-in's server → its full URL
        self.files: dict[str, SharedFile] = {}  # by id, in upload order
        self._upload_urls: dict[str, str] = {}  # upload URL secret -> file id

    def methods(self) -> dict[str, MethodHandler]:
        return {
            "files.getUploadURLExternal": self.get_upload_url_external,
            "files.completeUploadExternal": self.complete_upload_external,
            "files.info": self.info,
        }

    def shared_files(self, channel: str | None = None) -> list[SharedFile]:
        """Files shared by completeUploadExternal (into `channel`, when given), oldest first."""
        return [
            f
            for f in self.files.values()
            if f.completed and (channel is None or channel in f.channels)
        ]

    def get_upload_url_external(self, call: ApiCall) -> JsonDict:
        filename = call.args.get("filename")
        length = str(call.args.get("length") or "")
        if not isinstance(filename, str) or not filename:
            raise SlackApiFailure("invalid_arguments")
        if not length.isdigit() or int(length) <= 0:
            raise SlackApiFailure("invalid_arguments")
        file_id = f"F{self.workspace.next_id():08d}"
        secret = secrets.token_urlsafe(24)
        self.files[file_id] = SharedFile(id=file_id, name=filename, length=int(length))
        self._upload_urls[secret] = file_id
        return {"upload_url": self._url_for(f"/upload/v1/{secret}"), "file_id": file_id}

    def receive_upload(self, secret: str, content: bytes) -> tuple[int, str, str | None]:
        """Take the bytes POSTed to an upload URL: (HTTP status, answer text, file id)."""
        file_id = self._upload_urls.get(secret)
        if file_id is None or self.files[file_id].content is not None:
            return 404, "invalid upload url", file_id
        self.files[file_id].content = content
        return 200, f"OK - {len(content)}", file_id

    def _channels_to_share_in(self, call: ApiCall) -> list[str]:
        ws = self.workspace
        channel_ids: list[str] = []
        named = [call.args.get("channel_id"), *str(call.args.get("channels") or "").split(",")]
        for value in named:
            if isinstance(value, str) and value.strip():
                channel_ids.append(ws.resolve_channel(value.strip()))
        for channel_id in channel_ids:
            channel = ws.channels[channel_id]
            if channel["is_archived"]:
                raise SlackApiFailure("is_archived")
            if ws.bot_user_id not in channel["members"]:
                raise SlackApiFailure("not_in_channel")
        return channel_ids

    @staticmethod
    def _wanted(call: ApiCall) -> list[JsonDict]:
        """The `files` argument: what the call says about each file ({"id", "title"})."""
        raw = call.args.get("files")
        try:
            wanted = json.loads(raw) if isinstance(raw, str) else raw
        except ValueError:
            raise SlackApiFailure("invalid_arguments") from None
        if not isinstance(wanted, list) or not wanted:
            raise SlackApiFailure("invalid_arguments")
        return wanted

    def _uploaded_file(self, item: JsonDict | None) -> SharedFile:
        """The uploaded, not yet shared file the item names."""
        file = self.files.get(str((item or {}).get("id")))
        if file is None or file.content is None or file.completed:
            raise SlackApiFailure("file_not_found")
        return file

    def complete_upload_external(self, call: ApiCall) -> JsonDict:
        ws = self.workspace
        wanted = self._wanted(call)
        channel_ids = self._channels_to_share_in(call)
        uploaded = [(self._uploaded_file(item), item) for item in wanted]
        comment = str(call.args.get("initial_comment") or "")
        thread_ts = call.args.get("thread_ts") or None
        for file, item in uploaded:
            file.title = str(item.get("title") or file.name)
            file.channels = channel_ids
            file.initial_comment = comment
            file.thread_ts = thread_ts
            file.user = ws.bot_user_id
            file.completed = True
        # Slack posts one message that carries the files (and the comment) in each channel.
        for channel_id in channel_ids:
            message = ws.post(
                Message(
                    channel=channel_id,
                    ts=ws.next_ts(),
                    thread_ts=thread_ts,
                    text=comment,
                    blocks=[],
                    user=ws.bot_user_id,
                )
            )
            for file, _ in uploaded:
                file.message_ts = file.message_ts or message.ts
        return {"files": [self._file_json(file) for file, _ in uploaded]}

    def info(self, call: ApiCall) -> JsonDict:
        file = self.files.get(str(call.args.get("file") or ""))
        if file is None or not file.completed:
            raise SlackApiFailure("file_not_found")
        return {"file": self._file_json(file), "content": file.text}

    def _file_json(self, file: SharedFile) -> JsonDict:
        ws = self.workspace
        name = file.name
        extension = name.rsplit(".", 1)[-1].lower() if "." in name else "text"
        markdown = extension in ("md", "markdown")
        base = f"https://files.slack.com/files-pri/{ws.team_id}-{file.id}/{name}"
        return {
            "id": file.id,
            "created": int(time.time()),
            "timestamp": int(time.time()),
            "name": name,
            "title": file.title,
            "mimetype": "text/markdown" if markdown else "text/plain",
            "filetype": "markdown" if markdown else extension,
            "pretty_type": "Markdown (raw)" if markdown else "Plain Text",
            "user": file.user,
            "size": len(file.content or b""),
            "mode": "snippet",
            "is_external": False,
            "is_public": True,
            "url_private": base,
            "url_private_download": base.replace("/files-pri/", "/files-pri/download/"),
            "permalink": f"https://{ws.team_domain}.slack.com/files/{file.user}/{file.id}/{name}",
            "channels": list(file.channels),
            "groups": [],
            "ims": [],
            "initial_comment": {"comment": file.initial_comment} if file.initial_comment else {},
            "shares": {
                "public": {
                    channel: [{"ts": file.message_ts, "channel_name": ws.channel_name(channel)}]
                    for channel in file.channels
                }
            },
        }
