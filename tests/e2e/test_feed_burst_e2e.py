"""A burst of feed events never holds up a task that needs a human (bot.discord.feed).

100 ``pipeline.stage_changed`` events followed by a critical ``task.created``: the task message is
posted at once (one feed message each would take about 100 s at Discord's 5 per 5 s per channel,
and the event processor works serially), and the feed gets every line, in order, coalesced
into a few messages of at most 2,000 characters.
"""

from __future__ import annotations

from sandbox.discord_emulator import RecordedMessage
from sandbox.world import FEED_CHANNEL_ID, TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess


def posted(world: World, channel_id: int) -> list[RecordedMessage]:
    return [m for m in world.discord.messages(channel_id) if not m.deleted and not m.ephemeral]


async def test_a_feed_burst_does_not_hold_up_a_critical_task(
    world: World, bridge: BridgeProcess
) -> None:
    factory = world.factory
    pipeline = factory.create_pipeline(name="ghl-mcp-server")
    channel = f"pipeline:{pipeline['id']}"
    for n in range(100):
        await factory.emit(
            "pipeline.stage_changed",
            {
                "pipelineId": pipeline["id"],
                "pipelineName": f"burst-{n:03d}",
                "fromStage": "building",
                "toStage": "testing",
                "triggeredBy": "agent-qa",
            },
            channel=channel,
        )
    task = await factory.create_task(title="production is down", priority="critical")

    def task_posted() -> bool:
        return any(
            m.embeds and task["id"] in (m.embeds[0].get("footer") or {}).get("text", "")
            for m in posted(world, TASKS_CHANNEL_ID)
        )

    await world.discord.wait_for(task_posted, 10)  # serial, one message each: ~100 s

    def lines() -> list[str]:
        return [line for m in posted(world, FEED_CHANNEL_ID) for line in m.content.split("\n")]

    await world.discord.wait_for(lambda: len(lines()) >= 100, 20)
    assert lines() == [f"➡️ **burst-{n:03d}**: building → testing" for n in range(100)]
    feed = posted(world, FEED_CHANNEL_ID)
    assert len(feed) <= 10  # coalesced, not 100
    assert all(len(m.content) <= 2000 and not m.mentions_everyone for m in feed)
