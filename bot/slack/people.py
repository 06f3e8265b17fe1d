"""Slack users by e-mail (users.lookupByEmail), so people from PagerDuty can be mentioned."""

from __future__ import annotations

import logging
import time

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)


class SlackPeople:
    """Implements `bot.oncall.schedule.PeopleDirectory`; answers are cached for a few minutes."""

    ttl_seconds = 300.0

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self._by_email: dict[str, tuple[float, str | None]] = {}

    async def user_id_for_email(self, email: str) -> str | None:
        """The Slack user id with this e-mail, or None (unknown, or the lookup failed)."""
        key = email.strip().lower()
        cached = self._by_email.get(key)
        if cached and time.monotonic() - cached[0] < self.ttl_seconds:
            return cached[1]
        try:
            response = await self.client.users_lookupByEmail(email=key)
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error != "users_not_found":
                # Missing scope or Slack trouble: show the name instead, and say why in the log.
                log.warning("users.lookupByEmail failed: %s", error)
                return None
            user_id = None
        else:
            user = response.get("user") or {}
            user_id = str(user["id"]) if user.get("id") and not user.get("deleted") else None
        self._by_email[key] = (time.monotonic(), user_id)
        return user_id
