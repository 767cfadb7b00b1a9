"""The factory API emulator, driven over real sockets by httpx and aiohttp clients."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web

from bot.factory.signing import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    verify,
)
from sandbox.factory_emulator import FactoryEmulator

KEY = "factory-test-key"
SECRET = "webhook-secret-for-tests"
START = datetime(2025, 7, 14, 9, 0, tzinfo=UTC)
WAIT = 5.0  # upper bound, in seconds, on any wait for a frame or a delivery


class Clock:
    """A settable clock for the emulator."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Receiver:
    """A tiny webhook receiver on 127.0.0.1 that checks signatures like the bridge will."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/events", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/events"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((dict(request.headers), body))
        self.arrived.set()
        try:
            verify(
                SECRET,
                timestamp=request.headers.get(TIMESTAMP_HEADER),
                signature=request.headers.get(SIGNATURE_HEADER),
                body=body,
                now=self.clock().timestamp(),
            )
        except SignatureError as err:
            return web.json_response({"error": err.reason}, status=401)
        return web.Response(status=204)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def receiver(clock: Clock) -> AsyncIterator[Receiver]:
    rec = Receiver(clock)
    await rec.start()
    yield rec
    await rec.stop()


@pytest.fixture
async def factory(clock: Clock) -> AsyncIterator[FactoryEmulator]:
    emulator = FactoryEmulator(api_key=KEY, clock=clock, ws_ping_interval_seconds=None)
    await emulator.start()
    yield emulator
    await emulator.stop()


@pytest.fixture
async def api(factory: FactoryEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=factory.base_url, headers={"X-API-Key": KEY}) as client:
        yield client


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


async def _receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message: dict[str, Any] = await ws.receive_json(timeout=WAIT)
    return message


# ---------------------------------------------------------------------------- REST


async def test_auth_unknown_route_and_malformed_json(
    factory: FactoryEmulator, api: httpx.AsyncClient
) -> None:
    async with httpx.AsyncClient(base_url=factory.base_url) as anonymous:
        missing = await anonymous.get("/tasks")
        wrong = await anonymous.get("/tasks", headers={"X-API-Key": "nope"})
    for response in (missing, wrong):
        assert response.status_code == 401
        body = response.json()
        assert body["ok"] is False
        assert body["error"]["code"] == "UNAUTHORIZED"
        assert body["error"]["requestId"] == response.headers["X-Request-Id"]
    unknown = await api.get("/nowhere")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "NOT_FOUND")
    task = await factory.create_task(emit=False)
    bad = await api.post(f"/tasks/{task['id']}/complete", content=b"{not json")
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "BAD_REQUEST")
    traced = await api.get("/tasks", headers={"X-Request-Id": "req-42"})
    assert traced.json()["meta"]["requestId"] == "req-42"
    assert traced.headers["X-API-Version"] == "1"
    assert [r.status for r in factory.calls("GET", r"/tasks")] == [401, 401, 200]


async def test_list_filters_and_pagination(
    factory: FactoryEmulator, api: httpx.AsyncClient, clock: Clock
) -> None:
    ids = []
    for priority in ("high", "low", "high", "high", "low"):
        ids.append((await factory.create_task(emit=False, priority=priority))["id"])
        clock.advance(minutes=1)
    high = [ids[0], ids[2], ids[3]]

    first = (await api.get("/tasks", params={"priority": "high", "limit": 2})).json()
    assert [t["id"] for t in first["data"]] == high[:2]
    assert first["meta"]["pagination"] == {
        "page": 1,
        "limit": 2,
        "total": 3,
        "totalPages": 2,
        "hasNext": True,
        "hasPrev": False,
    }
    second = (await api.get("/tasks", params={"priority": "high", "limit": 2, "page": 2})).json()
    assert [t["id"] for t in second["data"]] == high[2:]
    assert (second["meta"]["pagination"]["hasNext"], second["meta"]["pagination"]["hasPrev"]) == (
        False,
        True,
    )
    everything = (await api.get("/tasks")).json()
    assert [t["id"] for t in everything["data"]] == ids
    assert everything["meta"]["pagination"]["limit"] == 20
    newest_first = (await api.get("/tasks", params={"sort": "-createdAt"})).json()
    assert [t["id"] for t in newest_first["data"]] == ids[::-1]

    too_many = await api.get("/tasks", params={"limit": 101})
    assert too_many.status_code == 400
    assert too_many.json()["error"]["code"] == "VALIDATION_ERROR"
    assert too_many.json()["error"]["field"] == "limit"


async def test_task_defaults_follow_the_contract(factory: FactoryEmulator) -> None:
    pipeline = factory.create_pipeline(name="Shopify MCP", currentStage="staging")
    task = await factory.create_task(emit=False, priority="critical", pipelineId=pipeline["id"])
    assert pipeline["slug"] == "shopify-mcp"
    assert task["stageName"] == "staging"
    assert task["status"] == "pending" and task["type"] == "approval"
    assert task["createdAt"] == "2025-07-14T09:00:00.000Z"
    assert task["slaDeadline"] == "2025-07-14T10:00:00.000Z"  # critical: 3600 s
    assert set(task["context"]["testResults"]) >= {"total", "passed", "failed", "skipped"}
    with pytest.raises(TypeError):
        await factory.create_task(emit=False, sla_deadline=None)


async def test_get_missing_task_is_404(api: httpx.AsyncClient) -> None:
    response = await api.get("/tasks/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_complete_then_conflict(factory: FactoryEmulator, api: httpx.AsyncClient) -> None:
    task = await factory.create_task(emit=False)
    invalid = await api.post(f"/tasks/{task['id']}/complete", json={"decision": "maybe"})
    assert invalid.status_code == 400
    assert invalid.json()["error"]["code"] == "VALIDATION_ERROR"
    assert invalid.json()["error"]["field"] == "decision"

    done = await api.post(
        f"/tasks/{task['id']}/complete",
        json={"decision": "approved", "notes": "LGTM", "decisionData": {"discordUsername": "jake"}},
    )
    assert done.status_code == 200
    data = done.json()["data"]
    assert (data["status"], data["decision"], data["decidedBy"]) == (
        "completed",
        "approved",
        "jake",
    )
    assert data["decisionNotes"] == "LGTM"

    again = await api.post(f"/tasks/{task['id']}/complete", json={"decision": "rejected"})
    assert again.status_code == 409
    error = again.json()["error"]
    assert error["code"] == "CONFLICT"
    assert error["details"] == {
        "currentState": "completed",
        "decision": "approved",
        "decidedBy": "jake",
        "decidedAt": data["decidedAt"],
    }
    assert factory.tasks[task["id"]]["decision"] == "approved"


async def test_claim_and_reassign(factory: FactoryEmulator, api: httpx.AsyncClient) -> None:
    task = await factory.create_task(emit=False)
    claimed = (await api.post(f"/tasks/{task['id']}/claim", json={"userId": "u-1"})).json()
    assert (claimed["data"]["status"], claimed["data"]["claimedBy"]) == ("claimed", "u-1")
    missing = await api.post(f"/tasks/{task['id']}/reassign", json={"reason": "away"})
    assert missing.status_code == 400 and missing.json()["error"]["field"] == "assigneeId"
    moved = await api.post(f"/tasks/{task['id']}/reassign", json={"assigneeId": "u-2"})
    assert moved.json()["data"]["assigneeId"] == "u-2"
    await factory.decide_task(task["id"], "rejected", emit=False)
    late = await api.post(f"/tasks/{task['id']}/claim")
    assert late.status_code == 409


async def test_idempotency_key_replays_without_deciding_twice(
    factory: FactoryEmulator, api: httpx.AsyncClient
) -> None:
    task = await factory.create_task(emit=False)
    url = f"/tasks/{task['id']}/complete"
    headers = {"Idempotency-Key": "idem-1"}
    first = await api.post(url, json={"decision": "approved"}, headers=headers)
    second = await api.post(url, json={"decision": "approved"}, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert second.headers["Idempotent-Replayed"] == "true"
    assert len(factory.calls("POST", r"/tasks/[^/]+/complete")) == 2
    assert [a["action"] for a in factory.audit] == ["task.approved"]

    other_key = await api.post(
        url, json={"decision": "approved"}, headers={"Idempotency-Key": "idem-2"}
    )
    assert other_key.status_code == 409


async def test_injected_failures_are_not_stored_under_the_key(
    factory: FactoryEmulator, api: httpx.AsyncClient
) -> None:
    task = await factory.create_task(emit=False)
    factory.fail("POST", r"/tasks/[^/]+/complete", status=503, times=2, retry_after=0.5)
    headers = {"Idempotency-Key": "idem-retry"}
    url = f"/tasks/{task['id']}/complete"
    for _ in range(2):
        failed = await api.post(url, json={"decision": "approved"}, headers=headers)
        assert failed.status_code == 503
        assert failed.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
        assert failed.headers["Retry-After"] == "0.5"
    succeeded = await api.post(url, json={"decision": "approved"}, headers=headers)
    assert succeeded.status_code == 200
    assert [r.status for r in factory.calls("POST", r"/v1/tasks/[^/]+/complete")] == [503, 503, 200]
    assert factory.tasks[task["id"]]["decision"] == "approved"


@pytest.mark.parametrize(("status", "code"), [(429, "RATE_LIMITED"), (500, "INTERNAL_ERROR")])
async def test_fail_codes_follow_status(
    factory: FactoryEmulator, api: httpx.AsyncClient, status: int, code: str
) -> None:
    factory.fail("GET", r"/tasks", status=status)
    response = await api.get("/tasks")
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert (await api.get("/tasks")).status_code == 200


async def test_delay_holds_the_answer(factory: FactoryEmulator, api: httpx.AsyncClient) -> None:
    task = await factory.create_task(emit=False)
    factory.delay("GET", r"/tasks/[^/]+", 0.2, times=1)
    started = time.perf_counter()
    response = await api.get(f"/tasks/{task['id']}")
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert elapsed >= 0.2


async def test_bulk_reports_per_item_failures(
    factory: FactoryEmulator, api: httpx.AsyncClient
) -> None:
    decided = await factory.create_task(emit=False)
    open_task = await factory.create_task(emit=False)
    await factory.decide_task(decided["id"], "rejected", decided_by="user-dashboard", emit=False)
    response = await api.post(
        "/tasks/bulk",
        json={"action": "approve", "taskIds": [open_task["id"], decided["id"], "missing"]},
    )
    assert response.json()["data"] == {
        "succeeded": [open_task["id"]],
        "failed": [
            {"taskId": decided["id"], "error": "CONFLICT: already rejected by user-dashboard"},
            {"taskId": "missing", "error": "NOT_FOUND"},
        ],
    }
    assert factory.tasks[open_task["id"]]["decision"] == "approved"
    invalid = await api.post("/tasks/bulk", json={"action": "nuke", "taskIds": ["x"]})
    assert invalid.status_code == 400 and invalid.json()["error"]["field"] == "action"


async def test_dashboard_summary_counts(
    factory: FactoryEmulator, api: httpx.AsyncClient, clock: Clock
) -> None:
    factory.create_pipeline()
    factory.create_pipeline()
    factory.create_pipeline(status="paused")
    factory.set_agents(active=2, idle=1, offline=1)
    breached = await factory.create_task(emit=False, priority="critical")  # 1 h SLA
    warning = await factory.create_task(emit=False, priority="medium")  # 24 h SLA
    clock.advance(hours=19)
    on_track = await factory.create_task(emit=False, priority="low")
    done = await factory.create_task(emit=False, priority="high")
    await factory.decide_task(done["id"], emit=False)
    # now: breached is 18 h late, warning has 5 h of 24 left (< 25 %), on_track is brand new.

    summary = (await api.get("/dashboard/summary")).json()["data"]
    assert summary["pipelines"] == {"active": 2, "paused": 1, "completed": 0, "failed": 0}
    assert summary["agents"] == {"total": 4, "active": 2, "idle": 1, "error": 0, "offline": 1}
    assert summary["slaStatus"] == {"onTrack": 1, "warning": 1, "breached": 1}
    tasks = summary["tasks"]
    assert (tasks["pending"], tasks["inProgress"], tasks["slaBreaches"]) == (3, 0, 1)
    assert tasks["byPriority"] == {"critical": 1, "high": 0, "medium": 1, "low": 1}
    assert tasks["byType"]["approval"] == 3
    assert tasks["avgWaitTimeMinutes"] == round((19 * 60 * 2 + 0) / 3, 1)
    assert summary["recentActivity"][0]["action"] == "task.approved"
    assert (await api.get("/tasks/stats")).json()["data"] == tasks
    assert {breached["id"], warning["id"], on_track["id"]} <= set(factory.tasks)


async def test_pipelines_list(factory: FactoryEmulator, api: httpx.AsyncClient) -> None:
    factory.create_pipeline(name="A", currentStage="review")
    staging = factory.create_pipeline(name="B", currentStage="staging")
    body = (await api.get("/pipelines", params={"stage": "staging"})).json()
    assert [p["id"] for p in body["data"]] == [staging["id"]]
    assert body["meta"]["pagination"]["total"] == 1


# ---------------------------------------------------------------------------- webhooks


async def test_signed_webhook_verifies_and_tampering_fails(
    clock: Clock, receiver: Receiver
) -> None:
    factory = FactoryEmulator(
        api_key=KEY, webhook_url=receiver.url, webhook_secret=SECRET, clock=clock
    )
    await factory.start()
    try:
        task = await factory.create_task()
        results = await factory.emit("task.sla_warning", factory.sla_payload(task["id"]))
        assert [(r.target, r.status, r.ok) for r in results] == [("webhook", 204, True)]

        headers, body = receiver.received[0]
        event = json.loads(body)
        assert (event["type"], event["channel"]) == ("task.created", "tasks:pending")
        assert event["data"]["task"]["id"] == task["id"]
        assert event["timestamp"] == "2025-07-14T09:00:00.000Z"
        assert headers[TIMESTAMP_HEADER] == str(int(START.timestamp()))
        ids = {h[EVENT_ID_HEADER] for h, _ in receiver.received}
        assert len(ids) == 2
        verify(
            SECRET,
            timestamp=headers[TIMESTAMP_HEADER],
            signature=headers[SIGNATURE_HEADER],
            body=body,
            now=clock().timestamp(),
        )
        with pytest.raises(SignatureError):
            verify(
                SECRET,
                timestamp=headers[TIMESTAMP_HEADER],
                signature=headers[SIGNATURE_HEADER],
                body=body.replace(b"pending", b"claimed"),
                now=clock().timestamp(),
            )
        tampered = await factory.deliver_raw(body.replace(b"pending", b"claimed"), headers)
        assert tampered == 401
    finally:
        await factory.stop()


async def test_api_decisions_are_delivered_in_the_background(
    clock: Clock, receiver: Receiver
) -> None:
    factory = FactoryEmulator(
        api_key=KEY, webhook_url=receiver.url, webhook_secret=SECRET, clock=clock
    )
    await factory.start()
    try:
        task = await factory.create_task(emit=False)
        async with httpx.AsyncClient(base_url=factory.base_url, headers={"X-API-Key": KEY}) as api:
            await api.post(f"/tasks/{task['id']}/complete", json={"decision": "rejected"})
        await asyncio.wait_for(factory.drain_events(), WAIT)
        event = json.loads(receiver.received[-1][1])
        assert event["type"] == "task.completed"
        assert (event["data"]["decision"], event["data"]["decidedBy"]) == ("rejected", "api-key")
    finally:
        await factory.stop()


async def test_unreachable_webhook_is_recorded_not_raised(clock: Clock) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    factory = FactoryEmulator(
        webhook_url=f"http://127.0.0.1:{closed_port}/events", webhook_secret=SECRET, clock=clock
    )
    await factory.start()
    try:
        results = await factory.emit("task.created", {"task": {}})
        assert len(results) == 1 and not results[0].ok and results[0].error
        assert factory.deliveries == results
    finally:
        await factory.stop()


# ---------------------------------------------------------------------------- WebSocket


async def test_websocket_subscribe_ping_and_events(
    factory: FactoryEmulator, session: aiohttp.ClientSession
) -> None:
    async with session.ws_connect(factory.ws_url, headers={"X-API-Key": KEY}) as ws:
        await ws.send_json({"type": "subscribe", "channels": ["tasks:*"]})
        assert await _receive(ws) == {"type": "subscribed", "channels": ["tasks:*"]}
        await ws.send_json({"type": "ping"})
        assert await _receive(ws) == {"type": "pong"}

        async with session.ws_connect(f"{factory.ws_url}?token={KEY}") as other:
            await other.send_json({"type": "subscribe", "channels": ["pipeline:*"]})
            assert (await _receive(other))["type"] == "subscribed"
            assert factory.ws_connections == 2

            task = await factory.create_task()
            event = await _receive(ws)
            assert (event["type"], event["channel"]) == ("task.created", "tasks:pending")
            assert event["data"]["task"]["id"] == task["id"]
            assert event["timestamp"] == "2025-07-14T09:00:00.000Z"
            websocket_deliveries = [d for d in factory.deliveries if d.target == "websocket"]
            assert len(websocket_deliveries) == 1  # the pipeline:* subscriber got nothing

            results = await factory.emit("pipeline.updated", {"x": 1}, channel="pipeline:p-1")
            assert (await _receive(other))["channel"] == "pipeline:p-1"
            assert len(results) == 1


async def test_websocket_wrong_key_gets_error_frame(
    factory: FactoryEmulator, session: aiohttp.ClientSession
) -> None:
    async with session.ws_connect(factory.ws_url, headers={"X-API-Key": "nope"}) as ws:
        frame = await _receive(ws)
        assert frame["type"] == "error"
        assert frame["error"]["code"] == "UNAUTHORIZED"
        closing = await ws.receive(timeout=WAIT)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert factory.ws_connect_count == 0
    assert factory.calls("GET", r"/ws")[0].status == 401


@pytest.mark.parametrize("abrupt", [False, True])
async def test_drop_websockets_closes_clients(
    factory: FactoryEmulator, session: aiohttp.ClientSession, abrupt: bool
) -> None:
    async with session.ws_connect(factory.ws_url, headers={"X-API-Key": KEY}) as ws:
        await ws.send_json({"type": "subscribe", "channels": ["tasks:*"]})
        await _receive(ws)
        await factory.drop_websockets(abrupt=abrupt)
        message = await ws.receive(timeout=WAIT)
        assert message.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.ERROR,
        )
        assert factory.ws_connections == 0
    async with session.ws_connect(factory.ws_url, headers={"X-API-Key": KEY}):
        assert factory.ws_connect_count == 2


async def test_websocket_handshake_can_fail(
    factory: FactoryEmulator, session: aiohttp.ClientSession
) -> None:
    factory.fail("GET", r"/ws", status=503)
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await session.ws_connect(factory.ws_url, headers={"X-API-Key": KEY})
    assert caught.value.status == 503


async def test_server_pings_and_counts_pongs(clock: Clock, session: aiohttp.ClientSession) -> None:
    factory = FactoryEmulator(api_key=KEY, clock=clock, ws_ping_interval_seconds=0.05)
    await factory.start()
    try:
        async with session.ws_connect(factory.ws_url, headers={"X-API-Key": KEY}) as ws:
            assert await _receive(ws) == {"type": "ping"}
            await ws.send_json({"type": "pong"})
            await ws.send_json({"type": "ping"})
            # Frames are handled in order: once our ping is answered, the pong was counted.
            while (frame := await _receive(ws)) != {"type": "pong"}:
                assert frame == {"type": "ping"}
            assert factory.ws_pongs_received == 1
    finally:
        await factory.stop()
