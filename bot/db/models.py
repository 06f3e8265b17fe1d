"""The database schema of opsbot: every piece of state the bot keeps lives in these tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names, so later migrations (and SQLite batch mode) can refer to them.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

DEPLOY_STATES = (
    "requested",
    "awaiting_approval",
    "running",
    "monitoring",
    "interrupted",
    "succeeded",
    "failed",
    "aborted",
    "rolled_back",
    "rejected",
    "expired",
)
DEPLOY_FINAL_STATES = ("succeeded", "failed", "aborted", "rolled_back", "rejected", "expired")
APPROVAL_DECISIONS = ("approved", "rejected")
INCIDENT_SEVERITIES = ("P0", "P1", "P2", "P3")
INCIDENT_STATES = ("active", "mitigated", "resolved")
ALERT_STATES = ("pending", "firing", "acknowledged", "resolved")
ALERT_OPEN_STATES = ("pending", "firing", "acknowledged")


def utc_now() -> datetime:
    """The current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


def _in_list(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware, on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: opsbot stores timezone-aware UTC times")
        value = value.astimezone(UTC)
        # SQLite has no time zones: store naive UTC, re-attach UTC when reading.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# JSONB on PostgreSQL (comparable, indexable), JSON text elsewhere.
JSONType = JSON().with_variant(JSONB(), "postgresql")
# BIGINT identity on PostgreSQL; SQLite needs INTEGER PRIMARY KEY for its rowid alias.
BigID = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base carrying the shared metadata and naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
    }


class SlackRequest(Base):
    """A Slack request already handled; its key makes retries and double clicks no-ops."""

    __tablename__ = "slack_requests"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(
        default=utc_now, server_default=func.now(), index=True
    )


