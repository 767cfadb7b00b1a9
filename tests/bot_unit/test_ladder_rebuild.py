"""Arming the ladder at start: the narrow read of the open tasks, page by page, while the
worker already takes the steps that are due (what a restart or takeover at 100,000 open tasks
waits for, bench/arm.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from bot.ladder.runtime import LadderRuntime
from escalation.ladder import LadderState, next_step
from escalation.models import Priority
from escalation.ports import LadderStepRow, OpenTaskClock
from escalation.startup import READ_AHEAD_PAGES
from tests.bot_unit.test_ladder_runtime import START, make_rig
from tests.support.ladder_fakes import make_rig as make_fake_rig

__all__ = ["make_rig"]  # the fixture, shared with test_ladder_runtime


async def test_open_task_clocks_are_the_tracked_tasks_times(make_rig: Any) -> None:
    """Only undecided tasks with a message, a page at a time, with the very times, priority,
    acknowledgement and snooze the full row gives (its ``createdAt`` from the payload)."""
    rig = await make_rig()
    for n, priority in enumerate([Priority.LOW, Priority.CRITICAL, Priority.HIGH, Priority.LOW]):
        created = START + timedelta(seconds=n, microseconds=123_457 * n)
        await rig.add_task(f"t{n}", created=created, sla_seconds=3600 * (n + 1), priority=priority)
    store = rig.bridge.store
    await store.set_acknowledged("t1", 11, "Alice", START + timedelta(minutes=5))
    await store.set_snoozed("t2", START + timedelta(hours=1), "Alice")
    await store.forget_message("t3", (await store.get_task("t3")).message_id)
    await rig.bridge.track(rig.factory.tasks["t0"].model_copy(update={"id": "no-message"}))
    pages = [page async for page in store.open_task_clocks(page_size=2)]
    assert [len(p) for p in pages] == [2, 1]
    clocks = [c for page in pages for c in page]
    assert [c.task_id for c in clocks] == ["t0", "t1", "t2"]
    for clock in clocks:
        tracked = await store.get_task(clock.task_id)
        assert tracked is not None
        assert clock == OpenTaskClock(
            tracked.task_id,
            tracked.task.created_at,
            tracked.deadline,
            tracked.task.priority,
            tracked.acknowledged_at,
            tracked.snoozed_until,
        )


async def test_each_page_is_armed_while_later_pages_are_read(make_rig: Any) -> None:
    """The first steps due need not wait for the last page: a page is armed as soon as it is
    computed, and the reads run at most READ_AHEAD_PAGES pages ahead of the arming (so
    100,000 tasks are never all in memory); a sooner wake-up set meanwhile (a hook, a step
    the worker took) is kept."""
    rig = await make_rig()
    for n in range(8):
        await rig.add_task(f"t{n}", created=START + timedelta(seconds=n))
    runtime: LadderRuntime = rig.runtime
    runtime._wake.clear()
    soon = START + timedelta(seconds=1)
    runtime.timers.set("t4", soon, kick=False)
    store = rig.bridge.store
    armed_when_read: list[set[str]] = []

    async def pages() -> AsyncIterator[list[OpenTaskClock]]:
        async for page in store.open_task_clocks(page_size=1):
            armed_when_read.append(set(runtime._wake))
            yield page

    runtime.service.tasks.open_task_clocks = pages  # type: ignore[attr-defined]
    assert await runtime.rebuild() == 8
    assert len(armed_when_read) == 8
    for index, armed in enumerate(armed_when_read):
        # page i is read only once the consumer took page i - READ_AHEAD_PAGES - 1, that is
        # once every page before that one is armed
        behind = {f"t{n}" for n in range(index - READ_AHEAD_PAGES - 1)}
        assert behind | {"t4"} <= armed, index
    assert {"t0", "t1", "t2", "t3"} <= armed_when_read[-1]  # armed before the last read
    assert runtime.wake_at("t4") == soon  # kept: sooner than its DM
    assert runtime.wake_at("t0") == START + timedelta(seconds=60)


async def test_the_worker_takes_a_due_step_before_the_last_page_is_read(make_rig: Any) -> None:
    """:meth:`LadderRuntime.begin` returns with the worker running and the rebuild under way;
    a step due in the first page is taken before the second page is read; :meth:`armed`
    waits for the rest."""
    rig = await make_rig()
    for n in range(4):  # each reminder DM (60 s) is due already, the mention (120 s) not yet
        await rig.add_task(f"t{n}", created=START - timedelta(seconds=90 - n))
    runtime: LadderRuntime = rig.runtime
    runtime._wake.clear()
    taken = asyncio.Event()
    runtime.service._step_taken = lambda *_: taken.set()
    store = rig.bridge.store
    read: list[list[str]] = []

    async def pages() -> AsyncIterator[list[OpenTaskClock]]:
        async for page in store.open_task_clocks(page_size=2):
            if read:
                await asyncio.wait_for(taken.wait(), 10)
            read.append([c.task_id for c in page])
            yield page

    runtime.service.tasks.open_task_clocks = pages  # type: ignore[attr-defined]
    try:
        await runtime.begin()
        await asyncio.wait_for(runtime.armed(), 10)
        assert read == [["t0", "t1"], ["t2", "t3"]]
        await runtime.tick()  # the worker may not have run since the last page was armed
        await runtime.drain()
        assert [await rig.steps(f"t{n}") for n in range(4)] == [["reminder_dm"]] * 4
    finally:
        await runtime.stop()


async def test_while_arming_the_worker_takes_one_task_at_a_time(make_rig: Any) -> None:
    """A backlog of overdue steps must not hold back the arming of the other pages (100,000
    tasks at a restart): until the last page is armed, one wake-up at a time; after it, as
    many as the worker allows."""
    rig = await make_rig()
    for n in range(8):  # each reminder DM (60 s) is due already
        await rig.add_task(f"t{n}", created=START - timedelta(seconds=90 - n))
    runtime: LadderRuntime = rig.runtime
    runtime._wake.clear()
    wake = runtime.service.wake
    in_flight = 0
    most: list[int] = []

    async def counting_wake(task_id: str, **kwargs: Any) -> Any:
        nonlocal in_flight
        in_flight += 1
        most.append(in_flight)
        try:
            for _ in range(3):  # several turns of the loop, as a real step's I/O takes
                await asyncio.sleep(0)
            return await wake(task_id, **kwargs)
        finally:
            in_flight -= 1

    runtime.service.wake = counting_wake  # type: ignore[method-assign]
    store = rig.bridge.store
    taken: list[object] = []
    first_page_done = asyncio.Event()

    def step_taken(*args: object) -> None:
        taken.append(args)
        if len(taken) == 4:
            first_page_done.set()

    runtime.service._step_taken = step_taken

    async def pages() -> AsyncIterator[list[OpenTaskClock]]:
        async for page in store.open_task_clocks(page_size=4):
            yield page
            # the next page waits until the first page's four due steps were taken
            await asyncio.wait_for(first_page_done.wait(), 10)

    runtime.service.tasks.open_task_clocks = pages  # type: ignore[attr-defined]
    try:
        await runtime.begin()
        await asyncio.wait_for(runtime.armed(), 10)
        await runtime.tick()  # the worker may not have run since the last page was armed
        await runtime.drain()
        assert [await rig.steps(f"t{n}") for n in range(8)] == [["reminder_dm"]] * 8
        assert max(most) == 1, "one wake-up at a time while arming"
        most.clear()
        for n in range(8, 12):  # their reminder DMs come due together, after the arming
            await rig.add_task(f"t{n}", created=START)
        rig.clock.advance(61)
        await runtime.tick()
        await runtime.drain()
        assert [await rig.steps(f"t{n}") for n in range(8, 12)] == [["reminder_dm"]] * 4
        assert max(most) > 1, "after the arming the worker takes several at once"
    finally:
        await runtime.stop()


def test_rebuild_keeps_the_history_a_wake_up_wrote_meanwhile() -> None:
    """A wake-up that took a step while the rebuild read its page: the rebuild's older rows
    must not replace the newer history (the task message would show the step as not taken).
    Its wake-up from them is the DM's, too early at worst: the runtime keeps the sooner one."""
    rig = make_fake_rig(START)
    task = rig.add("t", Priority.HIGH, created=START)
    taken = LadderStepRow("t", "reminder_dm", START, START, 0.0, "done", {})
    rig.service.history["stale"] = []  # a task no longer open loses its history
    original = rig.repository.steps

    async def steps(task_ids: Any) -> dict[str, list[LadderStepRow]]:
        read = await original(task_ids)  # nothing taken yet
        rig.service.history["t"] = [taken]  # …a wake-up took the DM meanwhile
        return read

    rig.repository.steps = steps  # type: ignore[method-assign]
    seen: list[dict[str, Any]] = []
    wakes = asyncio.run(rig.service.rebuild(on_page=seen.append))
    assert rig.service.history == {"t": [taken]}
    dm = next_step(START, task.deadline, Priority.HIGH, rig.service.policy, LadderState())
    assert dm is not None and seen == [wakes] and wakes == {"t": dm.deliver_at}


