"""The bridge's intake against a real network and hostile input, as a separate process.

Bodies arrive the way networks deliver them (TCP segments with pauses, chunked, a lying
``Content-Length``); input the bridge cannot take is a 400 with the reason, never a 5xx; task ids
that would change a factory URL are refused; events that can never be handled are parked at once
and do not hold up the events behind them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import select

from bot.factory.signing import signed_headers
from bot.store import Store
from bot.store import tables as t
from sandbox.discord_emulator import RecordedMessage
from sandbox.segmented import PAUSE_SECONDS, SEGMENT_BYTES, RawResponse, send_segmented
from sandbox.world import TASKS_CHANNEL_ID, WEBHOOK_SECRET, World
from tests.support.harness import BridgeProcess, wait_until


def task_message(world: World, task_id: str) -> RecordedMessage | None:
    """The task message (embed footer ``task <id>``) in #factory-tasks, if posted."""
    for message in world.discord.messages(TASKS_CHANNEL_ID):
        footer = (message.embeds[0].get("footer") or {}).get("text", "") if message.embeds else ""
        if not message.deleted and footer.startswith(f"task {task_id}"):
            return message
    return None


def envelope(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """A ``WsEvent`` as the factory emulator builds it."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"type": event_type, "timestamp": now, "channel": "tasks:*", "data": data}


async def send(
    world: World,
    body: bytes,
    *,
    event_id: str | None = None,
    **options: Any,
) -> RawResponse:
    """POST a signed webhook in 1,448-byte segments 0.2 ms apart (options: see send_segmented)."""
    headers = signed_headers(
        WEBHOOK_SECRET,
        body,
        event_id=event_id or f"evt_{uuid.uuid4().hex}",
        timestamp=int(time.time()),
    )
    headers["Content-Type"] = "application/json"
    options.setdefault("segment_bytes", SEGMENT_BYTES)
    options.setdefault("pause_seconds", PAUSE_SECONDS)
    return await send_segmented("127.0.0.1", world.bridge_port, "/events", body, headers, **options)


async def test_signed_events_arriving_in_segments_are_accepted_and_shown(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    """Ten of the factory's own ~1.3 KB task.created events, and a 200 KB one, through a relay."""
    world.discord.channel_rate_limit = 100  # twelve messages at once: pacing is not the point
    await make_bridge(discord_channel_rate_limit=100).start()
    ids = []
    for n in range(10):
        task = await world.factory.create_task(emit=False, title=f"Review release #{n}")
        body = json.dumps(envelope("task.created", {"task": task})).encode()
        assert 1_000 < len(body) < 3_000
        response = await send(world, body)
        assert response.status == 202, response.body
        ids.append(task["id"])
    big = await world.factory.create_task(emit=False, description="d" * 200_000)
    big_body = json.dumps(envelope("task.created", {"task": big})).encode()
    assert (await send(world, big_body)).status == 202
    chunked = await world.factory.create_task(emit=False, title="sent chunked")
    chunked_body = json.dumps(envelope("task.created", {"task": chunked})).encode()
    assert (await send(world, chunked_body, chunked=True, chunk_bytes=500)).status == 202
    for task_id in [*ids, big["id"], chunked["id"]]:
        await world.discord.wait_for(lambda t=task_id: task_message(world, t) is not None, 10)


async def test_a_body_over_one_mebibyte_is_413_whatever_the_framing(
    world: World, bridge: BridgeProcess
) -> None:
    task = await world.factory.create_task(emit=False, description="x" * (1024 * 1024))
    body = json.dumps(envelope("task.created", {"task": task})).encode()
    chunked = await send(world, body, chunked=True, segment_bytes=65536, pause_seconds=0)
    assert chunked.status == 413
    assert chunked.json()["error"]["code"] == "BAD_REQUEST"
    plain = await send(world, body, segment_bytes=65536, pause_seconds=0)
    assert plain.status == 413
    assert task_message(world, task["id"]) is None


async def test_a_body_shorter_than_its_content_length_is_400(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(bridge_http_body_timeout_seconds=0.5)
    await bridge.start()
    task = await world.factory.create_task(emit=False)
    body = json.dumps(envelope("task.created", {"task": task})).encode()
    response = await send(world, body, content_length=len(body) + 200)  # signed over what came
    assert response.status == 400
    assert "Content-Length" in response.json()["error"]["message"]
    accepted = await send(world, body)  # the same event, whole: accepted
    assert accepted.status == 202
    await world.discord.wait_for(lambda: task_message(world, task["id"]) is not None, 10)


def raw_task_event(task_id: str, **raw_fields: str) -> bytes:
    """A task.created body with task fields given as raw JSON text."""
    fields = {"id": json.dumps(task_id), "title": '"Review"', "createdAt": '"2026-11-21T10:00:00Z"'}
    fields.update(raw_fields)
    task = ", ".join(f'"{name}": {value}' for name, value in fields.items())
    return (
        '{"type": "task.created", "timestamp": "2026-11-21T10:00:00Z", '
        f'"channel": "tasks:pending", "data": {{"task": {{{task}}}}}}}'
    ).encode()


async def test_input_the_bridge_cannot_take_is_400_with_the_reason_never_500(
    world: World, bridge: BridgeProcess
) -> None:
    cases = {
        "nested thousands deep": (
            b'{"type": "task.created", "data": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            "nested deeper than 64 levels",
        ),
        "5,000-digit integer": (
            raw_task_event("t-int", escalationLevel="9" * 5000),
            "integer of 5000 digits",
        ),
        "lone surrogate": (
            raw_task_event("t-sur", decisionData='{"\\ud800": "x"}'),
            "lone surrogate",
        ),
        "Infinity": (
            raw_task_event("t-inf", context='{"metrics": {"risk": Infinity}}'),
            "Infinity is not a JSON number",
        ),
        "NaN": (raw_task_event("t-nan", context='{"metrics": {"risk": NaN}}'), "NaN"),
    }
    for name, (body, reason) in cases.items():
        for segment_bytes in (len(body) + 4096, SEGMENT_BYTES):  # one piece, then segments
            response = await send(world, body, segment_bytes=segment_bytes)
            assert response.status == 400, (name, response.status, response.body)
            assert reason in response.json()["error"]["message"], name
    store = Store(world.database_url)
    try:
        assert await store.count_events() == 0
    finally:
        await store.close()


async def test_task_ids_that_would_change_a_factory_url_are_refused_naming_the_field(
    world: World, bridge: BridgeProcess
) -> None:
    asked_before = len(world.factory.requests)
    for task_id in ("..", ".", "a/b", "t 1"):
        created = await send(world, raw_task_event(task_id))
        assert created.status == 400
        assert created.json()["error"]["field"] == "data.task.id"
        pending = envelope("approval.pending", {"approval": {"id": "apr", "taskId": task_id}})
        refused = await send(world, json.dumps(pending).encode())
        assert refused.status == 400
        assert refused.json()["error"]["field"] == "data.approval.taskId"
    # nothing was stored, so the factory was never asked for a URL an id had rewritten
    # (``tasks/..`` resolving to ``GET /v1/``, ``tasks/../reassign`` to ``POST /v1/reassign``)
    assert world.factory.requests[asked_before:] == []


async def events_table(world: World) -> dict[str, tuple[float | None, str | None]]:
    """event id → (processed_at, error) read from the bridge's database."""
    store = Store(world.database_url)
    try:

        def work(conn: Any) -> dict[str, tuple[float | None, str | None]]:
            rows = conn.execute(
                select(t.events.c.event_id, t.events.c.processed_at, t.events.c.error)
            )
            return {event_id: (processed, error) for event_id, processed, error in rows}

        return await store.db.read(work)
    finally:
        await store.close()


async def healthz(world: World) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=world.bridge_url) as client:
        body: dict[str, Any] = (await client.get("/healthz")).json()
    return body


async def test_poison_events_are_parked_at_once_and_do_not_hold_up_a_critical_task(
    world: World, bridge: BridgeProcess
) -> None:
    factory = world.factory
    poison: dict[str, str] = {}  # event id → what its failure must say
    for n in range(3):  # the factory answers 404 for these tasks
        event_id = f"evt_poison_404_{n}"
        data = {"approval": {"id": f"apr-{n}", "taskId": f"no-such-task-{n}"}}
        results = await factory.emit("approval.pending", data, event_id=event_id)
        assert results[-1].status == 202
        poison[event_id] = "404"
    far_future: list[str] = []
    for n in range(2):  # a creation date whose deadline overflows: never due (README), not poison
        event_id = f"evt_far_future_{n}"
        task = {
            "id": f"far-future-{n}",
            "title": "Created in year 9999",
            "createdAt": "9999-12-31T23:00:00Z",
            "slaDeadline": None,
        }
        results = await factory.emit("task.created", {"task": task}, event_id=event_id)
        assert results[-1].status == 202
        far_future.append(event_id)
    started = time.monotonic()
    critical = await factory.create_task(priority="critical", title="Production is down")
    await world.discord.wait_for(lambda: task_message(world, critical["id"]) is not None, 10)
    assert time.monotonic() - started < 10  # poison events once cost 43 s

    async def parked() -> bool:
        table = await events_table(world)
        return all(table.get(e, (None, None))[0] is not None for e in poison)

    await wait_until(parked, timeout=10, what="the poison events parked")
    table = await events_table(world)
    for event_id, reason in poison.items():
        error = table[event_id][1]
        assert error is not None and reason in error, (event_id, error)
    for event_id in far_future:
        assert table[event_id][0] is not None and table[event_id][1] is None, table[event_id]
    assert (await healthz(world))["events_failed"] == 3
    store = Store(world.database_url)
    try:
        audited = [e for e in await store.audit_entries() if e.action == "event.failed"]
    finally:
        await store.close()
    assert sorted((e.request or {})["eventId"] for e in audited) == sorted(poison)
    # each was tried once: the factory was asked for each unknown task once, not five times
    for n in range(3):
        assert len(factory.calls("GET", rf"/v1/tasks/no-such-task-{n}")) == 1


async def test_a_transiently_failing_event_does_not_hold_up_the_events_behind_it(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(factory_retry_base_seconds=0)
    await bridge.start()
    factory = world.factory
    slow = await factory.create_task(emit=False, title="Read back while the factory hiccups")
    # every attempt of the client's retry policy (1 + 3 retries) fails, twice over
    factory.fail("GET", rf"/v1/tasks/{slow['id']}", status=503, times=8)
    await factory.emit("approval.pending", {"approval": {"id": "apr-s", "taskId": slow["id"]}})
    critical = await factory.create_task(priority="critical", title="Behind the failing one")
    await world.discord.wait_for(lambda: task_message(world, critical["id"]) is not None, 10)
    assert task_message(world, slow["id"]) is None  # still being retried, not in the way
    assert (await healthz(world))["events_retrying"] == 1
    await world.discord.wait_for(lambda: task_message(world, slow["id"]) is not None, 15)
    assert (await healthz(world))["events_failed"] == 0


async def test_an_odd_task_id_in_the_factory_list_is_skipped_and_the_rest_reconciled(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    """Reconciliation at start: ``..`` and ``a/b`` are left out, the good task is posted."""
    for odd in ("..", "a/b"):
        await world.factory.create_task(emit=False, id=odd, title=f"odd id {odd}")
    good = await world.factory.create_task(emit=False, title="a task with a good id")
    bridge = make_bridge()
    await bridge.start()
    await world.discord.wait_for(lambda: task_message(world, good["id"]) is not None, 10)
    assert task_message(world, "..") is None
    assert task_message(world, "a/b") is None
    assert (await healthz(world))["status"] == "ok"
    # no factory URL was rewritten by an id (``tasks/..`` is ``GET /v1/``)
    assert world.factory.calls("*", r"/v1/?") == []
    assert world.factory.calls("*", r"/v1/tasks/(\.\.|a/b).*") == []
