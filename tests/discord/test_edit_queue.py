"""``bot.discord.edit_queue.EditQueue`` with a fake clock and sleep (no real waiting).

What a person notices: a message shows its latest state, a decision is never lost behind a
storm of cosmetic refreshes, a channel never gets more edits than its budget, and a 30046 on an
old message only delays that message's latest render.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.discord.edit_queue import MAX_OLD_BACKOFF_SECONDS, EditQueue
from bot.discord.pacing import ChannelPacer

CHANNEL = 1001
OTHER = 2002
# snowflakes created "now" for the wall clock below (young messages)
WALL = 1_800_000_000.0


def young(n: int) -> int:
    """A snowflake of a message created at WALL (young), made unique by ``n``."""
    return ((int(WALL * 1000) - 1_420_070_400_000) << 22) + n


class FakeTime:
    """Fake monotonic clock whose sleeps advance it at once."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


class OldLimit(Exception):
    """Stands in for discord.HTTPException 429 / 30046."""

    code = 30046


class Recorder:
    """The ``send`` of the queue: records (time, channel, message, payload)."""

    def __init__(self, fake: FakeTime) -> None:
        self.fake = fake
        self.sent: list[tuple[float, int, int, dict[str, Any]]] = []
        self.refuse: dict[int, int] = {}  # message id -> 30046 answers still to give
        self.in_flight: set[int] = set()
        self.overlap = False

    async def __call__(self, channel_id: int, message_id: int, payload: dict[str, Any]) -> None:
        if message_id in self.in_flight:
            self.overlap = True
        self.in_flight.add(message_id)
        try:
            await asyncio.sleep(0)
            if self.refuse.get(message_id):
                self.refuse[message_id] -= 1
                raise OldLimit()
            self.sent.append((self.fake.now, channel_id, message_id, payload))
        finally:
            self.in_flight.discard(message_id)


def make(fake: FakeTime, rec: Recorder, *, backlog: int = 60, backoff: float = 30.0) -> EditQueue:
    pacer = ChannelPacer(
        max_messages=5, per_seconds=5.0, safety_margin=0.0, clock=fake.clock, sleep=fake.sleep
    )
    return EditQueue(
        rec,
        pacer=pacer,
        old_backoff_seconds=backoff,
        cosmetic_backlog=backlog,
        clock=fake.clock,
        wall_clock=lambda: WALL,
        sleep=fake.sleep,
    )


async def test_only_the_latest_render_of_a_message_is_sent() -> None:
    fake = FakeTime()
    rec = Recorder(fake)
    queue = make(fake, rec)
    futures = [queue.submit(CHANNEL, young(1), {"v": v}, important=False) for v in ("a", "b", "c")]
    assert await asyncio.gather(*futures) == [True, True, True]
    assert [(m, p) for _, _, m, p in rec.sent] == [(young(1), {"v": "c"})]


async def test_a_storm_stays_within_the_channel_budget_and_never_overlaps_a_message() -> None:
    fake = FakeTime()
    rec = Recorder(fake)
    queue = make(fake, rec)
    futures = []
    for round_ in range(3):
        for n in range(12):
            futures.append(queue.submit(CHANNEL, young(n), {"r": round_}, important=True))
        await asyncio.sleep(0)
    assert all(await asyncio.gather(*futures))
    times = [t for t, *_ in rec.sent]
    for i, start in enumerate(times):
        assert sum(1 for t in times[i:] if t < start + 5.0) <= 5
    assert not rec.overlap
    last = {m: p for _, _, m, p in rec.sent}
    assert all(p == {"r": 2} for p in last.values()) and len(last) == 12


async def test_a_decision_goes_before_cosmetic_refreshes_and_is_never_dropped() -> None:
    fake = FakeTime()
    rec = Recorder(fake)
    queue = make(fake, rec, backlog=3)
    cosmetic = [queue.submit(CHANNEL, young(n), {"next": n}, important=False) for n in range(8)]
    decision = queue.submit(CHANNEL, young(99), {"decision": "approved"}, important=True)
    assert await decision is True
    results = await asyncio.gather(*cosmetic)
    assert rec.sent[0][2] == young(99)  # served first although queued last
    assert results.count(False) == 5  # the oldest cosmetic refreshes were dropped
    assert [p for *_, p in rec.sent[1:]] == [{"next": 5}, {"next": 6}, {"next": 7}]
    assert queue.dropped == 5


