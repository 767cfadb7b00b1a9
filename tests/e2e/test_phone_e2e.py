"""The phone that acts (issue 14), end to end: the bridge as a separate process, the real twilio
library against the Twilio emulator, which signs its webhooks as Twilio does.

Short settings: the SLA deadline is 2 s after the task, the critical call 1 s after the breach,
the next person's call 0.5 s after an unanswered one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.store import Store
from bot.store.ladder import LadderStore
from escalation.phone import phone_ref
from sandbox.discord_emulator import RecordedMessage
from sandbox.world import ALERTS_CHANNEL_ID, TASKS_CHANNEL_ID, World
from tests.support.harness import BridgeProcess, wait_until

ALICE_PHONE = "+15550100001"
DAVE_PHONE = "+15550100002"
ERIN_PHONE = "+15550100005"
STRANGER_PHONE = "+15550109999"
CLAIM = r"/v1/tasks/[^/]+/claim"

PHONE = {
    "ESCALATION_DM_AFTER_SECONDS": 60,
    "ESCALATION_MENTION_AFTER_SECONDS": 120,
    "SLA_WARNING_THRESHOLD_PERCENT": 1,
    "ESCALATION_CRITICAL_AFTER_BREACH_SECONDS": 1,
    "ESCALATION_BUNDLE_SECONDS": 0,
    "ESCALATION_CALL_NEXT_AFTER_SECONDS": 0.5,
}


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def start_bridge(world: World, make_bridge: Callable[..., BridgeProcess]) -> BridgeProcess:
    bridge = make_bridge(**PHONE, BRIDGE_PUBLIC_URL=world.bridge_url)
    await bridge.start()
    return bridge


async def breaching_task(world: World, **extra: Any) -> dict[str, Any]:
    """A high-priority task whose SLA deadline is 2 s away."""
    now = datetime.now(UTC)
    return await world.factory.create_task(
        title=extra.pop("title", "Stripe MCP Server to Production"),
        priority=extra.pop("priority_override", "high"),
        createdAt=iso(now),
        slaDeadline=iso(now + timedelta(seconds=2)),
        **extra,
    )


def sms_to(world: World, phone: str) -> list[dict[str, Any]]:
    return [m for m in world.twilio.messages if m["to"] == phone]


def calls_to(world: World, phone: str) -> list[dict[str, Any]]:
    return [c for c in world.twilio.calls if c["to"] == phone]


async def breach_sms(world: World, phone: str) -> str:
    await wait_until(lambda: bool(sms_to(world, phone)), timeout=15, what=f"SMS to {phone}")
    return str(sms_to(world, phone)[0]["body"])


def task_message(world: World, task_id: str) -> RecordedMessage:
    return next(
        m
        for m in world.discord.messages(TASKS_CHANNEL_ID)
        if task_id in str(m.components) and not m.ephemeral
    )


def status_field(message: RecordedMessage) -> str:
    return {f["name"]: f["value"] for f in message.embeds[0].get("fields", [])}.get("Status", "")


async def audit_of(world: World, task_id: str) -> list[tuple[str, str, str, str]]:
    store = Store(f"sqlite:///{world.database_file}")
    try:
        entries = await store.audit_entries(task_id=task_id)
    finally:
        await store.close()
    return [(e.actor_name, e.via, e.action, e.outcome) for e in entries]


async def call_rows(world: World, task_id: str) -> list[tuple[str, str]]:
    store = Store(f"sqlite:///{world.database_file}")
    try:
        rows = await LadderStore(store.db).deliveries(task_id=task_id, channels=["call"])
    finally:
        await store.close()
    return [(r.recipient, r.status) for r in rows]


async def calls_stored(world: World, task_id: str, expected: list[tuple[str, str]]) -> None:
    """Wait until the task's call deliveries are ``expected`` (recipient, status)."""

    async def stored() -> bool:
        return sorted(await call_rows(world, task_id)) == expected

    await wait_until(stored, timeout=5, what=f"calls stored as {expected}")


