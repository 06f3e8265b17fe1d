"""Pages to the on-call, held to the runbook's SLA (acknowledge, then engage) with escalation.

A page is a `pages` row first and a PagerDuty event second, so nothing is lost when PagerDuty is
down: a failed send stays `failed` with `next_attempt_at` and `check_deadlines` retries it. Every
transition is a conditional UPDATE whose row count says who won, so two replicas running the
scheduler job, a double click or a Slack retry never page, acknowledge or escalate twice.

Escalation levels: 1 the primary is paged; 2 the primary missed the acknowledgment deadline and
the secondary is paged; 3 nobody engaged in time (or the secondary did not acknowledge either):
PagerDuty escalates once more and the service's owners are called in the thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Select, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.catalog import Catalog, format_duration
from bot.db.models import Page, utc_now
from bot.db.session import Database
from bot.db.statements import insert_or_ignore
from bot.events import EventBus, ServiceEvent
from bot.messages import Message, MessageRef, Notifier
from bot.oncall.pagerduty import PagerDutyApi, PagerDutyError
from bot.oncall.schedule import OnCall, OncallDirectory, OncallUnavailable
from bot.settings import Settings

log = logging.getLogger(__name__)

UNSENT = ("scheduled", "failed")
OPEN = ("triggered", "acknowledged")
# Bookkeeping opsbot keeps next to the caller's details (routing keys used, who was paged).
BOOKKEEPING = "_paging"


def _when(moment: datetime) -> str:
    return f"{moment:%H:%M:%S} UTC"


def _rows(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


class Paging:
    """Pages PagerDuty (or a static rotation's routing keys) and escalates missed deadlines."""

    # A failed send is retried after retry_base, doubling up to retry_max.
    retry_base = timedelta(seconds=30)
    retry_max = timedelta(minutes=10)
    # While one replica sends a page, the others leave it alone for this long.
    send_lease = timedelta(minutes=2)

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
        self.clock = clock

    @property
    def pagerduty(self) -> PagerDutyApi:
        return self.oncall.pagerduty

    # ------------------------------------------------------------------ public API

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
        async with self.db.transaction() as session:
            inserted = await insert_or_ignore(
                session,
                Page,
                {
                    "dedup_key": dedup_key,
                    "service": service,
                    "subject_kind": subject_kind,
                    "subject_id": subject_id,
                    "summary": summary,
                    "severity": severity,
                    "state": "scheduled",
                    "send_at": send_at or now,
                    "channel": thread.channel if thread else None,
                    "thread_ts": (thread.thread_ts or thread.ts) if thread else None,
                    "details": dict(details) if details else None,
                    "escalation_level": 1,
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                },
            )
        page = await self._get(dedup_key)
        if not inserted:
            return page
        if send_at is not None and send_at > now:
            oncall, _problem = await self._who(service)
            who = self._mention(oncall, 1) if oncall else "the on-call"
            await self._say(
                page,
                f":alarm_clock: {who} will be paged at {send_at:%Y-%m-%d %H:%M} UTC for "
                f"*{summary}* ({severity}), not now: the page waits for business hours "
                f"({self._hours()}). Acknowledging it cancels the page.",
            )
            return page
        return await self._send(page.id, now)

    async def acknowledge(self, dedup_key: str, by: str) -> bool:
        """Acknowledge a page (a scheduled page not yet sent is cancelled instead).

        True when this call changed the page; False when it was already acknowledged, closed
        or unknown.
        """
        now = self.clock()
        async with self.db.transaction() as session:
            acked = await self._transition(
                session,
                dedup_key,
                Page.state == "triggered",
                state="acknowledged",
                acknowledged_at=now,
                acknowledged_by=by,
            )
            cancelled = not acked and await self._transition(
                session,
                dedup_key,
                Page.state.in_(UNSENT),
                state="cancelled",
                acknowledged_at=now,
                acknowledged_by=by,
                next_attempt_at=None,
            )
        if not (acked or cancelled):
            return False
        page = await self._get(dedup_key)
        if cancelled:
            await self._say(
                page,
                f":white_check_mark: Acknowledged by <@{by}> before the page went out: "
                "the page is cancelled, nobody was paged.",
            )
        else:
            failures = await self._to_each_key(page, "acknowledge")
            took = format_duration(now - page.sent_at) if page.sent_at else "?"
            engage = (
                f" Engage by {_when(page.engage_deadline)} (within "
                f"{format_duration(self.catalog.oncall.engage_within)} of the page)."
                if page.engage_deadline and page.engaged_at is None
                else ""
            )
            await self._say(
                page,
                f":white_check_mark: Acknowledged by <@{by}> {took} after the page; "
                f"escalation stopped.{engage}{failures}",
            )
        await self._publish(page, "page-acknowledged", f"Page acknowledged by <@{by}>", by, now)
        return True

    async def engaged(self, dedup_key: str, by: str) -> None:
        """Someone is working on it: stops the engage deadline (and acknowledges if needed)."""
        page = await self._find(dedup_key)
        if page is None or page.engaged_at is not None or page.state not in OPEN:
            return
        if page.state == "triggered":
            await self.acknowledge(dedup_key, by)
        now = self.clock()
        async with self.db.transaction() as session:
            changed = await self._transition(
                session,
                dedup_key,
                and_(Page.engaged_at.is_(None), Page.state.in_(OPEN)),
                engaged_at=now,
                engaged_by=by,
            )
        if changed:
            page = await self._get(dedup_key)
            await self._say(page, f":technologist: <@{by}> is engaged; the engage deadline is met.")

    async def resolve(self, dedup_key: str) -> None:
        """Resolve the page and its PagerDuty incident (an unsent page is cancelled)."""
        await self._close(dedup_key, "resolved")

    async def cancel(self, dedup_key: str) -> None:
        """Cancel a page (scheduled: never sent; sent: resolved at PagerDuty)."""
        await self._close(dedup_key, "cancelled")

    async def has_open_page(self, channel: str, thread_ts: str) -> bool:
        """Whether a thread holds a page still waiting for someone to engage."""
        async with self.db.session() as session:
            found = await session.scalar(
                select(Page.id)
                .where(
                    Page.channel == channel,
                    Page.thread_ts == thread_ts,
                    Page.state.in_(OPEN),
                    Page.engaged_at.is_(None),
                )
                .limit(1)
            )
        return found is not None

    async def engaged_in_thread(self, channel: str, thread_ts: str, by: str) -> list[str]:
        """A person wrote in a thread: every open, unengaged page there is engaged by them."""
        async with self.db.session() as session:
            keys = list(
                await session.scalars(
                    select(Page.dedup_key).where(
                        Page.channel == channel,
                        Page.thread_ts == thread_ts,
                        Page.state.in_(OPEN),
                        Page.engaged_at.is_(None),
                    )
                )
            )
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
            moved = await self._transition(
                session,
                dedup_key,
                or_(
                    Page.state == "scheduled",
                    (Page.state == "cancelled") & Page.sent_at.is_(None),
                ),
                state="scheduled",
                send_at=now,
                acknowledged_at=None,
                acknowledged_by=None,
                next_attempt_at=None,
            )
        if moved:
            page = await self._get(dedup_key)
            await self._send(page.id, now)
        return moved

    async def check_deadlines(self, now: datetime | None = None) -> None:
        """Scheduler job: send due pages, retry failed ones, escalate missed deadlines."""
        now = now or self.clock()
        for page_id in await self._ids(
            select(Page.id).where(
                Page.state.in_(UNSENT),
                Page.send_at <= now,
                or_(Page.next_attempt_at.is_(None), Page.next_attempt_at <= now),
            )
        ):
            await self._send(page_id, now)
        for page_id in await self._ids(
            select(Page.id).where(
                Page.state == "triggered", Page.escalation_level < 3, Page.ack_deadline <= now
            )
        ):
            await self._escalate(page_id, now, engage=False)
        for page_id in await self._ids(
            select(Page.id).where(
                Page.state.in_(OPEN),
                Page.engaged_at.is_(None),
                Page.escalation_level < 3,
                Page.engage_deadline <= now,
            )
        ):
            await self._escalate(page_id, now, engage=True)

    def close(self) -> None:
        """Close PagerDuty's HTTP connections (the directory shares them)."""
        self.oncall.close()

    # ------------------------------------------------------------------ sending

    async def _send(self, page_id: int, now: datetime) -> Page:
        async with self.db.transaction() as session:
            claimed = _rows(
                await session.execute(
                    update(Page)
                    .where(
                        Page.id == page_id,
                        Page.state.in_(UNSENT),
                        or_(Page.next_attempt_at.is_(None), Page.next_attempt_at <= now),
                    )
                    .values(attempts=Page.attempts + 1, next_attempt_at=now + self.send_lease)
                    .execution_options(synchronize_session=False)
                )
            )
            page = await self._by_id(session, page_id)
        if claimed != 1:
            return page  # another replica is sending it, or it was acknowledged meanwhile
        oncall, problem = await self._who(page.service)
        routing_key, missing = self._routing_key(page.service, oncall, level=1)
        try:
            if routing_key is None:
                raise PagerDutyError(missing)
            await self.pagerduty.trigger(
                routing_key,
                dedup_key=page.dedup_key,
                summary=page.summary,
                source=f"opsbot/{page.service or 'opsbot'}",
                severity=page.severity,
                custom_details=self._custom_details(page),
            )
        except PagerDutyError as exc:
            return await self._send_failed(page, now, str(exc), oncall)
        sent = self.clock()
        if sent < now:  # check_deadlines(now=...) may run "in the future"
            sent = now
        oncall_policy = self.catalog.oncall
        bookkeeping = self._bookkeeping(page, oncall, routing_keys=[routing_key])
        async with self.db.transaction() as session:
            changed = await self._transition(
                session,
                page.dedup_key,
                Page.state.in_(UNSENT),
                state="triggered",
                sent_at=sent,
                ack_deadline=sent + oncall_policy.ack_within,
                engage_deadline=sent + oncall_policy.engage_within,
                next_attempt_at=None,
                last_error=None,
                details=bookkeeping,
            )
        page = await self._get(page.dedup_key)
        if not changed:
            # Acknowledged or cancelled while the event was on its way: take it back.
            await self._to_keys([routing_key], page.dedup_key, "resolve")
            return page
        await self._say(page, self._paged_text(page, oncall, problem))
        await self._publish(page, "page", f"Paged the on-call: {page.summary}", None, sent)
        return page

    async def _send_failed(
        self, page: Page, now: datetime, reason: str, oncall: OnCall | None
    ) -> Page:
        delay = min(self.retry_base * 2 ** max(page.attempts - 1, 0), self.retry_max)
        retry_at = now + delay
        async with self.db.transaction() as session:
            await self._transition(
                session,
                page.dedup_key,
                Page.state.in_(UNSENT),
                state="failed",
                last_error=reason[:1000],
                next_attempt_at=retry_at,
            )
        log.warning("paging %s failed (attempt %d): %s", page.dedup_key, page.attempts, reason)
        page = await self._get(page.dedup_key)
        if page.attempts == 1:
            who = self._mention(oncall, 1) if oncall else "the on-call"
            await self._say(
                page,
                f":x: paging failed: {reason}. opsbot keeps retrying (next attempt at "
                f"{_when(retry_at)}); if this cannot wait, reach {who} another way.",
            )
        return page

    # ------------------------------------------------------------------ escalation

    async def _escalate(self, page_id: int, now: datetime, *, engage: bool) -> None:
        async with self.db.session() as session:
            page = await self._by_id(session, page_id)
        level = page.escalation_level
        if level >= 3:
            return  # another replica got here first; level 3 is the last
        # The guard repeats the deadline that selected the page: a page another replica moved
        # on meanwhile (a new level, a new deadline) is no longer due and is left alone.
        if engage:
            to_level = 3
            guard = and_(
                Page.engaged_at.is_(None), Page.state.in_(OPEN), Page.engage_deadline <= now
            )
            values: dict[str, Any] = {"escalation_level": 3}
        else:
            to_level = 3 if level >= 2 else 2
            guard = and_(Page.state == "triggered", Page.ack_deadline <= now)
            values = {"escalation_level": to_level}
            if to_level == 2:
                values["ack_deadline"] = now + self.catalog.oncall.ack_within
        async with self.db.transaction() as session:
            won = _rows(
                await session.execute(
                    update(Page)
                    .where(Page.id == page_id, Page.escalation_level == level, guard)
                    .values(**values)
                    .execution_options(synchronize_session=False)
                )
            )
        if won != 1:
            return  # another replica escalated it, or it was acknowledged/engaged meanwhile
        page = await self._get(page.dedup_key)
        oncall, _problem = await self._who(page.service)
        if to_level == 2:
            done = await self._page_level(page, oncall, 2)
            text = self._missed_ack_text(page, oncall, done)
        else:
            done = await self._page_level(page, oncall, 3)
            text = self._missed_engage_text(page, oncall, done, engage=engage)
        await self._say(page, text)
        await self._publish(
            page, "page-escalated", f"Page escalated to level {to_level}", None, now
        )

    async def _page_level(self, page: Page, oncall: OnCall | None, level: int) -> str:
        """Page escalation `level` where the on-call lives; a sentence saying what was done."""
        if self.oncall.provider == "static":
            if level != 2:
                return "no further level in the static rotation"
            routing_key, _missing = self._routing_key(page.service, oncall, level=2)
            used = self._used_keys(page)
            if routing_key is None or routing_key in used:
                return "the secondary has no routing key of their own, so only Slack calls them"
            try:
                await self.pagerduty.trigger(
                    routing_key,
                    dedup_key=page.dedup_key,
                    summary=page.summary,
                    source=f"opsbot/{page.service or 'opsbot'}",
                    severity=page.severity,
                    custom_details=self._custom_details(page),
                )
            except PagerDutyError as exc:
                return f"paging the secondary failed: {exc}"
            await self._remember_key(page, routing_key)
            return "paged the secondary's routing key"
        try:
            incident_id = page.pd_incident_id
            if incident_id is None:
                incident = await self.pagerduty.incident_for(page.dedup_key)
                if incident is None:
                    return "PagerDuty has no incident for this page to escalate"
                incident_id = str(incident["id"])
                async with self.db.transaction() as session:
                    await self._transition(
                        session, page.dedup_key, Page.id == page.id, pd_incident_id=incident_id
                    )
            await self.pagerduty.escalate(incident_id, level)
        except PagerDutyError as exc:
            return f"escalating at PagerDuty failed: {exc}"
        return f"PagerDuty incident {incident_id} escalated to level {level}"

    # ------------------------------------------------------------------ closing

    async def _close(self, dedup_key: str, final: str) -> None:
        now = self.clock()
        async with self.db.transaction() as session:
            was_open = await self._transition(
                session,
                dedup_key,
                Page.state.in_(OPEN),
                state=final,
                resolved_at=now,
                next_attempt_at=None,
            )
            was_unsent = not was_open and await self._transition(
                session,
                dedup_key,
                Page.state.in_(UNSENT),
                state="cancelled",
                resolved_at=now,
                next_attempt_at=None,
            )
        if not (was_open or was_unsent):
            return
        page = await self._get(dedup_key)
        if was_unsent:
            await self._say(
                page,
                f":white_check_mark: {final.capitalize()} before the page went out: "
                "nobody was paged.",
            )
            return
        failures = await self._to_each_key(page, "resolve")
        await self._say(page, f":white_check_mark: Page {final}; PagerDuty resolved.{failures}")

    # ------------------------------------------------------------------ helpers

    async def _who(self, service: str | None) -> tuple[OnCall | None, str | None]:
        try:
            return await self.oncall.who(service), None
        except OncallUnavailable as exc:
            log.warning("cannot tell who is on call for %s: %s", service, exc)
            return None, str(exc)

    def _routing_key(
        self, service: str | None, oncall: OnCall | None, *, level: int
    ) -> tuple[str | None, str]:
        """The Events API routing key for `level`, and what to configure when there is none."""
        if oncall is not None and oncall.source == "static":
            key = oncall.primary_routing_key if level == 1 else oncall.secondary_routing_key
            if key:
                return key, ""
        entry = self.catalog.service(service) if service else None
        if entry is not None and entry.pagerduty is not None:
            return entry.pagerduty.routing_key, ""
        if self.catalog.oncall.default_routing_key:
            return self.catalog.oncall.default_routing_key, ""
        where = f"services[{service}].pagerduty.routing_key or " if service else ""
        return (
            None,
            f"no PagerDuty routing key is configured (set {where}oncall.default_routing_key)",
        )

    def _mention(self, oncall: OnCall, level: int) -> str:
        person = oncall.primary if level == 1 else oncall.secondary
        if person is None:
            return f"nobody at level {level}"
        return person.mention

    def _bookkeeping(
        self, page: Page, oncall: OnCall | None, *, routing_keys: list[str]
    ) -> dict[str, Any]:
        details = dict(page.details or {})
        details[BOOKKEEPING] = {
            "routing_keys": routing_keys,
            "primary": self._mention(oncall, 1) if oncall else None,
            "secondary": self._mention(oncall, 2) if oncall else None,
            "source": oncall.source if oncall else self.oncall.provider,
        }
        return details

    def _used_keys(self, page: Page) -> list[str]:
        bookkeeping = (page.details or {}).get(BOOKKEEPING) or {}
        return list(bookkeeping.get("routing_keys") or [])

    async def _remember_key(self, page: Page, routing_key: str) -> None:
        details = dict(page.details or {})
        bookkeeping = dict(details.get(BOOKKEEPING) or {})
        bookkeeping["routing_keys"] = [*self._used_keys(page), routing_key]
        details[BOOKKEEPING] = bookkeeping
        async with self.db.transaction() as session:
            await self._transition(session, page.dedup_key, Page.id == page.id, details=details)

    def _custom_details(self, page: Page) -> dict[str, Any]:
        details = {k: v for k, v in (page.details or {}).items() if k != BOOKKEEPING}
        details.update(
            service=page.service, subject=f"{page.subject_kind} {page.subject_id or ''}".strip()
        )
        return details

    async def _to_each_key(self, page: Page, action: str) -> str:
        """Send acknowledge/resolve for every routing key the page went to; failures as text."""
        return await self._to_keys(self._used_keys(page), page.dedup_key, action)

    async def _to_keys(self, keys: list[str], dedup_key: str, action: str) -> str:
        problems = []
        for key in keys:
            try:
                if action == "acknowledge":
                    await self.pagerduty.acknowledge(key, dedup_key)
                else:
                    await self.pagerduty.resolve(key, dedup_key)
            except PagerDutyError as exc:
                problems.append(str(exc))
        if not problems:
            return ""
        return f" :warning: PagerDuty did not take the {action}: {'; '.join(problems)}."

    def _hours(self) -> str:
        hours = self.catalog.oncall.business_hours
        return f"{', '.join(hours.days)} {hours.start:%H:%M}–{hours.end:%H:%M} {hours.timezone}"

    def _paged_text(self, page: Page, oncall: OnCall | None, problem: str | None) -> str:
        policy = self.catalog.oncall
        if oncall is None:
            who = f"the on-call of {page.service or 'opsbot'} (could not tell who: {problem})"
            secondary = "the secondary"
        else:
            who = f"{self._mention(oncall, 1)} (primary, {self._source(oncall)})"
            secondary = self._mention(oncall, 2) if oncall.secondary else "the next level"
        retries = f" after {page.attempts} attempts" if page.attempts > 1 else ""
        assert page.ack_deadline is not None and page.engage_deadline is not None
        return (
            f":rotating_light: Paged {who}{retries} for *{page.summary}* ({page.severity}). "
            f"Acknowledge within {format_duration(policy.ack_within)} "
            f"(by {_when(page.ack_deadline)}) or {secondary} is paged; engage within "
            f"{format_duration(policy.engage_within)} (by {_when(page.engage_deadline)}). "
            f"Dedup key `{page.dedup_key}`."
        )

    def _source(self, oncall: OnCall) -> str:
        if oncall.source == "static":
            return "static rotation"
        return f"PagerDuty escalation policy {oncall.escalation_policy}"

    def _missed_ack_text(self, page: Page, oncall: OnCall | None, done: str) -> str:
        policy = self.catalog.oncall
        primary = self._mention(oncall, 1) if oncall else "The primary"
        secondary = self._mention(oncall, 2) if oncall else "the secondary"
        sent = _when(page.sent_at) if page.sent_at else "?"
        assert page.ack_deadline is not None
        return (
            f":warning: {primary} did not acknowledge within "
            f"{format_duration(policy.ack_within)} (paged at {sent}). Paging the secondary "
            f"{secondary}: {done}. Escalation level 2; acknowledge by "
            f"{_when(page.ack_deadline)} or it escalates further."
        )

    def _missed_engage_text(
        self, page: Page, oncall: OnCall | None, done: str, *, engage: bool
    ) -> str:
        policy = self.catalog.oncall
        if engage:
            acked = (
                f"acknowledged by <@{page.acknowledged_by}>"
                if page.acknowledged_by
                else "not acknowledged"
            )
            why = (
                f"Nobody is engaged {format_duration(policy.engage_within)} after the page "
                f"({acked})"
            )
        else:
            secondary = self._mention(oncall, 2) if oncall else "the secondary"
            why = (
                f"{secondary} did not acknowledge within {format_duration(policy.ack_within)} "
                "either"
            )
        owners = self._owners(page.service)
        call = f" {owners}: please engage." if owners else ""
        return f":rotating_light: {why}. Escalating further (level 3): {done}.{call}"

    def _owners(self, service: str | None) -> str:
        entry = self.catalog.service(service) if service else None
        if entry is None:
            return ""
        mentions = [
            f"<!subteam^{owner}>" if owner.startswith("S") else f"<@{owner}>"
            for owner in entry.owners
        ]
        return " ".join(mentions)

    async def _say(self, page: Page, text: str) -> None:
        """Post into the page's thread; with no thread yet, start one in the alerts channel."""
        try:
            if page.channel and page.thread_ts:
                ref = MessageRef(page.channel, page.thread_ts, page.thread_ts)
                await self.notifier.post(page.channel, Message(text), thread=ref)
                return
            entry = self.catalog.service(page.service) if page.service else None
            channel = (entry.channel if entry else None) or self.catalog.slack.channels.alerts
            posted = await self.notifier.post(channel, Message(text))
            async with self.db.transaction() as session:
                await self._transition(
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

    async def _publish(
        self, page: Page, kind: str, text: str, actor: str | None, at: datetime
    ) -> None:
        await self.events.publish(
            ServiceEvent(
                kind=kind,
                text=f"{text}: {page.summary}" if kind != "page" else text,
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

    async def _transition(
        self, session: AsyncSession, dedup_key: str, guard: Any, **values: Any
    ) -> bool:
        result = await session.execute(
            update(Page)
            .where(Page.dedup_key == dedup_key, guard)
            .values(updated_at=self.clock(), **values)
            .execution_options(synchronize_session=False)
        )
        return _rows(result) == 1

    async def _ids(self, query: Select[tuple[int]]) -> list[int]:
        async with self.db.session() as session:
            return list(await session.scalars(query.order_by(Page.id)))

    async def _find(self, dedup_key: str) -> Page | None:
        async with self.db.session() as session:
            return await session.scalar(select(Page).where(Page.dedup_key == dedup_key))

    async def _get(self, dedup_key: str) -> Page:
        page = await self._find(dedup_key)
        assert page is not None, dedup_key
        return page

    @staticmethod
    async def _by_id(session: AsyncSession, page_id: int) -> Page:
        page = await session.get(Page, page_id)
        assert page is not None, page_id
        return page
