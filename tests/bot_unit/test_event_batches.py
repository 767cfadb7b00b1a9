"""A batch of events stored at once (the Redis Streams intake's path), on SQLite and PostgreSQL.

Each event's outcome is what storing it alone would give: a repeated id (stored before or
earlier in the batch) stores nothing, known content (before or earlier in the batch) is stored
already handled, a malformed one is stored failed with its reason; what is stored reads back
as the same event, and its content fingerprint is the one every intake computes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from bot.store import NewEvent, Recorded, Store
from bot.store.fingerprint import encode_event, event_fingerprint
from tests.support.databases import fresh_postgres_database


def event(n: int, *, channel: str | None = None, **data: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "pipeline.stage_changed",
        "timestamp": "2026-11-28T10:00:00+00:00",
        "data": {"pipelineId": f"p-{n}", "pipelineName": "ünïcode ✓", **data},
    }
    if channel is not None:
        body["channel"] = channel
    return body


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}"
    else:
        with fresh_postgres_database("test_event_batches") as url:
            yield url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    s = Store(database_url)
    await s.create_schema()
    try:
        yield s
    finally:
        await s.close()


def rows(url: str) -> dict[str, tuple[str, str | None, bool]]:
    """``event_id → (body, error, processed)`` straight from the database."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            found = conn.execute(text("SELECT event_id, body, error, processed_at FROM events"))
            return {r[0]: (r[1], r[2], r[3] is not None) for r in found}
    finally:
        engine.dispose()


async def test_each_event_of_a_batch_gets_the_outcome_it_would_get_alone(
    store: Store, database_url: str
) -> None:
    assert await store.record_event("seen", "pipeline.stage_changed", event(0), "webhook") == (
        Recorded.NEW
    )
    batch = [
        NewEvent("a", "pipeline.stage_changed", event(1), "redis"),
        NewEvent("seen", "pipeline.stage_changed", event(2), "redis"),  # id stored before
        NewEvent("b", "pipeline.stage_changed", event(0), "redis"),  # content stored before
        NewEvent("a", "pipeline.stage_changed", event(3), "redis"),  # id earlier in the batch
        NewEvent("c", "pipeline.stage_changed", event(1, channel="x"), "redis"),  # content too
        NewEvent("bad", "(none)", {"fields": {"data": "{"}}, "redis", "malformed: data"),
        NewEvent("d", "pipeline.stage_changed", event(4), "redis"),
    ]
    assert await store.record_events(batch) == [
        Recorded.NEW,
        Recorded.DUPLICATE,
        Recorded.SAME_CONTENT,
        Recorded.DUPLICATE,
        Recorded.SAME_CONTENT,
        Recorded.FAILED,
        Recorded.NEW,
    ]
    stored = rows(database_url)
    assert set(stored) == {"seen", "a", "b", "c", "bad", "d"}
    # the first of two rows with one id is the one stored
    assert json.loads(stored["a"][0]) == event(1)
    assert stored["a"][1:] == (None, False) and stored["d"][1:] == (None, False)
    assert (
        stored["b"][1]
        == stored["c"][1]
        == ("same content as an event accepted before (acted on once)")
    )
    assert stored["b"][2] and stored["c"][2]
    assert stored["bad"][1:] == ("malformed: data", True)
    assert json.loads(stored["bad"][0]) == {"fields": {"data": "{"}}
    # only the events to act on are handed out after a restart
    assert [e.event_id for e in await store.unprocessed_events()] == ["seen", "a", "d"]


async def test_a_batch_larger_than_one_statement_is_stored_whole(store: Store) -> None:
    batch = [NewEvent(f"e-{n}", "pipeline.stage_changed", event(n), "redis") for n in range(1203)]
    batch.append(NewEvent("e-7", "pipeline.stage_changed", event(7), "redis"))
    batch.append(NewEvent("late", "pipeline.stage_changed", event(1100), "redis"))
    outcome = await store.record_events(batch)
    assert outcome[:1203] == [Recorded.NEW] * 1203
    assert outcome[1203:] == [Recorded.DUPLICATE, Recorded.SAME_CONTENT]
    assert await store.count_events() == 1204


async def test_a_stream_batch_is_read_back_in_stream_order(store: Store) -> None:
    """Entry ids ``…-2`` and ``…-10`` sort the other way as text: the store reads a batch
    back as the stream had it (the processor applies events of one task in that order)."""
    batch = [
        NewEvent(
            f"redis:factory.tasks:1700000000000-{seq}",
            "pipeline.stage_changed",
            event(seq),
            "redis",
        )
        for seq in range(12)
    ]
    await store.record_events(batch)
    read = await store.unprocessed_events(limit=100)
    assert [r.event_id for r in read] == [e.event_id for e in batch]


