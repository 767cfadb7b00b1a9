"""A full ``factory-bridge sandbox`` run: every check holds, and every request the real bridge
(and discord.py under it) sent to the Discord emulator conforms to Discord's API description."""

from __future__ import annotations

import re

from sandbox.runner import run_sandbox


async def test_a_full_sandbox_run_sends_discord_only_conforming_requests() -> None:
    lines: list[str] = []

    exit_code = await run_sandbox(write=lines.append)

    summary = "\n".join(lines[-30:])
    assert exit_code == 0, summary
    conformance = [line for line in lines if "conform to Discord's API description" in line]
    assert len(conformance) == 1, summary
    found = re.search(r"✓ all (\d+) requests to Discord conform", conformance[0])
    assert found is not None, summary
    assert int(found.group(1)) >= 30  # the scenario really went through the check
