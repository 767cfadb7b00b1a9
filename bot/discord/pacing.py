"""Per-channel message pacing: stay under Discord's rate limit instead of running into it.

Source: Discord allows about 5 messages per 5 s per channel (the per-route bucket of
``POST /channels/{id}/messages``). discord.py waits out a 429 and retries, but the bridge should
never provoke one: during a burst a 429 stalls every send to that channel and counts towards
Discord's invalid-request limit. The bridge therefore calls :meth:`ChannelPacer.acquire` before
each message it creates in a channel; bursts of tasks are already folded into few, full batch
messages by :mod:`batching`, so the pacer only ever queues a handful of sends.

Message edits have their own, separate limit: :mod:`bot.discord.edit_queue` paces them with a
second :class:`ChannelPacer` (``DISCORD_EDIT_RATE_LIMIT``), so edits never delay new messages.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

__all__ = [
    "DEFAULT_MAX_MESSAGES",
    "DEFAULT_PER_SECONDS",
    "DEFAULT_SAFETY_MARGIN_SECONDS",
    "ChannelPacer",
    "Slot",
]

#: Messages allowed per window and channel (Discord: about 5 per 5 s per channel).
DEFAULT_MAX_MESSAGES = 5

#: Length of Discord's per-channel window, in seconds.
DEFAULT_PER_SECONDS = 5.0

#: How long an ordinary caller steps back while an urgent one takes a free slot, in seconds.
URGENT_YIELD_SECONDS = 0.01

#: Added to the window so clock skew and request latency do not tip us over, in seconds.
DEFAULT_SAFETY_MARGIN_SECONDS = 0.05


class Slot:
    """A granted send; :attr:`at` is when it counts (monotonic seconds)."""

    __slots__ = ("at",)

    def __init__(self, at: float) -> None:
        self.at = at


class ChannelPacer:
    """Sliding-window limiter of messages per channel, FIFO-fair across waiters.

    A send recorded at time ``t`` occupies a slot of its channel until
    ``t + per_seconds + safety_margin``; at most ``max_messages`` slots are occupied at any time.
    Channels are independent.

    Parameters
    ----------
    max_messages : int, optional
        Sends allowed per window and channel, default 5.
    per_seconds : float, optional
        Window length in seconds, default 5.0.
    safety_margin : float, optional
        Seconds added to the window, default 0.05.
    clock : callable, optional
        Monotonic clock in seconds, default :func:`time.monotonic`.
    sleep : callable, optional
        Coroutine function sleeping for the given seconds, default :func:`asyncio.sleep`.

    Raises
    ------
    ValueError
        If ``max_messages`` is not an int ≥ 1, ``per_seconds`` is not a finite number > 0 or
        ``safety_margin`` is not a finite number ≥ 0.
    """

    def __init__(
        self,
        *,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        per_seconds: float = DEFAULT_PER_SECONDS,
        safety_margin: float = DEFAULT_SAFETY_MARGIN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if isinstance(max_messages, bool) or not isinstance(max_messages, int) or max_messages < 1:
            raise ValueError(f"max_messages must be an int >= 1, got {max_messages!r}")
        if not math.isfinite(per_seconds) or per_seconds <= 0:
            raise ValueError(f"per_seconds must be a finite number > 0, got {per_seconds!r}")
        if not math.isfinite(safety_margin) or safety_margin < 0:
            raise ValueError(f"safety_margin must be a finite number >= 0, got {safety_margin!r}")
        self._max = max_messages
        self._window = per_seconds + safety_margin
        self._clock = clock
        self._sleep = sleep
        self._sent: dict[int, deque[Slot]] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._urgent: dict[int, int] = {}  # urgent callers waiting, per channel

    @property
    def window_seconds(self) -> float:
        """Effective window in seconds: ``per_seconds + safety_margin``."""
        return self._window

    def delay_for(self, channel_id: int) -> float:
        """Seconds until one more send to ``channel_id`` fits the window.

        Waiters already queued in :meth:`acquire` are not counted.

        Parameters
        ----------
        channel_id : int
            The Discord channel id.

        Returns
        -------
        float
            ``0.0`` when a slot is free now, otherwise the time until the oldest recorded send
            leaves the window.
        """
        sent = self._sent.get(channel_id)
        if not sent:
            return 0.0
        now = self._clock()
        while sent and sent[0].at + self._window <= now:
            sent.popleft()
        if len(sent) < self._max:
            if not sent:
                del self._sent[channel_id]
            return 0.0
        return max(0.0, sent[0].at + self._window - now)

    def mark_sent(self, slot: Slot) -> None:
        """Move a slot's time to now: call when the message request completed.

        Discord counts a message when it arrives, which is after :meth:`acquire` granted the
        slot; counting from the completion keeps a slow request followed by a fast one from
        landing closer together than the window.
        """
        slot.at = self._clock()

    async def acquire(self, channel_id: int, *, urgent: bool = False) -> Slot:
        """Wait until one more message may be sent to ``channel_id``, then record the send.

        Callers for the same channel are served in the order they called (an
        :class:`asyncio.Lock` is held while waiting, and asyncio locks are fair); different
        channels never wait for each other. An ``urgent`` caller (a critical task) does not
        queue behind them: it takes the next free slot. Call it right before creating the
        message. A caller cancelled while waiting records nothing.

        Parameters
        ----------
        channel_id : int
            The Discord channel id.
        urgent : bool
            Skip the queue of ordinary callers (still never exceeds the rate).
        """
        if urgent:
            self._urgent[channel_id] = self._urgent.get(channel_id, 0) + 1
            try:
                while (delay := self.delay_for(channel_id)) > 0:
                    await self._sleep(delay)
                slot = Slot(self._clock())
                self._sent.setdefault(channel_id, deque()).append(slot)
            finally:
                self._urgent[channel_id] -= 1
            return slot
        lock = self._locks.get(channel_id)
        if lock is None:
            lock = self._locks[channel_id] = asyncio.Lock()
        async with lock:
            while True:
                delay = self.delay_for(channel_id)
                if delay <= 0 and not self._urgent.get(channel_id):
                    break
                # an urgent caller waiting for the same slot goes first
                await self._sleep(delay if delay > 0 else URGENT_YIELD_SECONDS)
            slot = Slot(self._clock())
            self._sent.setdefault(channel_id, deque()).append(slot)
            return slot