async def both_calls_sent(world: World, task_id: str) -> None:
    """Alice's and Dave's calls are stored as sent (the emulator may record a call a moment
    before the bridge stores Twilio's answer)."""

    async def sent() -> bool:
        return sorted(await call_rows(world, task_id)) == [("Alice", "sent"), ("Dave", "sent")]

    await wait_until(sent, timeout=5, what="both calls stored as sent")


# ------------------------------------------------------------------------------ SMS replies
async def test_sms_ack_ref_claims_once_and_shows_it(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    await start_bridge(world, make_bridge)
    task = await breaching_task(world)
    body = await breach_sms(world, ALICE_PHONE)
    match = re.search(r"Reply ACK (\d{4})", body)
    assert match, body
    assert body.isascii() and len(body) <= 306
    assert f"https://discord.com/channels/{world.guild.id}/{TASKS_CHANNEL_ID}/" in body

    answer = await world.twilio.send_sms(ALICE_PHONE, f"  ack   {match[1]} ")
    assert answer.status == 200
    assert answer.messages == ["Acknowledged: Stripe MCP Server to Production."]
    [claim] = world.factory.calls("POST", CLAIM)
    assert claim.json == {"userId": "user-alice"}
    assert world.factory.tasks[task["id"]]["status"] == "claimed"
    alice = world.people.alice
    await world.discord.wait_for(
        lambda: (
            status_field(task_message(world, task["id"]))
            == f"👀 acknowledged by <@{alice.id}> via SMS"
        ),
        10,
    )
    assert ("Alice", "sms", "task.acknowledge", "ok") in await audit_of(world, task["id"])

    # the same reply again (Twilio retries a webhook): no second claim
    again = await world.twilio.send_sms(ALICE_PHONE, f"ACK {match[1]}")
    assert "No open task" in again.messages[0]
    assert len(world.factory.calls("POST", CLAIM)) == 1
    assert not world.twilio.spec_violations, world.twilio.spec_violations


async def test_forged_signature_is_403_and_changes_nothing(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = await start_bridge(world, make_bridge)
    await breaching_task(world)
    body = await breach_sms(world, ALICE_PHONE)
    ref = re.search(r"Reply ACK (\d{4})", body)
    assert ref
    forged = await world.twilio.send_sms(ALICE_PHONE, f"ACK {ref[1]}", signature="bm90IHR3aWxpbw==")
    missing = await world.twilio.send_sms(ALICE_PHONE, "ACK", signature="")
    assert (forged.status, missing.status) == (403, 403)
    assert forged.messages == [] and missing.messages == []
    assert world.factory.calls("POST", CLAIM) == []
    await wait_until(
        lambda: "X-Twilio-Signature" in bridge.log_tail(200), timeout=5, what="refusal logged"
    )


async def test_unknown_number_and_unknown_command_change_nothing(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    await start_bridge(world, make_bridge)
    await breaching_task(world)
    await breach_sms(world, ALICE_PHONE)
    stranger = await world.twilio.send_sms(STRANGER_PHONE, "ACK ALL")
    assert stranger.status == 200
    assert stranger.messages == ["This number is not on the roster. Nothing was changed."]
    approve = await world.twilio.send_sms(ALICE_PHONE, "APPROVE")
    assert approve.messages[0].startswith("Not understood.")
    assert "Decisions are made in Discord" in approve.messages[0]
    assert world.factory.calls("POST", CLAIM) == []
    assert world.factory.calls("POST", r"/v1/tasks/[^/]+/complete") == []


async def test_sms_from_a_person_without_the_approver_role_is_refused(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    # bob has no Discord role: on call with a phone, he gets the SMS but may not acknowledge
    world.roster_file.write_text(
        world.roster_file.read_text()
        + f'\n[[operators]]\nname = "Bob"\ndiscord_user_id = {world.people.bob.id}\n'
        'phone = "+15550100003"\non_call = true\n',
        encoding="utf-8",
    )
    await start_bridge(world, make_bridge)
    await breaching_task(world)
    await breach_sms(world, "+15550100003")
    answer = await world.twilio.send_sms("+15550100003", "ACK")
    assert "approver role" in answer.messages[0]
    assert world.factory.calls("POST", CLAIM) == []


# ------------------------------------------------------------------------------ calls
async def first_call(world: World, phone: str) -> dict[str, Any]:
    await wait_until(lambda: bool(calls_to(world, phone)), timeout=15, what=f"call to {phone}")
    return calls_to(world, phone)[0]


async def test_call_answered_with_1_acknowledges(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    await start_bridge(world, make_bridge)
    task = await breaching_task(world)
    call = await first_call(world, ALICE_PHONE)
    assert call["status_callback"].startswith(f"{world.bridge_url}/twilio/voice/status?")
    assert "completed" in call["status_callback_events"]

    await calls_stored(world, task["id"], [("Alice", "sent")])
    run = await world.twilio.answer_call(call["sid"], keys="21")
    assert "Press 1 to acknowledge, 2 to hear this again." in run.said
    assert [key for _, key in run.gathers] == ["2", "1"]  # 2 said it again, then 1
    assert run.said[-1] == "Acknowledged: Stripe MCP Server to Production. Goodbye."
    [claim] = world.factory.calls("POST", CLAIM)
    assert claim.json == {"userId": "user-alice"}
    assert ("Alice", "phone", "task.acknowledge", "ok") in await audit_of(world, task["id"])
    alice = world.people.alice
    await world.discord.wait_for(
        lambda: (
            status_field(task_message(world, task["id"]))
            == f"👀 acknowledged by <@{alice.id}> via phone"
        ),
        10,
    )
    # the call completed with the task acknowledged: nobody else is called
    assert await call_rows(world, task["id"]) == [("Alice", "sent")]
    assert not world.twilio.spec_violations, world.twilio.spec_violations


async def test_no_answer_calls_the_next_person_once(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    await start_bridge(world, make_bridge)
    task = await breaching_task(world)
    call = await first_call(world, ALICE_PHONE)
    ended = datetime.now(UTC)
    answer = await world.twilio.end_call(call["sid"], "no-answer")
    assert answer is not None and answer.status == 200
    again = await world.twilio.status_callback(call["sid"], "no-answer")  # a retried callback
    assert again is not None and again.status == 200
    nxt = await first_call(world, DAVE_PHONE)
    assert (nxt["at"] - ended).total_seconds() >= 0.5
    # Dave does not answer either: nobody is left, nothing more
    await world.twilio.end_call(nxt["sid"], "busy")
    assert len(calls_to(world, DAVE_PHONE)) == 1 and len(calls_to(world, ALICE_PHONE)) == 1
    outcomes = [(action, outcome) for _, _, action, outcome in await audit_of(world, task["id"])]
    assert outcomes.count(("escalation.call", "fallback")) == 1
    assert ("escalation.call", "failed") in outcomes  # nobody left after Dave
    await both_calls_sent(world, task["id"])

    def report_lists_dave() -> bool:
        return any(
            "Incident report" in str(m.content) + str(m.embeds) and "call → Dave" in m.content
            for m in world.discord.messages(ALERTS_CHANNEL_ID)
        )

    await world.discord.wait_for(report_lists_dave, 10)  # each attempt in the incident report


async def test_a_repeated_no_answer_calls_one_more_person_not_two(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    # a third person to call: the admin Erin (the call order: Alice, Dave, then Erin)
    world.roster_file.write_text(
        world.roster_file.read_text()
        + f'\n[[operators]]\nname = "Erin"\ndiscord_user_id = {world.people.erin.id}\n'
        f'phone = "{ERIN_PHONE}"\nadmin = true\n',
        encoding="utf-8",
    )
    await start_bridge(world, make_bridge)
    task = await breaching_task(world)
    call = await first_call(world, ALICE_PHONE)
    await calls_stored(world, task["id"], [("Alice", "sent")])
    await world.twilio.end_call(call["sid"], "no-answer")
    await world.twilio.status_callback(call["sid"], "no-answer")  # Twilio retries it
    # the callbacks were answered: whatever they planned is stored, and it is Dave alone
    assert sorted(await call_rows(world, task["id"])) in (
        [("Alice", "sent"), ("Dave", "pending")],
        [("Alice", "sent"), ("Dave", "claimed")],
        [("Alice", "sent"), ("Dave", "sent")],
    )
    dave = await first_call(world, DAVE_PHONE)
    await both_calls_sent(world, task["id"])
    await world.twilio.end_call(dave["sid"], "busy")
    await world.twilio.status_callback(dave["sid"], "busy")
    await first_call(world, ERIN_PHONE)
    await calls_stored(world, task["id"], [("Alice", "sent"), ("Dave", "sent"), ("Erin", "sent")])
    assert [len(calls_to(world, p)) for p in (ALICE_PHONE, DAVE_PHONE, ERIN_PHONE)] == [1, 1, 1]
    outcomes = [(action, outcome) for _, _, action, outcome in await audit_of(world, task["id"])]
    assert outcomes.count(("escalation.call", "fallback")) == 2


async def alice_called_and_dave_texted(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A bridge started, a breaching task, Alice's critical call ringing and Dave's breach SMS
    sent: (the task, Alice's call)."""
    await start_bridge(world, make_bridge)
    task = await breaching_task(world)
    call = await first_call(world, ALICE_PHONE)
    await calls_stored(world, task["id"], [("Alice", "sent")])
    await breach_sms(world, DAVE_PHONE)
    return task, call


async def test_key_1_after_an_sms_ack_says_by_whom_and_claims_once(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    task, call = await alice_called_and_dave_texted(world, make_bridge)
    answer = await world.twilio.send_sms(DAVE_PHONE, "ACK")  # Dave first, while Alice's rings
    assert answer.messages == ["Acknowledged: Stripe MCP Server to Production."]
    run = await world.twilio.answer_call(call["sid"], keys="1")
    assert run.said[-1] == (
        "Already acknowledged by Dave via SMS: Stripe MCP Server to Production. Goodbye."
    )
    [claim] = world.factory.calls("POST", CLAIM)  # Dave's only
    assert claim.json == {"userId": "user-dave"}
    acknowledgements = [
        (who, via)
        for who, via, action, _ in await audit_of(world, task["id"])
        if action == "task.acknowledge"
    ]
    assert acknowledgements == [("Dave", "sms")]


async def test_forged_status_callback_calls_nobody(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    await start_bridge(world, make_bridge)
    task = await breaching_task(world)
    call = await first_call(world, ALICE_PHONE)
    await calls_stored(world, task["id"], [("Alice", "sent")])
    forged = await world.twilio.status_callback(call["sid"], "no-answer", signature="Zm9yZ2Vk")
    assert forged is not None and forged.status == 403
    assert await call_rows(world, task["id"]) == [("Alice", "sent")]


# ------------------------------------------------------------------------------ quiet hours
async def test_high_breach_in_quiet_hours_pages_at_once_medium_waits(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    now = datetime.now(UTC)
    bridge = make_bridge(
        **PHONE,
        BRIDGE_PUBLIC_URL=world.bridge_url,
        QUIET_HOURS_ENABLED="true",
        QUIET_HOURS_START=(now - timedelta(hours=1)).strftime("%H:%M"),
        QUIET_HOURS_END=(now + timedelta(hours=1)).strftime("%H:%M"),
    )
    await bridge.start()
    await breaching_task(world, title="Medium task", priority_override="medium")
    await breaching_task(world, title="High task")
    body = await breach_sms(world, ALICE_PHONE)
    assert "High task" in body and "Medium task" not in body
    with pytest.raises(TimeoutError):  # the medium breach is held for the morning digest
        await wait_until(
            lambda: any("Medium" in m["body"] for m in world.twilio.messages), timeout=1.5
        )


# ------------------------------------------------------------------------------ more replies
async def test_help_ack_without_ref_snooze_and_ack_all(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    await start_bridge(world, make_bridge)
    first = await breaching_task(world, title="First task")
    second = await breaching_task(world, title="Second task")
    await wait_until(lambda: len(sms_to(world, DAVE_PHONE)) >= 1, timeout=15, what="breach SMS")
    await wait_until(
        lambda: all(
            any(phone_ref(t["id"]) in m["body"] for m in sms_to(world, DAVE_PHONE))
            for t in (first, second)
        ),
        timeout=15,
        what="both tasks paged to Dave",
    )
    help_text = (await world.twilio.send_sms(DAVE_PHONE, "help")).messages[0]
    assert phone_ref(first["id"]) in help_text and phone_ref(second["id"]) in help_text
    ambiguous = (await world.twilio.send_sms(DAVE_PHONE, "ACK")).messages[0]
    assert ambiguous.startswith("2 open tasks") and "ACK ALL" in ambiguous
    assert world.factory.calls("POST", CLAIM) == []
    snoozed = await world.twilio.send_sms(DAVE_PHONE, f"SNOOZE {phone_ref(first['id'])}")
    assert snoozed.messages == ["Snoozed 1 h: First task."]
    both = await world.twilio.send_sms(DAVE_PHONE, "Ack All")
    assert both.messages == ["Acknowledged: First task. Acknowledged: Second task."]
    assert len(world.factory.calls("POST", CLAIM)) == 2
    actions = await audit_of(world, first["id"])
    assert ("Dave", "sms", "task.snooze", "ok") in actions
    assert ("Dave", "sms", "task.acknowledge", "ok") in actions


async def test_start_clears_the_mark_a_stop_left(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    world.twilio.fail_number(ALICE_PHONE, code=21610)  # Alice replied STOP at some point
    await start_bridge(world, make_bridge)
    await breaching_task(world)
    await breach_sms(world, DAVE_PHONE)

    async def unreachable() -> set[str]:
        store = Store(f"sqlite:///{world.database_file}")
        try:
            return await LadderStore(store.db).unreachable()
        finally:
            await store.close()

    await wait_until(
        lambda: _contains(unreachable(), ALICE_PHONE), timeout=10, what="Alice marked unreachable"
    )
    world.twilio.clear_faults()
    answer = await world.twilio.send_sms(ALICE_PHONE, "START")
    assert answer.messages == ["You will get Factory Bridge pages on this number again."]
    assert ALICE_PHONE not in await unreachable()


async def _contains(found: Any, item: str) -> bool:
    return item in await found


async def test_a_call_completed_without_a_1_calls_the_next_person(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    await start_bridge(world, make_bridge)
    task = await breaching_task(world)
    call = await first_call(world, ALICE_PHONE)
    run = await world.twilio.answer_call(call["sid"], keys=None)  # listens, presses nothing
    assert run.said[-1] == "No key was pressed. Goodbye."
    await first_call(world, DAVE_PHONE)
    assert world.factory.calls("POST", CLAIM) == []
    await both_calls_sent(world, task["id"])


async def test_kill_9_while_the_next_call_waits_calls_once_after_restart(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    bridge = make_bridge(
        **{**PHONE, "ESCALATION_CALL_NEXT_AFTER_SECONDS": 1}, BRIDGE_PUBLIC_URL=world.bridge_url
    )
    await bridge.start()
    task = await breaching_task(world)
    call = await first_call(world, ALICE_PHONE)
    await world.twilio.end_call(call["sid"], "no-answer")  # Dave's call is stored, due in 1 s
    await bridge.kill()
    assert calls_to(world, DAVE_PHONE) == []
    await bridge.start()
    await first_call(world, DAVE_PHONE)
    assert len(calls_to(world, DAVE_PHONE)) == 1
    await both_calls_sent(world, task["id"])
