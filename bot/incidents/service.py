"""Incidents as records with a channel, an announcement, pages by policy and a timeline.

One method per thing a person (or the bot itself) does to an incident. Every change is a guarded
UPDATE (`WHERE state …`, `WHERE severity = old`, `WHERE acknowledged_at IS NULL`), so a double
click, a Slack retry or a second replica cannot do it twice; then the channel topic, the
announcement in `slack.channels.incidents` and the timeline follow.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.catalog import Catalog, format_duration, parse_duration
from bot.db.models import Alert, Deploy, Incident, Page, TimelineEvent, utc_now
from bot.db.session import Database
from bot.db.statements import insert_or_ignore
from bot.events import EventBus, ServiceEvent
from bot.incidents import messaging
from bot.incidents.classify import (
    SEVERITY_ORDER,
    AlertFact,
    DeployFact,
    LiveState,
    Suggestion,
    suggest_severity,
)
from bot.incidents.policy import NoPage, PageAt, PageNow, paging_decision, reminder_due
from bot.incidents.ports import ChannelNameTaken, OncallLookup, Pager, Workspace, WorkspaceError
from bot.messages import Message, MessageRef, Notifier, Result, refused
from bot.oncall.schedule import OncallUnavailable

log = logging.getLogger(__name__)

ACTIVE_STATES = ("active", "mitigated")
ROLE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,30}")
USER_REF = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>|^([UW][A-Z0-9]{2,})$")
MAX_TITLE = 255
RECENT_DEPLOYS = timedelta(hours=1)
SUGGESTION_TIMEOUT = 1.5  # seconds: the live state must never hold up a modal


@dataclass
class IncidentDeps:
    db: Database
    catalog: Catalog
    notifier: Notifier
    workspace: Workspace
    events: EventBus | None = None
    paging: Pager | None = None
    oncall: OncallLookup | None = None
    clock: Callable[[], datetime] = utc_now


def dedup_key(incident_id: int, service: str | None) -> str:
    """The page's stable key: one page per incident and affected service."""
    return f"INC-{incident_id}:{service or 'default'}"


def message_time(ts: str) -> datetime:
    """A Slack message ts ("1700000000.000100") as an aware UTC datetime."""
    return datetime.fromtimestamp(float(ts), UTC)


