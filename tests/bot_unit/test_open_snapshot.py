"""The factory's open tasks, listed one status at a time (``GET /v1/tasks`` takes one status,
factory contract §1.5), merged so that each task counts once, as its newest snapshot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.reconcile.snapshot import OpenSnapshot
from escalation.models import Task

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def task(task_id: str, status: str, updated: datetime, **fields: Any) -> Task:
    return Task.model_validate(
        {
            "id": task_id,
            "title": task_id,
            "status": status,
            "createdAt": NOW.isoformat(),
            "updatedAt": updated.isoformat(),
            **fields,
        }
    )


class Factory:
    """Answers each status's listing; a task claimed while ``pending`` was being listed
    shows up in both listings."""

    def __init__(self, listings: dict[str, list[Task]]) -> None:
        self.listings = listings
        self.asked: list[str | None] = []

    async def iter_task_pages(self, *, status: str | None = None) -> AsyncIterator[list[Task]]:
        self.asked.append(status)
        yield self.listings.get(status or "", [])


async def test_every_open_status_is_listed_and_each_task_kept_once_as_its_newest() -> None:
    moved = task("moved", "pending", NOW)
    moved_later = task("moved", "claimed", NOW + timedelta(minutes=1), claimedBy="alice")
    factory = Factory(
        {
            "pending": [task("p", "pending", NOW), moved],
            "claimed": [moved_later],
            "in_progress": [task("w", "in_progress", NOW)],
            "expired": [task("x", "expired", NOW)],
            "escalated": [task("e", "escalated", NOW)],
        }
    )
    snapshot = await OpenSnapshot.listed(factory)  # type: ignore[arg-type]
    assert sorted(s for s in factory.asked if s) == sorted(
        ["pending", "claimed", "in_progress", "expired", "escalated"]
    )
    assert factory.asked[0] == "pending"
    assert sorted(snapshot.ids) == ["e", "moved", "p", "w", "x"]
    assert len(snapshot) == 5
    kept = snapshot.task("moved")
    assert kept is not None and kept.claimed_by == "alice"
    assert "completed" not in factory.asked


def test_a_snapshot_listed_before_its_change_does_not_replace_the_newer_one() -> None:
    snapshot = OpenSnapshot(
        [task("t", "escalated", NOW + timedelta(minutes=5), priority="critical")]
    )
    snapshot.add([task("t", "pending", NOW)])  # read from an earlier listing page
    kept = snapshot.task("t")
    assert kept is not None and kept.priority.value == "critical"
    assert [ids for ids in snapshot.chunks(10)] == [[("t", kept.model_dump_json(by_alias=True))]]
