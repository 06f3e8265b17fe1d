"""An incident's pages: sent, scheduled or cancelled by the paging policy for its severity,
acknowledged with it, and closed when it is resolved. Each decision is a line in the timeline."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from bot.db.models import Incident, Page
from bot.incidents import messaging, records
from bot.incidents.channel import IncidentChannel
from bot.incidents.deps import IncidentDeps
from bot.incidents.policy import NoPage, PageAt, PageNow, paging_decision

log = logging.getLogger(__name__)


def dedup_key(incident_id: int, service: str | None) -> str:
    """The page's stable key: one page per incident and affected service."""
    return f"INC-{incident_id}:{service or 'default'}"


def _on_call(service: str | None) -> str:
    return f"the on-call of {service}" if service else "the default on-call"


class IncidentPaging:
    def __init__(self, deps: IncidentDeps, channel: IncidentChannel) -> None:
        self.deps = deps
        self.channel = channel

    async def pages(self, incident_id: int) -> list[Page]:
        async with self.deps.db.session() as session:
            return list(
                await session.scalars(
                    select(Page).where(
                        Page.subject_kind == "incident", Page.subject_id == incident_id
                    )
                )
            )

    async def page(
        self, incident: Incident, *, previous: str | None, now: datetime | None = None
    ) -> list[str]:
        """Page (or schedule, or cancel) by the policy for the incident's severity now.

        `previous` is the severity before a change (None at declaration). Returns one line per
        decision for the channel; each is also in the timeline.
        """
        now = now or self.deps.clock()
        catalog = self.deps.catalog
        decision = paging_decision(
            incident.severity,
            now,
            catalog.oncall.business_hours,
            followup_after=catalog.incidents.followup_after,
        )
        existing = {page.dedup_key: page for page in await self.pages(incident.id)}
        if isinstance(decision, NoPage):
            return await self._no_page(incident, decision, existing)
        lines: list[str] = []
        if incident.acknowledged_at is not None and previous is not None:
            lines.append(
                f"{decision.reason}; no new page: {incident.key} was acknowledged "
                f"{messaging.clock(incident.acknowledged_at)}"
            )
            await self._note(incident, lines, {})
            return lines
        send_at = decision.when if isinstance(decision, PageAt) else None
        for service in list(incident.services or []) or [None]:
            key = dedup_key(incident.id, service)
            page = existing.get(key)
            if page is not None and page.state not in ("scheduled", "cancelled"):
                lines.append(f"{_on_call(service)} was already paged ({page.state}) as {key}")
                continue
            if page is not None and page.state == "scheduled" and send_at is not None:
                lines.append(f"{_on_call(service)} is already scheduled to be paged as {key}")
                continue
            lines.append(await self._send(incident, service, key, send_at, decision, page))
        await self._note(incident, lines, {})
        return lines

    async def _no_page(
        self, incident: Incident, decision: NoPage, existing: dict[str, Page]
    ) -> list[str]:
        """Nobody is paged at this severity: a follow-up may be due; scheduled pages are off."""
        lines = [decision.reason]
        values: dict[str, Any] = {}
        if decision.followup_due is not None and incident.followup_due_at is None:
            values["followup_due_at"] = decision.followup_due
            lines.append(f"follow-up due {messaging.clock(decision.followup_due)}")
        for key, page in existing.items():
            if page.state == "scheduled" and self.deps.paging is not None:
                try:
                    await self.deps.paging.cancel(key)
                    lines.append(f"the scheduled page {key} is cancelled")
                except Exception as exc:
                    lines.append(f"cancelling the scheduled page {key} failed: {exc}")
        await self._note(incident, lines, values)
        return lines

    async def _send(
        self,
        incident: Incident,
        service: str | None,
        key: str,
        send_at: datetime | None,
        decision: PageNow | PageAt,
        replace: Page | None,
    ) -> str:
        who = _on_call(service)
        if self.deps.paging is None:
            return f"{decision.reason}, but paging is not configured: page {who} by hand"
        summary = f"{incident.key} {incident.severity}: {incident.title}"[:1024]
        try:
            if replace is not None and send_at is None:
                # Scheduled for later (or cancelled before it went out), and it must go now.
                await self.deps.paging.send_now(key)
                return f"{who} is paged now ({key}): {decision.reason}"
            await self.deps.paging.page(
                dedup_key=key,
                summary=summary,
                severity="critical" if incident.severity == "P0" else "error",
                service=service,
                subject_kind="incident",
                subject_id=incident.id,
                thread=self.channel.thread(incident),
                send_at=send_at,
                details={"incident": incident.key, "severity": incident.severity},
            )
        except Exception as exc:
            log.exception("paging %s for %s failed", who, incident.key)
            return f"paging {who} failed: {type(exc).__name__}: {str(exc)[:200]}"
        if send_at is None:
            return f"{who} is paged now ({key}): {decision.reason}"
        return f"{who} will be paged ({key}): {decision.reason}"

    async def _note(self, incident: Incident, lines: list[str], values: dict[str, Any]) -> None:
        now = self.deps.clock()
        async with self.deps.db.transaction() as session:
            if values:
                await session.execute(
                    update(Incident).where(Incident.id == incident.id).values(**values)
                )
            for line in lines:
                records.add_entry(session, incident.id, "page", f"Paging: {line}", at=now)
        for name, value in values.items():
            setattr(incident, name, value)

    async def acknowledge(self, incident_id: int, user: str, now: datetime) -> list[str]:
        """The incident was acknowledged: its pages are acknowledged, scheduled ones cancelled."""
        lines: list[str] = []
        if self.deps.paging is None:
            return lines
        for page in await self.pages(incident_id):
            if page.state not in ("scheduled", "triggered", "failed"):
                continue
            try:
                await self.deps.paging.acknowledge(page.dedup_key, user)
                verb = "cancelled" if page.state == "scheduled" else "acknowledged"
                lines.append(f"Page {page.dedup_key} {verb}.")
            except Exception as exc:
                log.exception("could not acknowledge page %s", page.dedup_key)
                lines.append(f"Acknowledging page {page.dedup_key} failed: {exc}")
        await self._record(incident_id, lines, now)
        return lines

    async def resolve(self, incident_id: int) -> list[str]:
        """The incident was resolved: scheduled pages are cancelled, the others resolved."""
        lines: list[str] = []
        if self.deps.paging is None:
            return lines
        for page in await self.pages(incident_id):
            try:
                if page.state == "scheduled":
                    await self.deps.paging.cancel(page.dedup_key)
                    lines.append(f"The scheduled page {page.dedup_key} is cancelled.")
                elif page.state in ("triggered", "acknowledged", "failed"):
                    await self.deps.paging.resolve(page.dedup_key)
                    lines.append(f"Page {page.dedup_key} resolved.")
            except Exception as exc:
                log.exception("could not close page %s", page.dedup_key)
                lines.append(f"Closing page {page.dedup_key} failed: {exc}")
        await self._record(incident_id, lines, self.deps.clock())
        return lines

    async def _record(self, incident_id: int, lines: list[str], now: datetime) -> None:
        if not lines:
            return
        async with self.deps.db.transaction() as session:
            for line in lines:
                records.add_entry(session, incident_id, "page", line, at=now)
