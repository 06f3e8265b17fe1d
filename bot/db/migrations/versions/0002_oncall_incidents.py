"""On-call pages with their deadlines; incidents' channel, roles and times; postmortems.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

PAGE_STATES = ("scheduled", "triggered", "failed", "acknowledged", "resolved", "cancelled")


def _incident_columns() -> tuple[sa.Column[object], ...]:
    return (
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("services", JSON_TYPE, nullable=True),
        sa.Column("roles", JSON_TYPE, nullable=True),
        sa.Column("channel_name", sa.String(80), nullable=True),
        sa.Column("announcement_channel", sa.String(64), nullable=True),
        sa.Column("announcement_ts", sa.String(32), nullable=True),
        sa.Column("detected_at", TIMESTAMP, nullable=True),
        sa.Column("acknowledged_at", TIMESTAMP, nullable=True),
        sa.Column("last_update_at", TIMESTAMP, nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("followup_due_at", TIMESTAMP, nullable=True),
        sa.Column("postmortem_done_at", TIMESTAMP, nullable=True),
        sa.Column("postmortem_done_by", sa.String(64), nullable=True),
        sa.Column("postmortem_reminder", sa.String(16), nullable=True),
    )


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        for column in _incident_columns():
            batch.add_column(column)

    with op.batch_alter_table("timeline_events") as batch:
        batch.add_column(sa.Column("source_key", sa.String(255), nullable=True))
    op.create_index(
        op.f("uq_timeline_events_incident_id_source_key"),
        "timeline_events",
        ["incident_id", "source_key"],
        unique=True,
    )

    op.create_table(
        "pages",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dedup_key", sa.String(255), nullable=False),
        sa.Column("service", sa.String(128), nullable=True),
        sa.Column("subject_kind", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("send_at", TIMESTAMP, nullable=True),
        sa.Column("sent_at", TIMESTAMP, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TIMESTAMP, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("acknowledged_at", TIMESTAMP, nullable=True),
        sa.Column("acknowledged_by", sa.String(64), nullable=True),
        sa.Column("engaged_at", TIMESTAMP, nullable=True),
        sa.Column("engaged_by", sa.String(64), nullable=True),
        sa.Column("resolved_at", TIMESTAMP, nullable=True),
        sa.Column("ack_deadline", TIMESTAMP, nullable=True),
        sa.Column("engage_deadline", TIMESTAMP, nullable=True),
        sa.Column("escalation_level", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("channel", sa.String(64), nullable=True),
        sa.Column("thread_ts", sa.String(32), nullable=True),
        sa.Column("pd_incident_id", sa.String(64), nullable=True),
        sa.Column("details", JSON_TYPE, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TIMESTAMP, nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(
            f"state IN ({', '.join(repr(s) for s in PAGE_STATES)})", name=op.f("ck_pages_state")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pages")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_pages_dedup_key")),
    )
    op.create_index(op.f("ix_pages_state"), "pages", ["state"])

    op.create_table(
        "postmortems",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("markdown", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False, server_default=sa.func.now()),
        sa.Column("file_id", sa.String(64), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_postmortems_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_postmortems")),
    )
    op.create_index(op.f("ix_postmortems_incident_id"), "postmortems", ["incident_id"])


def downgrade() -> None:
    op.drop_table("postmortems")
    op.drop_table("pages")
    op.drop_index(op.f("uq_timeline_events_incident_id_source_key"), "timeline_events")
    with op.batch_alter_table("timeline_events") as batch:
        batch.drop_column("source_key")
    with op.batch_alter_table("incidents") as batch:
        for column in reversed(_incident_columns()):
            batch.drop_column(column.name)
