"""Fixtures for end-to-end tests: the emulators and the bridge as a separate process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from sandbox.world import World
from tests.support.harness import BridgeProcess


@pytest.fixture
async def world(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    """The three emulators and a guild with alice (approver), dave (deploy approver), bob.

    The bridge's database is ``database_url``: an SQLite file, and also a PostgreSQL schema
    in modules marked ``both_engines`` (see tests/conftest.py).

    Every request the bridge sends to Discord must conform to Discord's API description
    (``world.discord.spec_violations`` is empty at the end of the test), and every request to
    Twilio to Twilio's (``world.twilio.spec_violations``).
    """
    w = World(tmp_path, database_url=database_url)
    await w.start()
    try:
        yield w
    finally:
        await w.stop()
    assert w.discord.spec is not None, "Discord's API description (shared/specs) was not found"
    assert not w.discord.spec_violations, w.discord.spec_violations
    # and every request it sends to Twilio to Twilio's (issue 14)
    assert w.twilio.spec is not None, "Twilio's API description (shared/specs) was not found"
    assert not w.twilio.spec_violations, w.twilio.spec_violations


@pytest.fixture
async def make_bridge(world: World) -> AsyncIterator[Callable[..., BridgeProcess]]:
    """Build (not start) a bridge process for the world; settings overrides as keywords."""
    processes: list[BridgeProcess] = []

    def make(**overrides: object) -> BridgeProcess:
        process = BridgeProcess(world.env(**overrides), world.workdir, world.bridge_port)
        processes.append(process)
        return process

    yield make
    for process in processes:
        await process.terminate(timeout=10)


@pytest.fixture
async def bridge(make_bridge: Callable[..., BridgeProcess]) -> BridgeProcess:
    """A running bridge with default settings for the world."""
    process = make_bridge()
    await process.start()
    return process
