"""The event processor: handles stored events in arrival order, one at a time.

Events come from the webhook intake and the WebSocket intake through the store, so both go
through the same de-duplication (by id, and by content fingerprint when the event is stored:
see :meth:`bot.store.Store.record_event`). Once an event is stored (committed), its intake hands
it over in memory with :meth:`EventProcessor.submit`, already parsed, so that a caught-up
processor never reads the event table back. The table stays the queue for everything else: at
start (:meth:`EventProcessor.start`) and after a failure, the processor reads it until no
unprocessed event is left, and skips the events it then meets again in memory.

An event whose handling fails (Discord or the factory down) stays unprocessed and is retried
with backoff, in order, from the store; after ``max_attempts`` it is marked failed with the
reason, and the periodic reconciliation repairs what it missed. Handled events are marked in
the store a run at a time (one write per run of up to 100 events, not one each).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

from bot.factory.events import EventValidationError, FactoryEvent, UnknownEventType, parse_event
from bot.store import Store

__all__ = ["EventProcessor"]

log = logging.getLogger(__name__)

#: An event as the processor gets it: parsed, or why its stored body does not parse.
_Parsed = FactoryEvent | EventValidationError | UnknownEventType
#: ``(event_id, type, parsed)`` of the events of one run.
_Run = list[tuple[str, str, _Parsed]]

#: Events taken from the store or from memory per run.
RUN_SIZE = 100
#: Ids read from the store that are remembered, so that their in-memory copy is skipped.
SCANNED_MEMORY = 50_000


class EventProcessor:
    """Background loop over unprocessed events.

    Parameters
    ----------
    store:
        The event table is the queue of record (recovery after a restart or a failure).
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
        self._submitted: deque[tuple[str, FactoryEvent]] = deque()
        self._read_store = True  # the store may hold events not submitted in memory
        self._scanned: OrderedDict[str, None] = OrderedDict()  # read from the store
        self.idle = asyncio.Event()

    def submit(self, event_id: str, event: FactoryEvent) -> None:
        """Hand over an event that was just stored (committed) as new, already parsed.

        Call only for :attr:`bot.store.Recorded.NEW` events, after the write committed: the
        store is the record, memory only saves reading it back.
        """
        self._submitted.append((event_id, event))
        self._wake.set()

    def start(self) -> None:
        """Start the loop as a background task (it reads the store first)."""
        self._read_store = True
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
            if self._read_store:
                run = await self._read_run()
            elif self._submitted:
                run = self._memory_run()
            else:
                self.idle.set()
                await self._wake.wait()
                self.idle.clear()
                continue
            for event_id, type_, event in run:
                delay = await self._process(event_id, type_, event)
                if delay:
                    await self._flush_handled()
                    # retry from the store, in order (the rest of this run is there too)
                    self._read_store = True
                    try:  # wait before retrying, but wake early if new events arrive
                        await asyncio.wait_for(self._wake.wait(), delay)
                    except TimeoutError:
                        pass
                    break
            await self._flush_handled()

    async def _read_run(self) -> _Run:
        """The next events from the store, parsed; the store is read until it has none left."""
        records = await self.store.unprocessed_events(RUN_SIZE)
        self._read_store = bool(records)
        run: _Run = []
        for record in records:
            self._scanned[record.event_id] = None
            try:
                run.append((record.event_id, record.type, parse_event(record.body)))
            except (EventValidationError, UnknownEventType) as exc:
                run.append((record.event_id, record.type, exc))
        while len(self._scanned) > SCANNED_MEMORY:
            self._scanned.popitem(last=False)
        return run

    def _memory_run(self) -> _Run:
        """The next submitted events, without those already taken from the store."""
        run: _Run = []
        while self._submitted and len(run) < RUN_SIZE:
            event_id, event = self._submitted.popleft()
            if event_id in self._scanned:  # already taken from the store
                del self._scanned[event_id]
                continue
            run.append((event_id, event.type, event))
        return run

    async def _flush_handled(self) -> None:
        """Mark the events handled since the last flush, in one write.

        A crash before the flush makes them be handled again at the next start, as a crash
        between acting on an event and marking it always did; the handlers tolerate it (a
        task already shown is not posted again).
        """
        if self._handled:
            handled, self._handled = self._handled, []
            await self.store.mark_events_processed(handled)

    async def _process(self, event_id: str, type_: str, event: _Parsed) -> float:
        """Handle one event; return seconds to back off (0 when done)."""
        if isinstance(event, EventValidationError | UnknownEventType):
            await self.store.mark_event_processed(event_id, error=str(event))
            return 0.0
        try:
            await self.handle(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            attempts = self._attempts.get(event_id, 0) + 1
            self._attempts[event_id] = attempts
            if attempts >= self.max_attempts:
                log.error(
                    "event %s (%s) failed %d times, giving up: %r",
                    event_id,
                    type_,
                    attempts,
                    exc,
                )
                self._attempts.pop(event_id, None)
                await self.store.mark_event_processed(event_id, error=repr(exc))
                return 0.0
            delay = min(self.retry_base_seconds * 2 ** (attempts - 1), 30.0)
            log.warning(
                "event %s (%s) failed (%r); attempt %d/%d, retrying in %.1fs",
                event_id,
                type_,
                exc,
                attempts,
                self.max_attempts,
                delay,
            )
            return delay
        self._attempts.pop(event_id, None)
        self._handled.append(event_id)
        return 0.0
