"""Tasks: the snapshot of each factory task the bridge knows and the message that shows it."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from escalation.models import Priority, Task
from escalation.ports import OpenTaskClock

from . import tables as t
from .base import StoreBase
from .database import driver_cursor
from .rows import TASK_ROW, TRACKED, TrackedTask, from_ts, row_to_tracked, to_ts
from .snapshot_order import is_older_snapshot


class _HasTaskId(Protocol):
    @property
    def task_id(self) -> str: ...


_Keyed = TypeVar("_Keyed", bound=_HasTaskId)

__all__ = ["IDS_PER_QUERY", "OPEN_TASK_PAGE", "TasksMixin"]

log = logging.getLogger(__name__)

#: Rows per page of :meth:`TasksMixin.open_task_pages`.
OPEN_TASK_PAGE = 1000
#: Ids per statement of :meth:`TasksMixin.tasks_by_ids` (each is a bound parameter).
IDS_PER_QUERY = 1000

# Statements of the posting path built once (as bot.store.rows does for the click path): the
# SET columns come from each call's parameters, so SQLAlchemy reuses the statement's cache key
# and compiled form instead of rebuilding them per task on the writer thread.
_task_id = t.tasks.c.task_id
_INSERT_TASK = insert(t.tasks)
#: SET from the parameters; ``b_task_id`` names the row.
_UPDATE_TASK = update(t.tasks).where(_task_id == bindparam("b_task_id"))
#: The same, only while no decision is stored (a confirmed decision is never undone).
_UPDATE_UNDECIDED = update(t.tasks).where(
    and_(_task_id == bindparam("b_task_id"), t.tasks.c.decision.is_(None))
)
#: Claim the right to post: no message yet, and no claim since ``b_stale_before``.
_CLAIM_POSTING = update(t.tasks).where(
    and_(
        _task_id == bindparam("b_task_id"),
        t.tasks.c.message_id.is_(None),
        or_(
            t.tasks.c.posting_claimed_at.is_(None),
            t.tasks.c.posting_claimed_at < bindparam("b_stale_before"),
        ),
    )
)


class TasksMixin(StoreBase):
    """The store's task methods (see :class:`bot.store.Store`)."""

    async def upsert_task(self, task: Task, deadline: datetime) -> TrackedTask:
        """Insert or refresh a task's snapshot; a confirmed decision is never undone, and a
        snapshot older than the stored one (its ``updatedAt`` earlier: a webhook retried late,
        a listing read before the change) does not replace it — unless the stored
        ``updatedAt`` lies in the future (:func:`bot.store.snapshot_order.is_older_snapshot`).

        A completed task (status ``completed`` with a decision) also fills the decision columns
        when they are still empty, so decisions made elsewhere are shown. Two first sightings
        of a task at once (an event and reconciliation) are safe: in one process the writer
        thread runs them one after the other; against another process, the loser of the
        insert race (``IntegrityError``) refreshes the row the winner inserted.
        """
        try:
            return await self._upsert_task_once(task, deadline)
        except IntegrityError:
            return await self._upsert_task_once(task, deadline)

    async def _upsert_task_once(self, task: Task, deadline: datetime) -> TrackedTask:
        now = self._clock()
        values: dict[str, Any] = {
            "payload": task.model_dump_json(by_alias=True),
            "priority": task.priority.value,
            "status": task.status.value,
            "created_at": task.created_at.timestamp(),
            "deadline": deadline.timestamp(),
            "updated_at": now,
        }
        decided: dict[str, Any] | None = None
        if task.decision is not None:
            data = task.decision_data
            discord_id = str(data.get("discordUserId") or "")
            decided = {
                "decision": task.decision.value,
                "decision_notes": task.decision_notes,
                "decided_by": str(data.get("discordUsername") or task.decided_by or ""),
                "decided_by_discord_id": int(discord_id) if discord_id.isdigit() else None,
                "decided_at": to_ts(task.decided_at) or now,
                "decision_source": str(data.get("source") or "factory"),
                "status": "completed",
            }
        task_id = task.id

        def work(conn: Connection) -> TrackedTask:
            existing = conn.execute(TASK_ROW, {"b_task_id": task_id}).first()
            if existing is None:
                conn.execute(_INSERT_TASK, {"task_id": task_id, **values})
            elif is_older_snapshot(task, existing._mapping["payload"], now):
                log.info("task %s: a snapshot older than the stored one is ignored", task_id)
            else:
                refresh = dict(values)
                if existing._mapping["decision"] is not None:
                    # keep the decided snapshot's status; refresh the payload only
                    refresh.pop("status")
                conn.execute(_UPDATE_TASK, {"b_task_id": task_id, **refresh})
            if decided is not None:
                conn.execute(_UPDATE_UNDECIDED, {"b_task_id": task_id, **decided})
            row = conn.execute(TASK_ROW, {"b_task_id": task_id}).one()
            return row_to_tracked(row)

        return await self._write_task(task_id, work)

    async def get_task(self, task_id: str) -> TrackedTask | None:
        """The tracked task, or ``None`` when the bridge has never seen it.

        Answered from memory when the row was read recently and not written since (see
        :meth:`_write_task`), so that an interaction is answered without waiting for a
        database thread (Discord: 3 s interaction deadline; bench ``click``).
        """
        cached = self._task_cache.get(task_id)
        if cached is not None:
            self._task_cache.move_to_end(task_id)
            return cached
        writes_before = self._task_writes

        def work(conn: Connection) -> TrackedTask | None:
            row = conn.execute(TASK_ROW, {"b_task_id": task_id}).first()
            return None if row is None else row_to_tracked(row)

        tracked = await self.db.read(work)
        # a task write that settled while this read ran may have changed the row after the
        # read saw it: keep only what no write can have overtaken
        if tracked is not None and writes_before == self._task_writes:
            self._remember_task(tracked)
        return tracked

    async def open_tasks(self) -> list[TrackedTask]:
        """Tasks with no confirmed decision, oldest first."""

        def work(conn: Connection) -> list[TrackedTask]:
            rows = conn.execute(
                TRACKED.where(t.tasks.c.decision.is_(None)).order_by(t.tasks.c.created_at)
            )
            return [row_to_tracked(r) for r in rows]

        return await self.db.read(work)

    async def _keyset_pages(
        self, read_page: Callable[[str, Connection], list[_Keyed]], page_size: int
    ) -> AsyncIterator[list[_Keyed]]:
        """Pages of ``read_page(after, conn)`` (rows ordered by ``task_id``, at most
        ``page_size``, each with ``task_id`` above ``after``) until one comes back short:
        key-set paging, each page its own read."""
        after = ""
        while True:
            page = await self.db.read(functools.partial(read_page, after))
            if not page:
                return
            yield page
            if len(page) < page_size:
                return
            after = page[-1].task_id

    async def open_task_pages(
        self, *, page_size: int = OPEN_TASK_PAGE
    ) -> AsyncIterator[list[TrackedTask]]:
        """:meth:`open_tasks` a page at a time (``page_size`` rows, ordered by task id).

        For start-up work over every open task (the ladder's rebuild): only one page of
        :class:`TrackedTask` is in memory at once, where :meth:`open_tasks` holds them all
        (≈ 3 KB each; 100,000 open tasks, bench/ladders.py). Each page is its own read: a task
        decided between two pages is left out, one opened meanwhile may be too.
        """

        def work(after: str, conn: Connection) -> list[TrackedTask]:
            rows = conn.execute(
                TRACKED.where(t.tasks.c.decision.is_(None), t.tasks.c.task_id > after)
                .order_by(t.tasks.c.task_id)
                .limit(page_size)
            )
            return [row_to_tracked(r) for r in rows]

        async for page in self._keyset_pages(work, page_size):
            yield page

    async def open_task_clocks(
        self, *, page_size: int = OPEN_TASK_PAGE
    ) -> AsyncIterator[list[OpenTaskClock]]:
        """The open tasks that have a message, as the ladder arms them: a page at a time,
        ordered by task id, only the columns its schedule reads (see :class:`OpenTaskClock`).

        Arming reads every open task at start (100,000, bench/restart.py): parsing each
        payload into a :class:`~escalation.models.Task` (and its approval) cost more than
        the ladder's own work. ``created_at`` is the column written with the payload's
        ``createdAt`` (:meth:`upsert_task`). Each page is its own read, as in
        :meth:`open_task_pages`.
        """
        # hot path at start: through the driver (SQLAlchemy's per-row work is not needed)
        sql = (
            "SELECT task_id, created_at, deadline, priority, acknowledged_at, snoozed_until "
            "FROM tasks WHERE decision IS NULL AND message_id IS NOT NULL AND task_id > ? "
            f"ORDER BY task_id LIMIT {int(page_size)}"
        )
        priorities = {p.value: p for p in Priority}

        def work(after: str, conn: Connection) -> list[OpenTaskClock]:
            cursor, adapt = driver_cursor(conn)
            cursor.execute(adapt(sql), (after,))
            return [
                OpenTaskClock(
                    task_id,
                    from_ts(created),  # type: ignore[arg-type]
                    from_ts(deadline),  # type: ignore[arg-type]
                    priorities[priority],
                    None if acknowledged is None else from_ts(acknowledged),
                    None if snoozed is None else from_ts(snoozed),
                )
                for task_id, created, deadline, priority, acknowledged, snoozed in cursor.fetchall()
            ]

        async for page in self._keyset_pages(work, page_size):
            yield page

    async def open_task_ids(self) -> list[str]:
        """Ids of the tasks with no confirmed decision, oldest first (no payload is read)."""

        def work(conn: Connection) -> list[str]:
            rows = conn.execute(
                select(t.tasks.c.task_id)
                .where(t.tasks.c.decision.is_(None))
                .order_by(t.tasks.c.created_at)
            )
            return [r[0] for r in rows]

        return await self.db.read(work)

    async def open_tasks_without_message(self) -> list[TrackedTask]:
        """Tasks with no confirmed decision and no Discord message, oldest first (a crash
        between posting and recording, or tasks held for a batch)."""

        def work(conn: Connection) -> list[TrackedTask]:
            rows = conn.execute(
                TRACKED.where(
                    t.tasks.c.decision.is_(None), t.tasks.c.message_id.is_(None)
                ).order_by(t.tasks.c.created_at)
            )
            return [row_to_tracked(r) for r in rows]

        return await self.db.read(work)

    async def task_payloads(self, task_ids: Sequence[str]) -> dict[str, tuple[str, bool, bool]]:
        """Task id → (stored JSON payload, has a message, decided), for the ids known; the
        payload is not read into a model (reconciliation compares it as text, bench/ladders.py)."""
        if not task_ids:
            return {}
        ids = list(task_ids)
        c = t.tasks.c

        def work(conn: Connection) -> dict[str, tuple[str, bool, bool]]:
            rows = conn.execute(
                select(c.task_id, c.payload, c.message_id, c.decision).where(c.task_id.in_(ids))
            )
            return {r[0]: (r[1], r[2] is not None, r[3] is not None) for r in rows}

        return await self.db.read(work)

    async def tasks_by_ids(self, task_ids: Sequence[str]) -> list[TrackedTask]:
        """Tracked tasks for these ids, in the order given (unknown ids are left out)."""
        if not task_ids:
            return []
        ids = list(task_ids)

        def work(conn: Connection) -> dict[str, TrackedTask]:
            found: dict[str, TrackedTask] = {}
            # one bound parameter per id: PostgreSQL's protocol takes at most 65,535 per
            # statement and SQLite 32,766, so a long list is read in chunks
            for start in range(0, len(ids), IDS_PER_QUERY):
                chunk = ids[start : start + IDS_PER_QUERY]
                rows = conn.execute(TRACKED.where(t.tasks.c.task_id.in_(chunk)))
                found.update((r.task_id, row_to_tracked(r)) for r in rows)
            return found

        found = await self.db.read(work)
        return [found[i] for i in ids if i in found]

    async def claim_posting(self, task_id: str, *, stale_after_seconds: float = 60.0) -> bool:
        """Compare-and-set: claim the right to post this task's message.

        Returns ``True`` for exactly one caller while the task has no message; a claim older
        than ``stale_after_seconds`` (a crash between claim and post) can be taken again.
        """
        now = self._clock()

        params = {
            "b_task_id": task_id,
            "b_stale_before": now - stale_after_seconds,
            "posting_claimed_at": now,
        }

        def work(conn: Connection) -> bool:
            return conn.execute(_CLAIM_POSTING, params).rowcount == 1

        return await self._write_task(task_id, work)

    async def release_posting(self, task_id: str | None = None) -> None:
        """Give up a posting claim (the post failed) so that a later attempt can post; with no
        ``task_id``, every claim on a task without a message: a new leader's, since the claims
        of the process it replaced will not be carried out (README "Production")."""

        def work(conn: Connection) -> None:
            unposted = t.tasks.c.message_id.is_(None)
            where = unposted if task_id is None else and_(t.tasks.c.task_id == task_id, unposted)
            conn.execute(update(t.tasks).where(where).values(posting_claimed_at=None))

        await self._write_task(task_id or "", work)

    async def set_message(
        self, task_id: str, channel_id: int, message_id: int, batch_id: str | None = None
    ) -> TrackedTask | None:
        """Record the Discord message that shows the task; the task as stored then (``None``
        for a task the store does not know).

        The row is read in the same unit of work and kept in the task cache when no other
        task write settled meanwhile: the poster and the ladder read it next, without a
        round trip to a reader thread.
        """

        params = {
            "b_task_id": task_id,
            "channel_id": channel_id,
            "message_id": message_id,
            "batch_id": batch_id,
        }

        def work(conn: Connection) -> TrackedTask | None:
            conn.execute(_UPDATE_TASK, params)
            row = conn.execute(TASK_ROW, {"b_task_id": task_id}).first()
            return None if row is None else row_to_tracked(row)

        writes_before = self._task_writes
        tracked = await self._write_task(task_id, work)
        if tracked is not None and self._task_writes == writes_before + 1:
            self._remember_task(tracked)  # only this write settled since: the row is current
        return tracked

    async def adopt_message(
        self, task_id: str, channel_id: int, message_id: int, batch_id: str | None = None
    ) -> bool:
        """Record a message found to show the task when the store has none (self-healing).

        A crash between posting and :meth:`set_message` leaves a message the store does not
        know; a click on it (or the channel history) tells us. ``batch_id`` is given for a
        batch message. Returns ``True`` when adopted.
        """
        values: dict[str, Any] = {"channel_id": channel_id, "message_id": message_id}
        if batch_id is not None:
            values["batch_id"] = batch_id

        def work(conn: Connection) -> bool:
            result = conn.execute(
                update(t.tasks)
                .where(and_(t.tasks.c.task_id == task_id, t.tasks.c.message_id.is_(None)))
                .values(**values)
            )
            return result.rowcount == 1

        return await self._write_task(task_id, work)

    async def open_task_counts(self) -> dict[str, int]:
        """Tasks with no confirmed decision, counted per priority (``/metrics``)."""

        def work(conn: Connection) -> dict[str, int]:
            rows = conn.execute(
                select(t.tasks.c.priority, func.count())
                .where(t.tasks.c.decision.is_(None))
                .group_by(t.tasks.c.priority)
            )
            return {str(priority): int(count) for priority, count in rows}

        return await self.db.read(work)

    async def count_tasks(self) -> int:
        """How many tasks the store knows (0 on a fresh or lost database)."""

        def work(conn: Connection) -> int:
            return int(conn.execute(select(func.count()).select_from(t.tasks)).scalar_one())

        return await self.db.read(work)

    async def set_acknowledged(
        self, task_id: str, discord_user_id: int, name: str, at: datetime
    ) -> None:
        """Record who acknowledged the task (the first acknowledgement is kept)."""
        acknowledged_at = at.timestamp()

        def work(conn: Connection) -> None:
            conn.execute(
                update(t.tasks)
                .where(and_(t.tasks.c.task_id == task_id, t.tasks.c.acknowledged_at.is_(None)))
                .values(
                    acknowledged_by_discord_id=discord_user_id,
                    acknowledged_by_name=name,
                    acknowledged_at=acknowledged_at,
                )
            )

        await self._write_task(task_id, work)

    async def set_snoozed(self, task_id: str, until: datetime, name: str) -> None:
        """Record a snooze until ``until`` (aware UTC)."""
        snoozed_until = until.timestamp()

        def work(conn: Connection) -> None:
            conn.execute(
                update(t.tasks)
                .where(t.tasks.c.task_id == task_id)
                .values(snoozed_until=snoozed_until, snoozed_by_name=name)
            )

        await self._write_task(task_id, work)

    async def task_by_message(self, message_id: int) -> TrackedTask | None:
        """The task whose own (single-task) message is ``message_id``, or ``None``."""

        def work(conn: Connection) -> TrackedTask | None:
            row = conn.execute(
                TRACKED.where(
                    and_(t.tasks.c.message_id == message_id, t.tasks.c.batch_id.is_(None))
                )
            ).first()
            return None if row is None else row_to_tracked(row)

        return await self.db.read(work)

    async def forget_message(self, task_id: str, message_id: int) -> bool:
        """Compare-and-set: forget the task's message ``message_id`` (it was deleted) while the
        task still needs a decision, so that :meth:`claim_posting` lets one caller post anew.

        Returns ``True`` for exactly one caller per lost message; ``False`` when the task shows
        another message already, was decided, or is unknown.
        """

        def work(conn: Connection) -> bool:
            result = conn.execute(
                update(t.tasks)
                .where(
                    and_(
                        t.tasks.c.task_id == task_id,
                        t.tasks.c.message_id == message_id,
                        t.tasks.c.decision.is_(None),
                    )
                )
                .values(channel_id=None, message_id=None, posting_claimed_at=None)
            )
            return result.rowcount == 1

        return await self._write_task(task_id, work)

    async def move_message(
        self, task_id: str, old_message_id: int, channel_id: int, new_message_id: int
    ) -> bool:
        """Compare-and-set: point the task from its lost message ``old_message_id`` at the
        message that replaces it (a reposted batch message). ``True`` when moved."""

        def work(conn: Connection) -> bool:
            result = conn.execute(
                update(t.tasks)
                .where(and_(t.tasks.c.task_id == task_id, t.tasks.c.message_id == old_message_id))
                .values(channel_id=channel_id, message_id=new_message_id)
            )
            return result.rowcount == 1

        return await self._write_task(task_id, work)
