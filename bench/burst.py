"""burst: 1,000 routine tasks in 10 s, under Discord's real channel rate (5 messages / 5 s).

Counted: messages the bridge created in the tasks channel, 429 answers from the Discord
emulator, and seconds from the first event to the moment the last task appeared on a message
(target: ``BATCH_GROUP_WAIT_SECONDS`` (30 s) + 20 s).
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from bench.common import (
    Measurement,
    bridge_world,
    peak_rss_mb,
    signed_task_event,
    task_payload,
)
from sandbox.world import TASKS_CHANNEL_ID

TASKS = 1000
DURATION_SECONDS = 10.0


def visible_task_ids(messages: list, ids: set[str]) -> set[str]:
    """Task ids that appear on any message (components carry them; batch items in options)."""
    seen: set[str] = set()
    for message in messages:
        text = json.dumps(message.components) + json.dumps(message.embeds)
        seen.update(task_id for task_id in ids if task_id in text)
    return seen


async def run_once(measurement: Measurement) -> None:
    """One run: 1,000 low-priority review tasks of one kind over 10 s, default batching."""
    async with bridge_world(BATCH_ENABLED="true") as (world, process):
        events = []
        for i in range(TASKS):
            task = task_payload(
                title=f"server {i:04d} ready for review", priority="low", type="review"
            )
            events.append((task["id"], *signed_task_event(task)))
        ids = {task_id for task_id, _, _ in events}
        url = f"{world.bridge_url}/events"
        visible_at: float | None = None
        async with aiohttp.ClientSession() as session:
            start = time.monotonic()

            async def send(index: int, body: bytes, headers: dict[str, str]) -> None:
                delay = start + index * DURATION_SECONDS / TASKS - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()

            await asyncio.gather(
                *(send(i, body, headers) for i, (_, body, headers) in enumerate(events))
            )

        def all_visible() -> bool:
            messages = [m for m in world.discord.messages(TASKS_CHANNEL_ID) if not m.ephemeral]
            return len(visible_task_ids(messages, ids)) >= TASKS

        try:
            await world.discord.wait_for(all_visible, 120)
            visible_at = time.monotonic()
        except TimeoutError:
            visible_at = None
        messages = [m for m in world.discord.messages(TASKS_CHANNEL_ID) if not m.ephemeral]
        measurement.add("channel messages", len(messages))
        measurement.add("429 answers", sum(1 for e in world.discord.errors if e.status == 429))
        measurement.add("tasks visible", len(visible_task_ids(messages, ids)))
        measurement.add(
            "last task visible after s", (visible_at - start) if visible_at else float("nan")
        )
        assert process.process is not None
        measurement.add("peak RSS MB", peak_rss_mb(process.process.pid))
