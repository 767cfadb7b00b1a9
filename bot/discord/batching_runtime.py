"""Smart batching at run time: the adapter around :class:`batching.Batcher`.

A wave of routine approvals gets one batch message per kind instead of a message per task
(master plan §7), however large the group (README "Smart batching": pages of 20 with ◀ / ▶)::

    📋 5 tasks ready for review
    ✅ freshdesk (low risk, tests pass)
    ⚠️ stripe (med risk, 1 warning)
    ❌ ghl (high risk, 42 failures)
    [Pick an item…]  [Approve All Low-Risk (3)] [Review All]  [◀ Previous] [Next ▶]

What this module does (the rules themselves live in :mod:`batching`):

* :meth:`BatchingRuntime.offer` is the bridge's hook (``bridge.batcher``): a routine task
  (:func:`batching.batch_key` not ``None``) without a message is handed to the
  batcher and ``True`` is returned; anything else (critical, high, production) gets ``False``
  and the bridge posts it alone, at once.
* A wake-up loop calls :meth:`Batcher.tick` at :meth:`Batcher.next_wakeup`; one worker carries
  the actions out in order: ``PostSingle`` → :meth:`Bridge.post_single`; ``PostBatch`` → the
  batch message, then :meth:`Batcher.posted`, then every item's task row points at the message
  (``store.set_message(…, batch_id=…)``), is audited (``message.posted`` with the batch id) and
  its own escalation ladder is armed (``bridge.escalation.task_opened``); ``EditBatch`` → the
  item list is extended and the message re-rendered. A post re-reads its rows first: items
  decided or gone during the group wait are left out (reported with ``mark_decided``), and no
  message is posted when none is pending (:mod:`bot.discord.batch_pending`). An edit never drops
  a stored item (a retried older edit only adds what is missing).
* :meth:`BatchingRuntime.reconsider` (from ``Bridge.apply_factory_task``): a waiting task
  escalated to critical or high, or guarded, leaves its group and is posted alone at once.
* The batcher's :meth:`~Batcher.snapshot` is saved (``runtime_state`` row ``"batcher"``)
  after every change and *before* its actions are carried out; :meth:`start` restores it,
  confirms posts whose message was stored, re-issues the others, re-issues the edit of a
  posted batch showing an open task whose row has no message, and re-offers routine open
  tasks that have no message and that the batcher does not hold (a crash between a
  ``PostSingle`` and its post). Tasks that already have a message are never batched.
* What the message shows — its items re-read from the store, its pages (``show_page``), its
  re-renders (``refresh_batch``, through the notifier's edit queue) and "Approve All
  Low-Risk" over every page (``approve_low_risk``) — is the mixin
  :class:`bot.discord.batch_messages.BatchMessages`.
* :data:`MESSAGE_MAX_ITEMS` (10,000) bounds the item list a message stores and re-reads.

Channels the bot cannot use: an action Discord refuses with 10003 Unknown Channel, 50001 Missing
Access or 50013 Missing Permissions is not retried on the backoff below but parked and handed to
``bridge.access`` (:class:`bot.channel_access.ChannelAccess`: one alert per outage, ``/healthz``
down), which re-queues it every ``DISCORD_CHANNEL_RETRY_SECONDS`` (:meth:`BatchingRuntime.
retry_batch`); the first post or edit Discord accepts ends the outage. Other failures are
retried after 2, 4, … up to :data:`MAX_RETRY_SECONDS` seconds.

Pacing: batch messages go through the notifier's paced ``send`` (Discord: about 5 messages / 5 s
per channel); critical and high single messages are ``urgent`` there (the next free slot).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from batching import (
    Action,
    Batcher,
    BatchingPolicy,
    EditBatch,
    PostBatch,
    PostSingle,
    batch_key,
)
from bot.discord.batch_messages import MEMORY_LIMIT, BatchMessages, fingerprint
from bot.discord.batch_pending import leave_out, mark_decided, split_pending, unshown_edits
from bot.discord.batch_views import render_batch
from bot.discord.pacing import ChannelPacer
from bot.keyed import BoundedMap
from bot.message_faults import ChannelUnavailable
from bot.store import BatchRecord, TrackedTask

if TYPE_CHECKING:
    from bot.bridge import Bridge
    from bot.discord.notifier import DiscordNotifier

__all__ = ["MESSAGE_MAX_ITEMS", "STATE_KEY", "BatchingRuntime"]

log = logging.getLogger(__name__)

#: ``runtime_state`` key of the batcher's snapshot.
STATE_KEY = "batcher"

#: Most seconds between two attempts of an action that failed (Discord down, …).
MAX_RETRY_SECONDS = 60.0

#: Most items one batch message takes (shown in pages of 20): one message per group however
#: large the burst (README "Smart batching"); the bound only caps what a message stores and re-reads.
MESSAGE_MAX_ITEMS = 10_000


class BatchingRuntime(BatchMessages):
    """Runs smart batching for a bridge (started and stopped by ``bot.discord.cogs.BatchingCog``).

    Parameters
    ----------
    bridge : Bridge
        The bridge; this object becomes its ``batcher`` hook (done by the caller).
    notifier : DiscordNotifier
        Paced ``send`` and ``channel`` of the Discord side.
    policy : BatchingPolicy, optional
        Defaults to the settings: ``BATCH_GROUP_WAIT_SECONDS``,
        ``BATCH_GROUP_INTERVAL_SECONDS``, :data:`MESSAGE_MAX_ITEMS` items per message (pages
        of 20), edits coalesced per 2 s.
    post_pacer : ChannelPacer, optional
        Extra pacing of batch message creation per channel (default none: the notifier's
        shared pacer alone). Edits go through the notifier's edit queue
        (:mod:`bot.discord.edit_queue`), whose budget task messages share.
    """

    def __init__(
        self,
        bridge: Bridge,
        notifier: DiscordNotifier,
        *,
        policy: BatchingPolicy | None = None,
        post_pacer: ChannelPacer | None = None,
    ) -> None:
        settings = bridge.settings
        self.bridge = bridge
        self.store = bridge.store
        self.notifier = notifier
        self.policy = policy or BatchingPolicy(
            group_wait_seconds=settings.batch_group_wait_seconds,
            group_interval_seconds=settings.batch_group_interval_seconds,
            max_items=MESSAGE_MAX_ITEMS,
        )
        self.min_coverage_percent = settings.batch_min_coverage_percent
        self.channel_id = settings.discord_tasks_channel_id
        self.post_pacer = post_pacer  # None: the notifier's shared pacer alone (full rate)
        self._batcher = Batcher(self.policy)
        self._saved: dict[str, Any] | None = None
        self._lock = asyncio.Lock()
        self._queue: asyncio.Queue[Action] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False  # the timer ends on it too (see stop)
        self._renders: dict[str, asyncio.Task[None]] = {}  # only while a render runs
        self._dirty: set[str] = set()
        # bounded: memory must not grow with every task ever seen (forgetting costs at most
        # one more edit, or one more idempotent mark_decided)
        self._shown: BoundedMap[int, str] = BoundedMap(MEMORY_LIMIT)
        self._pages: BoundedMap[str, int] = BoundedMap(MEMORY_LIMIT)
        self._notices: dict[str, str] = {}  # undecided items only
        self._marked: BoundedMap[str, None] = BoundedMap(MEMORY_LIMIT)
        # ids in actions queued or being carried out, until their rows point at a message:
        # the batcher forgets a task once its message is emitted, so a second sighting of
        # the task (reconciliation, a redelivery) in that window must not batch it again
        self._unattached: set[str] = set()
        self._attempts: dict[Action, int] = {}
        # batch id → its actions refused by the channel, re-queued by bridge.access's retries
        self._parked: dict[str, list[Action]] = {}
        self._unreposted: dict[str, tuple[int, str, int]] = {}
        self._owed: dict[str, tuple[int, str]] = {}  # reposts not made yet, as stored
        self._reposts: set[asyncio.Task[None]] = set()  # retries of failed reposts

    @property
    def clock(self) -> Callable[[], datetime]:
        """The bridge's clock (aware UTC)."""
        return self.bridge.clock

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Restore the batcher's state, repair what a crash left, start the loops."""
        data = await self.store.load_state(STATE_KEY)
        if data is not None:
            try:
                self._batcher = Batcher.from_snapshot(data, self.policy)
            except ValueError as exc:
                log.error("batcher snapshot unreadable, starting empty: %s", exc)
                self._batcher = Batcher(self.policy)
        self._saved = self._batcher.snapshot()
        # posted already → confirmed, else re-posted
        self._enqueue(self._batcher.unconfirmed_posts())
        self._enqueue(await unshown_edits(self.store, self._batcher))
        held = self._held_ids()
        self._stopping = False
        self._tasks = [
            asyncio.create_task(self._timer(), name="batching-timer"),
            asyncio.create_task(self._worker(), name="batching-worker"),
        ]
        await self.resume_owed_reposts()
        # only the tasks without a message are read (not every open task: bench/ladders.py)
        for tracked in await self.store.open_tasks_without_message():
            if (
                tracked.task_id not in held
                and not tracked.has_message
                and tracked.inflight_decision is None
                and batch_key(tracked.task) is not None
            ):
                await self.offer(tracked)

    async def stop(self) -> None:
        """Stop the loops and repost retries (state is saved; pending actions are redone at
        start). On Python 3.11 ``asyncio.wait_for`` drops a cancellation that arrives as the
        wait it guards completes (a wake-up set just before the stop): the timer also ends
        on ``_stopping``, so the stop cannot hang. The caller's own cancellation is not
        swallowed (``asyncio.wait`` collects the loops' outcomes)."""
        self._stopping = True
        tasks = [*self._tasks, *self._renders.values(), *self._reposts]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._tasks = []
        self._renders = {}

    def _held_ids(self) -> set[str]:
        snap = self._batcher.snapshot()
        held: set[str] = set()
        for group in snap["groups"]:
            held.update(group["task_ids"])
        for batch in snap["batches"]:
            held.update(batch["shown"])
            held.update(batch["added"])
        return held

    # ------------------------------------------------------------------ bridge hooks
    async def offer(self, tracked: TrackedTask) -> bool:
        """Take a routine task for batching (``True``), or leave it to be posted alone.

        Parameters
        ----------
        tracked : TrackedTask
            A task the bridge is about to show.

        Returns
        -------
        bool
            ``True`` when the batcher holds the task (or it is being posted already);
            ``False`` for critical, high and production tasks (posted at once by the bridge),
            and for a task that already has a message.
        """
        key = batch_key(tracked.task, guarded=tracked.guarded)
        if key is None and self._batcher.holds(tracked.task_id):  # became a deploy or urgent
            await self.reconsider(tracked)  # out of its group (the bridge posts it alone)
        if key is None or tracked.has_message or tracked.is_decided:
            return False
        if tracked.task_id in self._unattached:
            return True  # on its way to a message
        await self._apply(lambda b, now: b.add(tracked.task_id, key, now))
        return True

    def holds(self, task_id: str) -> bool:
        """Whether the task waits for its group, is on its way to a batch message, or is an
        item of one (the ladder leaves a task waiting for its message alone until then)."""
        return self._batcher.holds(task_id) or task_id in self._unattached

    async def reconsider(self, tracked: TrackedTask) -> None:
        """A known task changed: one waiting for its group that must now be posted alone
        (escalated to critical or high, or guarded: README "Smart batching") leaves the batcher
        and is posted at once (:meth:`Batcher.remove`).

        Parameters
        ----------
        tracked : TrackedTask
            The task as just stored.
        """
        if tracked.has_message or tracked.is_decided:
            return
        if batch_key(tracked.task, guarded=tracked.guarded) is None:
            await self._apply(lambda b, now: b.remove(tracked.task_id, now))

    # ------------------------------------------------------------------ state machine
    async def _apply(
        self, step: Callable[[Batcher, datetime], list[Action]], *, wake: bool = True
    ) -> list[Action]:
        """Run one batcher call, save the snapshot if it changed, then queue the actions.

        ``wake`` makes the timer re-read :meth:`Batcher.next_wakeup` (not needed from the
        timer itself).
        """
        async with self._lock:
            actions = step(self._batcher, self.clock())
            snapshot = self._batcher.snapshot()
            if snapshot != self._saved:
                await self.store.save_state(STATE_KEY, snapshot)
                self._saved = snapshot
        self._enqueue(actions)
        if wake:
            self._wake.set()
        return actions

    def _enqueue(self, actions: Sequence[Action]) -> None:
        for action in actions:
            if isinstance(action, PostSingle):
                self._unattached.add(action.task_id)
            else:
                self._unattached.update(action.task_ids)
            self._queue.put_nowait(action)

    async def _timer(self) -> None:
        """Call ``tick`` at ``next_wakeup`` (or sooner, when something changed)."""
        while not self._stopping:
            self._wake.clear()
            try:
                await self._apply(lambda b, now: b.tick(now), wake=False)
            except Exception:
                log.exception("batcher tick failed")
            wakeup = self._batcher.next_wakeup()
            timeout = None
            if wakeup is not None:
                timeout = max(0.01, (wakeup - self.clock()).total_seconds())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _worker(self) -> None:
        """Carry out the batcher's actions one at a time, in order; retry failures."""
        while True:
            action = await self._queue.get()
            try:
                await self._carry_out(action)
                self._attempts.pop(action, None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, ChannelUnavailable) and await self._park(action, exc):
                    continue
                attempt = self._attempts.get(action, 0) + 1
                self._attempts[action] = attempt
                delay = min(MAX_RETRY_SECONDS, 2.0**attempt)
                log.warning("batching: %s failed (%s); retry in %.0fs", action, exc, delay)
                with contextlib.suppress(Exception):
                    await self.store.audit(
                        actor_name="system",
                        via="system",
                        action=f"batch.{type(action).__name__}",
                        outcome="failed",
                        batch_id=getattr(action, "batch_id", None),
                        task_id=getattr(action, "task_id", None),
                        detail=f"{exc!r}; retry {attempt} in {delay:.0f}s",
                    )
                asyncio.get_running_loop().call_later(delay, self._queue.put_nowait, action)

    async def _park(self, action: Action, fault: ChannelUnavailable) -> bool:
        """Hold ``action`` until ``bridge.access`` retries its batch (:meth:`retry_batch`);
        ``False`` when there is no :class:`~bot.channel_access.ChannelAccess` (the backoff
        retries it then)."""
        batch_id = getattr(action, "batch_id", None)
        if self.bridge.access is None or batch_id is None:
            return False
        self._attempts.pop(action, None)
        parked = self._parked.setdefault(batch_id, [])
        if action not in parked:
            parked.append(action)
        log.warning("batching: %s waits for the channel: %s", action, fault.reason)
        await self.channel_lost(fault, batch_id)
        return True

    async def retry_batch(self, batch_id: str) -> None:
        """``bridge.access``'s retry of a batch waiting for its channel: its parked actions go
        back to the worker; else a refused repost is tried again; else its message is edited
        again. Each reports back to ``bridge.access`` (refused again, or accepted)."""
        parked = self._parked.pop(batch_id, [])
        for action in parked:
            self._queue.put_nowait(action)
        if parked:
            return
        unreposted = self._unreposted.get(batch_id)
        if unreposted is not None:
            await self.repost(batch_id, unreposted[0], why=unreposted[1])
            return
        record = await self.store.get_batch(batch_id)
        if record is None or record.message_id is None:
            if self.bridge.access is not None:
                self.bridge.access.forget(batch_id=batch_id)
            return
        await self.refresh_batch(batch_id)

    async def _carry_out(self, action: Action) -> None:
        log.debug("batching: %s", action)
        if isinstance(action, PostSingle):
            await self._post_single(action.task_id)
        elif isinstance(action, PostBatch):
            await self._post_batch(action)
        elif isinstance(action, EditBatch):
            await self._edit_batch(action)

    async def _post_single(self, task_id: str) -> None:
        tracked = await self.store.get_task(task_id)
        if tracked is not None and not tracked.is_decided and not tracked.has_message:
            await self.bridge.post_single(tracked)
        self._unattached.discard(task_id)

    async def _post_batch(self, action: PostBatch) -> None:
        record = await self.store.get_batch(action.batch_id)
        if record is None or record.message_id is None:
            alone: list[str] = []  # posted single: on its way to a message still (holds)
            if not (task_ids := await self._still_pending(action, alone)):  # all decided
                self._unattached.difference_update(set(action.task_ids) - set(alone))
                return
            await self.store.save_batch(action.batch_id, action.key, task_ids)
            record = await self.store.get_batch(action.batch_id)
            assert record is not None
            rendered = render_batch(action.batch_id, await self._items_of(record))
            if self.post_pacer is not None:
                await self.post_pacer.acquire(self.channel_id)
            message = await self.post_in(self.channel_id, None, **rendered)
            await self.store.set_batch_message(action.batch_id, self.channel_id, message.id)
            await self.channel_reached(self.channel_id, action.batch_id)
            log.info(
                "batch %s posted: %d items, message %s", action.batch_id, len(task_ids), message.id
            )
            self._shown[message.id] = fingerprint(rendered)
            record = await self.store.get_batch(action.batch_id)
            assert record is not None and record.message_id is not None
        channel_id, message_id = record.channel_id, record.message_id
        assert channel_id is not None
        # the rows point at the message before the batcher hears of it: a crash in between
        # leaves an unconfirmed post, confirmed at the next start from the stored message
        attached = await self._point(record, record.task_ids)
        self._unattached.difference_update(action.task_ids)
        await self._apply(
            lambda b, now: b.posted(action.batch_id, f"{channel_id}/{message_id}", now)
        )
        await self._opened(record, attached)
        gone = self.bridge.deleted_before_recorded(message_id)
        if gone is not None:  # deleted before it was recorded
            await self.repost(action.batch_id, message_id, why=gone)

    async def _still_pending(self, action: PostBatch, alone: list[str]) -> tuple[str, ...]:
        """The items of a post still pending (those decided or gone during the group wait left
        out, reported to the batcher); ``()``: no post (``alone`` gets a task posted single)."""
        pending, left_out = await split_pending(self.store, action)
        if not left_out:
            return action.task_ids
        skip: list[bool] = []
        await self._apply(leave_out(action, left_out, skip=skip, alone=alone))
        for task_id in left_out:
            self._marked[task_id] = None
        # none pending but additions wait for the message: it is posted (they need it)
        return () if skip[-1] else tuple(pending) or action.task_ids

    async def _edit_batch(self, action: EditBatch) -> None:
        """Add the edit's new items to the message. Items already stored are never dropped: a
        retried edit may be older than one carried out meanwhile. A new item decided before it
        was ever shown is left out (nothing to ask anyone)."""
        record = await self.store.get_batch(action.batch_id)
        stored = () if record is None else record.task_ids
        new = [t for t in action.task_ids if t not in stored]
        rows = await self.store.tasks_by_ids(new)
        kept = {r.task_id for r in rows if not r.is_decided}
        if dropped := [t for t in new if t not in kept]:  # never shown: the batch forgets them
            await self._apply(mark_decided(dropped))
        task_ids = (*stored, *(t for t in new if t in kept))
        if task_ids != stored:
            await self.store.save_batch(action.batch_id, action.key, task_ids)
        record = await self.store.get_batch(action.batch_id)
        if record is None or record.message_id is None:
            return  # not posted yet: the post shows every item
        await self.refresh_batch(action.batch_id)
        pointed = tuple(t for t in action.task_ids if t in task_ids)
        await self._opened(record, await self._point(record, pointed))
        self._unattached.difference_update(action.task_ids)

    async def _point(self, record: BatchRecord, task_ids: tuple[str, ...]) -> list[str]:
        """Point each item's task row at the batch message; return the rows changed.

        A row that already has a message is never changed (compare-and-set: a task is never
        moved between messages). Done for all items first, so that the window in which an item
        is shown but its row does not know it yet stays short.
        """
        assert record.channel_id is not None and record.message_id is not None
        attached: list[str] = []
        for task_id in task_ids:
            if await self.store.adopt_message(
                task_id, record.channel_id, record.message_id, record.batch_id
            ):
                attached.append(task_id)
        self._unattached.difference_update(task_ids)
        return attached

    async def _opened(self, record: BatchRecord, attached: list[str]) -> None:
        """Audit each newly shown item (with the batch id) and arm its own escalation ladder."""
        decided = False
        for task_id in attached:
            await self.store.audit(
                actor_name="system",
                via="event",
                action="message.posted",
                outcome="ok",
                task_id=task_id,
                batch_id=record.batch_id,
                detail=f"batch message {record.message_id} in channel {record.channel_id}",
            )
            fresh = await self.store.get_task(task_id)
            if fresh is None:
                continue
            if fresh.is_decided:
                decided = True
            else:
                await self.bridge.escalation.task_opened(fresh)
        if decided:
            await self.refresh_batch(record.batch_id)
