"""Redis Streams intake (contract §7.7) against the real Redis of the test machine.

Each test reads its own streams (unique names) as group ``discord-bridge``; the store is a fresh
SQLite file. Timers are never waited for: the reconnect backoff is an injected sleep the test
opens, and ``XAUTOCLAIM`` is tested with a min-idle-time of 0 (and of an hour, for "not yet").
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from pydantic import ValidationError

from bot.factory.events import FactoryEvent
from bot.factory.intake import EventIntake
from bot.factory.redis_intake import GROUP, RedisStreamIntake
from bot.factory.signing import signed_headers
from bot.settings import Settings
from bot.store import NewEvent, Store
from tests.support.harness import wait_until
from tests.support.redis_server import redis_or_skip, redis_url_for_tests, unique_streams

SECRET = "redis-intake-test-secret"


def task_created(task_id: str, **extra_data: Any) -> dict[str, str]:
    """A ``RedisStreamEvent``'s fields for task.created."""
    data = {
        "task": {"id": task_id, "title": f"Review {task_id}", "createdAt": "2026-11-21T10:00:00Z"},
        **extra_data,
    }
    return {
        "type": "task.created",
        "timestamp": "2026-11-21T10:00:00.000Z",
        "data": json.dumps(data),
        "source": "task-service",
    }


