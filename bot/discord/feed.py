"""The feed channel's posts: queued per channel, coalesced, never holding up the processor.

Informational lines for ``DISCORD_FEED_CHANNEL_ID`` (pipeline created / stage changed /
completed, :data:`bot.channel_map.FEED_EVENT_TYPES`) are handed to a :class:`FeedQueue` and
:meth:`bot.discord.notifier.DiscordNotifier.post_event` returns at once. Posting them one
message each would take a burst of 100 pipeline events about 100 s at Discord's rate of about 5
messages per 5 s per channel, and the event processor works serially: a task that needs a
human would wait behind the feed. Each channel's poster instead takes the lines waiting, in
arrival order, and packs them one per line into as few messages as fit Discord's 2,000-character
content limit (Discord API reference, "Create Message": ``content`` up to 2000 characters),
through the same pacer and ``send`` path as every message (no pings).

The queue is bounded (``DISCORD_FEED_MAX_PENDING`` lines per channel): past that, the oldest
lines are dropped, logged at WARNING, and the next message starts with a line saying how many
earlier updates are not shown. A failed post (Discord 5xx, network) is retried with backoff;
a permanent refusal (403 / 404, or 10003 / 50001 / 50013) is logged and the lines dropped.

Lines waiting in memory are lost on a crash: feed events are marked handled once queued. The
pipelines' state stays visible through ``/factory pipelines``. On a graceful stop
(:meth:`FeedQueue.close`) the waiting lines are posted within a short timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
import discord

from bot.discord.limits import CONTENT_MAX
from bot.discord.pacing import ChannelPacer
from bot.message_faults import CHANNEL_FAULT_CODES

__all__ = [
    "DEFAULT_MAX_PENDING",
    "RETRY_DELAYS_SECONDS",
    "FeedQueue",
    "not_shown_line",
    "pack_lines",
]

log = logging.getLogger(__name__)

#: Lines kept waiting per channel before the oldest are dropped (``DISCORD_FEED_MAX_PENDING``).
DEFAULT_MAX_PENDING = 500

#: Pauses between attempts of a post that failed for a passing reason (5xx, network), seconds;
#: after the last one the message's lines are dropped with a warning.
RETRY_DELAYS_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)

#: Seconds :meth:`FeedQueue.close` waits for the waiting lines to be posted.
CLOSE_TIMEOUT_SECONDS = 5.0

Send = Callable[[int, str], Awaitable[object]]


def not_shown_line(count: int) -> str:
    """The line that says ``count`` earlier updates were dropped."""
    plural = "update" if count == 1 else "updates"
    return f"… {count} earlier pipeline {plural} not shown (feed rate limit)"


def pack_lines(lines: Sequence[str], limit: int = CONTENT_MAX) -> tuple[str, int]:
    """The first message of ``lines``: as many leading lines as fit ``limit`` characters.

    Returns
    -------
    tuple[str, int]
        The content (lines joined by newlines) and how many lines it holds (at least one: a
        line longer than ``limit`` goes alone and is cut by ``send``).
    """
    size = 0
    taken = 0
    for line in lines:
        needed = len(line) + (1 if taken else 0)
        if taken and size + needed > limit:
            break
        size += needed
        taken += 1
    return "\n".join(lines[:taken]), taken


def _permanent(exc: discord.HTTPException) -> bool:
    """Discord refuses the channel itself: retrying cannot help."""
    return exc.status in (403, 404) or exc.code in CHANNEL_FAULT_CODES


@dataclass
class _Channel:
    lines: deque[str] = field(default_factory=deque)
    dropped: int = 0  # lines dropped for the bound, not yet told in the channel
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    worker: asyncio.Task[None] | None = None


class FeedQueue:
    """Per-channel background queue of feed lines, posted coalesced.

    Parameters
    ----------
    send : callable
        ``async send(channel_id, content)`` creates one message (paced; raises on failure),
        e.g. :meth:`bot.discord.notifier.DiscordNotifier.send`.
    pacer : ChannelPacer, optional
        The channel pacer ``send`` uses: the poster waits for a free slot before it packs a
        message, so lines arriving meanwhile ride along.
    max_pending : int
        Lines kept waiting per channel (≥ 1); the oldest are dropped beyond it.
    retry_delays : sequence of float
        Pauses between attempts of a post that failed for a passing reason, in seconds.
    sleep : callable
        Coroutine function sleeping for the given seconds (injected in tests).

    Raises
    ------
    ValueError
        If ``max_pending`` is not ≥ 1.
    """

    def __init__(
        self,
        send: Send,
        *,
        pacer: ChannelPacer | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        retry_delays: Sequence[float] = RETRY_DELAYS_SECONDS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending!r}")
        self._send = send
        self._pacer = pacer
        self.max_pending = max_pending
        self._retry_delays = tuple(retry_delays)
        self._sleep = sleep
        self._channels: dict[int, _Channel] = {}
        self._closed = False
        #: messages posted / lines dropped (bound, refusal or give-up), for logs and tests
        self.posted = 0
        self.dropped = 0

    def pending(self, channel_id: int) -> int:
        """Lines waiting for ``channel_id``."""
        channel = self._channels.get(channel_id)
        return len(channel.lines) if channel else 0

    def submit(self, channel_id: int, line: str) -> None:
        """Queue one line for ``channel_id`` and return at once (the poster sends it)."""
        if self._closed:
            log.warning("feed line for channel %s after shutdown, not posted: %s", channel_id, line)
            self.dropped += 1
            return
        channel = self._channels.setdefault(channel_id, _Channel())
        channel.lines.append(line)
        while len(channel.lines) > self.max_pending:
            channel.lines.popleft()
            channel.dropped += 1
            self.dropped += 1
        channel.wake.set()
        if channel.worker is None or channel.worker.done():
            channel.worker = asyncio.create_task(
                self._run(channel_id, channel), name=f"feed-{channel_id}"
            )

    async def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Post what is waiting within ``timeout`` seconds, then stop every poster.

        Lines still waiting after it are logged (WARNING) and dropped.
        """
        self._closed = True
        workers = [c.worker for c in self._channels.values() if c.worker is not None]
        for channel in self._channels.values():
            channel.wake.set()
        if workers:
            _, late = await asyncio.wait(workers, timeout=timeout)
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for channel_id, channel in self._channels.items():
            left = len(channel.lines) + channel.dropped
            if left:
                log.warning("feed channel %s: %d lines not posted at shutdown", channel_id, left)
                self.dropped += len(channel.lines)
                channel.lines.clear()
                channel.dropped = 0

    async def _run(self, channel_id: int, channel: _Channel) -> None:
        while True:
            if not channel.lines:
                if self._closed:
                    return
                channel.wake.clear()
                await channel.wake.wait()
                continue
            if self._pacer is not None:  # wait for a slot first: later lines ride along
                delay = self._pacer.delay_for(channel_id)
                if delay > 0:
                    await self._sleep(delay)
            head: list[str] = []
            dropped = channel.dropped
            if dropped:
                head.append(not_shown_line(dropped))
                log.warning(
                    "feed channel %s: %d earlier lines dropped (more than "
                    "DISCORD_FEED_MAX_PENDING=%d waiting)",
                    channel_id,
                    dropped,
                    self.max_pending,
                )
                channel.dropped = 0
            content, taken = pack_lines(head + list(channel.lines))
            for _ in range(taken - len(head)):
                channel.lines.popleft()
            await self._post(channel_id, channel, content, taken - len(head))

    async def _post(self, channel_id: int, channel: _Channel, content: str, lines: int) -> None:
        """Send one message, retrying passing failures; never raises."""
        for attempt in range(len(self._retry_delays) + 1):
            try:
                await self._send(channel_id, content)
            except discord.HTTPException as exc:
                if _permanent(exc):
                    lost = lines + len(channel.lines)
                    channel.lines.clear()
                    self.dropped += lost
                    log.warning(
                        "feed channel %s refused the post (HTTP %s, code %s): %d lines dropped",
                        channel_id,
                        exc.status,
                        exc.code,
                        lost,
                    )
                    return
                if exc.status < 500:
                    self.dropped += lines
                    log.warning(
                        "feed post to channel %s refused (HTTP %s, code %s): %d lines dropped",
                        channel_id,
                        exc.status,
                        exc.code,
                        lines,
                    )
                    return
                failure: Exception = exc
            except (OSError, TimeoutError, aiohttp.ClientError) as exc:
                failure = exc
            except Exception:
                self.dropped += lines
                log.exception("feed post to channel %s failed: %d lines dropped", channel_id, lines)
                return
            else:
                self.posted += 1
                return
            if attempt == len(self._retry_delays):
                break
            log.info("feed post to channel %s failed (%r), retrying", channel_id, failure)
            await self._sleep(self._retry_delays[attempt])
        self.dropped += lines
        log.warning(
            "feed post to channel %s kept failing (%r): %d lines dropped",
            channel_id,
            failure,
            lines,
        )
