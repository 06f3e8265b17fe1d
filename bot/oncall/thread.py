"""Where a page is told: its Slack thread (started in the alerts channel when it has none) and
the event bus (incident timelines, alert messages)."""

from __future__ import annotations

import logging
from datetime import datetime

from bot.catalog import Catalog
from bot.db.models import Page
from bot.events import EventBus, ServiceEvent
from bot.messages import Message, MessageRef, Notifier, Text
from bot.oncall.store import PageStore

log = logging.getLogger(__name__)


class PageThread:
    def __init__(
        self, *, catalog: Catalog, notifier: Notifier, events: EventBus, store: PageStore
    ) -> None:
        self.catalog = catalog
        self.notifier = notifier
        self.events = events
        self.store = store

    async def say(self, page: Page, words: Text) -> None:
        """Post into the page's thread; with no thread yet, start one in the alerts channel."""
        try:
            if page.channel and page.thread_ts:
                ref = MessageRef(page.channel, page.thread_ts, page.thread_ts)
                await self.notifier.post(page.channel, Message(words), thread=ref)
                return
            entry = self.catalog.service(page.service) if page.service else None
            channel = (entry.channel if entry else None) or self.catalog.slack.channels.alerts
            posted = await self.notifier.post(channel, Message(words))
            async with self.store.db.transaction() as session:
                await self.store.amend(
                    session,
                    page.dedup_key,
                    Page.channel.is_(None),
                    channel=posted.channel,
                    thread_ts=posted.ts,
                )
            page.channel, page.thread_ts = posted.channel, posted.ts
        except Exception:
            # Slack being down must not stop paging; PagerDuty still has the page.
            log.exception("could not post about page %s", page.dedup_key)

    async def publish(
        self, page: Page, kind: str, words: str, actor: str | None, at: datetime
    ) -> None:
        await self.events.publish(
            ServiceEvent(
                kind=kind,
                text=f"{words}: {page.summary}" if kind != "page" else words,
                at=at,
                service=page.service,
                actor=actor,
                key=f"{kind}:{page.dedup_key}:{page.escalation_level}",
                data={
                    "subject_kind": page.subject_kind,
                    "subject_id": page.subject_id,
                    "dedup_key": page.dedup_key,
                    "level": page.escalation_level,
                },
            )
        )
