"""WebSocket intake against a factory that misbehaves below the event level (contract §1.6, §4.5).

A factory that never confirms the subscription, one that never answers the handshake, tokens
in error texts (raw, percent-encoded, in ``FACTORY_WS_URL``), binary frames, frames aiohttp
closes the connection for (1009 too big, 1007 not UTF-8) and an error frame holding a lone
surrogate. A real aiohttp server on 127.0.0.1 plays the factory; no timer is waited for: the
handshake and subscription timeouts are injected at 0.05 s, the reconnect sleep records the
delay and the health of the moment, then holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from aiohttp import WSMsgType, web

from bot.factory.events import FactoryEvent
from bot.factory.ws_intake import MAX_MESSAGE_BYTES, WebSocketIntake
from bot.store import Store

#: How long a test waits for the intake to react (a guard against hanging, not a timer).
SETTLE_SECONDS = 10.0
#: The injected handshake and subscription timeouts.
SHORT = 0.05

LOGGER = "bot.factory.ws_intake"


def task_created(task_id: str) -> dict[str, Any]:
    return {
        "type": "task.created",
        "timestamp": "2026-11-21T10:00:00.000Z",
        "channel": "tasks:*",
        "data": {
            "task": {
                "id": task_id,
                "title": f"Review {task_id}",
                "createdAt": "2026-11-21T10:00:00Z",
            }
        },
    }


SUBSCRIBED = json.dumps({"type": "subscribed", "channels": ["tasks:*"]})

#: What connection ``n`` does once it received ``subscribe`` (the last one repeats).
Step = Callable[[web.WebSocketResponse], Awaitable[None]]


async def hold(ws: web.WebSocketResponse) -> None:
    async for _ in ws:  # answers a close; held open until the intake or the test ends
        pass


class Factory:
    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps
        self.connections = 0
        self.ws: list[web.WebSocketResponse] = []

    async def handler(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("status"):
            return web.json_response({"ok": False}, status=int(request.query["status"]))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.ws.append(ws)
        self.connections += 1
        subscribe = await ws.receive()
        assert subscribe.type is WSMsgType.TEXT
        await self.steps[min(self.connections, len(self.steps)) - 1](ws)
        return ws


@contextlib.asynccontextmanager
async def serve(factory: Factory) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/v1/ws", factory.handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"ws://127.0.0.1:{port}/v1/ws"
    finally:
        for ws in factory.ws:
            await ws.close()
        await runner.cleanup()


class Intake:
    """A :class:`WebSocketIntake` with short timeouts; its sleep records and then holds.

    :meth:`run` returns after ``sleeps`` reconnect sleeps, or once ``until_stored`` (a task
    id) was stored, or once subscribed when ``until_subscribed``.
    """

    def __init__(
        self,
        url: str,
        store: Store,
        *,
        sleeps: int = 1,
        until_stored: str | None = None,
        until_subscribed: bool = False,
        **options: Any,
    ) -> None:
        self.sleeps: list[dict[str, bool | str]] = []  # advisory health at each reconnect sleep
        self.stored: list[str] = []
        self.outcomes: list[str] = []
        self.subscriptions = 0
        self.done = asyncio.Event()
        self._hold_after = sleeps
        self._until_stored = until_stored
        self._until_subscribed = until_subscribed
        self.ws = WebSocketIntake(
            url=url,
            api_key="k",
            store=store,
            on_stored=self._on_stored,
            on_subscribed=self._on_subscribed,
            on_outcome=lambda source, outcome: self.outcomes.append(outcome),
            sleep=self._sleep,
            handshake_timeout=SHORT,
            subscribe_timeout=SHORT,
            **options,
        )

    def _on_stored(self, event_id: str, event: FactoryEvent) -> None:
        self.stored.append(event.payload.task.id)
        if event.payload.task.id == self._until_stored:
            self.done.set()

    def _on_subscribed(self) -> None:
        self.subscriptions += 1
        if self._until_subscribed:
            self.done.set()

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(self.ws.advisory_health())
        if len(self.sleeps) >= self._hold_after:
            self.done.set()
            await asyncio.Event().wait()  # never reconnects again; stop() cancels it

    async def run(self) -> None:
        await self.ws.start()
        try:
            await asyncio.wait_for(self.done.wait(), SETTLE_SECONDS)
        finally:
            await self.ws.stop()


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


# --- 1. the handshake and the subscription confirmation are bounded -------------------------


async def test_missing_subscription_confirmation_closes_and_retries(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """No ``subscribed`` within the bound: closed, reason in /healthz, retried, then reconciled."""
    health_at_connect: list[dict[str, bool | str]] = []
    intake: Intake

    async def never_confirms(ws: web.WebSocketResponse) -> None:
        health_at_connect.append(intake.ws.advisory_health())
        await ws.send_json(task_created("t-early"))  # an event before it: handled as ever
        await hold(ws)

    async def confirms(ws: web.WebSocketResponse) -> None:
        await ws.send_str(SUBSCRIBED)
        await hold(ws)

    factory = Factory([never_confirms, confirms])
    with caplog.at_level(logging.INFO, logger=LOGGER):
        async with serve(factory) as url:
            intake = Intake(url, store, sleeps=2, until_subscribed=True)
            await intake.run()

    assert health_at_connect == [{"websocket": "connected, waiting for subscription confirmation"}]
    assert intake.stored == ["t-early"]
    assert intake.sleeps[0] == {
        "websocket": "not subscribed: no subscription confirmation within 0.05 s"
    }
    assert factory.connections == 2
    assert intake.subscriptions == 1  # the second connection subscribed: reconciliation runs
    assert intake.ws.advisory_health() == {}  # stopped
    assert any("no subscription confirmation within 0.05 s" in m for m in messages(caplog))


async def test_unanswered_handshake_times_out_and_is_retried(store: Store) -> None:
    """A factory (or proxy) that accepts TCP but never answers the upgrade."""
    accepted = 0

    async def black_hole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await reader.read()  # until the intake gives up and closes
        writer.close()

    server = await asyncio.start_server(black_hole, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        intake = Intake(f"ws://127.0.0.1:{port}/v1/ws", store, sleeps=2)
        await intake.run()
    finally:
        server.close()
    assert accepted == 2
    assert intake.sleeps == [{"websocket": "not subscribed: no handshake answer within 0.05 s"}] * 2


# --- 2. no token in the log ---------------------------------------------------------------


async def test_token_is_redacted_raw_and_percent_encoded(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """An opaque token with ``+ / =``: aiohttp's error quotes the URL percent-encoded."""
    token = "s3cr3t+Tok/en=="
    factory = Factory([hold])
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        async with serve(factory) as url:
            intake = Intake(f"{url}?status=503", store, sleeps=1, token=token)
            await intake.run()
    logged = "\n".join([*messages(caplog), json.dumps(intake.sleeps)])
    assert "503" in logged  # the handshake failure is logged
    for form in (token, quote(token, safe=""), quote_plus(token), quote(token), "s3cr3t%2B"):
        assert form not in logged


