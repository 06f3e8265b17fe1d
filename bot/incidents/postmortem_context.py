"""What the postmortem template sees: the incident, its key times and measures, its timeline,
and the deploys, alerts and pages around it, as plain rows (no database objects)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import Alert, Deploy, Incident, Page, TimelineEvent
from bot.incidents.states import IncidentState

# Deploys this long before detection count as "involved": the usual suspect is the last change.
LOOKBACK = timedelta(hours=1)

# The runbook's "Incident Severity Levels".
SEVERITY_MEANING = {
    "P0": "Critical: complete outage, data loss or security breach",
    "P1": "High: major feature degradation, significant user impact",
    "P2": "Medium: minor feature issue, small user impact",
    "P3": "Low: cosmetic issue, no user impact",
}


@dataclass(frozen=True)
class IncidentView:
    key: str
    title: str
    severity: str
    severity_meaning: str
    state: str
    active: bool
    services: list[str]
    summary: str | None
    description: str | None
    channel_name: str | None


@dataclass(frozen=True)
class KeyTime:
    label: str
    at: datetime | None
    note: str = ""


@dataclass(frozen=True)
class Measure:
    label: str
    value: timedelta | None
    meaning: str


@dataclass(frozen=True)
class TimelineRow:
    at: datetime
    kind: str
    who: str
    text: str


@dataclass(frozen=True)
class DeployRow:
    id: int
    kind: str  # "deploy" | "rollback"
    service: str
    environment: str
    version: str
    previous_version: str | None
    state: str
    created_at: datetime
    finished_at: datetime | None
    reason: str | None
    before_detection: bool


@dataclass(frozen=True)
class AlertRow:
    rule: str
    service: str
    severity: str
    state: str
    value: float | None
    threshold: float | None
    started_at: datetime
    fired_at: datetime | None
    acknowledged_at: datetime | None
    resolved_at: datetime | None


@dataclass(frozen=True)
class PageRow:
    subject: str
    service: str | None
    severity: str
    state: str
    sent_at: datetime | None
    acknowledged_at: datetime | None
    time_to_acknowledge: timedelta | None
    escalation_level: int


def role_labels(incident: Incident) -> dict[str, str]:
    """User id -> the role they held (commander first); roles, not people, in the document."""
    labels: dict[str, str] = {}
    if incident.commander:
        labels[incident.commander] = "incident commander"
    for role, holders in (incident.roles or {}).items():
        for user in holders if isinstance(holders, list) else [holders]:
            if isinstance(user, str) and user:
                labels.setdefault(user, str(role).replace("_", " "))
    if incident.declared_by:
        labels.setdefault(incident.declared_by, "declarer")
    return labels


def incident_services(incident: Incident) -> list[str]:
    names = list(incident.services or [])
    if incident.service and incident.service not in names:
        names.insert(0, incident.service)
    return names


async def build_context(
    session: AsyncSession,
    incident: Incident,
    now: datetime,
    *,
    draft: int,
    due_rule: timedelta,
) -> dict[str, Any]:
    """The template's variables for draft number `draft` of the incident's postmortem."""
    services = incident_services(incident)
    detected = incident.detected_at or incident.declared_at
    end = incident.resolved_at or now
    window_start = detected - LOOKBACK
    events, deploys, alerts, pages = await _records(session, incident, services, window_start, end)
    state = incident.state
    return {
        "incident": IncidentView(
            key=incident.key,
            title=incident.title,
            severity=incident.severity,
            severity_meaning=SEVERITY_MEANING.get(incident.severity, ""),
            state=state,
            active=state != IncidentState.RESOLVED,
            services=services,
            summary=incident.summary,
            description=incident.description,
            channel_name=incident.channel_name,
        ),
        "key_times": [
            KeyTime("Detected", detected, "" if incident.detected_at else "(declaration)"),
            KeyTime("Declared", incident.declared_at),
            KeyTime("Acknowledged", incident.acknowledged_at),
            KeyTime("Mitigated", incident.mitigated_at),
            KeyTime("Resolved", incident.resolved_at, "" if incident.resolved_at else state),
        ],
        "measures": _measures(incident, detected, now),
        "timeline": [
            TimelineRow(event.at, event.kind, event.actor or "", event.text) for event in events
        ],
        "deploys": [_deploy_row(deploy, detected) for deploy in deploys],
        "alerts": [_alert_row(alert) for alert in alerts],
        "pages": [_page_row(page) for page in pages],
        "roles": _roles_held(incident),
        "window_start": window_start,
        "window_end": end,
        "lookback": LOOKBACK,
        "due_at": incident.postmortem_due_at,
        "due_rule": due_rule,
        "generated_at": now,
        "draft": draft,
    }


async def _records(
    session: AsyncSession,
    incident: Incident,
    services: list[str],
    window_start: datetime,
    end: datetime,
) -> tuple[list[TimelineEvent], list[Deploy], list[Alert], list[Page]]:
    """The timeline, and the deploys, alerts and pages of the incident's services in the window."""
    events = await session.scalars(
        select(TimelineEvent)
        .where(TimelineEvent.incident_id == incident.id)
        .order_by(TimelineEvent.at, TimelineEvent.id)
    )
    deploys = await session.scalars(
        select(Deploy)
        .where(
            Deploy.service.in_(services),
            Deploy.created_at >= window_start,
            Deploy.created_at <= end,
            Deploy.dry_run.is_(False),
        )
        .order_by(Deploy.created_at, Deploy.id)
    )
    alerts = list(
        await session.scalars(
            select(Alert)
            .where(
                or_(
                    Alert.incident_id == incident.id,
                    Alert.service.in_(services)
                    & (Alert.started_at >= window_start)
                    & (Alert.started_at <= end),
                )
            )
            .order_by(Alert.started_at, Alert.id)
        )
    )
    alert_ids = [alert.id for alert in alerts]
    pages = await session.scalars(
        select(Page)
        .where(
            or_(
                (Page.subject_kind == "incident") & (Page.subject_id == incident.id),
                (Page.subject_kind == "alert") & Page.subject_id.in_(alert_ids),
            )
        )
        .order_by(Page.created_at, Page.id)
    )
    return list(events), list(deploys), alerts, list(pages)


