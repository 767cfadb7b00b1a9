"""ladders: 10,000 open tasks with ladders; steps coming due over 60 s.

Lateness of a step = when the ladder took it − when it was due (``escalation_steps``); peak RSS
is the bridge process's ``VmHWM``. Reminder DMs go out bundled per person
(ESCALATION_BUNDLE_SECONDS, 120 s by default): the bundle delay is policy, not lateness, and is
reported separately as the delivery count.
"""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
import time
from pathlib import Path

from bench.common import Measurement, peak_rss_mb, percentile
from bench.ladder_seed import Seed, seed_open_tasks
from sandbox.world import World
from tests.support.harness import BridgeProcess, wait_until

RUNS = 3
COUNT = 10_000
#: How long after the window the benchmark waits for a backlog of steps, in seconds.
MAX_BACKLOG_SECONDS = 150.0
DISCORD = {
    "channel_rate_limit": 1_000_000,
    "channel_rate_window_seconds": 1.0,
    "check_spec": False,  # measured: the bridge, not the emulator's conformance check
}

NOTES = [
    "10,000 low-priority open tasks seeded (factory, Discord messages, store rows); their "
    "reminder DMs come due evenly over 60 s; the bridge runs with default settings except "
    "QUIET_HOURS_ENABLED=false, BATCH_ENABLED=false and ESCALATION_BUNDLE_SECONDS=10 (so that "
    "bundled DMs flush within the measurement). Lateness is measured from the store.",
]


def ladder_env(world: World) -> dict[str, str]:
    """The bridge's settings for the ladder benchmarks."""
    return world.env(
        LOG_LEVEL="INFO", RECONCILE_INTERVAL_SECONDS="3600", ESCALATION_BUNDLE_SECONDS="10"
    )


def step_rows(database: Path) -> list[tuple[str, str, float, float, str]]:
    """(task id, step, due, taken, status) of every escalation step taken."""
    with sqlite3.connect(database) as conn:
        return list(
            conn.execute("SELECT task_id, step, due_at, taken_at, status FROM escalation_steps")
        )


def dm_task_mentions(world: World, titles: set[str]) -> dict[str, int]:
    """How many DMs mention each seeded task (by its unique title)."""
    counts: dict[str, int] = {}
    for person in world.people.all():
        for message in world.discord.dm_messages(person.id):
            for title in titles:
                if title in message.content:
                    counts[title] = counts.get(title, 0) + 1
    return counts


async def wait_for_window_steps(world: World, seed: Seed, what: str) -> None:
    """Wait until the window has passed and every seeded task has a step row (bounded by
    :data:`MAX_BACKLOG_SECONDS` after the window); raises ``TimeoutError`` otherwise."""
    await wait_until(
        lambda: time.time() > seed.window_end + 2 and len(step_rows(world.database_file)) >= COUNT,
        timeout=seed.window_end - time.time() + MAX_BACKLOG_SECONDS,
        what=what,
    )


async def run_once(measurement: Measurement) -> None:
    """Seed, start the bridge, wait for every step of the window, measure."""
    with tempfile.TemporaryDirectory(prefix="bridge-ladders-") as tmp:
        world = World(Path(tmp), discord_options=DISCORD)
        await world.start()
        process = BridgeProcess(ladder_env(world), Path(tmp), world.bridge_port)
        try:
            seed = await seed_open_tasks(world, COUNT, lead_seconds=25)
            await process.start(timeout=60)
            assert process.process is not None
            with contextlib.suppress(TimeoutError):
                await wait_for_window_steps(world, seed, "every reminder step of the window")
            stopped = time.time()
            rows = step_rows(world.database_file)
            lateness = [taken - due for _, _, due, taken, _ in rows]
            # a step still not taken when we stopped waiting is at least that late
            taken_ids = {task_id for task_id, *_ in rows}
            lateness += [stopped - seed.due_at[i] for i in seed.task_ids if i not in taken_ids]
            measurement.add("steps taken", len(rows))
            measurement.add("lateness p50 s", percentile(lateness, 50))
            measurement.add("lateness p99 s", percentile(lateness, 99))
            measurement.add("lateness max s", max(lateness))
            measurement.add("peak RSS MB", peak_rss_mb(process.process.pid))
            measurement.add(
                "DMs sent", sum(len(world.discord.dm_messages(p.id)) for p in world.people.all())
            )
        finally:
            await process.terminate(timeout=20)
            await world.stop()
