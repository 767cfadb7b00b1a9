"""A task whose deadline is the last instant a ``datetime`` holds is stored and listed.

The factory may send ``9999-12-31T23:59:59.9999999Z`` (.NET's ``DateTime.MaxValue``) as "no
deadline" (factory contract §1.4 ``Task.slaDeadline``). The store keeps deadlines as Unix
seconds in floats, where that instant rounds up to ``10000-01-01T00:00:00Z``; it must read
back as the last instant (:data:`escalation.policy.LAST_INSTANT`, never due), not fail the
write and hide the task.
"""

from __future__ import annotations

import pytest

from bot.store import Store
from escalation.models import Task
from escalation.policy import LAST_INSTANT, EscalationPolicy


@pytest.mark.parametrize(
    "sla_deadline",
    [
        "9999-12-31T23:59:59.9999999Z",  # .NET DateTime.MaxValue
        LAST_INSTANT.isoformat(),  # the core's own last instant
        "9999-12-31T23:59:59-05:00",  # past year 9999 once in UTC
    ],
)
async def test_a_task_due_at_the_last_instant_is_stored_and_listed(
    store: Store, database_url: str, sla_deadline: str
) -> None:
    task = Task.model_validate(
        {
            "id": "t-never",
            "title": "Rotate the signing key",
            "createdAt": "2026-11-21T10:00:00Z",
            "priority": "high",
            "slaDeadline": sla_deadline,
        }
    )
    deadline = EscalationPolicy().deadline_for(task.created_at, task.priority, task.sla_deadline)
    stored = await store.upsert_task(task, deadline)
    assert stored.deadline == LAST_INSTANT
    await store.set_message("t-never", channel_id=10, message_id=20)
    # read back from the database (a second store: nothing answered from memory)
    other = Store(database_url)
    try:
        [listed] = await other.open_tasks()
        again = await other.get_task("t-never")
        clocks = [c async for page in other.open_task_clocks() for c in page]
    finally:
        await other.close()
    assert listed.task_id == "t-never" and listed.deadline == LAST_INSTANT
    assert listed.task.sla_deadline == LAST_INSTANT
    assert again is not None and again.deadline == LAST_INSTANT
    # what the ladder arms at start: the task, never due
    assert [(c.task_id, c.deadline) for c in clocks] == [("t-never", LAST_INSTANT)]
