"""A database made before migrations: the bridge of this build adopts it and carries on.

The bridge runs a task's ladder up to its first step, is killed, and its database is turned
into what main made before migrations (``metadata.create_all``, no ``alembic_version``:
revision 0001 is that schema, checked in tests/bot_unit/test_migrations.py). This build's
bridge then starts on it: the database is stamped, the task's message is not posted again, the
step taken is not taken again, the next one comes once, the audit trail is intact and a click
decides the task once. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, inspect, text

from bot.store import Store
from bot.store.database import sync_url
from bot.store.migrate import current_revision, head_revision
from sandbox.discord_emulator import RecordedMessage
from sandbox.world import TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess, wait_until
from tests.support.reading import task_messages

pytestmark = pytest.mark.both_engines

COMPLETE = r"/v1/tasks/[^/]+/complete"
#: DM at T+1, @mention at T+5 (seconds after the task was created); the SLA is far away.
LADDER = {
    "ESCALATION_DM_AFTER_SECONDS": 1,
    "ESCALATION_MENTION_AFTER_SECONDS": 5,
    "ESCALATION_BUNDLE_SECONDS": 1,
}


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def replies(world: World, message: RecordedMessage) -> list[RecordedMessage]:
    return [
        m
        for m in world.discord.messages(TASKS_CHANNEL_ID)
        if m.author_id == world.discord.bot_user_id
        and not m.deleted
        and m.message_reference
        and int(m.message_reference["message_id"]) == message.id
    ]


def forget_migrations(url: str) -> None:
    """Make the database un-versioned, as every build before migrations left it."""
    engine = create_engine(sync_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE alembic_version"))
            assert "alembic_version" not in inspect(conn).get_table_names()
    finally:
        engine.dispose()


async def test_a_database_from_before_migrations_is_adopted_and_the_bridge_carries_on(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    alice = world.people.alice
    bridge = make_bridge(**LADDER)
    await bridge.start()
    now = datetime.now(UTC)
    task = await world.factory.create_task(
        title="Payments API v2 release",
        priority="high",
        createdAt=iso(now),
        slaDeadline=iso(now + timedelta(minutes=10)),
    )
    await world.discord.wait_for(lambda: len(task_messages(world)) == 1, 10)
    [message] = task_messages(world)
    await world.discord.wait_for(lambda: len(world.discord.dm_messages(alice.id)) == 1, 10)
    await bridge.kill()

    forget_migrations(world.database_url)
    store = Store(world.database_url)  # no create_schema: look at what the old build left
    try:
        audit_before = await store.audit_entries()
        open_before = [t.task.id for t in await store.open_tasks()]
    finally:
        await store.close()
    assert open_before == [task["id"]] and audit_before

    restarted = make_bridge(**LADDER)
    await restarted.start()
    store = Store(world.database_url)
    try:
        assert await store.db.read(current_revision) == head_revision()
        # the next step (the @mention at T+5) comes once; the DM taken before is not repeated
        await world.discord.wait_for(lambda: len(replies(world, message)) >= 1, 10)
        click = await world.discord.press_button(TASKS_CHANNEL_ID, "Approve", user=alice)
        await click.response()
        await wait_until(
            lambda: world.factory.tasks[task["id"]]["status"] == "completed", what="decision"
        )
        assert len(world.factory.calls("POST", COMPLETE)) == 1
        assert len(task_messages(world)) == 1  # not posted again
        assert len(world.discord.dm_messages(alice.id)) == 1
        assert len(replies(world, message)) == 1
        audit_after = await store.audit_entries(limit=10_000)
        assert audit_after[: len(audit_before)] == audit_before  # the old trail, intact
        assert len(audit_after) > len(audit_before)
    finally:
        await store.close()
