"""The ``/factory`` slash commands end to end: the bridge as a process, Discord and the factory
emulated. Every command, autocomplete, pagination, the DEPLOY modal and the audit CLI.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.store import Store
from sandbox.discord_emulator import InteractionRecord, RecordedMessage
from sandbox.world import GUILD_ID, TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess, wait_until
from tests.support.reading import fields, final_reply, task_messages

COMPLETE = r"/v1/tasks/[^/]+/complete"
CLAIM = r"/v1/tasks/[^/]+/claim"
CB_DEFERRED_MESSAGE = 5
CB_MODAL = 9


# ------------------------------------------------------------------------------ helpers


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def now() -> datetime:
    return datetime.now(UTC)


async def wait_messages(world: World, count: int) -> list[RecordedMessage]:
    await world.discord.wait_for(lambda: len(task_messages(world)) >= count, 15)
    return task_messages(world)


async def command(
    world: World, name: str, options: dict[str, Any] | None = None, *, user: Any
) -> InteractionRecord:
    return await world.discord.run_command(
        name, options or {}, user=user, channel_id=TASKS_CHANNEL_ID
    )


async def listing(world: World, rec: InteractionRecord) -> RecordedMessage:
    """Wait for a deferred listing command to replace its "thinking…" with an embed."""
    first = await rec.response()
    assert first.type == CB_DEFERRED_MESSAGE  # deferred at once: the factory may be slow
    assert rec.ephemeral
    await world.discord.wait_for(
        lambda: (
            rec.original_message is not None
            and bool(rec.original_message.embeds or rec.original_message.content)
        ),
        10,
    )
    message = rec.original_message
    assert message is not None
    return message


async def wait_stored(world: World, count: int) -> None:
    """Wait until the bridge's store tracks ``count`` open tasks (messages are paced)."""
    store = Store(world.database_url)
    try:

        async def enough() -> bool:
            return len(await store.open_tasks()) >= count

        await wait_until(enough, timeout=15, what=f"{count} tracked tasks")
    finally:
        await store.close()


def lines_of(message: RecordedMessage) -> list[str]:
    return (message.embeds[0].get("description") or "").split("\n")


# ------------------------------------------------------------------------------ sync
async def test_factory_group_is_synced_with_every_option_described(
    world: World, bridge: BridgeProcess
) -> None:
    synced = world.discord.synced_commands[GUILD_ID]
    factory = next(c for c in synced if c["name"] == "factory")
    subs = {o["name"]: o for o in factory["options"]}
    assert set(subs) == {
        "status",
        "pending",
        "approve",
        "reject",
        "ack",
        "snooze",
        "pipelines",
        "blockers",
        "history",
    }
    for sub in subs.values():
        assert sub["description"] and sub["description"] != "…"
        for option in sub.get("options", []):
            assert option["description"] and option["description"] != "…", option
    task_options = [
        o
        for name in ("approve", "reject", "ack", "snooze", "history")
        for o in subs[name]["options"]
    ]
    assert all(o["autocomplete"] for o in task_options if o["name"] == "task")
    assert [c["value"] for c in subs["snooze"]["options"][1]["choices"]] == [3600, 14400, 86400]


# ------------------------------------------------------------------------------ status
async def test_status_shows_the_dashboard_summary(world: World, bridge: BridgeProcess) -> None:
    world.factory.create_pipeline(name="ghl", status="active")
    world.factory.create_pipeline(name="stripe", status="active")
    world.factory.create_pipeline(name="broken", status="failed")
    world.factory.set_agents(active=2, error=1, idle=1)
    await world.factory.create_task(priority="critical", emit=False)
    await world.factory.create_task(priority="high", emit=False)
    await world.factory.create_task(priority="high", emit=False)
    await world.factory.create_task(
        priority="low", slaDeadline=iso(now() - timedelta(minutes=5)), emit=False
    )
    rec = await command(world, "factory status", user=world.people.bob)
    message = await listing(world, rec)
    f = fields(message)
    assert "🔴 critical: **1**" in f["Open tasks by priority"]
    assert "🟠 high: **2**" in f["Open tasks by priority"]
    assert "🔵 low: **1**" in f["Open tasks by priority"]
    assert "on track **3**" in f["SLA"] and "breached **1**" in f["SLA"]
    assert "active **2**" in f["Pipelines"] and "failed **1**" in f["Pipelines"]
    assert "in error **1** of 4" in f["Agents"]
    assert len(world.factory.calls("GET", r"/v1/dashboard/summary")) == 1


