"""Each task type gets the controls that fit it (factory contract §1.4 ``TaskType``), end to end
with ``factory-bridge run`` as a separate process.

``decision``: the options and a select menu, the pick sent once as ``approved`` with
``decisionData.option``; ``manual_action`` / ``fix_required``: Done and Acknowledge, no Reject;
metrics, modal type, failure details and diff summary shown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.store import Store
from sandbox.discord_emulator import CB_MODAL, RecordedMessage
from sandbox.world import TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess, wait_until
from tests.support.reading import fields, final_reply, task_messages

COMPLETE = r"/v1/tasks/[^/]+/complete"
TASK = r"/v1/tasks/[^/]+"
FAST = {"FACTORY_RETRY_BASE_SECONDS": "0.05", "FACTORY_TIMEOUT_SECONDS": "0.5"}
PLACEHOLDER = "🗳️ Choose an option…"


async def audited(world: World, task_id: str) -> list[tuple[str, str, str, str]]:
    """(actor, via, action, outcome) of the task's audit entries, read from the bridge's DB."""
    store = Store(world.database_url)
    try:
        entries = await store.audit_entries(task_id=task_id)
    finally:
        await store.close()
    return [(e.actor_name, e.via, e.action, e.outcome) for e in entries]


async def decision_task(world: World, options: Any, **overrides: Any) -> dict[str, Any]:
    """A high-priority ``decision`` task (posted alone at once) with ``options``."""
    task_fields: dict[str, Any] = {
        "title": "Pick the Zendesk MCP auth strategy",
        "priority": "high",
        "type": "decision",
        "stageName": "review",
        "context": {
            "summary": "Two auth strategies pass the tests; choose one.",
            "modalType": "choice",
            "modalConfig": {"options": options},
        },
    }
    task_fields.update(overrides)
    return await world.factory.create_task(**task_fields)


async def one_message(world: World) -> RecordedMessage:
    await world.discord.wait_for(lambda: len(task_messages(world)) >= 1, 10)
    return task_messages(world)[0]


def select_of(message: RecordedMessage, prefix: str) -> dict[str, Any] | None:
    """The message's select menu whose custom_id starts with ``prefix``."""
    for row in message.components:
        for component in row.get("components", []):
            if component.get("type") == 3 and component.get("custom_id", "").startswith(prefix):
                return component
    return None


OPTIONS = [
    {"value": "oauth", "label": "OAuth 2.0", "description": "per-user tokens, refresh flow"},
    "API key",
]


async def test_decision_select_sends_one_decision_with_the_option(
    world: World, bridge: BridgeProcess
) -> None:
    alice = world.people.alice
    task = await decision_task(world, OPTIONS)
    message = await one_message(world)
    assert message.embeds[0]["title"].startswith("🗳️ Decision Required")
    shown = fields(message)
    assert "**OAuth 2.0** — per-user tokens, refresh flow" in shown["Options"]
    assert "**API key**" in shown["Options"]
    assert shown["Modal type"] == "choice"
    select = select_of(message, "fb:t:pick:")
    assert select is not None and select["placeholder"] == PLACEHOLDER
    assert [(o["value"], o["label"]) for o in select["options"]] == [
        ("oauth", "OAuth 2.0"),
        ("API key", "API key"),
    ]
    assert "Reject" not in message.button_labels
    assert "Acknowledge" in message.button_labels

    # alice and dave pick at once: the factory hears of one decision (whichever interaction
    # the bridge took first), the other person is told who won
    dave = world.people.dave
    pick = await world.discord.choose(TASKS_CHANNEL_ID, PLACEHOLDER, ["oauth"], user=alice)
    late = await world.discord.choose(TASKS_CHANNEL_ID, PLACEHOLDER, ["API key"], user=dave)
    replies = {alice.id: await final_reply(world, pick), dave.id: await final_reply(world, late)}
    winners = [who for who, text in replies.items() if not text.startswith("Already")]
    assert len(winners) == 1, replies
    winner, loser = (alice, dave) if winners == [alice.id] else (dave, alice)
    assert replies[winner.id] == "Task **Pick the Zendesk MCP auth strategy** approved."
    assert replies[loser.id].startswith(f"Already approved by <@{winner.id}>")
    await wait_until(lambda: world.factory.tasks[task["id"]]["status"] == "completed")
    calls = world.factory.calls("POST", COMPLETE)
    assert len(calls) == 1
    body = calls[0].json
    assert body["decision"] == "approved"
    chosen = (
        {"value": "oauth", "label": "OAuth 2.0"}
        if winner is alice
        else {"value": "API key", "label": "API key"}
    )
    assert body["decisionData"]["option"] == chosen
    assert body["decisionData"]["discordUserId"] == str(winner.id)
    assert calls[0].header("Idempotency-Key")
    await world.discord.wait_for(lambda: "Decision" in fields(message), 10)
    assert f"Chosen: **{chosen['label']}**" in fields(message)["Decision"]
    assert select_of(message, "fb:t:pick:") is None  # the controls are gone once decided


