"""A snapshot stamped by a factory clock running ahead does not freeze the task.

The store keeps the newer of two snapshots by ``updatedAt`` (factory contract §1.4). A stored
``updatedAt`` from the future (the factory's clock was wrong when it stamped it) must not make
every later, correctly stamped snapshot look older: the raised priority, the new title and the
new deadline are shown. A stamp only a little ahead (honest skew between two clocks) still
orders snapshots that arrive out of order. Each test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.store import Store
from escalation.models import Task

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def snapshot(updated: datetime, **fields: Any) -> Task:
    body: dict[str, Any] = {
        "id": "t1",
        "title": "Deploy Stripe MCP",
        "priority": "low",
        "createdAt": NOW.isoformat(),
        "updatedAt": updated.isoformat(),
        **fields,
    }
    return Task.model_validate(body)


async def test_a_snapshot_stamped_in_the_future_does_not_hide_later_changes(
    store: Store,
) -> None:
    store._clock = lambda: NOW.timestamp()  # the bridge's clock is right
    skewed = snapshot(NOW + timedelta(days=365))  # the factory's clock was a year ahead
    await store.upsert_task(skewed, NOW + timedelta(hours=4))
    raised = snapshot(NOW, priority="critical", title="Deploy Stripe MCP (now CRITICAL)")
    await store.upsert_task(raised, NOW + timedelta(minutes=5))
    stored = await store.get_task("t1")
    assert stored is not None
    assert stored.task.priority.value == "critical"
    assert stored.task.title == "Deploy Stripe MCP (now CRITICAL)"
    assert stored.deadline == NOW + timedelta(minutes=5)
    again = snapshot(NOW + timedelta(seconds=1), priority="critical", title="renamed again")
    await store.upsert_task(again, NOW + timedelta(minutes=5))  # later changes keep showing
    assert (await store.get_task("t1")).task.title == "renamed again"  # type: ignore[union-attr]


async def test_a_stamp_a_little_ahead_still_keeps_a_late_older_snapshot_out(
    store: Store,
) -> None:
    store._clock = lambda: NOW.timestamp()
    escalated = snapshot(NOW + timedelta(minutes=1), priority="critical", title="escalated")
    await store.upsert_task(escalated, NOW + timedelta(minutes=10))
    late = snapshot(NOW - timedelta(minutes=3))  # a webhook retried after the escalation
    await store.upsert_task(late, NOW + timedelta(hours=4))
    stored = await store.get_task("t1")
    assert stored is not None
    assert (stored.task.priority.value, stored.task.title) == ("critical", "escalated")
    assert stored.deadline == NOW + timedelta(minutes=10)
