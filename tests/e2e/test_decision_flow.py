"""The decision flow end to end, with ``factory-bridge run`` as a separate process.

factory event → embed with buttons → a click decides it → every message tells the truth.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest

from bot.factory.signing import signed_headers
from sandbox.discord_emulator import RecordedMessage
from sandbox.world import TASKS_CHANNEL_ID, WEBHOOK_SECRET, World
from tests.support.harness import BridgeProcess, wait_until
from tests.support.reading import fields, task_messages

#: the decision, ladder, restart and lost-message paths run on PostgreSQL too
pytestmark = pytest.mark.both_engines

COMPLETE = r"/v1/tasks/[^/]+/complete"


async def ghl_task(world: World, **overrides: object) -> dict:
    """The reference's GHL production deploy: critical, 47/47 tests, 94% coverage."""
    fields_: dict[str, object] = {
        "title": "GHL MCP Server → Production",
        "priority": "critical",
        "stageName": "staging",
        "type": "approval",
        "pipelineId": "ghl-mcp-server",
        "context": {
            "summary": "Deploy GHL MCP server to production.",
            "testResults": {
                "total": 47,
                "passed": 47,
                "failed": 0,
                "skipped": 0,
                "coveragePercent": 94,
            },
        },
    }
    fields_.update(overrides)
    return await world.factory.create_task(**fields_)


async def ghl_release(world: World, **overrides: object) -> dict:
    """An ordinary GHL release approval at the review gate: nothing points at production, so
    one approver decides it with one click (production deploys: test_deploy_guard_e2e.py)."""
    fields_: dict[str, object] = {
        "title": "GHL MCP Server v1.4 release",
        "stageName": "review",
        "context": {"summary": "Release GHL MCP server v1.4."},
    }
    fields_.update(overrides)
    return await ghl_task(world, **fields_)


async def one_message(world: World) -> RecordedMessage:
    await world.discord.wait_for(lambda: len(task_messages(world)) >= 1, 10)
    return task_messages(world)[0]


async def test_task_created_posts_one_embed_with_fields_and_buttons(
    world: World, bridge: BridgeProcess
) -> None:
    task = await ghl_task(world)
    message = await one_message(world)
    embed = message.embeds[0]
    assert "GHL MCP Server → Production" in embed["title"]
    assert embed["color"] == 0xE74C3C  # critical
    f = fields(message)
    assert f["Pipeline"] == "ghl-mcp-server"
    assert f["Stage"] == "staging → production"  # a deploy shows its transition (§6.2)
    assert f["Priority"] == "🔴 Critical"
    assert f["Tests"] == "✅ 47/47 passing"
    assert f["Coverage"] == "✅ 94%"
    assert f["SLA Deadline"].startswith("<t:") and f["SLA Deadline"].endswith(":R>")
    assert embed["description"] == "Deploy GHL MCP server to production."
    assert {"Approve", "Reject", "Details"} <= set(message.button_labels)
    assert task["id"] in json.dumps(message.components)


async def test_approver_click_decides_once_and_message_shows_who(
    world: World, bridge: BridgeProcess
) -> None:
    alice = world.people.alice
    task = await ghl_release(world)
    message = await one_message(world)
    click = await world.discord.press_button(TASKS_CHANNEL_ID, "Approve", user=alice)
    first = await click.response()
    assert first.ephemeral  # acknowledged at once, only alice sees it
    await wait_until(lambda: world.factory.tasks[task["id"]]["status"] == "completed")
    await world.discord.wait_for(lambda: "Approved" in fields(message).get("Decision", ""), 10)
    calls = world.factory.calls("POST", COMPLETE)
    assert len(calls) == 1
    body = calls[0].json
    assert body["decision"] == "approved"
    assert body["decisionData"] == {
        "source": "discord",
        "discordUserId": str(alice.id),
        "discordUsername": "alice",
        "factoryUserId": "user-alice",
    }
    assert calls[0].header("Idempotency-Key")
    assert f"<@{alice.id}>" in fields(message)["Decision"]
    assert message.button_labels == []  # buttons removed
    await world.discord.wait_for(lambda: "approved" in (click.reply_content or ""), 10)


async def test_reject_opens_modal_and_sends_reason(world: World, bridge: BridgeProcess) -> None:
    task = await ghl_task(world, title="Stripe MCP Server code review", priority="high")
    message = await one_message(world)
    click = await world.discord.press_button(TASKS_CHANNEL_ID, "Reject", user=world.people.alice)
    await click.response()
    assert click.modal is not None
    submit = await world.discord.submit_modal(click, {"reason": "Webhook retries are missing."})
    await submit.response()
    await wait_until(lambda: world.factory.tasks[task["id"]]["status"] == "completed")
    body = world.factory.calls("POST", COMPLETE)[0].json
    assert body["decision"] == "rejected"
    assert body["notes"] == "Webhook retries are missing."
    await world.discord.wait_for(lambda: "Rejected" in fields(message).get("Decision", ""), 10)
    assert "Webhook retries are missing." in fields(message)["Decision"]


