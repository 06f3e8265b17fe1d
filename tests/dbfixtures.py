"""Pytest plugin with database fixtures: a migrated SQLite file and a real PostgreSQL database.

Fixtures:
    database           every test runs twice, on SQLite and on PostgreSQL (ids: sqlite, postgresql)
    sqlite_database    a migrated SQLite file in tmp_path
    postgres_database  PostgreSQL only, for behaviour that only means something there
    postgres_url       the session's throwaway PostgreSQL database URL (migrated once)

PostgreSQL comes from TEST_DATABASE_URL (default postgresql+asyncpg://postgres@127.0.0.1:5432/test).
One fresh database `opsbot_test_<pid>` is created next to it per test session, migrated once,
emptied with TRUNCATE before each test and dropped at the end. An unreachable server fails the
tests; it never skips them, because the guarantees we care about are tested there.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy import URL, make_url, text

from bot.db.models import APP_TABLES
from bot.db.session import Database

DEFAULT_TEST_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
T = TypeVar("T")


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a private loop, away from pytest-asyncio's loops."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _asyncpg_dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin_execute(admin_url: URL, *statements: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(admin_url), timeout=10)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def _create_and_migrate(admin_url: URL, test_url: URL) -> None:
    name = test_url.database
    await _admin_execute(
        admin_url,
        f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        f'CREATE DATABASE "{name}"',
    )
    database = Database(test_url.render_as_string(hide_password=False))
    try:
        await database.upgrade()
    finally:
        await database.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a migrated PostgreSQL database that exists for this test session only."""
    configured = os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)
    base = make_url(configured)
    # CREATE/DROP DATABASE run from the `postgres` maintenance database.
    admin_url = base.set(database="postgres")
    test_url = base.set(database=f"opsbot_test_{os.getpid()}")
    try:
        _run(_create_and_migrate(admin_url, test_url))
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL is required for these tests but {base.render_as_string()} failed: "
            f"{exc.__class__.__name__}: {exc}. Start PostgreSQL or point TEST_DATABASE_URL "
            f"at one (postgresql+asyncpg://user@host:port/db).",
            pytrace=False,
        )
    yield test_url.render_as_string(hide_password=False)
    _run(_admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{test_url.database}" WITH (FORCE)'))


async def _empty_postgres(url: str) -> Database:
    database = Database(url)
    tables = ", ".join(f'"{table}"' for table in APP_TABLES)
    async with database.engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return database


async def _migrated_sqlite(path: Path) -> Database:
    database = Database(f"sqlite+aiosqlite:///{path}")
    await database.upgrade()
    return database


@pytest_asyncio.fixture
async def sqlite_database(tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated SQLite database in a file under tmp_path."""
    database = await _migrated_sqlite(tmp_path / "opsbot.db")
    yield database
    await database.dispose()


@pytest_asyncio.fixture
async def postgres_database(postgres_url: str) -> AsyncIterator[Database]:
    """The session's PostgreSQL database, emptied for this test."""
    database = await _empty_postgres(postgres_url)
    yield database
    await database.dispose()


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL behind `database`: a SQLite file path, or the session's PostgreSQL database."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite+aiosqlite:///{tmp_path / 'opsbot.db'}"


@pytest_asyncio.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """A migrated, empty database; tests using it run once on SQLite and once on PostgreSQL."""
    if database_url.startswith("sqlite"):
        database = await _migrated_sqlite(Path(database_url.removeprefix("sqlite+aiosqlite:///")))
    else:
        database = await _empty_postgres(database_url)
    yield database
    await database.dispose()
