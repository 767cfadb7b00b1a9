"""``bot.discord.pacing.ChannelPacer`` with a fake clock and a fake sleep (no real waiting)."""

from __future__ import annotations

import asyncio
import math

import pytest

from bot.discord.pacing import ChannelPacer

CHANNEL = 1001
OTHER = 2002


class FakeTime:
    """A fake monotonic clock and sleep.

    With ``auto=True`` a sleep advances the clock by its duration at once. With ``auto=False``
    sleepers stay blocked until the test calls :meth:`advance`.
    """

    def __init__(self, *, auto: bool = True) -> None:
        self.now = 0.0
        self.auto = auto
        self.sleeps: list[float] = []
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.auto:
            self.now += seconds
            await asyncio.sleep(0)  # a yield, as a real sleep would
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, future))
        await future

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [(t, f) for t, f in self._sleepers if t <= self.now + 1e-9]
        self._sleepers = [(t, f) for t, f in self._sleepers if t > self.now + 1e-9]
        for _, future in due:
            if not future.done():
                future.set_result(None)


async def settle() -> None:
    """Let every ready task run until it blocks again."""
    for _ in range(20):
        await asyncio.sleep(0)


def make_pacer(fake: FakeTime, **kwargs: float) -> ChannelPacer:
    return ChannelPacer(clock=fake.clock, sleep=fake.sleep, **kwargs)  # type: ignore[arg-type]


async def test_five_messages_pass_without_waiting() -> None:
    fake = FakeTime()
    pacer = make_pacer(fake)
    for _ in range(5):
        assert pacer.delay_for(CHANNEL) == 0.0
        await pacer.acquire(CHANNEL)
    assert fake.sleeps == []
    assert fake.now == 0.0


async def test_sixth_message_waits_until_first_leaves_window() -> None:
    fake = FakeTime()
    pacer = make_pacer(fake)
    for second in range(5):
        fake.now = float(second)
        await pacer.acquire(CHANNEL)
    assert pacer.delay_for(CHANNEL) == pytest.approx(1.05)  # first send (t=0) leaves at 5.05
    await pacer.acquire(CHANNEL)
    assert fake.now == pytest.approx(5.05)
    assert sum(fake.sleeps) == pytest.approx(1.05)
    # The 7th waits for the send at t=1: it leaves the window at 6.05.
    assert pacer.delay_for(CHANNEL) == pytest.approx(1.0)


async def test_slot_frees_exactly_at_window_end() -> None:
    fake = FakeTime()
    pacer = make_pacer(fake, safety_margin=0.0)
    for _ in range(5):
        await pacer.acquire(CHANNEL)
    fake.now = 4.999
    assert pacer.delay_for(CHANNEL) == pytest.approx(0.001)
    fake.now = 5.0
    assert pacer.delay_for(CHANNEL) == 0.0


async def test_sustained_burst_never_exceeds_rate() -> None:
    fake = FakeTime()
    pacer = make_pacer(fake)
    times = []
    for _ in range(23):
        await pacer.acquire(CHANNEL)
        times.append(fake.now)
    for i in range(len(times) - 5):
        assert times[i + 5] - times[i] >= 5.05 - 1e-9
    assert times[-1] == pytest.approx(4 * 5.05)


async def test_channels_do_not_block_each_other() -> None:
    fake = FakeTime(auto=False)
    pacer = make_pacer(fake)
    for _ in range(5):
        await pacer.acquire(CHANNEL)
    waiting = asyncio.create_task(pacer.acquire(CHANNEL))
    await settle()
    assert not waiting.done()
    for _ in range(5):
        await asyncio.wait_for(pacer.acquire(OTHER), timeout=1)  # never sleeps
    assert pacer.delay_for(OTHER) == pytest.approx(5.05)
    assert fake.sleeps == [pytest.approx(5.05)], "only the waiter on CHANNEL slept"
    fake.advance(5.05)
    await settle()
    assert waiting.done()


async def test_concurrent_acquirers_keep_order() -> None:
    fake = FakeTime(auto=False)
    pacer = make_pacer(fake)
    order: list[int] = []
    sent_at: list[float] = []

    async def send(n: int) -> None:
        await pacer.acquire(CHANNEL)
        order.append(n)
        sent_at.append(fake.now)

    tasks = []
    for n in range(12):
        tasks.append(asyncio.create_task(send(n)))
        await asyncio.sleep(0)  # start them in this order
    await settle()
    assert order == [0, 1, 2, 3, 4]
    fake.advance(5.05)
    await settle()
    # A late caller arriving now must queue behind the earlier waiters.
    tasks.append(asyncio.create_task(send(99)))
    await settle()
    assert order == list(range(10))
    fake.advance(5.05)
    await settle()
    assert order == [*range(12), 99]
    assert sent_at == [0.0] * 5 + [pytest.approx(5.05)] * 5 + [pytest.approx(10.1)] * 3
    await asyncio.gather(*tasks)


async def test_cancelled_waiter_records_nothing_and_frees_the_queue() -> None:
    fake = FakeTime(auto=False)
    pacer = make_pacer(fake)
    for _ in range(5):
        await pacer.acquire(CHANNEL)
    first = asyncio.create_task(pacer.acquire(CHANNEL))
    await settle()
    second = asyncio.create_task(pacer.acquire(CHANNEL))
    await settle()
    first.cancel()
    await settle()
    assert first.cancelled()
    assert not second.done()
    fake.advance(5.05)
    await settle()
    assert second.done()
    assert pacer.delay_for(CHANNEL) == 0.0  # only the second's send is in the new window


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_messages": 0},
        {"max_messages": True},
        {"per_seconds": 0.0},
        {"per_seconds": math.inf},
        {"safety_margin": -0.1},
        {"safety_margin": math.nan},
    ],
)
def test_invalid_configuration_is_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ChannelPacer(**kwargs)  # type: ignore[arg-type]


def test_window_includes_safety_margin() -> None:
    assert ChannelPacer().window_seconds == pytest.approx(5.05)


async def test_urgent_message_takes_the_next_slot_ahead_of_queued_ones() -> None:
    fake = FakeTime(auto=False)
    pacer = make_pacer(fake, safety_margin=0.0)
    for second in range(5):
        fake.now = float(second)
        await pacer.acquire(CHANNEL)  # the window is full: sends at 0, 1, 2, 3, 4 s
    order: list[str] = []

    async def send(name: str, urgent: bool = False) -> None:
        await pacer.acquire(CHANNEL, urgent=urgent)
        order.append(name)

    queued = [asyncio.create_task(send(f"batch-{i}")) for i in range(3)]
    await settle()
    critical = asyncio.create_task(send("critical", urgent=True))
    await settle()
    fake.advance(1.0)  # t = 5 s: exactly one slot frees (the send at 0 s leaves the window)
    await settle()
    assert order == ["critical"]  # the urgent caller got it, the queue waits
    for _ in range(10):
        fake.advance(1.0)
        await settle()
    assert order == ["critical", "batch-0", "batch-1", "batch-2"]
    await asyncio.gather(*queued, critical)
