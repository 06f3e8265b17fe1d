"""Sending to PagerDuty: which routing key pages which level, the Events API calls, and the
escalation of a PagerDuty incident (or of a static rotation's second key)."""

from __future__ import annotations

import logging
from typing import Any

from bot.catalog import Catalog
from bot.db.models import Page
from bot.oncall.pagerduty import PagerDutyApi, PagerDutyError
from bot.oncall.schedule import OnCall, OncallDirectory, OncallUnavailable, Person
from bot.oncall.store import BOOKKEEPING, PageStore, caller_details, used_keys

log = logging.getLogger(__name__)


class Dispatch:
    def __init__(self, *, catalog: Catalog, oncall: OncallDirectory, store: PageStore) -> None:
        self.catalog = catalog
        self.oncall = oncall
        self.store = store

    @property
    def pagerduty(self) -> PagerDutyApi:
        return self.oncall.pagerduty

    async def who(self, service: str | None) -> tuple[OnCall | None, str | None]:
        """Who is on call for `service`, or None and why it cannot be told."""
        try:
            return await self.oncall.who(service), None
        except OncallUnavailable as exc:
            log.warning("cannot tell who is on call for %s: %s", service, exc)
            return None, str(exc)

    def routing_key(
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

    async def trigger(self, page: Page, routing_key: str) -> None:
        """Trigger the page's PagerDuty event on `routing_key` (raises PagerDutyError)."""
        details = caller_details(page)
        details.update(
            service=page.service, subject=f"{page.subject_kind} {page.subject_id or ''}".strip()
        )
        await self.pagerduty.trigger(
            routing_key,
            dedup_key=page.dedup_key,
            summary=page.summary,
            source=f"opsbot/{page.service or 'opsbot'}",
            severity=page.severity,
            custom_details=details,
        )

    def bookkeeping(
        self, page: Page, oncall: OnCall | None, *, routing_keys: list[str]
    ) -> dict[str, Any]:
        """The page's details with what opsbot needs later: the keys used, who was paged."""

        def who(person: Person | None) -> str | None:
            return (person.slack_id or person.name) if person else None

        details = dict(page.details or {})
        details[BOOKKEEPING] = {
            "routing_keys": routing_keys,
            "primary": who(oncall.primary) if oncall else None,
            "secondary": who(oncall.secondary) if oncall else None,
            "source": oncall.source if oncall else self.oncall.provider,
        }
        return details

    async def to_each_key(self, page: Page, action: str) -> list[str]:
        """Acknowledge/resolve at every routing key the page went to; what failed."""
        return await self.to_keys(used_keys(page), page.dedup_key, action)

    async def to_keys(self, keys: list[str], dedup_key: str, action: str) -> list[str]:
        problems = []
        for key in keys:
            try:
                if action == "acknowledge":
                    await self.pagerduty.acknowledge(key, dedup_key)
                else:
                    await self.pagerduty.resolve(key, dedup_key)
            except PagerDutyError as exc:
                problems.append(str(exc))
        return problems

    async def page_level(self, page: Page, oncall: OnCall | None, level: int) -> str:
        """Page escalation `level` where the on-call lives; a sentence saying what was done."""
        if self.oncall.provider == "static":
            return await self._static_level(page, oncall, level)
        try:
            incident_id = page.pd_incident_id
            if incident_id is None:
                incident = await self.pagerduty.incident_for(page.dedup_key)
                if incident is None:
                    return "PagerDuty has no incident for this page to escalate"
                incident_id = str(incident["id"])
                async with self.store.db.transaction() as session:
                    await self.store.amend(
                        session, page.dedup_key, Page.id == page.id, pd_incident_id=incident_id
                    )
            await self.pagerduty.escalate(incident_id, level)
        except PagerDutyError as exc:
            return f"escalating at PagerDuty failed: {exc}"
        return f"PagerDuty incident {incident_id} escalated to level {level}"

    async def _static_level(self, page: Page, oncall: OnCall | None, level: int) -> str:
        if level != 2:
            return "no further level in the static rotation"
        routing_key, _missing = self.routing_key(page.service, oncall, level=2)
        if routing_key is None or routing_key in used_keys(page):
            return "the secondary has no routing key of their own, so only Slack calls them"
        try:
            await self.trigger(page, routing_key)
        except PagerDutyError as exc:
            return f"paging the secondary failed: {exc}"
        await self.store.remember_key(page, routing_key)
        return "paged the secondary's routing key"
