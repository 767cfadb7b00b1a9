"""The escalation ladder end to end: ``factory-bridge run`` as a separate process.

Short settings make the whole ladder fit in seconds: DM at T+2, @mention at T+4, @here warning
at T+6 (40 % of a 10 s SLA left), breach at D = T+10, critical at D+3. The emulators record
every notification; each must happen once, in order, within 1 s of its due time — and after a
``kill -9`` and a restart, once and late.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.store import Store
from bot.store.ladder import LadderStore
from sandbox.discord_emulator import (
    DEFAULT_BOT_PERMISSIONS,
    MENTION_EVERYONE,
    RecordedMessage,
)
from sandbox.world import ALERTS_CHANNEL_ID, TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess, wait_until

#: the decision, ladder, restart and lost-message paths run on PostgreSQL too
pytestmark = pytest.mark.both_engines

ALICE_PHONE = "+15550100001"
DAVE_PHONE = "+15550100002"
REASSIGN = r"/v1/tasks/[^/]+/reassign"
COMPLETE = r"/v1/tasks/[^/]+/complete"

#: The ladder of these tests (seconds after the task was created).
LADDER = {
    "ESCALATION_DM_AFTER_SECONDS": 2,
    "ESCALATION_MENTION_AFTER_SECONDS": 4,
    "SLA_WARNING_THRESHOLD_PERCENT": 40,
    "ESCALATION_CRITICAL_AFTER_BREACH_SECONDS": 3,
    "ESCALATION_BUNDLE_SECONDS": 1,
}


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def sent_at(message: RecordedMessage) -> datetime:
    return parse(message.timestamp)


def bot_posts(world: World, channel_id: int) -> list[RecordedMessage]:
    """Messages the bot created in a guild channel (no ephemeral answers)."""
    return [
        m
        for m in world.discord.messages(channel_id)
        if m.author_id == world.discord.bot_user_id and not m.ephemeral and not m.deleted
    ]


def replies(world: World, task_message: RecordedMessage) -> list[RecordedMessage]:
    """Replies of the bot to the task message."""
    return [
        m
        for m in bot_posts(world, TASKS_CHANNEL_ID)
        if m.message_reference and int(m.message_reference["message_id"]) == task_message.id
    ]


def fields(message: RecordedMessage) -> dict[str, str]:
    return {f["name"]: f["value"] for f in message.embeds[0].get("fields", [])}


async def new_task(world: World, sla_seconds: float, **extra: Any) -> tuple[dict, datetime]:
    """A high-priority task whose slaDeadline is ``sla_seconds`` away; (task, created at)."""
    now = datetime.now(UTC)
    task = await world.factory.create_task(
        title=extra.pop("title", "Stripe MCP Server → Production"),
        priority="high",
        createdAt=iso(now),
        slaDeadline=iso(now + timedelta(seconds=sla_seconds)),
        **extra,
    )
    return task, now


async def task_message(world: World, task_id: str) -> RecordedMessage:
    def found() -> bool:
        return any(task_id in str(m.components) for m in bot_posts(world, TASKS_CHANNEL_ID))

    await world.discord.wait_for(found, 10)
    return next(m for m in bot_posts(world, TASKS_CHANNEL_ID) if task_id in str(m.components))


def near(at: datetime, due: datetime, within: float = 1.0) -> bool:
    return abs((at - due).total_seconds()) <= within


async def open_store(world: World) -> Store:
    store = Store(world.database_url)
    return store


async def test_full_ladder_each_step_once_in_order_on_time(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(**LADDER, ESCALATION_SAFE_DEFAULT="deferred")
    await bridge.start()
    alice, dave = world.people.alice, world.people.dave
    task, t0 = await new_task(world, 10)
    deadline = t0 + timedelta(seconds=10)
    message = await task_message(world, task["id"])
    assert fields(message)["Next escalation"].startswith("reminder DM <t:")

    # T+2: one DM to each on-call operator (no assignee)
    await world.discord.wait_for(
        lambda: world.discord.dm_messages(alice.id) and world.discord.dm_messages(dave.id), 5
    )
    dm = world.discord.dm_messages(alice.id)[0]
    assert task["title"] in dm.content and near(sent_at(dm), t0 + timedelta(seconds=2))
    # T+4: a reply @mentioning them
    await world.discord.wait_for(lambda: len(replies(world, message)) >= 1, 5)
    mention = replies(world, message)[0]
    assert set(mention.mentioned_user_ids) == {alice.id, dave.id}
    assert not mention.mentions_everyone
    assert near(sent_at(mention), t0 + timedelta(seconds=4))
    # T+6: @here that really pings
    await world.discord.wait_for(lambda: len(replies(world, message)) >= 2, 5)
    warning = replies(world, message)[1]
    assert "SLA breach imminent" in warning.content and warning.mentions_everyone
    assert near(sent_at(warning), t0 + timedelta(seconds=6))
    # D: one SMS per on-call phone, @here in alerts, the message says so
    await wait_until(lambda: len(world.twilio.messages) >= 2, timeout=6, what="breach SMS")
    assert sorted(m["to"] for m in world.twilio.messages) == [ALICE_PHONE, DAVE_PHONE]
    for sms in world.twilio.messages:
        assert len(sms["body"]) <= 160 and sms["body"].isascii()
        assert near(sms["at"], deadline)
    await world.discord.wait_for(
        lambda: any("SLA breached" in m.content for m in bot_posts(world, ALERTS_CHANNEL_ID)), 5
    )
    alert = next(m for m in bot_posts(world, ALERTS_CHANNEL_ID) if "SLA breached" in m.content)
    assert alert.mentions_everyone and near(sent_at(alert), deadline)
    await world.discord.wait_for(lambda: "🚨 SLA breached" in fields(message)["SLA Deadline"], 5)
    # D+3: the call, the reassignment to the admin, the safe default, the incident report
    await wait_until(lambda: len(world.twilio.calls) >= 1, timeout=6, what="the call")
    call = world.twilio.calls[0]
    assert call["to"] == ALICE_PHONE and "<Say" in call["twiml"] and "Stripe" in call["twiml"]
    critical = deadline + timedelta(seconds=3)
    assert near(call["at"], critical)
    await world.discord.wait_for(
        lambda: any("Incident report" in m.content for m in bot_posts(world, ALERTS_CHANNEL_ID)),
        5,
    )
    reassign = world.factory.calls("POST", REASSIGN)
    assert len(reassign) == 1 and reassign[0].json["assigneeId"] == "user-dave"
    assert near(reassign[0].at, critical)
    complete = world.factory.calls("POST", COMPLETE)
    assert len(complete) == 1 and complete[0].json["decision"] == "deferred"
    report = next(m for m in bot_posts(world, ALERTS_CHANNEL_ID) if "Incident report" in m.content)
    assert near(sent_at(report), critical)
    for word in ("reminder DM", "dm → Alice", "sms → Dave", "call → Alice", "reassign → Dave"):
        assert word in report.content, word
    # in order
    times = [
        sent_at(dm),
        sent_at(mention),
        sent_at(warning),
        min(m["at"] for m in world.twilio.messages),
        call["at"],
        reassign[0].at,
        sent_at(report),
    ]
    assert times == sorted(times)
    # each once: nothing more comes
    await wait_until(
        lambda: datetime.now(UTC) >= critical + timedelta(seconds=1.5), timeout=5, what="quiet"
    )
    assert len(world.discord.dm_messages(alice.id)) == 1
    assert len(world.discord.dm_messages(dave.id)) == 1
    assert len(replies(world, message)) == 2
    assert len(world.twilio.messages) == 2 and len(world.twilio.calls) == 1
    assert len(world.factory.calls("POST", REASSIGN)) == 1
    assert sum("Incident report" in m.content for m in bot_posts(world, ALERTS_CHANNEL_ID)) == 1
    assert "Deferred" in fields(message).get("Decision", "")


async def test_kill_before_breach_restart_takes_it_once_late(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    """kill -9 one second before the breach, restart 5 s later: the breach (and the critical
    step, due meanwhile) are taken once each, late and marked late; nothing repeats."""
    short = {**LADDER, "SLA_WARNING_THRESHOLD_PERCENT": 20}  # DM 2, mention 4, warning 4.8
    bridge = make_bridge(**short)
    await bridge.start()
    task, t0 = await new_task(world, 6)
    deadline = t0 + timedelta(seconds=6)
    message = await task_message(world, task["id"])
    await world.discord.wait_for(lambda: len(replies(world, message)) >= 2, 10)  # the warning
    await wait_until(
        lambda: datetime.now(UTC) >= deadline - timedelta(seconds=1),
        timeout=10,
        what="just before the breach",
    )
    await bridge.kill()
    assert world.twilio.messages == []
    await wait_until(
        lambda: datetime.now(UTC) >= deadline + timedelta(seconds=4),
        timeout=10,
        what="5 s of downtime",
    )
    restarted = make_bridge(**short)
    await restarted.start()
    await wait_until(lambda: len(world.twilio.messages) >= 2, timeout=8, what="late breach SMS")
    assert sorted(m["to"] for m in world.twilio.messages) == [ALICE_PHONE, DAVE_PHONE]
    assert all("late" in m["body"] for m in world.twilio.messages)
    assert all(m["at"] >= deadline + timedelta(seconds=4) for m in world.twilio.messages)
    await world.discord.wait_for(
        lambda: any("SLA breached" in m.content for m in bot_posts(world, ALERTS_CHANNEL_ID)), 5
    )
    alert = next(m for m in bot_posts(world, ALERTS_CHANNEL_ID) if "SLA breached" in m.content)
    assert "(late by" in alert.content
    # the call still follows (it came due during the downtime too)
    await wait_until(lambda: len(world.twilio.calls) >= 1, timeout=8, what="the call")
    assert world.twilio.calls[0]["at"] >= max(m["at"] for m in world.twilio.messages)
    await world.discord.wait_for(
        lambda: any("Incident report" in m.content for m in bot_posts(world, ALERTS_CHANNEL_ID)),
        5,
    )
    await world.discord.wait_for(
        lambda: "(late by" in fields(message).get("Escalation so far", ""), 5
    )
    await wait_until(
        lambda: datetime.now(UTC) >= world.twilio.calls[0]["at"] + timedelta(seconds=1),
        timeout=5,
        what="quiet",
    )
    assert len(world.twilio.messages) == 2 and len(world.twilio.calls) == 1
    assert len(world.discord.dm_messages(world.people.alice.id)) == 1  # no step repeats
    assert len(replies(world, message)) == 2  # DM at 2, mention at 4; warning at 4.8
    assert sum("SLA breached" in m.content for m in bot_posts(world, ALERTS_CHANNEL_ID)) == 1
    assert len(world.factory.calls("POST", REASSIGN)) == 1


async def test_decision_between_warning_and_breach_stops_everything(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(
        **{
            **LADDER,
            "SLA_WARNING_THRESHOLD_PERCENT": 20,  # at T+4.8
            "ESCALATION_CRITICAL_AFTER_BREACH_SECONDS": 1,
        }
    )
    await bridge.start()
    task, t0 = await new_task(world, 6)
    message = await task_message(world, task["id"])
    await world.discord.wait_for(
        lambda: any("imminent" in m.content for m in replies(world, message)), 10
    )
    await world.factory.decide_task(task["id"], "approved", decided_by="user-dashboard")
    await world.discord.wait_for(lambda: "Decision" in fields(message), 5)
    await wait_until(
        lambda: datetime.now(UTC) >= t0 + timedelta(seconds=6 + 1 + 1.5),
        timeout=10,
        what="past breach and critical",
    )
    assert world.twilio.attempts == []
    assert world.factory.calls("POST", REASSIGN) == []
    assert not any("SLA breached" in m.content for m in bot_posts(world, ALERTS_CHANNEL_ID))
    assert "Next escalation" not in fields(message)


async def test_ack_stops_reminders_not_breach_snooze_and_stop_reply_fallback(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    """Acknowledge: no DM/mention/warning, still SMS + call. Snooze: reminders wait, breach
    does not. Alice's phone answers 21610 to calls: persisted, audited, Dave is called."""
    world.twilio.fail_number(ALICE_PHONE, kind="calls")
    bridge = make_bridge(
        **{
            **LADDER,
            "ESCALATION_DM_AFTER_SECONDS": 4,  # leave time to click before the first reminder
            "ESCALATION_MENTION_AFTER_SECONDS": 5,
            "SLA_WARNING_THRESHOLD_PERCENT": 10,  # at T+4.5
            "ESCALATION_CRITICAL_AFTER_BREACH_SECONDS": 1,
        }
    )
    await bridge.start()
    acked, t0 = await new_task(world, 5, title="Acked task")
    snoozed, _ = await new_task(world, 6, title="Snoozed task")
    acked_msg = await task_message(world, acked["id"])
    snoozed_msg = await task_message(world, snoozed["id"])
    click = await world.discord.press_button(
        TASKS_CHANNEL_ID, "Acknowledge", user=world.people.alice, message_id=acked_msg.id
    )
    await click.response()
    pick = await world.discord.choose(
        TASKS_CHANNEL_ID,
        "💤 Snooze reminders…",
        ["3600"],
        user=world.people.dave,
        message_id=snoozed_msg.id,
    )
    await pick.response()
    await world.discord.wait_for(lambda: "Status" in fields(acked_msg), 5)
    await world.discord.wait_for(lambda: "Snoozed" in fields(snoozed_msg), 5)
    assert fields(acked_msg)["Next escalation"].startswith("SLA breach")
    assert fields(snoozed_msg)["Next escalation"].startswith("SLA breach")
    # both breach on time (SMS to both phones, for each task); calls: Alice refuses, Dave rings
    await wait_until(lambda: len(world.twilio.calls) >= 2, timeout=12, what="two calls")
    assert [c["to"] for c in world.twilio.calls] == [DAVE_PHONE, DAVE_PHONE]
    # the acked task's breach texted both; once Alice's number answered 21610 it is persisted
    # as unreachable, so the snoozed task's breach (a second later) texts Dave only
    assert sorted(m["to"] for m in world.twilio.messages) == [ALICE_PHONE, DAVE_PHONE, DAVE_PHONE]
    first_breach = min(m["at"] for m in world.twilio.messages)
    assert near(first_breach, t0 + timedelta(seconds=5))
    assert world.discord.dm_messages(world.people.alice.id) == []
    assert replies(world, acked_msg) == [] and replies(world, snoozed_msg) == []
    refused = [a for a in world.twilio.attempts if a["code"] == 21610]
    assert len(refused) == 1  # persisted: the second call goes straight to Dave
    store = await open_store(world)
    try:
        assert ALICE_PHONE in await LadderStore(store.db).unreachable()
        audit = await store.audit_entries()
        assert any(a.action == "escalation.phone_unreachable" for a in audit)
        assert any(a.action == "task.acknowledge" and a.outcome == "ok" for a in audit)
    finally:
        await store.close()


