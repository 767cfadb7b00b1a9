"""The factory's event bus end to end: a task.created XADDed to ``factory.tasks`` (contract §7.7)
becomes a task message in Discord, read by ``factory-bridge run`` as group ``discord-bridge``.

Runs against the test machine's Redis (``TEST_REDIS_URL``); the stream name is unique to the
test. The factory's webhooks are off, and the task is created in the factory emulator only after
the bridge's start-up reconciliation, so the message can only come from the stream.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import httpx
import pytest
import redis.asyncio as aioredis

from sandbox.world import TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess, wait_until
from tests.support.redis_server import redis_or_skip, redis_url_for_tests, unique_streams

STREAMS = unique_streams("factory.tasks", "factory.deploys")


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    async for client in redis_or_skip(STREAMS):
        yield client


async def _health(bridge: BridgeProcess) -> dict[str, object]:
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"http://127.0.0.1:{bridge.port}/healthz")
        body: dict[str, object] = answer.json()
        body["http_status"] = answer.status_code
        return body


async def test_a_task_created_on_the_stream_becomes_a_discord_message(
    world: World, make_bridge: Callable[..., BridgeProcess], redis_client: aioredis.Redis
) -> None:
    world.factory.webhook_url = None  # the event bus is the only way in
    tasks_stream = STREAMS[0]
    bridge = make_bridge(
        FACTORY_REDIS_URL=redis_url_for_tests(),
        FACTORY_REDIS_STREAMS=",".join(STREAMS),
        FACTORY_REDIS_CONSUMER="bridge-e2e",
    )
    await bridge.start()

    async def redis_up() -> bool:
        checks = (await _health(bridge))["checks"]
        return isinstance(checks, dict) and checks.get("redis") == "up"

    await wait_until(redis_up, timeout=15, what="/healthz reporting Redis up")
    groups = await redis_client.xinfo_groups(tasks_stream)
    assert [g["name"] for g in groups] == [b"discord-bridge"]  # created with MKSTREAM

    task = await world.factory.create_task(emit=False, title="Announced on the event bus")
    await redis_client.xadd(
        tasks_stream,
        {
            "type": "task.created",
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "data": json.dumps({"task": task}),
            "source": "task-service",
        },
    )

    def shown() -> bool:
        return any(
            m.embeds and m.embeds[0].get("title", "").endswith("Announced on the event bus")
            for m in world.discord.messages(TASKS_CHANNEL_ID)
            if not m.deleted
        )

    await world.discord.wait_for(shown, timeout=15, description="the task message")

    async def acknowledged() -> bool:
        summary = await redis_client.xpending(tasks_stream, "discord-bridge")
        return int(summary["pending"]) == 0

    await wait_until(acknowledged, timeout=10, what="the entry acknowledged")
    health = await _health(bridge)
    assert health["http_status"] == 200
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"http://127.0.0.1:{bridge.port}/metrics")).text
    assert 'factory_bridge_events_total{outcome="accepted",source="redis"} 1.0' in metrics


async def test_with_redis_down_the_bridge_starts_and_webhooks_keep_working(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    bridge = make_bridge(
        FACTORY_REDIS_URL=f"redis://127.0.0.1:{dead_port}/0",
        FACTORY_REDIS_STREAMS=",".join(STREAMS),
        FACTORY_REDIS_RECONNECT_BASE_SECONDS="0.05",
    )
    await bridge.start()  # /healthz answers 200 without Redis

    async def redis_reported_down() -> bool:
        health = await _health(bridge)
        checks = health["checks"]
        return (
            isinstance(checks, dict)
            and str(checks.get("redis", "")).startswith("down: ")
            and health["status"] == "degraded"
        )

    await wait_until(redis_reported_down, timeout=15, what="/healthz reporting Redis down")
    assert (await _health(bridge))["http_status"] == 200
    await world.factory.create_task(title="Delivered by webhook")  # emitted as a webhook

    def shown() -> bool:
        return any(
            m.embeds and m.embeds[0].get("title", "").endswith("Delivered by webhook")
            for m in world.discord.messages(TASKS_CHANNEL_ID)
            if not m.deleted
        )

    await world.discord.wait_for(shown, timeout=15, description="the webhook's task message")
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"http://127.0.0.1:{bridge.port}/metrics")).text
    assert 'factory_bridge_events_total{outcome="unavailable",source="redis"}' in metrics