async def test_30046_pauses_old_messages_and_retries_with_the_latest_render() -> None:
    fake = FakeTime()
    rec = Recorder(fake)
    queue = make(fake, rec, backoff=30.0)
    old = young(1)
    rec.refuse[old] = 1
    later: list[asyncio.Future[bool]] = []
    sending = rec.__call__

    async def send(channel_id: int, message_id: int, payload: dict[str, Any]) -> None:
        try:
            await sending(channel_id, message_id, payload)
        except OldLimit:
            # the decision is confirmed while Discord refuses the old message's edits
            later.append(queue.submit(CHANNEL, old, {"state": "approved"}, important=True))
            raise

    queue._send = send  # type: ignore[method-assign]
    first = queue.submit(CHANNEL, old, {"state": "acknowledged"}, important=True)
    other = queue.submit(CHANNEL, young(2), {"state": "new"}, important=True)
    assert await other is True
    assert await first is True and await later[0] is True
    assert queue.old_refusals == 1 and queue.is_old(old)
    assert next((t, m) for t, _, m, _ in rec.sent) == (0.0, young(2))  # did not wait
    old_sends = [(t, p) for t, _, m, p in rec.sent if m == old]
    assert old_sends == [(pytest.approx(30.0, abs=0.5), {"state": "approved"})]


async def test_repeated_30046_doubles_the_pause_up_to_the_cap() -> None:
    fake = FakeTime()
    rec = Recorder(fake)
    queue = make(fake, rec, backoff=30.0)
    rec.refuse[young(1)] = 3
    assert await queue.submit(CHANNEL, young(1), {"x": 1}, important=True) is True
    (sent_at,) = [t for t, *_ in rec.sent]
    assert sent_at == pytest.approx(30 + 60 + 120, abs=1.0)
    assert MAX_OLD_BACKOFF_SECONDS >= 120


async def test_channels_do_not_wait_for_each_other() -> None:
    fake = FakeTime()
    rec = Recorder(fake)
    queue = make(fake, rec)
    busy = [queue.submit(CHANNEL, young(n), {}, important=True) for n in range(15)]
    other = queue.submit(OTHER, young(50), {}, important=True)
    assert await other is True
    assert [t for t, ch, *_ in rec.sent if ch == OTHER] == [0.0]
    await asyncio.gather(*busy)


async def test_a_failed_edit_reaches_its_waiters_and_withdraw_answers_true() -> None:
    fake = FakeTime()

    async def gone(channel_id: int, message_id: int, payload: dict[str, Any]) -> None:
        raise LookupError("10008 Unknown Message")

    queue = make(fake, Recorder(fake))
    queue._send = gone  # type: ignore[method-assign]
    with pytest.raises(LookupError):
        await queue.submit(CHANNEL, young(1), {}, important=True)
    later = queue.submit(CHANNEL, young(2), {}, important=False)
    queue.withdraw(CHANNEL, young(2))
    assert await later is True


