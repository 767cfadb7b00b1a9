"""A leader that lost its lease (paused, then resumed) posts no alert line and no SLA ping.

Only the lease's current holder may act (README "Production"): database writes are fenced, and
the Discord posts that no write guards ask the fence first (``Store.check_leader``). The event
stays unprocessed for the new leader, never parked by the deposed one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from bot.discord.event_posts import EventPosts
from bot.factory.events import FactoryEvent, parse_event
from bot.factory.processor import EventProcessor
from bot.leadership import Lease, NotLeader
from bot.roster import Roster
from bot.settings import Settings
from bot.sla_events import FactorySlaAlerts
from bot.store import Store
from bot.store import tables as t

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SETTINGS = Settings(
    _env_file=None,
    discord_bot_token="t",
    discord_guild_id=1,
    discord_tasks_channel_id=100,
    discord_alerts_channel_id=200,
    discord_approver_role_ids="7",
    factory_api_key="k",
    factory_webhook_secret="s",
)
PIPELINE_FAILED = {
    "type": "pipeline.failed",
    "timestamp": NOW.isoformat(),
    "channel": "pipeline:p1",
    "data": {
        "pipeline": {
            "id": "p1",
            "name": "stripe-mcp",
            "status": "failed",
            "currentStage": "testing",
            "priority": "high",
            "createdAt": NOW.isoformat(),
            "updatedAt": NOW.isoformat(),
        }
    },
}


class Messenger:
    def __init__(self) -> None:
        self.posts: list[tuple[int, str]] = []

    def may_mention_everyone(self, channel_id: int) -> bool:
        return True

    async def post(self, channel_id: int, content: str, **kw: Any) -> int:
        self.posts.append((channel_id, content))
        return 1


async def deposed_store(tmp_path: Path) -> Store:
    """A store whose process led, then lost its lease to another holder."""
    store = Store(f"sqlite:///{tmp_path / 'b.db'}")
    await store.create_schema()
    lease = Lease(store.db, holder="A:x:1:a", lease_seconds=10)  # as on PostgreSQL
    assert await lease.acquire()
    store.db.fence = lease.fence
    await store.check_leader()  # leading: nothing raised
    assert lease.token is not None
    await store.db.write(
        lambda c: c.execute(
            update(t.leader_lease).values(token=lease.token + 1, holder="B:y:2:b", version=0)
        )
    )
    return store


async def test_a_deposed_leader_posts_no_alert_line(tmp_path: Path) -> None:
    store = await deposed_store(tmp_path)
    sent: list[tuple[int, str]] = []

    async def send(channel_id: int, text: str, **kw: Any) -> None:
        sent.append((channel_id, text))

    posts = EventPosts(send, lambda c, e: None, None, SETTINGS)  # type: ignore[arg-type, return-value]
    posts.leader_check = store.check_leader
    try:
        with pytest.raises(NotLeader):
            await posts.post(
                parse_event(PIPELINE_FAILED), [200], "❌ pipeline stripe-mcp failed", urgent=True
            )
        assert sent == []
    finally:
        await store.close()


async def test_a_deposed_leader_does_not_ping_for_the_factorys_sla_breach(tmp_path: Path) -> None:
    store = await deposed_store(tmp_path)
    messenger = Messenger()
    alerts = FactorySlaAlerts(
        store=store, roster=Roster(()), settings=SETTINGS, messenger=messenger, clock=lambda: NOW
    )
    breach = parse_event(
        {
            "type": "task.sla_breached",
            "timestamp": NOW.isoformat(),
            "channel": "tasks:*",
            "data": {
                "taskId": "t1",
                "taskTitle": "Deploy stripe-mcp",
                "slaDeadline": (NOW - timedelta(minutes=1)).isoformat(),
                "minutesRemaining": 0,
            },
        }
    )
    try:
        with pytest.raises(NotLeader):
            await alerts.handle(breach)
        assert messenger.posts == []
    finally:
        await store.close()


async def test_the_deposed_leaders_processor_leaves_the_event_to_the_new_leader(
    tmp_path: Path,
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    await store.create_schema()

    async def handle(event: FactoryEvent) -> None:
        raise NotLeader("another process holds the lease")

    processor = EventProcessor(store, handle, max_attempts=1, retry_base_seconds=0.01)
    try:
        wait = await processor._process(
            ("e1", "pipeline.failed", parse_event(PIPELINE_FAILED)), "k"
        )
        assert wait > 0  # tried again later (by then this processor is stopped), not parked
        assert processor.failed == 0
        assert [e for e in await store.audit_entries() if e.action == "event.failed"] == []
    finally:
        await store.close()
