"""The channel map by default (reference 002 §6.2) and the factory's own SLA events.

Failures (``deploy.failed``, ``pipeline.failed``, an agent turning ``error``) reach the alerts
channel whatever else is configured; the factory's ``task.sla_breached`` / ``task.sla_warning``
ping like the ladder's and are announced once per moment, whoever (ladder or factory) is first.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.store import Store
from sandbox.discord_emulator import RecordedMessage
from sandbox.world import ALERTS_CHANNEL_ID, DEPLOYS_CHANNEL_ID, TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess, wait_until


def posted(world: World, channel_id: int) -> list[RecordedMessage]:
    return [
        m
        for m in world.discord.messages(channel_id)
        if m.author_id == world.discord.bot_user_id and not m.deleted and not m.ephemeral
    ]


def lines(world: World, channel_id: int) -> list[str]:
    """Plain-text (non-task) messages in a channel."""
    return [m.content for m in posted(world, channel_id) if not m.embeds]


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


DEPLOY: dict[str, Any] = {
    "pipelineId": "p1",
    "pipelineName": "stripe-mcp",
    "target": "production",
    "version": "1.2.0",
    "status": "failed",
    "error": "health check failed",
}


def agent(to_status: str) -> dict[str, Any]:
    return {
        "agentId": "a1",
        "agentName": "builder-7",
        "fromStatus": "active",
        "toStatus": to_status,
        "currentTaskId": None,
    }


async def test_failures_reach_the_alerts_fallback_with_only_the_tasks_channel(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(
        DISCORD_ALERTS_CHANNEL_ID=None,
        DISCORD_DEPLOYS_CHANNEL_ID=None,
        DISCORD_FEED_CHANNEL_ID=None,
    )
    await bridge.start()
    factory = world.factory
    pipeline = factory.create_pipeline(name="shopify-mcp")
    await factory.emit("deploy.started", {**DEPLOY, "status": "started"}, channel="deploys:*")
    await factory.emit("deploy.failed", DEPLOY, channel="deploys:*")
    await factory.emit(
        "pipeline.failed", {"pipeline": pipeline, "reason": "tests red"}, channel="pipeline:*"
    )
    await factory.emit("agent.status_changed", agent("idle"), channel="agents:*")
    await factory.emit("agent.status_changed", agent("error"), channel="agents:*")
    await world.discord.wait_for(lambda: len(lines(world, TASKS_CHANNEL_ID)) >= 3, 10)
    marker = await factory.create_task(title="marker")
    await world.discord.wait_for(
        lambda: any(marker["id"] in str(m.components) for m in posted(world, TASKS_CHANNEL_ID)), 10
    )
    shown = lines(world, TASKS_CHANNEL_ID)
    assert len(shown) == 3, shown  # deploy.started and the idle agent are not alerts
    assert "💥 Deploy of **stripe-mcp**" in shown[0] and "health check failed" in shown[0]
    assert "Pipeline failed: **shopify-mcp**" in shown[1]
    assert "Agent **builder-7** is now error (was active)" in shown[2]
    for channel in (ALERTS_CHANNEL_ID, DEPLOYS_CHANNEL_ID):
        assert posted(world, channel) == []


async def test_deploy_failed_goes_to_deploys_and_alerts(
    world: World, bridge: BridgeProcess
) -> None:
    await world.factory.emit("deploy.failed", DEPLOY, channel="deploys:*")
    await world.factory.emit("deploy.succeeded", {**DEPLOY, "status": "succeeded"})
    await world.discord.wait_for(lambda: len(lines(world, DEPLOYS_CHANNEL_ID)) == 2, 10)
    await world.discord.wait_for(lambda: len(lines(world, ALERTS_CHANNEL_ID)) == 1, 10)
    assert "health check failed" in lines(world, ALERTS_CHANNEL_ID)[0]


async def test_factory_breach_pings_once_and_the_ladder_does_not_repeat_it(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    """The factory's breach comes first: one alert with @here; the ladder's own breach step at
    the deadline sends no second alert."""
    bridge = make_bridge(ESCALATION_CRITICAL_AFTER_BREACH_SECONDS=60)
    await bridge.start()
    now = datetime.now(UTC)
    task = await world.factory.create_task(
        title="Breach me", priority="high", slaDeadline=iso(now + timedelta(seconds=4))
    )
    await world.discord.wait_for(
        lambda: any(task["id"] in str(m.components) for m in posted(world, TASKS_CHANNEL_ID)), 10
    )
    sla = world.factory.sla_payload(task["id"])
    await world.factory.emit("task.sla_breached", sla)
    await world.discord.wait_for(lambda: len(lines(world, ALERTS_CHANNEL_ID)) == 1, 10)
    alert = posted(world, ALERTS_CHANNEL_ID)[0]
    assert "🚨 SLA breached @here" in alert.content and "reported by the factory" in alert.content
    assert alert.mentions_everyone
    # the same breach again from the factory: not posted twice
    await world.factory.emit("task.sla_breached", {**sla, "minutesRemaining": -1})
    store = Store(world.database_url)
    try:

        async def ladder_took_breach() -> bool:
            entries = await store.audit_entries(task_id=task["id"])
            return any(e.action == "escalation.sla_breach" for e in entries) and any(
                e.action == "alert.sla_breached" and e.outcome == "skipped" for e in entries
            )

        await wait_until(ladder_took_breach, timeout=15, what="the ladder's breach step")
        await wait_until(
            lambda: len(world.twilio.messages) >= 1, timeout=10, what="the breach SMS still sent"
        )
    finally:
        await store.close()
    assert len(lines(world, ALERTS_CHANNEL_ID)) == 1


async def test_ladder_breach_first_then_factory_breach_is_not_posted(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(ESCALATION_CRITICAL_AFTER_BREACH_SECONDS=60)
    await bridge.start()
    past = datetime.now(UTC) - timedelta(seconds=5)
    task = await world.factory.create_task(
        title="Already late", priority="high", createdAt=iso(past), slaDeadline=iso(past)
    )
    await world.discord.wait_for(lambda: len(lines(world, ALERTS_CHANNEL_ID)) == 1, 15)
    assert "reported by the factory" not in lines(world, ALERTS_CHANNEL_ID)[0]
    await world.factory.emit("task.sla_breached", world.factory.sla_payload(task["id"]))
    marker = await world.factory.create_task(title="marker")
    await world.discord.wait_for(
        lambda: any(marker["id"] in str(m.components) for m in posted(world, TASKS_CHANNEL_ID)), 10
    )
    store = Store(world.database_url)
    try:

        async def skipped() -> bool:
            entries = await store.audit_entries(task_id=task["id"])
            return any(
                e.action == "alert.sla_breached"
                and e.outcome == "skipped"
                and "escalation ladder" in (e.detail or "")
                for e in entries
            )

        await wait_until(skipped, timeout=10, what="the factory breach skipped")
    finally:
        await store.close()
    assert len(lines(world, ALERTS_CHANNEL_ID)) == 1


async def test_factory_warning_replies_on_the_task_with_a_ping(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(ESCALATION_ENABLED="false")
    await bridge.start()
    now = datetime.now(UTC)
    task = await world.factory.create_task(
        title="Warn me", priority="high", slaDeadline=iso(now + timedelta(hours=1))
    )
    await world.discord.wait_for(
        lambda: any(task["id"] in str(m.components) for m in posted(world, TASKS_CHANNEL_ID)), 10
    )
    message = next(m for m in posted(world, TASKS_CHANNEL_ID) if task["id"] in str(m.components))
    sla = world.factory.sla_payload(task["id"])
    await world.factory.emit("task.sla_warning", sla)
    await world.factory.emit("task.sla_warning", {**sla, "minutesRemaining": 58})

    def warnings() -> list[RecordedMessage]:
        return [m for m in posted(world, TASKS_CHANNEL_ID) if "SLA breach imminent" in m.content]

    await world.discord.wait_for(lambda: len(warnings()) == 1, 10)
    marker = await world.factory.create_task(title="marker")
    await world.discord.wait_for(
        lambda: any(marker["id"] in str(m.components) for m in posted(world, TASKS_CHANNEL_ID)), 10
    )
    [warning] = warnings()
    assert warning.mentions_everyone and "@here" in warning.content
    assert warning.message_reference is not None
    assert int(warning.message_reference["message_id"]) == message.id