async def test_a_failing_read_fails_the_arming_with_its_error(make_rig: Any) -> None:
    """A read that fails while later pages are read ahead is not lost: the arming raises it
    (and the start says so) instead of arming part of the tasks silently."""
    rig = await make_rig()
    for n in range(6):
        await rig.add_task(f"t{n}", created=START + timedelta(seconds=n))
    runtime: LadderRuntime = rig.runtime
    store = rig.bridge.store

    async def pages_then_failure() -> AsyncIterator[list[OpenTaskClock]]:
        async for page in store.open_task_clocks(page_size=2):
            yield page
            raise ConnectionError("database went away")

    runtime.service.tasks.open_task_clocks = pages_then_failure  # type: ignore[attr-defined]
    with pytest.raises(ConnectionError, match="went away"):
        await runtime.rebuild()

    runtime.service.tasks.open_task_clocks = lambda: store.open_task_clocks(page_size=2)  # type: ignore[attr-defined]
    repository = runtime.service.repository
    real_steps = repository.steps
    calls = 0

    async def steps_failing_once_read(task_ids: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise TimeoutError("step read timed out")
        return await real_steps(task_ids)

    repository.steps = steps_failing_once_read  # type: ignore[method-assign]
    with pytest.raises(TimeoutError, match="timed out"):
        await runtime.rebuild()
