"""The event processor: in-memory handoff, recovery from the store, retries, exactly once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import discord
import pytest
from sqlalchemy import select

from bot.factory import processor as processor_module
from bot.factory.client import FactoryError, FactoryUnavailable
from bot.factory.events import FactoryEvent, parse_event
from bot.factory.processor import EventProcessor, permanent_reason
from bot.store import NewEvent, Recorded, Store
from bot.store import tables as t
from tests.support.harness import wait_until


def stage_event(pipeline: str) -> dict[str, Any]:
    return {
        "type": "pipeline.stage_changed",
        "timestamp": "2026-11-21T10:00:00Z",
        "channel": "pipeline:*",
        "data": {
            "pipelineId": pipeline,
            "pipelineName": pipeline,
            "fromStage": "building",
            "toStage": "testing",
            "triggeredBy": "agent-1",
        },
    }


class Handler:
    """Records the pipelines of the events it handles; fails the first ``fail[p]`` times."""

    def __init__(self, fail: dict[str, int] | None = None) -> None:
        self.fail = dict(fail or {})
        self.calls: list[str] = []
        self.handled: list[str] = []

    async def __call__(self, event: FactoryEvent) -> None:
        pipeline = str(event.payload.pipeline_id)
        self.calls.append(pipeline)
        if self.fail.get(pipeline, 0) > 0:
            self.fail[pipeline] -= 1
            raise RuntimeError(f"Discord is down ({pipeline})")
        self.handled.append(pipeline)


class CountingStore(Store):
    """A store that counts reads of the event table."""

    reads = 0

    async def unprocessed_events(self, limit: int = 100) -> Any:
        self.reads += 1
        return await super().unprocessed_events(limit)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[CountingStore]:
    store = CountingStore(database_url)
    await store.create_schema()
    yield store
    await store.close()


async def record(store: Store, pipeline: str) -> tuple[str, FactoryEvent]:
    body = stage_event(pipeline)
    event_id = f"evt-{pipeline}"
    assert await store.record_event(event_id, body["type"], body, "webhook") is Recorded.NEW
    return event_id, parse_event(body)


async def errors(store: Store) -> dict[str, str | None]:
    """event id → ``events.error`` of the processed events."""

    def work(conn: Any) -> dict[str, str | None]:
        rows = conn.execute(
            select(t.events.c.event_id, t.events.c.error).where(
                t.events.c.processed_at.is_not(None)
            )
        )
        return {event_id: error for event_id, error in rows}

    return await store.db.read(work)


async def test_submitted_events_are_handled_in_order_and_marked_without_reading_back(
    store: CountingStore,
) -> None:
    handler = Handler()
    processor = EventProcessor(store, handler)
    processor.start()
    await wait_until(processor.idle.is_set, what="the first read of the store")
    reads_at_start = store.reads
    for pipeline in ("a", "b", "c"):
        processor.submit(*await record(store, pipeline))
    await wait_until(lambda: handler.handled == ["a", "b", "c"], what="three events handled")
    await processor.stop()
    assert store.reads == reads_at_start
    assert await store.unprocessed_events() == []


async def test_a_batch_of_submitted_events_is_marked_in_one_write(
    store: CountingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a Redis Streams batch (1,000 entries) handed over at once is marked with one write, not
    # one per 100 events: a processor behind a busy intake keeps up with it
    processor = EventProcessor(store, Handler())
    processor.start()
    await wait_until(processor.idle.is_set, what="the first read of the store")
    rows = []
    for i in range(1_000):
        body = stage_event(f"m{i:04}")
        rows.append(NewEvent(f"evt-m{i:04}", body["type"], body, "redis"))
    outcomes = await store.record_events(rows)
    assert set(outcomes) == {Recorded.NEW}
    marks: list[int] = []
    mark = store.mark_events_processed

    async def counted(event_ids: Any) -> None:
        marks.append(len(event_ids))
        await mark(event_ids)

    monkeypatch.setattr(store, "mark_events_processed", counted)
    for row in rows:
        processor.submit(row.event_id, parse_event(row.body))
    await wait_until(lambda: sum(marks) == 1_000, what="every event marked")
    await processor.stop()
    assert marks == [1_000]
    assert await store.unprocessed_events() == []


async def test_events_stored_before_start_are_handled_from_the_store(store: Store) -> None:
    for pipeline in ("a", "b"):
        await record(store, pipeline)  # stored by a process that crashed before handling
    handler = Handler()
    processor = EventProcessor(store, handler)
    processor.start()
    await wait_until(lambda: handler.handled == ["a", "b"], what="recovered events handled")
    await processor.stop()
    assert await store.unprocessed_events() == []


async def test_an_event_read_from_the_store_and_submitted_too_is_handled_once(
    store: Store,
) -> None:
    handler = Handler()
    processor = EventProcessor(store, handler)
    first = await record(store, "a")
    processor.submit(*first)  # its handoff arrives after the start-up read took it
    processor.start()
    await wait_until(lambda: handler.handled == ["a"], what="the event handled")
    processor.submit(*await record(store, "b"))
    await wait_until(lambda: handler.handled == ["a", "b"], what="the next event handled")
    await processor.stop()
    assert handler.calls == ["a", "b"]


async def test_a_store_read_that_finds_only_submitted_events_takes_them_and_ends_the_reads(
    store: CountingStore,
) -> None:
    # an intake storing faster than the processor handles: the store holds what memory holds
    submitted = [await record(store, f"p{i:03}") for i in range(250)]
    seen: list[FactoryEvent] = []

    async def handle(event: FactoryEvent) -> None:
        seen.append(event)

    processor = EventProcessor(store, handle)
    for event_id, event in submitted:
        processor.submit(event_id, event)
    processor.start()
    await wait_until(lambda: len(seen) == 250, what="every event handled")
    await processor.stop()
    assert store.reads == 1  # not one read per 100 events of the backlog
    assert all(a is b for a, (_, b) in zip(seen, submitted, strict=True))  # never parsed again
    assert await store.unprocessed_events() == []


async def test_a_failing_event_is_retried_without_holding_up_the_events_after_it(
    store: Store,
) -> None:
    for pipeline in ("a", "b", "c"):
        await record(store, pipeline)  # one run: a fails, b and c go on, then a is retried
    handler = Handler(fail={"a": 2})
    processor = EventProcessor(store, handler, retry_base_seconds=0.001)
    processor.start()
    await wait_until(lambda: sorted(handler.handled) == ["a", "b", "c"], what="all handled")
    await processor.stop()
    assert handler.calls == ["a", "b", "c", "a", "a"]
    assert handler.handled == ["b", "c", "a"]
    assert await store.unprocessed_events() == []


async def test_an_event_that_keeps_failing_is_marked_failed_with_the_reason(
    store: Store,
) -> None:
    for pipeline in ("a", "b"):
        await record(store, pipeline)
    handler = Handler(fail={"a": 99})
    processor = EventProcessor(store, handler, max_attempts=3, retry_base_seconds=0.001)
    processor.start()
    await wait_until(lambda: processor.failed == 1, what="the failing event parked")
    await processor.stop()
    assert handler.calls == ["a", "b", "a", "a"]
    assert handler.handled == ["b"]
    marked = await errors(store)
    assert "Discord is down (a)" in (marked["evt-a"] or "")
    assert marked["evt-b"] is None


async def test_a_stored_body_that_no_longer_parses_is_marked_failed(store: Store) -> None:
    body = stage_event("a")
    del body["data"]["toStage"]
    await store.record_event("evt-bad", body["type"], body, "webhook")
    await record(store, "b")
    handler = Handler()
    processor = EventProcessor(store, handler)
    processor.start()
    await wait_until(lambda: handler.handled == ["b"], what="the valid event handled")
    await processor.stop()
    marked = await errors(store)
    assert "toStage" in (marked["evt-bad"] or "")


class Scripted:
    """Handles stage events; raises the scripted errors of an event (``pipeline:toStage``) first."""

    def __init__(self, errors: dict[str, list[BaseException]] | None = None) -> None:
        self.errors = {k: list(v) for k, v in (errors or {}).items()}
        self.down = False  # every event fails (a dependency is down)
        self.calls: list[str] = []
        self.handled: list[str] = []

    async def __call__(self, event: FactoryEvent) -> None:
        name = f"{event.payload.pipeline_id}:{event.payload.to_stage}"
        self.calls.append(name)
        if self.down:
            raise ConnectionError("Discord is unreachable")
        if self.errors.get(name):
            raise self.errors[name].pop(0)
        self.handled.append(name)


async def record_stage(store: Store, pipeline: str, to_stage: str = "testing") -> None:
    body = stage_event(pipeline)
    body["data"]["toStage"] = to_stage
    event_id = f"evt-{pipeline}-{to_stage}"
    assert await store.record_event(event_id, body["type"], body, "webhook") is Recorded.NEW


async def test_permanent_errors_are_parked_at_once_with_the_reason_audited_and_counted(
    store: Store,
) -> None:
    for pipeline in ("gone", "year9999", "deep", "ok"):
        await record_stage(store, pipeline)
    handler = Scripted(
        {
            "gone:testing": [FactoryError(404, "NOT_FOUND", "task nope not found")],
            "year9999:testing": [OverflowError("date value out of range")],
            "deep:testing": [RecursionError("maximum recursion depth exceeded")],
        }
    )
    processor = EventProcessor(store, handler, retry_base_seconds=60)  # a retry would hang
    processor.start()
    await wait_until(lambda: handler.handled == ["ok:testing"], what="the good event handled")

    async def ok_marked() -> bool:  # its processed mark is written after the handler returns
        return "evt-ok-testing" in await errors(store)

    await wait_until(ok_marked, what="the good event marked processed")
    await processor.stop()
    assert handler.calls == ["gone:testing", "year9999:testing", "deep:testing", "ok:testing"]
    assert processor.counters() == {"events_failed": 3, "events_retrying": 0}
    marked = await errors(store)
    assert "404 NOT_FOUND" in (marked["evt-gone-testing"] or "")
    assert "date value out of range" in (marked["evt-year9999-testing"] or "")
    assert "maximum recursion depth" in (marked["evt-deep-testing"] or "")
    assert marked["evt-ok-testing"] is None
    audited = [e for e in await store.audit_entries() if e.action == "event.failed"]
    assert len(audited) == 3
    assert all(e.outcome == "failed" for e in audited)
    assert "date value out of range" in (audited[1].detail or "")


async def test_later_events_about_the_same_thing_wait_behind_a_retried_one(
    store: Store,
) -> None:
    await record_stage(store, "a", "testing")
    await record_stage(store, "a", "review")  # same pipeline: must follow "testing"
    await record_stage(store, "b", "testing")  # another pipeline: goes on
    handler = Scripted({"a:testing": [RuntimeError("factory 503")]})
    processor = EventProcessor(store, handler, retry_base_seconds=0.001)
    processor.start()
    await wait_until(lambda: len(handler.handled) == 3, what="all handled")
    await processor.stop()
    assert handler.handled == ["b:testing", "a:testing", "a:review"]
    assert handler.calls == ["a:testing", "b:testing", "a:testing", "a:review"]
    assert processor.failed == 0


async def test_while_everything_fails_no_new_event_is_attempted(store: Store) -> None:
    for pipeline in ("a", "b", "c", "d"):
        await record_stage(store, pipeline)
    handler = Scripted()
    handler.down = True
    processor = EventProcessor(store, handler, retry_base_seconds=0.05)
    processor.start()
    await wait_until(lambda: len(handler.calls) >= 3, what="a retry during the outage")
    # a and b failed in a row: the dependency is down, c and d wait without being charged
    assert set(handler.calls) == {"a:testing", "b:testing"}
    assert processor.counters()["events_retrying"] == 4
    handler.down = False
    await wait_until(lambda: len(handler.handled) == 4, what="everything handled after")
    await processor.stop()
    assert sorted(handler.handled) == ["a:testing", "b:testing", "c:testing", "d:testing"]
    assert handler.calls.count("c:testing") == 1
    assert handler.calls.count("d:testing") == 1
    assert processor.failed == 0
    assert await store.unprocessed_events() == []


def discord_error(status: int, message: Any) -> discord.HTTPException:
    """A discord.py HTTP error as its HTTP client raises it."""
    return discord.HTTPException(SimpleNamespace(status=status, reason="x"), message)


@pytest.mark.parametrize(
    ("exc", "permanent"),
    [
        (FactoryError(404, "NOT_FOUND", "no such task"), True),
        (FactoryError(400, "VALIDATION_ERROR", "bad id"), True),
        (FactoryError(409, "CONFLICT", "decided"), True),
        (FactoryError(403, "FORBIDDEN", "bad key"), False),
        (FactoryUnavailable("GET tasks/x failed after 3 retries (HTTP 503)"), False),
        (OverflowError("date value out of range"), True),
        (ValueError("Maximum serialization depth exceeded"), True),
        (RecursionError("maximum recursion depth exceeded"), True),
        (KeyError("data"), True),
        (ConnectionError("reset"), False),
        (TimeoutError(), False),
        (RuntimeError("Discord is down"), False),
        (discord_error(400, {"code": 50035, "message": "Invalid Form Body"}), True),
        (discord_error(503, "Service Unavailable"), False),
        (discord_error(403, {"code": 50013, "message": "Missing Permissions"}), False),
    ],
)
def test_permanent_errors_are_told_from_transient_ones(exc: BaseException, permanent: bool) -> None:
    assert (permanent_reason(exc) is not None) is permanent


async def test_a_flood_beyond_memory_is_handled_from_the_store_in_order(
    store: CountingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the intake stores faster than events are handled: memory holds at most SUBMITTED_MEMORY,
    # the rest waits in the store, and nothing is lost or reordered
    monkeypatch.setattr(processor_module, "SUBMITTED_MEMORY", 50)
    submitted = [await record(store, f"f{i:03}") for i in range(260)]
    seen: list[FactoryEvent] = []

    async def handle(event: FactoryEvent) -> None:
        seen.append(event)

    processor = EventProcessor(store, handle)
    for event_id, event in submitted:
        processor.submit(event_id, event)
    assert processor.queue_depth() == 50  # not 260
    processor.start()
    await wait_until(lambda: len(seen) == 260, what="every event handled")
    await processor.stop()
    order = [event.raw["data"]["pipelineId"] for event in seen]
    assert order == [event.raw["data"]["pipelineId"] for _, event in submitted]
    assert await store.unprocessed_events() == []


async def test_a_failed_mark_is_waited_out_and_nothing_is_handled_twice(
    store: CountingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database refuses one write (disk full, a connection reset) while the processor
    marks events handled: it goes on — events submitted after it are handled, the marks are
    written once the database takes writes again — instead of stopping until a restart."""
    handler = Handler()
    processor = EventProcessor(store, handler, store_retry_seconds=0.01)
    processor.start()
    await wait_until(processor.idle.is_set, what="the first read of the store")
    mark = store.mark_events_processed
    failures = [OSError("disk I/O error")]

    async def failing_once(event_ids: Any) -> None:
        if failures:
            raise failures.pop()
        await mark(event_ids)

    monkeypatch.setattr(store, "mark_events_processed", failing_once)
    processor.submit(*await record(store, "a"))
    await wait_until(lambda: processor.store_failures == 1, what="the failed mark")
    processor.submit(*await record(store, "b"))
    await wait_until(lambda: handler.handled == ["a", "b"], what="the next event handled")
    await wait_until(
        lambda: processor._task is not None and processor.idle.is_set(), what="idle again"
    )

    async def all_marked() -> bool:
        return await store.unprocessed_events() == []

    await wait_until(all_marked, what="both events marked")
    await processor.stop()
    assert handler.calls == ["a", "b"]  # "a" was not handled again from the store
    assert not failures
