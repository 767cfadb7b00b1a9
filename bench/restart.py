"""restart: 10,000 open tasks with ladders, ``kill -9`` of the bridge mid-window, restart.

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
import sqlite3
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.common import Measurement
from bench.ladder_seed import seed_open_tasks
from bench.ladders import COUNT as LADDER_COUNT
from bench.ladders import DISCORD, ladder_env, step_rows, wait_for_window_steps
from sandbox.world import World
from tests.support.harness import BridgeProcess, wait_until

RUNS = 3
COUNT = LADDER_COUNT  # the same tasks as the ladders benchmark
DOWN_SECONDS = 5.0

NOTES = [
    "The bridge is killed with SIGKILL 20 s into the 60 s window of due steps and restarted "
    "5 s later; 'timers armed after s' is from the restarted process's spawn to its log line "
    "'escalation ladder armed for N open tasks'.",
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


def deliveries(database: Path) -> list[tuple[str, str, str, str]]:
    """(task id, step, recipient, status) of every escalation delivery."""
    with sqlite3.connect(database) as conn:
        return list(
            conn.execute("SELECT task_id, step, recipient, status FROM escalation_deliveries")
        )


async def run_once(measurement: Measurement) -> None:
    """Seed, start, kill -9 mid-window, restart after 5 s, check every step once."""
    with tempfile.TemporaryDirectory(prefix="bridge-restart-") as tmp:
        world = World(Path(tmp), discord_options=DISCORD)
        await world.start()
        process = BridgeProcess(ladder_env(world), Path(tmp), world.bridge_port)
        try:
            seed = await seed_open_tasks(world, COUNT, lead_seconds=25)
            await process.start(timeout=60)
            await wait_until(
                lambda: time.time() > seed.window_start + 20, timeout=90, what="mid-window"
            )
            await process.kill()
            before = len(step_rows(world.database_file))
            await wait_until(
                lambda: time.time() > seed.window_start + 20 + DOWN_SECONDS,
                timeout=30,
                what="downtime",
            )
            spawned = time.time()
            await process.start(timeout=60)
            assert process.log_path is not None
            with contextlib.suppress(TimeoutError):
                await wait_for_window_steps(
                    world, seed, "every step of the window after the restart"
                )
                # bundled DMs wait up to ESCALATION_BUNDLE_SECONDS (10 s here)
                await wait_until(
                    lambda: (
                        not any(
                            d[3] in ("pending", "claimed") for d in deliveries(world.database_file)
                        )
                    ),
                    timeout=60,
                    what="the last bundles to go out",
                )
            armed = armed_at(process.log_path)
            rows = step_rows(world.database_file)
            pairs = [(task, step) for task, step, *_ in rows]
            sent = [
                (task, step, recipient)
                for task, step, recipient, status in deliveries(world.database_file)
                if status == "sent"
            ]
            open_deliveries = [
                d for d in deliveries(world.database_file) if d[3] in ("pending", "claimed")
            ]
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
                "deliveries interrupted (unknown)",
                sum(1 for d in deliveries(world.database_file) if d[3] == "unknown"),
            )
        finally:
            await process.terminate(timeout=20)
            await world.stop()
