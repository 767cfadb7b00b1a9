"""The factory's open tasks as reconciliation keeps them: compact.

A task is open until it is decided: every ``TaskStatus`` but ``completed`` (factory contract
§1.4). ``GET /v1/tasks`` takes one ``status`` filter (contract §1.5 ``ListTasksParams``), so
:meth:`OpenSnapshot.listed` lists each open status in turn and merges the listings, each task
once: a task the bridge never saw that the factory escalated, expired or let someone claim
meanwhile is still shown (those are the most urgent ones).

With 100,000 open tasks (the ``ladders`` benchmark) a list of :class:`~escalation.models.Task`
models costs ≈ 2.6 KB a task (265 MB); :class:`OpenSnapshot` keeps each task as its creation
time, ``updatedAt`` and JSON (``model_dump_json(by_alias=True)``, the form the store keeps in
``tasks.payload``), ≈ 0.8 KB, and makes a model again only for a task that needs one (a chunk
at a time, or one task by id). A task whose JSON equals the store's payload is known to be
unchanged without reading either into a model.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Iterator, KeysView
from typing import TYPE_CHECKING

from escalation.models import Task, TaskStatus

if TYPE_CHECKING:
    from bot.factory.client import FactoryClient

__all__ = ["OPEN_STATUSES", "OpenSnapshot", "SnapshotEntry"]

#: The statuses listed, in this order: a task still waits for a decision in each of them
#: (contract §1.4 ``TaskStatus``; only ``completed`` is decided). ``pending`` comes first.
OPEN_STATUSES: tuple[TaskStatus, ...] = tuple(s for s in TaskStatus if s.is_open)

#: ``(created_at Unix seconds, updatedAt Unix seconds or None, task JSON)``.
SnapshotEntry = tuple[float, float | None, str]


class OpenSnapshot:
    """The factory's open tasks listed once, compact, each task once.

    Build it with :meth:`listed` (every open status), :meth:`from_pages` or :meth:`add`;
    read it oldest first with :meth:`chunks`, or one task as a model with :meth:`task`.
    A task listed twice (it changed status between two listings) is kept as its newer
    snapshot: the later ``updatedAt`` (contract §1.4 ``Task``); equal or unknown, the one
    listed last.
    """

    def __init__(self, tasks: Iterable[Task] = ()) -> None:
        self._entries: dict[str, SnapshotEntry] = {}
        self.add(tasks)

    @classmethod
    async def listed(cls, factory: FactoryClient) -> OpenSnapshot:
        """Every open task at the factory: ``GET /v1/tasks?status=<s>`` (every page) for each
        of :data:`OPEN_STATUSES`, merged. Raises what listing a page raises."""
        snapshot = cls()
        for status in OPEN_STATUSES:
            await snapshot.add_pages(factory.iter_task_pages(status=status.value))
        return snapshot

    @classmethod
    async def from_pages(cls, pages: AsyncIterable[list[Task]]) -> OpenSnapshot:
        """A snapshot of every page (e.g. :meth:`bot.factory.client.FactoryClient.iter_task_pages`);
        only one page is ever held as models. Raises what listing a page raises."""
        snapshot = cls()
        await snapshot.add_pages(pages)
        return snapshot

    async def add_pages(self, pages: AsyncIterable[list[Task]]) -> None:
        """Add every page (one page held as models at a time)."""
        async for page in pages:
            self.add(page)

    def add(self, tasks: Iterable[Task]) -> None:
        """Add these tasks (in the order listed); a task already here keeps the newer snapshot."""
        entries = self._entries
        for t in tasks:
            updated = t.updated_at.timestamp() if t.updated_at is not None else None
            known = entries.get(t.id)
            if known is not None and updated is not None and known[1] is not None:
                if updated < known[1]:
                    continue  # listed before its change: keep the newer one
            entries[t.id] = (t.created_at.timestamp(), updated, t.model_dump_json(by_alias=True))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._entries

    @property
    def ids(self) -> KeysView[str]:
        """The ids of the tasks (a view: no copy)."""
        return self._entries.keys()

    def task(self, task_id: str) -> Task | None:
        """The task ``task_id`` as a model (made now), or ``None`` when it is not here."""
        entry = self._entries.get(task_id)
        return Task.model_validate_json(entry[2]) if entry is not None else None

    def chunks(self, size: int) -> Iterator[list[tuple[str, str]]]:
        """``(task id, task JSON)`` lists of at most ``size``, oldest first (by ``createdAt``;
        as listed among equals); ``Task.model_validate_json`` makes the model again."""
        ordered = sorted(self._entries.items(), key=lambda item: item[1][0])
        for start in range(0, len(ordered), size):
            yield [(task_id, entry[2]) for task_id, entry in ordered[start : start + size]]