async def test_status_when_the_factory_is_down_says_so(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(FACTORY_RETRY_BASE_SECONDS="0.01")
    await bridge.start()
    world.factory.fail("GET", r"/v1/dashboard/summary", status=503, times=4)
    rec = await command(world, "factory status", user=world.people.alice)
    message = await listing(world, rec)
    assert "could not be reached" in message.content
    assert rec.rejected == []


# ------------------------------------------------------------------------------ pending
async def test_pending_is_sorted_by_sla_urgency_with_jump_links(
    world: World, bridge: BridgeProcess
) -> None:
    t = now()
    low = await world.factory.create_task(
        title="Low later", priority="low", slaDeadline=iso(t + timedelta(hours=30))
    )
    breached = await world.factory.create_task(
        title="Critical breached",
        priority="critical",
        createdAt=iso(t - timedelta(hours=2)),
        slaDeadline=iso(t - timedelta(minutes=10)),
    )
    soon = await world.factory.create_task(
        title="High soon", priority="high", slaDeadline=iso(t + timedelta(minutes=30))
    )
    medium = await world.factory.create_task(
        title="Medium later", priority="medium", slaDeadline=iso(t + timedelta(hours=2))
    )
    messages = await wait_messages(world, 4)
    message_of = {m.embeds[0]["footer"]["text"].split(" ")[1]: m for m in messages}
    order = [breached, soon, medium, low]

    def link_of(task: dict) -> str:
        return f"https://discord.com/channels/{GUILD_ID}/{TASKS_CHANNEL_ID}/{message_of[task['id']].id}"

    # a message appears in Discord a moment before the bridge has stored its id: ask again
    # (bounded) until every jump link is there
    for _attempt in range(10):
        rec = await command(world, "factory pending", user=world.people.alice)
        answer = await listing(world, rec)
        lines = lines_of(answer)
        if all(link_of(task) in "\n".join(lines) for task in order):
            break
    assert answer.embeds[0]["title"].endswith("(4)")
    for line, task in zip(lines, order, strict=True):
        assert task["title"] in line
        assert task["priority"] in line
        assert "age " in line
        assert re.search(r"<t:\d+:R>", line)
        assert link_of(task) in line
    assert "SLA breached" in lines[0] and "age 2h" in lines[0]
    only_high = await command(world, "factory pending", {"priority": "high"}, user=world.people.bob)
    high_answer = await listing(world, only_high)
    assert high_answer.embeds[0]["title"].endswith("(1)")
    assert "High soon" in lines_of(high_answer)[0]


async def test_pending_paginates_with_previous_and_next_buttons(
    world: World, bridge: BridgeProcess
) -> None:
    for n in range(23):
        await world.factory.create_task(title=f"Release {n:02d}", priority="medium", emit=False)
    rec = await command(world, "factory pending", user=world.people.alice)
    answer = await listing(world, rec)
    embed = answer.embeds[0]
    assert embed["title"].endswith("(23)")
    assert embed["footer"]["text"] == "page 1/3"
    assert len(lines_of(answer)) == 10
    buttons = {b["label"]: b for b in answer.buttons()}
    assert buttons["◀ Previous"].get("disabled") is True
    assert not buttons["Next ▶"].get("disabled")
    seen: set[str] = set(lines_of(answer))
    for page in (2, 3):
        click = await world.discord.press_button(
            TASKS_CHANNEL_ID, "Next ▶", user=world.people.alice, message_id=answer.id
        )
        await click.response()
        await world.discord.wait_for(
            lambda p=page: answer.embeds[0].get("footer", {}).get("text") == f"page {p}/3", 10
        )
        seen |= set(lines_of(answer))
    assert len(lines_of(answer)) == 3
    assert {b["label"]: b for b in answer.buttons()}["Next ▶"].get("disabled") is True
    assert len(seen) == 23
    back = await world.discord.press_button(
        TASKS_CHANNEL_ID, "◀ Previous", user=world.people.alice, message_id=answer.id
    )
    await back.response()
    await world.discord.wait_for(
        lambda: answer.embeds[0].get("footer", {}).get("text") == "page 2/3", 10
    )
    assert world.discord.errors == []


# ------------------------------------------------------------------------------ autocomplete
async def test_task_autocomplete_filters_and_shows_at_most_25(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    world.discord.channel_rate_limit = 1000  # 29 task messages without waiting for the pacer
    await make_bridge(DISCORD_CHANNEL_RATE_LIMIT="1000").start()
    for n in range(27):
        await world.factory.create_task(title=f"Shopify release {n}", priority="low")
    stripe = await world.factory.create_task(title="Stripe webhooks fix", priority="critical")
    await world.factory.create_task(title="Stripe refunds", priority="high")
    await wait_stored(world, 29)
    started = asyncio.get_running_loop().time()
    everything = await world.discord.autocomplete(
        "factory approve",
        {"task": ""},
        "task",
        user=world.people.alice,
        channel_id=TASKS_CHANNEL_ID,
        timeout=3,
    )
    assert asyncio.get_running_loop().time() - started < 3
    assert len(everything) == 25
    typed = await world.discord.autocomplete(
        "factory approve",
        {"task": "STRIPE"},
        "task",
        user=world.people.alice,
        channel_id=TASKS_CHANNEL_ID,
    )
    names = sorted(c["name"] for c in typed)
    assert names == ["🔴 Stripe webhooks fix · critical", "🟠 Stripe refunds · high"]
    assert stripe["id"] in {c["value"] for c in typed}
    for name in ("reject", "ack", "snooze", "history"):
        opts: dict[str, Any] = {"task": "webhooks"}
        choices = await world.discord.autocomplete(
            f"factory {name}", opts, "task", user=world.people.bob, channel_id=TASKS_CHANNEL_ID
        )
        assert [c["value"] for c in choices] == [stripe["id"]]


# ------------------------------------------------------------------------------ decisions
async def test_approve_command_decides_once_and_updates_the_message(
    world: World, bridge: BridgeProcess
) -> None:
    task = await world.factory.create_task(title="Shopify release", priority="high")
    [message] = await wait_messages(world, 1)
    rec = await command(
        world,
        "factory approve",
        {"task": task["id"], "notes": "Looks good"},
        user=world.people.alice,
    )
    assert "approved" in await final_reply(world, rec)
    assert rec.ephemeral
    [call] = world.factory.calls("POST", COMPLETE)
    assert call.json["decision"] == "approved"
    assert call.json["notes"] == "Looks good"
    assert call.json["decisionData"]["discordUsername"] == "alice"
    await world.discord.wait_for(lambda: "Approved" in fields(message).get("Decision", ""), 10)
    assert message.button_labels == []
    again = await command(world, "factory approve", {"task": task["id"]}, user=world.people.dave)
    assert "Already approved by" in await final_reply(world, again)
    assert len(world.factory.calls("POST", COMPLETE)) == 1


async def test_reject_command_sends_the_reason(world: World, bridge: BridgeProcess) -> None:
    task = await world.factory.create_task(title="Stripe review", priority="high")
    [message] = await wait_messages(world, 1)
    rec = await command(
        world,
        "factory reject",
        {"task": task["id"], "reason": "Missing retries."},
        user=world.people.alice,
    )
    assert "rejected" in await final_reply(world, rec)
    [call] = world.factory.calls("POST", COMPLETE)
    assert (call.json["decision"], call.json["notes"]) == ("rejected", "Missing retries.")
    await world.discord.wait_for(lambda: "Rejected" in fields(message).get("Decision", ""), 10)
    assert "Missing retries." in fields(message)["Decision"]


async def test_commands_refuse_members_without_a_role_and_unknown_tasks(
    world: World, bridge: BridgeProcess
) -> None:
    task = await world.factory.create_task(title="Shopify release", priority="high")
    await wait_messages(world, 1)
    for name, opts in (
        ("factory approve", {"task": task["id"]}),
        ("factory reject", {"task": task["id"], "reason": "no"}),
        ("factory ack", {"task": task["id"]}),
        ("factory snooze", {"task": task["id"], "duration": 3600}),
    ):
        rec = await command(world, name, opts, user=world.people.bob)
        assert "approver role" in await final_reply(world, rec), name
    unknown = await command(
        world, "factory approve", {"task": "no-such-task"}, user=world.people.alice
    )
    assert "not known" in await final_reply(world, unknown)
    garbage = await command(
        world, "factory approve", {"task": "a title / with spaces"}, user=world.people.alice
    )
    assert "not a task id" in await final_reply(world, garbage)
    assert world.factory.calls("POST", COMPLETE) == []
    assert world.factory.calls("POST", CLAIM) == []


async def test_ack_and_snooze_commands_update_the_message(
    world: World, bridge: BridgeProcess
) -> None:
    alice = world.people.alice
    task = await world.factory.create_task(title="Shopify release", priority="high")
    [message] = await wait_messages(world, 1)
    ack = await command(world, "factory ack", {"task": task["id"]}, user=alice)
    assert "You acknowledged" in await final_reply(world, ack)
    [claim] = world.factory.calls("POST", CLAIM)
    assert claim.json == {"userId": "user-alice"}
    await world.discord.wait_for(
        lambda: fields(message).get("Status") == f"👀 acknowledged by <@{alice.id}>", 10
    )
    before = int(now().timestamp())
    snooze = await command(
        world, "factory snooze", {"task": task["id"], "duration": 14400}, user=alice
    )
    assert "snoozed until" in await final_reply(world, snooze)
    await world.discord.wait_for(lambda: "Snoozed" in fields(message), 10)
    until = int(re.search(r"<t:(\d+):f>", fields(message)["Snoozed"]).group(1))  # type: ignore[union-attr]
    assert before + 14400 - 5 <= until <= before + 14400 + 30
    assert "by alice" in fields(message)["Snoozed"]
    assert world.factory.calls("POST", COMPLETE) == []  # a snooze is the bridge's own record


# ------------------------------------------------------------------------------ DEPLOY modal
async def production_task(world: World, **overrides: Any) -> dict[str, Any]:
    task_fields: dict[str, Any] = {
        "title": "GHL MCP Server → Production",
        "priority": "critical",
        "stageName": "production",
        "pipelineId": "ghl-mcp-server",
    }
    task_fields.update(overrides)
    return await world.factory.create_task(**task_fields)


async def test_approve_command_on_production_needs_deploy_role_and_typed_deploy(
    world: World, bridge: BridgeProcess
) -> None:
    dave = world.people.dave
    task = await production_task(world)
    [message] = await wait_messages(world, 1)
    # missing role: alice is an approver but not a deploy approver — no modal, nothing sent
    refused = await command(world, "factory approve", {"task": task["id"]}, user=world.people.alice)
    assert "deploy-approver role" in await final_reply(world, refused)
    assert refused.modal is None
    # wrong word: nothing sent, says why
    wrong = await command(world, "factory approve", {"task": task["id"]}, user=dave)
    assert (await wrong.response()).type == CB_MODAL
    assert wrong.modal is not None and wrong.modal["custom_id"].startswith(
        f"fb:m:deploy:{task['id']}:"
    )
    submitted = await world.discord.submit_modal(wrong, {"confirm": "deploy"})
    answer = await submitted.response()
    assert answer.ephemeral and "not `DEPLOY`" in (answer.content or "")
    assert world.factory.calls("POST", COMPLETE) == []
    assert "Approve" in message.button_labels
    # right word: approved once, the command's notes were carried into the modal
    right = await command(
        world, "factory approve", {"task": task["id"], "notes": "ship it"}, user=dave
    )
    await right.response()
    notes_input = [
        c
        for row in right.modal["components"]  # type: ignore[index]
        for c in (row.get("components") or [row.get("component")])
        if c and c.get("custom_id") == "notes"
    ]
    assert notes_input and notes_input[0].get("value") == "ship it"
    done = await world.discord.submit_modal(right, {"confirm": "DEPLOY"})
    assert "approved" in await final_reply(world, done)
    [call] = world.factory.calls("POST", COMPLETE)
    assert call.json["decisionData"]["discordUsername"] == "dave"
    assert call.json["notes"] == "ship it"
    await world.discord.wait_for(lambda: "Approved" in fields(message).get("Decision", ""), 10)


async def test_reject_and_snooze_commands_need_no_typed_confirmation_on_production(
    world: World, bridge: BridgeProcess
) -> None:
    task = await production_task(world)
    await wait_messages(world, 1)
    snooze = await command(
        world, "factory snooze", {"task": task["id"], "duration": 3600}, user=world.people.alice
    )
    assert "snoozed" in await final_reply(world, snooze)
    reject = await command(
        world,
        "factory reject",
        {"task": task["id"], "reason": "not today"},
        user=world.people.alice,
    )
    assert "rejected" in await final_reply(world, reject)
    assert reject.modal is None
    [call] = world.factory.calls("POST", COMPLETE)
    assert call.json["decision"] == "rejected"


# ------------------------------------------------------------------------------ pipelines
async def test_pipelines_shows_stage_progress_and_filters_by_status(
    world: World, bridge: BridgeProcess
) -> None:
    world.factory.create_pipeline(
        name="GHL MCP Server", currentStage="staging", priority="critical"
    )
    world.factory.create_pipeline(name="Stripe MCP", currentStage="building", status="paused")
    world.factory.create_pipeline(name="Broken MCP", currentStage="testing", status="failed")
    rec = await command(world, "factory pipelines", user=world.people.bob)
    lines = lines_of(await listing(world, rec))
    assert len(lines) == 3
    assert "Broken MCP" in lines[0] and "testing 4/8" in lines[0] and "failed" in lines[0]
    assert "GHL MCP Server" in lines[1] and "staging 6/8 ▰▰▰▰▰▰▱▱" in lines[1]
    assert "Stripe MCP" in lines[2] and "building 3/8" in lines[2]
    paused = await command(world, "factory pipelines", {"status": "paused"}, user=world.people.bob)
    paused_lines = lines_of(await listing(world, paused))
    assert len(paused_lines) == 1 and "Stripe MCP" in paused_lines[0]


# ------------------------------------------------------------------------------ blockers
async def test_blockers_lists_what_is_stuck_and_why_most_urgent_first(
    world: World, bridge: BridgeProcess
) -> None:
    t = now()
    far = iso(t + timedelta(days=3))
    await world.factory.create_task(
        title="Critical past SLA",
        priority="critical",
        blocksStageAdvance=True,
        createdAt=iso(t - timedelta(hours=2)),
        slaDeadline=iso(t - timedelta(minutes=1)),
        emit=False,
    )
    await world.factory.create_task(
        title="High old unclaimed",
        priority="high",
        blocksStageAdvance=True,
        createdAt=iso(t - timedelta(hours=5)),
        slaDeadline=far,
        emit=False,
    )
    await world.factory.create_task(
        title="High fresh unassigned",
        priority="high",
        blocksStageAdvance=True,
        createdAt=iso(t - timedelta(hours=1)),
        slaDeadline=far,
        emit=False,
    )
    await world.factory.create_task(
        title="Medium claimed",
        priority="medium",
        status="claimed",
        assigneeId="user-alice",
        blocksStageAdvance=True,
        createdAt=iso(t - timedelta(hours=6)),
        slaDeadline=far,
        emit=False,
    )
    await world.factory.create_task(title="Not blocking", priority="critical", emit=False)
    world.factory.create_pipeline(
        name="Broken MCP",
        currentStage="testing",
        status="failed",
        priority="high",
        updatedAt=t - timedelta(hours=3),
    )
    world.factory.create_pipeline(name="Fine MCP", status="active", priority="critical")
    rec = await command(world, "factory blockers", user=world.people.bob)
    lines = lines_of(await listing(world, rec))
    expected = [
        ("Critical past SLA", "SLA breached"),
        ("High old unclaimed", "Unclaimed for 4h+"),
        ("Broken MCP — testing failed", "Stage failed — requires intervention"),
        ("High fresh unassigned", "Unassigned"),
        ("Medium claimed", "Awaiting decision"),
    ]
    assert len(lines) == len(expected), lines
    for line, (title, reason) in zip(lines, expected, strict=True):
        assert title in line and f"**{reason}**" in line


# ------------------------------------------------------------------------------ history + CLI
async def test_history_shows_the_task_audit_and_the_cli_prints_it(
    world: World, bridge: BridgeProcess
) -> None:
    task = await world.factory.create_task(title="Shopify release", priority="high")
    [message] = await wait_messages(world, 1)
    refused = await world.discord.press_button(TASKS_CHANNEL_ID, "Approve", user=world.people.bob)
    await refused.response()
    click = await world.discord.press_button(TASKS_CHANNEL_ID, "Approve", user=world.people.alice)
    await click.response()
    await world.discord.wait_for(lambda: "Approved" in fields(message).get("Decision", ""), 10)
    rec = await command(world, "factory history", {"task": task["id"]}, user=world.people.bob)
    answer = await listing(world, rec)
    assert rec.ephemeral
    lines = lines_of(answer)
    assert any("`message.posted` → ok" in line for line in lines)
    assert any("**bob** via button" in line and "→ refused" in line for line in lines)
    assert any("**alice** via button" in line and "`task.approved` → ok" in line for line in lines)
    empty = await command(world, "factory history", {"task": "never-seen"}, user=world.people.bob)
    assert "No audit entries" in (await listing(world, empty)).embeds[0]["description"]

    env = {**os.environ, **world.env()}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "audit",
        "--task",
        task["id"],
        "--since",
        "1h",
        cwd=str(world.workdir),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    text = out.decode()
    assert "message.posted" in text
    assert re.search(r"alice\s+button\s+task\.approved\s+task=\S+\s+ok", text)
    assert re.search(r"bob\s+button\s+task\.approved\s+task=\S+\s+refused", text)
    assert task["id"] in text
