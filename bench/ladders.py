"""ladders: 100,000 open tasks with ladders; steps coming due over 5 minutes.

Lateness of a step = when the ladder took it − when it was due (``escalation_steps``); peak RSS
is the bridge process's ``VmHWM``. Reminder DMs go out bundled per person
(ESCALATION_BUNDLE_SECONDS, 10 s here): the bundle delay is policy, not lateness.

Also measured during the storm: message edits the bridge sends per channel (every ``PATCH
/channels/{id}/messages/{id}`` the Discord emulator receives; per minute over the window, and
the busiest sliding minute of any channel, against Discord's per-channel budget), and the time
to post a new critical task in the middle of the window (signed ``task.created`` POST sent →
its message created, both by the Discord emulator's clock; a few probes a second apart).

Size: ``BENCH_LADDER_TASKS`` and ``BENCH_LADDER_WINDOW_SECONDS`` (default 100,000 and 300 s,
issue 19; the first round used 10,000 over 60 s); ``restart`` uses the same tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from bench.common import (
    EditLog,
    Measurement,
    ResourceMeter,
    percentile,
    signed_task_event,
    sized,
    task_payload,
)
from bench.engines import query, store_url
from bench.ladder_seed import Seed, seed_open_tasks
from sandbox.world import TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess, wait_until

RUNS = 3
COUNT = int(os.environ.get("BENCH_LADDER_TASKS", sized(100_000, 300)))
WINDOW_SECONDS = float(os.environ.get("BENCH_LADDER_WINDOW_SECONDS", sized(300.0, 10.0)))
#: Seconds from the start of seeding to the first step due: seeding (≈ 0.4 ms per task here)
#: and the bridge's start (arming every task) must fit; "bridge ready before the window s"
#: < 0 says it did not (``BENCH_LADDER_LEAD_SECONDS`` overrides).
LEAD_SECONDS = float(os.environ.get("BENCH_LADDER_LEAD_SECONDS", sized(25.0, 8.0) + COUNT / 800))
#: How long after the window the benchmark waits for a backlog of steps, in seconds.
MAX_BACKLOG_SECONDS = 150.0
#: Critical tasks posted in the middle of the window, one a second.
PROBES: int = sized(20, 3)
DISCORD = {
    "channel_rate_limit": 1_000_000,
    "channel_rate_window_seconds": 1.0,
    "check_spec": False,  # measured: the bridge, not the emulator's conformance check
}

NOTES = [
    f"{COUNT:,} low-priority open tasks seeded (factory, Discord messages, store rows); their "
    f"reminder DMs come due evenly over {WINDOW_SECONDS:.0f} s; the bridge runs with default "
    "settings except QUIET_HOURS_ENABLED=false, BATCH_ENABLED=false and "
    "ESCALATION_BUNDLE_SECONDS=10 (so that bundled DMs flush within the measurement). Lateness "
    "is measured from the store. Discord's POST limit is lifted in the emulator only: the "
    "bridge paces its own posts (5 / 5 s per channel); edits are counted, not limited. "
    f"{PROBES} critical tasks are posted one a second in the middle of the window. CPU s per "
    "1,000 events: the bridge's user+sys from its first /healthz answer ÷ steps taken.",
]


def ladder_env(world: World, database_url: str) -> dict[str, str]:
    """The bridge's settings for the ladder benchmarks."""
    return world.env(
        LOG_LEVEL="INFO",
        RECONCILE_INTERVAL_SECONDS="3600",
        ESCALATION_BUNDLE_SECONDS="10",
        DATABASE_URL=database_url,
    )


def step_rows(database_url: str) -> list[tuple[str, str, float, float, str]]:
    """(task id, step, due, taken, status) of every escalation step taken."""
    sql = "SELECT task_id, step, due_at, taken_at, status FROM escalation_steps"
    return [
        (str(a), str(b), float(c), float(d), str(e)) for a, b, c, d, e in query(database_url, sql)
    ]


def seeded_steps_taken(database_url: str, seed: Seed) -> int:
    """How many seeded tasks have a step row (other tasks' steps are not counted)."""
    rows = query(database_url, "SELECT DISTINCT task_id FROM escalation_steps")
    seeded = set(seed.task_ids)
    return sum(1 for (task_id,) in rows if task_id in seeded)


def every(seconds: float, predicate: Callable[[], bool]) -> Callable[[], bool]:
    """``predicate`` looked at no more often than every ``seconds`` (False in between): the
    store is not read 50 times a second while it is under load."""
    last = [0.0]

    def throttled() -> bool:
        now = time.monotonic()
        if now - last[0] < seconds:
            return False
        last[0] = now
        return predicate()

    return throttled


async def wait_for_window_steps(world: World, seed: Seed, database_url: str, what: str) -> None:
    """Wait until the window has passed and every seeded task has a step row (bounded by
    :data:`MAX_BACKLOG_SECONDS` after the window); raises ``TimeoutError`` otherwise."""
    count = len(seed.task_ids)
    await wait_until(
        every(
            1.0,
            lambda: (
                time.time() > seed.window_end + 2
                and seeded_steps_taken(database_url, seed) >= count
            ),
        ),
        timeout=seed.window_end - time.time() + MAX_BACKLOG_SECONDS,
        what=what,
    )


