"""click: INTERACTION_CREATE dispatched → initial interaction callback received.

The factory answers ``complete`` after 2 s, so the figure shows that the bridge acknowledges the
click first and does the slow work afterwards (Discord's limit: 3,000 ms). Each run then waits
until every decision was confirmed and its person told (not measured), so that the run ends
with nothing in flight.
"""

from __future__ import annotations

import asyncio

from bench.common import Measurement, ResourceMeter, bridge_world, percentile, sized
from sandbox.discord_emulator import InteractionRecord
from sandbox.world import TASKS_CHANNEL_ID

TASKS: int = sized(200, 20)
CONCURRENT_CLICKS = 4

NOTES = [
    "200 high-priority tasks, one Approve click each, 4 in flight, the factory answering "
    "`complete` after 2 s. CPU s per 1,000 events: the bridge's user+sys from the first click "
    "until every decision was confirmed and its person told ÷ clicks.",
]
RATE_LIFTED = {"channel_rate_limit": 1000, "channel_rate_window_seconds": 1.0}


async def run_once(measurement: Measurement) -> None:
    """One run: 200 tasks, one approval click each, 4 clicks in flight at a time."""
    async with bridge_world(
        discord_options=RATE_LIFTED,
        DISCORD_CHANNEL_RATE_LIMIT="1000",
        DISCORD_CHANNEL_RATE_WINDOW_SECONDS="1",
    ) as (world, process):
        world.factory.delay("POST", r"/v1/tasks/[^/]+/complete", 2.0)
        ids = []
        for i in range(TASKS):
            task = await world.factory.create_task(
                title=f"click {i}", priority="high", stageName="review"
            )
            ids.append(task["id"])

        def posted() -> int:
            return sum(1 for m in world.discord.messages(TASKS_CHANNEL_ID) if m.embeds)

        await world.discord.wait_for(lambda: posted() >= TASKS, 60)
        messages = [m for m in world.discord.messages(TASKS_CHANNEL_ID) if m.embeds]
        meter = ResourceMeter(process)
        latencies: list[float] = []
        records: list[InteractionRecord] = []
        semaphore = asyncio.Semaphore(CONCURRENT_CLICKS)

        async def click(message_id: int) -> None:
            async with semaphore:
                record = await world.discord.press_button(
                    TASKS_CHANNEL_ID, "Approve", user=world.people.alice, message_id=message_id
                )
                answer = await record.response(timeout=10)
                latencies.append((answer.at - record.created_at) * 1000)
                records.append(record)

        await asyncio.gather(*(click(m.id) for m in messages))

        def told(record: InteractionRecord) -> bool:
            """The "⏳ Recording…" answer was replaced by the outcome."""
            original = world.discord.message(record.original_message_id or 0)
            return original is not None and not original.content.startswith("⏳")

        # decisions run FACTORY_MAX_CONCURRENT_REQUESTS at a time, 2 s each
        await world.discord.wait_for(lambda: all(told(r) for r in records), 120)
        measurement.add("p50 ms", percentile(latencies, 50))
        measurement.add("p99 ms", percentile(latencies, 99))
        measurement.add("refused (10062)", sum(1 for e in world.discord.errors if e.code == 10062))
        meter.record(measurement, len(records))
