"""A confirmed decision is shown on its message while its audit entry is being written."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.store import Store
from escalation.models import Task, TaskDecision, TaskStatus
from tests.bot_unit.test_outcomes import ALICE, make_bridge

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


class ConfirmingFactory:
    """Answers ``complete`` at once with the task decided."""

    async def complete_task(self, task_id: str, **_: Any) -> Task:
        return Task(
            id=task_id,
            title="Release",
            created_at=NOW - timedelta(hours=1),
            status=TaskStatus.COMPLETED,
            decision=TaskDecision.APPROVED,
            decided_at=NOW,
            decided_by="alice",
        )


async def test_the_message_is_refreshed_without_waiting_for_the_audit_write(store: Store) -> None:
    bridge = make_bridge(store)
    bridge.factory = ConfirmingFactory()  # type: ignore[assignment]
    bridge.actions.factory = bridge.factory  # type: ignore[assignment]
    task = Task(id="t1", title="Release", created_at=NOW - timedelta(hours=1))
    await store.upsert_task(task, NOW + timedelta(hours=1))

    refreshed = asyncio.Event()
    shown: list[str | None] = []

    async def refresh_message(task_id: str) -> None:
        tracked = await store.get_task(task_id)
        shown.append(None if tracked is None else tracked.decision)
        refreshed.set()

    real_audit = store.audit

    async def audit(**entry: Any) -> None:
        if entry.get("outcome") == "ok":  # the decision's own entry waits for the refresh
            await asyncio.wait_for(refreshed.wait(), 5)
        await real_audit(**entry)

    bridge.refresh_message = refresh_message  # type: ignore[method-assign]
    store.audit = audit  # type: ignore[method-assign]
    outcome = await asyncio.wait_for(
        bridge.decide("t1", "approved", ALICE, idempotency_seed="interaction:1"), 10
    )
    assert outcome.kind == "done"
    assert shown == ["approved"]  # the message showed the stored decision
    entries = [e for e in await store.audit_entries() if e.action == "task.approved"]
    assert [e.outcome for e in entries] == ["ok"]
