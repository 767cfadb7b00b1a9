"""Alert and deploy lines when one of their channels fails, end to end (bot.discord.event_posts).

The bot lost Send Messages in #factory-deploys (Discord: 403, error code 50013): a
``deploy.failed`` still reaches #factory-alerts, the lost channel is reported like a lost tasks
channel (one alert, a DM to the on-call admin, ``/healthz`` ``discord_channels`` down), no event
fails or is retried, so a critical task that follows is not held up behind them; the first line
Discord takes there again ends the outage. #factory-alerts answering 503 once: the event is
retried, and #factory-deploys, which took the line the first time, does not get it again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from sandbox.discord_emulator import SEND_MESSAGES
from sandbox.world import ALERTS_CHANNEL_ID, DEPLOYS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess, wait_until
from tests.support.reading import task_messages


def lines(world: World, channel_id: int) -> list[str]:
    """Text lines (no embed) the bot posted in a channel, oldest first."""
    return [
        m.content or ""
        for m in world.discord.messages(channel_id)
        if m.author_id == world.discord.bot_user_id and not m.deleted and not m.embeds
    ]


def deploy(pipeline: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "pipelineId": pipeline,
        "pipelineName": f"svc-{pipeline}",
        "target": "production",
        "version": "1.2.0",
        "status": status,
        **extra,
    }


async def healthz(world: World) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=world.bridge_url, timeout=10) as client:
        response = await client.get("/healthz")
    return response.status_code, response.json()


async def test_lost_deploys_channel_is_reported_and_holds_up_neither_alerts_nor_tasks(
    world: World, bridge: BridgeProcess
) -> None:
    dave = world.people.dave
    world.discord.set_bot_channel_permissions(DEPLOYS_CHANNEL_ID, deny=SEND_MESSAGES)
    await world.factory.emit("deploy.started", deploy("p1", "started"), channel="deploys:*")
    await world.factory.emit("deploy.started", deploy("p2", "started"), channel="deploys:*")
    await world.factory.emit(
        "deploy.failed", deploy("p3", "failed", error="health check failed"), channel="deploys:*"
    )
    task = await world.factory.create_task(title="production is down", priority="critical")
    await world.discord.wait_for(lambda: len(task_messages(world)) == 1, 10)
    assert task["id"] in str(task_messages(world)[0].embeds[0])

    # the failure still reached #factory-alerts, with the one outage alert
    await world.discord.wait_for(lambda: len(lines(world, ALERTS_CHANNEL_ID)) >= 2, 10)
    alerts = lines(world, ALERTS_CHANNEL_ID)
    assert sum("Deploy of **svc-p3**" in a and "health check failed" in a for a in alerts) == 1
    outage = [a for a in alerts if "cannot use a channel" in a]
    assert len(outage) == 1 and "no Send Messages in #factory-deploys" in outage[0]
    await world.discord.wait_for(
        lambda: any(
            "#factory-deploys" in (m.content or "") for m in world.discord.dm_messages(dave.id)
        ),
        10,
    )
    # each refused line was tried once: no event failed, none is retried (no outage mode
    # holding the critical task behind them)
    refused = [e for e in world.discord.errors if str(DEPLOYS_CHANNEL_ID) in e.path]
    assert [e.code for e in refused] == [50013, 50013, 50013]
    status, body = await healthz(world)
    assert status == 503
    assert body["checks"]["discord_channels"] == "down: no Send Messages in #factory-deploys"
    assert (body["events_failed"], body["events_retrying"]) == (0, 0)

    # access is back: the next deploy line is posted and ends the outage, once
    world.discord.set_bot_channel_permissions(DEPLOYS_CHANNEL_ID, deny=0)
    await world.factory.emit("deploy.succeeded", deploy("p4", "succeeded"), channel="deploys:*")
    await world.discord.wait_for(lambda: len(lines(world, DEPLOYS_CHANNEL_ID)) == 1, 10)
    assert "svc-p4" in lines(world, DEPLOYS_CHANNEL_ID)[0]

    async def healthy() -> bool:
        return (await healthz(world))[0] == 200

    await wait_until(healthy, what="/healthz 200")
    restored = [a for a in lines(world, ALERTS_CHANNEL_ID) if "can use the channel again" in a]
    assert len(restored) == 1


async def test_alerts_503_once_retries_the_event_without_a_second_deploys_line(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge()
    await bridge.start()
    # 503 is not retried by discord.py: the event fails once and the processor retries it
    world.discord.fail_next("POST", rf"/channels/{ALERTS_CHANNEL_ID}/messages$", 503, times=1)
    await world.factory.emit(
        "deploy.failed", deploy("p1", "failed", error="health check failed"), channel="deploys:*"
    )
    await world.discord.wait_for(lambda: len(lines(world, ALERTS_CHANNEL_ID)) == 1, 15)

    async def settled() -> bool:
        body = (await healthz(world))[1]
        return body["events_retrying"] == 0 and "events_failed" in body

    await wait_until(settled, what="no event waiting for a retry")
    assert any(e.status == 503 for e in world.discord.errors)
    deploys = lines(world, DEPLOYS_CHANNEL_ID)
    alerts = lines(world, ALERTS_CHANNEL_ID)
    assert len(deploys) == 1 and "health check failed" in deploys[0]
    assert alerts == deploys
    assert (await healthz(world))[1]["events_failed"] == 0
