"""The event processor: in-memory handoff, recovery from the store, retries, exactly once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.factory.events import FactoryEvent, parse_event
from bot.factory.processor import EventProcessor
from bot.sandbox.harness import wait_until
from bot.store import Recorded, Store
from bot.store import tables as t


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
async def store(tmp_path: Path) -> AsyncIterator[CountingStore]:
    store = CountingStore(f"sqlite:///{tmp_path / 'events.db'}")
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


async def test_a_failing_event_is_retried_before_the_events_after_it(store: Store) -> None:
    handler = Handler(fail={"a": 2})
    processor = EventProcessor(store, handler, retry_base_seconds=0.001)
    processor.start()
    for pipeline in ("a", "b", "c"):
        processor.submit(*await record(store, pipeline))
    await wait_until(lambda: handler.handled == ["a", "b", "c"], what="all handled in order")
    await processor.stop()
    assert handler.calls == ["a", "a", "a", "b", "c"]
    assert await store.unprocessed_events() == []


async def test_an_event_that_keeps_failing_is_marked_failed_with_the_reason(
    store: Store,
) -> None:
    handler = Handler(fail={"a": 99})
    processor = EventProcessor(store, handler, max_attempts=3, retry_base_seconds=0.001)
    processor.start()
    for pipeline in ("a", "b"):
        processor.submit(*await record(store, pipeline))
    await wait_until(lambda: handler.handled == ["b"], what="the next event handled")
    await processor.stop()
    assert handler.calls == ["a", "a", "a", "b"]
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
