"""Sending a page: claim it (one replica at a time), trigger it at PagerDuty, and either mark it
triggered with its deadlines or failed with its next attempt (retried with backoff)."""

from __future__ import annotations

import logging
from datetime import datetime

from bot.catalog import Catalog
from bot.db.models import Page
from bot.oncall import texts
from bot.oncall.dispatch import Dispatch
from bot.oncall.pagerduty import PagerDutyError
from bot.oncall.schedule import OnCall
from bot.oncall.states import PageEvent
from bot.oncall.store import PageStore, Timing
from bot.oncall.thread import PageThread

log = logging.getLogger(__name__)


class Sending:
    def __init__(
        self,
        *,
        catalog: Catalog,
        timing: Timing,
        store: PageStore,
        dispatch: Dispatch,
        thread: PageThread,
    ) -> None:
        self.catalog = catalog
        self.timing = timing
        self.store = store
        self.dispatch = dispatch
        self.thread = thread

    async def send(self, page_id: int, now: datetime) -> Page:
        claimed, page = await self.store.claim(page_id, now)
        if not claimed:
            return page  # another replica is sending it, or it was acknowledged meanwhile
        oncall, problem = await self.dispatch.who(page.service)
        routing_key, missing = self.dispatch.routing_key(page.service, oncall, level=1)
        try:
            if routing_key is None:
                raise PagerDutyError(missing)
            await self.dispatch.trigger(page, routing_key)
        except PagerDutyError as exc:
            return await self._failed(page, now, str(exc), oncall)
        sent = self.timing.clock()
        if sent < now:  # check_deadlines(now=...) may run "in the future"
            sent = now
        policy = self.catalog.oncall
        bookkeeping = self.dispatch.bookkeeping(page, oncall, routing_keys=[routing_key])
        async with self.store.db.transaction() as session:
            changed = await self.store.move(
                session,
                page.dedup_key,
                PageEvent.TRIGGER,
                sent_at=sent,
                ack_deadline=sent + policy.ack_within,
                engage_deadline=sent + policy.engage_within,
                next_attempt_at=None,
                last_error=None,
                details=bookkeeping,
            )
        page = await self.store.get(page.dedup_key)
        if not changed:
            # Acknowledged or cancelled while the event was on its way: take it back.
            await self.dispatch.to_keys([routing_key], page.dedup_key, "resolve")
            return page
        await self.thread.say(page, texts.paged(page, oncall, problem, self.catalog))
        await self.thread.publish(page, "page", f"Paged the on-call: {page.summary}", None, sent)
        return page

    async def _failed(self, page: Page, now: datetime, reason: str, oncall: OnCall | None) -> Page:
        timing = self.timing
        delay = min(timing.retry_base * 2 ** max(page.attempts - 1, 0), timing.retry_max)
        retry_at = now + delay
        async with self.store.db.transaction() as session:
            await self.store.move(
                session,
                page.dedup_key,
                PageEvent.SEND_FAILED,
                last_error=reason[:1000],
                next_attempt_at=retry_at,
            )
        log.warning("paging %s failed (attempt %d): %s", page.dedup_key, page.attempts, reason)
        page = await self.store.get(page.dedup_key)
        if page.attempts == 1:
            await self.thread.say(page, texts.send_failed(reason, retry_at, oncall))
        return page
