"""Times in the answers people get are Discord timestamps, rendered by the Discord adapter.

The bridge writes no Discord markup itself (``bot.outcomes.TimeText``); the composition root
passes ``bot.discord.embeds.discord_timestamp``, so the snooze answer shows ``<t:…:f>`` (date
and time in the reader's zone) and "Already approved by …" shows ``<t:…:R>`` (relative).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sandbox.world import TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess
from tests.support.reading import fields, final_reply, task_messages


async def test_snooze_and_conflict_answers_carry_discord_timestamps(
    world: World, bridge: BridgeProcess
) -> None:
    task = await world.factory.create_task(title="Shopify release", priority="high")
    await world.discord.wait_for(lambda: len(task_messages(world)) >= 1, 10)
    message = task_messages(world)[0]
    before = int(datetime.now(UTC).timestamp())
    pick = await world.discord.choose(
        TASKS_CHANNEL_ID, "💤 Snooze reminders…", ["3600"], user=world.people.alice
    )
    snoozed = await final_reply(world, pick)
    until = re.search(r"snoozed until <t:(\d+):f>\.", snoozed)
    assert until is not None, snoozed
    assert before + 3600 - 5 <= int(until.group(1)) <= before + 3600 + 30

    approve = await world.discord.press_button(TASKS_CHANNEL_ID, "Approve", user=world.people.alice)
    assert "approved" in await final_reply(world, approve, 15)
    await world.discord.wait_for(lambda: "Approved" in fields(message).get("Decision", ""), 10)
    again = await world.discord.run_command(
        "factory approve", {"task": task["id"]}, user=world.people.dave, channel_id=TASKS_CHANNEL_ID
    )
    answer = await final_reply(world, again)
    assert re.fullmatch(
        rf"Already approved by <@{world.people.alice.id}> <t:\d+:R>\. Nothing was changed\.",
        answer,
    ), answer
