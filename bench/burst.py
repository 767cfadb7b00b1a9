"""burst: 1,000 routine tasks of one kind in 10 s, under Discord's real channel rate (5 / 5 s).

Counted: messages the bridge created in the tasks channel (in all, and per kind of task: the
most messages any one kind took), 429 answers from the Discord emulator, and seconds from the
first event to the moment the last task appeared on a message (issue 19's target: one message,
all visible ≤ ``BATCH_GROUP_WAIT_SECONDS`` (30 s) + 2 s, 0 × 429). The peer's figures for the
same burst — one notification at its group wait — come from the ``peer`` benchmark and stand
beside these in RESULTS.md ("× peer").
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import aiohttp

from bench.common import (
    Measurement,
    ResourceMeter,
    bridge_world,
    signed_task_event,
    sized,
    task_payload,
)
from sandbox.world import TASKS_CHANNEL_ID

TASKS: int = sized(1000, 50)
DURATION_SECONDS: float = sized(10.0, 2.0)
GROUP_WAIT_SECONDS: float = sized(30.0, 3.0)
KIND = "review:review"  # the batching kind of every task here: type and stage

NOTES = [
    "1,000 low-priority review tasks of one kind over 10 s, BATCH_ENABLED=true, group wait "
    "30 s, Discord's channel rate (5 / 5 s) in the emulator and the bridge. CPU s per 1,000 "
    "events: the bridge's user+sys from the first event to the last task visible ÷ 1,000.",
]


def messages_per_kind(messages: list, kinds: dict[str, str]) -> dict[str, int]:
    """Kind → how many messages show at least one task of that kind (``kinds``: task id →
    kind)."""
    counts: dict[str, int] = {}
    for message in messages:
        text = json.dumps(message.components) + json.dumps(message.embeds)
        shown = {task_id for task_id in kinds if task_id in text}  # page 1 names its kind
        for kind in {kinds[task_id] for task_id in shown}:
            counts[kind] = counts.get(kind, 0) + 1
    return counts


BATCH_TITLE = re.compile(r"📋 (\d+) tasks? ready for review")


def listed_count(messages: list, ids: set[str]) -> int:
    """How many of ``ids`` the channel lists: a batch message lists every item on its pages
    (its title counts them all; ◀ ▶ reach each), another message the task ids it carries."""
    listed = 0
    for message in messages:
        title = (message.embeds[0].get("title") or "") if message.embeds else ""
        match = BATCH_TITLE.search(title)
        if match is not None:
            listed += int(match.group(1))
            continue
        text = json.dumps(message.components) + json.dumps(message.embeds)
        listed += sum(1 for task_id in ids if task_id in text)
    return listed


async def run_once(measurement: Measurement) -> None:
    """One run: 1,000 low-priority review tasks of one kind over 10 s, default batching."""
    async with bridge_world(
        BATCH_ENABLED="true", BATCH_GROUP_WAIT_SECONDS=str(GROUP_WAIT_SECONDS)
    ) as (world, process):
        meter = ResourceMeter(process)
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
            return listed_count(messages, ids) >= TASKS

        try:
            await world.discord.wait_for(all_visible, GROUP_WAIT_SECONDS + 90)
            visible_at = time.monotonic()
        except TimeoutError:
            visible_at = None
        messages = [m for m in world.discord.messages(TASKS_CHANNEL_ID) if not m.ephemeral]
        per_kind = messages_per_kind(messages, dict.fromkeys(ids, KIND))
        measurement.add("channel messages", len(messages))
        measurement.add("messages per kind (max)", max(per_kind.values(), default=0))
        measurement.add("429 answers", sum(1 for e in world.discord.errors if e.status == 429))
        measurement.add("tasks visible", listed_count(messages, ids))
        measurement.add("group wait s", GROUP_WAIT_SECONDS)
        measurement.add(
            "last task visible after s", (visible_at - start) if visible_at else float("nan")
        )
        meter.record(measurement, TASKS)
