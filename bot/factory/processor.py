"""The event processor: handles stored events in arrival order, one at a time.

Events come from the webhook intake and the WebSocket intake through the store, so both go
through the same path and the same de-duplication (by id, and by content fingerprint when the
event is stored: see :meth:`bot.store.Store.record_event`). An event whose handling fails
(Discord or the factory down) stays unprocessed and is retried with backoff; after
``max_attempts`` it is marked failed with the reason, and the periodic reconciliation repairs
what it missed. Handled events are marked in the store a run at a time (one write per run of
up to 100 events, not one each).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.factory.events import EventValidationError, FactoryEvent, UnknownEventType, parse_event
from bot.store import EventRecord, Store

__all__ = ["EventProcessor"]

log = logging.getLogger(__name__)


class EventProcessor:
    """Background loop over unprocessed events.

    Parameters
    ----------
    store:
        The event table is the queue.
    handle:
        The bridge's ``handle_event`` coroutine.
    max_attempts:
        Attempts per event before it is marked failed.
    retry_base_seconds:
        First backoff between attempts (doubles, at most 30 s).
    """

    def __init__(
        self,
        store: Store,
        handle: Callable[[FactoryEvent], Awaitable[None]],
        *,
        max_attempts: int = 5,
        retry_base_seconds: float = 1.0,
    ) -> None:
        self.store = store
        self.handle = handle
        self.max_attempts = max_attempts
        self.retry_base_seconds = retry_base_seconds
        self._wake = asyncio.Event()
        self._attempts: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._handled: list[str] = []  # handled, not yet marked in the store
        self.idle = asyncio.Event()

    def wake(self) -> None:
        """Signal that new events were stored."""
        self._wake.set()

    def start(self) -> None:
        """Start the loop as a background task."""
        self._task = asyncio.create_task(self._run(), name="event-processor")

    async def stop(self) -> None:
        """Stop the loop (the current event finishes or stays unprocessed for next start)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self._flush_handled()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            batch = await self.store.unprocessed_events()
            if not batch:
                self.idle.set()
                await self._wake.wait()
                self.idle.clear()
                continue
            for record in batch:
                delay = await self._process(record)
                if delay:
                    await self._flush_handled()
                    # wait before retrying, but wake early if new events arrive
                    try:
                        await asyncio.wait_for(self._wake.wait(), delay)
                    except TimeoutError:
                        pass
                    break
            await self._flush_handled()

    async def _flush_handled(self) -> None:
        """Mark the events handled since the last flush, in one write.

        A crash before the flush makes them be handled again at the next start, as a crash
        between acting on an event and marking it always did; the handlers tolerate it (a
        task already shown is not posted again).
        """
        if self._handled:
            handled, self._handled = self._handled, []
            await self.store.mark_events_processed(handled)

    async def _process(self, record: EventRecord) -> float:
        """Handle one event; return seconds to back off (0 when done)."""
        try:
            event = parse_event(record.body)
        except (EventValidationError, UnknownEventType) as exc:
            await self.store.mark_event_processed(record.event_id, error=str(exc))
            return 0.0
        try:
            await self.handle(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            attempts = self._attempts.get(record.event_id, 0) + 1
            self._attempts[record.event_id] = attempts
            if attempts >= self.max_attempts:
                log.error(
                    "event %s (%s) failed %d times, giving up: %r",
                    record.event_id,
                    record.type,
                    attempts,
                    exc,
                )
                self._attempts.pop(record.event_id, None)
                await self.store.mark_event_processed(record.event_id, error=repr(exc))
                return 0.0
            delay = min(self.retry_base_seconds * 2 ** (attempts - 1), 30.0)
            log.warning(
                "event %s (%s) failed (%r); attempt %d/%d, retrying in %.1fs",
                record.event_id,
                record.type,
                exc,
                attempts,
                self.max_attempts,
                delay,
            )
            return delay
        self._attempts.pop(record.event_id, None)
        self._handled.append(record.event_id)
        return 0.0
