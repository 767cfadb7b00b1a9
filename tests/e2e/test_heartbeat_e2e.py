"""The dead man's switch end to end: ``HEARTBEAT_URL`` is pinged while the bridge is healthy,
never while its Discord session is down, and again once it is back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from aiohttp import web

from sandbox.world import World
from tests.support.harness import BridgeProcess, wait_until


class Monitor:
    """A heartbeat monitor on 127.0.0.1 that counts the pings it gets."""

    def __init__(self) -> None:
        self.pings = 0
        self.url = ""

    async def ping(self, request: web.Request) -> web.Response:
        self.pings += 1
        return web.Response(text="OK")


@pytest.fixture()
async def monitor() -> AsyncIterator[Monitor]:
    mon = Monitor()
    app = web.Application()
    app.router.add_get("/ping/bridge", mon.ping)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    mon.url = f"http://127.0.0.1:{port}/ping/bridge"
    yield mon
    await runner.cleanup()


def withheld(bridge: BridgeProcess) -> int:
    return bridge.log_tail(100_000).count("heartbeat withheld")


async def discord_check(bridge: BridgeProcess) -> str:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"http://127.0.0.1:{bridge.port}/healthz")
    return str(response.json()["checks"]["discord"])


async def test_pinged_while_healthy_not_while_discord_is_down_and_again_after(
    world: World, make_bridge: Callable[..., BridgeProcess], monitor: Monitor
) -> None:
    bridge = make_bridge(HEARTBEAT_URL=monitor.url, HEARTBEAT_INTERVAL_SECONDS=0.2)
    await bridge.start()
    await wait_until(lambda: monitor.pings >= 3, timeout=10, what="heartbeat pings")

    async def metric_set() -> bool:
        async with httpx.AsyncClient(timeout=5) as client:
            text = (await client.get(f"http://127.0.0.1:{bridge.port}/metrics")).text
        line = next(
            line
            for line in text.splitlines()
            if line.startswith("factory_bridge_heartbeat_last_success_timestamp_seconds ")
        )
        return float(line.split()[1]) > 0

    await wait_until(metric_set, timeout=5, what="the heartbeat metric")

    await world.discord.gateway_outage()
    await wait_until(lambda: withheld(bridge) >= 1, timeout=10, what="a withheld heartbeat")
    pings_when_down = monitor.pings
    await wait_until(lambda: withheld(bridge) >= 4, timeout=10, what="more withheld heartbeats")
    assert monitor.pings == pings_when_down
    assert await discord_check(bridge) != "up"
    assert "discord down" in bridge.log_tail(100_000)

    await world.discord.gateway_outage(down=False)
    await wait_until(
        lambda: monitor.pings >= pings_when_down + 2, timeout=60, what="pings after recovery"
    )
    assert await discord_check(bridge) == "up"


async def test_discord_down_past_the_threshold_sends_one_sms_to_the_admin_then_one_recovered(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    dave_phone = "+15550100002"  # the on-call admin of the sandbox roster
    bridge = make_bridge(SELF_ALERT_AFTER_SECONDS=1, ESCALATION_ENABLED="false")
    await bridge.start()
    await world.discord.gateway_outage()

    def to_dave() -> list[dict]:
        return [m for m in world.twilio.messages if m["to"] == dave_phone]

    await wait_until(lambda: len(to_dave()) >= 1, timeout=15, what="the self-alert SMS")
    alert = to_dave()[0]
    assert "cannot reach Discord since" in alert["body"]
    assert "decisions are not being delivered" in alert["body"]
    assert all(m["to"] == dave_phone for m in world.twilio.messages)  # only the admin

    await world.discord.gateway_outage(down=False)
    await wait_until(lambda: len(to_dave()) >= 2, timeout=60, what="the recovered SMS")
    assert "reachable again" in to_dave()[1]["body"]
    assert len(to_dave()) == 2  # one alert, one recovery: no repeats


async def test_twilio_failing_is_posted_in_the_alerts_channel_once_then_its_recovery(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    from datetime import UTC, datetime, timedelta

    from sandbox.world import ALERTS_CHANNEL_ID

    def iso(at: datetime) -> str:
        return at.isoformat().replace("+00:00", "Z")

    bridge = make_bridge(
        ESCALATION_DM_AFTER_SECONDS=1,
        ESCALATION_MENTION_AFTER_SECONDS=2,
        ESCALATION_CRITICAL_AFTER_BREACH_SECONDS=2,
        ESCALATION_BUNDLE_SECONDS=1,
    )
    await bridge.start()
    world.twilio.fail_next("messages", status=503, times=1000)  # every SMS fails; calls work
    now = datetime.now(UTC)
    await world.factory.create_task(
        title="Stripe MCP Server → Production",
        priority="high",
        createdAt=iso(now),
        slaDeadline=iso(now + timedelta(seconds=3)),
    )

    def twilio_posts(text: str) -> list:
        return [m for m in world.discord.messages(ALERTS_CHANNEL_ID) if text in (m.content or "")]

    await world.discord.wait_for(
        lambda: len(twilio_posts("cannot send SMS or calls through Twilio")) >= 1, 30
    )
    assert "503" in twilio_posts("cannot send SMS or calls through Twilio")[0].content
    # the critical step's call goes through: Twilio works again, said once
    await world.discord.wait_for(lambda: len(twilio_posts("through Twilio again")) >= 1, 30)
    assert len(twilio_posts("cannot send SMS or calls through Twilio")) == 1
