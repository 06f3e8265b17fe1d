"""Pages to the on-call, held to the runbook's SLA (acknowledge, then engage) with escalation.

A page is a `pages` row first and a PagerDuty event second, so nothing is lost when PagerDuty is
down: a failed send stays `failed` with `next_attempt_at` and `check_deadlines` retries it. Every
transition is a conditional UPDATE whose row count says who won (`bot.oncall.store`, with the
states and their table in `bot.oncall.states`), so two replicas running the scheduler job, a
double click or a Slack retry never page, acknowledge or escalate twice.

`Paging` is the front the alerts, incidents, handlers and scheduler call; the rooms behind it:
`store` (the table), `dispatch` (PagerDuty), `sending`, `escalation` (deadlines), `thread` (where
a page is told) and `texts` (what is said).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from bot.catalog import Catalog
from bot.db.models import Page, utc_now
from bot.db.session import Database
from bot.events import EventBus
from bot.messages import MessageRef, Notifier
from bot.oncall import texts
from bot.oncall.dispatch import Dispatch
from bot.oncall.escalation import Escalation
from bot.oncall.pagerduty import PagerDutyApi
from bot.oncall.schedule import OncallDirectory
from bot.oncall.sending import Sending
from bot.oncall.states import OPEN, PAGE_MACHINE, PageEvent, PageState
from bot.oncall.store import PageStore, Timing
from bot.oncall.thread import PageThread
from bot.settings import Settings


class Paging:
    """Pages PagerDuty (or a static rotation's routing keys) and escalates missed deadlines."""

    def __init__(
        self,
        *,
        db: Database,
        catalog: Catalog,
        settings: Settings,
        notifier: Notifier,
        events: EventBus,
        oncall: OncallDirectory,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.settings = settings
        self.notifier = notifier
        self.events = events
        self.oncall = oncall
        self.timing = Timing(clock=clock)
        self.store = PageStore(db, self.timing)
        self.dispatch = Dispatch(catalog=catalog, oncall=oncall, store=self.store)
        self.thread = PageThread(
            catalog=catalog, notifier=notifier, events=events, store=self.store
        )
        self.sending = Sending(
            catalog=catalog,
            timing=self.timing,
            store=self.store,
            dispatch=self.dispatch,
            thread=self.thread,
        )
        self.escalation = Escalation(
            catalog=catalog,
            store=self.store,
            dispatch=self.dispatch,
            sending=self.sending,
            thread=self.thread,
        )

    # The clock and the retry pacing live in `timing`, shared by every part (tests change them).
    @property
    def clock(self) -> Callable[[], datetime]:
        return self.timing.clock

    @clock.setter
    def clock(self, clock: Callable[[], datetime]) -> None:
        self.timing.clock = clock

    @property
    def retry_base(self) -> timedelta:
        return self.timing.retry_base

    @retry_base.setter
    def retry_base(self, value: timedelta) -> None:
        self.timing.retry_base = value

    @property
    def pagerduty(self) -> PagerDutyApi:
        return self.oncall.pagerduty

    async def page(
        self,
        *,
        dedup_key: str,
        summary: str,
        severity: str,
        service: str | None,
        subject_kind: str,
        subject_id: int | None,
        thread: MessageRef | None,
        send_at: datetime | None = None,
        details: dict[str, Any] | None = None,
    ) -> Page:
        """Record a page (idempotent on dedup_key) and trigger it unless send_at is later."""
        now = self.clock()
        inserted = await self.store.record(
            {
                "dedup_key": dedup_key,
                "service": service,
                "subject_kind": subject_kind,
                "subject_id": subject_id,
                "summary": summary,
                "severity": severity,
                "state": PageState.SCHEDULED,
                "send_at": send_at or now,
                "channel": thread.channel if thread else None,
                "thread_ts": (thread.thread_ts or thread.ts) if thread else None,
                "details": dict(details) if details else None,
                "escalation_level": 1,
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
        )
        page = await self.store.get(dedup_key)
        if not inserted:
            return page
        if send_at is not None and send_at > now:
            oncall, _problem = await self.dispatch.who(service)
            await self.thread.say(page, texts.scheduled(page, oncall, send_at, self.catalog))
            return page
        return await self.sending.send(page.id, now)

    async def acknowledge(self, dedup_key: str, by: str) -> bool:
        """Acknowledge a page (a scheduled page not yet sent is cancelled instead).

        True when this call changed the page; False when it was already acknowledged, closed
        or unknown.
        """
        now = self.clock()
        async with self.db.transaction() as session:
            who = {"acknowledged_at": now, "acknowledged_by": by}
            acked = await self.store.move(session, dedup_key, PageEvent.ACKNOWLEDGE, **who)
            withdrawn = not acked and await self.store.move(
                session, dedup_key, PageEvent.WITHDRAW, next_attempt_at=None, **who
            )
        if not (acked or withdrawn):
            return False
        page = await self.store.get(dedup_key)
        if withdrawn:
            await self.thread.say(page, texts.withdrawn_by_ack(by))
        else:
            failures = await self.dispatch.to_each_key(page, "acknowledge")
            engage_within = self.catalog.oncall.engage_within
            refused = texts.not_taken("acknowledge", failures)
            await self.thread.say(page, texts.acknowledged(page, by, now, engage_within, refused))
        await self.thread.publish(
            page, "page-acknowledged", f"Page acknowledged by <@{by}>", by, now
        )
        return True

    async def engaged(self, dedup_key: str, by: str) -> None:
        """Someone is working on it: stops the engage deadline (and acknowledges if needed)."""
        page = await self.store.find(dedup_key)
        if page is None or page.engaged_at is not None or page.state not in OPEN:
            return
        if page.state == PageState.TRIGGERED:
            await self.acknowledge(dedup_key, by)
        now = self.clock()
        async with self.db.transaction() as session:
            changed = await self.store.move(
                session,
                dedup_key,
                PageEvent.ENGAGE,
                Page.engaged_at.is_(None),
                engaged_at=now,
                engaged_by=by,
            )
        if changed:
            page = await self.store.get(dedup_key)
            await self.thread.say(page, texts.engaged(by))

    async def resolve(self, dedup_key: str) -> None:
        """Resolve the page and its PagerDuty incident (an unsent page is cancelled)."""
        await self._close(dedup_key, PageEvent.RESOLVE)

    async def cancel(self, dedup_key: str) -> None:
        """Cancel a page (scheduled: never sent; sent: resolved at PagerDuty)."""
        await self._close(dedup_key, PageEvent.CANCEL)

    async def has_open_page(self, channel: str, thread_ts: str) -> bool:
        """Whether a thread holds a page still waiting for someone to engage."""
        return await self.store.has_unengaged(channel, thread_ts)

    async def engaged_in_thread(self, channel: str, thread_ts: str, by: str) -> list[str]:
        """A person wrote in a thread: every open, unengaged page there is engaged by them."""
        keys = await self.store.unengaged_in_thread(channel, thread_ts)
        for key in keys:
            await self.engaged(key, by)
        return keys

    async def send_now(self, dedup_key: str) -> bool:
        """A page waiting for its send time (or cancelled before it went out) goes out now.

        For a P1 scheduled for the next business morning whose incident became a P0. True when
        the page was waiting; its sending is guarded like every send (no double page).
        """
        now = self.clock()
        async with self.db.transaction() as session:
            moved = await self.store.move(
                session,
                dedup_key,
                PageEvent.SEND_NOW,
                # A cancelled page goes out only if it never went out.
                (Page.state == PageState.SCHEDULED) | Page.sent_at.is_(None),
                send_at=now,
                acknowledged_at=None,
                acknowledged_by=None,
                next_attempt_at=None,
            )
        if moved:
            page = await self.store.get(dedup_key)
            await self.sending.send(page.id, now)
        return moved

    async def check_deadlines(self, now: datetime | None = None) -> None:
        """Scheduler job: send due pages, retry failed ones, escalate missed deadlines."""
        await self.escalation.check_deadlines(now or self.clock())

    def close(self) -> None:
        """Close PagerDuty's HTTP connections (the directory shares them)."""
        self.oncall.close()

    async def _close(self, dedup_key: str, event: PageEvent) -> None:
        """Resolve or cancel: an open page at PagerDuty too; an unsent one is withdrawn."""
        now = self.clock()
        async with self.db.transaction() as session:
            closing = {"resolved_at": now, "next_attempt_at": None}
            was_open = await self.store.move(session, dedup_key, event, **closing)
            withdrawn = not was_open and await self.store.move(
                session, dedup_key, PageEvent.WITHDRAW, **closing
            )
        if not (was_open or withdrawn):
            return
        page = await self.store.get(dedup_key)
        final = PAGE_MACHINE.target(event) or PageState.RESOLVED
        if withdrawn:
            await self.thread.say(page, texts.closed_before_sent(final))
            return
        failures = await self.dispatch.to_each_key(page, "resolve")
        await self.thread.say(page, texts.closed(final, texts.not_taken("resolve", failures)))
