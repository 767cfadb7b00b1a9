"""The ladder's wake-ups: every task's next one in a heap, ONE APScheduler job for the soonest.

One APScheduler 3 ``AsyncIOScheduler`` (in memory, ``misfire_grace_time=None``,
``coalesce=True``) holds ONE ``DateTrigger`` job (:data:`WAKE_JOB_ID`): the soonest wake-up of
all tasks (kept in a heap) and of the bundler. The job only sets an event (:attr:`WakeTimers.kick`);
a single worker does the work, so a long step never makes APScheduler skip a run.
:class:`WakeTimers` is the :class:`escalation.ports.Alarm` of the ladder service.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

__all__ = ["WAKE_JOB_ID", "WakeTimers", "make_scheduler"]

#: The one APScheduler job of the ladder.
WAKE_JOB_ID = "escalation-wake"


def make_scheduler() -> AsyncIOScheduler:
    """An in-memory scheduler in UTC whose late jobs still run, once (APScheduler 3 docs,
    "Missed job executions and coalescing")."""
    return AsyncIOScheduler(
        timezone=UTC,
        job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
    )


class WakeTimers:
    """Per-task wake-ups and the one scheduler job.

    Parameters
    ----------
    scheduler
        The process's scheduler (started by the runtime).
    clock
        Current aware UTC time.
    extra
        Another wake-up to honour (the bundler's), or ``None``.

    Attributes
    ----------
    wake
        Task id → its wake-up (Unix seconds).
    heap
        ``(Unix seconds, task id)`` entries; stale ones (re-planned, forgotten) are skipped
        and compacted away.
    kick
        Set when something is due now: the worker runs a tick.
    started
        Whether the job is armed at all (before start, wake-ups are only recorded).
    """

    def __init__(
        self,
        scheduler: AsyncIOScheduler,
        clock: Callable[[], datetime],
        extra: Callable[[], datetime | None],
    ) -> None:
        self.scheduler = scheduler
        self.clock = clock
        self.extra = extra
        self.wake: dict[str, float] = {}
        self.heap: list[tuple[float, str]] = []
        self.kick = asyncio.Event()
        self.started = False
        self._armed_at: datetime | None = None

    # ------------------------------------------------------------------ Alarm
    def set(self, task_id: str, at: datetime, *, kick: bool = True) -> None:
        """Wake the task at ``at``; with ``kick``, re-arm the job (or kick when due now)."""
        ts = at.timestamp()
        self.wake[task_id] = ts
        heapq.heappush(self.heap, (ts, task_id))
        self._compact()
        if not kick:
            return
        if ts <= self.clock().timestamp():
            self.kick.set()
        else:
            self.arm()

    def cancel(self, task_id: str) -> None:
        """Forget the task's wake-up."""
        self.wake.pop(task_id, None)
        self._compact()

    def at(self, task_id: str) -> datetime | None:
        """When the task's next wake-up is set (aware UTC), or ``None``."""
        ts = self.wake.get(task_id)
        return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)

    # ------------------------------------------------------------------ the heap
    def _compact(self) -> None:
        """Drop stale entries once they outnumber the live ones (plus 1,024).

        Entries of re-planned and forgotten (decided) tasks otherwise wait in the heap until
        their time, days for a low-priority SLA: the heap stays proportional to the tasks
        that have a wake-up, at an amortised constant cost.
        """
        if len(self.heap) > 2 * len(self.wake) + 1024:
            self.heap = [(t, i) for t, i in self.heap if self.wake.get(i) == t]
            heapq.heapify(self.heap)

    def pop_due(self, now: datetime) -> list[str]:
        """Task ids whose wake-up is ``now`` or earlier (their wake-ups are removed)."""
        due: list[str] = []
        limit = now.timestamp()
        while self.heap and self.heap[0][0] <= limit:
            ts, task_id = heapq.heappop(self.heap)
            if self.wake.get(task_id) == ts:
                del self.wake[task_id]
                due.append(task_id)
        return due

    def soonest(self) -> datetime | None:
        """The soonest wake-up of a task or of :attr:`extra`."""
        while self.heap and self.wake.get(self.heap[0][1]) != self.heap[0][0]:
            heapq.heappop(self.heap)
        candidates = []
        if self.heap:
            candidates.append(datetime.fromtimestamp(self.heap[0][0], tz=UTC))
        extra = self.extra()
        if extra is not None:
            candidates.append(extra)
        return min(candidates) if candidates else None

    # ------------------------------------------------------------------ the job
    def arm(self) -> None:
        """Point the one APScheduler job at the soonest wake-up (or kick now)."""
        if not self.started:
            return
        when = self.soonest()
        if when is None:
            return
        if when <= self.clock():
            self.kick.set()
            return
        if self._armed_at == when and self.scheduler.get_job(WAKE_JOB_ID) is not None:
            return
        self._armed_at = when
        self.scheduler.add_job(
            self._on_timer,
            trigger=DateTrigger(run_date=when),
            id=WAKE_JOB_ID,
            replace_existing=True,
            misfire_grace_time=None,
            coalesce=True,
            max_instances=1,
        )

    async def _on_timer(self) -> None:
        self._armed_at = None
        self.kick.set()
