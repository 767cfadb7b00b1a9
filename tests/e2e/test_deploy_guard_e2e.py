"""A production deploy never slips through, end to end: the deploy guard and the two-person rule.

The contract's staging → production promotion (Appendix A) arrives as ``approval.pending`` with
an approval of type ``deploy`` on a ``staging`` task titled "… → Production". It is refused for
an approver without the deploy role, needs the typed DEPLOY modal, is never batched and never
part of a bulk call; with ``DEPLOY_REQUIRED_APPROVERS=2`` it needs two distinct people, across
a kill -9.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.store import Store
from sandbox.discord_emulator import RecordedMessage
from sandbox.world import (
    APPROVER_ROLE_ID,
    DEPLOYER_ROLE_ID,
    TASKS_CHANNEL_ID,
    World,
)
from tests.support.harness import BridgeProcess, wait_until
from tests.support.reading import fields, final_reply, task_messages

BULK = r"/v1/tasks/bulk"
COMPLETE = r"/v1/tasks/[^/]+/complete"
CB_MODAL = 9


def message_of(world: World, title: str) -> RecordedMessage | None:
    for m in task_messages(world):
        if title in m.embeds[0].get("title", "") and not m.embeds[0]["title"].startswith("📋"):
            return m
    return None


async def staging_promotion(world: World, **task_overrides: Any) -> dict[str, Any]:
    """The contract's staging → production deploy, as the factory announces it."""
    task_fields: dict[str, Any] = {
        "title": "GHL MCP Server → Production",
        "priority": "medium",
        "stageName": "staging",
        "type": "approval",
        "pipelineId": "ghl-mcp-server",
        "context": {
            "summary": "Staging tests pass.",
            "testResults": {
                "total": 47,
                "passed": 47,
                "failed": 0,
                "skipped": 0,
                "coveragePercent": 94,
            },
            "metrics": {"stagingErrorRate": 0.1},
        },
    }
    task_fields.update(task_overrides)
    task = await world.factory.create_task(emit=False, **task_fields)
    await world.factory.request_approval(task["id"], type="deploy")
    return task


async def audit_rows(world: World, task_id: str) -> list[tuple[str, str, str]]:
    store = Store(world.database_url)
    try:
        entries = await store.audit_entries(task_id=task_id)
    finally:
        await store.close()
    return [(e.actor_name, e.action, e.outcome) for e in entries]


async def approve_with_deploy(world: World, user: Any, message: RecordedMessage) -> str:
    """Press Approve as ``user``, type DEPLOY in the modal, return the final answer."""
    click = await world.discord.press_button(
        TASKS_CHANNEL_ID, "Approve", user=user, message_id=message.id
    )
    assert (await click.response()).type == CB_MODAL, click.reply_content
    submit = await world.discord.submit_modal(click, {"confirm": "DEPLOY"})
    return await final_reply(world, submit)


