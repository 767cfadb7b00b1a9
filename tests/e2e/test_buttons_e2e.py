"""The task message's buttons end to end: Acknowledge, the Snooze select, the DEPLOY modal,
and exactly-once decisions when two approvers (or the dashboard) race.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any

from bot.store import Store
from sandbox.discord_emulator import RecordedMessage
from sandbox.world import TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess, wait_until
from tests.support.reading import fields, final_reply, task_messages

COMPLETE = r"/v1/tasks/[^/]+/complete"
CLAIM = r"/v1/tasks/[^/]+/claim"
CB_MODAL = 9


async def one_message(world: World) -> RecordedMessage:
    await world.discord.wait_for(lambda: len(task_messages(world)) >= 1, 10)
    return task_messages(world)[0]


async def audit_actions(world: World, task_id: str) -> list[tuple[str, str, str, str]]:
    """(actor, via, action, outcome) of the task's audit entries, read from the bridge's DB."""
    store = Store(world.database_url)
    try:
        entries = await store.audit_entries(task_id=task_id)
    finally:
        await store.close()
    return [(e.actor_name, e.via, e.action, e.outcome) for e in entries]


async def production_task(world: World, **overrides: Any) -> dict[str, Any]:
    task_fields: dict[str, Any] = {
        "title": "GHL MCP Server → Production",
        "priority": "critical",
        "stageName": "production",
        "pipelineId": "ghl-mcp-server",
    }
    task_fields.update(overrides)
    return await world.factory.create_task(**task_fields)


# ------------------------------------------------------------------------------ acknowledge
async def test_acknowledge_claims_and_shows_who(world: World, bridge: BridgeProcess) -> None:
    alice = world.people.alice
    task = await world.factory.create_task(title="Shopify release", priority="high")
    message = await one_message(world)
    assert "Acknowledge" in message.button_labels
    click = await world.discord.press_button(TASKS_CHANNEL_ID, "Acknowledge", user=alice)
    first = await click.response()
    assert first.ephemeral and first.at - click.created_at < 3.0
    assert "You acknowledged" in await final_reply(world, click)
    [claim] = world.factory.calls("POST", CLAIM)
    assert claim.json == {"userId": "user-alice"}
    assert claim.header("Idempotency-Key")
    await world.discord.wait_for(
        lambda: fields(message).get("Status") == f"👀 acknowledged by <@{alice.id}>", 10
    )
    assert world.factory.tasks[task["id"]]["status"] == "claimed"
    assert "Approve" in message.button_labels  # still waiting for a decision
    assert ("alice", "button", "task.acknowledge", "ok") in await audit_actions(world, task["id"])


async def test_acknowledge_without_a_role_is_refused(world: World, bridge: BridgeProcess) -> None:
    task = await world.factory.create_task(title="Shopify release", priority="high")
    message = await one_message(world)
    click = await world.discord.press_button(TASKS_CHANNEL_ID, "Acknowledge", user=world.people.bob)
    assert "approver role" in await final_reply(world, click)
    assert world.factory.calls("POST", CLAIM) == []
    assert "Status" not in fields(message)
    assert ("bob", "button", "task.acknowledge", "refused") in await audit_actions(
        world, task["id"]
    )


# ------------------------------------------------------------------------------ snooze
async def test_snooze_select_records_the_snooze_and_shows_until_when(
    world: World, bridge: BridgeProcess
) -> None:
    task = await world.factory.create_task(title="Shopify release", priority="high")
    message = await one_message(world)
    select = next(
        c
        for row in message.components
        for c in row.get("components", [])
        if c.get("custom_id", "").startswith("fb:snooze:")
    )
    assert [o["value"] for o in select["options"]] == ["3600", "14400", "86400"]
    assert [o["label"] for o in select["options"]] == ["1 hour", "4 hours", "24 hours"]
    before = int(datetime.now(UTC).timestamp())
    pick = await world.discord.choose(
        TASKS_CHANNEL_ID, "💤 Snooze reminders…", ["86400"], user=world.people.alice
    )
    assert "snoozed until" in await final_reply(world, pick)
    await world.discord.wait_for(lambda: "Snoozed" in fields(message), 10)
    match = re.search(r"<t:(\d+):f>", fields(message)["Snoozed"])
    assert match is not None
    assert before + 86400 - 5 <= int(match.group(1)) <= before + 86400 + 30
    assert "by alice" in fields(message)["Snoozed"]
    assert "SLA Deadline" in fields(message)  # the deadline does not move
    assert world.factory.calls("POST", r"/v1/tasks/.*") == []  # the bridge's own record
    assert ("alice", "button", "task.snooze", "ok") in await audit_actions(world, task["id"])
    bob = await world.discord.choose(
        TASKS_CHANNEL_ID, "💤 Snooze reminders…", ["3600"], user=world.people.bob
    )
    assert "approver role" in await final_reply(world, bob)


# ------------------------------------------------------------------------------ DEPLOY modal
async def test_production_approve_button_with_deploy_typed_approves(
    world: World, bridge: BridgeProcess
) -> None:
    dave = world.people.dave
    task = await production_task(world)
    message = await one_message(world)
    click = await world.discord.press_button(TASKS_CHANNEL_ID, "Approve", user=dave)
    assert (await click.response()).type == CB_MODAL
    assert click.modal is not None
    assert click.modal["custom_id"] == f"fb:m:deploy:{task['id']}:{click.id}"
    assert world.factory.calls("POST", COMPLETE) == []  # nothing before the word is typed
    submit = await world.discord.submit_modal(click, {"confirm": "DEPLOY"})
    assert "approved" in await final_reply(world, submit)
    [call] = world.factory.calls("POST", COMPLETE)
    assert call.json["decision"] == "approved"
    assert call.json["decisionData"]["discordUsername"] == "dave"
    await world.discord.wait_for(lambda: "Approved" in fields(message).get("Decision", ""), 10)
    assert f"<@{dave.id}>" in fields(message)["Decision"]


async def test_production_approve_button_with_wrong_word_sends_nothing(
    world: World, bridge: BridgeProcess
) -> None:
    task = await production_task(world)
    message = await one_message(world)
    for typed in ("deploy", "DEPLOY!", "yes"):
        click = await world.discord.press_button(
            TASKS_CHANNEL_ID, "Approve", user=world.people.dave
        )
        await click.response()
        submit = await world.discord.submit_modal(click, {"confirm": typed})
        answer = await submit.response()
        assert answer.ephemeral
        assert "not `DEPLOY`" in (answer.content or "") and "nothing was sent" in (
            answer.content or ""
        )
    assert world.factory.calls("POST", COMPLETE) == []
    assert world.factory.tasks[task["id"]]["status"] == "pending"
    assert "Approve" in message.button_labels and "Decision" not in fields(message)
    refusals = [a for a in await audit_actions(world, task["id"]) if a[3] == "refused"]
    assert len(refusals) == 3


async def test_production_approve_button_without_deploy_role_is_refused(
    world: World, bridge: BridgeProcess
) -> None:
    # the context says it deploys to production (stage is staging)
    await production_task(
        world, stageName="staging", context={"metrics": {"deploysToProduction": 1}}
    )
    message = await one_message(world)
    click = await world.discord.press_button(TASKS_CHANNEL_ID, "Approve", user=world.people.alice)
    answer = await click.response()
    assert click.modal is None
    assert answer.ephemeral and "deploy-approver role" in (answer.content or "")
    assert world.factory.calls("POST", COMPLETE) == []
    assert "Approve" in message.button_labels


async def test_production_reject_opens_the_reason_modal_not_deploy(
    world: World, bridge: BridgeProcess
) -> None:
    await production_task(world)
    message = await one_message(world)
    click = await world.discord.press_button(TASKS_CHANNEL_ID, "Reject", user=world.people.alice)
    await click.response()
    assert click.modal is not None and click.modal["custom_id"].startswith("fb:m:reject:")
    submit = await world.discord.submit_modal(click, {"reason": "Not during the freeze."})
    assert "rejected" in await final_reply(world, submit)
    await world.discord.wait_for(lambda: "Rejected" in fields(message).get("Decision", ""), 10)


# ------------------------------------------------------------------------------ exactly once
async def test_two_simultaneous_approvals_give_one_decision(
    world: World, bridge: BridgeProcess
) -> None:
    alice, dave = world.people.alice, world.people.dave
    task = await world.factory.create_task(title="Shopify release", priority="high")
    message = await one_message(world)
    world.factory.delay("POST", COMPLETE, 1.0)  # the two clicks overlap at the factory
    clicks = await asyncio.gather(
        world.discord.press_button(TASKS_CHANNEL_ID, "Approve", user=alice),
        world.discord.press_button(TASKS_CHANNEL_ID, "Approve", user=dave),
    )
    replies = await asyncio.gather(*(final_reply(world, c, 15) for c in clicks))
    assert len(world.factory.calls("POST", COMPLETE)) == 1
    won = [r for r in replies if "approved." in r and "Already" not in r]
    lost = [r for r in replies if r.startswith("Already approved by")]
    assert (len(won), len(lost)) == (1, 1), replies
    winner = alice if replies.index(won[0]) == 0 else dave
    assert f"<@{winner.id}>" in lost[0]  # the loser is told who won
    await world.discord.wait_for(lambda: "Approved" in fields(message).get("Decision", ""), 10)
    decision = fields(message)["Decision"]
    assert f"<@{winner.id}>" in decision
    assert decision.count("Approved") == 1
    assert [f["name"] for f in message.embeds[0]["fields"]].count("Decision") == 1
    assert message.button_labels == []
    assert world.factory.tasks[task["id"]]["decidedBy"] == f"user-{winner.username}"
    outcomes = sorted(
        a[3] for a in await audit_actions(world, task["id"]) if a[2] == "task.approved"
    )
    assert outcomes == ["conflict", "ok"]


async def test_click_racing_a_dashboard_decision_tells_who_won(
    world: World, bridge: BridgeProcess
) -> None:
    task = await world.factory.create_task(title="Shopify release", priority="high")
    message = await one_message(world)
    world.factory.delay("POST", COMPLETE, 1.0)
    click = await world.discord.press_button(TASKS_CHANNEL_ID, "Approve", user=world.people.alice)
    await click.response()
    await wait_until(lambda: bool(world.factory.calls("POST", COMPLETE)), timeout=5)
    # while alice's request is held, someone rejects on the factory's dashboard
    await world.factory.decide_task(task["id"], "rejected", decided_by="user-dashboard")
    reply = await final_reply(world, click, 15)
    assert reply.startswith("Already rejected by user-dashboard"), reply
    [call] = world.factory.calls("POST", COMPLETE)
    assert call.status == 409
    assert world.factory.tasks[task["id"]]["decision"] == "rejected"
    await world.discord.wait_for(lambda: "Rejected" in fields(message).get("Decision", ""), 10)
    assert "user-dashboard" in fields(message)["Decision"]
    assert "Approved" not in fields(message)["Decision"]
    assert message.button_labels == []
