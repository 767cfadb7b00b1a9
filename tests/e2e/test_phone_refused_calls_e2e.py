"""Calls Twilio refuses, end to end (README "Phone": "Nobody answers"): the bridge as a separate
process, the real twilio library against the Twilio emulator.

A call Twilio refuses when it is created (21211 invalid number; 21610 a STOP-ed phone) rings
nobody, so the next operator of the call order is called, as after a call Twilio accepted and
then reported ``failed``: the critical step's own call, and a next-person call after an
unanswered one.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sandbox.world import World
from tests.e2e.test_phone_e2e import (
    ALICE_PHONE,
    DAVE_PHONE,
    ERIN_PHONE,
    audit_of,
    breaching_task,
    call_rows,
    calls_stored,
    calls_to,
    first_call,
    start_bridge,
)
from tests.support.harness import BridgeProcess


def add_erin(world: World) -> None:
    """A third person to call: the admin Erin (the call order: Alice, Dave, then Erin)."""
    world.roster_file.write_text(
        world.roster_file.read_text()
        + f'\n[[operators]]\nname = "Erin"\ndiscord_user_id = {world.people.erin.id}\n'
        f'phone = "{ERIN_PHONE}"\nadmin = true\n',
        encoding="utf-8",
    )


async def test_a_critical_call_twilio_refuses_calls_the_next_on_call(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    world.twilio.fail_number(
        ALICE_PHONE, status=400, code=21211, message="Invalid 'To' Phone Number", kind="calls"
    )
    await start_bridge(world, make_bridge)
    task = await breaching_task(world)
    await first_call(world, DAVE_PHONE)  # nobody else was called before the fix
    await calls_stored(world, task["id"], [("Alice", "failed"), ("Dave", "sent")])
    assert calls_to(world, ALICE_PHONE) == [] and len(calls_to(world, DAVE_PHONE)) == 1
    outcomes = [(action, outcome) for _, _, action, outcome in await audit_of(world, task["id"])]
    assert outcomes.count(("escalation.call", "fallback")) == 1


@pytest.mark.parametrize(
    ("code", "dave_status"),
    [(21610, "unreachable"), (21211, "failed")],
    ids=["stop", "invalid-number"],
)
async def test_a_next_person_call_twilio_refuses_calls_the_person_after(
    world: World, make_bridge: Callable[..., BridgeProcess], code: int, dave_status: str
) -> None:
    add_erin(world)
    await start_bridge(world, make_bridge)
    task = await breaching_task(world)
    call = await first_call(world, ALICE_PHONE)
    await calls_stored(world, task["id"], [("Alice", "sent")])
    # Dave's phone refuses calls from now on (his breach SMS went out before)
    world.twilio.fail_number(DAVE_PHONE, status=400, code=code, kind="calls")
    await world.twilio.end_call(call["sid"], "no-answer")
    await first_call(world, ERIN_PHONE)  # "trying the next on-call, Erin" was all, before
    await calls_stored(
        world, task["id"], [("Alice", "sent"), ("Dave", dave_status), ("Erin", "sent")]
    )
    assert [len(calls_to(world, p)) for p in (ALICE_PHONE, DAVE_PHONE, ERIN_PHONE)] == [1, 0, 1]
    rows = await call_rows(world, task["id"])
    assert rows.count(("Erin", "sent")) == 1  # one call row for Erin, placed once
