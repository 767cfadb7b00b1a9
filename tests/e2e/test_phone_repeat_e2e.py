"""Repeat until someone answers (issue 14), end to end: after the critical step the breach page
(SMS + call to the on-call rotation) repeats every ESCALATION_REPEAT_SECONDS, at most
ESCALATION_REPEAT_LIMIT times, stops at an acknowledgement, and each repeat is taken once even
across a kill -9.

Short settings: SLA deadline D 2 s after the task, critical at D+1, repeats every 1.5 s.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.store import Store
from bot.store.ladder import LadderStore
from escalation.phone import phone_ref
from sandbox.discord_emulator import RecordedMessage
from sandbox.world import TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess, wait_until

ALICE_PHONE = "+15550100001"
DAVE_PHONE = "+15550100002"
REPEAT_SECONDS = 1.5

REPEATING = {
    "ESCALATION_DM_AFTER_SECONDS": 60,
    "ESCALATION_MENTION_AFTER_SECONDS": 120,
    "SLA_WARNING_THRESHOLD_PERCENT": 1,
    "ESCALATION_CRITICAL_AFTER_BREACH_SECONDS": 1,
    "ESCALATION_BUNDLE_SECONDS": 0,
    "ESCALATION_REPEAT_SECONDS": REPEAT_SECONDS,
}


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def breaching_task(world: World) -> tuple[dict[str, Any], datetime]:
    """A high task whose deadline D is 2 s away; (task, D)."""
    deadline = datetime.now(UTC) + timedelta(seconds=2)
    task = await world.factory.create_task(
        title="Stripe MCP Server to Production",
        priority="high",
        createdAt=iso(deadline - timedelta(seconds=2)),
        slaDeadline=iso(deadline),
    )
    return task, deadline


async def steps_of(world: World, task_id: str) -> dict[str, datetime]:
    """Stored steps of the task: name → when taken."""
    store = Store(f"sqlite:///{world.database_file}")
    try:
        rows = (await LadderStore(store.db).steps([task_id])).get(task_id, [])
    finally:
        await store.close()
    return {r.step: r.taken_at for r in rows}


def task_message(world: World, task_id: str) -> RecordedMessage | None:
    return next(
        (
            m
            for m in world.discord.messages(TASKS_CHANNEL_ID)
            if task_id in str(m.components) and not m.ephemeral
        ),
        None,
    )


def field(world: World, task_id: str, name: str) -> str:
    message = task_message(world, task_id)
    if message is None:
        return ""
    return {f["name"]: f["value"] for f in message.embeds[0].get("fields", [])}.get(name, "")


def next_escalation(world: World, task_id: str) -> str:
    return field(world, task_id, "Next escalation")


def pages_to(world: World, phone: str) -> tuple[int, int]:
    """(SMS, calls) sent to ``phone``."""
    return (
        sum(1 for m in world.twilio.messages if m["to"] == phone),
        sum(1 for c in world.twilio.calls if c["to"] == phone),
    )


async def test_repeats_fire_on_time_and_stop_at_the_limit(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(**REPEATING, ESCALATION_REPEAT_LIMIT=2, BRIDGE_PUBLIC_URL=world.bridge_url)
    await bridge.start()
    task, deadline = await breaching_task(world)
    await wait_until(
        lambda: "every step was taken" in next_escalation(world, task["id"]),
        timeout=20,
        what="the ladder to end",
    )
    taken = await steps_of(world, task["id"])
    assert [s for s in taken if s.startswith("repeat_")] == ["repeat_1", "repeat_2"]
    critical = deadline + timedelta(seconds=1)
    for n in (1, 2):
        due = critical + timedelta(seconds=n * REPEAT_SECONDS)
        assert abs((taken[f"repeat_{n}"] - due).total_seconds()) < 1.0, (n, taken)
    # breach SMS + 2 repeat SMS to each on-call; the critical call + 2 repeat calls to Alice
    await wait_until(  # the step is done once claimed; its bundled SMS may follow a moment later
        lambda: pages_to(world, ALICE_PHONE) == (3, 3) and pages_to(world, DAVE_PHONE) == (3, 0),
        timeout=5,
        what="3 SMS to each on-call, 3 calls to Alice",
    )
    last = [m for m in world.twilio.messages if m["to"] == DAVE_PHONE][-1]
    assert f"Reply ACK {phone_ref(task['id'])}" in last["body"]
    shown = field(world, task["id"], "Escalation so far")  # each repeat shown on the message
    assert "repeat page #1 (SMS + call)" in shown and "repeat page #2 (SMS + call)" in shown


async def test_an_sms_ack_stops_the_repeats(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(**REPEATING, ESCALATION_REPEAT_LIMIT=3, BRIDGE_PUBLIC_URL=world.bridge_url)
    await bridge.start()
    task, _ = await breaching_task(world)
    await wait_until(
        lambda: pages_to(world, DAVE_PHONE)[0] >= 2, timeout=20, what="the first repeat's SMS"
    )
    answer = await world.twilio.send_sms(DAVE_PHONE, "ACK")
    assert answer.messages == ["Acknowledged: Stripe MCP Server to Production."]
    await wait_until(
        lambda: "every step was taken" in next_escalation(world, task["id"]),
        timeout=10,
        what="no step left after the ACK",
    )
    taken = await steps_of(world, task["id"])
    assert "repeat_1" in taken and "repeat_2" not in taken and "repeat_3" not in taken
    assert pages_to(world, DAVE_PHONE)[0] == 2  # the breach and the first repeat, no more


async def test_kill_9_between_two_repeats_takes_each_once(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    settings = {**REPEATING, "ESCALATION_REPEAT_LIMIT": 2, "BRIDGE_PUBLIC_URL": world.bridge_url}
    bridge = make_bridge(**settings)
    await bridge.start()
    task, _ = await breaching_task(world)
    await wait_until(
        lambda: pages_to(world, DAVE_PHONE)[0] >= 2, timeout=20, what="the first repeat's SMS"
    )
    await bridge.kill()
    await bridge.start()
    await wait_until(
        lambda: "every step was taken" in next_escalation(world, task["id"]),
        timeout=30,
        what="the second repeat after the restart",
    )
    taken = await steps_of(world, task["id"])
    assert [s for s in taken if s.startswith("repeat_")] == ["repeat_1", "repeat_2"]
    # exactly once: the breach SMS and one SMS per repeat, never two of the same
    await wait_until(
        lambda: pages_to(world, DAVE_PHONE) == (3, 0) and pages_to(world, ALICE_PHONE)[1] == 3,
        timeout=5,
        what="one page per step",
    )
    assert pages_to(world, DAVE_PHONE) == (3, 0)  # and not more
