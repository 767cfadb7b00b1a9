"""``factory-bridge test-page NAME`` (issue 14) against the emulators: one SMS, one DM, and
what Twilio and Discord answered."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from sandbox.world import World

_CHECKOUT = Path(__file__).resolve().parents[2]


async def run_test_page(world: World, name: str) -> tuple[int, str]:
    env = {**os.environ, **world.env()}
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(_CHECKOUT), env.get("PYTHONPATH", "")) if part
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "test-page",
        name,
        cwd=str(world.workdir),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return int(process.returncode or 0), out.decode()


async def test_test_page_sends_one_sms_and_one_dm(world: World) -> None:
    code, out = await run_test_page(world, "alice")
    assert code == 0, out
    [sms] = world.twilio.messages
    assert sms["to"] == "+15550100001" and "test page" in sms["body"]
    assert f"✓ SMS to +15550100001: Twilio accepted it ({sms['sid']})" in out
    [dm] = world.discord.dm_messages(world.people.alice.id)
    assert "test page" in dm.content
    assert f"✓ DM to {world.people.alice.id}: Discord accepted it (message {dm.id})" in out


async def test_test_page_says_what_failed(world: World) -> None:
    world.twilio.fail_number("+15550100004", code=21610)
    code, out = await run_test_page(world, "Carol")  # phone opted out, DMs closed
    assert code == 1
    assert "✗ SMS to +15550100004: Twilio refused: Twilio 400 21610" in out
    assert f"✗ DM to {world.people.carol.id}: Discord answered 403" in out
    missing, out = await run_test_page(world, "Zed")
    assert missing == 2 and "'Zed' is not on the roster" in out and "Alice" in out
