"""Declaring an incident: which services, which severity (suggested from the live state), the
record, its channel, its announcement and its first pages."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from bot.db.models import Alert, Deploy, Incident
from bot.incidents import messaging, records
from bot.incidents.channel import IncidentChannel
from bot.incidents.classify import (
    SEVERITY_ORDER,
    AlertFact,
    DeployFact,
    LiveState,
    Suggestion,
    suggest_severity,
)
from bot.incidents.deps import IncidentDeps
from bot.incidents.paging import IncidentPaging
from bot.incidents.states import IncidentState
from bot.messages import Emoji, Mention, Message, Result, Text, refused, stored, text, verbatim

log = logging.getLogger(__name__)

MAX_TITLE = 255
RECENT_DEPLOYS = timedelta(hours=1)
SUGGESTION_TIMEOUT = 1.5  # seconds: the live state must never hold up a modal


class Declaring:
    def __init__(self, deps: IncidentDeps, channel: IncidentChannel, paging: IncidentPaging):
        self.deps = deps
        self.channel = channel
        self.paging = paging

    # -- which services, which severity -----------------------------------------------------------
    def recognise_services(self, text: str) -> list[str]:
        """Services named (by name or alias) in free text, in catalog order."""
        words = set(re.findall(r"[a-z0-9][a-z0-9_-]*", text.lower()))
        return [
            service.name
            for service in self.deps.catalog.services
            if service.name in words or words & set(service.aliases)
        ]

    def check_services(self, names: Sequence[str]) -> tuple[list[str], list[str]]:
        """(canonical names, unknown names) of services chosen by a person."""
        known: list[str] = []
        unknown: list[str] = []
        for name in names:
            service = self.deps.catalog.service(name)
            if service is None:
                unknown.append(name)
            elif service.name not in known:
                known.append(service.name)
        return known, unknown

    async def live_state(self, services: Sequence[str]) -> LiveState:
        """Firing alerts and recent failed deploys/rollbacks of `services` (from the database)."""
        now = self.deps.clock()
        if not services:
            return LiveState(now=now)
        async with self.deps.db.session() as session:
            alerts = list(
                await session.scalars(
                    select(Alert).where(Alert.service.in_(services), Alert.state == "firing")
                )
            )
            deploys = list(
                await session.scalars(
                    select(Deploy)
                    .where(
                        Deploy.service.in_(services),
                        Deploy.finished_at >= now - RECENT_DEPLOYS,
                        Deploy.dry_run.is_(False),
                        or_(
                            Deploy.state.in_(["failed", "rolled_back"]),
                            Deploy.strategy == "rollback",
                        ),
                    )
                    .order_by(Deploy.finished_at.desc())
                    .limit(5)
                )
            )
        rules = {rule.name: rule.metric for rule in self.deps.catalog.alerts}
        error_rates: dict[str, float] = {}
        for alert in alerts:
            if rules.get(alert.rule) == "error_rate" and alert.value is not None:
                error_rates[alert.service] = max(error_rates.get(alert.service, 0), alert.value)
        return LiveState(
            services=tuple(services),
            firing_alerts=tuple(
                AlertFact(a.service, a.rule, a.severity, a.value, a.threshold) for a in alerts
            ),
            error_rates=error_rates,
            recent_deploys=tuple(
                DeployFact(
                    d.id, d.service, d.environment, d.version, d.state, d.strategy, d.finished_at
                )
                for d in deploys
                if d.finished_at is not None
            ),
            now=now,
        )

    async def suggest(
        self, *, title: str, description: str = "", services: Sequence[str] = ()
    ) -> Suggestion:
        """The suggested severity from the text and the live state of the affected services."""
        text = f"{title}\n{description}"
        chosen = list(services) or self.recognise_services(text)
        try:
            async with asyncio.timeout(SUGGESTION_TIMEOUT):
                state = await self.live_state(chosen)
        except Exception:
            log.exception("live state unavailable for the severity suggestion")
            state = LiveState(now=self.deps.clock())
        return suggest_severity(text, state)

    # -- declare ----------------------------------------------------------------------------------
    async def declare(
        self,
        *,
        title: str,
        severity: str | None,
        declared_by: str,
        description: str = "",
        services: Sequence[str] | None = None,
        origin: dict[str, Any] | None = None,
    ) -> Result:
        """Record INC-n, open its channel, announce it and page by the policy."""
        title = " ".join(title.split())
        checked = self._check(title, severity, description, services)
        if isinstance(checked, Result):
            return checked
        origin = dict(origin or {})
        suggestion = await self.suggest(title=title, description=description, services=checked)
        severity, why = _chosen_severity(severity, suggestion, declared_by)
        now = self.deps.clock()
        incident = await self._record(
            title=title,
            severity=severity,
            declared_by=declared_by,
            description=description,
            services=checked,
            origin=origin,
            why=why,
            suggestion=suggestion,
            now=now,
        )
        problems = await self.channel.open(incident)
        await self.channel.announce(incident)
        # The first message exists before the pages, so the pages are told in its thread.
        await self.channel.post_intro(incident, stored(why), [], problems)
        paging_lines = await self.paging.page(incident, previous=None, now=now)
        await self.channel.save_details(
            incident, {"why": stored(why), "paging": paging_lines, "problems": problems}
        )
        incident = await self.channel.refresh(incident.id) or incident
        await self.channel.update_intro(incident)
        answer = text(
            Emoji("rotating_light"),
            f" {incident.key} declared ({incident.severity}): ",
            verbatim(title),
            " — ",
            messaging.channel(incident.channel_id, "no channel (see above)"),
        )
        if not incident.channel_id:
            answer += "\n" + "\n".join(problems)
        return Result(True, Message(answer), public=True)

    def _check(
        self,
        title: str,
        severity: str | None,
        description: str,
        services: Sequence[str] | None,
    ) -> list[str] | Result:
        """The services the incident is about, or the refusal of what the declarer wrote."""
        if not title:
            return refused("an incident needs a title.")
        if len(title) > MAX_TITLE:
            return refused(f"the title is {len(title)} characters long; keep it under {MAX_TITLE}.")
        if severity is not None and severity not in SEVERITY_ORDER:
            return refused(f"severity {severity!r} is not one of P0, P1, P2, P3.")
        if not services:
            return self.recognise_services(f"{title}\n{description}")
        chosen, unknown = self.check_services(services)
        if unknown:
            names = ", ".join(self.deps.catalog.service_names())
            return refused(f"unknown service {', '.join(unknown)}. Services: {names}.")
        return chosen

    async def _record(
        self,
        *,
        title: str,
        severity: str,
        declared_by: str,
        description: str,
        services: list[str],
        origin: dict[str, Any],
        why: Text,
        suggestion: Suggestion,
        now: datetime,
    ) -> Incident:
        """INC-n stored with its first timeline entries; the alert it came from is linked."""
        detected_at = await self._detected_at(origin, now)
        deploy_id = origin.get("deploy_id")
        async with self.deps.db.transaction() as session:
            incident = Incident(
                title=title,
                severity=severity,
                state=IncidentState.ACTIVE,
                service=services[0] if services else None,
                services=services,
                description=description or None,
                deploy_id=deploy_id if isinstance(deploy_id, int) else None,
                commander=declared_by,
                declared_by=declared_by,
                declared_at=now,
                detected_at=detected_at,
                last_update_at=now,
                roles={},
            )
            session.add(incident)
            await session.flush()
            records.add_entry(
                session,
                incident.id,
                "declared",
                text(
                    f"{incident.key} declared as {severity} by ",
                    Mention(declared_by),
                    ": ",
                    verbatim(title),
                ),
                at=now,
                actor=declared_by,
                data={"severity": severity, "services": services, "origin": origin or None},
            )
            records.add_entry(
                session,
                incident.id,
                "severity",
                why,
                at=now,
                actor=declared_by,
                data={"severity": severity, "suggested": suggestion.severity},
            )
            if detected_at < now:
                records.add_entry(
                    session,
                    incident.id,
                    "detected",
                    f"Detected: {origin.get('detected_by') or 'the first signal'}",
                    at=detected_at,
                    data=origin or None,
                )
            if isinstance(origin.get("alert_id"), int):
                await session.execute(
                    update(Alert)
                    .where(Alert.id == origin["alert_id"], Alert.incident_id.is_(None))
                    .values(incident_id=incident.id)
                )
        return incident

    async def _detected_at(self, origin: dict[str, Any], now: datetime) -> datetime:
        """When the first signal came: the alert's firing, the rollback's end, else now."""
        found: datetime | None = None
        async with self.deps.db.session() as session:
            if isinstance(origin.get("alert_id"), int):
                alert = await session.get(Alert, origin["alert_id"])
                if alert is not None:
                    found = alert.fired_at or alert.started_at
                    origin["detected_by"] = f"alert {alert.rule} on {alert.service}"
            elif isinstance(origin.get("deploy_id"), int):
                deploy = await session.get(Deploy, origin["deploy_id"])
                if deploy is not None and deploy.finished_at is not None:
                    found = deploy.finished_at
                    origin["detected_by"] = (
                        f"deploy #{deploy.id} of {deploy.service} {deploy.version} "
                        f"{deploy.state.replace('_', ' ')}"
                    )
        return min(found, now) if found else now


def _chosen_severity(
    severity: str | None, suggestion: Suggestion, declared_by: str
) -> tuple[str, Text]:
    """The severity the incident gets, and why: the declarer's choice beats the suggestion."""
    if severity is None:
        return suggestion.severity, text(
            f"Severity {suggestion.severity} was suggested by opsbot. {suggestion.explain()}"
        )
    if severity == suggestion.severity:
        return severity, text(
            f"Severity {severity} chosen by ", Mention(declared_by), "; opsbot agrees."
        )
    return severity, text(
        f"Severity {severity} chosen by ",
        Mention(declared_by),
        f" (opsbot would suggest {suggestion.severity}: {'; '.join(suggestion.reasons)}).",
    )