async def test_member_without_role_is_refused_and_factory_untouched(
    world: World, bridge: BridgeProcess
) -> None:
    await ghl_task(world)
    message = await one_message(world)
    click = await world.discord.press_button(TASKS_CHANNEL_ID, "Approve", user=world.people.bob)
    answer = await click.response()
    assert answer.ephemeral
    assert "approver role" in (answer.content or "")
    assert world.factory.calls("POST", COMPLETE) == []
    assert "Approve" in message.button_labels


async def test_same_event_twice_gives_one_message(world: World, bridge: BridgeProcess) -> None:
    task = await world.factory.create_task(title="freshdesk ready for review", emit=False)
    envelope = {
        "type": "task.created",
        "timestamp": "2026-11-21T10:00:00Z",
        "channel": "tasks:pending",
        "data": {"task": task},
    }
    body = json.dumps(envelope).encode()
    headers = signed_headers(WEBHOOK_SECRET, body, event_id="evt-1", timestamp=int(time.time()))
    headers["Content-Type"] = "application/json"
    async with httpx.AsyncClient(base_url=world.bridge_url) as client:
        first = await client.post("/events", content=body, headers=headers)
        second = await client.post("/events", content=body, headers=headers)
        # the same task in a new event (e.g. a replay) must not post a second message either
        headers2 = signed_headers(
            WEBHOOK_SECRET, body, event_id="evt-2", timestamp=int(time.time())
        )
        headers2["Content-Type"] = "application/json"
        third = await client.post("/events", content=body, headers=headers2)
    assert (first.status_code, second.status_code, third.status_code) == (202, 200, 202)
    await one_message(world)
    # the third event was processed once the healthz-visible queue drains; post one more task
    # and wait for it, so that anything the duplicate would have posted has been posted
    await world.factory.create_task(title="marker")
    await world.discord.wait_for(lambda: len(task_messages(world)) >= 2, 10)
    titles = [m.embeds[0]["title"] for m in task_messages(world)]
    assert sum("freshdesk" in t for t in titles) == 1


async def test_bad_signature_is_401_and_posts_nothing(world: World, bridge: BridgeProcess) -> None:
    task = await world.factory.create_task(title="should not appear", emit=False)
    body = json.dumps(
        {"type": "task.created", "timestamp": "2026-11-21T10:00:00Z", "data": {"task": task}}
    ).encode()
    headers = signed_headers("wrong-secret", body, event_id="evt-x", timestamp=int(time.time()))
    status = await world.factory.deliver_raw(body, headers)
    assert status == 401
    await world.factory.create_task(title="marker")
    await one_message(world)
    assert [m.embeds[0]["title"] for m in task_messages(world)] == ["🔔 Approval Required: marker"]


async def test_factory_503_twice_then_200_records_one_decision(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(FACTORY_RETRY_BASE_SECONDS="0.05")
    await bridge.start()
    task = await ghl_release(world, priority="high")
    message = await one_message(world)
    world.factory.fail("POST", COMPLETE, status=503, times=2)
    click = await world.discord.press_button(TASKS_CHANNEL_ID, "Approve", user=world.people.alice)
    await click.response()
    await world.discord.wait_for(lambda: "Approved" in fields(message).get("Decision", ""), 15)
    statuses = [c.status for c in world.factory.calls("POST", COMPLETE)]
    assert statuses == [503, 503, 200]
    keys = {c.header("Idempotency-Key") for c in world.factory.calls("POST", COMPLETE)}
    assert len(keys) == 1  # the same key for every retry of the click
    assert world.factory.tasks[task["id"]]["decision"] == "approved"


async def test_slow_factory_still_acknowledged_within_deadline(
    world: World, bridge: BridgeProcess
) -> None:
    await ghl_release(world, priority="high")
    message = await one_message(world)
    world.factory.delay("POST", COMPLETE, 5.0)
    click = await world.discord.press_button(TASKS_CHANNEL_ID, "Approve", user=world.people.alice)
    first = await click.response()
    assert first.at - click.created_at < 3.0
    assert click.rejected == []
    await world.discord.wait_for(lambda: "Approved" in fields(message).get("Decision", ""), 15)


async def test_button_on_old_message_works_after_kill_and_restart(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge()
    await bridge.start()
    task = await ghl_release(world, priority="high")
    message = await one_message(world)
    await bridge.kill()
    await bridge.start()
    click = await world.discord.press_button(TASKS_CHANNEL_ID, "Approve", user=world.people.alice)
    await click.response()
    await world.discord.wait_for(lambda: "Approved" in fields(message).get("Decision", ""), 10)
    assert world.factory.tasks[task["id"]]["decision"] == "approved"
    assert len(task_messages(world)) == 1
