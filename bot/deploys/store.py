"""The deploy domain's one way to its table: rows read, written and moved between states.

Why it is written this way: a deploy's hot path is measured (bench/deploy_overhead.py, 50
deploys at once; bench/README.md has the table). Building a statement with its values cost more
than running it, an ORM session and a transaction around one statement cost three round trips on
PostgreSQL instead of one, and creating the deploy, its lock and its audit entry took five round
trips. So the statements here are built once and run with parameters, single statements commit
on their own (`Database.autocommit`), and on PostgreSQL a new deploy is one `WITH` statement:
together they took the p99 to the first write from 1.19–1.36 s to 0.72–1.17 s and the CPU per
deploy from 16–23 ms to 12–17 ms. Everything else in bot/deploys talks to `DeployStore` and
`move`, never to these statements.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Select, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Executable

from bot import audit
from bot.db.models import AuditEntry, Deploy, Lock, utc_now
from bot.db.session import Database
from bot.db.statements import insert_or_ignore
from bot.deploys import locks
from bot.deploys.states import DeployEvent, DeployState, destination, sources

# The columns a new deploy is created with (its other columns start empty).
COLUMNS = (
    "service",
    "environment",
    "version",
    "previous_version",
    "strategy",
    "state",
    "requested_by",
    "dry_run",
    "details",
    "created_at",
    "updated_at",
    "started_at",
    "approval_expires_at",
    "rollback_of_id",
)


class DeployStore:
    """Deploy rows: create (with the lock and the audit entry), load, save, and read history."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, values: Mapping[str, Any], *, action: str, detail: Mapping[str, Any]
    ) -> int | None:
        """A new deploy holding its lock (see `insert_holding_lock`); None when it is taken."""
        return await insert_holding_lock(self.db, values, action=action, detail=detail)

    async def load(self, deploy_id: int) -> Deploy | None:
        async with self.db.session() as session:
            return await session.get(Deploy, deploy_id)

    async def save(self, deploy: Deploy, **values: Any) -> None:
        """Write `values` to the deploy's row and to `deploy` (not its state: see `move`)."""
        async with self.db.autocommit() as connection:
            await connection.execute(
                _UPDATE_DEPLOY, {"deploy_id": deploy.id, "updated_at": utc_now(), **values}
            )
        for key, value in values.items():
            setattr(deploy, key, value)

    async def move(self, deploy_id: int, event: DeployEvent, **values: Any) -> bool:
        """`move` in a transaction of its own."""
        async with self.db.transaction() as session:
            return await move(session, deploy_id, event, **values)

    async def succeeded_versions(self, service: str, environment: str) -> list[str]:
        """The versions that succeeded there, newest first."""
        async with self.db.session() as session:
            return list(await session.scalars(_succeeded(Deploy.version, service, environment)))

    async def last_succeeded(self, service: str, environment: str) -> Deploy | None:
        """The deploy whose version runs there now: the newest that succeeded."""
        async with self.db.session() as session:
            return await session.scalar(_succeeded(Deploy, service, environment).limit(1))

    async def lock_holder(self, service: str, environment: str) -> locks.LockHolder | None:
        return await locks.holder_of(self.db, service=service, environment=environment)


def _succeeded(what: Any, service: str, environment: str) -> Select[Any]:
    return (
        select(what)
        .where(
            Deploy.service == service,
            Deploy.environment == environment,
            Deploy.state == DeployState.SUCCEEDED,
            Deploy.dry_run.is_(False),
        )
        .order_by(Deploy.finished_at.desc(), Deploy.id.desc())
    )


async def move(session: AsyncSession, deploy_id: int, event: DeployEvent, **values: Any) -> bool:
    """The database guard of every state change: the deploy moves as `event` says
    (bot/deploys/states.py) only if it is, at this moment, in a state `event` moves from; True
    if it moved. A double click, a Slack retry or a second replica loses here."""
    statement = (
        update(Deploy)
        .where(Deploy.id == deploy_id, Deploy.state.in_(list(sources(event))))
        .values(state=destination(event), updated_at=utc_now(), **values)
    )
    result = cast(CursorResult[Any], await session.execute(statement))
    return result.rowcount == 1


