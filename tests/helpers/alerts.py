"""The alerting tests' Prometheus query and poll step, and the alert rows they produce."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bot.db.models import Alert
from bot.db.session import Database

STEP = timedelta(seconds=15)  # the tests' metrics.poll_interval
ERRORS = "sum by (service) (rate(errors[1m])) / sum by (service) (rate(requests[1m]))"


async def alerts(db: Database) -> list[Alert]:
    """Every alert row, oldest first."""
    async with db.session() as session:
        return list(await session.scalars(select(Alert).order_by(Alert.id)))