class IncidentService:
    """Declare, run and resolve incidents; record their timeline; remind the channel."""

    def __init__(self, deps: IncidentDeps) -> None:
        self.deps = deps
        if deps.events is not None:
            deps.events.subscribe(self.on_event)

    # -- look-ups ---------------------------------------------------------------------------------
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

    async def by_channel(self, channel_id: str | None) -> Incident | None:
        if not channel_id:
            return None
        async with self.deps.db.session() as session:
            return await session.scalar(
                select(Incident).where(Incident.channel_id == channel_id).limit(1)
            )

    async def load(self, incident_id: int) -> Incident | None:
        async with self.deps.db.session() as session:
            return await session.get(Incident, incident_id)

    async def _in_channel(self, channel_id: str | None, verb: str) -> Incident | Result:
        """The incident whose channel this is (and active), or the refusal to answer."""
        incident = await self.by_channel(channel_id)
        if incident is None:
            return refused(
                f"`/incident {verb}` works in an incident's own channel (#"
                f"{self.deps.catalog.slack.incident_channel_prefix}-<n>-…), and this is not one. "
                "`/incident list` shows the active incidents and their channels."
            )
        if incident.state == "resolved" and verb != "resolve":
            return refused(
                f"{incident.key} was resolved at {messaging.clock(incident.resolved_at)}; "
                "it cannot change any more."
            )
        return incident

    async def resolve_user(self, text: str) -> str | None:
        """A user id from `<@U…|name>`, `<@U…>`, `U…` or `@name`."""
        match = USER_REF.search(text.strip())
        if match:
            return match.group(1) or match.group(2)
        name = text.strip().removeprefix("@")
        if not name:
            return None
        try:
            return await self.deps.workspace.find_user(name)
        except WorkspaceError:
            log.exception("could not look up user %s", name)
            return None

    # -- timeline ---------------------------------------------------------------------------------
    @staticmethod
    def _timeline(
        session: AsyncSession,
        incident_id: int,
        kind: str,
        text: str,
        *,
        at: datetime,
        actor: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        session.add(
            TimelineEvent(
                incident_id=incident_id, at=at, kind=kind, actor=actor, text=text, data=data
            )
        )

    async def _record_once(
        self,
        incident_id: int,
        kind: str,
        text: str,
        *,
        at: datetime,
        source_key: str,
        actor: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> bool:
        """A timeline entry recorded once per (incident, source_key); True if it is new."""
        async with self.deps.db.transaction() as session:
            values = {
                "incident_id": incident_id,
                "at": at,
                "kind": kind,
                "actor": actor,
                "text": text,
                "data": data,
                "source_key": source_key[:255],
            }
            return await insert_or_ignore(session, TimelineEvent, values)

    async def timeline(self, incident_id: int) -> list[TimelineEvent]:
        async with self.deps.db.session() as session:
            return list(
                await session.scalars(
                    select(TimelineEvent)
                    .where(TimelineEvent.incident_id == incident_id)
                    .order_by(TimelineEvent.at, TimelineEvent.id)
                )
            )

    # -- saying it --------------------------------------------------------------------------------
    async def _say(self, incident: Incident, text: str) -> None:
        """A message in the incident channel; Slack trouble is logged, never raised."""
        if not incident.channel_id:
            return
        try:
            await self.deps.notifier.post(incident.channel_id, Message(text))
        except Exception:
            log.exception("could not post to the channel of %s", incident.key)

    async def _refresh(self, incident_id: int) -> Incident | None:
        """Topic, announcement and first message show the incident as it is now."""
        incident = await self.load(incident_id)
        if incident is None:
            return None
        if incident.channel_id:
            try:
                await self.deps.workspace.set_topic(incident.channel_id, messaging.topic(incident))
            except Exception:
                log.exception("could not set the topic of %s", incident.key)
        if incident.announcement_channel and incident.announcement_ts:
            ref = MessageRef(incident.announcement_channel, incident.announcement_ts)
            try:
                await self.deps.notifier.update(ref, messaging.announcement(incident))
            except Exception:
                log.exception("could not update the announcement of %s", incident.key)
        return incident

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
        if not title:
            return refused("an incident needs a title.")
        if len(title) > MAX_TITLE:
            return refused(f"the title is {len(title)} characters long; keep it under {MAX_TITLE}.")
        if severity is not None and severity not in SEVERITY_ORDER:
            return refused(f"severity {severity!r} is not one of P0, P1, P2, P3.")
        if services:
            chosen, unknown = self.check_services(services)
            if unknown:
                names = ", ".join(self.deps.catalog.service_names())
                return refused(f"unknown service {', '.join(unknown)}. Services: {names}.")
        else:
            chosen = self.recognise_services(f"{title}\n{description}")
        origin = dict(origin or {})
        suggestion = await self.suggest(title=title, description=description, services=chosen)
        if severity is None:
            severity = suggestion.severity
            why = f"Severity {severity} was suggested by opsbot. {suggestion.explain()}"
        elif severity == suggestion.severity:
            why = f"Severity {severity} chosen by {messaging.mention(declared_by)}; opsbot agrees."
        else:
            why = (
                f"Severity {severity} chosen by {messaging.mention(declared_by)} "
                f"(opsbot would suggest {suggestion.severity}: {'; '.join(suggestion.reasons)})."
            )
        now = self.deps.clock()
        detected_at = await self._detected_at(origin, now)
        async with self.deps.db.transaction() as session:
            incident = Incident(
                title=title,
                severity=severity,
                state="active",
                service=chosen[0] if chosen else None,
                services=chosen,
                description=description or None,
                deploy_id=origin.get("deploy_id")
                if isinstance(origin.get("deploy_id"), int)
                else None,
                commander=declared_by,
                declared_by=declared_by,
                declared_at=now,
                detected_at=detected_at,
                last_update_at=now,
                roles={},
            )
            session.add(incident)
            await session.flush()
            self._timeline(
                session,
                incident.id,
                "declared",
                f"{incident.key} declared as {severity} by {messaging.mention(declared_by)}: "
                f"{title}",
                at=now,
                actor=declared_by,
                data={"severity": severity, "services": chosen, "origin": origin or None},
            )
            self._timeline(
                session,
                incident.id,
                "severity",
                why,
                at=now,
                actor=declared_by,
                data={"severity": severity, "suggested": suggestion.severity},
            )
            if detected_at < now:
                self._timeline(
                    session,
                    incident.id,
                    "detected",
                    f"Detected: {origin.get('detected_by') or 'the first signal'}",
                    at=detected_at,
                    data=origin or None,
                )
            if "alert_id" in origin and isinstance(origin["alert_id"], int):
                await session.execute(
                    update(Alert)
                    .where(Alert.id == origin["alert_id"], Alert.incident_id.is_(None))
                    .values(incident_id=incident.id)
                )
        problems = await self._open_channel(incident)
        await self._announce(incident)
        # The first message exists before the pages, so the pages are told in its thread.
        await self._post_intro(incident, why, [], problems)
        paging_lines = await self._page(incident, previous=None, now=now)
        await self._save_details(
            incident, {"why": why, "paging": paging_lines, "problems": problems}
        )
        incident = await self._refresh(incident.id) or incident
        await self._update_intro(incident)
        where = f"<#{incident.channel_id}>" if incident.channel_id else "no channel (see above)"
        text = f":rotating_light: {incident.key} declared ({incident.severity}): {title} — {where}"
        if not incident.channel_id:
            text += "\n" + "\n".join(problems)
        return Result(True, Message(text), public=True)

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

    async def _open_channel(self, incident: Incident) -> list[str]:
        """Create `#<prefix>-<n>-<slug>`, invite people, set the topic; the problems, if any."""
        prefix = self.deps.catalog.slack.incident_channel_prefix
        workspace = self.deps.workspace
        channel_id: str | None = None
        name = ""
        problems: list[str] = []
        for attempt in range(1, 11):
            name = messaging.channel_name(prefix, incident.id, incident.title, attempt)
            try:
                channel_id = await workspace.create_channel(name)
                break
            except ChannelNameTaken:
                continue
            except WorkspaceError as exc:
                problems.append(f"the incident channel #{name} could not be created: {exc}")
                break
        else:
            problems.append(f"every name like #{name} is taken; no channel was created")
        if channel_id is None:
            return problems
        async with self.deps.db.transaction() as session:
            await session.execute(
                update(Incident)
                .where(Incident.id == incident.id)
                .values(channel_id=channel_id, channel_name=name)
            )
        incident.channel_id, incident.channel_name = channel_id, name
        people = [incident.declared_by, *await self._responders(incident.services or [])]
        try:
            problems.extend(await workspace.invite(channel_id, list(dict.fromkeys(people))))
        except WorkspaceError as exc:
            problems.append(f"inviting people failed: {exc}")
        return problems

    async def _responders(self, services: Sequence[str]) -> list[str]:
        """Service owners and, when the on-call directory exists, who is on call."""
        people: list[str] = []
        for name in services:
            service = self.deps.catalog.service(name)
            if service is not None:
                people.extend(service.owners)
        if self.deps.oncall is not None:
            for name in services or [None]:
                try:
                    people.extend(_slack_ids(await self.deps.oncall.who(name)))
                except OncallUnavailable as exc:  # not configured, or PagerDuty down: say why
                    log.warning("who is on call for %s is unknown: %s", name or "the default", exc)
                except Exception:
                    log.exception("could not find who is on call for %s", name or "the default")
        return people

    async def _post_intro(
        self, incident: Incident, why: str, paging: list[str], problems: list[str]
    ) -> None:
        if not incident.channel_id:
            return
        message = messaging.channel_intro(
            incident, suggestion=why, paging=paging, invite_problems=problems
        )
        try:
            ref = await self.deps.notifier.post(incident.channel_id, message)
        except Exception:
            log.exception("could not post the first message of %s", incident.key)
            return
        async with self.deps.db.transaction() as session:
            await session.execute(
                update(Incident).where(Incident.id == incident.id).values(message_ts=ref.ts)
            )
        incident.message_ts = ref.ts

    async def _save_details(self, incident: Incident, details: dict[str, Any]) -> None:
        async with self.deps.db.transaction() as session:
            await session.execute(
                update(Incident).where(Incident.id == incident.id).values(details=details)
            )
        incident.details = details

    async def _update_intro(self, incident: Incident) -> None:
        if not (incident.channel_id and incident.message_ts):
            return
        details = incident.details or {}
        message = messaging.channel_intro(
            incident,
            suggestion=details.get("why", ""),
            paging=list(details.get("paging") or []),
            invite_problems=list(details.get("problems") or []),
        )
        try:
            await self.deps.notifier.update(
                MessageRef(incident.channel_id, incident.message_ts), message
            )
        except Exception:
            log.exception("could not update the first message of %s", incident.key)

    async def _announce(self, incident: Incident) -> None:
        channel = self.deps.catalog.slack.channels.incidents
        try:
            ref = await self.deps.notifier.post(channel, messaging.announcement(incident))
        except Exception:
            log.exception("could not announce %s", incident.key)
            return
        async with self.deps.db.transaction() as session:
            await session.execute(
                update(Incident)
                .where(Incident.id == incident.id)
                .values(announcement_channel=ref.channel, announcement_ts=ref.ts)
            )
        incident.announcement_channel, incident.announcement_ts = ref.channel, ref.ts

    # -- paging -----------------------------------------------------------------------------------
    def _thread(self, incident: Incident) -> MessageRef | None:
        if incident.channel_id and incident.message_ts:
            return MessageRef(incident.channel_id, incident.message_ts, incident.message_ts)
        if incident.announcement_channel and incident.announcement_ts:
            return MessageRef(
                incident.announcement_channel, incident.announcement_ts, incident.announcement_ts
            )
        return None

    async def _pages(self, incident_id: int) -> list[Page]:
        async with self.deps.db.session() as session:
            return list(
                await session.scalars(
                    select(Page).where(
                        Page.subject_kind == "incident", Page.subject_id == incident_id
                    )
                )
            )

    async def _page(
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
        targets: list[str | None] = list(incident.services or []) or [None]
        lines: list[str] = []
        existing = {page.dedup_key: page for page in await self._pages(incident.id)}
        if isinstance(decision, NoPage):
            lines.append(decision.reason)
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
            await self._note_paging(incident, lines, values)
            return lines
        if incident.acknowledged_at is not None and previous is not None:
            lines.append(
                f"{decision.reason}; no new page: {incident.key} was acknowledged "
                f"{messaging.clock(incident.acknowledged_at)}"
            )
            await self._note_paging(incident, lines, {})
            return lines
        send_at = decision.when if isinstance(decision, PageAt) else None
        for service in targets:
            key = dedup_key(incident.id, service)
            page = existing.get(key)
            who = f"the on-call of {service}" if service else "the default on-call"
            if page is not None and page.state not in ("scheduled", "cancelled"):
                lines.append(f"{who} was already paged ({page.state}) as {key}")
                continue
            if page is not None and page.state == "scheduled" and send_at is not None:
                lines.append(f"{who} is already scheduled to be paged as {key}")
                continue
            lines.append(
                await self._send_page(incident, service, key, send_at, decision, replace=page)
            )
        await self._note_paging(incident, lines, {})
        return lines

    async def _send_page(
        self,
        incident: Incident,
        service: str | None,
        key: str,
        send_at: datetime | None,
        decision: PageNow | PageAt,
        *,
        replace: Page | None,
    ) -> str:
        who = f"the on-call of {service}" if service else "the default on-call"
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
                thread=self._thread(incident),
                send_at=send_at,
                details={"incident": incident.key, "severity": incident.severity},
            )
        except Exception as exc:
            log.exception("paging %s for %s failed", who, incident.key)
            return f"paging {who} failed: {type(exc).__name__}: {str(exc)[:200]}"
        if send_at is None:
            return f"{who} is paged now ({key}): {decision.reason}"
        return f"{who} will be paged ({key}): {decision.reason}"

    async def _note_paging(
        self, incident: Incident, lines: list[str], values: dict[str, Any]
    ) -> None:
        now = self.deps.clock()
        async with self.deps.db.transaction() as session:
            if values:
                await session.execute(
                    update(Incident).where(Incident.id == incident.id).values(**values)
                )
            for line in lines:
                self._timeline(session, incident.id, "page", f"Paging: {line}", at=now)
        for name, value in values.items():
            setattr(incident, name, value)

    # -- running it -------------------------------------------------------------------------------
    async def update(self, *, channel_id: str | None, text: str, user: str) -> Result:
        """A status update: timeline, channel, announcement; resets the reminder clock."""
        incident = await self._in_channel(channel_id, "update")
        if isinstance(incident, Result):
            return incident
        now = self.deps.clock()
        mitigated = text.lower().startswith("mitigated") and incident.mitigated_at is None
        values: dict[str, Any] = {"last_update_at": now, "reminded_at": None}
        if mitigated:
            values.update(mitigated_at=now, state="mitigated")
        async with self.deps.db.transaction() as session:
            result = cast(
                CursorResult[Any],
                await session.execute(
                    update(Incident)
                    .where(Incident.id == incident.id, Incident.state.in_(ACTIVE_STATES))
                    .values(**values)
                ),
            )
            if result.rowcount != 1:
                return refused(f"{incident.key} was resolved meanwhile.")
            self._timeline(
                session,
                incident.id,
                "update",
                f"Update from {messaging.mention(user)}: {text}",
                at=now,
                actor=user,
            )
            if mitigated:
                self._timeline(
                    session,
                    incident.id,
                    "mitigated",
                    f"Mitigated (said by {messaging.mention(user)})",
                    at=now,
                    actor=user,
                )
        await self._refresh(incident.id)
        return Result(
            True, Message(f":memo: *{incident.key} update* from <@{user}>: {text}"), public=True
        )

    async def set_severity(self, *, channel_id: str | None, severity: str, user: str) -> Result:
        incident = await self._in_channel(channel_id, "severity")
        if isinstance(incident, Result):
            return incident
        old = incident.severity
        if old == severity:
            return refused(f"{incident.key} is {severity} already.")
        now = self.deps.clock()
        async with self.deps.db.transaction() as session:
            result = cast(
                CursorResult[Any],
                await session.execute(
                    update(Incident)
                    .where(
                        Incident.id == incident.id,
                        Incident.severity == old,
                        Incident.state.in_(ACTIVE_STATES),
                    )
                    .values(severity=severity)
                ),
            )
            if result.rowcount != 1:
                return refused(f"{incident.key} changed meanwhile; look again and retry.")
            self._timeline(
                session,
                incident.id,
                "severity",
                f"Severity changed {old} → {severity} by {messaging.mention(user)}",
                at=now,
                actor=user,
                data={"from": old, "to": severity},
            )
        incident.severity = severity
        lines = await self._page(incident, previous=old, now=now)
        await self._refresh(incident.id)
        paging = "\n".join(f"Paging: {line}" for line in lines)
        return Result(
            True,
            Message(
                f":rotating_light: {incident.key} severity changed {old} → {severity} by "
                f"<@{user}>.\n{paging}"
            ),
            public=True,
        )

    async def set_commander(self, *, channel_id: str | None, who: str, user: str) -> Result:
        return await self.set_role(channel_id=channel_id, role="commander", who=who, user=user)

    async def set_role(self, *, channel_id: str | None, role: str, who: str, user: str) -> Result:
        incident = await self._in_channel(
            channel_id, "commander" if role == "commander" else "role"
        )
        if isinstance(incident, Result):
            return incident
        role = role.lower()
        if not ROLE_NAME.fullmatch(role):
            return refused(
                f"role '{role[:40]}' is not a role name: use letters, digits, '-' or '_' "
                "(e.g. scribe, comms, ops-lead)."
            )
        person = await self.resolve_user(who)
        if person is None:
            return refused(f"who is {who[:60]!r}? Mention a person, e.g. `@alice`.")
        now = self.deps.clock()
        async with self.deps.db.transaction() as session:
            current = await session.scalar(
                select(Incident).where(Incident.id == incident.id).with_for_update()
            )
            assert current is not None
            if role == "commander":
                before = current.commander
                current.commander = person
            else:
                roles = dict(current.roles or {})
                before = roles.get(role)
                roles[role] = person
                current.roles = roles
            text = f"{role.capitalize()}: {messaging.mention(person)}"
            if before and before != person:
                text += f" (was {messaging.mention(before)})"
            self._timeline(
                session,
                incident.id,
                "role",
                f"{text}, set by {messaging.mention(user)}",
                at=now,
                actor=user,
                data={"role": role, "user": person, "before": before},
            )
        if incident.channel_id:
            try:
                problems = await self.deps.workspace.invite(incident.channel_id, [person])
            except WorkspaceError as exc:
                problems = [str(exc)]
            for problem in problems:
                await self._say(incident, f":warning: {problem}")
        await self._refresh(incident.id)
        return Result(True, Message(f":busts_in_silhouette: {incident.key}: {text}."), public=True)

    async def resolve(self, *, channel_id: str | None, summary: str, user: str) -> Result:
        incident = await self._in_channel(channel_id, "resolve")
        if isinstance(incident, Result):
            return incident
        if incident.state == "resolved":
            return refused(
                f"{incident.key} was resolved already at {messaging.clock(incident.resolved_at)}."
            )
        now = self.deps.clock()
        due = now + self.deps.catalog.incidents.postmortem_due
        async with self.deps.db.transaction() as session:
            result = cast(
                CursorResult[Any],
                await session.execute(
                    update(Incident)
                    .where(Incident.id == incident.id, Incident.state.in_(ACTIVE_STATES))
                    .values(
                        state="resolved",
                        resolved_at=now,
                        mitigated_at=incident.mitigated_at or now,
                        postmortem_due_at=due,
                        summary=summary or None,
                    )
                ),
            )
            if result.rowcount != 1:
                return refused(f"{incident.key} was resolved meanwhile.")
            text = f"Resolved by {messaging.mention(user)}"
            if summary:
                text += f": {summary}"
            self._timeline(session, incident.id, "resolved", text, at=now, actor=user)
        page_lines = await self._resolve_pages(incident.id)
        incident = await self._refresh(incident.id) or incident
        await self._update_intro(incident)
        took = messaging.span(now - (incident.detected_at or incident.declared_at))
        lines = [
            f":white_check_mark: *{incident.key} resolved* by <@{user}> after {took}.",
            *([f"Summary: {summary}"] if summary else []),
            *page_lines,
            f"The blameless postmortem is due by {messaging.clock(due)} "
            f"({format_duration(self.deps.catalog.incidents.postmortem_due)}): "
            f"`/postmortem {incident.key}` drafts it.",
        ]
        return Result(True, Message("\n".join(lines)), public=True)

    async def _resolve_pages(self, incident_id: int) -> list[str]:
        lines = []
        if self.deps.paging is None:
            return lines
        for page in await self._pages(incident_id):
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
        if lines:
            now = self.deps.clock()
            async with self.deps.db.transaction() as session:
                for line in lines:
                    self._timeline(session, incident_id, "page", line, at=now)
        return lines

    async def acknowledge(self, *, incident_id: int, user: str) -> Result:
        """The Acknowledge button: recorded once; the pages are acknowledged (or cancelled)."""
        incident = await self.load(incident_id)
        if incident is None:
            return refused(f"there is no INC-{incident_id}.")
        now = self.deps.clock()
        async with self.deps.db.transaction() as session:
            result = cast(
                CursorResult[Any],
                await session.execute(
                    update(Incident)
                    .where(Incident.id == incident_id, Incident.acknowledged_at.is_(None))
                    .values(acknowledged_at=now, acknowledged_by=user)
                ),
            )
            if result.rowcount == 1:
                self._timeline(
                    session,
                    incident_id,
                    "acknowledged",
                    f"Acknowledged by {messaging.mention(user)}",
                    at=now,
                    actor=user,
                )
        if result.rowcount != 1:
            return refused(
                f"{incident.key} was acknowledged already by "
                f"{messaging.mention(incident.acknowledged_by)} at "
                f"{messaging.clock(incident.acknowledged_at)}."
            )
        lines = []
        if self.deps.paging is not None:
            for page in await self._pages(incident_id):
                if page.state not in ("scheduled", "triggered", "failed"):
                    continue
                try:
                    await self.deps.paging.acknowledge(page.dedup_key, user)
                    verb = "cancelled" if page.state == "scheduled" else "acknowledged"
                    lines.append(f"Page {page.dedup_key} {verb}.")
                except Exception as exc:
                    log.exception("could not acknowledge page %s", page.dedup_key)
                    lines.append(f"Acknowledging page {page.dedup_key} failed: {exc}")
        if lines:
            async with self.deps.db.transaction() as session:
                for line in lines:
                    self._timeline(session, incident_id, "page", line, at=now)
        incident = await self._refresh(incident_id) or incident
        await self._update_intro(incident)
        text = f":eyes: {incident.key} acknowledged by <@{user}>."
        return Result(True, Message("\n".join([text, *lines])), public=True)

    async def list_active(self) -> Result:
        async with self.deps.db.session() as session:
            incidents = list(
                await session.scalars(
                    select(Incident)
                    .where(Incident.state.in_(ACTIVE_STATES))
                    .order_by(Incident.severity, Incident.declared_at)
                )
            )
        return Result(True, messaging.list_message(incidents, self.deps.clock()))

    async def stats(self, *, args: Sequence[str]) -> Result:
        """MTTA and MTTR by severity over a period (`30d` by default)."""
        if len(args) > 1:
            return refused("usage: `/incident stats [<period>]`, e.g. `/incident stats 30d`.")
        period = timedelta(days=30)
        if args:
            try:
                period = parse_duration(args[0])
            except ValueError:
                return refused(f"'{args[0][:20]}' is not a period: write e.g. 7d, 30d, 12h.")
            if period <= timedelta(0):
                return refused("the period must be longer than 0s.")
        now = self.deps.clock()
        since = now - period
        async with self.deps.db.session() as session:
            incidents = list(
                await session.scalars(select(Incident).where(Incident.declared_at >= since))
            )
        return Result(True, stats_message(incidents, period, now))

    # -- the timeline from Slack and from events --------------------------------------------------
    async def record_message(
        self,
        *,
        channel_id: str,
        ts: str,
        by: str | None,
        how: str,
        text: str | None = None,
        author: str | None = None,
    ) -> bool:
        """A pinned (or 📌-marked) message of an incident channel joins the timeline once."""
        incident = await self.by_channel(channel_id)
        if incident is None:
            return False
        source_key = f"{channel_id}:{ts}"
        async with self.deps.db.session() as session:
            known = await session.scalar(
                select(TimelineEvent.id).where(
                    TimelineEvent.incident_id == incident.id,
                    TimelineEvent.source_key == source_key,
                )
            )
        if known is not None:
            return False  # pinned and 📌-marked, or a redelivery: once is enough
        if text is None:
            try:
                message = await self.deps.workspace.fetch_message(channel_id, ts)
            except WorkspaceError:
                log.exception("could not read the message %s in %s", ts, channel_id)
                message = None
            if message is None:
                return False
            text, author = message.text, message.user
        quote = text.strip()[:2000] or "(no text)"
        who = messaging.mention(author) if author else "someone"
        return await self._record_once(
            incident.id,
            "message",
            f"{who}: {quote}",
            at=message_time(ts),
            source_key=source_key,
            actor=author,
            data={"channel": channel_id, "ts": ts, "marked_by": by, "how": how},
        )

    async def on_event(self, event: ServiceEvent) -> None:
        """Deploys, rollbacks, alerts and pages of an active incident's services (or of it)."""
        async with self.deps.db.session() as session:
            incidents = list(
                await session.scalars(select(Incident).where(Incident.state.in_(ACTIVE_STATES)))
            )
        subject = _subject_of(event)
        for incident in incidents:
            mine = subject == incident.id or (
                subject is None
                and event.service is not None
                and event.service in (incident.services or [])
            )
            if not mine:
                continue
            key = event.key or f"{event.kind}:{event.at.isoformat()}:{event.text[:80]}"
            fresh = await self._record_once(
                incident.id,
                event.kind[:32],
                event.text,
                at=event.at,
                source_key=f"event:{key}",
                actor=event.actor,
                data={"service": event.service, **event.data},
            )
            if fresh:
                await self._after_event(incident, event)

    async def _after_event(self, incident: Incident, event: ServiceEvent) -> None:
        if event.kind == "rollback" and incident.mitigated_at is None:
            async with self.deps.db.transaction() as session:
                result = cast(
                    CursorResult[Any],
                    await session.execute(
                        update(Incident)
                        .where(
                            Incident.id == incident.id,
                            Incident.mitigated_at.is_(None),
                            Incident.state == "active",
                        )
                        .values(mitigated_at=event.at, state="mitigated")
                    ),
                )
                if result.rowcount == 1:
                    self._timeline(
                        session,
                        incident.id,
                        "mitigated",
                        f"Mitigated: {event.text}",
                        at=event.at,
                        actor=event.actor,
                    )
            if result.rowcount == 1:
                await self._say(
                    incident, f":adhesive_bandage: Marked mitigated because {event.text}."
                )
                await self._refresh(incident.id)
        elif event.kind == "page-acknowledged" and incident.acknowledged_at is None:
            async with self.deps.db.transaction() as session:
                await session.execute(
                    update(Incident)
                    .where(Incident.id == incident.id, Incident.acknowledged_at.is_(None))
                    .values(acknowledged_at=event.at, acknowledged_by=event.actor)
                )
            refreshed = await self._refresh(incident.id)
            if refreshed is not None:
                await self._update_intro(refreshed)

    # -- reminders --------------------------------------------------------------------------------
    async def remind(self, now: datetime | None = None) -> None:
        """Scheduler job: P0/P1 without an update for their period; P2 follow-ups due."""
        now = now or self.deps.clock()
        update_every = dict(self.deps.catalog.incidents.update_every)
        async with self.deps.db.session() as session:
            incidents = list(
                await session.scalars(select(Incident).where(Incident.state.in_(ACTIVE_STATES)))
            )
        for incident in incidents:
            period = reminder_due(
                severity=incident.severity,
                last_update=incident.last_update_at or incident.declared_at,
                last_reminder=incident.reminded_at,
                now=now,
                update_every=update_every,
            )
            if period is not None and await self._claim_reminder(incident, "reminded_at", now):
                since = incident.last_update_at or incident.declared_at
                await self._say(
                    incident,
                    f":alarm_clock: No update on {incident.key} ({incident.severity}) for "
                    f"{messaging.span(now - since)}; {incident.severity} incidents get one at "
                    f"least every {format_duration(period)}. "
                    f"{messaging.mention(incident.commander)}, please post "
                    "`/incident update <what is happening>`.",
                )
            due = incident.followup_due_at
            if (
                incident.severity == "P2"
                and due is not None
                and due <= now
                and incident.followup_reminded_at is None
                and await self._claim_reminder(incident, "followup_reminded_at", now)
            ):
                await self._say(
                    incident,
                    f":alarm_clock: The follow-up of {incident.key} (P2) was due "
                    f"{messaging.clock(due)}. {messaging.mention(incident.commander)}, "
                    "resolve it with `/incident resolve <summary>` or post an update.",
                )

    async def _claim_reminder(self, incident: Incident, column: str, now: datetime) -> bool:
        """Mark a reminder as sent, only if nobody else did (two replicas, one reminder)."""
        attribute = getattr(Incident, column)
        seen = getattr(incident, column)
        condition = attribute.is_(None) if seen is None else attribute == seen
        async with self.deps.db.transaction() as session:
            result = cast(
                CursorResult[Any],
                await session.execute(
                    update(Incident)
                    .where(Incident.id == incident.id, condition)
                    .values({column: now})
                ),
            )
            if result.rowcount == 1:
                self._timeline(
                    session,
                    incident.id,
                    "reminder",
                    "Follow-up reminder" if column == "followup_reminded_at" else "Update reminder",
                    at=now,
                )
            return result.rowcount == 1


def _subject_of(event: ServiceEvent) -> int | None:
    """The incident an event is about, when its data names one."""
    data = event.data or {}
    if data.get("subject_kind") == "incident" and isinstance(data.get("subject_id"), int):
        return int(data["subject_id"])
    if isinstance(data.get("incident_id"), int):
        return int(data["incident_id"])
    return None


def _slack_ids(oncall: Any) -> list[str]:
    """Slack user ids in whatever the on-call directory answers (primary, secondary, …)."""
    found: list[str] = []

    def visit(value: Any, depth: int) -> None:
        if depth > 3 or value is None:
            return
        if isinstance(value, str):
            if re.fullmatch(r"[UW][A-Z0-9]{2,}", value):
                found.append(value)
            return
        if isinstance(value, dict):
            for item in value.values():
                visit(item, depth + 1)
            return
        if isinstance(value, list | tuple):
            for item in value:
                visit(item, depth + 1)
            return
        for name in ("slack_id", "slack_user", "user_id", "primary", "secondary"):
            if hasattr(value, name):
                visit(getattr(value, name), depth + 1)

    # The primary is the one on call; the secondary is who the page escalates to.
    visit(getattr(oncall, "primary", oncall), 0)
    return list(dict.fromkeys(found))


def _mean(deltas: list[timedelta]) -> timedelta | None:
    if not deltas:
        return None
    return sum(deltas, timedelta(0)) / len(deltas)


def stats_message(incidents: list[Incident], period: timedelta, now: datetime) -> Message:
    """MTTA (detected → acknowledged) and MTTR (detected → resolved) by severity."""
    rows = [f"{'sev':<4}{'count':>6}{'open':>6}{'MTTA':>10}{'MTTR':>10}"]
    for severity in SEVERITY_ORDER:
        chosen = [i for i in incidents if i.severity == severity]
        if not chosen:
            rows.append(f"{severity:<4}{0:>6}{0:>6}{'—':>10}{'—':>10}")
            continue
        acked = [
            i.acknowledged_at - (i.detected_at or i.declared_at)
            for i in chosen
            if i.acknowledged_at is not None
        ]
        resolved = [
            i.resolved_at - (i.detected_at or i.declared_at)
            for i in chosen
            if i.resolved_at is not None
        ]
        still_open = sum(1 for i in chosen if i.state != "resolved")
        rows.append(
            f"{severity:<4}{len(chosen):>6}{still_open:>6}"
            f"{messaging.span(_mean(acked)):>10}{messaging.span(_mean(resolved)):>10}"
        )
    text = (
        f"*Incidents declared in the last {format_duration(period)}* "
        f"(since {messaging.clock(now - period)}): {len(incidents)}"
    )
    return Message(
        text,
        preformatted="\n".join(rows),
        context="MTTA: detected → acknowledged; MTTR: detected → resolved; "
        "averages over the incidents that got there",
    )