def revive(value: Any) -> Any:
    """The inverse of `jsonable` for what the engine stored."""
    if isinstance(value, dict):
        if set(value) == {"seconds"}:
            return timedelta(seconds=value["seconds"])
        return {k: revive(v) for k, v in value.items()}
    if isinstance(value, list):
        return [revive(v) for v in value]
    return value


def jsonable(value: Any) -> Any:
    """Step params hold durations; JSON columns want plain values."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "total_seconds"):
        return {"seconds": value.total_seconds()}
    return value


# Built once, run with each deploy's values as parameters.
_UPDATE_DEPLOY = update(Deploy).where(Deploy.id == bindparam("deploy_id"))


async def insert_holding_lock(
    db: Database, values: Mapping[str, Any], *, action: str, detail: Mapping[str, Any]
) -> int | None:
    """Insert a deploy (`values` has every name in COLUMNS) that takes the lock of its service
    and environment, with an audit entry `action` by its requester whose detail is `detail` plus
    the deploy's id. Returns the new id, or None when someone else holds the lock (then nothing
    was written).

    PostgreSQL does it in one statement (three inserts in a WITH query, which commits alone):
    one round trip instead of five on the path every deploy takes (bench/deploy_overhead.py).
    Elsewhere it is a transaction of three statements.
    """
    row = {name: values[name] for name in COLUMNS}
    if db.dialect == "postgresql":
        async with db.autocommit() as connection:
            parameters = {**row, "action": action, "detail": dict(detail)}
            result = await connection.execute(_insert_holding_lock(), parameters)
            return result.scalar()
    async with db.engine.begin() as connection:
        deploy_id = (await connection.execute(_INSERT_DEPLOY, row)).scalar_one()
        lock = {
            "service": row["service"],
            "environment": row["environment"],
            "holder": row["requested_by"],
            "deploy_id": deploy_id,
            "sticky": False,
            "acquired_at": row["created_at"],
        }
        if not await insert_or_ignore(connection, Lock, lock):
            await connection.rollback()
            return None
        await audit.record(
            connection,
            actor=row["requested_by"],
            action=action,
            outcome=row["state"],
            detail={"deploy": deploy_id, **detail},
        )
        return int(deploy_id)


_INSERT_DEPLOY = insert(Deploy).returning(Deploy.id)


@functools.cache
def _insert_holding_lock() -> Executable:
    """WITH lock AS (INSERT INTO locks … nextval … ON CONFLICT DO NOTHING RETURNING deploy_id),
    deploy AS (INSERT INTO deploys SELECT … FROM lock RETURNING id),
    entry AS (INSERT INTO audit_log SELECT … FROM deploy)
    SELECT id FROM deploy

    The lock goes first, with the id the deploy will have: when it is taken, no row comes back
    from it, so neither the deploy nor the audit entry is inserted. The lock's foreign key to the
    deploy is checked at the end of the statement, when both exist.
    """
    deploys = Deploy.__table__
    lock = (
        postgresql.insert(Lock)
        .values(
            service=bindparam("service"),
            environment=bindparam("environment"),
            holder=bindparam("requested_by"),
            deploy_id=func.nextval(func.pg_get_serial_sequence(deploys.name, "id")),
            sticky=False,
            acquired_at=bindparam("created_at"),
        )
        .on_conflict_do_nothing()
        .returning(Lock.deploy_id)
        .cte("lock")
    )
    deploy = (
        insert(Deploy)
        .from_select(
            ["id", *COLUMNS],
            select(
                lock.c.deploy_id,
                *(bindparam(name, type_=deploys.c[name].type) for name in COLUMNS),
            ),
        )
        .returning(Deploy.id)
        .cte("deploy")
    )
    detail = bindparam("detail", type_=postgresql.JSONB).op("||", return_type=postgresql.JSONB)(
        func.jsonb_build_object("deploy", deploy.c.id)
    )
    entry = (
        insert(AuditEntry)
        .from_select(
            ["at", "actor", "action", "outcome", "detail"],
            select(
                bindparam("created_at", type_=AuditEntry.__table__.c.at.type),
                bindparam("requested_by", type_=AuditEntry.__table__.c.actor.type),
                bindparam("action", type_=AuditEntry.__table__.c.action.type),
                bindparam("state", type_=AuditEntry.__table__.c.outcome.type),
                detail,
            ),
        )
        .cte("entry")
    )
    return select(deploy.c.id).add_cte(entry)