async def test_staging_promotion_is_guarded_never_batched_never_bulk(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(BATCH_ENABLED="true", BATCH_GROUP_WAIT_SECONDS="1")
    await bridge.start()
    routine = [
        await world.factory.create_task(
            title=name,
            type="approval",
            stageName="review",
            priority="medium",
            pipelineId=f"{name}-mcp-server",
        )
        for name in ("freshdesk", "helpscout")
    ]
    deploy = await staging_promotion(world)

    # the deploy gets its own message at once, marked, with its checklist
    await world.discord.wait_for(lambda: message_of(world, "GHL MCP Server") is not None, 10)
    message = message_of(world, "GHL MCP Server")
    assert message is not None
    assert message.embeds[0]["author"]["name"] == "🚀 Production deploy"
    checklist = fields(message)["🚀 Production deploy"]
    assert "Tests: ✅ 47/47 passing" in checklist and "Coverage: ✅ 94%" in checklist
    assert "stagingErrorRate: 0.1" in checklist
    # the routine ones share a batch message that does not list the deploy
    await world.discord.wait_for(
        lambda: any(m.embeds[0]["title"].startswith("📋") for m in task_messages(world)), 10
    )
    (batch,) = [m for m in task_messages(world) if m.embeds[0]["title"].startswith("📋")]
    assert deploy["id"] not in str(batch.components)
    assert "GHL" not in batch.embeds[0]["description"]

    # an approver without the deploy role: refused, no modal, nothing sent
    alice = world.people.alice
    refused = await world.discord.press_button(
        TASKS_CHANNEL_ID, "Approve", user=alice, message_id=message.id
    )
    assert "deploy-approver role" in await final_reply(world, refused)
    assert refused.modal is None

    # Approve All Low-Risk: the bulk call holds the routine tasks only
    bulk_click = await world.discord.press_button(
        TASKS_CHANNEL_ID, "Approve All Low-Risk (2)", user=alice, message_id=batch.id
    )
    assert "Approved 2" in await final_reply(world, bulk_click)
    (bulk,) = world.factory.calls("POST", BULK)
    assert set(bulk.json["taskIds"]) == {t["id"] for t in routine}
    assert world.factory.tasks[deploy["id"]]["status"] == "pending"

    # a deploy approver: the typed DEPLOY modal, then one complete call naming them
    dave = world.people.dave
    assert "approved" in (await approve_with_deploy(world, dave, message)).lower()
    (call,) = world.factory.calls("POST", COMPLETE)
    assert call.json["decision"] == "approved"
    [approver] = call.json["decisionData"]["approvers"]
    assert approver["discordUserId"] == str(dave.id) and approver["name"] == "dave"
    assert ("alice", "task.approved", "refused") in await audit_rows(world, deploy["id"])


async def test_a_deploy_approval_without_any_other_signal_is_guarded(
    world: World, bridge: BridgeProcess
) -> None:
    # review stage, harmless title: only the approval's type says "deploy"
    await staging_promotion(world, stageName="review", title="GHL release 2.3")
    await world.discord.wait_for(lambda: message_of(world, "GHL release") is not None, 10)
    message = message_of(world, "GHL release")
    assert message is not None
    assert "its approval is a deploy" in fields(message)["🚀 Production deploy"]
    click = await world.discord.press_button(
        TASKS_CHANNEL_ID, "Approve", user=world.people.alice, message_id=message.id
    )
    assert "deploy-approver role" in await final_reply(world, click)
    assert world.factory.calls("POST", COMPLETE) == []


async def test_the_bridge_looks_the_approval_up_when_the_event_lacks_it(
    world: World, bridge: BridgeProcess
) -> None:
    task = await world.factory.create_task(
        emit=False, title="Notion release", type="approval", pipelineId="notion-mcp-server"
    )
    await world.factory.request_approval(task["id"], type="deploy", emit=False)
    await world.factory.emit("task.created", {"task": task}, channel="tasks:pending")
    await world.discord.wait_for(lambda: message_of(world, "Notion release") is not None, 10)
    message = message_of(world, "Notion release")
    assert message is not None and message.embeds[0]["author"]["name"] == "🚀 Production deploy"
    assert world.factory.calls("GET", r"/v1/approvals")


async def test_two_person_rule_survives_a_kill_and_sends_both_names(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    # alice becomes a deploy approver too (her approver role counts as one here)
    env = {
        "DEPLOY_REQUIRED_APPROVERS": "2",
        "DISCORD_DEPLOY_APPROVER_ROLE_IDS": f"{DEPLOYER_ROLE_ID},{APPROVER_ROLE_ID}",
    }
    first = make_bridge(**env)
    await first.start()
    deploy = await staging_promotion(world, priority="critical")
    await world.discord.wait_for(lambda: message_of(world, "GHL MCP Server") is not None, 10)
    message = message_of(world, "GHL MCP Server")
    assert message is not None
    dave, alice = world.people.dave, world.people.alice

    answer = await approve_with_deploy(world, dave, message)
    assert "1 of 2" in answer and "Nothing is sent" in answer
    await world.discord.wait_for(lambda: "Approvals" in fields(message), 10)
    assert fields(message)["Approvals"] == (
        f"✅ 1 of 2 approvals: <@{dave.id}> — waiting for a second deploy approver"
    )
    assert world.factory.calls("POST", COMPLETE) == []

    # the same person again: told so, nothing changes
    again = await approve_with_deploy(world, dave, message)
    assert "already approved" in again
    assert world.factory.calls("POST", COMPLETE) == []
    assert "Approve" in message.button_labels

    # kill -9 and restart: the first approval is kept
    await first.kill()
    second = make_bridge(**env)
    await second.start()
    answer = await approve_with_deploy(world, alice, message)
    assert "approved" in answer.lower() and "1 of 2" not in answer
    await wait_until(lambda: len(world.factory.calls("POST", COMPLETE)) == 1, timeout=10)
    (call,) = world.factory.calls("POST", COMPLETE)
    approvers = call.json["decisionData"]["approvers"]
    assert [a["name"] for a in approvers] == ["dave", "alice"]
    assert [a["discordUserId"] for a in approvers] == [str(dave.id), str(alice.id)]
    assert all(a["at"] for a in approvers)
    assert world.factory.tasks[deploy["id"]]["decision"] == "approved"
    await world.discord.wait_for(lambda: "Decision" in fields(message), 10)
    assert f"Approved by <@{dave.id}>, <@{alice.id}>" in fields(message)["Decision"]
    rows = await audit_rows(world, deploy["id"])
    assert rows.count(("dave", "task.deploy_approval", "ok")) == 1
    assert ("dave", "task.deploy_approval", "refused") in rows
    assert ("alice", "task.deploy_approval", "ok") in rows
    assert len(world.factory.calls("POST", COMPLETE)) == 1


async def test_a_reject_by_any_approver_ends_a_two_person_deploy(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(DEPLOY_REQUIRED_APPROVERS="2")
    await bridge.start()
    deploy = await staging_promotion(world, priority="high")
    await world.discord.wait_for(lambda: message_of(world, "GHL MCP Server") is not None, 10)
    message = message_of(world, "GHL MCP Server")
    assert message is not None
    assert "1 of 2" in await approve_with_deploy(world, world.people.dave, message)
    reject = await world.discord.press_button(
        TASKS_CHANNEL_ID, "Reject", user=world.people.alice, message_id=message.id
    )
    await reject.response()
    submit = await world.discord.submit_modal(reject, {"reason": "Staging is flaky."})
    assert "rejected" in (await final_reply(world, submit)).lower()
    (call,) = world.factory.calls("POST", COMPLETE)
    assert call.json["decision"] == "rejected"
    assert world.factory.tasks[deploy["id"]]["decision"] == "rejected"


async def test_two_deploy_forms_open_across_a_restart_are_both_answered(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    env = {
        "DEPLOY_REQUIRED_APPROVERS": "2",
        "DISCORD_DEPLOY_APPROVER_ROLE_IDS": f"{DEPLOYER_ROLE_ID},{APPROVER_ROLE_ID}",
    }
    first = make_bridge(**env)
    await first.start()
    await staging_promotion(world, priority="high")
    await world.discord.wait_for(lambda: message_of(world, "GHL MCP Server") is not None, 10)
    message = message_of(world, "GHL MCP Server")
    assert message is not None
    forms = []
    for person in (world.people.dave, world.people.alice):
        click = await world.discord.press_button(
            TASKS_CHANNEL_ID, "Approve", user=person, message_id=message.id
        )
        assert (await click.response()).type == CB_MODAL
        forms.append(click)
    assert forms[0].modal is not None and forms[1].modal is not None
    assert forms[0].modal["custom_id"] != forms[1].modal["custom_id"]
    await first.kill()
    second = make_bridge(**env)
    await second.start()
    dave_says = await final_reply(
        world, await world.discord.submit_modal(forms[0], {"confirm": "DEPLOY"})
    )
    assert "1 of 2" in dave_says
    alice_says = await final_reply(
        world, await world.discord.submit_modal(forms[1], {"confirm": "DEPLOY"})
    )
    assert "approved" in alice_says.lower()
    (call,) = world.factory.calls("POST", COMPLETE)
    assert [a["name"] for a in call.json["decisionData"]["approvers"]] == ["dave", "alice"]


async def test_a_deploy_whose_approval_cannot_be_read_opens_the_deploy_form_at_once(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    # GET /v1/approvals fails for good: the task is guarded (fail safe), and Approve and
    # /factory approve open the DEPLOY form at the first press instead of "press again" for ever
    bridge = make_bridge(FACTORY_RETRY_BASE_SECONDS="0.01")
    await bridge.start()
    world.factory.fail("GET", r"/v1/approvals", status=503, times=10_000)
    task = await world.factory.create_task(title="Zendesk release", type="approval")
    await world.discord.wait_for(lambda: message_of(world, "Zendesk release") is not None, 10)
    message = message_of(world, "Zendesk release")
    assert message is not None and message.embeds[0]["author"]["name"] == "🚀 Production deploy"
    dave = world.people.dave
    rec = await world.discord.run_command(
        "factory approve", {"task": task["id"]}, user=dave, channel_id=TASKS_CHANNEL_ID
    )
    assert (await rec.response()).type == CB_MODAL, rec.reply_content
    assert "approved" in (await approve_with_deploy(world, dave, message)).lower()
    (call,) = world.factory.calls("POST", COMPLETE)
    assert call.json["decision"] == "approved"


async def test_a_task_the_factory_cannot_be_asked_about_is_not_called_unknown(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(FACTORY_RETRY_BASE_SECONDS="0.01")
    await bridge.start()
    task = await world.factory.create_task(title="Ship it", priority="high", emit=False)
    world.factory.fail("GET", r"/v1/tasks/[^/]+$", status=503, times=10_000)
    for name in ("factory approve", "factory ack"):
        rec = await world.discord.run_command(
            name, {"task": task["id"]}, user=world.people.alice, channel_id=TASKS_CHANNEL_ID
        )
        reply = await final_reply(world, rec, timeout=20)
        assert "not known" not in reply and "could not be read" in reply, reply
        assert "Nothing was sent" in reply
    assert world.factory.calls("POST", COMPLETE) == []
    assert world.factory.calls("POST", r"/v1/tasks/[^/]+/claim") == []
