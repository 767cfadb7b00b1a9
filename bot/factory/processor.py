"""The event processor: handles stored events in arrival order, without letting one hold up the rest.

Events come from the webhook intake and the WebSocket intake through the store, so both go
through the same de-duplication (by id, and by content fingerprint when the event is stored:
see :meth:`bot.store.Store.record_event`). Once an event is stored (committed), its intake hands
it over in memory with :meth:`EventProcessor.submit`, already parsed, so that a caught-up
processor never reads the event table back. The table stays the queue of record: at start
(:meth:`EventProcessor.start`) the processor reads it until no unprocessed event is left, and
skips the events it then meets again in memory. Handled events are marked in the store a run at
a time (one write per run of up to 100 events read from the store, or up to 1,000 taken from
memory, not one each); an event that posts an alert or deploy line
(:func:`~bot.factory.event_rules.marked_at_once`) is marked as soon as it is handled, so that a
crash later in the run does not post its line again.

When handling an event fails, what happens depends on the error (:func:`permanent_reason`):

- **permanent** — the event can never be handled: the factory refuses the request it needs
  (400, 404, 409, 410, 413 or 422: e.g. ``approval.pending`` for a task the factory does not
  know), Discord refuses the message as malformed (400), or a value cannot be processed
  (``ValueError``/``TypeError``/``LookupError``/``ArithmeticError``/``RecursionError``: a date
  in year 9999 that overflows a deadline, a document nested too deep to serialise). The event is
  **parked at once**: marked failed in the store with the reason (``events.error``), audited
  (``event.failed``) and counted (``events_failed`` in ``/healthz``). Reconciliation repairs
  whatever it would have shown.
- **transient** — anything else (the factory unavailable or 5xx, Discord down, the database
  busy). The event is retried with its own backoff (``retry_base_seconds`` doubling, at most
  30 s), and **the events behind it go on**; only the later events about the *same* task (or
  pipeline) wait behind it, so that one task's events are still applied in order. After
  ``max_attempts`` it is parked like a permanent failure.
- **an outage** — when two events in a row fail transiently with no success between them, the
  dependency is taken to be down: no new event is attempted (none is charged an attempt) until
  a retry succeeds or the waiting events are parked.

Nothing is lost on a stop or a crash: an event waiting for a retry is still unprocessed in the
store and is handled after the next start.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

from bot.factory.event_rules import (
    PERMANENT_STATUSES,
    Parsed,
    marked_at_once,
    order_key,
    permanent_reason,
)
from bot.factory.events import EventValidationError, FactoryEvent, UnknownEventType, parse_event
from bot.logs import log_context
from bot.store import Store
from bot.store.database import NotLeader

__all__ = ["PERMANENT_STATUSES", "EventProcessor", "order_key", "permanent_reason"]

log = logging.getLogger(__name__)

#: ``(event_id, type, parsed)``.
_Item = tuple[str, str, Parsed]
#: The events of one run.
_Run = list[_Item]

#: Events taken from the store per run.
RUN_SIZE = 100
#: Events taken from memory per run: as many as one Redis Streams batch, so that a processor
#: following a busy intake marks a batch in one write (shared with the intake's next batch)
#: instead of ten, keeps up with it, and does not fall back to reading its backlog from the
#: store.
MEMORY_RUN_SIZE = 1_000
#: Ids read from the store that are remembered, so that their in-memory copy is skipped.
SCANNED_MEMORY = 50_000
#: Events handed over in memory and not taken yet, at most; beyond this the store is the queue
#: (an intake storing faster than the events are handled must not grow memory without bound).
SUBMITTED_MEMORY = 10_000
#: Longest backoff between two attempts of one event (seconds).
MAX_BACKOFF_SECONDS = 30.0
#: Transient failures in a row (no success between) that mean a dependency is down.
OUTAGE_STREAK = 2
#: Longest failure reason kept in ``events.error`` and the audit (characters).
MAX_REASON_CHARS = 1000


def _task_id(key: str) -> str | None:
    return key.removeprefix("task:")[:64] if key.startswith("task:") else None


class EventProcessor:
    """Background loop over unprocessed events.

    Parameters
    ----------
    store:
        The event table is the queue of record (recovery after a restart).
    handle:
        The bridge's ``handle_event`` coroutine.
    max_attempts:
        Attempts per event before a transiently failing event is parked as failed.
    retry_base_seconds:
        First backoff between attempts of one event (doubles, at most 30 s).

    Attributes
    ----------
    failed:
        Events parked as failed since start (permanent errors, attempts used up, stored
        bodies that no longer parse).
    idle:
        Set while nothing is queued and nothing waits for a retry.
    """

    def __init__(
        self,
        store: Store,
        handle: Callable[[FactoryEvent], Awaitable[None]],
        *,
        max_attempts: int = 5,
        retry_base_seconds: float = 1.0,
        store_retry_seconds: float = 1.0,
    ) -> None:
        self.store = store
        self.handle = handle
        self.max_attempts = max_attempts
        self.retry_base_seconds = retry_base_seconds
        self.store_retry_seconds = store_retry_seconds
        #: times the store failed under the loop (it waited, then went on)
        self.store_failures = 0
        self.failed = 0
        self._wake = asyncio.Event()
        self._attempts: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._handled: list[str] = []  # handled, not yet marked in the store
        self._unmarked: set[str] = set()  # handled, their mark failed: not read back again
        # marks being written: stop() waits for them, even when it cancelled their caller
        self._flushing: set[asyncio.Future[None]] = set()
        # submitted, not taken yet, in arrival order; by id, so that a store read takes an
        # event's parsed copy from here instead of parsing its body again
        self._submitted: OrderedDict[str, FactoryEvent] = OrderedDict()
        self._read_store = True  # the store may hold events not submitted in memory
        self._overflows = 0  # submitted events left to the store because memory was full
        self._scanned: OrderedDict[str, None] = OrderedDict()  # read from the store
        self._backlog: deque[_Item] = deque()  # taken, not attempted yet (an outage began)
        self._chains: dict[str, deque[_Item]] = {}  # key → events waiting; the head is retried
        self._retry_at: dict[str, float] = {}  # key → loop time of its head's next attempt
        self._held: set[str] = set()  # ids in the backlog or a chain (unprocessed in the store)
        self._streak = 0  # transient failures in a row
        self.idle = asyncio.Event()

    def submit(self, event_id: str, event: FactoryEvent) -> None:
        """Hand over an event that was just stored (committed) as new, already parsed.

        Call only for :attr:`bot.store.Recorded.NEW` events, after the write committed: the
        store is the record, memory only saves reading it back.
        """
        if len(self._submitted) < SUBMITTED_MEMORY:
            self._submitted[event_id] = event
        else:  # memory is full: the store is the queue until a read finds it drained
            self._overflows += 1
            self._read_store = True
        self._wake.set()

    def rescan(self) -> None:
        """Read the event table again: events other processes stored (a standby's
        ``POST /events``, README "Production") are handled by this one. Cheap when there are none."""
        if self._task is not None:
            self._read_store = True
            self._wake.set()

    def queue_depth(self) -> int:
        """Events handed over or held for a retry and not handled yet (``/metrics``)."""
        return len(self._submitted) + len(self._held)

    def counters(self) -> dict[str, int]:
        """``{"events_failed", "events_retrying"}`` for ``/healthz``.

        ``events_failed`` counts events parked as failed since start; ``events_retrying`` the
        events waiting for a retry (or behind one, or for an outage to end).
        """
        return {"events_failed": self.failed, "events_retrying": len(self._held)}

    def start(self) -> None:
        """Start the loop as a background task (it reads the store first)."""
        self._read_store = True
        self._task = asyncio.create_task(self._run(), name="event-processor")

    async def stop(self) -> None:
        """Stop the loop; events not handled stay unprocessed in the store for the next start."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._flushing:  # a flush the cancelled loop was waiting for: let it commit
            await asyncio.gather(*self._flushing, return_exceptions=True)
        try:
            await self._flush_handled()
        except Exception:  # unmarked: handled again at the next start (handlers tolerate it)
            log.exception("event processor: the last handled events could not be marked")
        self._handled.clear()
        self._backlog.clear()
        self._chains.clear()
        self._retry_at.clear()
        self._held.clear()
        self._unmarked.clear()
        self._streak = 0

    # ------------------------------------------------------------------ the loop
    async def _run(self) -> None:
        """The loop; a failure of the store under it (a mark, a read, a disk full) is logged
        and waited out (``store_retry_seconds``), never the end of the loop: the events in
        hand stay unprocessed in the store and are read again."""
        while True:
            try:
                await self._run_until_failure()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.store_failures += 1
                log.exception(
                    "event processor: the store failed; going on in %.1fs", self.store_retry_seconds
                )
                self._read_store = True  # what was taken and not handled is read again
                await asyncio.sleep(self.store_retry_seconds)

    async def _run_until_failure(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            await self._retry_due(loop.time())
            if self._in_outage():
                # a dependency is down: attempt nothing new until a retry succeeds
                await asyncio.sleep(max(self._next_retry() - loop.time(), 0.0))
                continue
            run = await self._next_run()
            if not run:
                if not self._retry_at:
                    self.idle.set()
                try:  # until new events arrive or a retry is due
                    timeout = None
                    if self._retry_at:
                        timeout = max(self._next_retry() - loop.time(), 0.0)
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    pass
                self.idle.clear()
                continue
            for index, item in enumerate(run):
                await self._take(item)
                if self._in_outage():
                    rest = run[index + 1 :]
                    self._backlog.extendleft(reversed(rest))
                    self._held.update(event_id for event_id, _, _ in rest)
                    break
            await self._flush_handled()

    def _in_outage(self) -> bool:
        return self._streak >= OUTAGE_STREAK and bool(self._retry_at)

    def _next_retry(self) -> float:
        return min(self._retry_at.values())

    async def _next_run(self) -> _Run:
        """The next events to attempt: the backlog, then the store, then memory."""
        if self._backlog:
            run: _Run = []
            while self._backlog and len(run) < RUN_SIZE:
                item = self._backlog.popleft()
                self._held.discard(item[0])
                run.append(item)
            return run
        if self._read_store:
            return await self._read_run()
        if self._submitted:
            return self._memory_run()
        return []

    async def _read_run(self) -> _Run:
        """The next events from the store, parsed; the store is read until it has none left
        that was not also submitted in memory.

        Events waiting for a retry are unprocessed in the store too: they are skipped. An event
        read from the store that is also waiting in memory is taken with its parsed copy (not
        parsed again). A read that finds only such events ends the store reads: the rest of
        them are in memory, in order, so an intake storing faster than the processor handles
        is followed from memory instead of by reading its backlog back from the store — unless
        memory was full (:data:`SUBMITTED_MEMORY`) when an event was submitted: then the store
        is read until a read finds no more than it asked for.
        """
        overflows = self._overflows
        # handled but not marked yet (the loop failed before the flush, or the flush did):
        # unprocessed in the store, never to be handled again
        unmarked = self._unmarked.union(self._handled) if self._handled else self._unmarked
        limit = RUN_SIZE + len(self._held) + len(unmarked)
        records = await self.store.unprocessed_events(limit)
        drained = len(records) < limit
        skip = self._held | unmarked if unmarked else self._held
        records = [r for r in records if r.event_id not in skip][:RUN_SIZE]
        only_in_memory = True
        run: _Run = []
        for record in records:
            event = self._submitted.pop(record.event_id, None)
            if event is not None:
                run.append((record.event_id, record.type, event))
                continue
            only_in_memory = False
            self._scanned[record.event_id] = None
            try:
                run.append((record.event_id, record.type, parse_event(record.body)))
            except (EventValidationError, UnknownEventType) as exc:
                run.append((record.event_id, record.type, exc))
        if drained and overflows == self._overflows:
            self._overflows = 0  # every event left to the store was in this read
        self._read_store = not only_in_memory or self._overflows > 0
        while len(self._scanned) > SCANNED_MEMORY:
            self._scanned.popitem(last=False)
        return run

    def _memory_run(self) -> _Run:
        """The next submitted events, without those already taken from the store."""
        run: _Run = []
        while self._submitted and len(run) < MEMORY_RUN_SIZE:
            event_id, event = self._submitted.popitem(last=False)
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
            flush = asyncio.ensure_future(self.store.mark_events_processed(handled))
            self._flushing.add(flush)
            flush.add_done_callback(self._flushing.discard)
            try:
                await asyncio.shield(flush)
            except Exception:  # marked at the next flush; meanwhile never handled again
                self._handled[:0] = handled
                self._unmarked.update(handled)
                raise
            self._unmarked.difference_update(handled)

    # ------------------------------------------------------------------ one event
    async def _take(self, item: _Item) -> None:
        """Attempt a new event, or queue it behind an earlier event about the same thing."""
        event_id, _, event = item
        key = order_key(event_id, event)
        chain = self._chains.get(key)
        if chain is not None:
            chain.append(item)
            self._held.add(event_id)
            return
        delay = await self._process(item, key)
        if delay:
            self._chains[key] = deque([item])
            self._held.add(event_id)
            self._retry_at[key] = asyncio.get_running_loop().time() + delay

    async def _retry_due(self, now: float) -> None:
        """Retry the chains whose time came, earliest first; a success lets its queue go on."""
        due = sorted((at, key) for key, at in self._retry_at.items() if at <= now)
        for _, key in due:
            chain = self._chains[key]
            while chain:
                delay = await self._process(chain[0], key)
                if delay:
                    self._retry_at[key] = asyncio.get_running_loop().time() + delay
                    break
                self._held.discard(chain.popleft()[0])
            else:
                del self._chains[key]
                del self._retry_at[key]
        if due:
            await self._flush_handled()

    async def _process(self, item: _Item, key: str) -> float:
        """Handle one event; return seconds to wait before retrying it (0 when settled)."""
        event_id, type_, event = item
        if isinstance(event, EventValidationError | UnknownEventType):
            await self._park(event_id, type_, key, f"stored body does not parse: {event}")
            return 0.0
        try:
            with log_context(event_id=event_id, task_id=_task_id(key)):
                await self.handle(event)
        except asyncio.CancelledError:
            raise
        except NotLeader:
            # deposed (paused, then resumed): the event is the new leader's, never parked here;
            # this processor is stopped at the lease's next renewal (README "Production")
            log.warning(
                "event %s (%s) left to the leader: this process no longer leads", event_id, type_
            )
            return MAX_BACKOFF_SECONDS
        except Exception as exc:
            reason = permanent_reason(exc)
            if reason is not None:
                self._attempts.pop(event_id, None)
                log.error("event %s (%s) parked: %s: %r", event_id, type_, reason, exc)
                await self._park(event_id, type_, key, f"{reason}: {exc!r}")
                return 0.0
            self._streak += 1
            attempts = self._attempts.get(event_id, 0) + 1
            self._attempts[event_id] = attempts
            if attempts >= self.max_attempts:
                self._attempts.pop(event_id, None)
                log.error(
                    "event %s (%s) failed %d times, parked: %r", event_id, type_, attempts, exc
                )
                await self._park(event_id, type_, key, f"failed {attempts} times, last: {exc!r}")
                return 0.0
            delay = min(self.retry_base_seconds * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)
            log.warning(
                "event %s (%s) failed (%r); attempt %d/%d, retrying in %.1fs",
                event_id,
                type_,
                exc,
                attempts,
                self.max_attempts,
                delay,
            )
            return max(delay, 1e-6)
        self._streak = 0
        self._attempts.pop(event_id, None)
        self._handled.append(event_id)
        if marked_at_once(event):
            await self._mark_now()
        return 0.0

    async def _mark_now(self) -> None:
        """Mark the events handled so far at once (the last one posted a line): a crash later
        in the run must not post it again. A failed mark is left to the run's."""
        try:
            await self._flush_handled()
        except Exception:
            log.warning(
                "event processor: an early mark failed; retried with the run's", exc_info=True
            )

    async def _park(self, event_id: str, type_: str, key: str, reason: str) -> None:
        """Mark an event failed with the reason, audit it and count it."""
        reason = reason if len(reason) <= MAX_REASON_CHARS else reason[:MAX_REASON_CHARS] + "…"
        await self.store.mark_event_processed(event_id, error=reason)
        self.failed += 1  # counted once the mark is stored (a reader then sees it)
        try:
            await self.store.audit(
                actor_name="bridge",
                via="event",
                action="event.failed",
                outcome="failed",
                task_id=_task_id(key),
                request={"eventId": event_id, "type": type_},
                detail=reason,
            )
        except Exception:  # the event is marked; a lost audit line must not stop the queue
            log.exception("could not audit the failed event %s", event_id)