class AuditEntry(Base):
    """One line of the append-only audit log: who did what, where, and how it ended."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_action_at", "action", "at"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now(), index=True)
    actor: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any] | None]
    request_id: Mapped[str | None] = mapped_column(String(255))

    def __repr__(self) -> str:
        return (
            f"AuditEntry(id={self.id}, actor={self.actor!r}, action={self.action!r}, "
            f"outcome={self.outcome!r})"
        )


class Deploy(Base):
    """A deploy (or a rollback, when rollback_of_id is set) of one service to one environment."""

    __tablename__ = "deploys"
    __table_args__ = (
        CheckConstraint(_in_list("state", DEPLOY_STATES), name="state"),
        Index("ix_deploys_service_environment_created_at", "service", "environment", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    service: Mapped[str] = mapped_column(String(128))
    environment: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(255))
    previous_version: Mapped[str | None] = mapped_column(String(255))
    strategy: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(32), default="requested", index=True)
    requested_by: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str | None] = mapped_column(String(64))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    message_ts: Mapped[str | None] = mapped_column(String(32))
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    reason: Mapped[str | None] = mapped_column(Text)
    baseline: Mapped[dict[str, Any] | None]
    details: Mapped[dict[str, Any] | None]
    rollback_of_id: Mapped[int | None] = mapped_column(
        ForeignKey("deploys.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    approval_expires_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(
        default=utc_now, onupdate=utc_now, server_default=func.now()
    )

    def __repr__(self) -> str:
        return (
            f"Deploy(id={self.id}, {self.service}@{self.environment} {self.version!r}, "
            f"state={self.state!r})"
        )


class Approval(Base):
    """One person's decision on a deploy that needs approval; one decision per person."""

    __tablename__ = "approvals"
    __table_args__ = (
        UniqueConstraint("deploy_id", "approver"),
        CheckConstraint(_in_list("decision", APPROVAL_DECISIONS), name="decision"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    deploy_id: Mapped[int] = mapped_column(ForeignKey("deploys.id", ondelete="CASCADE"))
    approver: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())


class Lock(Base):
    """Who holds a service in an environment; the primary key makes the lock exclusive."""

    __tablename__ = "locks"

    service: Mapped[str] = mapped_column(String(128), primary_key=True)
    environment: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    deploy_id: Mapped[int | None] = mapped_column(ForeignKey("deploys.id", ondelete="SET NULL"))
    reason: Mapped[str | None] = mapped_column(Text)
    sticky: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    acquired_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
    expires_at: Mapped[datetime | None]


class Incident(Base):
    """A declared incident with its severity, commander, channel and lifecycle times."""

    __tablename__ = "incidents"
    __table_args__ = (
        CheckConstraint(_in_list("severity", INCIDENT_SEVERITIES), name="severity"),
        CheckConstraint(_in_list("state", INCIDENT_STATES), name="state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(String(255))
    severity: Mapped[str] = mapped_column(String(2))
    state: Mapped[str] = mapped_column(String(16), default="active", index=True)
    service: Mapped[str | None] = mapped_column(String(128))
    deploy_id: Mapped[int | None] = mapped_column(ForeignKey("deploys.id", ondelete="SET NULL"))
    channel_id: Mapped[str | None] = mapped_column(String(64))
    commander: Mapped[str | None] = mapped_column(String(64))
    declared_by: Mapped[str] = mapped_column(String(64))
    declared_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
    mitigated_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    postmortem_due_at: Mapped[datetime | None]
    description: Mapped[str | None] = mapped_column(Text)
    services: Mapped[list[str] | None] = mapped_column(JSONType)
    roles: Mapped[dict[str, Any] | None]  # role -> user id (commander is its own column)
    channel_name: Mapped[str | None] = mapped_column(String(80))
    announcement_channel: Mapped[str | None] = mapped_column(String(64))
    announcement_ts: Mapped[str | None] = mapped_column(String(32))
    detected_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    last_update_at: Mapped[datetime | None]
    summary: Mapped[str | None] = mapped_column(Text)
    followup_due_at: Mapped[datetime | None]
    postmortem_done_at: Mapped[datetime | None]
    postmortem_done_by: Mapped[str | None] = mapped_column(String(64))
    postmortem_reminder: Mapped[str | None] = mapped_column(String(16))  # last reminder sent
    # Added by 0004: who acknowledged, the channel's first message (with the Acknowledge
    # button), and the last update / follow-up reminders (one per period, guarded updates).
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    message_ts: Mapped[str | None] = mapped_column(String(32))
    reminded_at: Mapped[datetime | None]
    followup_reminded_at: Mapped[datetime | None]
    details: Mapped[dict[str, Any] | None]  # what the first message explained (why, paging)
    updated_at: Mapped[datetime] = mapped_column(
        default=utc_now, onupdate=utc_now, server_default=func.now()
    )

    @property
    def key(self) -> str:
        """The name people use: INC-<id>."""
        return f"INC-{self.id}"


class TimelineEvent(Base):
    """Something that happened during an incident, in order, for the timeline and postmortem."""

    __tablename__ = "timeline_events"
    __table_args__ = (
        Index("ix_timeline_events_incident_id_at", "incident_id", "at"),
        # A pin or 📌 reaction is recorded once: source_key is "<channel>:<message ts>".
        Index(
            "uq_timeline_events_incident_id_source_key", "incident_id", "source_key", unique=True
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str | None] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None]
    source_key: Mapped[str | None] = mapped_column(String(255))


class Alert(Base):
    """A metric rule breaching for a service, with its on-call deadlines and Slack message."""

    __tablename__ = "alerts"
    __table_args__ = (
        CheckConstraint(_in_list("state", ALERT_STATES), name="state"),
        Index("ix_alerts_service_state", "service", "state"),
        # At most one open alert per (service, rule): a second replica or a retried poll cannot
        # open a duplicate, it gets an IntegrityError instead.
        Index(
            "uq_alerts_service_rule_open",
            "service",
            "rule",
            unique=True,
            sqlite_where=text(_in_list("state", ALERT_OPEN_STATES)),
            postgresql_where=text(_in_list("state", ALERT_OPEN_STATES)),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    service: Mapped[str] = mapped_column(String(128))
    rule: Mapped[str] = mapped_column(String(128))
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
    fired_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    acknowledged_at: Mapped[datetime | None]
    channel: Mapped[str | None] = mapped_column(String(64))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    message_ts: Mapped[str | None] = mapped_column(String(32))
    dedup_key: Mapped[str] = mapped_column(String(255), unique=True)
    ack_deadline: Mapped[datetime | None]
    engage_deadline: Mapped[datetime | None]
    escalation_level: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    silenced_until: Mapped[datetime | None]
    deploy_id: Mapped[int | None] = mapped_column(ForeignKey("deploys.id", ondelete="SET NULL"))
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id", ondelete="SET NULL"))
    details: Mapped[dict[str, Any] | None]
    updated_at: Mapped[datetime] = mapped_column(
        default=utc_now, onupdate=utc_now, server_default=func.now()
    )
    # What the Slack message shows now ("firing", "acknowledged|U1", …); differs from what it
    # should show until the message is updated, so a failed update is retried by the next poll.
    message_state: Mapped[str | None] = mapped_column(String(128))


PAGE_STATES = ("scheduled", "triggered", "failed", "acknowledged", "resolved", "cancelled")


class Page(Base):
    """One page to an on-call (an alert's or an incident's), with its SLA deadlines.

    `scheduled` waits for `send_at` (a P1 outside business hours); `failed` is retried at
    `next_attempt_at`; acknowledgment and engagement deadlines apply once it is `triggered`.
    """

    __tablename__ = "pages"
    __table_args__ = (CheckConstraint(_in_list("state", PAGE_STATES), name="state"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    dedup_key: Mapped[str] = mapped_column(String(255), unique=True)
    service: Mapped[str | None] = mapped_column(String(128))
    subject_kind: Mapped[str] = mapped_column(String(16))  # "alert" | "incident" | "certificate"
    subject_id: Mapped[int | None] = mapped_column(Integer)
    summary: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)
    send_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    engaged_at: Mapped[datetime | None]
    engaged_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None]
    ack_deadline: Mapped[datetime | None]
    engage_deadline: Mapped[datetime | None]
    escalation_level: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    channel: Mapped[str | None] = mapped_column(String(64))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    pd_incident_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        default=utc_now, onupdate=utc_now, server_default=func.now()
    )


class Postmortem(Base):
    """A rendered postmortem document of an incident; the newest one is current."""

    __tablename__ = "postmortems"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    markdown: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
    file_id: Mapped[str | None] = mapped_column(String(64))
    path: Mapped[str | None] = mapped_column(Text)


class MetricOutage(Base):
    """A metric query that cannot be answered, announced once; deleted when it answers again."""

    __tablename__ = "metric_outages"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    since: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
    reason: Mapped[str] = mapped_column(Text)


class Replica(Base):
    """A running opsbot process: its heartbeat and the deploys it runs now.

    A deploy that no live replica lists (and that has not changed for a while) lost its process:
    the elected replica marks it interrupted and offers Resume / Roll back / Release lock.
    """

    __tablename__ = "replicas"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utc_now, server_default=func.now())
    heartbeat_at: Mapped[datetime] = mapped_column(
        default=utc_now, server_default=func.now(), index=True
    )
    deploys: Mapped[list[int] | None] = mapped_column(JSONType)


APP_TABLES: tuple[str, ...] = tuple(table.name for table in Base.metadata.sorted_tables)
"""Every application table, parents first (alembic_version is not one of them)."""
