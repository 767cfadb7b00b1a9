"""A background asyncio task that runs one step every few seconds until it is stopped.

The heartbeat, the self-watch and the channel-access retry each repeat one step forever on the
leader's event loop; this is their shared start/stop. A step that raises is logged and the loop
goes on: one failed round must never end the watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

__all__ = ["Periodic"]

log = logging.getLogger(__name__)


class Periodic:
    """Run ``step`` every ``interval_seconds`` in a background task between :meth:`start` and
    :meth:`stop`.

    Parameters
    ----------
    name:
        The asyncio task's name, and the subject of the log line when a step raises.
    step:
        The coroutine function run each round.
    interval_seconds:
        Seconds between the end of one round and the start of the next.
    wait_first:
        When true, the first round runs one interval after :meth:`start` (a retry loop);
        otherwise at once (a watch that should report its state from the start).
    """

    def __init__(
        self,
        name: str,
        step: Callable[[], Awaitable[object]],
        interval_seconds: float,
        *,
        wait_first: bool = False,
    ) -> None:
        self.name = name
        self.interval_seconds = interval_seconds
        self._step = step
        self._wait_first = wait_first
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._task is not None

    def start(self) -> None:
        """Start the rounds in a background task on the running event loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Cancel the background task and wait until it has ended (a no-op when not started)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        if self._wait_first:
            await asyncio.sleep(self.interval_seconds)
        while True:
            try:
                await self._step()
            except Exception:  # the loop must outlive any one failed round
                log.exception("%s failed", self.name)
            await asyncio.sleep(self.interval_seconds)
