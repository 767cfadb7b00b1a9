"""Exactly-once: a decision that loses the compare-and-set waits for the winner's outcome even
when the winner has not registered its in-process event yet (two clicks in the same moment).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.bridge import Bridge
from bot.roster import Roster
from bot.settings import Settings
from bot.store import Store
from escalation.models import Task

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def make_bridge(store: Store) -> Bridge:
    settings = Settings(
        discord_bot_token="token",
        discord_guild_id=1,
        discord_tasks_channel_id=2,
        factory_api_key="key",
        factory_webhook_secret="secret",
    )
    factory: Any = object()  # never called by _wait_settled
    return Bridge(settings=settings, store=store, factory=factory, roster=Roster())


async def tracked_inflight(store: Store) -> Task:
    task = Task(id="t1", title="Release", created_at=NOW)
    await store.upsert_task(task, NOW + timedelta(hours=4))
    won = await store.begin_decision(
        "t1", "approved", discord_user_id=7, name="alice", key="k1", notes=None
    )
    assert won is not None
    return task


async def test_loser_waits_for_a_winner_that_has_not_registered_its_event(store: Store) -> None:
    bridge = make_bridge(store)
    task = await tracked_inflight(store)
    assert "t1" not in bridge._decisions_settled  # the winner's event is not there yet
    confirm = asyncio.Event()

    async def winner() -> None:
        await confirm.wait()
        await store.confirm_decision(
            task,
            decision="approved",
            decided_by="alice",
            discord_user_id=7,
            notes=None,
            source="button",
            at=NOW,
        )

    waiting = asyncio.create_task(bridge.actions._wait_settled("t1"))
    finishing = asyncio.create_task(winner())
    await asyncio.sleep(0)  # let the loser look once: still in flight, so it keeps looking
    assert not waiting.done()
    confirm.set()
    settled = await asyncio.wait_for(waiting, 5)
    await finishing
    assert settled is not None and settled.decision == "approved"
    assert settled.decided_by == "alice"


async def test_orphan_inflight_decision_is_not_waited_for_beyond_the_grace(store: Store) -> None:
    bridge = make_bridge(store)
    await tracked_inflight(store)
    settled = await asyncio.wait_for(bridge.actions._wait_settled("t1", grace_seconds=0.1), 5)
    assert settled is not None and settled.inflight_decision == "approved"
    assert not settled.is_decided


async def test_registered_event_is_awaited(store: Store) -> None:
    bridge = make_bridge(store)
    await tracked_inflight(store)
    event = bridge._decisions_settled.setdefault("t1", asyncio.Event())
    waiting = asyncio.create_task(bridge.actions._wait_settled("t1", grace_seconds=0))
    await asyncio.sleep(0)
    assert not waiting.done()
    event.set()
    assert (await asyncio.wait_for(waiting, 5)) is not None