def _measures(incident: Incident, detected: datetime, now: datetime) -> list[Measure]:
    def since_detection(at: datetime | None) -> timedelta | None:
        return None if at is None else at - detected

    return [
        Measure(
            "Time to acknowledge (MTTA)",
            since_detection(incident.acknowledged_at),
            "detection to the first acknowledgment",
        ),
        Measure(
            "Time to mitigate",
            since_detection(incident.mitigated_at),
            "detection to user impact stopping",
        ),
        Measure(
            "Time to resolve (MTTR)",
            since_detection(incident.resolved_at),
            "detection to resolution",
        ),
        Measure(
            "Duration",
            (incident.resolved_at or now) - detected,
            "detection to resolution" if incident.resolved_at else "detection to now (active)",
        ),
    ]


def _roles_held(incident: Incident) -> list[str]:
    roles = ["incident commander"] if incident.commander else []
    roles += [str(role).replace("_", " ") for role in (incident.roles or {})]
    return list(dict.fromkeys(roles))


def _deploy_row(deploy: Deploy, detected: datetime) -> DeployRow:
    rollback = deploy.rollback_of_id is not None or deploy.strategy == "rollback"
    return DeployRow(
        id=deploy.id,
        kind="rollback" if rollback else "deploy",
        service=deploy.service,
        environment=deploy.environment,
        version=deploy.version,
        previous_version=deploy.previous_version,
        state=deploy.state.replace("_", " "),
        created_at=deploy.created_at,
        finished_at=deploy.finished_at,
        reason=deploy.reason,
        before_detection=deploy.created_at < detected,
    )


def _alert_row(alert: Alert) -> AlertRow:
    return AlertRow(
        rule=alert.rule,
        service=alert.service,
        severity=alert.severity,
        state=alert.state,
        value=alert.value,
        threshold=alert.threshold,
        started_at=alert.started_at,
        fired_at=alert.fired_at,
        acknowledged_at=alert.acknowledged_at,
        resolved_at=alert.resolved_at,
    )


def _page_row(page: Page) -> PageRow:
    return PageRow(
        subject=f"{page.subject_kind} {page.subject_id}" if page.subject_id else page.subject_kind,
        service=page.service,
        severity=page.severity,
        state=page.state,
        sent_at=page.sent_at,
        acknowledged_at=page.acknowledged_at,
        time_to_acknowledge=(
            page.acknowledged_at - page.sent_at if page.acknowledged_at and page.sent_at else None
        ),
        escalation_level=page.escalation_level,
    )
