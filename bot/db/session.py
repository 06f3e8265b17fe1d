"""The database handle: async engine, sessions, Alembic migrations and the readiness ping."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, make_url, text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import await_only

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Any constant works; it only has to be the same for every replica running `upgrade()`.
_MIGRATION_LOCK_ID = 0x0B5B07


def alembic_config(url: str | None = None) -> Config:
    """An Alembic Config for opsbot's migrations, built in code (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolates '%', which URL-encoded passwords contain.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _sqlite_on_connect(dbapi_connection: Any, _connection_record: Any) -> None:
    # SQLAlchemy emits BEGIN itself (see _sqlite_on_begin), so turn off the driver's own
    # half-transactional "legacy" mode; then WAL + busy_timeout make writers queue, not fail.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # busy_timeout first: switching a fresh file to WAL needs a lock another process (a second
        # replica starting at the same moment) may hold, and must wait for it, not fail.
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _switch_to_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _switch_to_wal(cursor: Any) -> None:
    """WAL mode, once per file (it persists). SQLite may refuse the switch with "database is
    locked" at once, without its busy handler, while another connection opens the fresh file
    (seen with three replicas starting together on a loaded machine): retry for a while."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode")
            if str(cursor.fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            # Connect events run in SQLAlchemy's greenlet on the event loop: sleep without
            # blocking it.
            await_only(asyncio.sleep(0.02))


def _sqlite_on_begin(connection: Connection) -> None:
    # IMMEDIATE takes the write lock up front: a transaction that reads, then writes can never
    # fail half-way with SQLITE_BUSY, and read-check-write is serialized like a row lock on PG.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """One database (SQLite or PostgreSQL) with its async engine and session factory."""

    ping_timeout: float = 5.0
    # PostgreSQL: twenty connections, opened at start and kept. A burst waits for one of them
    # rather than opening more: a new connection (a server process, authentication, statements
    # prepared again) cost far more than the wait, and fifty deploys at once reached their first
    # write in ~470 ms instead of ~760 ms without overflow connections (bench/deploy_overhead.py).
    pool_size: int = 20
    max_overflow: int = 0

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect: str = parsed.get_backend_name()
        engine_options: dict[str, Any] = {"echo": echo}
        if self.dialect == "sqlite":
            _ensure_sqlite_parent_dir(parsed.database)
        else:
            # No pre-ping: it costs a round trip per checkout (measured in bench/deploy_overhead);
            # connections are recycled instead, and a dropped one fails one statement, retried.
            engine_options.update(
                pool_recycle=1800, pool_size=self.pool_size, max_overflow=self.max_overflow
            )
        self.engine: AsyncEngine = create_async_engine(url, **engine_options)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_on_connect)
            event.listen(self.engine.sync_engine, "begin", _sqlite_on_begin)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # PostgreSQL: the same pool, each statement committing on its own (see `autocommit`).
        self._autocommit: AsyncEngine | None = (
            None
            if self.dialect == "sqlite"
            else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )

    def __repr__(self) -> str:
        return f"Database({self.engine.url.render_as_string(hide_password=True)!r})"

    def session(self) -> AsyncSession:
        """A new session; use as `async with db.session() as s:` and commit explicitly."""
        return self._sessions()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        async with self._sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one statement that needs no transaction around it (an atomic
        insert-or-ignore, a single read or update): on PostgreSQL it commits on its own, one round
        trip instead of three (BEGIN, the statement, COMMIT), which the busiest paths pay for on
        every request (bench/deploy_overhead.py). On SQLite it is an ordinary transaction: writers
        there must take the write lock with BEGIN IMMEDIATE.
        """
        if self._autocommit is None:
            async with self.engine.begin() as connection:
                yield connection
        else:
            async with self._autocommit.connect() as connection:
                yield connection

    async def upgrade(self, revision: str = "head") -> None:
        """Run Alembic migrations up to `revision` on this database; safe to run repeatedly."""
        async with self.engine.begin() as connection:
            if self.dialect == "postgresql":
                # Two replicas starting together must not both create the schema.
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID}
                )
            await connection.run_sync(self._run_upgrade, revision)

    def _run_upgrade(self, connection: Connection, revision: str) -> None:
        config = alembic_config(self.url)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async def warm(self) -> None:
        """Open the pool's connections now, so the first burst of work does not pay for them.

        On PostgreSQL each new connection costs a TCP (and TLS negotiation) round trip and some
        CPU; 50 deploys arriving at once used to open twenty of them mid-burst
        (bench/deploy_overhead.py). SQLite has nothing to warm.
        """
        if self.dialect != "postgresql":
            return
        async with contextlib.AsyncExitStack() as stack:
            await asyncio.gather(
                *(stack.enter_async_context(self.engine.connect()) for _ in range(self.pool_size))
            )

    async def ping(self) -> bool:
        """True when the database answers `SELECT 1` within `ping_timeout` seconds."""
        try:
            async with asyncio.timeout(self.ping_timeout):
                async with self.engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
        except Exception as exc:  # readiness must report, never raise
            log.warning("database ping failed: %s", exc.__class__.__name__)
            return False
        return True

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


def _ensure_sqlite_parent_dir(database: str | None) -> None:
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
