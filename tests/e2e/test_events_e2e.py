"""Every event type the bridge receives (contract §1.6), routed end to end.

task.created / approval.pending → the task message; task.claimed, task.completed,
task.escalated, approval.approved / approval.rejected → that message is brought up to date;
pipeline.blocked, pipeline.failed, task.sla_breached, deploy.failed → #factory-alerts; deploy.* →
#factory-deploys; pipeline.created / stage_changed / completed → #factory-feed. Optional
channels that are not set are not posted to; other types are accepted and ignored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from bot.factory.signing import signed_headers
from sandbox.discord_emulator import RecordedMessage
from sandbox.world import (
    ALERTS_CHANNEL_ID,
    DEPLOYS_CHANNEL_ID,
    FEED_CHANNEL_ID,
    TASKS_CHANNEL_ID,
    WEBHOOK_SECRET,
    World,
)
from tests.support.harness import BridgeProcess


def posted(world: World, channel_id: int) -> list[RecordedMessage]:
    """Non-ephemeral, non-deleted messages in a channel."""
    return [m for m in world.discord.messages(channel_id) if not m.deleted and not m.ephemeral]


def task_message(world: World, task_id: str) -> RecordedMessage | None:
    """The task message (embed footer ``task <id>``) in #factory-tasks, if posted."""
    found = [
        m
        for m in posted(world, TASKS_CHANNEL_ID)
        if m.embeds
        and (m.embeds[0].get("footer") or {}).get("text", "").startswith(f"task {task_id}")
    ]
    assert len(found) <= 1, f"task {task_id} has {len(found)} messages"
    return found[0] if found else None


def fields(message: RecordedMessage) -> dict[str, str]:
    return {f["name"]: f["value"] for f in message.embeds[0].get("fields", [])}


async def shown(world: World, task_id: str) -> RecordedMessage:
    await world.discord.wait_for(lambda: task_message(world, task_id) is not None, 10)
    message = task_message(world, task_id)
    assert message is not None
    return message


async def deliver(world: World, envelope: dict[str, Any], event_id: str) -> int:
    """POST a signed webhook by hand; the HTTP status."""
    body = json.dumps(envelope).encode()
    headers = signed_headers(WEBHOOK_SECRET, body, event_id=event_id, timestamp=int(time.time()))
    headers["Content-Type"] = "application/json"
    async with httpx.AsyncClient(base_url=world.bridge_url) as client:
        response = await client.post("/events", content=body, headers=headers)
    return response.status_code


async def test_task_and_approval_events_create_and_update_one_message_each(
    world: World, bridge: BridgeProcess
) -> None:
    factory = world.factory
    # task.created → a message
    created = await factory.create_task(title="created via task.created")
    await shown(world, created["id"])
    # approval.pending without a task → the bridge reads the task and posts it
    pending = await factory.create_task(title="created via approval.pending", emit=False)
    await factory.emit(
        "approval.pending",
        {"approval": {"id": "apr-1", "taskId": pending["id"], "status": "pending"}},
    )
    await shown(world, pending["id"])

    # task.claimed → acknowledged on the message
    claimed = factory.tasks[created["id"]]
    claimed.update(status="claimed", claimedBy="user-erin", claimedAt=claimed["createdAt"])
    await factory.emit("task.claimed", {"task": claimed})
    message = await shown(world, created["id"])
    await world.discord.wait_for(lambda: "user-erin" in fields(message).get("Status", ""), 10)

    # task.escalated → the new snapshot (priority raised) is shown
    escalated = factory.tasks[pending["id"]]
    escalated.update(priority="critical", escalationLevel=2)
    await factory.emit("task.escalated", {"task": escalated})
    pending_message = await shown(world, pending["id"])
    await world.discord.wait_for(
        lambda: fields(pending_message).get("Priority") == "🔴 Critical", 10
    )

    # task.completed → the decision is shown and the buttons go
    await factory.decide_task(created["id"], "approved", decided_by="user-dashboard")
    await world.discord.wait_for(lambda: "Approved" in fields(message).get("Decision", ""), 10)
    assert message.button_labels == []

    # approval.rejected without a task → read from the factory, decision shown
    await factory.decide_task(pending["id"], "rejected", notes="not ready", emit=False)
    await factory.emit(
        "approval.rejected",
        {"approval": {"id": "apr-1", "taskId": pending["id"], "status": "rejected"}},
    )
    await world.discord.wait_for(
        lambda: "Rejected" in fields(pending_message).get("Decision", ""), 10
    )

    # approval.approved carrying the task
    third = await factory.create_task(title="approved via approval.approved")
    third_message = await shown(world, third["id"])
    decided = await factory.decide_task(third["id"], "approved", emit=False)
    await factory.emit(
        "approval.approved",
        {
            "approval": {"id": "apr-3", "taskId": third["id"], "status": "approved"},
            "task": decided,
        },
    )
    await world.discord.wait_for(
        lambda: "Approved" in fields(third_message).get("Decision", ""), 10
    )

    # one message per task, nothing in the other channels
    assert len([m for m in posted(world, TASKS_CHANNEL_ID) if m.embeds]) == 3
    assert posted(world, DEPLOYS_CHANNEL_ID) == []
    assert posted(world, FEED_CHANNEL_ID) == []


