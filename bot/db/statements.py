"""Statements whose SQL differs between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession


def insert_or_ignore(session: AsyncSession | AsyncConnection, model: Any, **values: Any) -> Any:
    """`INSERT … ON CONFLICT DO NOTHING` for the session's (or connection's) dialect; check the
    rowcount. The primary key (or unique constraint) decides who was first, atomically, across
    replicas.
    """
    bind = session.get_bind() if isinstance(session, AsyncSession) else session
    dialect = bind.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(model).values(**values).on_conflict_do_nothing()
