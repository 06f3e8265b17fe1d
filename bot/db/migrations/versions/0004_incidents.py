"""Incidents: who acknowledged, the channel's first message, the reminder marks.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("acknowledged_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("message_ts", sa.String(32), nullable=True))
        batch.add_column(sa.Column("reminded_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("followup_reminded_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("details", JSON_TYPE, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("details")
        batch.drop_column("followup_reminded_at")
        batch.drop_column("reminded_at")
        batch.drop_column("message_ts")
        batch.drop_column("acknowledged_by")