async def test_alert_deploy_and_feed_events_go_to_their_channels(
    world: World, bridge: BridgeProcess
) -> None:
    factory = world.factory
    pipeline = factory.create_pipeline(name="ghl-mcp-server")
    task = await factory.create_task(title="blocking review", pipelineId=pipeline["id"])
    await shown(world, task["id"])
    channel = f"pipeline:{pipeline['id']}"

    await factory.emit(
        "pipeline.blocked",
        {
            "pipelineId": pipeline["id"],
            "pipelineName": "ghl-mcp-server",
            "blockedAt": "review",
            "reason": "waiting for a human review",
            "taskId": task["id"],
        },
        channel=channel,
    )
    await factory.emit(
        "pipeline.failed",
        {"pipeline": {**pipeline, "status": "failed"}, "reason": "tests failed"},
        channel=channel,
    )
    await factory.emit("task.sla_breached", factory.sla_payload(task["id"]))
    deploy = {
        "pipelineId": pipeline["id"],
        "pipelineName": "ghl-mcp-server",
        "target": "production",
        "version": "1.4.0",
    }
    await factory.emit("deploy.started", {**deploy, "status": "started"}, channel="deploys:*")
    await factory.emit(
        "deploy.succeeded",
        {**deploy, "status": "succeeded", "url": "https://ghl.example.com"},
        channel="deploys:*",
    )
    await factory.emit(
        "deploy.failed",
        {**deploy, "status": "failed", "error": "health check failed"},
        channel="deploys:*",
    )
    await factory.emit("pipeline.created", {"pipeline": pipeline}, channel=channel)
    await factory.emit(
        "pipeline.stage_changed",
        {
            "pipelineId": pipeline["id"],
            "pipelineName": "ghl-mcp-server",
            "fromStage": "review",
            "toStage": "staging",
            "triggeredBy": "agent-qa",
        },
        channel=channel,
    )
    await factory.emit(
        "pipeline.completed", {"pipeline": {**pipeline, "status": "completed"}}, channel=channel
    )

    def contents(channel_id: int) -> list[str]:
        return [m.content for m in posted(world, channel_id)]

    def feed_lines() -> list[str]:  # feed posts are coalesced: several lines per message
        return [line for text in contents(FEED_CHANNEL_ID) for line in text.split("\n")]

    await world.discord.wait_for(lambda: len(feed_lines()) >= 3, 10)
    await world.discord.wait_for(lambda: len(contents(DEPLOYS_CHANNEL_ID)) >= 3, 10)
    await world.discord.wait_for(lambda: len(contents(ALERTS_CHANNEL_ID)) >= 4, 10)
    alerts = contents(ALERTS_CHANNEL_ID)
    assert len(alerts) == 4
    assert "blocked" in alerts[0] and "waiting for a human review" in alerts[0]
    assert "failed" in alerts[1].lower() and "tests failed" in alerts[1]
    assert "SLA breached" in alerts[2] and "blocking review" in alerts[2]
    assert "failed" in alerts[3] and "health check failed" in alerts[3]  # deploys and alerts
    deploys = contents(DEPLOYS_CHANNEL_ID)
    assert len(deploys) == 3
    assert "started" in deploys[0] and "1.4.0" in deploys[0]
    assert "succeeded" in deploys[1] and "https://ghl.example.com" in deploys[1]
    assert "failed" in deploys[2] and "health check failed" in deploys[2]
    feed = feed_lines()
    assert len(feed) == 3
    assert "created" in feed[0].lower()
    assert "review → staging" in feed[1]
    assert "completed" in feed[2].lower()
    # only the SLA breach pings (like the ladder's); the tasks channel has just the task message
    pings = [m.content for m in posted(world, ALERTS_CHANNEL_ID) if m.mentions_everyone]
    assert pings == [alerts[2]]
    for channel_id in (DEPLOYS_CHANNEL_ID, FEED_CHANNEL_ID):
        assert not any(m.mentions_everyone for m in posted(world, channel_id))
    assert len(posted(world, TASKS_CHANNEL_ID)) == 1


