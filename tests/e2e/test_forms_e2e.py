"""Forms and answers under stress, end to end (the bridge as a separate process):

* two approvers submitting the Reject form of one task both get an answer, and a form opened
  before a restart is still answered after it;
* a click on a task the bridge does not know is answered within Discord's 3 s even when the
  factory takes longer to describe it;
* forged form, select and command values are refused server-side (nothing changes, audited);
* an outcome about a task with a 2,000-character title still reaches the person.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bot.store import Store
from sandbox.discord_emulator import RecordedMessage
from sandbox.world import TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess, wait_until
from tests.support.reading import fields, final_reply, task_messages

COMPLETE = r"/v1/tasks/[^/]+/complete"
CB_DEFERRED_MESSAGE = 5


async def message_of(world: World, task_id: str) -> RecordedMessage:
    def found() -> RecordedMessage | None:
        return next((m for m in task_messages(world) if task_id in str(m.components)), None)

    await world.discord.wait_for(lambda: found() is not None, 10)
    message = found()
    assert message is not None
    return message


async def audit_actions(world: World, task_id: str, db: Path | None = None) -> list[tuple]:
    store = Store(f"sqlite:///{db or world.database_file}")
    try:
        entries = await store.audit_entries(task_id=task_id)
    finally:
        await store.close()
    return [(e.actor_name, e.via, e.action, e.outcome) for e in entries]


async def refusals(world: World, task_id: str, count: int) -> list[tuple]:
    """The task's refused audit entries, once there are ``count`` (the audit follows the
    answer)."""
    found: list[tuple] = []

    async def enough() -> bool:
        nonlocal found
        found = [a for a in await audit_actions(world, task_id) if a[3] == "refused"]
        return len(found) >= count

    await wait_until(enough, timeout=10, what=f"{count} refusals in the audit")
    return found


def no_form_errors(world: World) -> None:
    assert [e for e in world.discord.errors if e.code == 50035] == []


# ------------------------------------------------------------------------------ two rejecters
async def test_two_people_submitting_reject_both_get_an_answer(
    world: World, bridge: BridgeProcess
) -> None:
    alice, dave = world.people.alice, world.people.dave
    task = await world.factory.create_task(title="Shopify release", priority="high")
    message = await message_of(world, task["id"])
    opened_a = await world.discord.press_button(TASKS_CHANNEL_ID, "Reject", user=alice)
    opened_d = await world.discord.press_button(TASKS_CHANNEL_ID, "Reject", user=dave)
    await opened_a.response()
    await opened_d.response()
    assert opened_a.modal and opened_d.modal
    assert opened_a.modal["custom_id"] != opened_d.modal["custom_id"]

    first = await world.discord.submit_modal(opened_a, {"reason": "tests are flaky"})
    assert "rejected" in await final_reply(world, first)
    second = await world.discord.submit_modal(opened_d, {"reason": "not now"})
    answer = await final_reply(world, second)
    assert answer.startswith("Already rejected by") and str(alice.id) in answer
    assert len(world.factory.calls("POST", COMPLETE)) == 1
    assert world.factory.tasks[task["id"]]["decisionData"]["discordUserId"] == str(alice.id)
    await world.discord.wait_for(lambda: "Rejected" in fields(message).get("Decision", ""), 10)
    no_form_errors(world)


async def test_reject_form_opened_before_a_restart_is_answered_after_it(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge()
    await bridge.start()
    task = await world.factory.create_task(title="Shopify release", priority="high")
    message = await message_of(world, task["id"])
    opened = await world.discord.press_button(TASKS_CHANNEL_ID, "Reject", user=world.people.alice)
    await opened.response()
    await bridge.kill()
    await bridge.start()
    submitted = await world.discord.submit_modal(opened, {"reason": "breaks checkout"})
    assert "rejected" in await final_reply(world, submitted)
    [call] = world.factory.calls("POST", COMPLETE)
    assert call.json["decision"] == "rejected" and call.json["notes"] == "breaks checkout"
    await world.discord.wait_for(lambda: "Rejected" in fields(message).get("Decision", ""), 10)


# ------------------------------------------------------------------------------ slow lookup
async def test_click_on_unknown_task_is_answered_in_time_when_the_factory_is_slow(
    world: World, make_bridge: Callable[..., BridgeProcess], tmp_path: Path
) -> None:
    first = make_bridge()
    await first.start()
    task = await world.factory.create_task(title="Shopify release", priority="high")
    message = await message_of(world, task["id"])
    await first.terminate()
    # a bridge with a fresh database: it has never seen the task (the factory's task listing
    # fails while it starts, so its start-up reconciliation does not learn about it either)
    world.factory.fail("GET", r"/v1/tasks", status=503, times=10_000)
    fresh_db = tmp_path / "fresh.db"
    second = make_bridge(DATABASE_URL=f"sqlite:///{fresh_db}", RECONCILE_HISTORY_LIMIT=0)
    await second.start()
    world.factory.clear_faults()
    world.factory.delay("GET", rf"/v1/tasks/{task['id']}", 4.0, times=1)

    click = await world.discord.press_button(
        TASKS_CHANNEL_ID, "Approve", user=world.people.alice, message_id=message.id
    )
    first_answer = await click.response(timeout=5)
    assert first_answer.at - click.created_at < 3.0
    assert first_answer.type == CB_DEFERRED_MESSAGE and first_answer.ephemeral
    assert click.rejected == []
    assert "approved" in await final_reply(world, click, timeout=20)
    assert world.factory.tasks[task["id"]]["decision"] == "approved"
    assert ("alice", "button", "task.approved", "ok") in await audit_actions(
        world, task["id"], fresh_db
    )


# ------------------------------------------------------------------------------ forged values
async def test_forged_reject_reasons_are_refused_and_audited(
    world: World, bridge: BridgeProcess
) -> None:
    alice = world.people.alice
    task = await world.factory.create_task(title="Shopify release", priority="high")
    message = await message_of(world, task["id"])
    for forged, word in (("", "needs a reason"), ("   ", "needs a reason"), ("x" * 1001, "1000")):
        opened = await world.discord.press_button(TASKS_CHANNEL_ID, "Reject", user=alice)
        await opened.response()
        submitted = await world.discord.submit_modal(opened, {"reason": forged}, forged=True)
        answer = await final_reply(world, submitted)
        assert word in answer and "Nothing was sent" in answer
        assert submitted.ephemeral
    assert world.factory.calls("POST", COMPLETE) == []
    assert "Decision" not in fields(message) and "Reject" in message.button_labels
    refused = await refusals(world, task["id"], 3)
    assert refused == [("alice", "modal", "task.rejected", "refused")] * 3


async def test_forged_snooze_value_is_refused_and_audited(
    world: World, bridge: BridgeProcess
) -> None:
    alice = world.people.alice
    task = await world.factory.create_task(title="Shopify release", priority="high")
    message = await message_of(world, task["id"])
    for forged in (["999999999"], ["soon"], ["3600", "86400"]):
        pick = await world.discord.choose(
            TASKS_CHANNEL_ID, "💤 Snooze reminders…", forged, user=alice, forged=True
        )
        answer = await final_reply(world, pick)
        assert "not one of the offered snooze durations" in answer and pick.ephemeral
    assert "Snoozed" not in fields(message)
    refused = await refusals(world, task["id"], 3)
    assert refused == [("alice", "button", "task.snooze", "refused")] * 3


async def test_forged_command_options_are_refused_and_audited(
    world: World, bridge: BridgeProcess
) -> None:
    alice = world.people.alice
    task = await world.factory.create_task(title="Shopify release", priority="high")
    await message_of(world, task["id"])
    reject = await world.discord.run_command(
        "factory reject",
        {"task": task["id"], "reason": "y" * 1500},
        user=alice,
        channel_id=TASKS_CHANNEL_ID,
        forged=True,
    )
    assert "at most 1000" in await final_reply(world, reject)
    snooze = await world.discord.run_command(
        "factory snooze",
        {"task": task["id"], "duration": 31536000},
        user=alice,
        channel_id=TASKS_CHANNEL_ID,
        forged=True,
    )
    assert "not one of the offered snooze durations" in await final_reply(world, snooze)
    assert world.factory.calls("POST", COMPLETE) == []
    refused = await refusals(world, task["id"], 2)
    assert ("alice", "command", "task.rejected", "refused") in refused
    assert ("alice", "command", "task.snooze", "refused") in refused


async def test_forged_deploy_confirmation_sends_nothing(
    world: World, bridge: BridgeProcess
) -> None:
    dave = world.people.dave
    task = await world.factory.create_task(
        title="GHL MCP Server → Production",
        priority="critical",
        stageName="production",
        pipelineId="ghl-mcp-server",
    )
    await message_of(world, task["id"])
    opened = await world.discord.press_button(TASKS_CHANNEL_ID, "Approve", user=dave)
    await opened.response()
    assert opened.modal is not None
    submitted = await world.discord.submit_modal(
        opened, {"confirm": "DEPLOY" + "!" * 3000}, forged=True
    )
    assert "DEPLOY" in await final_reply(world, submitted)
    assert world.factory.calls("POST", COMPLETE) == []
    assert ("dave", "modal", "task.approved", "refused") in await refusals(world, task["id"], 1)


# ------------------------------------------------------------------------------ long titles
async def test_outcome_about_a_2000_character_title_reaches_the_person(
    world: World, bridge: BridgeProcess
) -> None:
    alice = world.people.alice
    title = "Release " + "very-long-title " * 130  # ~2,100 characters
    task = await world.factory.create_task(title=title, priority="high")
    message = await message_of(world, task["id"])
    ack = await world.discord.press_button(TASKS_CHANNEL_ID, "Acknowledge", user=alice)
    assert "You acknowledged" in await final_reply(world, ack)
    opened = await world.discord.press_button(TASKS_CHANNEL_ID, "Reject", user=alice)
    await opened.response()
    assert opened.modal is not None and len(opened.modal["title"]) <= 45
    details = await world.discord.press_button(TASKS_CHANNEL_ID, "Details", user=alice)
    await details.response()
    click = await world.discord.press_button(TASKS_CHANNEL_ID, "Approve", user=alice)
    answer = await final_reply(world, click)
    assert answer.startswith("Task **Release very") and answer.endswith("approved.")
    assert len(answer) <= 2000
    await world.discord.wait_for(lambda: "Approved" in fields(message).get("Decision", ""), 10)
    no_form_errors(world)
