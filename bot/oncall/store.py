"""The `pages` table as the paging code uses it: guarded moves, bookkeeping, look-ups.

Every move is a conditional UPDATE whose row count says who won, so two replicas running the
scheduler job, a double click or a Slack retry never page, acknowledge or escalate twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import Page, utc_now
from bot.db.session import Database
from bot.db.statements import insert_or_ignore
from bot.oncall.states import OPEN, PAGE_MACHINE, PageEvent

# Bookkeeping opsbot keeps next to the caller's details (routing keys used, who was paged).
BOOKKEEPING = "_paging"


@dataclass
class Timing:
    """The clock and the retry pacing, shared by the paging parts (tests move the clock)."""

    clock: Callable[[], datetime] = utc_now
    # A failed send is retried after retry_base, doubling up to retry_max.
    retry_base: timedelta = field(default=timedelta(seconds=30))
    retry_max: timedelta = field(default=timedelta(minutes=10))
    # While one replica sends a page, the others leave it alone for this long.
    send_lease: timedelta = field(default=timedelta(minutes=2))


def rows(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


def used_keys(page: Page) -> list[str]:
    """The routing keys the page went to (acknowledge and resolve go to each)."""
    bookkeeping = (page.details or {}).get(BOOKKEEPING) or {}
    return list(bookkeeping.get("routing_keys") or [])


def caller_details(page: Page) -> dict[str, Any]:
    """The page's details without opsbot's bookkeeping (what PagerDuty is shown)."""
    return {k: v for k, v in (page.details or {}).items() if k != BOOKKEEPING}


class PageStore:
    def __init__(self, db: Database, timing: Timing) -> None:
        self.db = db
        self.timing = timing

    async def record(self, values: dict[str, Any]) -> bool:
        """Insert a page unless its dedup_key exists; whether it was inserted."""
        async with self.db.transaction() as session:
            return await insert_or_ignore(session, Page, values)

    async def move(
        self, session: AsyncSession, dedup_key: str, event: PageEvent, *also: Any, **values: Any
    ) -> bool:
        """The page moves on `event` (guarded by its sources and `also`); whether it did."""
        guard = Page.state.in_(PAGE_MACHINE.sources(event))
        state = PAGE_MACHINE.target(event)
        if state is not None:
            values["state"] = state
        return await self.amend(session, dedup_key, guard, *also, **values)

    async def amend(
        self, session: AsyncSession, dedup_key: str, *guards: Any, **values: Any
    ) -> bool:
        """Set `values` when every guard holds; whether the row changed."""
        result = await session.execute(
            update(Page)
            .where(Page.dedup_key == dedup_key, *guards)
            .values(updated_at=self.timing.clock(), **values)
            .execution_options(synchronize_session=False)
        )
        return rows(result) == 1

    async def claim(self, page_id: int, now: datetime) -> tuple[bool, Page]:
        """Take an unsent, due page for sending (a lease other replicas respect)."""
        async with self.db.transaction() as session:
            claimed = rows(
                await session.execute(
                    update(Page)
                    .where(
                        Page.id == page_id,
                        Page.state.in_(PAGE_MACHINE.sources(PageEvent.TRIGGER)),
                        (Page.next_attempt_at.is_(None)) | (Page.next_attempt_at <= now),
                    )
                    .values(
                        attempts=Page.attempts + 1, next_attempt_at=now + self.timing.send_lease
                    )
                    .execution_options(synchronize_session=False)
                )
            )
            page = await self.by_id(session, page_id)
        return claimed == 1, page

    async def escalate(self, page_id: int, level: int, guard: Any, values: dict[str, Any]) -> bool:
        """Move a page from escalation `level` on, when `guard` still holds; whether it won."""
        async with self.db.transaction() as session:
            won = rows(
                await session.execute(
                    update(Page)
                    .where(Page.id == page_id, Page.escalation_level == level, guard)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
            )
        return won == 1

    async def remember_key(self, page: Page, routing_key: str) -> None:
        details = dict(page.details or {})
        bookkeeping = dict(details.get(BOOKKEEPING) or {})
        bookkeeping["routing_keys"] = [*used_keys(page), routing_key]
        details[BOOKKEEPING] = bookkeeping
        async with self.db.transaction() as session:
            await self.amend(session, page.dedup_key, Page.id == page.id, details=details)

    @staticmethod
    def _unengaged(query: Select[tuple[Any]], channel: str, thread_ts: str) -> Select[tuple[Any]]:
        return query.where(
            Page.channel == channel,
            Page.thread_ts == thread_ts,
            Page.state.in_(OPEN),
            Page.engaged_at.is_(None),
        )

    async def unengaged_in_thread(self, channel: str, thread_ts: str) -> list[str]:
        """Dedup keys of the open pages in a thread nobody has engaged yet."""
        query = self._unengaged(select(Page.dedup_key), channel, thread_ts).order_by(Page.id)
        async with self.db.session() as session:
            return list(await session.scalars(query))

    async def has_unengaged(self, channel: str, thread_ts: str) -> bool:
        """Whether a thread holds an open page nobody has engaged yet."""
        query = self._unengaged(select(Page.id), channel, thread_ts).limit(1)
        async with self.db.session() as session:
            return await session.scalar(query) is not None

    async def ids(self, query: Select[tuple[int]]) -> list[int]:
        async with self.db.session() as session:
            return list(await session.scalars(query.order_by(Page.id)))

    async def find(self, dedup_key: str) -> Page | None:
        async with self.db.session() as session:
            return await session.scalar(select(Page).where(Page.dedup_key == dedup_key))

    async def get(self, dedup_key: str) -> Page:
        page = await self.find(dedup_key)
        assert page is not None, dedup_key
        return page

    @staticmethod
    async def by_id(session: AsyncSession, page_id: int) -> Page:
        page = await session.get(Page, page_id)
        assert page is not None, page_id
        return page