async def test_decision_pick_without_a_role_changes_nothing(
    world: World, bridge: BridgeProcess
) -> None:
    task = await decision_task(world, OPTIONS)
    message = await one_message(world)
    pick = await world.discord.choose(
        TASKS_CHANNEL_ID, PLACEHOLDER, ["oauth"], user=world.people.bob
    )
    assert "approver role" in await final_reply(world, pick)
    assert world.factory.calls("POST", COMPLETE) == []
    assert world.factory.tasks[task["id"]]["status"] == "pending"
    assert "Decision" not in fields(message)

    async def refusal_audited() -> bool:  # audited right after the answer (3 s deadline first)
        return ("bob", "button", "task.approved", "refused") in await audited(world, task["id"])

    await wait_until(refusal_audited, timeout=5, what="the refusal audited")


async def test_decision_pick_of_a_value_not_offered_is_refused(
    world: World, bridge: BridgeProcess
) -> None:
    task = await decision_task(world, OPTIONS)
    await one_message(world)
    pick = await world.discord.choose(
        TASKS_CHANNEL_ID, PLACEHOLDER, ["drop-table"], user=world.people.alice, forged=True
    )
    assert "not one of this task's options" in await final_reply(world, pick)
    assert world.factory.calls("POST", COMPLETE) == []
    assert ("alice", "button", "task.approved", "refused") in await audited(world, task["id"])


async def test_decision_without_options_falls_back_to_approve_and_reject(
    world: World, bridge: BridgeProcess
) -> None:
    task = await decision_task(world, [])
    message = await one_message(world)
    assert "gave no options" in fields(message)["Options"]
    assert select_of(message, "fb:t:pick:") is None
    assert {"Approve", "Reject", "Acknowledge"} <= set(message.button_labels)
    click = await world.discord.press_button(TASKS_CHANNEL_ID, "Approve", user=world.people.alice)
    await final_reply(world, click)
    await wait_until(lambda: world.factory.tasks[task["id"]]["status"] == "completed")
    body = world.factory.calls("POST", COMPLETE)[0].json
    assert body["decision"] == "approved" and "option" not in body["decisionData"]


async def test_bad_options_are_skipped_and_said(world: World, bridge: BridgeProcess) -> None:
    options: list[Any] = [
        "keep",
        "keep",  # a value given twice
        {"label": "no value"},
        {"value": "x" * 101, "label": "too long a value"},
        {"value": "long-label", "label": "L" * 101},
        42,
        *[f"extra-{n}" for n in range(30)],  # more than Discord's 25
    ]
    await decision_task(world, options)
    message = await one_message(world)
    select = select_of(message, "fb:t:pick:")
    assert select is not None
    values = [o["value"] for o in select["options"]]
    assert len(values) == 25 and len(set(values)) == 25
    assert values[0] == "keep" and values[1:] == [f"extra-{n}" for n in range(24)]
    assert "left out" in fields(message)["Options"]
    assert "given twice" in fields(message)["Options"]


