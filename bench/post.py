"""post: signed ``task.created`` accepted (202) → the channel message created.

Critical tasks (never batched) at 20 events/s for 60 s. Discord lets one channel take about
5 messages per 5 s, so no bot can post 20/s into one channel: this benchmark lifts the limit in
the emulator *and* in the bridge's pacer (DISCORD_CHANNEL_RATE_LIMIT) to measure the bridge's own
latency. Under the real limit the pacer queues the messages instead of provoking 429s.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from bench.common import (
    Measurement,
    ResourceMeter,
    bridge_world,
    percentile,
    signed_task_event,
    sized,
    task_payload,
)
from sandbox.world import TASKS_CHANNEL_ID

RATE_PER_SECOND = 20
DURATION_SECONDS: float = sized(60.0, 2.0)

NOTES = [
    "20 critical task.created events/s for 60 s. CPU s per 1,000 events: the bridge's user+sys "
    "from the first event until every message was posted ÷ events.",
]


async def run_once(measurement: Measurement, *, duration: float = DURATION_SECONDS) -> None:
    """One run: 20 critical task.created events per second for ``duration`` seconds."""
    async with bridge_world(
        discord_options={"channel_rate_limit": 1000, "channel_rate_window_seconds": 1.0},
        DISCORD_CHANNEL_RATE_LIMIT="1000",
        DISCORD_CHANNEL_RATE_WINDOW_SECONDS="1",
    ) as (world, process):
        count = int(RATE_PER_SECOND * duration)
        events = []
        for i in range(count):
            task = task_payload(title=f"critical {i}", priority="critical")
            events.append((task["id"], *signed_task_event(task)))
        meter = ResourceMeter(process)
        accepted_at: dict[str, float] = {}  # task id → emulator clock when its POST was sent
        url = f"{world.bridge_url}/events"
        async with aiohttp.ClientSession() as session:
            start = time.monotonic()

            async def send(index: int, task_id: str, body: bytes, headers: dict[str, str]) -> None:
                delay = start + index / RATE_PER_SECOND - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent = world.discord.now()  # measured from the POST: includes the intake itself
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status == 202:
                        accepted_at[task_id] = sent

            await asyncio.gather(*(send(i, *event) for i, event in enumerate(events)))

        def posted() -> int:
            return sum(1 for m in world.discord.messages(TASKS_CHANNEL_ID) if m.embeds)

        await world.discord.wait_for(lambda: posted() >= len(accepted_at), 60)
        latencies = []
        for message in world.discord.messages(TASKS_CHANNEL_ID):
            footer = (
                (message.embeds[0].get("footer") or {}).get("text", "") if message.embeds else ""
            )
            task_id = footer.removeprefix("task ").split(" ")[0]
            if task_id in accepted_at:
                latencies.append((message.created_at - accepted_at[task_id]) * 1000)
        measurement.add("p50 ms", percentile(latencies, 50))
        measurement.add("p99 ms", percentile(latencies, 99))
        measurement.add("posted", len(latencies))
        meter.record(measurement, count)
