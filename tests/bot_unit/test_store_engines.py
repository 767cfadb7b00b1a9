"""What differs between SQLite and PostgreSQL and must not show: both engines behave alike.

SQLite stores a string longer than its column's ``VARCHAR(n)``; PostgreSQL refuses it
(``StringDataRightTruncation``), which would lose the whole write. Free text that the factory
or Discord hands the bridge (names, decision sources) is clipped to the column on both.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.store import Store
from escalation.models import Task

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
DEADLINE = NOW + timedelta(hours=4)


async def test_a_decision_with_overlong_names_from_the_factory_is_stored(store: Store) -> None:
    long_name = "n" * 500
    task = Task.model_validate(
        {
            "id": "t1",
            "title": "Release",
            "createdAt": "2026-11-21T12:00:00Z",
            "status": "completed",
            "decision": "approved",
            "decidedBy": long_name,
            "decisionData": {"discordUsername": long_name, "source": "s" * 300},
        }
    )
    tracked = await store.upsert_task(task, DEADLINE)
    assert tracked.decision == "approved"
    assert tracked.decided_by == "n" * 200  # the column's length, on both engines
    assert tracked.decision_source == "s" * 32


async def test_an_audit_entry_with_overlong_free_text_is_stored(store: Store) -> None:
    await store.audit(
        actor_name="a" * 500, via="button", action="x" * 100, outcome="ok", actor_id="9" * 80
    )
    [entry] = await store.audit_entries()
    assert (len(entry.actor_name), len(entry.action), len(entry.actor_id or "")) == (200, 64, 64)
