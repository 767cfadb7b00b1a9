"""``/factory pending`` and ``/factory blockers`` look up every task the factory lists: with
100,000 open tasks that is more ids than one statement may bind (PostgreSQL 65,535, SQLite
32,766), so the store reads them in chunks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.store import Store
from escalation.models import Task

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


async def test_seventy_thousand_ids_are_looked_up_in_the_order_given(store: Store) -> None:
    for n in (3, 1, 2):
        task = Task(id=f"t-{n}", title=f"Task {n}", created_at=NOW)
        await store.upsert_task(task, NOW + timedelta(hours=1))
    ids = [f"unknown-{n}" for n in range(70_000)]
    ids[10], ids[40_000], ids[69_999] = "t-2", "t-3", "t-1"
    found = await store.tasks_by_ids(ids)
    assert [t.task_id for t in found] == ["t-2", "t-3", "t-1"]
