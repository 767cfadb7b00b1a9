"""A ladder's start after a restart: settle what a crash left, and rebuild every wake-up.

The store is the truth and timers are disposable (rule: "Exactly once across restarts"), so
at start :class:`~escalation.service.LadderService` asks this module for two things:

* :func:`settle_claimed` — deliveries a crash left ``claimed`` may or may not have
  happened: factory calls (:data:`~escalation.deliveries.IDEMPOTENT_CHANNELS`, sent with an
  Idempotency-Key) go back to ``pending`` and are sent again, every other one becomes
  ``unknown`` and is **not** repeated; each is audited;
* :func:`rebuild_wakes` — every open task's next wake-up, computed from its step rows in
  bulk, a page of tasks at a time.

Both work through the ports only (:mod:`escalation.ports`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from escalation.deliveries import IDEMPOTENT_CHANNELS
from escalation.ladder import LadderState, next_step
from escalation.policy import EscalationPolicy, StepKind
from escalation.ports import (
    LadderRepository,
    LadderStepRow,
    LadderTask,
    OpenTaskClock,
    TaskReader,
)
from escalation.progress import STEP_KINDS, kept_rows, last_taken, progress

__all__ = ["rebuild_wakes", "settle_claimed"]

_NO_STEPS: frozenset[StepKind] = frozenset()


async def settle_claimed(
    repository: LadderRepository,
    now: datetime,
    audit: Callable[[str, str, str, str], Awaitable[None]],
) -> set[str]:
    """Settle the deliveries a crash left ``claimed``
    (:meth:`~escalation.ports.LadderRepository.expire_claimed` at ``now``) and audit each
    through ``audit(task_id, action, outcome, detail)``: ``retry`` (sent again, idempotent)
    or ``unknown`` (not repeated). Returns the ids of the tasks whose steps were interrupted
    (each must wake to finish its step, decided meanwhile or not)."""
    interrupted: set[str] = set()
    for row in await repository.expire_claimed(now):
        interrupted.add(row.task_id)
        outcome = "retry" if row.channel in IDEMPOTENT_CHANNELS else "unknown"
        await audit(
            row.task_id,
            f"escalation.{row.channel}",
            outcome,
            f"{row.step}: interrupted by a restart while sending to {row.recipient}; "
            + ("sent again (idempotent)" if outcome == "retry" else "not repeated"),
        )
    return interrupted


async def rebuild_wakes(
    *,
    tasks: TaskReader,
    repository: LadderRepository,
    policy: EscalationPolicy,
    history: dict[str, list[LadderStepRow]],
    now: datetime,
    on_page: Callable[[dict[str, datetime]], None] | None = None,
) -> dict[str, datetime]:
    """Every open task's next wake-up from the store (in bulk): task id → when.

    A task with a ``claimed`` step wakes ``now`` (to resume it); a task with no step left
    has none. The tasks are read a page at a time, as :class:`~escalation.ports.OpenTaskClock`
    when the :class:`~escalation.ports.TaskReader` offers ``open_task_clocks()`` (only what
    the schedule reads), else from ``open_task_pages()`` or ``open_tasks()``: 100,000 open
    tasks are never all in memory at once (bench/ladders.py). Yields to the event loop every
    500 tasks (a big backlog at start); ``on_page`` gets each page's wake-ups as soon as they
    are known, so the caller can arm them before the last page is read (bench/arm.py).

    ``history`` (task id → step rows as :func:`~escalation.progress.kept_rows` keeps them) is
    updated in place: wake-ups may be taken while this runs (the caller's worker), so a
    task's step rows read here replace its history only when they are at least as far along
    as what a wake-up wrote meanwhile (rows are only ever added, and go from ``claimed`` to
    ``done``); tasks no longer open lose theirs.
    """
    wakes: dict[str, datetime] = {}
    gone = set(history)  # tasks no longer open lose their history at the end
    index = 0
    async for page, steps in _pages_read_ahead(tasks, repository):
        page_wakes: dict[str, datetime] = {}
        for clock in page:
            index += 1
            if index % 500 == 0:
                await asyncio.sleep(0)
            task_id = clock.task_id
            rows = steps.get(task_id, ())
            if rows and any(r.status == "claimed" for r in rows):
                page_wakes[task_id] = now
                continue
            last = last_taken(rows) if rows else None
            try:
                nxt = next_step(
                    clock.created_at,
                    clock.deadline,
                    clock.priority,
                    policy,
                    LadderState(
                        False,
                        clock.acknowledged_at,
                        clock.snoozed_until,
                        frozenset([STEP_KINDS[r.step] for r in rows if r.step in STEP_KINDS])
                        if rows
                        else _NO_STEPS,
                        None if last is None else last.taken_at,  # repeats count from it
                    ),
                )
            except ValueError:
                continue
            if nxt is not None:
                page_wakes[task_id] = nxt.deliver_at
        for task_id, rows in steps.items():
            kept = kept_rows(rows)
            current = history.get(task_id)
            if current is None or progress(kept) >= progress(current):
                history[task_id] = kept
        gone.difference_update(c.task_id for c in page)
        wakes.update(page_wakes)
        if on_page is not None:
            on_page(page_wakes)
    for task_id in gone:
        history.pop(task_id, None)
    return wakes


#: Pages read ahead of the one being computed (bounds what is in memory at once).
READ_AHEAD_PAGES = 2

_Page = tuple[Sequence[OpenTaskClock], dict[str, list[LadderStepRow]]]


async def _pages_read_ahead(
    tasks: TaskReader, repository: LadderRepository
) -> AsyncIterator[_Page]:
    """Each page of open tasks with its step rows, the next pages read while this one is
    computed: on PostgreSQL a page's two reads wait on the server about as long as the page's
    schedules take to compute (bench/arm.py), so read one after the other the arming took
    their sum. The step rows of a page are read while the next page of tasks is. At most
    :data:`READ_AHEAD_PAGES` pages wait; an error of a read is raised here, in order."""
    queue: asyncio.Queue[tuple[Sequence[OpenTaskClock], asyncio.Future[Any]] | None] = (
        asyncio.Queue(maxsize=READ_AHEAD_PAGES)
    )

    async def read_pages() -> None:
        async for page in _open_task_clocks(tasks):
            steps = asyncio.ensure_future(repository.steps([c.task_id for c in page]))
            await queue.put((page, steps))
        await queue.put(None)

    reader = asyncio.create_task(read_pages())
    try:
        while True:
            got = asyncio.ensure_future(queue.get())
            await asyncio.wait({got, reader}, return_when=asyncio.FIRST_COMPLETED)
            if not got.done():  # the reader stopped without a page: its error, or the end
                got.cancel()
                reader.result()  # raises what the reader raised
                if queue.empty():
                    return
                item = queue.get_nowait()
            else:
                item = got.result()
            if item is None:
                return
            page, steps = item
            yield page, await steps
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        while not queue.empty():  # step reads started and not awaited: retrieve their end
            item = queue.get_nowait()
            if item is not None:
                item[1].cancel()


async def _open_task_clocks(tasks: TaskReader) -> AsyncIterator[Sequence[OpenTaskClock]]:
    clocks = getattr(tasks, "open_task_clocks", None)
    if clocks is not None:
        async for page in clocks():
            yield page
        return
    pages = getattr(tasks, "open_task_pages", None)
    if pages is None:
        yield _clocks(await tasks.open_tasks())
        return
    async for open_tasks in pages():
        yield _clocks(open_tasks)


def _clocks(tasks: Iterable[LadderTask]) -> list[OpenTaskClock]:
    """What the rebuild reads of each undecided task."""
    return [
        OpenTaskClock(
            t.task_id,
            t.task.created_at,
            t.deadline,
            t.task.priority,
            t.acknowledged_at,
            t.snoozed_until,
        )
        for t in tasks
        if not t.is_decided
    ]