async def test_manual_action_shows_done_and_acknowledge_and_done_completes_once(
    world: World, bridge: BridgeProcess
) -> None:
    alice = world.people.alice
    task = await world.factory.create_task(
        title="Rotate the HubSpot sandbox credentials",
        priority="high",
        type="manual_action",
        context={"summary": "The sandbox key expired; rotate it in the vault."},
    )
    message = await one_message(world)
    assert message.embeds[0]["title"].startswith("🛠️ Manual action required")
    labels = message.button_labels
    assert "Done" in labels and "Acknowledge" in labels
    assert "Reject" not in labels and "Approve" not in labels
    # two people press Done at once: the factory hears of it once
    first = await world.discord.press_button(TASKS_CHANNEL_ID, "Done", user=alice)
    second = await world.discord.press_button(TASKS_CHANNEL_ID, "Done", user=world.people.dave)
    answers = [await final_reply(world, first), await final_reply(world, second)]
    await wait_until(lambda: world.factory.tasks[task["id"]]["status"] == "completed")
    calls = world.factory.calls("POST", COMPLETE)
    assert len(calls) == 1
    assert calls[0].json["decision"] == "approved"
    assert calls[0].json["notes"] == "done"
    assert any("already" in a.lower() for a in answers)
    await world.discord.wait_for(lambda: message.button_labels == [], 10)
    assert len(world.factory.calls("POST", COMPLETE)) == 1


async def test_fix_required_title_and_context_fields(world: World, bridge: BridgeProcess) -> None:
    await world.factory.create_task(
        title="Stripe MCP webhook tests fail",
        priority="high",
        type="fix_required",
        context={
            "summary": "2 tests fail after the SDK bump.",
            "modalType": "fix",
            "metrics": {"errorRate": 0.02, "p95Ms": 180},
            "testResults": {
                "total": 40,
                "passed": 38,
                "failed": 2,
                "coveragePercent": 81,
                "failureDetails": [
                    {"testName": "webhook retry", "error": "AssertionError: 2 != 3"}
                ],
            },
            "diffSummary": {
                "filesChanged": 2,
                "insertions": 30,
                "deletions": 4,
                "files": [{"path": "src/webhooks.ts", "status": "modified", "insertions": 30}],
            },
        },
    )
    message = await one_message(world)
    assert message.embeds[0]["title"].startswith("🔧 Fix required")
    shown = fields(message)
    assert shown["Metrics"] == "errorRate 0.02 · p95Ms 180"
    assert shown["Modal type"] == "fix"
    assert "Done" in message.button_labels and "Reject" not in message.button_labels
    details = await world.discord.press_button(TASKS_CHANNEL_ID, "Details", user=world.people.alice)
    await details.response()
    await world.discord.wait_for(lambda: bool(details.followups or details.callbacks), 10)
    text = str(details.callbacks) + str(details.followups)
    assert "webhook retry" in text and "AssertionError: 2 != 3" in text
    assert "2 files, +30 −4" in text and "src/webhooks.ts" in text