async def test_marks_of_more_than_one_statement_each_apply_and_the_queue_reads_in_order(
    store: Store, database_url: str
) -> None:
    batch = [
        NewEvent(f"e-{n:04}", "pipeline.stage_changed", event(n), "redis") for n in range(1203)
    ]
    await store.record_events(batch)
    marked = [f"e-{n:04}" for n in range(0, 1203, 2)] + ["unknown"]
    await store.mark_events_processed(marked)
    stored = rows(database_url)
    assert {e for e, (_, error, done) in stored.items() if done and error is None} == set(
        marked[:-1]
    )
    left = [e.event_id for e in await store.unprocessed_events(limit=1000)]
    assert left == [f"e-{n:04}" for n in range(1, 1203, 2)]
    if database_url.startswith("sqlite"):  # the queue's index gives them in order, unsorted
        engine = create_engine(database_url)
        try:
            with engine.connect() as conn:
                plan = conn.execute(
                    text(
                        "EXPLAIN QUERY PLAN SELECT event_id FROM events WHERE processed_at IS "
                        "NULL ORDER BY received_at, event_id LIMIT 100"
                    )
                ).fetchall()
        finally:
            engine.dispose()
        assert "ix_events_unprocessed" in str(plan) and "TEMP B-TREE" not in str(plan)


@pytest.mark.parametrize(
    "body",
    [
        event(1),
        event(1, channel="pipeline:*"),
        event(1, channel='odd "channel" ✓'),
        {**event(1), "channel": 7},
        {**event(1), "extra": True},
        {"channel": "only"},
        {"data": {"z": 1, "a": [1.5, None, "\u00e9"]}, "type": "t", "timestamp": "x"},
    ],
)
def test_one_encoding_gives_the_stored_text_and_the_fingerprint(body: dict[str, Any]) -> None:
    stored, fingerprint = encode_event(body)
    assert json.loads(stored) == body
    assert fingerprint == event_fingerprint(body)


async def test_the_queue_depth_counts_every_event_stored_and_not_handled(store: Store) -> None:
    """``factory_bridge_event_queue_depth`` (and its alert, > 100): after a restart, or with
    events a standby stored, most of the queue is in the store, not in one process's memory."""
    from bot.metrics import BridgeMetrics

    batch = [NewEvent(f"q-{n}", "pipeline.stage_changed", event(n), "redis") for n in range(300)]
    await store.record_events(batch)
    await store.mark_events_processed([f"q-{n}" for n in range(50)])
    assert await store.count_unprocessed_events() == 250
    body, _ = await BridgeMetrics(queue_depth=store.count_unprocessed_events).render()
    assert b"factory_bridge_event_queue_depth 250.0" in body


async def test_a_stored_id_repeated_with_other_content_is_not_stored_but_logged(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A retried delivery (same id, same content) is a plain duplicate; the same id with other
    content — the factory reusing an id, or a signed body replayed under it — is not stored
    either, but leaves a warning naming the id."""
    first = event(1)
    assert await store.record_event("evt-9", first["type"], first, "webhook") is Recorded.NEW
    with caplog.at_level(logging.WARNING, logger="bot.store.events"):
        again = await store.record_event("evt-9", first["type"], event(1), "webhook")
        assert again is Recorded.DUPLICATE
        assert "evt-9" not in caplog.text  # a retry: nothing to say
        other = event(2)
        assert (
            await store.record_event("evt-9", other["type"], other, "webhook") is Recorded.DUPLICATE
        )
    assert "event evt-9 (webhook) repeats a stored event id with other content" in caplog.text
    assert await store.count_events() == 1


async def test_one_event_by_webhook_and_by_stream_under_one_id_is_no_other_content(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """The webhook carries the envelope's ``channel``, a stream entry has none: the same type,
    timestamp and data is the same event (the fingerprint's rule), not an id reused for other
    content (that warning was logged for every event the factory sent both ways)."""
    by_webhook = event(1, channel="tasks")
    by_stream = {k: v for k, v in by_webhook.items() if k != "channel"}
    assert (
        await store.record_event("evt-7", by_webhook["type"], by_webhook, "webhook") is Recorded.NEW
    )
    with caplog.at_level(logging.WARNING, logger="bot.store.events"):
        again = await store.record_event("evt-7", by_stream["type"], by_stream, "redis")
    assert again is Recorded.DUPLICATE
    assert "evt-7" not in caplog.text
    assert await store.count_events() == 1


async def test_a_refused_stream_entry_quoting_a_nul_or_a_lone_surrogate_is_stored(
    store: Store, database_url: str
) -> None:
    """PostgreSQL refuses a NUL in a text column: a refused entry whose claimed type, or the
    reason naming its field, holds one failed the whole batch, so the stream was blocked for
    good (nothing acknowledged, read again on every reconnect)."""
    from bot.factory.stream_entries import read_entry

    entries = [
        read_entry("factory.tasks", "1-0", {b"type": b"task.cre\x00ated", b"timestamp": b"x"}),
        read_entry(
            "factory.tasks",
            "2-0",
            {
                b"type": b"task.created",
                b"timestamp": b"2026-11-28T10:00:00Z",
                b"data": b'{"a\\u0000": "\\ud800", "task": {"b\\ud800": 1}}',
            },
        ),
    ]
    refused = [e.to_store() for e in entries]
    assert all(r is not None and r.error for r in refused)
    good = NewEvent("good", "pipeline.stage_changed", event(7), "redis")
    batch = [r for r in refused if r is not None] + [good]
    assert await store.record_events(batch) == [Recorded.FAILED, Recorded.FAILED, Recorded.NEW]
    stored = rows(database_url)
    # the reason is kept, its NUL written out
    assert "\\x00" in (stored["redis:factory.tasks:2-0"][1] or "")
    assert [e.event_id for e in await store.unprocessed_events()] == ["good"]
