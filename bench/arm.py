"""arm: CPU and wall seconds for the ladder to arm N open tasks at start (in process).

What ``restart`` and ``failover`` wait for between "lease won" / process start and "escalation
ladder armed": :meth:`bot.ladder.LadderRuntime.rebuild` over a store holding N open tasks the
way :mod:`bench.ladder_seed` writes them (low priority, 72 h SLA, reminder DMs due over a
window), a third of them with their reminder DM already taken. No Discord, no factory.

Usage: ``python -m bench.arm [N] [--profile]``; the store is ``BENCH_ARM_DATABASE_URL``
(default: a temporary SQLite file; a PostgreSQL URL is emptied first).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.engine import Connection

from bot.bridge import Bridge
from bot.ladder import LadderRuntime
from bot.roster import Roster
from bot.settings import Settings
from bot.store import Store
from bot.store import tables as t
from escalation.models import Task

DM_AFTER_SECONDS = 1800.0


def _rows(count: int, now: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    tasks, steps = [], []
    for i in range(count):
        due = now + 20 + 60 * i / count
        created = datetime.fromtimestamp(due - DM_AFTER_SECONDS, tz=UTC)
        task_id = f"task-{i:06d}"
        model = Task(
            id=task_id,
            title=f"bench-ladder-{i:05d}",
            priority="low",  # type: ignore[arg-type]
            created_at=created,
            sla_deadline=created + timedelta(hours=72),
        )
        assert model.sla_deadline is not None
        tasks.append(
            {
                "task_id": task_id,
                "payload": model.model_dump_json(by_alias=True),
                "priority": model.priority.value,
                "status": model.status.value,
                "created_at": model.created_at.timestamp(),
                "deadline": model.sla_deadline.timestamp(),
                "channel_id": 100,
                "message_id": 10_000 + i,
                "updated_at": now,
            }
        )
        if i % 3 == 0:
            steps.append(
                {
                    "task_id": task_id,
                    "step": "reminder_dm",
                    "due_at": due,
                    "taken_at": due,
                    "late_seconds": 0.0,
                    "status": "done",
                    "outcome": json.dumps({"deliveries": [{"channel": "dm", "status": "sent"}]}),
                }
            )
    return tasks, steps


def _seed(tasks: list[dict[str, Any]], steps: list[dict[str, Any]], conn: Connection) -> None:
    for table in (t.escalation_steps, t.tasks):
        conn.execute(delete(table))
    for start in range(0, len(tasks), 10_000):
        conn.execute(insert(t.tasks), tasks[start : start + 10_000])
    for start in range(0, len(steps), 10_000):
        conn.execute(insert(t.escalation_steps), steps[start : start + 10_000])


async def measure(url: str, count: int, *, profile: bool) -> dict[str, float]:
    """Seed ``count`` tasks into ``url``, then time one rebuild."""
    store = Store(url)
    await store.create_schema()
    await store.db.write(partial(_seed, *_rows(count, time.time())))
    values: dict[str, Any] = {
        "discord_bot_token": "t",
        "discord_guild_id": 1,
        "discord_tasks_channel_id": 100,
        "discord_alerts_channel_id": 200,
        "factory_api_key": "k",
        "factory_webhook_secret": "s",
    }
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    bridge = Bridge(settings=settings, store=store, factory=None, roster=Roster(()))  # type: ignore[arg-type]
    runtime = LadderRuntime(bridge=bridge, messenger=None, pager=None)  # type: ignore[arg-type]
    # the loop's worst pause while arming (how long intake and the gateway wait)
    gaps: list[float] = []
    stop = False

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    profiler: Any = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="disabled")
        profiler.start()
    cpu, wall = time.process_time(), time.perf_counter()
    armed = await runtime.rebuild()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if profiler is not None:
        profiler.stop()
        print(profiler.output_text(unicode=True, color=False, show_all=False))
    stop = True
    await tick
    await store.close()
    assert armed == count, armed
    return {"tasks": count, "cpu_s": cpu, "wall_s": wall, "max_loop_gap_s": max(gaps or [0.0])}


def main() -> None:
    """Run once, print the figures."""
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    count = int(args[0]) if args else 100_000
    url = os.environ.get("BENCH_ARM_DATABASE_URL")
    with tempfile.TemporaryDirectory() as tmp:
        url = url or f"sqlite:///{tmp}/arm.db"
        result = asyncio.run(measure(url, count, profile="--profile" in sys.argv))
    print(json.dumps({"engine": url.split(":")[0], **result}))


if __name__ == "__main__":
    main()