async def test_a_pick_resent_in_the_background_keeps_its_option(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    await make_bridge(**FAST).start()
    task = await decision_task(world, OPTIONS)
    await one_message(world)
    world.factory.delay("POST", COMPLETE, 1.0, drop=True)  # lost: only timeouts
    world.factory.fail("GET", TASK, status=503, times=1000)  # and it cannot be read back
    pick = await world.discord.choose(
        TASKS_CHANNEL_ID, PLACEHOLDER, ["oauth"], user=world.people.alice
    )
    assert "Not confirmed yet" in await final_reply(world, pick, timeout=20)
    world.factory.clear_faults()  # the background re-send gets through
    await wait_until(lambda: world.factory.tasks[task["id"]]["status"] == "completed", timeout=30)
    calls = world.factory.calls("POST", COMPLETE)
    assert len({c.header("Idempotency-Key") for c in calls}) == 1
    assert all(
        c.json["decisionData"]["option"] == {"value": "oauth", "label": "OAuth 2.0"} for c in calls
    )
    assert world.factory.tasks[task["id"]]["decisionData"]["option"]["value"] == "oauth"


async def test_a_pick_cut_short_by_a_crash_is_never_sent_without_its_option(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    """The pick is cleared ("pick again") only once its first request can no longer land
    (one call's longest run after the pick): short timeouts and reconciliation passes here."""
    bridge = make_bridge(
        FACTORY_TIMEOUT_SECONDS="1",
        FACTORY_RETRY_BASE_SECONDS="0.1",
        RECONCILE_INTERVAL_SECONDS="2",
    )
    await bridge.start()
    task = await decision_task(world, OPTIONS)
    message = await one_message(world)
    world.factory.delay("POST", COMPLETE, 30.0, drop=True)  # the request is lost
    alice = world.people.alice
    await world.discord.choose(TASKS_CHANNEL_ID, PLACEHOLDER, ["oauth"], user=alice)
    await wait_until(lambda: len(world.factory.calls("POST", COMPLETE)) == 1, what="the pick")
    await bridge.kill()  # in flight: begun in the store, not confirmed; the option is gone
    world.factory.clear_faults()

    await bridge.start()
    await world.discord.wait_for(lambda: len(world.discord.dm_messages(alice.id)) >= 1, 30)
    assert "pick your option again" in world.discord.dm_messages(alice.id)[-1].content
    assert len(world.factory.calls("POST", COMPLETE)) == 1  # nothing re-sent without it
    assert world.factory.tasks[task["id"]]["status"] == "pending"
    assert select_of(message, "fb:t:pick:") is not None  # the menu is live again
    again = await world.discord.choose(TASKS_CHANNEL_ID, PLACEHOLDER, ["API key"], user=alice)
    assert "approved" in (await final_reply(world, again)).lower()
    body = world.factory.calls("POST", COMPLETE)[-1].json
    assert body["decisionData"]["option"] == {"value": "API key", "label": "API key"}


async def test_typed_commands_offer_only_what_the_task_message_offers(
    world: World, bridge: BridgeProcess
) -> None:
    """``/factory approve`` on a decision task with options would reach the factory without
    the option; ``/factory reject`` on a task with no Reject would reject work to be done.
    Both are refused, audited, and nothing is sent."""
    alice = world.people.alice
    choice = await decision_task(world, OPTIONS)
    await one_message(world)
    chores = await world.factory.create_task(
        title="Rotate the HubSpot sandbox credentials", priority="high", type="manual_action"
    )
    await world.discord.wait_for(lambda: len(task_messages(world)) >= 2, 10)

    async def run(name: str, options: dict[str, Any]) -> str:
        rec = await world.discord.run_command(
            name, options, user=alice, channel_id=TASKS_CHANNEL_ID
        )
        return await final_reply(world, rec)

    approve_choice = await run("factory approve", {"task": choice["id"]})
    assert "choosing one of its options" in approve_choice
    reject_choice = await run("factory reject", {"task": choice["id"], "reason": "no"})
    assert "has no Reject" in reject_choice
    reject_chore = await run("factory reject", {"task": chores["id"], "reason": "later"})
    assert "has no Reject" in reject_chore and "Done" in reject_chore
    assert all("Nothing was sent" in a for a in (approve_choice, reject_choice, reject_chore))
    assert world.factory.calls("POST", COMPLETE) == []
    assert ("alice", "command", "task.approved", "refused") in await audited(world, choice["id"])
    assert ("alice", "command", "task.rejected", "refused") in await audited(world, chores["id"])
    store = Store(world.database_url)
    try:
        entries = await store.audit_entries(task_id=chores["id"])
    finally:
        await store.close()
    # the audit names the command as typed
    assert [e.detail for e in entries if e.action == "task.rejected"] == [
        "/factory reject: not a control of a manual_action task"
    ]
    # what the task's controls do offer still works by command: Done is an approval
    done = await run("factory approve", {"task": chores["id"]})
    assert done == "Task **Rotate the HubSpot sandbox credentials** approved."
    await wait_until(lambda: world.factory.tasks[chores["id"]]["status"] == "completed")


async def test_done_on_work_that_ships_to_production_needs_the_typed_deploy(
    world: World, bridge: BridgeProcess
) -> None:
    """README "Production deploys": the typed DEPLOY "from the button and from /factory
    approve alike" — the Done of a guarded manual action too; its notes stay "done"."""
    task = await world.factory.create_task(
        title="Flip the GHL DNS to Production",
        priority="high",
        type="manual_action",
        stageName="production",
    )
    message = await one_message(world)
    dave = world.people.dave  # a deploy approver
    click = await world.discord.press_button(
        TASKS_CHANNEL_ID, "Done", user=dave, message_id=message.id
    )
    assert (await click.response()).type == CB_MODAL, click.reply_content
    assert world.factory.calls("POST", COMPLETE) == []  # nothing before DEPLOY is typed
    submit = await world.discord.submit_modal(click, {"confirm": "DEPLOY"})
    await final_reply(world, submit)
    await wait_until(lambda: world.factory.tasks[task["id"]]["status"] == "completed")
    [call] = world.factory.calls("POST", COMPLETE)
    assert call.json["decision"] == "approved" and call.json["notes"] == "done"
