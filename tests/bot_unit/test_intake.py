"""POST /events and GET /healthz: verify, validate, store before 202, clear errors."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.factory.intake import MAX_BODY_BYTES, EventIntake
from bot.factory.signing import signed_headers
from bot.store import Store

SECRET = "intake-test-secret"


class Health:
    def __init__(self) -> None:
        self.discord = True

    async def __call__(self) -> dict[str, bool]:
        return {"discord": self.discord, "database": True}


@pytest.fixture
async def intake(tmp_path: Path) -> AsyncIterator[tuple[EventIntake, httpx.AsyncClient, Health]]:
    store = Store(f"sqlite:///{tmp_path / 'intake.db'}")
    await store.create_schema()
    health = Health()
    woken: list[int] = []
    server = EventIntake(
        store=store,
        secret=SECRET,
        on_stored=lambda event_id, event: woken.append(event_id),
        health=health,
    )
    await server.start("127.0.0.1", 0)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        yield server, client, health
    await server.stop()
    await store.close()


def task_event(**task: Any) -> dict[str, Any]:
    body = {"id": "t-1", "title": "Review freshdesk", "createdAt": "2026-11-21T10:00:00Z"}
    body.update(task)
    return {
        "type": "task.created",
        "timestamp": "2026-11-21T10:00:00Z",
        "channel": "tasks:pending",
        "data": {"task": body},
    }


async def post(
    client: httpx.AsyncClient,
    payload: object,
    *,
    event_id: str = "evt-1",
    secret: str = SECRET,
    timestamp: int | None = None,
    raw: bytes | None = None,
) -> httpx.Response:
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = signed_headers(
        secret,
        body,
        event_id=event_id,
        timestamp=int(time.time()) if timestamp is None else timestamp,
    )
    return await client.post("/events", content=body, headers=headers)


async def test_valid_event_is_stored_before_202(intake: Any) -> None:
    server, client, _ = intake
    response = await post(client, task_event())
    assert response.status_code == 202
    assert response.json() == {"ok": True, "data": {"eventId": "evt-1", "status": "accepted"}}
    stored = await server.store.unprocessed_events()
    assert [e.event_id for e in stored] == ["evt-1"]
    assert stored[0].body["data"]["task"]["title"] == "Review freshdesk"


async def test_duplicate_event_id_is_200_and_stores_nothing_new(intake: Any) -> None:
    server, client, _ = intake
    assert (await post(client, task_event())).status_code == 202
    again = await post(client, task_event(title="changed"))
    assert again.status_code == 200
    assert again.json()["data"]["status"] == "duplicate"
    assert await server.store.count_events() == 1


async def test_same_content_under_a_new_id_is_kept_but_queued_once(intake: Any) -> None:
    """A webhook and a WebSocket copy of one event: both stored, only the first to act on."""
    server, client, _ = intake
    assert (await post(client, task_event(), event_id="evt-a")).status_code == 202
    assert (await post(client, task_event(), event_id="evt-b")).status_code == 202
    assert (await post(client, task_event(title="other"), event_id="evt-c")).status_code == 202
    assert await server.store.count_events() == 3
    queued = await server.store.unprocessed_events()
    assert [e.event_id for e in queued] == ["evt-a", "evt-c"]


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"secret": "wrong"}, "signature mismatch"),
        ({"offset": -301}, "timestamp outside tolerance"),
        ({"offset": 400}, "timestamp outside tolerance"),
    ],
)
async def test_bad_signature_or_stale_timestamp_is_401_and_nothing_stored(
    intake: Any, kwargs: dict[str, Any], reason: str
) -> None:
    server, client, _ = intake
    if "offset" in kwargs:  # computed now, not at collection: the suite can run for minutes
        kwargs = {"timestamp": int(time.time()) + kwargs["offset"]}
    response = await post(client, task_event(), **kwargs)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "UNAUTHORIZED"
    assert reason in error["message"]
    assert SECRET not in response.text
    assert await server.store.count_events() == 0


async def test_missing_signature_is_401(intake: Any) -> None:
    server, client, _ = intake
    response = await client.post("/events", content=json.dumps(task_event()).encode())
    assert response.status_code == 401
    assert await server.store.count_events() == 0


async def test_body_over_one_mebibyte_is_413(intake: Any) -> None:
    server, client, _ = intake
    big = task_event(description="x" * MAX_BODY_BYTES)
    response = await post(client, big)
    assert response.status_code == 413
    assert await server.store.count_events() == 0


async def test_malformed_json_is_400_bad_request(intake: Any) -> None:
    server, client, _ = intake
    response = await post(client, None, raw=b'{"type": "task.created", ')
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BAD_REQUEST"
    assert await server.store.count_events() == 0


async def test_invalid_payload_is_400_naming_the_field(intake: Any) -> None:
    server, client, _ = intake
    event = task_event()
    del event["data"]["task"]["createdAt"]
    response = await post(client, event)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["field"] == "data.task.createdAt"
    assert await server.store.count_events() == 0


async def test_unknown_event_type_is_accepted_and_ignored(intake: Any) -> None:
    server, client, _ = intake
    event = {"type": "agent.heartbeat", "timestamp": "2026-11-21T10:00:00Z", "data": {}}
    response = await post(client, event)
    assert response.status_code == 202
    assert response.json()["data"]["status"] == "ignored"
    assert await server.store.count_events() == 0


async def test_healthz_says_which_part_is_down(intake: Any) -> None:
    _, client, health = intake
    ok = await client.get("/healthz")
    assert ok.status_code == 200
    assert ok.json()["checks"] == {"discord": "up", "database": "up"}
    health.discord = False
    down = await client.get("/healthz")
    assert down.status_code == 503
    assert down.json() == {"status": "degraded", "checks": {"discord": "down", "database": "up"}}


async def test_only_new_events_are_handed_to_the_processor(tmp_path: Path) -> None:
    """A duplicate id or content accepted before is answered but not acted on again."""
    store = Store(f"sqlite:///{tmp_path / 'handoff.db'}")
    await store.create_schema()
    handed: list[tuple[str, str]] = []
    server = EventIntake(
        store=store,
        secret=SECRET,
        on_stored=lambda event_id, event: handed.append((event_id, event.type)),
        health=Health(),
    )
    await server.start("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            assert (await post(client, task_event(), event_id="evt-a")).status_code == 202
            assert (await post(client, task_event(), event_id="evt-a")).status_code == 200
            assert (await post(client, task_event(), event_id="evt-b")).status_code == 202
            other = task_event(title="other")
            assert (await post(client, other, event_id="evt-c")).status_code == 202
    finally:
        await server.stop()
        await store.close()
    assert handed == [("evt-a", "task.created"), ("evt-c", "task.created")]
