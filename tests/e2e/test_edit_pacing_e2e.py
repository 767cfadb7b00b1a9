"""Edits of the bridge's messages as Discord really limits them, end to end (issue 17).

Every edit goes through one queue per message, paced per channel (``DISCORD_EDIT_RATE_LIMIT``
per ``DISCORD_CHANNEL_RATE_WINDOW_SECONDS``): a storm of ladder re-renders stays within the
channel's edit budget, and a new critical task is still posted at once. Discord's 30046 on an
edit of a message older than one hour (the emulator's old-message budget, emulator clock) only
delays that message: the decision is shown once the budget allows, with the latest render.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sandbox.discord_emulator import RecordedMessage
from sandbox.world import TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess, wait_until
from tests.support.reading import fields, final_reply, task_messages

COMPLETE = r"/v1/tasks/[^/]+/complete"


def edits_in(world: World, channel_id: int) -> list[float]:
    """Real monotonic times of the accepted edits of the channel's messages."""
    return [at for at, channel, _ in world.discord.edit_log if channel == channel_id]


def most_in_a_window(times: list[float], window: float) -> int:
    """The largest number of ``times`` inside any window of ``window`` seconds."""
    ordered = sorted(times)
    return max(
        (sum(1 for t in ordered[i:] if t < start + window) for i, start in enumerate(ordered)),
        default=0,
    )


def titled(world: World, title: str) -> RecordedMessage | None:
    return next((m for m in task_messages(world) if title in m.embeds[0]["title"]), None)


async def test_a_storm_of_ladder_rerenders_keeps_the_edit_budget_and_a_critical_task_is_posted_at_once(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    # a ladder step (a reminder DM) for every task a second after it was posted — each re-renders
    # its task message — and a tight edit budget (2 per 5 s) so that the storm has to queue
    bridge = make_bridge(
        BATCH_ENABLED="false",
        DISCORD_EDIT_RATE_LIMIT=2,
        ESCALATION_DM_AFTER_SECONDS=1,
        ESCALATION_MENTION_AFTER_SECONDS=3600,
        ESCALATION_BUNDLE_SECONDS=0.2,
        QUIET_HOURS_ENABLED="false",
    )
    await bridge.start()
    for n in range(8):
        await world.factory.create_task(
            title=f"storm-{n}",
            priority="medium",
            type="review",
            stageName="review",
            context={"summary": "A routine review."},
        )
    await world.discord.wait_for(lambda: len(task_messages(world)) >= 8, 20)
    # the ladder's steps are due now: re-renders pile up behind the edit budget
    await wait_until(
        lambda: len(edits_in(world, TASKS_CHANNEL_ID)) >= 3,
        timeout=20,
        what="the ladder's re-renders to start",
    )
    created = time.monotonic()
    await world.factory.create_task(
        title="prod-outage",
        priority="critical",
        type="approval",
        stageName="review",
        context={"summary": "Production is down."},
    )
    await world.discord.wait_for(lambda: titled(world, "prod-outage") is not None, 10)
    assert time.monotonic() - created < 3.0  # the new message did not wait for the edits
    # keep watching the storm for a while: never more than 2 edits in any 5 s of the channel
    await wait_until(
        lambda: len(edits_in(world, TASKS_CHANNEL_ID)) >= 6,
        timeout=30,
        what="more re-renders",
    )
    # the budget was used up (the storm queued) and never exceeded
    assert most_in_a_window(edits_in(world, TASKS_CHANNEL_ID), 5.0) == 2
    assert [e for e in world.discord.errors if e.status == 429] == []


async def test_30046_on_an_old_message_delays_the_decision_until_the_budget_allows(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(
        BATCH_ENABLED="false", ESCALATION_ENABLED="false", DISCORD_OLD_EDIT_BACKOFF_SECONDS=0.5
    )
    await bridge.start()
    task = await world.factory.create_task(
        title="GHL MCP Server v1.4 release",
        priority="high",
        type="approval",
        stageName="review",
        context={"summary": "Release GHL MCP server v1.4."},
    )
    await world.discord.wait_for(lambda: len(task_messages(world)) == 1, 10)
    (message,) = task_messages(world)
    # an hour passes (emulator clock) and Discord's old-message edit budget is used up
    world.discord.advance(3601)
    world.discord.old_message_edit_limit = 0
    click = await world.discord.press_button(
        TASKS_CHANNEL_ID, "Approve", user=world.people.alice, message_id=message.id
    )
    reply = await final_reply(world, click, timeout=10)
    assert "approved" in reply.lower()  # the person is told at once: the factory confirmed
    assert world.factory.tasks[task["id"]]["status"] == "completed"
    await wait_until(
        lambda: any(e.code == 30046 for e in world.discord.errors),
        timeout=10,
        what="Discord to refuse the old message's edit",
    )
    assert "Decision" not in fields(message)
    # the budget allows again: the latest render (the decision) is shown, once
    world.discord.old_message_edit_limit = 10
    await world.discord.wait_for(lambda: "Approved" in fields(message).get("Decision", ""), 15)
    accepted = [m for _, _, m in world.discord.edit_log if m == message.id]
    assert len(accepted) == 1  # one edit carried the decision; nothing was sent twice
    assert message.buttons() == [] or all(
        "Approve" not in str(b.get("label")) for b in message.buttons()
    )
    assert len(world.factory.calls("POST", COMPLETE)) == 1
    assert len(task_messages(world)) == 1  # not reposted: the message was never lost
