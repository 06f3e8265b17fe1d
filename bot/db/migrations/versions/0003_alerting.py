"""Alerting: one open alert per (service, rule), what each alert message shows, metric outages.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
OPEN = "state IN ('pending', 'firing', 'acknowledged')"


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("message_state", sa.String(128), nullable=True))
    op.create_index(
        "uq_alerts_service_rule_open",
        "alerts",
        ["service", "rule"],
        unique=True,
        sqlite_where=sa.text(OPEN),
        postgresql_where=sa.text(OPEN),
    )
    op.create_table(
        "metric_outages",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("since", TIMESTAMP, nullable=False, server_default=sa.func.now()),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_metric_outages")),
    )


def downgrade() -> None:
    op.drop_table("metric_outages")
    op.drop_index("uq_alerts_service_rule_open", "alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("message_state")
