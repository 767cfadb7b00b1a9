"""decision-e2e: Approve clicked → factory ``complete`` call received → task message edited.

The whole decision as a person sees it, the factory answering at once: from the moment the
Discord emulator dispatches the click (INTERACTION_CREATE), through the factory emulator
receiving ``POST /v1/tasks/{id}/complete``, to the Discord emulator receiving the edit of the
task's message that shows the decision ("Decision: Approved by …"). Every timestamp is taken by
an emulator on arrival: the Discord emulator's clock for the click and the edit, the factory
emulator's (UTC wall clock, mapped onto the Discord clock once per run) for the call. 200 tasks,
one Approve click each, 4 decisions in flight (a click's slot is free again once its message
shows the decision: four people deciding at once, not 200 clicks within two seconds, which
measured how fast the bridge clears a backlog — p99 1.3 s on 2026-11-28); Discord's channel limit lifted in
the emulator, the bridge's pacer of new messages (``DISCORD_CHANNEL_RATE_LIMIT``) and its
per-channel edit budget (``DISCORD_EDIT_RATE_LIMIT``, :mod:`bot.discord.edit_queue`) so that the
figure is the bridge's own: with Discord's 5 edits per 5 s, 200 decisions in one channel would
take over three minutes to show whatever the bridge does.
"""

from __future__ import annotations

import asyncio
import re
import time

from bench.common import (
    EditLog,
    EditRecord,
    Measurement,
    ResourceMeter,
    bridge_world,
    percentile,
    sized,
)
from bench.memory import task_messages
from sandbox.discord_emulator import InteractionRecord
from sandbox.world import TASKS_CHANNEL_ID
from tests.support.reading import fields

TASKS: int = sized(200, 20)
CONCURRENT_CLICKS = 4
RATE_LIFTED = {"channel_rate_limit": 1000, "channel_rate_window_seconds": 1.0}
COMPLETE = re.compile(r"^/v1/tasks/([^/]+)/complete$")

NOTES = [
    "200 high-priority tasks, one Approve click each, 4 decisions in flight (a click's slot "
    "frees when its message shows the decision), the factory answering "
    "`complete` at once; p50/p99 = click dispatched → edit of the task message showing the "
    "decision received (both by the Discord emulator's clock); the legs: → `complete` call "
    "received by the factory emulator, and from there → the edit. CPU s per 1,000 events: "
    "the bridge's user+sys over the clicks ÷ clicks. Discord's per-channel limit is lifted "
    "in the emulator, the bridge's pacer and its edit budget (`DISCORD_EDIT_RATE_LIMIT`), so "
    "that the figure is the bridge's own.",
]


async def run_once(measurement: Measurement) -> None:
    """One run: post TASKS tasks, click each once (4 in flight), wait until each message shows
    its decision, and measure the three instants of each decision."""
    async with bridge_world(
        discord_options=RATE_LIFTED,
        DISCORD_CHANNEL_RATE_LIMIT="1000",
        DISCORD_CHANNEL_RATE_WINDOW_SECONDS="1",
        DISCORD_EDIT_RATE_LIMIT="1000",
    ) as (world, process):
        edits = EditLog(world)
        for i in range(TASKS):
            await world.factory.create_task(
                title=f"decision {i}", priority="high", stageName="review"
            )
        await world.discord.wait_for(lambda: len(task_messages(world)) >= TASKS, 60)
        message_of = task_messages(world)  # task id → message id
        shown_at: dict[int, float] = {}  # message id → Discord clock of the edit showing it
        decided = {message_id: asyncio.Event() for message_id in message_of.values()}

        def on_edit(record: EditRecord) -> None:
            if record.message_id in shown_at or record.status >= 400:
                return
            message = world.discord.message(record.message_id)
            if message is not None and message.embeds:
                if "Approved" in fields(message).get("Decision", ""):
                    shown_at[record.message_id] = record.at
                    decided[record.message_id].set()

        edits.on_edit.append(on_edit)
        meter = ResourceMeter(process)
        clicks: dict[str, InteractionRecord] = {}
        semaphore = asyncio.Semaphore(CONCURRENT_CLICKS)

        async def click(task_id: str, message_id: int) -> None:
            async with semaphore:
                record = await world.discord.press_button(
                    TASKS_CHANNEL_ID, "Approve", user=world.people.alice, message_id=message_id
                )
                await record.response(timeout=10)
                clicks[task_id] = record
                # a decision is in flight until its message shows it: 4 people deciding at
                # once, not a backlog of 200 clicks made within two seconds
                await asyncio.wait_for(decided[message_id].wait(), 60)

        await asyncio.gather(*(click(t, m) for t, m in message_of.items()))
        await world.discord.wait_for(lambda: len(shown_at) >= len(clicks), 60)
        cpu = meter.cpu_used()

        # the factory stamps requests with its UTC wall clock: map it onto the Discord clock
        shift = world.discord.now() - time.time()
        called_at: dict[str, float] = {}
        for call in world.factory.calls("POST", COMPLETE.pattern):
            found = COMPLETE.match(call.path)
            if found and found.group(1) not in called_at:
                called_at[found.group(1)] = call.at.timestamp() + shift
        total, to_call, to_edit = [], [], []
        for task_id, record in clicks.items():
            shown = shown_at.get(message_of[task_id])
            called = called_at.get(task_id)
            if shown is not None:
                total.append((shown - record.created_at) * 1000)
            if called is not None:
                to_call.append((called - record.created_at) * 1000)
                if shown is not None:
                    to_edit.append((shown - called) * 1000)
        measurement.add("p50 ms", percentile(total, 50))
        measurement.add("p99 ms", percentile(total, 99))
        measurement.add("click → complete call p50 ms", percentile(to_call, 50))
        measurement.add("click → complete call p99 ms", percentile(to_call, 99))
        measurement.add("complete call → edit p50 ms", percentile(to_edit, 50))
        measurement.add("complete call → edit p99 ms", percentile(to_edit, 99))
        measurement.add("decisions shown", len(total))
        measurement.add("refused (10062)", sum(1 for e in world.discord.errors if e.code == 10062))
        meter.record(measurement, len(clicks), cpu=cpu)
