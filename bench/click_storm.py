"""click-storm: the ``click`` figure while 1,000 events/s arrive and 10,000 ladders run.

INTERACTION_CREATE dispatched → initial interaction callback received (the Discord emulator's
clock), 4 clicks in flight, the factory answering ``complete`` after 2 s — as in ``click`` — but
during a storm: signed ``pipeline.stage_changed`` webhooks at 1,000 per second (stored, nothing
posted: the feed channel is unset) and 10,000 open tasks (seeded as for ``ladders``) whose
reminder steps come due over the same seconds, each one re-rendering its task's message. The
clicks are spread evenly over the storm (300 over 30 s, never more than 4 in flight).

Reported beside the clicks: the events/s the storm really delivered, the ladder steps taken in
it and their lateness, so that a quiet run is not mistaken for a stormy one.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import (
    Measurement,
    ResourceMeter,
    percentile,
    signed_pipeline_events,
    sized,
)
from bench.engines import store_url
from bench.ladder_seed import Seed, seed_open_tasks
from bench.ladders import DISCORD, ladder_env, step_rows
from bench.memory import task_messages
from sandbox.discord_emulator import InteractionRecord
from sandbox.world import TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess

RUNS = 3
CLICKS: int = sized(300, 20)
STORM_SECONDS: float = sized(30.0, 3.0)
EVENTS_PER_SECOND: int = sized(1000, 100)
LADDERS: int = sized(10_000, 200)
CONCURRENT_CLICKS = 4
#: Connections the storm's events are sent over (each request waits for its 202).
EVENT_SENDERS = 32
#: Seconds from the start of seeding to the first ladder step due: seeding, the bridge's start
#: and posting the click tasks must fit.
LEAD_SECONDS = sized(45.0, 15.0) + LADDERS / 1000

NOTES = [
    f"{CLICKS} Approve clicks spread over {STORM_SECONDS:.0f} s (at most "
    f"{CONCURRENT_CLICKS} in flight, factory answering `complete` after 2 s) while "
    f"{EVENTS_PER_SECOND:,} signed pipeline events/s arrive over {EVENT_SENDERS} connections and "
    f"{LADDERS:,} seeded ladders take their reminder steps over the same seconds; Discord's "
    "channel limit lifted in the emulator and the bridge's pacer. CPU s per 1,000 events: the "
    "bridge's user+sys during the storm ÷ (events accepted + clicks + ladder steps).",
]


async def storm_events(url: str, start: float) -> tuple[int, int, float]:
    """Send EVENTS_PER_SECOND signed events a second for STORM_SECONDS from ``start``
    (``time.monotonic()``), each at its own instant: (answered 202, otherwise, elapsed s)."""
    events = signed_pipeline_events(int(EVENTS_PER_SECOND * STORM_SECONDS))
    cursor = iter(enumerate(events))
    accepted = other = 0

    async def sender(session: aiohttp.ClientSession) -> None:
        nonlocal accepted, other
        for index, (body, headers) in cursor:
            delay = start + index / EVENTS_PER_SECOND - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status == 202:
                    accepted += 1
                else:
                    other += 1

    connector = aiohttp.TCPConnector(limit=EVENT_SENDERS)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(sender(session) for _ in range(EVENT_SENDERS)))
    return accepted, other, time.monotonic() - start


async def storm_clicks(
    world: World, message_ids: list[int], start: float
) -> list[InteractionRecord]:
    """Click Approve on each message, evenly over STORM_SECONDS from ``start``
    (``time.monotonic()``), at most CONCURRENT_CLICKS in flight; the records once answered."""
    semaphore = asyncio.Semaphore(CONCURRENT_CLICKS)
    records: list[InteractionRecord] = []

    async def click(index: int, message_id: int) -> None:
        delay = start + index * STORM_SECONDS / len(message_ids) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        async with semaphore:
            record = await world.discord.press_button(
                TASKS_CHANNEL_ID, "Approve", user=world.people.alice, message_id=message_id
            )
            await record.response(timeout=10)
            records.append(record)

    await asyncio.gather(*(click(i, m) for i, m in enumerate(message_ids)))
    return records


async def run_once(measurement: Measurement) -> None:
    """Seed the ladders, start the bridge, post the click tasks, then storm and click."""
    with tempfile.TemporaryDirectory(prefix="bridge-click-storm-") as tmp:
        world = World(Path(tmp), discord_options=DISCORD)
        with store_url(world.database_file) as url:
            await world.start()
            env = {
                **ladder_env(world, url),
                "LOG_LEVEL": "WARNING",
                "DISCORD_CHANNEL_RATE_LIMIT": "1000",
                "DISCORD_CHANNEL_RATE_WINDOW_SECONDS": "1",
                "DISCORD_FEED_CHANNEL_ID": "",
            }
            process = BridgeProcess(env, Path(tmp), world.bridge_port)
            try:
                seed = await seed_open_tasks(
                    world,
                    LADDERS,
                    lead_seconds=LEAD_SECONDS,
                    window_seconds=STORM_SECONDS,
                    database_url=url,
                )
                await process.start(timeout=60 + LADDERS / 1000)
                await _storm(measurement, world, process, seed, url)
            finally:
                await process.terminate(timeout=20)
                await world.stop()
                gc.unfreeze()  # the next run starts with a clean slate


async def _storm(
    measurement: Measurement, world: World, process: BridgeProcess, seed: Seed, url: str
) -> None:
    world.factory.delay("POST", r"/v1/tasks/[^/]+/complete", 2.0)
    for i in range(CLICKS):
        await world.factory.create_task(
            title=f"storm click {i}", priority="high", stageName="review"
        )
    await world.discord.wait_for(lambda: len(task_messages(world)) >= CLICKS, 60)
    message_ids = list(task_messages(world).values())
    # the emulators' clocks stamp each click: what this process built so far (10,000 seeded
    # tasks and their messages) is kept out of its own collections, so that a full collection
    # here (≈ 100–200 ms) is not counted as the bridge's latency
    gc.collect()
    gc.freeze()
    await asyncio.sleep(max(0.0, seed.window_start - time.time()))
    # > 0: the tasks took longer to post than the lead allowed, the storm began late
    measurement.add("storm began after the first step due s", time.time() - seed.window_start)
    steps_before = len(step_rows(url))
    meter = ResourceMeter(process)
    start = time.monotonic()
    (accepted, other, elapsed), records = await asyncio.gather(
        storm_events(f"{world.bridge_url}/events", start),
        storm_clicks(world, message_ids, start),
    )
    cpu = meter.cpu_used()
    seeded = set(seed.task_ids)
    rows = [row for row in step_rows(url) if row[0] in seeded]
    steps = len(rows) - steps_before
    latencies = [
        (record.callbacks[0].at - record.created_at) * 1000
        for record in records
        if record.callbacks
    ]

    def told(record: InteractionRecord) -> bool:
        """The "⏳ Recording…" answer was replaced by the outcome."""
        original = world.discord.message(record.original_message_id or 0)
        return original is not None and not original.content.startswith("⏳")

    # decisions run FACTORY_MAX_CONCURRENT_REQUESTS at a time, 2 s each (not measured)
    with contextlib.suppress(TimeoutError):
        await world.discord.wait_for(lambda: all(told(r) for r in records), 120)
    measurement.add("p50 ms", percentile(latencies, 50))
    measurement.add("p99 ms", percentile(latencies, 99))
    measurement.add("refused (10062)", sum(1 for e in world.discord.errors if e.code == 10062))
    measurement.add("clicks", len(latencies))
    measurement.add("storm events/s delivered", accepted / elapsed)
    measurement.add("storm non-202 answers", other)
    measurement.add("ladder steps in the storm", steps)
    measurement.add(
        "ladder lateness p99 s", percentile([taken - due for _, _, due, taken, _ in rows], 99)
    )
    meter.record(measurement, accepted + len(latencies) + steps, cpu=cpu)
