"""The posting claim and the message record (:meth:`bot.store.Store.claim_posting`,
:meth:`~bot.store.Store.set_message`), on each engine: exactly one poster per task, a claim
left by a crash expires, a task with a message is never claimed again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.store import Store
from escalation.models import Task

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def task(task_id: str) -> Task:
    return Task.model_validate(
        {"id": task_id, "title": "Release", "createdAt": "2026-11-21T12:00:00Z"}
    )


async def test_one_claim_wins_until_it_is_stale_or_released(store: Store) -> None:
    clock = [NOW.timestamp()]
    store._clock = lambda: clock[0]
    await store.upsert_task(task("t1"), NOW + timedelta(hours=1))
    assert await store.claim_posting("t1")
    assert not await store.claim_posting("t1")
    clock[0] += 59
    assert not await store.claim_posting("t1", stale_after_seconds=60)
    clock[0] += 2  # a claim older than 60 s: its poster crashed
    assert await store.claim_posting("t1", stale_after_seconds=60)
    await store.release_posting("t1")
    assert await store.claim_posting("t1")
    assert not await store.claim_posting("unknown")


async def test_a_task_with_a_message_is_not_claimed_and_keeps_its_snapshot(store: Store) -> None:
    await store.upsert_task(task("t1"), NOW + timedelta(hours=1))
    await store.upsert_task(task("t2"), NOW + timedelta(hours=1))
    assert await store.claim_posting("t1")
    await store.set_message("t1", 11, 22)
    tracked = await store.get_task("t1")
    assert tracked is not None
    assert (tracked.channel_id, tracked.message_id, tracked.batch_id) == (11, 22, None)
    assert tracked.task.title == "Release"
    other = await store.get_task("t2")  # only the named row changed
    assert other is not None and other.message_id is None
    store._clock = lambda: NOW.timestamp() + 3600
    assert not await store.claim_posting("t1", stale_after_seconds=0)
    refreshed = await store.upsert_task(
        task("t1").model_copy(update={"title": "Release 2"}), NOW + timedelta(hours=2)
    )
    assert refreshed.message_id == 22 and refreshed.task.title == "Release 2"


async def test_the_message_record_answers_the_task_and_the_next_read_from_memory(
    store: Store,
) -> None:
    await store.upsert_task(task("t1"), NOW + timedelta(hours=1))
    recorded = await store.set_message("t1", 11, 22)
    assert recorded is not None and recorded.message_id == 22
    assert await store.set_message("unknown", 11, 23) is None

    async def no_read(_: object) -> None:
        raise AssertionError("read from the database")

    real_read = store.db.read
    store.db.read = no_read  # type: ignore[method-assign, assignment]
    assert await store.get_task("t1") == recorded
    store.db.read = real_read  # type: ignore[method-assign]
    # a later write to the row is seen (the cached row was forgotten when it settled)
    await store.upsert_task(
        task("t1").model_copy(update={"title": "Release 2"}), NOW + timedelta(hours=1)
    )
    fresh = await store.get_task("t1")
    assert fresh is not None and fresh.task.title == "Release 2" and fresh.message_id == 22


async def test_a_new_leader_releases_every_claim_on_a_task_without_a_message(
    store: Store,
) -> None:
    """A leader paused or killed between its claim and its post left the claim: the new leader
    releases them at takeover (bot.bridge_app), so the task is posted now, not once the claim
    is stale and a reconciliation pass comes (up to 5 minutes without a message or a page)."""
    for task_id in ("t1", "t2", "t3"):
        await store.upsert_task(task(task_id), NOW + timedelta(hours=1))
        assert await store.claim_posting(task_id)
    await store.set_message("t3", 11, 33)
    await store.release_posting()
    assert await store.claim_posting("t1")
    assert await store.claim_posting("t2")
    assert not await store.claim_posting("t3")  # posted: never claimed again
