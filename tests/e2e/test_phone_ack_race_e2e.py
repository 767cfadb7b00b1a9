"""Two people acknowledging one task at the same moment by phone (README "Phone": a task
someone acknowledged meanwhile is not acknowledged again; nothing goes to the factory).

Both were told "Acknowledged", the factory got two claims and ended claimed by the second
while the bridge showed the first. Now one acknowledgement of a task runs at a time: the
second is told "Already acknowledged by …", sends no claim and is audited ``conflict``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from escalation.phone import phone_ref
from sandbox.world import World
from tests.e2e.test_phone_e2e import (
    ALICE_PHONE,
    CLAIM,
    DAVE_PHONE,
    alice_called_and_dave_texted,
    audit_of,
    breach_sms,
    breaching_task,
    start_bridge,
)
from tests.support.harness import BridgeProcess


async def acknowledgements(world: World, task_id: str) -> list[tuple[str, str]]:
    """(who, outcome) of the task's ``task.acknowledge`` audit entries."""
    entries = await audit_of(world, task_id)
    return sorted(
        (who, outcome) for who, _, action, outcome in entries if action == "task.acknowledge"
    )


async def test_two_sms_acks_at_once_acknowledge_once(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    await start_bridge(world, make_bridge)
    task = await breaching_task(world)
    await breach_sms(world, ALICE_PHONE)
    await breach_sms(world, DAVE_PHONE)
    ref = phone_ref(task["id"])
    alice, dave = await asyncio.gather(
        world.twilio.send_sms(ALICE_PHONE, f"ACK {ref}"),
        world.twilio.send_sms(DAVE_PHONE, f"ACK {ref}"),
    )
    answers = [*alice.messages, *dave.messages]
    assert len([a for a in answers if a.startswith("Acknowledged")]) == 1, answers
    assert len([a for a in answers if a.startswith("Already acknowledged by")]) == 1, answers
    assert len(world.factory.calls("POST", CLAIM)) == 1
    outcomes = [outcome for _, outcome in await acknowledgements(world, task["id"])]
    assert sorted(outcomes) == ["conflict", "ok"]


async def test_a_keypress_and_an_sms_ack_at_once_claim_once(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    _, call = await alice_called_and_dave_texted(world, make_bridge)
    run, dave = await asyncio.gather(
        world.twilio.answer_call(call["sid"], keys="1"),
        world.twilio.send_sms(DAVE_PHONE, "ACK"),
    )
    assert len(world.factory.calls("POST", CLAIM)) == 1
    answers = [run.said[-1], *dave.messages]
    assert len([a for a in answers if "Already acknowledged by" in a]) == 1, answers
