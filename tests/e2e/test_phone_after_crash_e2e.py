"""A ``kill -9`` between Twilio's 201 and the bridge storing it: the breach SMS and the critical
call are left ``claimed`` with no sid, and settled ``unknown`` at the restart (README "Restart").
The person did get the SMS, and the call rings: their ``ACK <ref>`` still acknowledges, and the
call ending unanswered still calls the next person (README "Phone").

The crash's state is written into the bridge's SQLite file while it is stopped (SQLite only).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from escalation.phone import phone_ref
from sandbox.world import World
from tests.e2e.test_phone_e2e import (
    ALICE_PHONE,
    DAVE_PHONE,
    PHONE,
    breach_sms,
    breaching_task,
    calls_stored,
    calls_to,
    first_call,
)
from tests.support.harness import BridgeProcess, wait_until


async def _paged_then_crashed(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> tuple[BridgeProcess, dict[str, Any], dict[str, Any]]:
    """Alice paged by SMS and called; then the bridge killed as if mid-send."""
    bridge = make_bridge(**PHONE, BRIDGE_PUBLIC_URL=world.bridge_url)
    await bridge.start()
    task = await breaching_task(world)
    await breach_sms(world, ALICE_PHONE)
    call = await first_call(world, ALICE_PHONE)
    await calls_stored(world, task["id"], [("Alice", "sent")])
    await bridge.kill()
    database = sqlite3.connect(str(world.database_file))
    rows = database.execute(
        "SELECT id, detail FROM escalation_deliveries WHERE task_id = ? "
        "AND channel IN ('sms', 'call') AND recipient = 'Alice'",
        (task["id"],),
    ).fetchall()
    for row_id, detail in rows:  # what a kill between Twilio's 201 and the write leaves
        kept = {k: v for k, v in json.loads(detail or "{}").items() if k != "sid"}
        database.execute(
            "UPDATE escalation_deliveries SET status = 'claimed', finished_at = NULL, "
            "detail = ? WHERE id = ?",
            (json.dumps(kept), row_id),
        )
    database.commit()
    database.close()
    await bridge.start()
    return bridge, task, call


async def test_an_sms_ack_after_a_crash_mid_send_acknowledges(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    _, task, _ = await _paged_then_crashed(world, make_bridge)
    answer = await world.twilio.send_sms(ALICE_PHONE, f"ACK {phone_ref(task['id'])}")
    assert answer.messages[0].startswith("Acknowledged"), answer.messages


async def test_a_call_unanswered_after_a_crash_mid_send_calls_the_next_person(
    world: World, make_bridge: Callable[..., BridgeProcess]
) -> None:
    _, _, call = await _paged_then_crashed(world, make_bridge)
    before = len(calls_to(world, DAVE_PHONE))
    await world.twilio.end_call(call["sid"], "no-answer")
    await wait_until(lambda: len(calls_to(world, DAVE_PHONE)) == before + 1, what="Dave called")