async def test_unset_optional_channels_and_other_types_post_nothing(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(DISCORD_DEPLOYS_CHANNEL_ID=None, DISCORD_FEED_CHANNEL_ID=None)
    await bridge.start()
    factory = world.factory
    pipeline = factory.create_pipeline(name="stripe-mcp")
    deploy = {
        "pipelineId": pipeline["id"],
        "pipelineName": "stripe-mcp",
        "target": "staging",
        "version": "0.9.0",
        "status": "started",
    }
    results = await factory.emit("deploy.started", deploy, channel="deploys:*")
    assert [r.status for r in results] == [202]
    await factory.emit("pipeline.created", {"pipeline": pipeline}, channel="pipeline:*")
    # types the bridge does not act on: accepted (202 "ignored" or stored), nothing posted
    others = {
        "pipeline.updated": {"pipeline": pipeline},
        "agent.heartbeat": {"agentId": "a1", "agentName": "qa", "status": "idle", "health": {}},
        "agent.status_changed": {
            "agentId": "a1",
            "agentName": "qa",
            "fromStatus": "idle",
            "toStatus": "active",
        },
        "asset.created": {"assetId": "x"},
        "feedback.received": {"feedbackId": "f1", "pipelineId": None, "modalType": "review"},
        "notification.whatever": {"anything": True},
    }
    for type_, data in others.items():
        status = await deliver(
            world,
            {"type": type_, "timestamp": "2026-11-21T10:00:00Z", "channel": "x", "data": data},
            f"evt-{type_}",
        )
        assert status == 202, type_
    task = await factory.create_task(title="marker", emit=False)
    await factory.emit("task.sla_warning", factory.sla_payload(task["id"]))
    await factory.emit("task.created", {"task": task}, channel="tasks:pending")
    await shown(world, task["id"])  # every earlier event was handled before this one
    assert posted(world, DEPLOYS_CHANNEL_ID) == []
    assert posted(world, FEED_CHANNEL_ID) == []
    assert posted(world, ALERTS_CHANNEL_ID) == []
    assert len(posted(world, TASKS_CHANNEL_ID)) == 1


async def test_same_event_content_under_two_ids_is_acted_on_once(
    world: World, bridge: BridgeProcess
) -> None:
    """What a webhook + WebSocket double delivery looks like to the bridge."""
    envelope = {
        "type": "deploy.succeeded",
        "timestamp": "2026-11-21T10:00:00.000Z",
        "channel": "deploys:*",
        "data": {
            "pipelineId": "p1",
            "pipelineName": "shopify-mcp",
            "target": "production",
            "version": "2.0.0",
            "status": "succeeded",
        },
    }
    assert await deliver(world, envelope, "evt-a") == 202
    assert await deliver(world, envelope, "evt-b") == 202
    marker = await world.factory.create_task(title="marker")
    await shown(world, marker["id"])
    assert len(posted(world, DEPLOYS_CHANNEL_ID)) == 1
