"""Store.get_task answers from memory, and never with a row older than a settled write."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.store import Store, TrackedTask
from escalation.models import Task
from tests.support.harness import wait_until

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
DEADLINE = NOW + timedelta(hours=4)


async def tracked(store: Store, **fields: Any) -> TrackedTask:
    await store.upsert_task(Task(id="t1", title="Release", created_at=NOW, **fields), DEADLINE)
    found = await store.get_task("t1")
    assert found is not None
    return found


async def stored(store: Store) -> TrackedTask:
    """The row as the database holds it (tasks_by_ids never answers from memory)."""
    [row] = await store.tasks_by_ids(["t1"])
    return row


async def test_a_row_read_again_is_answered_without_a_database_read(store: Store) -> None:
    first = await tracked(store)
    reads = 0
    real_read = store.db.read

    async def counting_read(fn: Any) -> Any:
        nonlocal reads
        reads += 1
        return await real_read(fn)

    store.db.read = counting_read  # type: ignore[method-assign]
    again = await store.get_task("t1")
    assert again == first
    assert reads == 0


async def _begin(store: Store) -> None:
    won = await store.begin_decision(
        "t1", "approved", discord_user_id=7, name="alice", key="k1", notes=None
    )
    assert won is not None


async def _confirm(store: Store) -> None:
    await _begin(store)
    task = Task(id="t1", title="Release", created_at=NOW)
    await store.confirm_decision(
        task,
        decision="approved",
        decided_by="alice",
        discord_user_id=7,
        notes=None,
        source="discord",
        at=NOW,
    )


WRITES: dict[str, tuple[Callable[[Store], Awaitable[Any]], Callable[[TrackedTask], object]]] = {
    "upsert_task": (
        lambda s: s.upsert_task(Task(id="t1", title="Renamed", created_at=NOW), DEADLINE),
        lambda r: r.task.title,
    ),
    "set_message": (lambda s: s.set_message("t1", 10, 20), lambda r: r.message_id),
    "adopt_message": (lambda s: s.adopt_message("t1", 10, 21), lambda r: r.message_id),
    "begin_decision": (_begin, lambda r: r.inflight_decision),
    "confirm_decision": (_confirm, lambda r: r.decision),
    "set_acknowledged": (
        lambda s: s.set_acknowledged("t1", 7, "alice", NOW),
        lambda r: r.acknowledged_by_name,
    ),
    "set_snoozed": (
        lambda s: s.set_snoozed("t1", NOW + timedelta(hours=1), "alice"),
        lambda r: r.snoozed_by_name,
    ),
}


@pytest.mark.parametrize("write", sorted(WRITES))
async def test_every_task_write_is_seen_by_the_next_read(store: Store, write: str) -> None:
    action, field = WRITES[write]
    before = await tracked(store)  # now in memory
    await action(store)
    after = await store.get_task("t1")
    assert after is not None
    assert field(after) == field(await stored(store))
    assert field(after) != field(before)


async def test_an_aborted_decision_is_seen_by_the_next_read(store: Store) -> None:
    await tracked(store)
    await _begin(store)
    assert (await store.get_task("t1")).inflight_decision == "approved"  # type: ignore[union-attr]
    await store.abort_decision("t1", "k1")
    after = await store.get_task("t1")
    assert after is not None and after.inflight_decision is None


async def test_a_read_overtaken_by_a_write_is_not_kept(store: Store) -> None:
    """The read saw the row before the write committed; it must not be served afterwards."""
    await store.upsert_task(Task(id="t1", title="Release", created_at=NOW), DEADLINE)
    store.forget_cached_tasks()  # the upsert left its row in memory: make the next read go out
    gate = asyncio.Event()
    read_done = asyncio.Event()
    real_read = store.db.read

    async def slow_read(fn: Any) -> Any:
        row = await real_read(fn)
        read_done.set()
        await gate.wait()  # the result comes back only after the write settled
        return row

    store.db.read = slow_read  # type: ignore[method-assign]
    reading = asyncio.create_task(store.get_task("t1"))
    await read_done.wait()
    await store.set_acknowledged("t1", 7, "alice", NOW)
    gate.set()
    old = await reading
    assert old is not None and old.acknowledged_by_name is None
    store.db.read = real_read  # type: ignore[method-assign]
    fresh = await store.get_task("t1")
    assert fresh is not None and fresh.acknowledged_by_name == "alice"


async def test_a_write_whose_caller_was_cancelled_is_still_seen(store: Store) -> None:
    await tracked(store)  # in memory
    writing = asyncio.create_task(store.set_acknowledged("t1", 7, "alice", NOW))
    await asyncio.sleep(0)  # the unit is queued for the writer
    writing.cancel()

    async def committed() -> bool:
        return (await stored(store)).acknowledged_by_name == "alice"

    await wait_until(committed, what="the cancelled caller's write to commit")
    fresh = await store.get_task("t1")
    assert fresh is not None and fresh.acknowledged_by_name == "alice"


def _count_reads(store: Store) -> list[int]:
    """Count :meth:`Database.read` calls from now on (one item per read)."""
    reads: list[int] = []
    real_read = store.db.read

    async def counting_read(fn: Any) -> Any:
        reads.append(1)
        return await real_read(fn)

    store.db.read = counting_read  # type: ignore[method-assign]
    return reads


@pytest.mark.parametrize("write", ["upsert_task", "begin_decision", "confirm_decision"])
async def test_a_write_that_returns_its_row_leaves_it_in_memory(store: Store, write: str) -> None:
    """The row a committed write read back in its own transaction is what the next read
    gets, without a database round trip (the message refresh after a decision)."""
    action, _ = WRITES[write]
    await tracked(store)
    reads = _count_reads(store)
    await action(store)
    after = await store.get_task("t1")
    assert reads == []
    assert after == await stored(store)


async def test_a_later_write_of_the_same_group_wins_over_a_returned_row(store: Store) -> None:
    """Two writes of one row committed together: the cache keeps the later one's view."""
    await tracked(store)
    started, release = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def blocker(conn: Any) -> None:  # holds the writer so that both writes join one group
        loop.call_soon_threadsafe(started.set)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result(10)

    blocked = asyncio.ensure_future(store.db.write(blocker))
    await started.wait()
    begin = asyncio.ensure_future(_begin(store))
    ack = asyncio.ensure_future(store.set_acknowledged("t1", 7, "alice", NOW))
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(blocked, begin, ack)
    reads = _count_reads(store)
    after = await store.get_task("t1")
    assert after is not None and after.acknowledged_by_name == "alice"
    assert after.inflight_decision == "approved"
    assert len(reads) == 1  # forgotten by the later write: read again
