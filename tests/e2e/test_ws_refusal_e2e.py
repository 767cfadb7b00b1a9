"""A WebSocket-only bridge (behind NAT) whose WebSocket the factory refuses.

Retrying cannot fix a refused key or token, and meanwhile tasks arrive only by the periodic
reconciliation and pipeline and deploy events are missed: the operators are told once in the
alerts channel, ``/healthz`` shows the advisory ``websocket`` part down with the reason (still
200: the bridge works, degraded), and once the factory accepts again a recovery line is posted
and events flow. Refusals: the emulator's ``UNAUTHORIZED`` error frame and close 1008 (contract
§1.6 "On connect error", RFC 6455 §7.4.1), and a handshake answered 401 (contract §1.3).
"""

from __future__ import annotations

from collections.abc import Callable

from sandbox.discord_emulator import RecordedMessage
from sandbox.world import ALERTS_CHANNEL_ID, TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess, wait_until

WS_PATH = r"/v1/ws"


def alerts(world: World) -> list[str]:
    posted: list[RecordedMessage] = world.discord.messages(ALERTS_CHANNEL_ID)
    return [m.content or "" for m in posted if not m.deleted and "WebSocket" in (m.content or "")]


def handshakes(world: World) -> int:
    return len(world.factory.calls("GET", WS_PATH))


async def test_refused_ws_token_is_alerted_once_and_shown_in_healthz(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    world.factory.webhook_url = None  # WebSocket only
    world.factory.ws_jwt_secret = "factory-jwt-secret-of-at-least-32-bytes"
    expired = world.factory.ws_token(expires_in_seconds=-1)
    bridge = make_bridge(
        FACTORY_WS_URL=world.factory.ws_url,
        FACTORY_WS_RECONNECT_BASE_SECONDS="0.05",
        FACTORY_WS_TOKEN=expired,
    )
    await bridge.start()
    await wait_until(lambda: handshakes(world) >= 6, timeout=20, what="refused retries")
    await world.discord.wait_for(lambda: len(alerts(world)) >= 1, 10)

    status, body = await bridge.health()
    assert status == 200  # advisory: the process is not restarted for it
    assert body["status"] == "degraded"
    websocket = body["checks"]["websocket"]
    assert websocket.startswith("down: refused by the factory (UNAUTHORIZED")
    assert expired not in websocket

    # it keeps retrying, and the outage is told once, not per attempt
    seen = handshakes(world)
    await wait_until(lambda: handshakes(world) > seen, timeout=20, what="another retry")
    (alert,) = alerts(world)
    assert "refuses the WebSocket" in alert
    assert "FACTORY_WS_TOKEN" in alert
    assert expired not in bridge.log_tail(500)


async def test_ws_accepted_again_after_refusals_posts_recovery_and_events_flow(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    world.factory.webhook_url = None  # WebSocket only
    world.factory.fail("GET", WS_PATH, status=401, times=3)
    bridge = make_bridge(
        FACTORY_WS_URL=world.factory.ws_url, FACTORY_WS_RECONNECT_BASE_SECONDS="0.05"
    )
    await bridge.start()
    await world.discord.wait_for(lambda: len(alerts(world)) == 2, 10)
    refused, recovered = alerts(world)
    assert "refuses the WebSocket (HTTP 401)" in refused
    assert "accepts the WebSocket again" in recovered

    status, body = await bridge.health()
    assert status == 200
    assert body["checks"]["websocket"] == "up"
    task = await world.factory.create_task(title="after the refusals")
    await world.discord.wait_for(
        lambda: any(
            task["title"] in (m.embeds[0].get("title") or "")
            for m in world.discord.messages(TASKS_CHANNEL_ID)
            if m.embeds
        ),
        10,
    )
