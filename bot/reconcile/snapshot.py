"""The factory's pending tasks as the start-up reconciliation keeps them: compact.

With 100,000 pending tasks (the ``ladders`` benchmark) a list of :class:`~escalation.models.Task` models costs
≈ 2.6 KB a task (265 MB); :class:`PendingSnapshot` keeps each task as its creation time, id
and JSON (``model_dump_json(by_alias=True)``, the form the store keeps in ``tasks.payload``),
≈ 0.8 KB, and makes models again a chunk at a time. A task whose JSON equals the store's
payload is known to be unchanged without reading either into a model.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Iterator

from escalation.models import Task

__all__ = ["PendingSnapshot", "SnapshotEntry"]

#: ``(created_at Unix seconds, task id, task JSON)``.
SnapshotEntry = tuple[float, str, str]


class PendingSnapshot:
    """The factory's pending tasks listed once (``GET /v1/tasks?status=pending``), compact.

    Build it with :meth:`add` or :meth:`from_pages`; read it oldest first with
    :meth:`chunks`, or every task as a model with :meth:`tasks`.
    """

    def __init__(self, tasks: Iterable[Task] = ()) -> None:
        self._entries: list[SnapshotEntry] = []
        self.add(tasks)

    @classmethod
    async def from_pages(cls, pages: AsyncIterable[list[Task]]) -> PendingSnapshot:
        """A snapshot of every page (e.g. :meth:`bot.factory.client.FactoryClient.iter_task_pages`);
        only one page is ever held as models. Raises what listing a page raises."""
        snapshot = cls()
        async for page in pages:
            snapshot.add(page)
        return snapshot

    def add(self, tasks: Iterable[Task]) -> None:
        """Append these tasks (in the order listed)."""
        self._entries.extend(
            (t.created_at.timestamp(), t.id, t.model_dump_json(by_alias=True)) for t in tasks
        )

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def ids(self) -> set[str]:
        """The ids of the tasks."""
        return {task_id for _, task_id, _ in self._entries}

    def chunks(self, size: int) -> Iterator[list[tuple[str, str]]]:
        """``(task id, task JSON)`` lists of at most ``size``, oldest first (by ``createdAt``;
        as listed among equals); ``Task.model_validate_json`` makes the model again."""
        ordered = sorted(self._entries, key=lambda e: e[0])
        for start in range(0, len(ordered), size):
            yield [(task_id, text) for _, task_id, text in ordered[start : start + size]]

    def tasks(self) -> list[Task]:
        """Every task as a model, as listed (the rare paths that need them all)."""
        return [Task.model_validate_json(text) for _, _, text in self._entries]