class Gate:
    """An injected sleep that returns only when the test opens it (no timer is waited for)."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self._open = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await self._open.wait()
        self._open.clear()

    def open(self) -> None:
        self._open.set()


class World:
    """Streams, a store, and what the intake handed over."""

    def __init__(self, client: aioredis.Redis, streams: tuple[str, ...], store: Store) -> None:
        self.client = client
        self.streams = streams
        self.store = store
        self.handed: list[tuple[str, str]] = []  # (event id, task id)
        self.outcomes: list[str] = []
        self.gate = Gate()
        self.intakes: list[RedisStreamIntake] = []

    def on_stored(self, event_id: str, event: FactoryEvent) -> None:
        self.handed.append((event_id, event.payload.task.id))

    def intake(self, **kwargs: Any) -> RedisStreamIntake:
        options: dict[str, Any] = {
            "url": redis_url_for_tests(),
            "store": self.store,
            "on_stored": self.on_stored,
            "streams": self.streams,
            "consumer": "bridge-1",
            "block_seconds": 0.05,
            "on_outcome": lambda source, outcome: self.outcomes.append(f"{source}:{outcome}"),
            "sleep": self.gate,
        }
        options.update(kwargs)
        intake = RedisStreamIntake(**options)
        self.intakes.append(intake)
        return intake

    async def pending(self, stream: str) -> int:
        summary = await self.client.xpending(stream, GROUP)
        return int(summary["pending"])


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    streams = unique_streams("factory.tasks", "factory.deploys")
    async for client in redis_or_skip(streams):
        store = Store(f"sqlite:///{tmp_path / 'bridge.db'}")
        await store.create_schema()
        w = World(client, streams, store)
        try:
            yield w
        finally:
            for intake in w.intakes:
                await intake.stop()
            await store.close()


def stored_rows(tmp_path: Path) -> dict[str, tuple[str, str, float | None, str | None]]:
    """``event_id → (source, type, processed_at, error)`` straight from the database file."""
    with sqlite3.connect(tmp_path / "bridge.db") as db:
        rows = db.execute("SELECT event_id, source, type, processed_at, error FROM events")
        return {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}


async def test_a_batch_is_stored_before_it_is_acknowledged(world: World, tmp_path: Path) -> None:
    tasks, _ = world.streams
    ids = [await world.client.xadd(tasks, task_created(f"t-{n}")) for n in range(3)]
    release = asyncio.Event()
    calls: list[int] = []
    record_events = world.store.record_events

    async def held(events: list[NewEvent]) -> Any:
        calls.append(len(events))
        await release.wait()
        return await record_events(events)

    world.store.record_events = held  # type: ignore[method-assign]
    intake = world.intake()
    await intake.start()
    await wait_until(lambda: calls == [3], what="the batch handed to the store")
    # delivered to the bridge, not stored yet: still pending, nothing handed over
    assert await world.pending(tasks) == 3
    assert stored_rows(tmp_path) == {}
    release.set()
    await wait_until(lambda: intake.acked == 3, what="the batch acknowledged")
    assert await world.pending(tasks) == 0
    assert calls == [3]  # one call: one transaction for the batch
    expected = [f"redis:{tasks}:{entry_id.decode()}" for entry_id in ids]
    assert world.handed == [(event_id, f"t-{n}") for n, event_id in enumerate(expected)]
    rows = stored_rows(tmp_path)
    assert [rows[event_id][:2] for event_id in expected] == [("redis", "task.created")] * 3
    assert world.outcomes == ["redis:accepted"] * 3
    assert intake.advisory_health() == {"redis": True}


async def test_the_next_batch_goes_to_the_store_while_one_is_in_hand_and_waits_its_turn(
    world: World, tmp_path: Path
) -> None:
    # batch 2 is read and stored while batch 1 is still in hand (stored, not yet handed over
    # and acknowledged); batch 2 is handed over and acknowledged only after batch 1
    tasks, _ = world.streams
    for n in range(2):
        await world.client.xadd(tasks, task_created(f"t-{n}"))
    release = asyncio.Event()
    calls: list[int] = []
    record_events = world.store.record_events

    async def first_held(events: list[NewEvent]) -> Any:
        calls.append(len(events))
        outcome = await record_events(events)
        if len(calls) == 1:
            await release.wait()
        return outcome

    world.store.record_events = first_held  # type: ignore[method-assign]
    intake = world.intake(batch_size=2)
    await intake.start()
    await wait_until(lambda: calls == [2], what="batch 1 handed to the store")
    async with world.client.pipeline(transaction=True) as both:  # read as one batch
        for n in range(2, 4):
            both.xadd(tasks, task_created(f"t-{n}"))  # type: ignore[arg-type]
        await both.execute()
    await wait_until(lambda: calls == [2, 2], what="batch 2 handed to the store meanwhile")
    await wait_until(lambda: len(stored_rows(tmp_path)) == 4, what="batch 2 stored")
    assert world.handed == [] and intake.acked == 0
    assert await world.pending(tasks) == 4
    release.set()
    await wait_until(lambda: intake.acked == 4, what="both batches acknowledged")
    assert [task for _, task in world.handed] == ["t-0", "t-1", "t-2", "t-3"]
    assert await world.pending(tasks) == 0


async def test_a_store_failure_leaves_the_batch_pending_then_it_is_stored(
    world: World, tmp_path: Path
) -> None:
    tasks, _ = world.streams
    await world.client.xadd(tasks, task_created("t-1"))
    record_events = world.store.record_events
    failures = [RuntimeError("database is locked")]

    async def flaky(events: list[NewEvent]) -> Any:
        if failures:
            raise failures.pop()
        return await record_events(events)

    world.store.record_events = flaky  # type: ignore[method-assign]
    intake = world.intake()
    await intake.start()
    await wait_until(lambda: len(world.gate.calls) == 1, what="the backoff after the failure")
    assert await world.pending(tasks) == 1  # not acknowledged
    assert intake.acked == 0
    assert intake.advisory_health() == {"redis": True}  # the database failed, not Redis
    world.gate.open()
    await wait_until(lambda: intake.acked == 1, what="the entry stored on the second try")
    assert await world.pending(tasks) == 0
    assert [task for _, task in world.handed] == ["t-1"]
    assert len(stored_rows(tmp_path)) == 1


async def test_a_database_that_stays_down_is_retried_with_growing_delays(
    world: World, tmp_path: Path
) -> None:
    """Each reconnect connects to Redis fine, re-reads the pending batch and fails to store
    it: the backoff must still grow (it was reset on every connect: one reconnect, one
    ERROR line and one re-read of the whole batch per second for the whole outage), and start
    from the base again once a batch was acknowledged."""
    tasks, _ = world.streams
    await world.client.xadd(tasks, task_created("t-1"))
    record_events = world.store.record_events
    failures = [OSError("database down")] * 3

    async def down(events: list[NewEvent]) -> Any:
        if failures:
            raise failures.pop()
        return await record_events(events)

    world.store.record_events = down  # type: ignore[method-assign]
    intake = world.intake()
    await intake.start()
    for tries in range(1, 4):
        await wait_until(lambda n=tries: len(world.gate.calls) == n, what=f"backoff {tries}")
        world.gate.open()
    first, second, third = world.gate.calls
    assert first <= 1.0 < second <= 2.0 < third <= 4.0  # base 1 s, doubling (with jitter)
    await wait_until(lambda: intake.acked == 1, what="the entry stored once the database is back")
    failures.append(OSError("database down again"))
    await world.client.xadd(tasks, task_created("t-2"))
    await wait_until(lambda: len(world.gate.calls) == 4, what="the backoff after the new outage")
    assert world.gate.calls[3] <= 1.0  # progress was made: from the base again
    world.gate.open()
    await wait_until(lambda: intake.acked == 2, what="the second entry stored")


async def test_malformed_entries_are_stored_failed_acknowledged_and_block_nothing(
    world: World, tmp_path: Path
) -> None:
    tasks, _ = world.streams
    good = task_created("t-1")
    entries: list[tuple[str, dict[str | bytes, str | bytes]]] = [
        ("missing data", {"type": "task.created", "timestamp": "2026-11-21T10:00:00Z"}),
        ("not json", {**good, "data": "{not json"}),
        ("NaN", {**good, "data": '{"task": NaN}'}),
        ("not utf-8", {**good, "source": b"\xff\xfe"}),
        ("bad task id", task_created("t 1/../x")),
        ("bad date", {**good, "timestamp": "yesterday"}),
    ]
    ids = [await world.client.xadd(tasks, fields) for _, fields in entries]
    await world.client.xadd(tasks, {**good, "type": "factory.feedback_received"})  # unhandled
    last = await world.client.xadd(tasks, task_created("t-2"))
    intake = world.intake()
    await intake.start()
    await wait_until(lambda: intake.acked == len(entries) + 2, what="every entry acknowledged")
    assert await world.pending(tasks) == 0
    # the good ones behind the malformed ones were handled
    assert world.handed == [(f"redis:{tasks}:{last.decode()}", "t-2")]
    rows = stored_rows(tmp_path)
    reasons = {}
    for (what, _), entry_id in zip(entries, ids, strict=True):
        source, _, processed_at, error = rows[f"redis:{tasks}:{entry_id.decode()}"]
        assert source == "redis"
        assert processed_at is not None  # never handed to the processor
        assert error is not None
        reasons[what] = error
    assert "missing field 'data'" in reasons["missing data"]
    assert "data" in reasons["not json"]
    assert "NaN" in reasons["NaN"] or "nan" in reasons["NaN"].lower()
    assert "'source' is not UTF-8" in reasons["not utf-8"]
    assert "data.task.id" in reasons["bad task id"]
    assert "timestamp" in reasons["bad date"]
    assert len(rows) == len(entries) + 1  # the unhandled type is not stored
    assert intake.malformed == len(entries)
    assert world.outcomes.count("redis:rejected") == len(entries)
    assert world.outcomes.count("redis:ignored") == 1
    audited = [a for a in await world.store.audit_entries() if a.action == "event.failed"]
    assert len(audited) == len(entries)


async def test_entries_of_a_dead_consumer_are_claimed_after_the_idle_time(
    world: World, tmp_path: Path
) -> None:
    tasks, deploys = world.streams
    for stream in world.streams:
        await world.client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    await world.client.xadd(tasks, task_created("t-1"))
    await world.client.xadd(tasks, task_created("t-2"))
    # a bridge read them and died before storing them
    taken = await world.client.xreadgroup(GROUP, "dead-bridge", {tasks: ">"}, count=10)
    assert len(taken[0][1]) == 2

    patient = world.intake(claim_idle_seconds=3600.0)
    await patient.start()
    await world.client.xadd(deploys, task_created("t-3"))
    await wait_until(lambda: patient.acked == 1, what="the new entry handled")
    # the claim ran at start: an hour has not passed, the dead consumer's entries stay
    assert await world.pending(tasks) == 2
    assert patient.claimed == 0
    await patient.stop()

    claimer = world.intake(
        consumer="bridge-2", claim_idle_seconds=0.0, forget_consumers_after_seconds=0.0
    )
    await claimer.start()
    await wait_until(lambda: claimer.acked == 2, what="the dead consumer's entries handled")
    assert claimer.claimed == 2
    assert await world.pending(tasks) == 0
    assert sorted(task for _, task in world.handed) == ["t-1", "t-2", "t-3"]

    async def dead_one_forgotten() -> bool:
        consumers = await world.client.xinfo_consumers(tasks, GROUP)
        return b"dead-bridge" not in {c["name"] for c in consumers}

    await wait_until(dead_one_forgotten, what="the dead consumer deleted from the group")


async def test_an_entry_stored_but_not_acknowledged_is_acknowledged_once_read_again(
    world: World,
) -> None:
    tasks, _ = world.streams
    await world.client.xgroup_create(tasks, GROUP, id="0", mkstream=True)
    entry_id = (await world.client.xadd(tasks, task_created("t-1"))).decode()
    await world.client.xreadgroup(GROUP, "bridge-1", {tasks: ">"}, count=10)
    # the bridge stored it and crashed before XACK
    fields = task_created("t-1")
    body = {"type": fields["type"], "timestamp": fields["timestamp"]}
    body["data"] = json.loads(fields["data"])
    await world.store.record_events(
        [NewEvent(f"redis:{tasks}:{entry_id}", "task.created", body, "redis")]
    )
    intake = world.intake(consumer="bridge-1")  # restarted under the same name
    await intake.start()
    await wait_until(lambda: intake.acked == 1, what="the pending entry read again")
    assert await world.pending(tasks) == 0
    assert world.handed == []  # a duplicate: not handled twice
    assert world.outcomes == ["redis:duplicate"]


async def test_an_entry_deleted_while_pending_is_acknowledged_and_nothing_is_stored(
    world: World, tmp_path: Path
) -> None:
    tasks, _ = world.streams
    await world.client.xgroup_create(tasks, GROUP, id="0", mkstream=True)
    gone = await world.client.xadd(tasks, task_created("t-1"))
    await world.client.xadd(tasks, task_created("t-2"))
    await world.client.xreadgroup(GROUP, "bridge-1", {tasks: ">"}, count=10)
    await world.client.xdel(tasks, gone)  # trimmed before the bridge stored it
    intake = world.intake(consumer="bridge-1")
    await intake.start()
    await wait_until(lambda: intake.acked == 2, what="both pending entries acknowledged")
    assert await world.pending(tasks) == 0
    assert [task for _, task in world.handed] == ["t-2"]
    assert len(stored_rows(tmp_path)) == 1


async def test_the_same_event_by_webhook_and_by_stream_is_handled_once(
    world: World, tmp_path: Path
) -> None:
    tasks, _ = world.streams
    webhook_handed: list[str] = []
    server = EventIntake(
        store=world.store,
        secret=SECRET,
        on_stored=lambda event_id, event: webhook_handed.append(event_id),
        health=_all_up,
    )
    await server.start("127.0.0.1", 0)
    intake = world.intake()
    await intake.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            # 1. no id in data: the webhook (with its channel) first, then the stream copy
            fields = task_created("t-1")
            webhook_body = {
                "type": fields["type"],
                "timestamp": fields["timestamp"],
                "channel": "tasks:pending",
                "data": json.loads(fields["data"]),
            }
            assert (await _post(http, webhook_body, "evt-a")).status_code == 202
            await world.client.xadd(tasks, fields)
            await wait_until(lambda: intake.acked == 1, what="the stream copy read")
            # 2. the event's own id in data: the stream copy first, then the webhook
            fields = task_created("t-2", eventId="evt-b")
            await world.client.xadd(tasks, fields)
            await wait_until(lambda: intake.acked == 2, what="the second stream entry read")
            webhook_body = {
                "type": fields["type"],
                "timestamp": fields["timestamp"],
                "channel": "tasks:*",
                "data": json.loads(fields["data"]),
            }
            answer = await _post(http, webhook_body, "evt-b")
            assert answer.status_code == 200
            assert answer.json()["data"]["status"] == "duplicate"
    finally:
        await server.stop()
    assert webhook_handed == ["evt-a"]
    assert world.handed == [("evt-b", "t-2")]  # t-1 came by webhook first: not again
    rows = stored_rows(tmp_path)
    assert rows["evt-b"][0] == "redis"
    unprocessed = {record.event_id for record in await world.store.unprocessed_events()}
    assert unprocessed == {"evt-a", "evt-b"}  # each event is acted on once


async def test_it_retries_while_redis_is_down_and_reads_once_it_is_back(world: World) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    right_url = redis_url_for_tests()
    tasks, _ = world.streams
    intake = world.intake(url=f"redis://127.0.0.1:{dead_port}/0", reconnect_base_seconds=0.5)
    await intake.start()
    await wait_until(lambda: len(world.gate.calls) == 1, what="the first backoff")
    problem = intake.advisory_health()["redis"]
    assert isinstance(problem, str) and "Connection" in problem
    assert world.outcomes == ["redis:unavailable"]
    world.gate.open()
    await wait_until(lambda: len(world.gate.calls) == 2, what="the second backoff")
    assert 0.375 <= world.gate.calls[0] <= 0.5 < world.gate.calls[1] <= 1.0  # doubling
    intake.url = right_url  # Redis is back
    world.gate.open()
    await wait_until(lambda: intake.connections == 1, what="reconnected")
    assert intake.advisory_health() == {"redis": True}
    await world.client.xadd(tasks, task_created("t-1"))
    await wait_until(lambda: intake.acked == 1, what="the entry after the outage")
    assert [task for _, task in world.handed] == ["t-1"]


async def test_healthz_reports_redis_down_without_failing(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'health.db'}")
    await store.create_schema()
    redis_state: dict[str, bool | str] = {"redis": "ConnectionError: refused"}
    server = EventIntake(
        store=store,
        secret=SECRET,
        on_stored=lambda event_id, event: None,
        health=_all_up,
        advisory=lambda: redis_state,
    )
    await server.start("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            down = await http.get("/healthz")
            assert down.status_code == 200  # webhooks are still taken
            assert down.json()["status"] == "degraded"
            assert down.json()["checks"]["redis"] == "down: ConnectionError: refused"
            redis_state["redis"] = True
            up = await http.get("/healthz")
            assert up.status_code == 200
            assert up.json()["status"] == "ok"
            assert up.json()["checks"]["redis"] == "up"
    finally:
        await server.stop()
        await store.close()


def test_settings_read_the_streams_and_refuse_a_non_redis_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = {
        "DISCORD_BOT_TOKEN": "x",
        "DISCORD_GUILD_ID": "1",
        "DISCORD_TASKS_CHANNEL_ID": "2",
        "FACTORY_API_KEY": "k",
        "FACTORY_WEBHOOK_SECRET": "s",
    }
    for name, value in base.items():
        monkeypatch.setenv(name, value)
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert defaults.factory_redis_url is None
    assert defaults.factory_redis_streams == (
        "factory.tasks",
        "factory.pipelines",
        "factory.deploys",
        "factory.agents",
        "factory.notifications",
    )
    assert defaults.factory_redis_claim_idle_seconds == 30.0
    monkeypatch.setenv("FACTORY_REDIS_URL", "rediss://:pa55-w0rd-x@redis.example.com:6380/2")
    monkeypatch.setenv("FACTORY_REDIS_STREAMS", " factory.tasks, factory.deploys ,factory.tasks")
    chosen = Settings(_env_file=None)  # type: ignore[call-arg]
    assert chosen.factory_redis_streams == ("factory.tasks", "factory.deploys")
    assert "pa55-w0rd-x" not in repr(chosen)
    assert "pa55-w0rd-x" in chosen.secret_values()  # redacted from every log line
    monkeypatch.setenv("FACTORY_REDIS_URL", "http://redis.example.com")
    with pytest.raises(ValidationError, match="redis://"):
        Settings(_env_file=None)  # type: ignore[call-arg]


async def _all_up() -> dict[str, bool]:
    return {"discord": True, "database": True}


async def _post(http: httpx.AsyncClient, body: dict[str, Any], event_id: str) -> httpx.Response:
    raw = json.dumps(body).encode()
    headers = signed_headers(SECRET, raw, event_id=event_id, timestamp=int(time.time()))
    return await http.post("/events", content=raw, headers=headers)


def test_every_redis_setting_is_in_the_readme_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    names = [name.upper() for name in Settings.model_fields if name.startswith("factory_redis")]
    assert len(names) == 6
    for name in names:
        assert f"| `{name}` |" in readme, name


async def test_a_url_redis_py_cannot_read_shows_no_piece_of_it_in_healthz_or_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a "/" in the password, not percent-encoded: urllib takes "S3cret" for the port and
    # says so in its ValueError (settings refuse such a URL; the intake must not leak it either)
    url = "redis://:S3cret/Redis+x@127.0.0.1:6379/0"
    store = Store(f"sqlite:///{tmp_path / 'bridge.db'}")
    await store.create_schema()
    gate = Gate()
    intake = RedisStreamIntake(
        url=url,
        store=store,
        on_stored=lambda event_id, event: None,
        streams=unique_streams("factory.tasks"),
        sleep=gate,
    )
    server = EventIntake(
        store=store,
        secret=SECRET,
        on_stored=lambda event_id, event: None,
        health=_all_up,
        advisory=intake.advisory_health,
    )
    caplog.set_level("DEBUG", logger="bot.factory.redis_intake")
    await intake.start()
    await server.start("127.0.0.1", 0)
    try:
        await wait_until(lambda: len(gate.calls) == 1, what="the first backoff")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            health = (await http.get("/healthz")).json()
    finally:
        await intake.stop()
        await server.stop()
        await store.close()
    shown = health["checks"]["redis"]
    assert shown.startswith("down: ValueError: ")
    assert "[redacted]" in shown
    logged = caplog.text  # messages and tracebacks, as logged (no secret configured to mask)
    assert "Redis streams: reading failed unexpectedly: ValueError: " in logged
    for piece in (url, ":S3cret/Redis+x", "S3cret", "Redis+x"):
        assert piece not in shown
        assert piece not in logged
