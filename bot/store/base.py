"""What every part of :class:`bot.store.Store` shares: the database, the clock, the task cache.

The store's methods are grouped by concern into parts (:mod:`bot.store.events`,
:mod:`bot.store.tasks`, :mod:`bot.store.decisions`, :mod:`bot.store.approvals`,
:mod:`bot.store.batches`, :mod:`bot.store.state`, :mod:`bot.store.audit`), each a subclass of
:class:`StoreBase`; :class:`bot.store.Store` is all of them together.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.engine import Connection

from . import migrate
from .database import Database
from .rows import TrackedTask

__all__ = ["TASK_CACHE_SIZE", "StoreBase"]

T = TypeVar("T")

#: Task rows :meth:`Store.get_task` keeps in memory (least recently read forgotten first).
TASK_CACHE_SIZE = 1024


class StoreBase:
    """The database, the clock and the task cache the store's parts share.

    Parameters
    ----------
    url:
        An SQLAlchemy URL (see :class:`bot.store.Store`).
    clock:
        Returns the current Unix time in seconds; always called on the event loop.
    """

    def __init__(self, url: str, *, clock: Any = time.time) -> None:
        self._clock = clock
        self.db = Database(url)
        # recently read task rows (see get_task); valid until a write to that row settles
        self._task_cache: OrderedDict[str, TrackedTask] = OrderedDict()
        self._task_writes = 0  # task writes settled so far
        # called with each audit entry's values (metrics); see AuditMixin.add_audit_observer
        self._audit_observers: list[Callable[[dict[str, Any]], None]] = []

    async def create_schema(self) -> migrate.Migration:
        """Bring the schema to this build's newest migration (idempotent); say what was done.

        Runs :func:`bot.store.migrate.upgrade` as one unit of work on the writer: under the
        migration lock (PostgreSQL advisory lock), so two processes starting at once migrate
        once; a database made before migrations is adopted (missing tables and columns added,
        stamped at the baseline), never dropped. SQLite files run in WAL mode (set by
        :class:`~bot.store.database.Database` on connect), so reads go on while a write is in
        progress.

        Raises
        ------
        bot.store.migrate.MigrationError
            When the database was migrated by a newer build (an unknown revision).
        """
        return await self.db.write(migrate.upgrade)

    async def close(self) -> None:
        """Finish queued writes and close every connection (see :meth:`Database.close`)."""
        await self.db.close()

    async def check_leader(self) -> None:
        """Ask the lease fence (:attr:`Database.fence`) whether this process still leads, before a
        side effect no database write guards (an alert line posted to Discord): a leader that
        was paused and deposed must not act when it resumes (README "Production").

        Raises
        ------
        bot.leadership.lease.NotLeader
            When another process holds the lease now. Without a fence (a store no lease was
            set up for) there is nothing to ask; the bridge sets one on SQLite too, so each
            event with lines to post costs one writer transaction more.
        """
        if self.db.fence is not None:
            await self.db.write(_nothing, fenced=True)

    def forget_cached_tasks(self) -> None:
        """Drop every cached task row (a standby that becomes leader: another process wrote
        the tasks table while this one was not leading; README "Production")."""
        self._task_cache.clear()
        self._task_writes += 1

    async def _write_task(self, task_id: str, work: Callable[[Connection], T]) -> T:
        """:meth:`Database.write` for a unit that changes the row of ``task_id``.

        Every write to the tasks table goes through here: when the unit settles (committed
        or failed, even if the caller was cancelled) the cached row is forgotten and the
        write counter moves, so :meth:`get_task` never answers with a row older than a
        write that has settled. A committed unit that returns the row it wrote (a
        :class:`TrackedTask` read back in its transaction) leaves that row in the cache.

        Every task write is leader-only (fenced, :meth:`Database.write`): with several bridges
        on one database only the lease's current holder writes the tasks table, so its cache
        (forgotten when it takes over, :meth:`forget_cached_tasks`) stays right (README "Production").
        """

        def settled(result: Any, error: BaseException | None) -> None:
            self._task_writes += 1
            self._task_cache.pop(task_id, None)
            if error is None and isinstance(result, TrackedTask) and result.task_id == task_id:
                # the row as the committed unit read it after its own change, in its own
                # transaction: what a read would find now (a later write of the row settles
                # after this one and replaces or forgets it), so the message refresh that
                # follows a decision needs no database round trip
                self._remember_task(result)

        return await self.db.write(work, on_settled=settled, fenced=True)

    def _remember_task(self, tracked: TrackedTask) -> None:
        """Keep ``tracked`` in the task cache (the least recently read beyond
        :data:`TASK_CACHE_SIZE` forgotten)."""
        self._task_cache[tracked.task_id] = tracked
        self._task_cache.move_to_end(tracked.task_id)
        if len(self._task_cache) > TASK_CACHE_SIZE:
            self._task_cache.popitem(last=False)


def _nothing(conn: Connection) -> None:
    """A unit of work that writes nothing (the fence runs before it)."""
