"""Statements whose SQL differs between SQLite and PostgreSQL."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession


async def insert_or_ignore(
    session: AsyncSession | AsyncConnection, model: Any, values: Mapping[str, Any]
) -> bool:
    """`INSERT … ON CONFLICT DO NOTHING` of one row into `model`'s table, in the session's (or
    connection's) transaction; True when the row was inserted. The primary key (or a unique
    constraint) decides who was first, atomically, across replicas.

    The statement is built once per dialect and table and run with the row as its parameters:
    building it with the values in it cost more than running it, on paths every request takes
    (bench/deploy_overhead.py).
    """
    connection = await session.connection() if isinstance(session, AsyncSession) else session
    statement = _insert_or_ignore(connection.dialect.name, model)
    result = await connection.execute(statement, dict(values))
    return bool(result.rowcount == 1)


@functools.cache
def _insert_or_ignore(dialect: str, model: Any) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(model).on_conflict_do_nothing()
