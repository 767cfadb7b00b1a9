"""One edit queue per message, paced per channel (Discord: edits are rate limited per channel, and 30046 limits edits of messages older than an hour).

Discord rate-limits message edits per channel, and edits of messages older than one hour have a
further, tighter limit: it answers error **30046** ("Maximum number of edits to messages older
than 1 hour reached. Try again later", HTTP 429 without rate-limit headers, so discord.py raises
it instead of waiting). Every ladder step re-renders its task's message; unpaced, 10,000 open
tasks would queue 10,000 edits in discord.py's rate limiter and delay what matters. So every
edit of a task or batch message goes through :class:`EditQueue`:

* **Latest render only.** A channel keeps at most one queued edit per message; a newer render
  replaces the queued one (keeping its place and its waiters). A 30046 re-queues the failed
  render unless a newer one already waits, so the retry always sends the latest render.
* **One in flight per message.** One worker per channel starts the channel's edits, up to
  ``max_in_flight`` at once (each of a different message): Discord limits how many edits a
  channel gets per window (the budget below), not how many are open at once, and one at a time
  made a burst of decisions wait for each other's round trips. A newer render of a message
  whose edit is in flight waits for that edit to end, so the latest render always lands last.
* **A per-channel budget.** Before each edit the worker takes a slot of a
  :class:`~bot.discord.pacing.ChannelPacer` of its own (``DISCORD_EDIT_RATE_LIMIT`` per
  ``DISCORD_CHANNEL_RATE_WINDOW_SECONDS``, default 5 per 5 s). New messages use another pacer
  and interaction answers go through the interaction webhook, so neither waits for edits.
* **Important before cosmetic.** An ``important`` edit (a decision, an acknowledgement, a
  breach — anything but the "Next escalation" line and relative times) is served before every
  cosmetic one and is never dropped, only delayed. Cosmetic edits are coalesced per message and,
  when more than ``cosmetic_backlog`` wait in a channel, the oldest are dropped (their waiters
  get ``False``): a later refresh shows the state anyway.
* **30046.** The message is remembered as old and the channel's old messages pause for
  ``old_backoff_seconds`` (setting ``DISCORD_OLD_EDIT_BACKOFF_SECONDS``; doubling while Discord
  keeps answering 30046, at most :data:`MAX_OLD_BACKOFF_SECONDS`); younger messages of the
  channel go on being edited. A message is also known as old from its snowflake's time.

The queue does no Discord I/O itself: it calls ``send(channel_id, message_id, payload)``. An
important edit that fails for a passing reason (a 5xx, a timeout, a dropped connection) is
queued again after a backoff, up to :data:`TRANSIENT_RETRIES` times; any other exception (and
the last of those) fails the waiters of that edit with that exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bot.discord.pacing import ChannelPacer, Slot

__all__ = [
    "MAX_OLD_BACKOFF_SECONDS",
    "OLD_MESSAGE_EDIT_LIMIT",
    "OLD_MESSAGE_SECONDS",
    "EditQueue",
    "snowflake_seconds",
]

log = logging.getLogger(__name__)

#: Discord JSON error code: "Maximum number of edits to messages older than 1 hour reached".
OLD_MESSAGE_EDIT_LIMIT = 30046

#: Age from which Discord counts a message as old for 30046, in seconds (Discord: 1 hour).
OLD_MESSAGE_SECONDS = 3600.0

#: Longest pause of a channel's old-message edits after repeated 30046, in seconds.
MAX_OLD_BACKOFF_SECONDS = 900.0

#: Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds; snowflake = ms << 22.
DISCORD_EPOCH_MS = 1_420_070_400_000

#: Cosmetic edits a channel keeps waiting before it drops the oldest (a minute at 5 per 5 s).
DEFAULT_COSMETIC_BACKLOG = 60

#: Edits of one channel in flight at once, each of a different message: Discord's default edit
#: budget (5 per 5 s), so that a window's edits can all be open together.
DEFAULT_MAX_IN_FLIGHT = 5

#: Retries of an important edit that failed for a passing reason (a Discord 5xx, a timeout,
#: a dropped connection), and the first wait between them, in seconds (doubling, ≤ 30 s).
TRANSIENT_RETRIES = 5
TRANSIENT_BACKOFF_SECONDS = 1.0

Payload = dict[str, Any]
Sender = Callable[[int, int, Payload], Awaitable[None]]


def snowflake_seconds(snowflake: int) -> float:
    """Unix seconds when the Discord object with id ``snowflake`` was created."""
    return ((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000.0


@dataclass
class _Entry:
    """The queued edit of one message: its latest render and who waits for it."""

    message_id: int
    payload: Payload
    important: bool
    waiters: list[asyncio.Future[bool]] = field(default_factory=list)
    attempts: int = 0  # failed for a passing reason so far


@dataclass
class _Channel:
    """Per channel: queued edits in arrival order, the worker, the old-message pause."""

    queued: dict[int, _Entry] = field(default_factory=dict)
    worker: asyncio.Task[None] | None = None
    sending: set[int] = field(default_factory=set)  # messages whose edit is in flight
    sends: set[asyncio.Task[None]] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    old_until: float = 0.0  # monotonic seconds: old messages wait until then
    old_backoff: float = 0.0  # the last pause, 0 when the last old edit went through


class EditQueue:
    """Edits of the bridge's messages: latest render only, paced per channel, 30046-aware.

    Parameters
    ----------
    send : callable
        ``async send(channel_id, message_id, payload)`` performs one edit (e.g.
        ``PartialMessage.edit(**payload)``); it raises on failure. An exception whose ``code``
        attribute is 30046 pauses old messages (see module docstring); any other fails the
        edit's waiters with it.
    pacer : ChannelPacer
        The edit budget per channel (``DISCORD_EDIT_RATE_LIMIT`` per
        ``DISCORD_CHANNEL_RATE_WINDOW_SECONDS``); not shared with message creation.
    old_backoff_seconds : float
        First pause of a channel's old-message edits after a 30046, in seconds (> 0).
    cosmetic_backlog : int
        Cosmetic edits kept waiting per channel before the oldest is dropped (≥ 1).
    max_in_flight : int
        Edits of one channel sent at once, each of a different message (≥ 1).
    clock : callable
        Monotonic seconds (the pacer should use the same clock).
    wall_clock : callable
        Unix seconds, to tell a message's age from its snowflake.
    sleep : callable
        Coroutine function sleeping for the given seconds (injected in tests).

    Raises
    ------
    ValueError
        If ``old_backoff_seconds`` is not > 0, or ``cosmetic_backlog`` or ``max_in_flight``
        is not ≥ 1.
    """

    def __init__(
        self,
        send: Sender,
        *,
        pacer: ChannelPacer,
        old_backoff_seconds: float = 60.0,
        cosmetic_backlog: int = DEFAULT_COSMETIC_BACKLOG,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not old_backoff_seconds > 0:
            raise ValueError(f"old_backoff_seconds must be > 0, got {old_backoff_seconds!r}")
        if cosmetic_backlog < 1:
            raise ValueError(f"cosmetic_backlog must be >= 1, got {cosmetic_backlog!r}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight!r}")
        self._send = send
        self.pacer = pacer
        self.old_backoff_seconds = old_backoff_seconds
        self.cosmetic_backlog = cosmetic_backlog
        self.max_in_flight = max_in_flight
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._channels: dict[int, _Channel] = {}
        self._old: set[int] = set()  # messages Discord answered 30046 for
        self._retries: set[asyncio.Task[None]] = set()  # edits waiting to be tried again
        self._closed = False
        #: edits sent / dropped / answered 30046, for logs and tests
        self.sent = 0
        self.dropped = 0
        self.old_refusals = 0
        self.transient_retries = 0

    # ------------------------------------------------------------------ public
    def submit(
        self, channel_id: int, message_id: int, payload: Payload, *, important: bool
    ) -> asyncio.Future[bool]:
        """Queue ``payload`` as the message's latest render.

        Parameters
        ----------
        channel_id, message_id : int
            The message to edit.
        payload : dict
            Keyword arguments for the edit (``embed``, ``view``, …); replaces a render of the
            same message still waiting.
        important : bool
            The render shows something people must see (decision, acknowledgement, breach):
            never dropped, served before cosmetic edits. Merged with the waiting render's flag.

        Returns
        -------
        asyncio.Future of bool
            ``True`` once a render at least as new as this one was sent; ``False`` when it was
            dropped as cosmetic; an exception when the edit failed (e.g. the message is gone).
        """
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        channel = self._channels.get(channel_id)
        if channel is None:
            channel = self._channels[channel_id] = _Channel()
        entry = channel.queued.get(message_id)
        if entry is None:
            entry = channel.queued[message_id] = _Entry(message_id, payload, important)
        else:
            entry.payload = payload
            entry.important = entry.important or important
        entry.waiters.append(future)
        if not entry.important:
            self._trim_cosmetic(channel)
        channel.wake.set()
        if channel.worker is None or channel.worker.done():
            channel.worker = asyncio.create_task(self._work(channel_id, channel))
        return future

    def withdraw(self, channel_id: int, message_id: int) -> None:
        """Forget the queued render of a message because the message was brought up to date
        another way (e.g. an interaction's answer edited it); its waiters get ``True``. The
        edit in flight, if any, is not affected."""
        channel = self._channels.get(channel_id)
        entry = None if channel is None else channel.queued.pop(message_id, None)
        for waiter in entry.waiters if entry is not None else ():
            if not waiter.done():
                waiter.set_result(True)

    def waiting(self, channel_id: int) -> int:
        """Edits queued for ``channel_id`` (not counting those in flight)."""
        channel = self._channels.get(channel_id)
        return 0 if channel is None else len(channel.queued)

    def is_old(self, message_id: int) -> bool:
        """Whether Discord counts the message as older than one hour (its snowflake's time, or
        a 30046 it answered for it)."""
        if message_id in self._old:
            return True
        return self._wall_clock() - snowflake_seconds(message_id) >= OLD_MESSAGE_SECONDS

    async def close(self) -> None:
        """Stop the workers; waiting edits and those in flight are dropped (their waiters
        are cancelled)."""
        self._closed = True
        for retry in list(self._retries):
            retry.cancel()
        for channel in self._channels.values():
            for task in (channel.worker, *channel.sends):
                if task is not None:
                    task.cancel()
        for channel in self._channels.values():
            for task in (channel.worker, *list(channel.sends)):
                if task is not None:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            for entry in channel.queued.values():
                for waiter in entry.waiters:
                    waiter.cancel()
            channel.queued.clear()

    # ------------------------------------------------------------------ internals
    def _trim_cosmetic(self, channel: _Channel) -> None:
        cosmetic = [e for e in channel.queued.values() if not e.important]
        for entry in cosmetic[: max(0, len(cosmetic) - self.cosmetic_backlog)]:
            del channel.queued[entry.message_id]
            self.dropped += 1
            for waiter in entry.waiters:
                if not waiter.done():
                    waiter.set_result(False)

    def _pick(self, channel: _Channel) -> _Entry | None:
        """The next edit: the oldest important one, else the oldest cosmetic one, skipping
        messages whose edit is in flight and old messages while the channel's old-message
        pause lasts."""
        paused = self._clock() < channel.old_until
        best: _Entry | None = None
        for entry in channel.queued.values():
            if entry.message_id in channel.sending:
                continue
            if paused and self.is_old(entry.message_id):
                continue
            if entry.important:
                return entry
            if best is None:
                best = entry
        return best

    async def _work(self, channel_id: int, channel: _Channel) -> None:
        while channel.queued:
            entry = None if len(channel.sending) >= self.max_in_flight else self._pick(channel)
            if entry is None:
                if channel.sending:  # full, or only in-flight messages wait: one ends first
                    channel.wake.clear()
                    await channel.wake.wait()
                else:  # only old messages wait, and they are paused
                    await self._pause(channel)
                continue
            delay = self.pacer.delay_for(channel_id)
            if delay > 0:
                await self._sleep(delay)
                continue  # pick again: something more important may have come
            slot = await self.pacer.acquire(channel_id)
            if channel.queued.get(entry.message_id) is not entry:  # withdrawn meanwhile
                self.pacer.mark_sent(slot)
                continue
            del channel.queued[entry.message_id]
            channel.sending.add(entry.message_id)
            send = asyncio.create_task(self._send_one(channel_id, channel, entry, slot))
            channel.sends.add(send)
            send.add_done_callback(channel.sends.discard)

    async def _send_one(
        self, channel_id: int, channel: _Channel, entry: _Entry, slot: Slot
    ) -> None:
        """Send one edit, settle its waiters, and let the channel's worker go on."""
        try:
            await self._send(channel_id, entry.message_id, entry.payload)
        except asyncio.CancelledError:  # closing: the edit is dropped
            for waiter in entry.waiters:
                waiter.cancel()
            raise
        except Exception as exc:
            if getattr(exc, "code", None) == OLD_MESSAGE_EDIT_LIMIT:
                self._refused_old(channel_id, channel, entry)
            elif entry.important and entry.attempts < TRANSIENT_RETRIES and _passing(exc):
                self._retry_later(channel_id, entry, exc)
            else:
                for waiter in entry.waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
        else:
            self.sent += 1
            if entry.message_id in self._old or channel.old_backoff:
                channel.old_backoff = 0.0
            for waiter in entry.waiters:
                if not waiter.done():
                    waiter.set_result(True)
        finally:
            self.pacer.mark_sent(slot)
            channel.sending.discard(entry.message_id)
            channel.wake.set()
            idle = channel.worker is None or channel.worker.done()
            if channel.queued and idle and not self._closed:
                channel.worker = asyncio.create_task(self._work(channel_id, channel))

    async def _pause(self, channel: _Channel) -> None:
        """Wait until the old-message pause ends or a new edit is queued."""
        channel.wake.clear()
        sleeper = asyncio.ensure_future(self._sleep(max(0.0, channel.old_until - self._clock())))
        waker = asyncio.ensure_future(channel.wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                task.cancel()

    def _retry_later(self, channel_id: int, entry: _Entry, exc: BaseException) -> None:
        """An important edit failed for a passing reason: queue it again after a backoff (a
        decision's edit must not leave the message showing live buttons); its waiters wait
        on. A newer render queued meanwhile takes its place, inheriting its waiters."""
        entry.attempts += 1
        self.transient_retries += 1
        delay = min(30.0, TRANSIENT_BACKOFF_SECONDS * 2 ** (entry.attempts - 1))
        log.warning(
            "edit of message %s in channel %s failed (%r); trying again in %.0f s (%d/%d)",
            entry.message_id,
            channel_id,
            exc,
            delay,
            entry.attempts,
            TRANSIENT_RETRIES,
        )

        async def later() -> None:
            await self._sleep(delay)
            channel = self._channels[channel_id]
            newer = channel.queued.get(entry.message_id)
            if newer is None:
                channel.queued[entry.message_id] = entry
            else:
                newer.important = True
                newer.waiters[:0] = entry.waiters
            channel.wake.set()
            if channel.worker is None or channel.worker.done():
                channel.worker = asyncio.create_task(self._work(channel_id, channel))

        retry = asyncio.create_task(later())
        self._retries.add(retry)
        retry.add_done_callback(self._retries.discard)

        def cancelled(task: asyncio.Task[None]) -> None:
            if task.cancelled():  # closing: the edit is dropped
                for waiter in entry.waiters:
                    waiter.cancel()

        retry.add_done_callback(cancelled)

    def _refused_old(self, channel_id: int, channel: _Channel, entry: _Entry) -> None:
        """30046: pause the channel's old messages and queue the render again (a newer render
        of the message queued meanwhile takes its place, inheriting its waiters)."""
        self.old_refusals += 1
        self._old.add(entry.message_id)
        backoff = (
            self.old_backoff_seconds
            if not channel.old_backoff
            else min(MAX_OLD_BACKOFF_SECONDS, channel.old_backoff * 2)
        )
        channel.old_backoff = backoff
        channel.old_until = self._clock() + backoff
        log.warning(
            "Discord refused an edit of old message %s in channel %s (30046); old messages "
            "of the channel wait %.0f s, then the latest render is sent",
            entry.message_id,
            channel_id,
            backoff,
        )
        newer = channel.queued.get(entry.message_id)
        if newer is None:
            channel.queued[entry.message_id] = entry
        else:
            newer.important = newer.important or entry.important
            newer.waiters[:0] = entry.waiters


def _passing(exc: BaseException) -> bool:
    """Whether an edit failed for a reason that may pass: Discord answered 5xx
    (``DiscordServerError`` after discord.py's own retries), the request timed out, or the
    connection dropped. A 4xx (the message is gone, access was lost) is not."""
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        return status >= 500
    return isinstance(exc, TimeoutError | OSError) or type(exc).__module__.startswith("aiohttp")
