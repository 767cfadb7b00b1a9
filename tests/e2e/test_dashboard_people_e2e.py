"""Decisions and claims made on the factory's dashboard: people, not ids, and audited.

The factory reports them by its user id (``decidedBy``, ``claimedBy``); the bridge shows the
roster's name for a rostered id and audits the decision (via ``dashboard``) so that
``/factory history`` tells the whole story.
"""

from __future__ import annotations

from sandbox.discord_emulator import RecordedMessage
from sandbox.world import TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess
from tests.support.reading import fields, final_reply, task_messages


async def shown(world: World, count: int) -> list[RecordedMessage]:
    await world.discord.wait_for(lambda: len(task_messages(world)) >= count, 15)
    return task_messages(world)


async def history(world: World, task_id: str) -> list[str]:
    rec = await world.discord.run_command(
        "factory history", {"task": task_id}, user=world.people.bob, channel_id=TASKS_CHANNEL_ID
    )
    await world.discord.wait_for(
        lambda: rec.original_message is not None and bool(rec.original_message.embeds), 10
    )
    assert rec.original_message is not None
    return str(rec.original_message.embeds[0].get("description", "")).splitlines()


async def test_dashboard_rejection_shows_the_roster_name_and_is_in_history(
    world: World, bridge: BridgeProcess
) -> None:
    task = await world.factory.create_task(title="Shopify release", priority="high")
    [message] = await shown(world, 1)
    await world.factory.decide_task(
        task["id"], "rejected", decided_by="user-carol", notes="wrong branch"
    )
    await world.discord.wait_for(lambda: "Rejected" in fields(message).get("Decision", ""), 10)
    decision = fields(message)["Decision"]
    assert "by Carol" in decision and "user-carol" not in decision
    assert message.button_labels == []
    lines = await history(world, task["id"])
    assert any(
        "**Carol** via dashboard" in line and "`task.rejected` → ok" in line for line in lines
    ), lines
    # a later /factory approve is told who decided, by name
    rec = await world.discord.run_command(
        "factory approve",
        {"task": task["id"]},
        user=world.people.alice,
        channel_id=TASKS_CHANNEL_ID,
    )
    answer = await final_reply(world, rec)
    assert "Already rejected by Carol" in answer, answer


async def test_unknown_factory_user_keeps_the_id_and_dashboard_claim_shows_the_name(
    world: World, bridge: BridgeProcess
) -> None:
    claimed = await world.factory.create_task(title="Claim me", priority="high")
    stranger = await world.factory.create_task(title="Decided by a stranger", priority="high")
    await shown(world, 2)
    task = world.factory.tasks[claimed["id"]]
    task.update(claimedBy="user-alice", claimedAt=task["createdAt"], status="in_progress")
    await world.factory.emit("task.claimed", {"task": task})
    await world.factory.decide_task(stranger["id"], "approved", decided_by="user-zed")

    def message_of(task_id: str) -> RecordedMessage:
        return next(m for m in task_messages(world) if f"task {task_id}" in str(m.embeds[0]))

    await world.discord.wait_for(
        lambda: "acknowledged by Alice" in fields(message_of(claimed["id"])).get("Status", ""), 10
    )
    await world.discord.wait_for(
        lambda: "by user-zed" in fields(message_of(stranger["id"])).get("Decision", ""), 10
    )
    lines = await history(world, stranger["id"])
    assert any("**user-zed** via dashboard" in line for line in lines), lines
