"""memory: the bridge's resident memory over cycles of tasks created and decided.

Each cycle creates ``TASKS`` tasks at the factory (``task.created`` webhooks; the bridge posts
each one), then decides every one of them — one in ``CLICK_EVERY`` through an Approve click
(the click path: compare-and-set, ``POST /complete``, answer), the others at the factory
(``task.completed`` events) — and waits until the bridge's store holds no open task. The
bridge's resident set (``VmRSS``) is read after each cycle. Per-task state is forgotten once a
task is decided, so after the first cycle (caches filling up to their bounds) RSS stays flat.

``BENCH_MEMORY_CYCLES`` and ``BENCH_MEMORY_TASKS`` shrink a run for a quick check
(``BENCH_MEMORY_TASKS=200 BENCH_MEMORY_CYCLES=3 python -m bench memory --runs 1``).
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from bench.common import Measurement, ResourceMeter, bridge_world, sized
from bench.engines import query
from sandbox.discord_emulator import InteractionRecord
from sandbox.world import TASKS_CHANNEL_ID, World
from tests.support.harness import wait_until

RUNS = 1
CYCLES = int(os.environ.get("BENCH_MEMORY_CYCLES", sized(10, 2)))
TASKS = int(os.environ.get("BENCH_MEMORY_TASKS", sized(2000, 40)))
#: Every CLICK_EVERY-th task is decided by a click, the others at the factory.
CLICK_EVERY = 10
#: Tasks created (or decided) at once.
CONCURRENCY = 16
RATE_LIFTED = {"channel_rate_limit": 1_000_000, "channel_rate_window_seconds": 1.0}

NOTES = [
    f"{CYCLES} cycles of {TASKS:,} tasks created and decided (one in {CLICK_EVERY} by an "
    "Approve click, the others at the factory); RSS = VmRSS of the bridge after each cycle. "
    "Growth is measured from the end of cycle 1 (warm-up) to the end of the last cycle. CPU s "
    "per 1,000 events: the bridge's user+sys over the cycles ÷ tasks created and decided. "
    "Discord's channel limit is lifted in the emulator, the bridge's pacer and its edit budget "
    "(DISCORD_EDIT_RATE_LIMIT), so that what stays in memory is the bridge's, not a queue of "
    "edits waiting for the budget.",
]


def rss_mb(pid: int) -> float:
    """Current resident set size of a process in MiB (``VmRSS`` of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def open_in_store(database_url: str, *, posted: bool = False) -> int:
    """Tasks the bridge's store knows that have no confirmed decision (``posted``: and that
    have a message)."""
    sql = "SELECT count(*) FROM tasks WHERE decision IS NULL"
    if posted:
        sql += " AND message_id IS NOT NULL"
    return int(query(database_url, sql)[0][0])


def task_messages(world: World) -> dict[str, int]:
    """Task id → id of the message showing its Approve button."""
    found: dict[str, int] = {}
    for message in world.discord.messages(TASKS_CHANNEL_ID):
        for button in message.buttons():
            custom_id = str(button.get("custom_id") or "")
            if custom_id.startswith("fb:t:approve:"):
                found[custom_id.removeprefix("fb:t:approve:")] = message.id
    return found


async def in_chunks(coros: list[Coroutine[Any, Any, None]], size: int) -> None:
    """Await ``coros`` ``size`` at a time."""
    for start in range(0, len(coros), size):
        await asyncio.gather(*coros[start : start + size])


async def one_cycle(world: World, cycle: int, database_url: str) -> None:
    """Create TASKS tasks, wait until posted, decide them all, wait until none is open."""
    ids: list[str] = []

    async def create(index: int) -> None:
        task = await world.factory.create_task(
            title=f"memory {cycle}.{index}", priority="high", stageName="review"
        )
        ids.append(task["id"])

    await in_chunks([create(i) for i in range(TASKS)], CONCURRENCY)
    await wait_until(
        lambda: open_in_store(database_url, posted=True) >= len(ids),
        timeout=120 + TASKS / 20,
        what=f"cycle {cycle}: every task posted",
    )
    messages = task_messages(world)
    records: list[InteractionRecord] = []

    async def decide(index: int, task_id: str) -> None:
        if index % CLICK_EVERY == 0:
            record = await world.discord.press_button(
                TASKS_CHANNEL_ID, "Approve", user=world.people.alice, message_id=messages[task_id]
            )
            await record.response(timeout=30)
            records.append(record)
        else:
            await world.factory.decide_task(task_id, "approved")

    await in_chunks([decide(i, t) for i, t in enumerate(ids)], CONCURRENCY)
    await wait_until(
        lambda: open_in_store(database_url) == 0,
        timeout=120 + TASKS / 20,
        what=f"cycle {cycle}: every task decided in the store",
    )

    def told(record: InteractionRecord) -> bool:
        original = world.discord.message(record.original_message_id or 0)
        return original is not None and not original.content.startswith("⏳")

    await world.discord.wait_for(lambda: all(told(r) for r in records), 60)


async def run_once(measurement: Measurement) -> None:
    """One run: CYCLES cycles; RSS after each."""
    async with bridge_world(
        discord_options=RATE_LIFTED,
        DISCORD_CHANNEL_RATE_LIMIT="1000000",
        DISCORD_CHANNEL_RATE_WINDOW_SECONDS="1",
        # and the bridge's own edit budget (5 per window): 2,000 decisions a cycle would
        # otherwise leave thousands of edits queued, and the cycles measure that queue
        DISCORD_EDIT_RATE_LIMIT="1000000",
        RECONCILE_INTERVAL_SECONDS="3600",
    ) as (world, process):
        assert process.process is not None
        pid = process.process.pid
        per_cycle: list[float] = []
        meter = ResourceMeter(process)
        for cycle in range(1, CYCLES + 1):
            started = time.monotonic()
            await one_cycle(world, cycle, process.env["DATABASE_URL"])
            await asyncio.sleep(1.0)  # let the bridge finish edits and settle its state
            per_cycle.append(rss_mb(pid))
            print(
                f"[memory]   cycle {cycle}: RSS {per_cycle[-1]:.1f} MiB "
                f"({time.monotonic() - started:.1f}s)",
                flush=True,
            )
            measurement.add(f"RSS MB after cycle {cycle}", per_cycle[-1])
        growth = per_cycle[-1] - per_cycle[0]
        measurement.add("growth MB (cycle 1 → last)", growth)
        tasks_after_warm_up = TASKS * (CYCLES - 1)
        measurement.add(
            "growth KB per task",
            growth * 1024 / tasks_after_warm_up if tasks_after_warm_up else math.nan,
        )
        meter.record(measurement, TASKS * CYCLES)
