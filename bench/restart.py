"""restart: the ``ladders`` tasks (100,000 by default), ``kill -9`` of the bridge mid-window, restart.

Measured: seconds from the restarted process's start to "escalation ladder armed" in its log
(every open task's wake-up rebuilt from the store); steps taken twice (a (task, step) pair with
more than one row, or a delivery sent twice); steps lost (a step due in the window with no row,
or a delivery left neither sent nor settled after the window). Deliveries interrupted by the
kill are settled as "unknown" and not repeated (at most once), and counted separately.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.common import Measurement, ResourceMeter
from bench.engines import query, store_url
from bench.ladder_seed import seed_open_tasks
from bench.ladders import COUNT as LADDER_COUNT
from bench.ladders import (
    DISCORD,
    LEAD_SECONDS,
    WINDOW_SECONDS,
    every,
    ladder_env,
    step_rows,
    wait_for_window_steps,
)
from sandbox.world import World
from tests.support.harness import BridgeProcess, wait_until

RUNS = 3
COUNT = LADDER_COUNT  # the same tasks as the ladders benchmark
DOWN_SECONDS = 5.0
#: The kill comes this far into the window of due steps, in seconds.
KILL_AFTER_SECONDS = WINDOW_SECONDS / 3

NOTES = [
    f"The bridge is killed with SIGKILL {KILL_AFTER_SECONDS:.0f} s into the "
    f"{WINDOW_SECONDS:.0f} s window of due steps and restarted 5 s later; 'timers armed after "
    "s' is from the restarted process's spawn to its log line 'escalation ladder armed for N "
    "open tasks'. CPU s per 1,000 events and peak RSS: the restarted process, ÷ steps taken "
    "after the restart.",
]

ARMED = re.compile(r"^(\S+ \S+) INFO bot\.ladder\.runtime: escalation ladder armed for (\d+)")
ARMED_MESSAGE = "escalation ladder armed for "


def armed_at(log: Path) -> float | None:
    """Unix time of the 'armed' log line: a JSON line (``LOG_FORMAT=json``, the default off a
    terminal: ISO 8601 UTC timestamp) or a text line (local time)."""
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if str(entry.get("message", "")).startswith(ARMED_MESSAGE):
                stamp = str(entry["timestamp"]).replace("Z", "+00:00")
                return datetime.fromisoformat(stamp).timestamp()
            continue
        match = ARMED.match(line)
        if match:
            return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


#: Delivery statuses still to be sent or settled (``reserved``: a bundle's claim page,
#: bot.store.ladder.LadderStore.claim_pending).
OPEN_STATUSES = ("pending", "reserved", "claimed")


def deliveries(database_url: str) -> list[tuple[str, str, str, str]]:
    """(task id, step, recipient, status) of every escalation delivery."""
    sql = "SELECT task_id, step, recipient, status FROM escalation_deliveries"
    return [(str(a), str(b), str(c), str(d)) for a, b, c, d in query(database_url, sql)]


async def run_once(measurement: Measurement) -> None:
    """Seed, start, kill -9 mid-window, restart after 5 s, check every step once."""
    with tempfile.TemporaryDirectory(prefix="bridge-restart-") as tmp:
        world = World(Path(tmp), discord_options=DISCORD)
        with store_url(world.database_file) as url:
            await world.start()
            process = BridgeProcess(ladder_env(world, url), Path(tmp), world.bridge_port)
            try:
                await _run(measurement, world, process, url)
            finally:
                await process.terminate(timeout=20)
                await world.stop()


async def _run(measurement: Measurement, world: World, process: BridgeProcess, url: str) -> None:
    seed = await seed_open_tasks(
        world,
        COUNT,
        lead_seconds=LEAD_SECONDS,
        window_seconds=WINDOW_SECONDS,
        database_url=url,
    )
    await process.start(timeout=60 + COUNT / 1000)
    kill_at = seed.window_start + KILL_AFTER_SECONDS
    await wait_until(
        lambda: time.time() > kill_at, timeout=kill_at - time.time() + 30, what="mid-window"
    )
    await process.kill()
    before = len(step_rows(url))
    await wait_until(lambda: time.time() > kill_at + DOWN_SECONDS, timeout=30, what="downtime")
    spawned = time.time()
    await process.start(timeout=60 + COUNT / 1000)
    meter = ResourceMeter(process)
    assert process.log_path is not None
    with contextlib.suppress(TimeoutError):
        await wait_for_window_steps(world, seed, url, "every step of the window after the restart")
        # bundled DMs wait up to ESCALATION_BUNDLE_SECONDS (10 s here)
        await wait_until(
            every(
                1.0,
                lambda: not any(d[3] in OPEN_STATUSES for d in deliveries(url)),
            ),
            timeout=60,
            what="the last bundles to go out",
        )
    armed = armed_at(process.log_path)
    rows = step_rows(url)
    pairs = [(task, step) for task, step, *_ in rows]
    all_deliveries = deliveries(url)
    sent = [
        (task, step, recipient)
        for task, step, recipient, status in all_deliveries
        if status == "sent"
    ]
    open_deliveries = [d for d in all_deliveries if d[3] in OPEN_STATUSES]
    measurement.add("timers armed after s", (armed - spawned) if armed else float("nan"))
    measurement.add("steps before kill", before)
    measurement.add(
        "steps taken twice", (len(pairs) - len(set(pairs))) + (len(sent) - len(set(sent)))
    )
    # a step with no row when the bounded wait ended may be backlog, not lost: the
    # figure is named for what it measures
    measurement.add("steps not taken when the wait ended", COUNT - len(set(pairs)))
    measurement.add("deliveries still open when the wait ended", len(open_deliveries))
    measurement.add(
        "deliveries interrupted (unknown)", sum(1 for d in all_deliveries if d[3] == "unknown")
    )
    meter.record(measurement, max(len(rows) - before, 0))
