"""WebSocket intake against odd servers: hostile frames, error frames, a flapping server.

A real aiohttp WebSocket server on 127.0.0.1 plays the factory (contract §1.6); the store is
the unit tests' ``store`` fixture. No timer is waited for: the reconnect sleep and the clock are injected,
the sleep records each delay and returns at once (or holds, for "no reconnect"), and the
server moves the clock forward to play "the connection stayed up N seconds".
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from bot.factory.events import FactoryEvent
from bot.factory.ws_intake import STABLE_CONNECTION_SECONDS, WebSocketIntake
from bot.store import Store

#: How long a test waits for the intake to react (a guard against hanging, not a timer).
SETTLE_SECONDS = 10.0

TASK_CREATED: dict[str, Any] = {
    "type": "task.created",
    "timestamp": "2026-11-21T10:00:00.000Z",
    "channel": "tasks:*",
    "data": {
        "task": {"id": "t-after", "title": "Review t-after", "createdAt": "2026-11-21T10:00:00Z"}
    },
}


class Clock:
    """Monotonic seconds that move only when the test (or the server) moves them."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Factory:
    """The server side: what each connection does after it confirmed the subscription."""

    #: Called with the connection's number (1-based) once subscribed; the server closes (1011)
    #: when it returns. Without it the server sends ``frames`` and holds the connection open.
    script: Callable[[int], Awaitable[None]] | None = None
    frames: list[str] = field(default_factory=list)
    connections: int = 0
    ws: list[web.WebSocketResponse] = field(default_factory=list)

    async def handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        self.ws.append(ws)
        number = self.connections
        subscribe = await ws.receive()
        assert subscribe.type is WSMsgType.TEXT
        assert json.loads(subscribe.data)["type"] == "subscribe"
        await ws.send_str(json.dumps({"type": "subscribed", "channels": ["tasks:*"]}))
        if self.script is not None:
            await self.script(number)
        else:
            for frame in self.frames:
                await ws.send_str(frame)
            async for _ in ws:  # held open (answering a close) until the intake or test ends
                pass
        await ws.close(code=1011)
        return ws


