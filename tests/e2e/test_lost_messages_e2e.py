"""Discord as it really behaves when messages and channels disappear, end to end.

A person deletes a task message (gateway ``MESSAGE_DELETE``): a task that still needs a decision
is posted again once, with "(reposted: the earlier message was deleted)", and its buttons work.
The bot loses Send Messages in #factory-tasks (Discord: 50013): the task stays pending, the
alerts channel and the on-call admin (dave) are told, ``/healthz`` says so, and the task is
posted by itself once the permission is back. An answer after the interaction token's
15 minutes (Discord: 10015 Unknown Webhook, emulator clock) comes by DM.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from bot.store import Store
from sandbox.discord_emulator import SEND_MESSAGES, RecordedMessage
from sandbox.world import ALERTS_CHANNEL_ID, TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess, wait_until
from tests.support.reading import fields, task_messages

#: the decision, ladder, restart and lost-message paths run on PostgreSQL too
pytestmark = pytest.mark.both_engines

COMPLETE = r"/v1/tasks/[^/]+/complete"
REPOSTED = "(reposted: the earlier message was deleted)"


async def audit_actions(world: World, task_id: str) -> list[tuple[str, str]]:
    """(action, outcome) of the task's audit entries, read from the bridge's database."""
    store = Store(world.database_url)
    try:
        entries = await store.audit_entries(task_id=task_id)
    finally:
        await store.close()
    return [(e.action, e.outcome) for e in entries]


async def healthz(world: World) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=world.bridge_url, timeout=10) as client:
        response = await client.get("/healthz")
    return response.status_code, response.json()


async def release_task(world: World) -> dict[str, Any]:
    return await world.factory.create_task(
        title="GHL MCP Server v1.4 release",
        priority="high",
        type="approval",
        stageName="review",
        context={"summary": "Release GHL MCP server v1.4."},
    )


async def first_message(world: World) -> RecordedMessage:
    await world.discord.wait_for(lambda: len(task_messages(world)) >= 1, 10)
    return task_messages(world)[0]


async def test_deleted_task_message_is_reposted_once_and_its_buttons_work(
    world: World, bridge: BridgeProcess
) -> None:
    task = await release_task(world)
    original = await first_message(world)
    await world.discord.delete_message(TASKS_CHANNEL_ID, original.id)
    await world.discord.wait_for(lambda: len(task_messages(world)) == 1, 10)
    repost = task_messages(world)[0]
    assert repost.id != original.id
    assert repost.content == REPOSTED
    assert "GHL MCP Server v1.4 release" in repost.embeds[0]["title"]
    assert "Approve" in repost.button_labels
    # deleting the repost reposts again, once per deletion (never a loop)
    await world.discord.delete_message(TASKS_CHANNEL_ID, repost.id)
    await world.discord.wait_for(
        lambda: len(task_messages(world)) == 1 and task_messages(world)[0].id != repost.id, 10
    )
    second = task_messages(world)[0]
    await wait_until(
        lambda: _count(audit_actions(world, task["id"]), ("message.reposted", "ok"), 2),
        what="two reposts audited",
    )
    shown = [m for m in world.discord.messages(TASKS_CHANNEL_ID) if m.embeds]
    assert len(shown) == 3  # the original and two reposts, nothing more
    # the reposted message's buttons decide the task, and it shows the decision
    click = await world.discord.press_button(
        TASKS_CHANNEL_ID, "Approve", user=world.people.alice, message_id=second.id
    )
    await click.response()
    await wait_until(lambda: world.factory.tasks[task["id"]]["status"] == "completed")
    await world.discord.wait_for(lambda: "Approved" in fields(second).get("Decision", ""), 10)
    assert len(world.factory.calls("POST", COMPLETE)) == 1
    # a decided task's deleted message is not posted again
    await world.discord.delete_message(TASKS_CHANNEL_ID, second.id)
    await wait_until(
        lambda: _count(audit_actions(world, task["id"]), ("message.deleted", "not reposted"), 1),
        what="the deletion seen",
    )
    assert task_messages(world) == []


async def _count(entries: Any, entry: tuple[str, str], n: int) -> bool:
    return (await entries).count(entry) == n


async def test_lost_send_permission_alerts_then_posting_resumes(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(DISCORD_CHANNEL_RETRY_SECONDS=0.5)
    await bridge.start()
    dave = world.people.dave
    world.discord.set_bot_channel_permissions(TASKS_CHANNEL_ID, deny=SEND_MESSAGES)
    task = await release_task(world)
    # the alert goes to #factory-alerts and to the on-call admin by DM, once
    await world.discord.wait_for(
        lambda: any(
            "no Send Messages" in (m.content or "")
            for m in world.discord.messages(ALERTS_CHANNEL_ID)
        ),
        10,
    )
    await world.discord.wait_for(
        lambda: any(
            "no Send Messages" in (m.content or "") for m in world.discord.dm_messages(dave.id)
        ),
        10,
    )
    status, body = await healthz(world)
    assert status == 503
    assert body["checks"]["discord_channels"].startswith("down: no Send Messages in #")
    assert task_messages(world) == []
    assert world.factory.tasks[task["id"]]["status"] == "pending"
    assert any(e.code == 50013 for e in world.discord.errors)
    # access is back: the task is posted by itself, /healthz recovers, people are told
    world.discord.set_bot_channel_permissions(TASKS_CHANNEL_ID, deny=0)
    message = await first_message(world)
    assert "GHL MCP Server v1.4 release" in message.embeds[0]["title"]
    await wait_until(lambda: _healthy(world), what="/healthz 200")
    await world.discord.wait_for(
        lambda: any("again" in (m.content or "") for m in world.discord.dm_messages(dave.id)), 10
    )
    alerts = [
        m
        for m in world.discord.messages(ALERTS_CHANNEL_ID)
        if "no Send Messages" in (m.content or "")
    ]
    assert len(alerts) == 2  # the outage and the recovery, not one per retry
    actions = await audit_actions(world, task["id"])
    assert ("channel.unavailable", "alerted") in actions
    assert ("channel.restored", "alerted") in actions


async def _healthy(world: World) -> bool:
    return (await healthz(world))[0] == 200


async def test_answer_after_fifteen_minutes_comes_by_dm(
    world: World, bridge: BridgeProcess
) -> None:
    alice = world.people.alice
    task = await release_task(world)
    await first_message(world)
    world.factory.delay("POST", COMPLETE, 1.0, times=1)
    click = await world.discord.press_button(TASKS_CHANNEL_ID, "Approve", user=alice)
    await click.response()  # acknowledged within 3 s ("⏳ …")
    # the factory takes its time; meanwhile Discord's 15 minutes pass (emulator clock)
    world.discord.advance(16 * 60)
    await wait_until(lambda: world.factory.tasks[task["id"]]["status"] == "completed")
    await world.discord.wait_for(
        lambda: any(
            "approved" in (m.content or "").lower() for m in world.discord.dm_messages(alice.id)
        ),
        15,
    )
    dm = next(
        m for m in world.discord.dm_messages(alice.id) if "approved" in (m.content or "").lower()
    )
    assert "15-minute" in (dm.content or "")
    assert any(e.code == 10015 for e in world.discord.errors)


def batch_messages(world: World) -> list[RecordedMessage]:
    """Batch messages (embed title starting with 📋) still shown in #factory-tasks."""
    return [
        m
        for m in world.discord.messages(TASKS_CHANNEL_ID)
        if not m.deleted and m.embeds and m.embeds[0]["title"].startswith("📋")
    ]


