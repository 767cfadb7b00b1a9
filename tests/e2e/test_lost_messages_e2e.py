"""Discord as it really behaves when messages and channels disappear, end to end.

A person deletes a task message (gateway ``MESSAGE_DELETE``): a task that still needs a decision
is posted again once, with "(reposted: the earlier message was deleted)", and its buttons work.
The bot loses Send Messages in #factory-tasks (Discord: 50013): the task stays pending, the
alerts channel and the on-call admin (dave) are told, ``/healthz`` says so, and the task is
posted by itself once the permission is back; batch messages get the same handling, and an
outage says so once and its end once, whatever the bridge re-renders meanwhile. #factory-tasks
deleted (10003 Unknown Channel) and recreated: each open task is posted once in the new channel.
An answer after the interaction token's 15 minutes (Discord: 10015 Unknown Webhook, emulator
clock) comes by DM.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from bot.store import Store
from sandbox.discord_emulator import SEND_MESSAGES, VIEW_CHANNEL, RecordedMessage
from sandbox.world import ALERTS_CHANNEL_ID, FEED_CHANNEL_ID, TASKS_CHANNEL_ID, World
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


async def test_an_answer_refused_for_an_invalid_token_comes_by_dm(
    world: World, bridge: BridgeProcess
) -> None:
    """Discord refuses the edit of the original response with 401 / 50027 Invalid Webhook
    Token: the outcome comes by DM (the click's answer stayed "⏳ Recording…" for ever)."""
    alice = world.people.alice
    task = await release_task(world)
    await first_message(world)
    world.discord.fail_next(
        "PATCH",
        r"/webhooks/\d+/[^/]+/messages/@original$",
        401,
        times=10,
        body={"code": 50027, "message": "Invalid Webhook Token"},
    )
    click = await world.discord.press_button(TASKS_CHANNEL_ID, "Approve", user=alice)
    await click.response()
    await wait_until(lambda: world.factory.tasks[task["id"]]["status"] == "completed")
    await world.discord.wait_for(
        lambda: any(
            "approved" in (m.content or "").lower() for m in world.discord.dm_messages(alice.id)
        ),
        15,
    )
    assert any(e.code == 50027 for e in world.discord.errors)


def batch_messages(world: World) -> list[RecordedMessage]:
    """Batch messages (embed title starting with 📋) still shown in #factory-tasks."""
    return [
        m
        for m in world.discord.messages(TASKS_CHANNEL_ID)
        if not m.deleted and m.embeds and m.embeds[0]["title"].startswith("📋")
    ]


async def two_tasks_in_a_batch(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> list[dict[str, Any]]:
    """A batching bridge started, and two low-risk reviews shown in one batch message."""
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
    await world.discord.wait_for(
        lambda: "Approve All Low-Risk (2)" in batch_messages(world)[0].button_labels, 10
    )
    return tasks


async def test_deleted_batch_message_is_reposted_once_and_its_buttons_work(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    tasks = await two_tasks_in_a_batch(world, make_bridge)
    original = batch_messages(world)[0]
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


async def test_a_batch_repost_refused_with_a_5xx_is_tried_again(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    """Discord answers the repost of a deleted batch message with a 503 (discord.py does not
    retry it): the repost is tried again and the items show again (they stayed on no message:
    the reconciler skips items whose batch row points at a message)."""
    await two_tasks_in_a_batch(world, make_bridge)
    original = batch_messages(world)[0]
    world.discord.fail_next("POST", rf"/channels/{TASKS_CHANNEL_ID}/messages$", 503, times=1)
    await world.discord.delete_message(TASKS_CHANNEL_ID, original.id)
    await world.discord.wait_for(lambda: len(batch_messages(world)) == 1, 15)  # retry after 2 s
    repost = batch_messages(world)[0]
    assert repost.id != original.id and repost.content == REPOSTED
    assert "Approve All Low-Risk (2)" in repost.button_labels
    assert any(e.status == 503 for e in world.discord.errors)


async def test_a_batch_repost_still_owed_at_a_restart_is_made_after_it(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    """The bridge stops while the repost of a deleted batch message is still failing (Discord
    answered 503 twice): the next start reposts it. Nothing else would: the items point at the
    deleted message, so the start and the reconciler see them as shown."""
    first = make_bridge(BATCH_ENABLED="true", BATCH_GROUP_WAIT_SECONDS="1")
    await first.start()
    await routine_tasks(world, "freshdesk", "helpscout")
    await world.discord.wait_for(
        lambda: (
            len(batch_messages(world)) == 1
            and "Approve All Low-Risk (2)" in batch_messages(world)[0].button_labels
        ),
        15,
    )
    original = batch_messages(world)[0]
    # three refusals: the repost and its retries 2 s and 4 s later; the bridge is stopped
    # after the second, so whichever bridge gets the third, none posts before the restart
    world.discord.fail_next("POST", rf"/channels/{TASKS_CHANNEL_ID}/messages$", 503, times=3)
    await world.discord.delete_message(TASKS_CHANNEL_ID, original.id)
    await world.discord.wait_for(
        lambda: sum(e.status == 503 for e in world.discord.errors) >= 2, 15
    )
    await first.terminate()
    assert batch_messages(world) == []
    second = make_bridge(BATCH_ENABLED="true", BATCH_GROUP_WAIT_SECONDS="1")
    await second.start()
    await world.discord.wait_for(lambda: len(batch_messages(world)) == 1, 20)
    repost = batch_messages(world)[0]
    assert repost.content == REPOSTED
    assert "Approve All Low-Risk (2)" in repost.button_labels


def alert_lines(world: World) -> tuple[list[str], list[str]]:
    """(outage alerts, recovery messages) in #factory-alerts."""
    texts = [m.content or "" for m in world.discord.messages(ALERTS_CHANNEL_ID)]
    return (
        [t for t in texts if "cannot use a channel" in t],
        [t for t in texts if "can use the channel again" in t],
    )


async def routine_tasks(world: World, *names: str) -> list[dict[str, Any]]:
    results = {"total": 47, "passed": 47, "failed": 0, "skipped": 0, "coveragePercent": 90}
    return [
        await world.factory.create_task(
            title=name,
            type="review",
            stageName="review",
            priority="medium",
            pipelineId=f"{name}-mcp-server",
            context={"summary": f"Review {name}.", "testResults": results},
        )
        for name in names
    ]


async def test_deleted_tasks_channel_recreated_gets_each_open_task_posted_once(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    first = make_bridge()
    await first.start()
    task = await release_task(world)
    await first_message(world)
    await wait_until(
        lambda: _count(audit_actions(world, task["id"]), ("message.posted", "ok"), 1),
        what="the message recorded",
    )
    await first.terminate()
    # #factory-tasks is deleted and recreated with a new id (here: the unused feed channel's),
    # DISCORD_TASKS_CHANNEL_ID is set to it and the bridge restarted
    world.discord.delete_channel(TASKS_CHANNEL_ID)
    second = make_bridge(
        DISCORD_TASKS_CHANNEL_ID=FEED_CHANNEL_ID,
        DISCORD_FEED_CHANNEL_ID=None,
        DISCORD_CHANNEL_RETRY_SECONDS=0.5,
    )
    await second.start()
    # the next change of the task (here: bob claims it on the factory's dashboard) edits its
    # old message: 10003 Unknown Channel
    claimed = world.factory.tasks[task["id"]]
    claimed.update(status="claimed", claimedBy="user-bob", claimedAt=claimed["createdAt"])
    await world.factory.emit("task.claimed", {"task": claimed})

    def shown() -> list[RecordedMessage]:
        return [m for m in world.discord.messages(FEED_CHANNEL_ID) if m.embeds and not m.deleted]

    await world.discord.wait_for(lambda: len(shown()) == 1, 15)
    [repost] = shown()
    assert repost.content == REPOSTED
    assert "GHL MCP Server v1.4 release" in repost.embeds[0]["title"]
    assert any(e.code == 10003 for e in world.discord.errors)
    # it is the task's message now: its buttons decide, and it shows the decision
    click = await world.discord.press_button(
        FEED_CHANNEL_ID, "Approve", user=world.people.alice, message_id=repost.id
    )
    await click.response()
    await wait_until(lambda: world.factory.tasks[task["id"]]["status"] == "completed")
    await world.discord.wait_for(lambda: "Approved" in fields(repost).get("Decision", ""), 10)
    status, body = await healthz(world)
    assert status == 200 and body["checks"]["discord_channels"] == "up"
    assert alert_lines(world) == ([], [])
    assert len(shown()) == 1  # posted once, whatever retried meanwhile
    actions = await audit_actions(world, task["id"])
    assert actions.count(("message.reposted", "ok")) == 1
    assert ("channel.unavailable", "alerted") not in actions


async def test_batch_post_without_send_messages_alerts_once_and_resumes(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(
        BATCH_ENABLED="true", BATCH_GROUP_WAIT_SECONDS="1", DISCORD_CHANNEL_RETRY_SECONDS=0.5
    )
    await bridge.start()
    dave = world.people.dave
    world.discord.set_bot_channel_permissions(TASKS_CHANNEL_ID, deny=SEND_MESSAGES)
    tasks = await routine_tasks(world, "freshdesk", "helpscout")
    await world.discord.wait_for(lambda: len(alert_lines(world)[0]) == 1, 15)
    assert "no Send Messages" in alert_lines(world)[0][0]
    await world.discord.wait_for(
        lambda: any(
            "no Send Messages" in (m.content or "") for m in world.discord.dm_messages(dave.id)
        ),
        10,
    )
    status, body = await healthz(world)
    assert status == 503
    assert body["checks"]["discord_channels"].startswith("down: no Send Messages in #")
    assert batch_messages(world) == [] and task_messages(world) == []
    # access is back: the batch is posted by itself (one message, no single posts)
    world.discord.set_bot_channel_permissions(TASKS_CHANNEL_ID, deny=0)
    await world.discord.wait_for(lambda: len(batch_messages(world)) == 1, 15)
    await wait_until(lambda: _healthy(world), what="/healthz 200")
    await world.discord.wait_for(lambda: len(alert_lines(world)[1]) == 1, 10)
    assert len(task_messages(world)) == 1
    for task in tasks:  # each item points at the batch message
        await wait_until(
            lambda t=task: _count(audit_actions(world, t["id"]), ("message.posted", "ok"), 1),
            what="the item recorded",
        )
    await world.discord.wait_for(
        lambda: "Approve All Low-Risk (2)" in batch_messages(world)[0].button_labels, 10
    )
    outages, recoveries = alert_lines(world)
    assert (len(outages), len(recoveries)) == (1, 1)


async def test_lost_view_channel_on_a_batch_alerts_once_and_recovers_once(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(
        BATCH_ENABLED="true", BATCH_GROUP_WAIT_SECONDS="1", DISCORD_CHANNEL_RETRY_SECONDS=0.5
    )
    await bridge.start()
    tasks = await routine_tasks(world, "freshdesk", "helpscout", "zendesk")
    await world.discord.wait_for(
        lambda: (
            len(batch_messages(world)) == 1
            and "Approve All Low-Risk (3)" in batch_messages(world)[0].button_labels
        ),
        15,
    )
    world.discord.set_bot_channel_permissions(TASKS_CHANNEL_ID, deny=VIEW_CHANNEL)
    # decisions on the dashboard re-render the batch message: refused (50001)
    await world.factory.decide_task(tasks[0]["id"])
    await world.discord.wait_for(lambda: len(alert_lines(world)[0]) == 1, 10)
    assert "no access to #factory-tasks" in alert_lines(world)[0][0]
    await world.factory.decide_task(tasks[1]["id"])
    await wait_until(
        lambda: _count(audit_actions(world, tasks[1]["id"]), ("task.approved", "ok"), 1),
        what="the second decision recorded",
    )
    refused = sum(e.code == 50001 for e in world.discord.errors)
    await world.discord.wait_for(
        lambda: sum(e.code == 50001 for e in world.discord.errors) > refused, 10
    )
    status, body = await healthz(world)
    assert status == 503 and body["checks"]["discord_channels"].startswith("down: no access")
    assert alert_lines(world)[1] == []  # nothing proves the channel usable yet
    assert any(e.code == 50001 for e in world.discord.errors)
    # access is back: the next retry's edit is accepted and shows both decisions
    world.discord.set_bot_channel_permissions(TASKS_CHANNEL_ID, deny=0)
    await world.discord.wait_for(
        lambda: "Approve All Low-Risk (1)" in batch_messages(world)[0].button_labels, 15
    )
    await wait_until(lambda: _healthy(world), what="/healthz 200")
    await world.discord.wait_for(lambda: len(alert_lines(world)[1]) == 1, 10)
    outages, recoveries = alert_lines(world)
    assert (len(outages), len(recoveries)) == (1, 1)
    dms = [m.content or "" for m in world.discord.dm_messages(world.people.dave.id)]
    assert sum("cannot use a channel" in t for t in dms) == 1
    assert sum("can use the channel again" in t for t in dms) == 1