@pytest.fixture
async def factory() -> AsyncIterator[tuple[Factory, str]]:
    served = Factory()
    app = web.Application()
    app.router.add_get("/v1/ws", served.handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield served, f"ws://127.0.0.1:{port}/v1/ws"
    finally:
        for ws in served.ws:
            await ws.close()
        await runner.cleanup()


class Intake:
    """A :class:`WebSocketIntake` with a recording sleep, a fake clock and its outcomes."""

    def __init__(self, url: str, store: Store, *, hold_after: int = 0) -> None:
        self.clock = Clock()
        self.delays: list[float] = []
        self.stored: list[str] = []
        self.outcomes: list[str] = []
        self.subscribed = asyncio.Event()
        self.subscriptions = 0
        #: Set when an event was stored, or when the intake went to sleep (the connection ended).
        self.settled = asyncio.Event()
        self._hold_after = hold_after
        self.ws = WebSocketIntake(
            url=url,
            api_key="k",
            store=store,
            on_stored=self._on_stored,
            on_subscribed=self._on_subscribed,
            on_outcome=lambda source, outcome: self.outcomes.append(f"{source}:{outcome}"),
            sleep=self._sleep,
            clock=self.clock,
        )

    def _on_stored(self, event_id: str, event: FactoryEvent) -> None:
        self.stored.append(event.payload.task.id)
        self.settled.set()

    def _on_subscribed(self) -> None:
        self.subscriptions += 1
        self.subscribed.set()

    async def _sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.now += seconds
        if len(self.delays) >= self._hold_after:
            self.settled.set()
            await asyncio.Event().wait()  # never reconnects again; stop() cancels it


async def stream_then_event(factory: tuple[Factory, str], store: Store, *frames: str) -> Intake:
    """Connect; the server sends ``frames`` then a valid task.created; wait until it settled."""
    served, url = factory
    served.frames = [*frames, json.dumps(TASK_CREATED)]
    intake = Intake(url, store, hold_after=1)
    await intake.ws.start()
    try:
        await asyncio.wait_for(intake.settled.wait(), SETTLE_SECONDS)
    finally:
        await intake.ws.stop()
    return intake


async def test_deeply_nested_frame_is_refused_and_the_stream_goes_on(
    factory: tuple[Factory, str], store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    deep = "[" * 100_000 + "]" * 100_000  # past Python's recursion limit (RecursionError)
    envelope = {k: v for k, v in TASK_CREATED.items() if k != "data"}
    deep_event = json.dumps(envelope)[:-1] + ', "data": {"task": ' + deep + "}}"
    with caplog.at_level(logging.WARNING, logger="bot.factory.ws_intake"):
        intake = await stream_then_event(factory, store, deep, deep_event)
    # the connection stayed up: the event after the bad frames arrived on it, no reconnect
    assert intake.stored == ["t-after"]
    assert intake.delays == []
    assert factory[0].connections == 1
    assert intake.ws.rejected == 2
    assert intake.outcomes == ["websocket:rejected", "websocket:rejected", "websocket:accepted"]
    refused = [r.getMessage() for r in caplog.records if "nested deeper" in r.getMessage()]
    assert len(refused) == 2
    assert all(len(message) < 500 for message in refused)  # the frame is not echoed


@pytest.mark.parametrize(
    ("error", "logged"),
    [
        ("UNAUTHORIZED", "UNAUTHORIZED"),
        (["UNAUTHORIZED", "token expired"], "token expired"),
        (42, "42"),
        ({"code": "UNAUTHORIZED", "message": "bad token"}, "bad token"),
        ({"detail": "nope"}, "nope"),
        (None, "None"),
    ],
    ids=["string", "list", "number", "contract-object", "other-object", "null"],
)
async def test_error_frame_of_any_shape_is_logged_and_the_stream_goes_on(
    factory: tuple[Factory, str],
    store: Store,
    caplog: pytest.LogCaptureFixture,
    error: object,
    logged: str,
) -> None:
    frame = json.dumps({"type": "error", "error": error})
    with caplog.at_level(logging.ERROR, logger="bot.factory.ws_intake"):
        intake = await stream_then_event(factory, store, frame)
    assert intake.stored == ["t-after"]
    assert intake.delays == []
    assert factory[0].connections == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "error frame" in errors[0]
    assert logged in errors[0]


async def test_flapping_server_is_retried_with_growing_delays_until_a_connection_stays_up(
    factory: tuple[Factory, str], store: Store
) -> None:
    """Subscribe-then-close (1011) at once: the backoff keeps growing (contract §4.5).

    Only a connection that stayed subscribed for ``STABLE_CONNECTION_SECONDS`` starts the
    backoff again from the base; one a second shorter does not.
    """
    served, url = factory
    up_for = [0.0, 0.0, 0.0, STABLE_CONNECTION_SECONDS - 1, STABLE_CONNECTION_SECONDS, 0.0, 0.0]
    intake = Intake(url, store, hold_after=len(up_for))

    async def stay_up_then_close(number: int) -> None:
        await intake.subscribed.wait()  # the intake has seen "subscribed"
        intake.subscribed.clear()
        intake.clock.now += up_for[number - 1]

    served.script = stay_up_then_close
    await intake.ws.start()
    try:
        await asyncio.wait_for(intake.settled.wait(), SETTLE_SECONDS)
    finally:
        await intake.ws.stop()

    assert served.connections == len(up_for)
    assert intake.subscriptions == len(up_for)  # each subscription still reconciles
    d = intake.delays
    assert len(d) == len(up_for)
    # base 1 s doubling (minus at most 25 % jitter): 1, 2, 4, 8 — 29 s up is not stable yet
    for earlier, later in pairwise(d[:4]):
        assert later > earlier
    assert d[3] >= 0.75 * 8
    # 30 s up: the delay after it is back at the base, then grows again
    assert d[4] <= 1.0
    assert d[5] >= 0.75 * 2 > d[4]
    assert d[6] >= 0.75 * 4
