"""One odd item in ``GET /v1/tasks?status=pending`` does not stop reconciliation.

A task with a value this bridge does not know (a new priority "urgent") is shown, treated as
high; a task that cannot be read at all (a date that is not a date) is left out and logged;
every other task is reconciled, at start and on every later pass. A task with one optional field
the bridge cannot read (a ``slaDeadline`` of "in 2 hours") is shown with the policy's deadline
and decided like any other.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta

from sandbox.discord_emulator import RecordedMessage
from sandbox.world import TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess
from tests.support.reading import fields, final_reply


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


async def test_a_task_with_an_unreadable_optional_field_is_shown_and_decided(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    """Contract §1.4: ``slaDeadline`` is optional; one the bridge cannot read is treated as
    missing, so the deadline is ``createdAt`` + the SLA of the priority (§5.3, high: 4 h), and
    the factory's 200 to the decision — which carries the same odd field — confirms it."""
    odd = await world.factory.create_task(title="odd deadline", priority="high", emit=False)
    world.factory.tasks[odd["id"]]["slaDeadline"] = "in 2 hours"
    bridge = make_bridge()
    await bridge.start()
    await world.discord.wait_for(lambda: message_of(world, odd["id"]) is not None, 15)
    message = message_of(world, odd["id"])
    assert message is not None
    created = datetime.fromisoformat(odd["createdAt"].replace("Z", "+00:00"))
    deadline = int((created + timedelta(hours=4)).timestamp())
    assert f"<t:{deadline}:" in fields(message)["SLA Deadline"]

    approve = await world.discord.press_button(
        TASKS_CHANNEL_ID, "Approve", user=world.people.alice, message_id=message.id
    )
    assert "approved" in await final_reply(world, approve, 15)
    await world.discord.wait_for(lambda: "Approved" in fields(message).get("Decision", ""), 10)
    assert len(world.factory.calls("POST", r"/tasks/[^/]+/complete")) == 1  # not re-sent
    assert message.buttons() == []
    log = bridge.log_tail(400)
    assert odd["id"] in log and "slaDeadline" in log
