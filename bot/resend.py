"""Background re-sends: keep trying what the factory has not confirmed yet, without a restart.

A decision whose outcome is unknown (every attempt timed out or was answered with something
unreadable, and the task could not be read back) stays *in flight* in the store. The bridge
hands it to a :class:`Resender`, which re-sends it in the background with the same
``Idempotency-Key`` (contract §7.1: the factory executes it once, or replays its first answer)
until it settles: after the first ``base_seconds`` × 2, the delay doubles up to
``max_seconds``. One re-send per key (a task id) runs at a time; a crash or a stop leaves the
decision in flight in the store, where the start-up reconciliation finds and re-sends it
(:meth:`bot.reconcile.Reconciler.resume_inflight`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

__all__ = ["RESEND_MAX_DELAY_SECONDS", "Resender"]

log = logging.getLogger(__name__)

#: The longest wait between two background re-sends (seconds).
RESEND_MAX_DELAY_SECONDS = 300.0

Attempt = Callable[[], Awaitable[bool]]


class Resender:
    """Runs one background retry loop per key until its attempt reports success.

    Parameters
    ----------
    base_seconds:
        The first wait is ``2 × base_seconds`` (``FACTORY_RETRY_BASE_SECONDS``: the client
        already retried three times); every later wait doubles, up to ``max_seconds``.
    max_seconds:
        The longest wait between two attempts (seconds).
    sleep:
        Injected by tests; ``asyncio.sleep`` by default.
    """

    def __init__(
        self,
        *,
        base_seconds: float,
        max_seconds: float = RESEND_MAX_DELAY_SECONDS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base_seconds = max(base_seconds, 0.01)
        self.max_seconds = max_seconds
        self._sleep = sleep
        self._loops: dict[str, asyncio.Task[None]] = {}

    def schedule(self, key: str, attempt: Attempt) -> bool:
        """Start retrying ``attempt`` in the background for ``key``.

        ``attempt()`` returns ``True`` once settled (the loop ends) and ``False`` to be
        tried again later; an exception counts as ``False`` (logged). Returns ``False``
        (and starts nothing) when a loop for ``key`` is already under way.
        """
        if self.under_way(key):
            return False
        self._loops[key] = asyncio.create_task(self._run(key, attempt), name=f"resend-{key}")
        return True

    def under_way(self, key: str) -> bool:
        """True while a background loop for ``key`` runs."""
        loop = self._loops.get(key)
        return loop is not None and not loop.done()

    def __len__(self) -> int:
        """How many loops are under way."""
        return sum(1 for loop in self._loops.values() if not loop.done())

    async def stop(self) -> None:
        """Cancel every loop (what they were re-sending stays in flight in the store)."""
        loops = list(self._loops.values())
        for loop in loops:
            loop.cancel()
        for loop in loops:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await loop
        self._loops.clear()

    async def _run(self, key: str, attempt: Attempt) -> None:
        delay = self.base_seconds * 2
        tries = 0
        try:
            while True:
                await self._sleep(delay)
                tries += 1
                try:
                    settled = await attempt()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("background re-send %d for %s failed", tries, key)
                    settled = False
                if settled:
                    log.info("background re-send for %s settled after %d attempt(s)", key, tries)
                    return
                delay = min(delay * 2, self.max_seconds)
                log.warning(
                    "background re-send for %s not settled (attempt %d); next in %.1fs",
                    key,
                    tries,
                    delay,
                )
        finally:
            if self._loops.get(key) is asyncio.current_task():
                del self._loops[key]
