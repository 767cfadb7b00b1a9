"""The WebSocket intake (``FACTORY_WS_URL``) end to end, for bridges that cannot get webhooks.

Subscribe with the API key, answer pings, store events through the same path as webhooks,
reconnect with backoff (contract §4.5) and reconcile after every reconnect so that what was
sent while disconnected still appears.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import pytest

from bot.factory.ws_intake import MAX_RECONNECT_DELAY_SECONDS, reconnect_delay
from sandbox.discord_emulator import RecordedMessage
from sandbox.world import DEPLOYS_CHANNEL_ID, FACTORY_API_KEY, TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess, wait_until

WS_PATH = r"/v1/ws"


def posted(world: World, channel_id: int) -> list[RecordedMessage]:
    return [m for m in world.discord.messages(channel_id) if not m.deleted and not m.ephemeral]


def titles(world: World) -> list[str]:
    return [m.embeds[0]["title"] for m in posted(world, TASKS_CHANNEL_ID) if m.embeds]


def ws_only(world: World) -> None:
    """Behind NAT: the factory cannot reach the bridge's webhook."""
    world.factory.webhook_url = None


def ws_bridge(make_bridge: Callable[..., BridgeProcess], world: World) -> BridgeProcess:
    return make_bridge(
        FACTORY_WS_URL=world.factory.ws_url, FACTORY_WS_RECONNECT_BASE_SECONDS="0.05"
    )


async def subscribed(world: World, connections: int) -> None:
    """Wait until ``connections`` WebSockets were accepted and the last one subscribed."""

    def done() -> bool:
        subs = [m for m in world.factory.ws_messages if m.get("type") == "subscribe"]
        return world.factory.ws_connect_count >= connections and len(subs) >= connections

    await wait_until(done, timeout=10, what=f"{connections} subscribed WebSocket(s)")


def test_reconnect_delay_doubles_from_base_to_30s_with_jitter() -> None:
    no_jitter = [reconnect_delay(n, base_seconds=1.0, rand=lambda: 0.0) for n in range(8)]
    assert no_jitter == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    full_jitter = [reconnect_delay(n, base_seconds=1.0, rand=lambda: 0.999) for n in range(6)]
    for plain, jittered in zip(no_jitter, full_jitter, strict=False):
        assert 0.75 * plain <= jittered < plain
    assert reconnect_delay(10_000) <= MAX_RECONNECT_DELAY_SECONDS
    assert reconnect_delay(0, base_seconds=0.05, rand=lambda: 0.0) == pytest.approx(0.05)