@pytest.fixture
async def muted_world(tmp_path: Path) -> AsyncIterator[World]:
    """A world whose bot lacks MENTION_EVERYONE."""
    w = World(
        tmp_path / "muted",
        discord_options={"bot_permissions": DEFAULT_BOT_PERMISSIONS & ~MENTION_EVERYONE},
    )
    await w.start()
    try:
        yield w
    finally:
        await w.stop()
    assert not w.discord.spec_violations, w.discord.spec_violations


async def test_degraded_no_twilio_no_here_permission_dm_closed(muted_world: World) -> None:
    """No Twilio settings → SMS/call recorded skipped; no MENTION_EVERYONE → on-call
    mentioned instead of @here; Carol's DMs are closed (50007) → @mention in a reply."""
    world = muted_world
    env = world.env(
        **{**LADDER, "ESCALATION_CRITICAL_AFTER_BREACH_SECONDS": 1},
        TWILIO_ACCOUNT_SID=None,
        TWILIO_AUTH_TOKEN=None,
        TWILIO_FROM_NUMBER=None,
    )
    bridge = BridgeProcess(env, world.workdir, world.bridge_port)
    await bridge.start()
    try:
        carol = world.people.carol
        task, _ = await new_task(world, 5, assigneeId="user-carol")  # warning at T+3
        message = await task_message(world, task["id"])
        await world.discord.wait_for(
            lambda: any(carol.id in m.mentioned_user_ids for m in replies(world, message)), 5
        )
        fallback = replies(world, message)[0]
        assert "could not DM you" in fallback.content
        assert any(e.code == 50007 for e in world.discord.errors)
        await world.discord.wait_for(
            lambda: any("imminent" in m.content for m in replies(world, message)), 8
        )
        warning = next(m for m in replies(world, message) if "imminent" in m.content)
        assert not warning.mentions_everyone
        assert set(warning.mentioned_user_ids) == {world.people.alice.id, world.people.dave.id}
        await world.discord.wait_for(
            lambda: any(
                "Incident report" in m.content for m in bot_posts(world, ALERTS_CHANNEL_ID)
            ),
            10,
        )
        assert world.twilio.attempts == []
        store = await open_store(world)
        try:
            rows = await LadderStore(store.db).deliveries(task_id=task["id"])
            statuses = {(r.channel, r.status) for r in rows if r.channel in ("sms", "call")}
            assert statuses == {("sms", "skipped"), ("call", "skipped")}
        finally:
            await store.close()
    finally:
        await bridge.terminate(timeout=10)


async def test_tasks_falling_due_together_make_one_dm(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(ESCALATION_DM_AFTER_SECONDS=2, ESCALATION_MENTION_AFTER_SECONDS=600)
    await bridge.start()
    now = datetime.now(UTC)
    ids = []
    for n in range(3):
        task = await world.factory.create_task(
            title=f"Batch item {n}", createdAt=iso(now), slaDeadline=iso(now + timedelta(hours=1))
        )
        ids.append(task["id"])
    alice = world.people.alice.id
    await world.discord.wait_for(lambda: len(world.discord.dm_messages(alice)) >= 1, 8)
    await wait_until(lambda: time.time() >= now.timestamp() + 3.5, timeout=5, what="window")
    dms = world.discord.dm_messages(alice)
    assert len(dms) == 1
    assert all(f"Batch item {n}" in dms[0].content for n in range(3))
