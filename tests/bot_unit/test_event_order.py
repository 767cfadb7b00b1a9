"""Events arrive out of order in the real world (a webhook retried late, a Redis entry claimed
after a crash, a listing read before a change): the bridge keeps the newest snapshot and a
claim seen before the task's creation still counts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.bridge import Bridge
from bot.roster import Roster
from bot.settings import Settings
from bot.store import Store, TrackedTask
from escalation.models import Task

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def snapshot(updated: datetime | None, **fields: Any) -> Task:
    body: dict[str, Any] = {
        "id": "t1",
        "title": "Deploy Stripe MCP",
        "priority": "high",
        "createdAt": NOW.isoformat(),
        **fields,
    }
    if updated is not None:
        body["updatedAt"] = updated.isoformat()
    return Task.model_validate(body)


async def test_an_older_snapshot_does_not_replace_a_newer_one(store: Store) -> None:
    escalated = snapshot(
        NOW + timedelta(minutes=5), priority="critical", title="Deploy Stripe MCP (escalated)"
    )
    await store.upsert_task(escalated, NOW + timedelta(minutes=10))
    late = snapshot(NOW + timedelta(minutes=2))  # a webhook retried after the escalation
    await store.upsert_task(late, NOW + timedelta(hours=4))
    stored = await store.get_task("t1")
    assert stored is not None
    assert stored.task.priority.value == "critical"
    assert stored.task.title == "Deploy Stripe MCP (escalated)"
    assert stored.deadline == NOW + timedelta(minutes=10)  # the ladder keeps the near deadline


async def test_a_newer_or_undated_snapshot_replaces_the_stored_one(store: Store) -> None:
    await store.upsert_task(snapshot(NOW), NOW + timedelta(hours=4))
    await store.upsert_task(snapshot(NOW, title="same time, new title"), NOW + timedelta(hours=4))
    assert (await store.get_task("t1")).task.title == "same time, new title"  # type: ignore[union-attr]
    await store.upsert_task(snapshot(None, title="no updatedAt"), NOW + timedelta(hours=3))
    stored = await store.get_task("t1")
    assert stored is not None and stored.task.title == "no updatedAt"
    assert stored.deadline == NOW + timedelta(hours=3)


def bridge_on(store: Store) -> Bridge:
    """A bridge on ``store`` whose factory is never called (the events bring the tasks)."""
    settings = Settings(
        discord_bot_token="token",
        discord_guild_id=1,
        discord_tasks_channel_id=2,
        factory_api_key="key",
        factory_webhook_secret="secret",
    )
    return Bridge(settings=settings, store=store, factory=object(), roster=Roster())  # type: ignore[arg-type]


class Posts:
    """A notifier that records what each post showed."""

    def __init__(self) -> None:
        self.posted: list[TrackedTask] = []

    async def post_task(self, tracked: TrackedTask) -> tuple[int, int]:
        self.posted.append(tracked)
        return 2, 1000 + len(self.posted)

    async def edit_task(self, tracked: TrackedTask, *, wait: bool = True) -> None:
        return None


async def test_a_claim_seen_before_the_task_was_shown_counts_as_acknowledged(
    store: Store,
) -> None:
    """``task.claimed`` handled before ``task.created`` (or the creation missed): the task is
    posted acknowledged, so its reminders stop, as when the events come in order."""
    bridge = bridge_on(store)
    posts = Posts()
    bridge.attach_notifier(posts)  # type: ignore[arg-type]
    claimed = snapshot(
        NOW, type="review", status="claimed", claimedBy="alice", claimedAt=NOW.isoformat()
    )
    await bridge.apply_factory_task(claimed)
    [shown] = posts.posted
    assert shown.acknowledged_by_name == "alice"
    stored = await store.get_task("t1")
    assert stored is not None and stored.acknowledged_at is not None


class EditBudgetSpent(Posts):
    """A notifier whose channel has used its edit budget (Discord: 5 edits per 5 s): an edit
    that is waited for does not come back until the budget frees."""

    def __init__(self) -> None:
        super().__init__()
        self.edits: list[tuple[str, bool]] = []
        self.budget_freed = asyncio.Event()

    async def edit_task(self, tracked: TrackedTask, *, wait: bool = True) -> None:
        self.edits.append((tracked.task_id, wait))
        if wait:
            await self.budget_freed.wait()


async def test_a_burst_of_factory_decisions_does_not_wait_for_the_edit_budget(
    store: Store,
) -> None:
    """Events are handled one at a time: if each ``task.completed`` waited for its message's
    edit while the channel's edit budget is spent, a burst of decisions made at the factory
    would hold up every event behind it (a critical task's first post among them) for minutes.
    The edits are queued and sent as the budget allows; the events go on."""
    bridge = bridge_on(store)
    notifier = EditBudgetSpent()
    bridge.attach_notifier(notifier)  # type: ignore[arg-type]
    for n in range(3):
        await store.upsert_task(snapshot(NOW, id=f"t{n}"), NOW + timedelta(hours=4))
        await store.set_message(f"t{n}", 2, 5000 + n)
    for n in range(3):
        decided = snapshot(
            NOW + timedelta(minutes=1),
            id=f"t{n}",
            type="review",
            status="completed",
            decision="approved",
            decidedBy="someone at the factory",
            decidedAt=(NOW + timedelta(minutes=1)).isoformat(),
        )
        # returns although the budget never frees here (a hang would fail the test)
        await asyncio.wait_for(bridge.apply_factory_task(decided), timeout=10)
    assert notifier.edits == [("t0", False), ("t1", False), ("t2", False)]
    stored = await store.get_task("t2")
    assert stored is not None and stored.decision == "approved"
