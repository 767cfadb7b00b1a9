"""The shared background loop of the heartbeat, self-watch and channel-access retry."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.periodic import Periodic


async def test_a_failing_round_is_logged_and_the_rounds_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rounds = 0
    third = asyncio.Event()

    async def step() -> None:
        nonlocal rounds
        rounds += 1
        if rounds == 1:
            raise RuntimeError("monitor down")
        if rounds == 3:
            third.set()

    loop = Periodic("test watch", step, 0)
    loop.start()
    assert loop.running
    await asyncio.wait_for(third.wait(), 5)
    await loop.stop()
    assert not loop.running
    assert any(
        r.levelno == logging.ERROR and "test watch failed" in r.getMessage() for r in caplog.records
    )
    after_stop = rounds
    await asyncio.sleep(0)
    assert rounds == after_stop, "a stopped loop runs no more rounds"


async def test_wait_first_runs_nothing_before_one_interval() -> None:
    ran = asyncio.Event()

    async def step() -> None:
        ran.set()

    loop = Periodic("retry", step, 3600, wait_first=True)
    loop.start()
    for _ in range(5):
        await asyncio.sleep(0)
    assert not ran.is_set()
    await loop.stop()


async def test_stop_before_start_is_a_no_op() -> None:
    async def step() -> None:  # pragma: no cover - never started
        raise AssertionError

    await Periodic("idle", step, 1).stop()
