"""Seed 10,000 open tasks the way a long-running bridge holds them, for ladders and restart.

Posting 10,000 single messages through the bridge would take hours under Discord's channel
rate, so the seed writes directly what the bridge would have: the tasks at the factory
(emulator), one real message per task in the Discord emulator, and the task rows with their
message ids in the bridge's store. Each task's reminder DM (``created + 1800 s``) falls at an
even spread over a 60 s window starting ``lead_seconds`` from now; every later step is hours
away (low priority, 72 h SLA).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import aiohttp
from sqlalchemy import insert
from sqlalchemy.engine import Connection

from bot.store import Store
from bot.store import tables as t
from escalation.models import Task
from sandbox.world import BOT_TOKEN, TASKS_CHANNEL_ID, World

__all__ = ["Seed", "seed_open_tasks"]

DM_AFTER_SECONDS = 1800.0


@dataclass(frozen=True)
class Seed:
    """What was seeded: task ids, and the window (Unix seconds) over which DMs come due."""

    task_ids: list[str]
    window_start: float
    window_end: float
    due_at: dict[str, float]


async def _post_messages(world: World, titles: list[str]) -> list[int]:
    url = f"{world.discord.api_base_url}/channels/{TASKS_CHANNEL_ID}/messages"
    headers = {"Authorization": f"Bot {BOT_TOKEN}", "Content-Type": "application/json"}
    ids: list[int] = [0] * len(titles)
    semaphore = asyncio.Semaphore(32)
    async with aiohttp.ClientSession() as session:

        async def post(index: int) -> None:
            async with semaphore:
                body = json.dumps({"embeds": [{"title": titles[index]}]})
                async with session.post(url, data=body, headers=headers) as response:
                    response.raise_for_status()
                    ids[index] = int((await response.json())["id"])

        await asyncio.gather(*(post(i) for i in range(len(titles))))
    return ids


def _insert_tasks(rows: list[dict[str, Any]], conn: Connection) -> None:
    conn.execute(insert(t.tasks), rows)


async def seed_open_tasks(
    world: World,
    count: int = 10_000,
    *,
    lead_seconds: float = 20.0,
    window_seconds: float = 60.0,
    database_url: str | None = None,
) -> Seed:
    """Create ``count`` open low-priority tasks whose reminder DMs come due over the window.

    ``database_url``: the bridge's store (default: the world's SQLite file); its schema is
    created here. The window starts ``lead_seconds`` after this call starts.
    """
    window_start = time.time() + lead_seconds
    tasks = []
    for i in range(count):
        due = window_start + window_seconds * i / count
        created = datetime.fromtimestamp(due - DM_AFTER_SECONDS, tz=UTC)
        task = await world.factory.create_task(
            emit=False,
            title=f"bench-ladder-{i:05d}",
            priority="low",
            type="review",
            stageName="review",
            createdAt=created.isoformat(),
            slaDeadline=(created + timedelta(hours=72)).isoformat(),
            context={"summary": "ladder benchmark"},
        )
        tasks.append(task)
    message_ids = await _post_messages(world, [task["title"] for task in tasks])
    store = Store(database_url or f"sqlite:///{world.database_file}")
    await store.create_schema()
    now = time.time()
    rows = []
    for task, message_id in zip(tasks, message_ids, strict=True):
        model = Task.model_validate(task)
        assert model.sla_deadline is not None
        rows.append(
            {
                "task_id": model.id,
                "payload": model.model_dump_json(by_alias=True),
                "priority": model.priority.value,
                "status": model.status.value,
                "created_at": model.created_at.timestamp(),
                "deadline": model.sla_deadline.timestamp(),
                "channel_id": TASKS_CHANNEL_ID,
                "message_id": message_id,
                "updated_at": now,
            }
        )
    for start in range(0, len(rows), 10_000):  # bounded statements on either engine
        await store.db.write(partial(_insert_tasks, rows[start : start + 10_000]))
    await store.close()
    return Seed(
        task_ids=[task["id"] for task in tasks],
        window_start=window_start,
        window_end=window_start + window_seconds,
        due_at={
            task["id"]: window_start + window_seconds * i / count for i, task in enumerate(tasks)
        },
    )
