"""Reconciliation lists every open status, not only ``pending``.

A task the bridge never heard of (created while it was down, its event lost) that the factory
has meanwhile escalated, expired, let someone claim or put in progress still waits for a
decision (factory contract §1.4 ``TaskStatus``) — and the escalated and expired ones are the
most urgent. ``GET /v1/tasks`` takes one ``status`` (§1.5), so the bridge lists each open
status: after a restart every such task is posted, once.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sandbox.discord_emulator import RecordedMessage
from sandbox.world import TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess, wait_until

LIST = r"/v1/tasks"
OPEN_BUT_NOT_PENDING = ("escalated", "expired", "claimed", "in_progress")


def messages_of(world: World, task_id: str) -> list[RecordedMessage]:
    """Messages in #factory-tasks whose embed footer names the task."""
    return [
        m
        for m in world.discord.messages(TASKS_CHANNEL_ID)
        if not m.deleted
        and not m.ephemeral
        and m.embeds
        and re.match(
            rf"task {re.escape(task_id)}\b", (m.embeds[0].get("footer") or {}).get("text", "")
        )
    ]


def escalated_lists(world: World) -> int:
    """How many ``GET /v1/tasks?status=escalated`` pages the bridge asked for."""
    return sum(c.query.get("status") == "escalated" for c in world.factory.calls("GET", LIST))


async def test_tasks_escalated_expired_or_claimed_while_down_are_posted_after_a_restart(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(RECONCILE_INTERVAL_SECONDS="0.2")
    await bridge.start()
    marker = await world.factory.create_task(title="seen before the restart")
    await world.discord.wait_for(lambda: len(messages_of(world, marker["id"])) == 1, 10)
    await bridge.terminate()

    hidden: dict[str, str] = {}
    for status in OPEN_BUT_NOT_PENDING:
        extra = {"claimedBy": "someone"} if status in ("claimed", "in_progress") else {}
        task = await world.factory.create_task(
            title=f"created while down, now {status}",
            priority="critical",
            status=status,
            emit=False,
            **extra,
        )
        hidden[status] = task["id"]
    await bridge.start()

    await world.discord.wait_for(
        lambda: all(len(messages_of(world, i)) == 1 for i in hidden.values()), 15
    )
    before = escalated_lists(world)
    await wait_until(lambda: escalated_lists(world) >= before + 3, timeout=15, what="2 passes")
    for status, task_id in hidden.items():
        assert len(messages_of(world, task_id)) == 1, status  # posted once, never again
    assert len(messages_of(world, marker["id"])) == 1
    [claimed] = messages_of(world, hidden["claimed"])
    fields = {f["name"]: f["value"] for f in claimed.embeds[0].get("fields", [])}
    assert "acknowledged by someone" in fields.get("Status", "")  # a claim is an acknowledgement