async def test_ws_only_subscribes_with_api_key_answers_pings_and_posts(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    ws_only(world)
    world.factory.ws_ping_interval_seconds = 0.1
    bridge = ws_bridge(make_bridge, world)
    await bridge.start()
    await subscribed(world, 1)
    handshake = world.factory.calls("GET", WS_PATH)[0]
    assert handshake.header("X-API-Key") == FACTORY_API_KEY
    assert "token" not in handshake.query  # the key never goes into the URL
    subscribe = next(m for m in world.factory.ws_messages if m.get("type") == "subscribe")
    assert set(subscribe["channels"]) == {"tasks:*", "pipeline:*", "deploys:*", "agents:*"}
    await wait_until(lambda: world.factory.ws_pongs_received >= 2, timeout=10, what="pongs")

    task = await world.factory.create_task(title="over the WebSocket")
    results = await world.factory.emit(
        "deploy.started",
        {
            "pipelineId": "p1",
            "pipelineName": "shopify-mcp",
            "target": "staging",
            "version": "1.0.0",
            "status": "started",
        },
        channel="deploys:*",
    )
    assert [r.target for r in results] == ["websocket"]
    await world.discord.wait_for(lambda: len(titles(world)) == 1, 10)
    assert task["title"] in titles(world)[0]
    await world.discord.wait_for(lambda: len(posted(world, DEPLOYS_CHANNEL_ID)) == 1, 10)
    # a decision made at the factory arrives over the WebSocket too
    await world.factory.decide_task(task["id"], "approved")
    message = posted(world, TASKS_CHANNEL_ID)[0]
    await world.discord.wait_for(lambda: message.button_labels == [], 10)


@pytest.mark.parametrize("abrupt", [False, True], ids=["close-frame", "network-cut"])
async def test_dropped_websocket_reconnects_and_reconciles_what_it_missed(
    world: World, make_bridge: Callable[..., BridgeProcess], abrupt: bool
) -> None:
    ws_only(world)
    bridge = ws_bridge(make_bridge, world)
    await bridge.start()
    await subscribed(world, 1)
    before = await world.factory.create_task(title="before the drop")
    await world.discord.wait_for(lambda: len(titles(world)) == 1, 10)

    # the connection drops and the next two handshakes fail: the bridge is disconnected while
    # one task is created silently and another one's event goes out to nobody
    world.factory.fail("GET", WS_PATH, status=503, times=2)
    await world.factory.drop_websockets(abrupt=abrupt)
    silent = await world.factory.create_task(title="created while disconnected", emit=False)
    lost = await world.factory.create_task(title="event sent while disconnected")
    decided_away = await world.factory.decide_task(before["id"], "rejected", notes="too risky")

    await subscribed(world, 2)
    assert len(world.factory.calls("GET", WS_PATH)) >= 4  # 1 + 2 refused + the reconnect
    await world.discord.wait_for(lambda: len(titles(world)) == 3, 10)
    first = posted(world, TASKS_CHANNEL_ID)[0]
    await world.discord.wait_for(lambda: first.button_labels == [], 10)
    assert "too risky" in str(first.embeds[0])
    assert decided_away["decision"] == "rejected"
    shown = titles(world)
    for task in (before, silent, lost):
        assert sum(task["title"] in t for t in shown) == 1
    # and the stream works again after the reconnect
    after = await world.factory.create_task(title="after the reconnect")
    await world.discord.wait_for(lambda: len(titles(world)) == 4, 10)
    assert after["title"] in titles(world)[3]


async def test_webhook_and_websocket_together_act_once_per_event(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = ws_bridge(make_bridge, world)  # the world also delivers signed webhooks
    await bridge.start()
    await subscribed(world, 1)
    deploy = {
        "pipelineId": "p1",
        "pipelineName": "shopify-mcp",
        "target": "production",
        "version": "3.1.0",
        "status": "succeeded",
    }
    results = await world.factory.emit("deploy.succeeded", deploy, channel="deploys:*")
    assert sorted(r.target for r in results) == ["webhook", "websocket"]
    tasks = [await world.factory.create_task(title=f"double delivery {n}") for n in range(3)]
    await world.factory.decide_task(tasks[0]["id"], "approved")
    await world.discord.wait_for(lambda: len(titles(world)) == 3, 10)
    first = posted(world, TASKS_CHANNEL_ID)[0]
    await world.discord.wait_for(lambda: first.button_labels == [], 10)
    marker = await world.factory.create_task(title="marker")
    await world.discord.wait_for(lambda: any(marker["title"] in t for t in titles(world)), 10)
    shown = titles(world)
    assert len(shown) == 4
    for task in tasks:
        assert sum(task["title"] in t for t in shown) == 1
    assert len(posted(world, DEPLOYS_CHANNEL_ID)) == 1


async def test_refused_handshakes_back_off_exponentially(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    ws_only(world)
    world.factory.fail("GET", WS_PATH, status=503, times=3)
    bridge = make_bridge(
        FACTORY_WS_URL=world.factory.ws_url, FACTORY_WS_RECONNECT_BASE_SECONDS="0.2"
    )
    await bridge.start()
    await subscribed(world, 1)
    attempts = [c.at for c in world.factory.calls("GET", WS_PATH)]
    assert len(attempts) == 4
    gaps = [(b - a).total_seconds() for a, b in pairwise(attempts)]
    # 0.2 s, 0.4 s, 0.8 s, each minus at most 25 % jitter
    for gap, planned in zip(gaps, (0.2, 0.4, 0.8), strict=True):
        assert gap >= 0.75 * planned - 0.01
    task = await world.factory.create_task(title="after the backoff")
    await world.discord.wait_for(lambda: any(task["title"] in t for t in titles(world)), 10)


async def test_ws_token_authenticates_the_contract_way_and_stays_out_of_the_log(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    """``FACTORY_WS_TOKEN``: ``?token=<jwt>`` (contract §1.6), checked by the factory."""
    ws_only(world)
    world.factory.ws_jwt_secret = "factory-jwt-secret-of-at-least-32-bytes"
    token = world.factory.ws_token()
    bridge = make_bridge(
        FACTORY_WS_URL=world.factory.ws_url,
        FACTORY_WS_RECONNECT_BASE_SECONDS="0.05",
        FACTORY_WS_TOKEN=token,
    )
    await bridge.start()
    await subscribed(world, 1)
    assert world.factory.ws_auth == ["jwt"]
    handshake = world.factory.calls("GET", WS_PATH)[0]
    assert handshake.query["token"] == token
    assert handshake.header("X-API-Key") == FACTORY_API_KEY  # still sent, as before
    await world.factory.create_task(title="over an authenticated stream")
    await world.discord.wait_for(lambda: len(titles(world)) == 1, 10)
    assert token not in bridge.log_tail(500)


async def test_expired_ws_token_is_refused_and_never_logged(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    ws_only(world)
    world.factory.ws_jwt_secret = "factory-jwt-secret-of-at-least-32-bytes"
    expired = world.factory.ws_token(expires_in_seconds=-1)
    bridge = make_bridge(
        FACTORY_WS_URL=world.factory.ws_url,
        FACTORY_WS_RECONNECT_BASE_SECONDS="0.05",
        FACTORY_WS_TOKEN=expired,
    )
    await bridge.start()
    await wait_until(
        lambda: len(world.factory.calls("GET", WS_PATH)) >= 2, timeout=10, what="retries"
    )
    assert world.factory.ws_connect_count == 0
    assert all(call.status == 401 for call in world.factory.calls("GET", WS_PATH))
    assert expired not in bridge.log_tail(500)
