"""The Slack side of the postmortem's protocols: file uploads and incident-channel membership."""

from __future__ import annotations

import logging

import aiohttp
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient

from bot.incidents.postmortem_ports import UploadFailed
from bot.messages import RichText
from bot.slack.render import mrkdwn

log = logging.getLogger(__name__)


class SlackFileUploader:
    """Shares a text file in a channel with `files_upload_v2`.

    slack_sdk does the three steps: files.getUploadURLExternal (an upload URL and a file id),
    a POST of the bytes to that URL, then files.completeUploadExternal with `channel_id`, which
    shares the file in the channel with the comment. Needs the `files:write` scope.
    """

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def upload(
        self, channel: str, *, filename: str, title: str, content: str, comment: RichText
    ) -> str:
        try:
            response = await self.client.files_upload_v2(
                channel=channel,
                filename=filename,
                title=title,
                content=content,
                initial_comment=mrkdwn(comment),
            )
        except SlackApiError as exc:
            raise UploadFailed(f"Slack refused the upload: {exc.response.get('error')}") from exc
        except (SlackRequestError, aiohttp.ClientError, TimeoutError) as exc:
            raise UploadFailed(f"the upload to Slack failed: {type(exc).__name__}") from exc
        file = response.get("file") or (response.get("files") or [{}])[0]
        return str(file.get("id") or "")


class SlackChannelMembers:
    """Who is in a channel (conversations.members, every page); empty when Slack says no."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def members(self, channel: str) -> frozenset[str]:
        found: set[str] = set()
        cursor: str | None = None
        try:
            while True:
                response = await self.client.conversations_members(
                    channel=channel, limit=200, cursor=cursor
                )
                found.update(response.get("members") or [])
                cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    return frozenset(found)
        except SlackApiError as exc:
            # Not knowing the members grants nothing; the log says why.
            log.warning("cannot list the members of %s: %s", channel, exc.response.get("error"))
            return frozenset()
