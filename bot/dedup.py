"""Slack request de-duplication: a retry, a double click or a second replica does nothing twice."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.db.models import SlackRequest, utc_now
from bot.db.session import Database
from bot.db.statements import insert_or_ignore

MAX_KEY_LENGTH = 255


async def claim_request(db: Database | AsyncSession, *, key: str, kind: str) -> bool:
    """True for the first caller with this key, False for every later one."""
    if len(key) > MAX_KEY_LENGTH:
        key = _hashed_key(key)
    if isinstance(db, AsyncSession):
        return await _insert_claim(db, key=key, kind=kind)
    # One Core statement, committing on its own: every request pays for this, and an ORM
    # session and a transaction around it cost more than the statement (bench/deploy_overhead.py).
    async with db.autocommit() as connection:
        return await _insert_claim(connection, key=key, kind=kind)


async def _insert_claim(session: AsyncSession | AsyncConnection, *, key: str, kind: str) -> bool:
    # One atomic statement: the primary key decides who was first, even across replicas.
    values = {"key": key, "kind": kind, "received_at": utc_now()}
    return await insert_or_ignore(session, SlackRequest, values)


async def forget_requests(db: Database, *, older_than: timedelta) -> int:
    """Delete claims older than `older_than` (Slack stops retrying after minutes); returns count."""
    cutoff: datetime = utc_now() - older_than
    async with db.transaction() as session:
        result = cast(
            CursorResult[Any],
            await session.execute(delete(SlackRequest).where(SlackRequest.received_at < cutoff)),
        )
        return result.rowcount


def request_key(body: dict[str, Any]) -> str:
    """The identity of a Slack request, prefixed with its kind ('event:Ev01', 'trigger:1.2')."""
    payload = _interactive_payload(body)
    if body.get("event_id"):
        key = f"event:{body['event_id']}"
    elif payload.get("trigger_id"):
        key = f"trigger:{payload['trigger_id']}"
    elif payload.get("type") == "block_actions" and _action_identity(payload):
        key = f"action:{_action_identity(payload)}"
    else:
        return _hashed_key(_canonical_json(body))
    return key if len(key) <= MAX_KEY_LENGTH else _hashed_key(key)


def _interactive_payload(body: dict[str, Any]) -> dict[str, Any]:
    # Bolt hands listeners the parsed payload; a raw form post carries it as a JSON string.
    raw = body.get("payload")
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError:
            return body
        return parsed if isinstance(parsed, dict) else body
    if isinstance(raw, dict):
        return raw
    return body


def _action_identity(payload: dict[str, Any]) -> str | None:
    container = payload.get("container") or {}
    where = ":".join(
        str(container[part])
        for part in ("channel_id", "message_ts", "view_id")
        if container.get(part)
    )
    actions = payload.get("actions") or []
    action_ts = actions[0].get("action_ts") if actions and isinstance(actions[0], dict) else None
    user = (payload.get("user") or {}).get("id")
    if not (where and action_ts and user):
        return None
    return f"{where}:{action_ts}:{user}"


def _canonical_json(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _hashed_key(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()