def footer_task_id(message: object) -> str:
    """The task id in a task message's embed footer ("task <id> · …"), or ""."""
    embeds = getattr(message, "embeds", None) or []
    footer = (embeds[0].get("footer") or {}).get("text", "") if embeds else ""
    return str(footer).removeprefix("task ").split(" ")[0]


async def post_critical_probes(world: World, start_at: float, count: int) -> dict[str, float]:
    """Send ``count`` signed critical ``task.created`` events one a second from ``start_at``
    (Unix time): task id → Discord clock when its POST was sent (accepted ones only)."""
    await asyncio.sleep(max(0.0, start_at - time.time()))
    sent_at: dict[str, float] = {}
    async with aiohttp.ClientSession() as session:
        for i in range(count):
            task = task_payload(title=f"critical probe {i}", priority="critical")
            body, headers = signed_task_event(task)
            sent = world.discord.now()
            async with session.post(
                f"{world.bridge_url}/events", data=body, headers=headers
            ) as response:
                await response.read()
                if response.status == 202:
                    sent_at[task["id"]] = sent
            await asyncio.sleep(max(0.0, 1.0 - (world.discord.now() - sent)))
    return sent_at


def probes_posted(world: World, sent_at: dict[str, float]) -> dict[str, float]:
    """Probe task id → Discord clock when its message was created, for those posted."""
    found = {footer_task_id(m): m.created_at for m in world.discord.messages(TASKS_CHANNEL_ID)}
    return {task_id: found[task_id] for task_id in sent_at if task_id in found}


def probe_latencies(world: World, sent_at: dict[str, float], stopped: float) -> list[float]:
    """Seconds from each probe's POST to its message (a probe never posted counts as
    ``stopped`` − sent: at least that late)."""
    posted = probes_posted(world, sent_at)
    return [posted.get(task_id, stopped) - sent for task_id, sent in sent_at.items()]


async def run_once(measurement: Measurement) -> None:
    """Seed, start the bridge, post the probes mid-window, wait for every step, measure."""
    with tempfile.TemporaryDirectory(prefix="bridge-ladders-") as tmp:
        world = World(Path(tmp), discord_options=DISCORD)
        with store_url(world.database_file) as database_url:
            await world.start()
            process = BridgeProcess(ladder_env(world, database_url), Path(tmp), world.bridge_port)
            edits = EditLog(world)
            try:
                seed = await seed_open_tasks(
                    world,
                    COUNT,
                    lead_seconds=LEAD_SECONDS,
                    window_seconds=WINDOW_SECONDS,
                    database_url=database_url,
                )
                await process.start(timeout=60 + COUNT / 1000)
                meter = ResourceMeter(process)
                measurement.add("bridge ready before the window s", seed.window_start - time.time())
                probes = asyncio.create_task(
                    post_critical_probes(
                        world, (seed.window_start + seed.window_end - PROBES) / 2, PROBES
                    )
                )
                with contextlib.suppress(TimeoutError):
                    await wait_for_window_steps(
                        world, seed, database_url, "every reminder step of the window"
                    )
                sent_at = await probes
                with contextlib.suppress(TimeoutError):
                    await wait_until(
                        every(1.0, lambda: len(probes_posted(world, sent_at)) >= len(sent_at)),
                        timeout=30,
                        what="the critical probes' messages",
                    )
                stopped = time.time()
                seeded = set(seed.task_ids)
                rows = [row for row in step_rows(database_url) if row[0] in seeded]
                lateness = [taken - due for _, _, due, taken, _ in rows]
                # a step still not taken when we stopped waiting is at least that late
                taken_ids = {task_id for task_id, *_ in rows}
                lateness += [stopped - seed.due_at[i] for i in seed.task_ids if i not in taken_ids]
                measurement.add("steps taken", len(rows))
                measurement.add("lateness p50 s", percentile(lateness, 50))
                measurement.add("lateness p99 s", percentile(lateness, 99))
                measurement.add("lateness max s", max(lateness))
                shift = world.discord.now() - time.time()  # Unix time → Discord clock
                per_minute = edits.per_channel_per_minute(
                    seed.window_start + shift, seed.window_end + shift
                )
                measurement.add(
                    "edits per channel per minute (window)", max(per_minute.values(), default=0)
                )
                measurement.add("edits per channel, busiest minute", edits.busiest_minute())
                measurement.add(
                    "edits answered 429", sum(1 for e in edits.records if e.status == 429)
                )
                probe = probe_latencies(world, sent_at, world.discord.now())
                measurement.add("critical task posted p50 s", percentile(probe, 50))
                measurement.add("critical task posted p99 s", percentile(probe, 99))
                measurement.add(
                    "DMs sent",
                    sum(len(world.discord.dm_messages(p.id)) for p in world.people.all()),
                )
                meter.record(measurement, len(rows))
            finally:
                await process.terminate(timeout=20)
                await world.stop()
