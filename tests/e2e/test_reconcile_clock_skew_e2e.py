"""A task first stamped by a factory clock running ahead is still kept up to date.

The factory stamps a task's ``updatedAt`` a year ahead (its clock was wrong), then corrects
its clock and raises the task to critical with a near deadline, without an event. The
reconciliation pass shows the change on the task's message; once shown, later passes find
nothing to do (no ``reconcile`` audit entry each pass). Factory contract §1.4 ``Task``.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sandbox.discord_emulator import RecordedMessage
from sandbox.world import TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess, wait_until

LIST = r"/v1/tasks"


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def messages_of(world: World, task_id: str) -> list[RecordedMessage]:
    """Messages in #factory-tasks whose embed footer names the task."""
    return [
        m
        for m in world.discord.messages(TASKS_CHANNEL_ID)
        if not m.deleted
        and m.embeds
        and re.match(
            rf"task {re.escape(task_id)}\b", (m.embeds[0].get("footer") or {}).get("text", "")
        )
    ]


def pending_lists(world: World) -> int:
    """How many ``GET /v1/tasks?status=pending`` pages the bridge asked for (one a pass)."""
    return sum(c.query.get("status") == "pending" for c in world.factory.calls("GET", LIST))


def reconcile_audits(world: World) -> int:
    with sqlite3.connect(world.database_file) as conn:
        row = conn.execute("SELECT count(*) FROM audit WHERE action = 'reconcile'").fetchone()
    return int(row[0])


async def test_a_task_stamped_in_the_future_still_shows_later_changes(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(RECONCILE_INTERVAL_SECONDS="0.2")
    await bridge.start()
    skewed = iso(datetime.now(UTC) + timedelta(days=365))
    task = await world.factory.create_task(title="release", priority="low", updatedAt=skewed)
    await world.discord.wait_for(lambda: len(messages_of(world, task["id"])) == 1, 10)
    [message] = messages_of(world, task["id"])

    now = datetime.now(UTC)  # the factory's clock is right again; the task is raised
    world.factory.tasks[task["id"]].update(
        priority="critical",
        title="release (now CRITICAL)",
        slaDeadline=iso(now + timedelta(minutes=5)),
        updatedAt=iso(now),
    )
    await world.discord.wait_for(lambda: "CRITICAL" in message.embeds[0]["title"], 15)
    fields = {f["name"]: f["value"] for f in message.embeds[0].get("fields", [])}
    assert "Critical" in fields["Priority"]

    since, audits = pending_lists(world), reconcile_audits(world)
    await wait_until(lambda: pending_lists(world) >= since + 4, timeout=15, what="3 passes")
    assert reconcile_audits(world) <= audits + 1  # the pass that was running, then nothing
    assert len(messages_of(world, task["id"])) == 1
