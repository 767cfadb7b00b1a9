"""A factory that refuses the bridge's WebSocket: told once, visible in ``/healthz``, retried.

Contract §1.6: on a connect error the factory sends ``{"type": "error", "error": {"code":
"UNAUTHORIZED", …}}``; other factories answer the handshake 401/403 (§1.3) or close with
1008 (RFC 6455 §7.4.1) or 4001/4003 (RFC 6455 §7.4.2). A WebSocket-only bridge then gets tasks
only from the periodic reconciliation and misses pipeline and deploy events, so the operators
must hear of it: one alert (and one recovery line), one ERROR line, and the advisory
``websocket`` part of ``/healthz`` down with the reason. The intake keeps retrying at the
capped backoff (contract §4.5).

A real aiohttp server on 127.0.0.1 plays the factory; each connection follows the next step of
a script. The reconnect sleep is injected: it records the delay and the intake's health at that
moment, then returns at once. Nothing waits on a timer.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import WSMsgType, web

from bot.factory.events import FactoryEvent
from bot.factory.ws_intake import MAX_RECONNECT_DELAY_SECONDS, WebSocketIntake
from bot.roster import Roster
from bot.self_watch import SelfWatch
from bot.store import Store

#: How long a test waits for the intake to react (a guard against hanging, not a timer).
SETTLE_SECONDS = 10.0

ACCEPT = "accept"  # subscribe, then hold the connection open
ACCEPT_THEN_CLOSE = "accept-then-close"  # subscribe, then close 1011 (a restart of the factory)
ERROR_FRAME = "error-frame"  # the emulator's way: UNAUTHORIZED frame, then close 1008
FORBIDDEN_FRAME_HELD_OPEN = "forbidden-frame-held-open"  # FORBIDDEN frame, connection kept open


@dataclass
class Factory:
    """The server: connection ``n`` follows ``script[n - 1]`` (the last step repeats)."""

    script: list[str | int] = field(default_factory=list)
    handshakes: int = 0
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    ws: list[web.WebSocketResponse] = field(default_factory=list)

    async def handler(self, request: web.Request) -> web.StreamResponse:
        self.handshakes += 1
        step = self.script[min(self.handshakes, len(self.script)) - 1]
        if step in (401, 403, 503):  # the handshake itself is answered with an HTTP status
            return web.json_response({"ok": False}, status=int(step))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.ws.append(ws)
        if isinstance(step, int):  # a close code straight after the upgrade
            await ws.close(code=step, message=b"refused")
            return ws
        if step == ERROR_FRAME:
            error = {"code": "UNAUTHORIZED", "message": "missing or invalid API key"}
            await ws.send_json({"type": "error", "error": error})
            await ws.close(code=1008, message=b"unauthorized")
            return ws
        if step == FORBIDDEN_FRAME_HELD_OPEN:
            await ws.send_json({"type": "error", "error": {"code": "FORBIDDEN", "message": "x"}})
            async for _ in ws:  # never closes on its own
                pass
            return ws
        subscribe = await ws.receive()
        assert subscribe.type is WSMsgType.TEXT
        await ws.send_str(json.dumps({"type": "subscribed", "channels": ["tasks:*"]}))
        if step == ACCEPT_THEN_CLOSE:
            await self.subscribed.wait()
            self.subscribed.clear()
            await ws.close(code=1011)
            return ws
        async for _ in ws:  # held open until the intake or the test ends
            pass
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
    """A :class:`WebSocketIntake` whose sleep records the delay and the health of the moment."""

    def __init__(self, factory: Factory, url: str, store: Store, *, sleeps: int) -> None:
        self.factory = factory
        self.now = 1000.0
        #: (delay, advisory health) at every reconnect sleep
        self.sleeps: list[tuple[float, dict[str, bool | str]]] = []
        self.alerts: list[tuple[str, str]] = []
        self.subscribed = asyncio.Event()
        #: set once ``sleeps`` sleeps were taken: the intake then waits for ever
        self.done = asyncio.Event()
        self._hold_after = sleeps
        self.ws = WebSocketIntake(
            url=url,
            api_key="k",
            token="secret-jwt",
            store=store,
            on_stored=self._on_stored,
            on_subscribed=self._on_subscribed,
            sleep=self._sleep,
            clock=lambda: self.now,
            alert=lambda what, text: self.alerts.append((what, text)),
        )

    def _on_stored(self, event_id: str, event: FactoryEvent) -> None:
        raise AssertionError("no event is sent in these tests")

    def _on_subscribed(self) -> None:
        self.subscribed.set()
        self.factory.subscribed.set()

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append((seconds, self.ws.advisory_health()))
        self.now += seconds
        if len(self.sleeps) >= self._hold_after:
            self.done.set()
            await asyncio.Event().wait()  # never reconnects again; stop() cancels it

    @property
    def health(self) -> list[dict[str, bool | str]]:
        return [health for _, health in self.sleeps]

    @property
    def delays(self) -> list[float]:
        return [delay for delay, _ in self.sleeps]


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("refusal", "reason"),
    [
        (401, "HTTP 401"),
        (403, "HTTP 403"),
        (ERROR_FRAME, "UNAUTHORIZED"),
        (1008, "close code 1008"),
        (4001, "close code 4001"),
        (4003, "close code 4003"),
    ],
    ids=["handshake-401", "handshake-403", "error-frame", "close-1008", "close-4001", "close-4003"],
)
async def test_refused_websocket_is_told_once_shows_in_health_and_recovers(
    factory: tuple[Factory, str],
    store: Store,
    caplog: pytest.LogCaptureFixture,
    refusal: str | int,
    reason: str,
) -> None:
    served, url = factory
    served.script = [refusal, refusal, refusal, ACCEPT]
    intake = Intake(served, url, store, sleeps=99)
    assert intake.ws.advisory_health() == {}  # not started (a standby runs no WebSocket)
    with caplog.at_level(logging.WARNING, logger="bot.factory.ws_intake"):
        await intake.ws.start()
        try:
            await asyncio.wait_for(intake.subscribed.wait(), SETTLE_SECONDS)
            assert intake.ws.advisory_health() == {"websocket": True}
        finally:
            await intake.ws.stop()

    # while refused, /healthz's advisory part says so, with the reason
    assert len(intake.health) == 3
    for health in intake.health:
        assert health["websocket"] != True  # noqa: E712
        assert str(health["websocket"]).startswith(f"refused by the factory ({reason}")
    # one alert for the outage, one when it is over: not one per attempt
    assert [what for what, _ in intake.alerts] == ["websocket_refused", "websocket_recovered"]
    assert reason in intake.alerts[0][1]
    # one ERROR line with the reason; the token never shows
    logged = errors(caplog)
    assert len(logged) == 1
    assert "refused" in logged[0]
    assert reason in logged[0]
    assert "secret-jwt" not in caplog.text
    assert "secret-jwt" not in str(intake.health)
    # and it retried with growing delays meanwhile (1 s, 2 s, 4 s, minus jitter)
    assert intake.delays[0] < intake.delays[1] < intake.delays[2]
    assert served.handshakes == 4


async def test_refused_for_ever_keeps_retrying_at_the_capped_backoff_and_alerts_once(
    factory: tuple[Factory, str], store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    served, url = factory
    served.script = [ERROR_FRAME]
    intake = Intake(served, url, store, sleeps=10)
    with caplog.at_level(logging.WARNING, logger="bot.factory.ws_intake"):
        await intake.ws.start()
        try:
            await asyncio.wait_for(intake.done.wait(), SETTLE_SECONDS)
        finally:
            await intake.ws.stop()
    assert served.handshakes == 10
    assert intake.delays[-1] <= MAX_RECONNECT_DELAY_SECONDS
    assert intake.delays[-1] >= 0.75 * MAX_RECONNECT_DELAY_SECONDS
    assert [what for what, _ in intake.alerts] == ["websocket_refused"]
    assert len(errors(caplog)) == 1


async def test_each_refusal_outage_is_told_once_and_its_end_too(
    factory: tuple[Factory, str], store: Store
) -> None:
    served, url = factory
    served.script = [401, 401, ACCEPT_THEN_CLOSE, ERROR_FRAME, ERROR_FRAME, ACCEPT]
    intake = Intake(served, url, store, sleeps=99)
    await intake.ws.start()
    try:
        for _ in range(2):
            await asyncio.wait_for(intake.subscribed.wait(), SETTLE_SECONDS)
            intake.subscribed.clear()
        assert intake.ws.advisory_health() == {"websocket": True}
    finally:
        await intake.ws.stop()
    assert [what for what, _ in intake.alerts] == [
        "websocket_refused",
        "websocket_recovered",
        "websocket_refused",
        "websocket_recovered",
    ]
    # the factory closing a subscribed connection (1011) is not a refusal
    assert intake.health[2] == {"websocket": "not subscribed: closed (code 1011)"}


async def test_unavailable_factory_is_down_in_health_but_not_alerted(
    factory: tuple[Factory, str], store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    served, url = factory
    served.script = [503, 503, ACCEPT]
    intake = Intake(served, url, store, sleeps=99)
    with caplog.at_level(logging.WARNING, logger="bot.factory.ws_intake"):
        await intake.ws.start()
        try:
            assert intake.ws.advisory_health() == {"websocket": "not connected yet"}
            await asyncio.wait_for(intake.subscribed.wait(), SETTLE_SECONDS)
        finally:
            await intake.ws.stop()
    assert intake.health == [{"websocket": "not subscribed: handshake answered HTTP 503"}] * 2
    assert intake.alerts == []
    assert errors(caplog) == []


async def test_refusal_frame_on_a_connection_left_open_is_closed_and_retried(
    factory: tuple[Factory, str], store: Store
) -> None:
    """A FORBIDDEN frame before the subscription, and the factory never closes: the bridge
    closes it and tries again, instead of waiting on a connection that will never subscribe."""
    served, url = factory
    served.script = [FORBIDDEN_FRAME_HELD_OPEN, ACCEPT]
    intake = Intake(served, url, store, sleeps=99)
    await intake.ws.start()
    try:
        await asyncio.wait_for(intake.subscribed.wait(), SETTLE_SECONDS)
    finally:
        await intake.ws.stop()
    assert intake.health == [{"websocket": "refused by the factory (FORBIDDEN: x)"}]
    assert [what for what, _ in intake.alerts] == ["websocket_refused", "websocket_recovered"]


async def test_announced_alert_is_posted_once_in_the_alerts_channel_and_audited(
    store: Store,
) -> None:
    """:meth:`SelfWatch.announce` (the WebSocket's alert path): posted by the next check."""
    posted: list[str] = []

    async def post(text: str) -> None:
        posted.append(text)

    watch = SelfWatch(
        disconnected_since=lambda: None,
        pager=None,
        roster=Roster(),
        store=store,
        after_seconds=60,
        post_alert=post,
    )
    watch.announce("websocket_refused", "the factory refuses the WebSocket")
    await watch.check()
    await watch.check()
    assert posted == ["the factory refuses the WebSocket"]
    actions = [(e.action, e.outcome) for e in await store.audit_entries()]
    assert actions == [("self_alert.websocket_refused", "sent")]
