"""One odd item in ``GET /v1/tasks?status=pending`` does not stop reconciliation.

A task with a value this bridge does not know (a new priority "urgent") is shown, treated as
high; a task that cannot be read at all (a date that is not a date) is left out and logged;
every other task is reconciled, at start and on every later pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sandbox.discord_emulator import RecordedMessage
from sandbox.world import TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess


def message_of(world: World, task_id: str) -> RecordedMessage | None:
    for m in world.discord.messages(TASKS_CHANNEL_ID):
        footer = (m.embeds[0].get("footer") or {}).get("text", "") if m.embeds else ""
        if not m.ephemeral and re.match(rf"task {re.escape(task_id)}\b", footer):
            return m
    return None


def priority_of(message: RecordedMessage) -> str:
    return next(f["value"] for f in message.embeds[0]["fields"] if f["name"] == "Priority")


async def test_odd_items_are_skipped_or_defaulted_and_the_rest_reconciled(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    before = await world.factory.create_task(title="before the odd ones", emit=False)
    urgent = await world.factory.create_task(title="new priority", emit=False)
    broken = await world.factory.create_task(title="unreadable date", emit=False)
    after = await world.factory.create_task(title="after the odd ones", emit=False)
    world.factory.tasks[urgent["id"]]["priority"] = "urgent"  # a value this bridge never saw
    world.factory.tasks[broken["id"]]["createdAt"] = "last Tuesday-ish"
    bridge = make_bridge(RECONCILE_INTERVAL_SECONDS="1")
    await bridge.start()
    await world.discord.wait_for(
        lambda: all(message_of(world, t["id"]) for t in (before, urgent, after)), 15
    )
    shown = message_of(world, urgent["id"])
    assert shown is not None and "High" in priority_of(shown)  # unknown → treated as high
    assert message_of(world, broken["id"]) is None
    # later passes keep working: a task the factory never announced still appears
    late = await world.factory.create_task(title="missed by every event", emit=False)
    await world.discord.wait_for(lambda: message_of(world, late["id"]) is not None, 15)
    log = bridge.log_tail(400)
    assert broken["id"] in log and "cannot be read" in log