async def test_deleted_batch_message_is_reposted_once_and_its_buttons_work(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(BATCH_ENABLED="true", BATCH_GROUP_WAIT_SECONDS="1")
    await bridge.start()
    results = {"total": 47, "passed": 47, "failed": 0, "skipped": 0, "coveragePercent": 90}
    tasks = [
        await world.factory.create_task(
            title=name,
            type="review",
            stageName="review",
            priority="medium",
            pipelineId=f"{name}-mcp-server",
            context={"summary": f"Review {name}.", "testResults": results},
        )
        for name in ("freshdesk", "helpscout")
    ]
    await world.discord.wait_for(lambda: len(batch_messages(world)) == 1, 15)
    original = batch_messages(world)[0]
    await world.discord.wait_for(
        lambda: "Approve All Low-Risk (2)" in batch_messages(world)[0].button_labels, 10
    )
    await world.discord.delete_message(TASKS_CHANNEL_ID, original.id)
    await world.discord.wait_for(lambda: len(batch_messages(world)) == 1, 10)
    repost = batch_messages(world)[0]
    assert repost.id != original.id and repost.content == REPOSTED
    for task in tasks:  # the bridge has moved the items to the new message
        await wait_until(
            lambda t=task: _count(audit_actions(world, t["id"]), ("message.reposted", "ok"), 1),
            what="the repost recorded",
        )
    click = await world.discord.press_button(
        TASKS_CHANNEL_ID, "Approve All Low-Risk (2)", user=world.people.alice
    )
    await click.response()
    await world.discord.wait_for(lambda: "Approved 2" in (click.reply_content or ""), 10)
    for task in tasks:
        assert world.factory.tasks[task["id"]]["decision"] == "approved"
    assert len([m for m in world.discord.messages(TASKS_CHANNEL_ID) if m.embeds]) == 2
