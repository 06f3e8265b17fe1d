"""The database layer: migrations, request de-duplication, the audit log and the schema's guards."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import make_url, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from bot import audit
from bot.db.models import APP_TABLES, Approval, Base, Deploy, SlackRequest
from bot.db.session import Database, alembic_config
from bot.dedup import claim_request, forget_requests, request_key


async def test_upgrade_twice_is_harmless(database: Database) -> None:
    await database.upgrade()
    await database.upgrade()
    async with database.session() as session:
        revision = await session.scalar(text("SELECT version_num FROM alembic_version"))
    assert revision == ScriptDirectory.from_config(alembic_config()).get_current_head()


async def test_migrations_build_exactly_the_schema_the_models_describe(database: Database) -> None:
    """A model changed without its migration (or the reverse) fails here, on both databases."""

    def differences(connection: Any) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        return [
            diff
            for diff in compare_metadata(context, Base.metadata)
            # Triggers and the alembic_version table are outside the models' metadata.
            if not (diff[0] == "remove_table" and diff[1].name == "alembic_version")
        ]

    async with database.engine.connect() as connection:
        found = await connection.run_sync(differences)
    assert found == []


async def test_migration_creates_every_model_table(database: Database) -> None:
    for table in APP_TABLES:
        async with database.session() as session:
            assert await session.scalar(text(f"SELECT count(*) FROM {table}")) == 0


async def test_sqlite_database_file_gets_its_missing_parent_directory(tmp_path: Any) -> None:
    path = tmp_path / "state" / "nested" / "opsbot.db"
    database = Database(f"sqlite+aiosqlite:///{path}")
    try:
        await database.upgrade()
        assert path.exists()
        async with database.session() as session:
            assert await session.scalar(text("PRAGMA journal_mode")) == "wal"
    finally:
        await database.dispose()


async def test_claim_request_is_true_once_then_false(database: Database) -> None:
    assert await claim_request(database, key="trigger:1.2", kind="command") is True
    assert await claim_request(database, key="trigger:1.2", kind="command") is False
    assert await claim_request(database, key="trigger:1.2", kind="action") is False
    assert await claim_request(database, key="trigger:9.9", kind="command") is True


async def test_twenty_replicas_claiming_one_request_see_exactly_one_winner(
    database: Database,
) -> None:
    # Each "replica" has its own engine and an already-open connection, so the twenty INSERTs
    # really race in the database instead of queueing for one pool.
    replicas = [Database(database.url) for _ in range(20)]
    try:
        assert all(await asyncio.gather(*(replica.ping() for replica in replicas)))
        results = await asyncio.gather(
            *(claim_request(replica, key="event:Ev0RACE", kind="event") for replica in replicas)
        )
    finally:
        await asyncio.gather(*(replica.dispose() for replica in replicas))
    assert results.count(True) == 1
    assert results.count(False) == 19


async def test_twenty_concurrent_claims_on_one_pool_see_exactly_one_winner(
    database: Database,
) -> None:
    results = await asyncio.gather(
        *(claim_request(database, key="trigger:double.click", kind="action") for _ in range(20))
    )
    assert results.count(True) == 1


async def test_claim_inside_a_rolled_back_transaction_is_released(database: Database) -> None:
    with pytest.raises(RuntimeError):
        async with database.transaction() as session:
            assert await claim_request(session, key="event:EvRollback", kind="event") is True
            raise RuntimeError("the work failed after claiming")
    assert await claim_request(database, key="event:EvRollback", kind="event") is True


async def test_forget_requests_deletes_only_old_claims(database: Database) -> None:
    await claim_request(database, key="event:new", kind="event")
    async with database.transaction() as session:
        await session.execute(
            update(SlackRequest)
            .where(SlackRequest.key == "event:new")
            .values(received_at=datetime(2020, 1, 1, tzinfo=UTC))
        )
    await claim_request(database, key="event:fresh", kind="event")
    assert await forget_requests(database, older_than=timedelta(hours=1)) == 1
    assert await claim_request(database, key="event:new", kind="event") is True
    assert await claim_request(database, key="event:fresh", kind="event") is False


SLASH_COMMAND = {
    "token": "x",
    "command": "/deploy",
    "text": "myapp prod",
    "user_id": "U1",
    "channel_id": "C1",
    "trigger_id": "13345224609.738474920.8088930838d88f008e0",
}
BLOCK_ACTIONS = {
    "type": "block_actions",
    "user": {"id": "U2"},
    "trigger_id": "222.333.abc",
    "container": {"type": "message", "channel_id": "C1", "message_ts": "1700000000.000100"},
    "actions": [{"action_id": "approve_deploy", "action_ts": "1700000001.000200"}],
}
BLOCK_ACTIONS_WITHOUT_TRIGGER = {k: v for k, v in BLOCK_ACTIONS.items() if k != "trigger_id"}
EVENT_CALLBACK = {
    "type": "event_callback",
    "event_id": "Ev01ABCDEF",
    "event": {"type": "reaction_added", "user": "U3"},
}
UNKNOWN = {"b": 2, "a": [1, {"z": None}]}
UNKNOWN_HASH = hashlib.sha256(b'{"a":[1,{"z":null}],"b":2}').hexdigest()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (SLASH_COMMAND, "trigger:13345224609.738474920.8088930838d88f008e0"),
        (BLOCK_ACTIONS, "trigger:222.333.abc"),
        ({"payload": json.dumps(BLOCK_ACTIONS)}, "trigger:222.333.abc"),
        (BLOCK_ACTIONS_WITHOUT_TRIGGER, "action:C1:1700000000.000100:1700000001.000200:U2"),
        (EVENT_CALLBACK, "event:Ev01ABCDEF"),
        (UNKNOWN, f"sha256:{UNKNOWN_HASH}"),
        ({"a": [1, {"z": None}], "b": 2}, f"sha256:{UNKNOWN_HASH}"),
    ],
    ids=[
        "slash-command",
        "block-actions",
        "raw-form-payload",
        "block-actions-without-trigger",
        "event",
        "fallback",
        "fallback-ignores-key-order",
    ],
)
def test_request_key_identifies_slack_requests(body: dict[str, Any], expected: str) -> None:
    assert request_key(body) == expected


def test_request_key_fits_the_column_however_long_the_id() -> None:
    key = request_key({"event_id": "E" * 400})
    assert key.startswith("sha256:")
    assert len(key) <= 255


async def test_audit_entries_are_newest_first(database: Database) -> None:
    await audit.record(database, actor="U1", action="/deploy help", outcome="usage", channel="C1")
    await audit.record(
        database,
        actor="U2",
        action="button:approve_deploy",
        outcome="refused",
        detail={"rule": "requester cannot approve", "deploy_id": 7},
        request_id="trigger:1.2",
    )
    await audit.record(database, actor="system", action="/deploy help", outcome="ok")

    newest_first = await audit.entries(database)
    assert [(e.actor, e.outcome) for e in newest_first] == [
        ("system", "ok"),
        ("U2", "refused"),
        ("U1", "usage"),
    ]
    refused = newest_first[1]
    assert refused.detail == {"rule": "requester cannot approve", "deploy_id": 7}
    assert refused.request_id == "trigger:1.2"
    assert refused.at.tzinfo is not None

    helps = await audit.entries(database, action="/deploy help", limit=1)
    assert [(e.actor, e.action) for e in helps] == [("system", "/deploy help")]


async def test_audit_record_in_a_session_commits_with_the_caller(database: Database) -> None:
    with pytest.raises(RuntimeError):
        async with database.transaction() as session:
            await audit.record(session, actor="U1", action="/deploy", outcome="ok")
            raise RuntimeError("the deploy transaction failed")
    assert await audit.entries(database) == []

    async with database.transaction() as session:
        await audit.record(session, actor="U1", action="/deploy", outcome="ok")
    assert [e.action for e in await audit.entries(database)] == ["/deploy"]


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_log SET outcome = 'ok'", "DELETE FROM audit_log"],
    ids=["update", "delete"],
)
async def test_database_refuses_to_rewrite_the_audit_log(
    database: Database, statement: str
) -> None:
    await audit.record(database, actor="U1", action="/deploy", outcome="refused")
    with pytest.raises(DBAPIError, match="append-only"):
        async with database.transaction() as session:
            await session.execute(text(statement))
    assert [e.outcome for e in await audit.entries(database)] == ["refused"]


async def test_ping_answers_true_for_a_live_database(database: Database) -> None:
    assert await database.ping() is True


async def test_ping_answers_false_for_an_unreachable_database() -> None:
    unreachable = Database("postgresql+asyncpg://postgres@127.0.0.1:1/x")
    try:
        assert await unreachable.ping() is False
    finally:
        await unreachable.dispose()


async def test_deploy_round_trips_with_json_and_utc_times(database: Database) -> None:
    started = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)
    baseline = {"p99_ms": 182.5, "error_rate": 0.002, "window": "10m", "pods": ["a", "b"]}
    async with database.transaction() as session:
        deploy = Deploy(
            service="myapp",
            environment="prod",
            version="v1.4.2",
            previous_version="v1.4.1",
            strategy="canary",
            state="running",
            requested_by="U1",
            channel="C1",
            thread_ts="1700000000.000100",
            reason="fix checkout",
            baseline=baseline,
            details={"steps": []},
            started_at=started,
        )
        session.add(deploy)
    async with database.session() as session:
        loaded = await session.scalar(select(Deploy).where(Deploy.id == deploy.id))
    assert loaded is not None
    assert loaded.baseline == baseline
    assert loaded.dry_run is False
    assert loaded.started_at == started
    assert loaded.started_at.tzinfo is not None
    assert loaded.created_at.tzinfo is not None
    assert loaded.finished_at is None


async def test_deploy_state_outside_the_state_machine_is_rejected(database: Database) -> None:
    with pytest.raises(IntegrityError):
        async with database.transaction() as session:
            session.add(
                Deploy(
                    service="myapp",
                    environment="prod",
                    version="v1",
                    strategy="rolling",
                    state="half-done",
                    requested_by="U1",
                )
            )


async def test_one_person_approves_a_deploy_once(database: Database) -> None:
    async with database.transaction() as session:
        deploy = Deploy(
            service="myapp",
            environment="prod",
            version="v2",
            strategy="rolling",
            state="awaiting_approval",
            requested_by="U1",
        )
        session.add(deploy)
        await session.flush()
        session.add(Approval(deploy_id=deploy.id, approver="U2", decision="approved"))
    with pytest.raises(IntegrityError):
        async with database.transaction() as session:
            session.add(Approval(deploy_id=deploy.id, approver="U2", decision="approved"))
    async with database.transaction() as session:
        session.add(Approval(deploy_id=deploy.id, approver="U3", decision="rejected"))
    async with database.session() as session:
        approvers = await session.scalars(
            select(Approval.approver).where(Approval.deploy_id == deploy.id)
        )
        assert sorted(approvers) == ["U2", "U3"]


async def test_naive_datetimes_are_refused_before_reaching_the_database(
    database: Database,
) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        async with database.transaction() as session:
            session.add(
                Deploy(
                    service="myapp",
                    environment="prod",
                    version="v1",
                    strategy="rolling",
                    requested_by="U1",
                    started_at=datetime(2025, 1, 1),
                )
            )


async def test_postgres_audit_trigger_is_installed(postgres_database: Database) -> None:
    async with postgres_database.session() as session:
        triggers = await session.scalars(
            text("SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_log'::regclass")
        )
        assert "audit_log_append_only" in list(triggers)


async def test_sqlite_fixture_is_migrated(sqlite_database: Database) -> None:
    assert sqlite_database.dialect == "sqlite"
    assert await audit.entries(sqlite_database) == []


async def test_replicas_upgrading_a_fresh_sqlite_file_together_both_succeed(
    tmp_path: Any,
) -> None:
    replicas = [Database(f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}") for _ in range(3)]
    try:
        await asyncio.gather(*(replica.upgrade() for replica in replicas))
        assert await audit.entries(replicas[0]) == []
    finally:
        await asyncio.gather(*(replica.dispose() for replica in replicas))


async def test_replicas_upgrading_a_fresh_postgres_database_together_both_succeed(
    postgres_url: str,
) -> None:
    url = make_url(postgres_url)
    fresh = url.set(database=f"{url.database}_fresh")
    admin = await asyncpg.connect(
        url.set(drivername="postgresql", database="postgres").render_as_string(False)
    )
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{fresh.database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{fresh.database}"')
        replicas = [Database(fresh.render_as_string(False)) for _ in range(3)]
        try:
            await asyncio.gather(*(replica.upgrade() for replica in replicas))
            assert await audit.entries(replicas[0]) == []
        finally:
            await asyncio.gather(*(replica.dispose() for replica in replicas))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{fresh.database}" WITH (FORCE)')
        await admin.close()


async def test_warming_a_postgres_database_opens_the_whole_pool_at_once(
    postgres_database: Database,
) -> None:
    """After warm(), a burst as large as the pool finds every connection already open."""
    database = postgres_database
    await database.dispose()
    await database.warm()
    async with database.session() as session:
        warmed_at = await session.scalar(text("SELECT clock_timestamp()"))
    opened: list[datetime] = []
    everyone_connected = asyncio.Event()

    async def one_of_a_burst() -> None:
        async with database.session() as session:
            opened.append(
                await session.scalar(
                    text("SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()")
                )
            )
            if len(opened) == database.pool_size:
                everyone_connected.set()
            await everyone_connected.wait()  # hold the connection: the burst needs them all

    async with asyncio.timeout(30):
        await asyncio.gather(*(one_of_a_burst() for _ in range(database.pool_size)))
    # PostgreSQL started every connection the burst used before the burst began.
    assert len(opened) == database.pool_size
    assert all(started < warmed_at for started in opened)
    assert await database.ping()