async def test_token_written_in_the_url_is_not_logged(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """FACTORY_WS_URL written the contract's way, ``wss://…/v1/ws?token=<jwt>`` (§1.6)."""
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJicmlkZ2UifQ.c2lnbmF0dXJlLXNlY3JldA"
    factory = Factory([hold])
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        async with serve(factory) as url:
            intake = Intake(f"{url}?status=503&token={jwt}", store, sleeps=1)
            await intake.run()
    logged = messages(caplog)
    assert any(f"{url} " in m or m.endswith(url) or f"{url}:" in m for m in logged)
    assert not any(jwt in m or "c2lnbmF0dXJlLXNlY3JldA" in m for m in logged)
    assert jwt not in json.dumps(intake.sleeps)


# --- 3. binary frames -----------------------------------------------------------------------


async def test_binary_frames_are_handled_as_text_and_non_utf8_rejected(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    async def binary(ws: web.WebSocketResponse) -> None:
        await ws.send_str(SUBSCRIBED)
        await ws.send_bytes(json.dumps(task_created("t-binary")).encode())
        await ws.send_bytes(b"\xff\xfe not UTF-8")
        await ws.send_str(json.dumps(task_created("t-text")))
        await hold(ws)

    factory = Factory([binary])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        async with serve(factory) as url:
            intake = Intake(url, store, until_stored="t-text")
            await intake.run()
    assert intake.stored == ["t-binary", "t-text"]
    assert intake.outcomes == ["accepted", "rejected", "accepted"]
    assert intake.ws.rejected == 1
    assert factory.connections == 1 and intake.sleeps == []  # the stream went on
    assert any("UTF-8" in m for m in messages(caplog))


# --- 4. frames aiohttp closes the connection for ------------------------------------------


async def too_big(ws: web.WebSocketResponse) -> None:
    await ws.send_str(SUBSCRIBED)
    await ws.send_str("x" * (MAX_MESSAGE_BYTES + 1))
    await hold(ws)


async def bad_utf8_text(ws: web.WebSocketResponse) -> None:
    await ws.send_str(SUBSCRIBED)
    await ws._writer.send_frame(b'{"type": "\xff"}', WSMsgType.TEXT)  # type: ignore[union-attr]
    await hold(ws)


@pytest.mark.parametrize(("step", "code"), [(too_big, 1009), (bad_utf8_text, 1007)])
async def test_protocol_error_close_is_logged_with_its_code_and_rejected(
    store: Store, caplog: pytest.LogCaptureFixture, step: Step, code: int
) -> None:
    assert MAX_MESSAGE_BYTES >= 1024 * 1024  # at least a webhook body's limit
    factory = Factory([step])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        async with serve(factory) as url:
            intake = Intake(url, store, sleeps=1)
            await intake.run()
    assert intake.ws.rejected == 1
    assert intake.outcomes == ["rejected"]
    reason = intake.sleeps[0]["websocket"]
    assert isinstance(reason, str) and f"code {code}" in reason
    logged = messages(caplog)
    assert any(f"code {code}" in m for m in logged)
    assert not any("None" in m for m in logged)


# --- minor: a lone surrogate in an error frame ----------------------------------------------


async def test_error_frame_with_a_lone_surrogate_can_be_written_as_utf8(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    async def surrogate(ws: web.WebSocketResponse) -> None:
        await ws.send_str(SUBSCRIBED)
        await ws.send_str(
            json.dumps({"type": "error", "error": {"code": "X", "message": "\ud800"}})
        )
        await ws.send_str(json.dumps(task_created("t-after")))
        await hold(ws)

    factory = Factory([surrogate])
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        async with serve(factory) as url:
            intake = Intake(url, store, until_stored="t-after")
            await intake.run()
    logged = [m for m in messages(caplog) if "error frame" in m]
    assert len(logged) == 1
    logged[0].encode("utf-8")  # a UTF-8 log handler can write it (no "--- Logging error ---")
    assert "\\ud800" in logged[0]
