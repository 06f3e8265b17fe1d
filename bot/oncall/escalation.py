"""Deadlines: due pages are sent, failed ones retried, and missed deadlines escalate.

Escalation levels: 1 the primary is paged; 2 the primary missed the acknowledgment deadline and
the secondary is paged; 3 nobody engaged in time (or the secondary did not acknowledge either):
PagerDuty escalates once more and the service's owners are called in the thread.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select

from bot.catalog import Catalog
from bot.db.models import Page
from bot.oncall import texts
from bot.oncall.dispatch import Dispatch
from bot.oncall.sending import Sending
from bot.oncall.states import PAGE_MACHINE, UNSENT, PageEvent
from bot.oncall.store import PageStore
from bot.oncall.thread import PageThread

LAST_LEVEL = 3


class Escalation:
    def __init__(
        self,
        *,
        catalog: Catalog,
        store: PageStore,
        dispatch: Dispatch,
        sending: Sending,
        thread: PageThread,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.dispatch = dispatch
        self.sending = sending
        self.thread = thread

    async def check_deadlines(self, now: datetime) -> None:
        """Send due pages, retry failed ones, escalate missed deadlines."""
        for page_id in await self.store.ids(
            select(Page.id).where(
                Page.state.in_(UNSENT),
                Page.send_at <= now,
                or_(Page.next_attempt_at.is_(None), Page.next_attempt_at <= now),
            )
        ):
            await self.sending.send(page_id, now)
        for page_id in await self.store.ids(
            select(Page.id).where(
                Page.state.in_(PAGE_MACHINE.sources(PageEvent.ESCALATE_ACK)),
                Page.escalation_level < LAST_LEVEL,
                Page.ack_deadline <= now,
            )
        ):
            await self._escalate(page_id, now, engage=False)
        for page_id in await self.store.ids(
            select(Page.id).where(
                Page.state.in_(PAGE_MACHINE.sources(PageEvent.ESCALATE_ENGAGE)),
                Page.engaged_at.is_(None),
                Page.escalation_level < LAST_LEVEL,
                Page.engage_deadline <= now,
            )
        ):
            await self._escalate(page_id, now, engage=True)

    async def _escalate(self, page_id: int, now: datetime, *, engage: bool) -> None:
        async with self.store.db.session() as session:
            page = await self.store.by_id(session, page_id)
        level = page.escalation_level
        if level >= LAST_LEVEL:
            return  # another replica got here first; level 3 is the last
        # The guard repeats the deadline that selected the page: a page another replica moved
        # on meanwhile (a new level, a new deadline) is no longer due and is left alone.
        if engage:
            to_level = LAST_LEVEL
            guard = and_(
                Page.engaged_at.is_(None),
                Page.state.in_(PAGE_MACHINE.sources(PageEvent.ESCALATE_ENGAGE)),
                Page.engage_deadline <= now,
            )
            values: dict[str, Any] = {"escalation_level": LAST_LEVEL}
        else:
            to_level = LAST_LEVEL if level >= 2 else 2
            guard = and_(
                Page.state.in_(PAGE_MACHINE.sources(PageEvent.ESCALATE_ACK)),
                Page.ack_deadline <= now,
            )
            values = {"escalation_level": to_level}
            if to_level == 2:
                values["ack_deadline"] = now + self.catalog.oncall.ack_within
        if not await self.store.escalate(page_id, level, guard, values):
            return  # another replica escalated it, or it was acknowledged/engaged meanwhile
        page = await self.store.get(page.dedup_key)
        oncall, _problem = await self.dispatch.who(page.service)
        done = await self.dispatch.page_level(page, oncall, to_level)
        if to_level == 2:
            words = texts.missed_ack(page, oncall, done, self.catalog)
        else:
            words = texts.missed_engage(page, oncall, done, engage=engage, catalog=self.catalog)
        await self.thread.say(page, words)
        await self.thread.publish(
            page, "page-escalated", f"Page escalated to level {to_level}", None, now
        )