async def test_edits_of_different_messages_go_out_together_and_one_message_waits() -> None:
    """Up to ``max_in_flight`` edits of a channel are open at once, each of another message;
    a newer render of a message whose edit is in flight goes after it (latest lands last)."""
    fake = FakeTime()
    release = asyncio.Event()
    open_now: list[int] = []
    most_open = 0
    order: list[tuple[int, str]] = []

    async def slow(channel_id: int, message_id: int, payload: dict[str, Any]) -> None:
        nonlocal most_open
        assert message_id not in open_now  # never two edits of one message at once
        open_now.append(message_id)
        most_open = max(most_open, len(open_now))
        await release.wait()
        open_now.remove(message_id)
        order.append((message_id, payload["v"]))

    queue = make(fake, Recorder(fake))
    queue._send = slow  # type: ignore[method-assign]
    first = [queue.submit(CHANNEL, young(n), {"v": "a"}, important=True) for n in range(3)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert sorted(open_now) == [young(0), young(1), young(2)]  # all three at once
    newer = queue.submit(CHANNEL, young(0), {"v": "b"}, important=True)
    for _ in range(5):
        await asyncio.sleep(0)
    assert open_now.count(young(0)) == 1  # waits for the edit in flight
    release.set()
    assert all(await asyncio.gather(*first, newer))
    assert [v for m, v in order if m == young(0)] == ["a", "b"]
    assert most_open == 3


async def test_no_more_than_max_in_flight_edits_are_open() -> None:
    fake = FakeTime()
    release = asyncio.Event()
    open_now: set[int] = set()
    most_open = 0

    async def slow(channel_id: int, message_id: int, payload: dict[str, Any]) -> None:
        nonlocal most_open
        open_now.add(message_id)
        most_open = max(most_open, len(open_now))
        await release.wait()
        open_now.discard(message_id)

    pacer = ChannelPacer(max_messages=100, per_seconds=5.0, clock=fake.clock, sleep=fake.sleep)
    queue = EditQueue(slow, pacer=pacer, max_in_flight=2, clock=fake.clock, sleep=fake.sleep)
    futures = [queue.submit(CHANNEL, young(n), {}, important=True) for n in range(6)]
    for _ in range(10):
        await asyncio.sleep(0)
    assert len(open_now) == 2 and queue.waiting(CHANNEL) == 4
    release.set()
    assert all(await asyncio.gather(*futures))
    assert most_open == 2


def test_bad_settings_are_refused() -> None:
    fake = FakeTime()
    with pytest.raises(ValueError):
        make(fake, Recorder(fake), backoff=0)
    with pytest.raises(ValueError):
        make(fake, Recorder(fake), backlog=0)
    with pytest.raises(ValueError):
        EditQueue(Recorder(fake), pacer=ChannelPacer(), max_in_flight=0)


class ServerError(Exception):
    """Stands in for discord.DiscordServerError (a 5xx after discord.py's own retries)."""

    status = 503


class Gone(Exception):
    """Stands in for discord.NotFound 10008 (the message was deleted)."""

    status = 404
    code = 10008


async def test_a_decisions_edit_that_meets_a_5xx_is_sent_again_not_dropped() -> None:
    """The message must not keep its live buttons after a decision because Discord had a
    bad moment: the important render is tried again after a backoff and its waiter gets
    ``True`` once it lands."""
    fake = FakeTime()
    failures: list[BaseException] = [ServerError(), TimeoutError()]
    sent: list[tuple[float, int]] = []

    async def send(channel_id: int, message_id: int, payload: dict[str, Any]) -> None:
        if failures:
            raise failures.pop(0)
        sent.append((fake.now, message_id))

    queue = make(fake, Recorder(fake))
    queue._send = send
    decided = queue.submit(1, young(1), {"content": "✅ approved"}, important=True)
    assert await asyncio.wait_for(decided, 5) is True
    assert [m for _, m in sent] == [young(1)]
    assert sent[0][0] >= 1.0 + 2.0  # two backoffs waited (1 s, then 2 s)
    assert queue.transient_retries == 2
    await queue.close()


async def test_an_edit_of_a_deleted_message_is_not_retried() -> None:
    fake = FakeTime()
    calls: list[int] = []

    async def send(channel_id: int, message_id: int, payload: dict[str, Any]) -> None:
        calls.append(message_id)
        raise Gone()

    queue = make(fake, Recorder(fake))
    queue._send = send
    decided = queue.submit(1, young(2), {"content": "✅ approved"}, important=True)
    with pytest.raises(Gone):
        await asyncio.wait_for(decided, 5)
    assert calls == [young(2)]
    await queue.close()


async def test_a_passing_failure_that_lasts_fails_the_edit_after_the_retries() -> None:
    fake = FakeTime()

    async def send(channel_id: int, message_id: int, payload: dict[str, Any]) -> None:
        raise ServerError()

    queue = make(fake, Recorder(fake))
    queue._send = send
    decided = queue.submit(1, young(3), {"content": "✅ approved"}, important=True)
    with pytest.raises(ServerError):
        await asyncio.wait_for(decided, 5)
    assert queue.transient_retries == 5
    await queue.close()
