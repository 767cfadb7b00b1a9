"""Background re-sends: retried with doubling waits until settled; one loop per key; stop."""

from __future__ import annotations

import asyncio

from bot.resend import Resender


async def test_retries_with_doubling_waits_until_settled() -> None:
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    results = iter([False, RuntimeError("boom"), False, True])
    calls = 0
    done = asyncio.Event()

    async def attempt() -> bool:
        nonlocal calls
        calls += 1
        result = next(results)
        if isinstance(result, Exception):
            raise result
        if result:
            done.set()
        return result

    resender = Resender(base_seconds=1.0, max_seconds=5.0, sleep=fake_sleep)
    assert resender.schedule("t1", attempt)
    assert not resender.schedule("t1", attempt)  # one loop per key
    await asyncio.wait_for(done.wait(), 5)
    await resender.stop()
    assert calls == 4
    assert waits == [2.0, 4.0, 5.0, 5.0]  # an exception counts as not settled
    assert len(resender) == 0 and not resender.under_way("t1")


async def test_stop_cancels_loops_under_way() -> None:
    started = asyncio.Event()

    async def forever(seconds: float) -> None:
        started.set()
        await asyncio.Event().wait()

    async def attempt() -> bool:
        return True

    resender = Resender(base_seconds=1.0, sleep=forever)
    resender.schedule("t1", attempt)
    await asyncio.wait_for(started.wait(), 5)
    assert resender.under_way("t1") and len(resender) == 1
    await resender.stop()
    assert len(resender) == 0
