"""Smart batching at run time: the adapter around :class:`batching.Batcher`.

A factory finishing a wave of builds raises dozens of routine approvals in a minute; instead of
a message per task the bridge posts one batch message per kind (master plan §7)::

    📋 5 tasks ready for review
    ✅ freshdesk (low risk, tests pass)
    ⚠️ stripe (med risk, 1 warning)
    ❌ ghl (high risk, 42 failures)
    [Pick an item…]  [Approve All Low-Risk (3)] [Review All]

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
  item list is extended and the message re-rendered.
* The batcher's :meth:`~Batcher.snapshot` is saved (``runtime_state`` row ``"batcher"``)
  after every change and *before* its actions are carried out; :meth:`start` restores it,
  confirms posts whose message was stored, re-issues the others, and re-offers routine open
  tasks that have no message and that the batcher does not hold (a crash between a
  ``PostSingle`` and its post). Tasks that already have a message are never batched.
* :meth:`refresh_batch` (called by the notifier when a batched task changed) re-renders the
  message from the store, coalesced per message (one render at a time, at most one more queued)
  and paced per channel (Discord: about 5 edits / 5 s per channel); decided items are reported
  to the batcher so a fully decided message closes.
* :meth:`approve_low_risk` is "Approve All Low-Risk": the items that are low risk and pending
  at the moment of the click, the same role check per item, a compare-and-set "decision in
  flight" per item, then ONE ``POST /v1/tasks/bulk``; per-item results are confirmed, audited
  (one entry per item, sharing the batch id) and shown on the message. The protocol is the
  bridge's, written once (:meth:`bot.actions.Actions.approve_bulk`); this module picks the
  items and keeps the message.

Pacing: batch messages are created through the notifier's paced ``send`` (Discord: about 5
messages / 5 s per channel), at the full rate; critical and high single messages are ``urgent``
there and take the next free slot instead of queuing behind a burst's batch messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import discord

from batching import (
    Action,
    Batcher,
    BatchingPolicy,
    EditBatch,
    PostBatch,
    PostSingle,
    batch_key,
)
from bot.discord.batch_embeds import BatchItem, batch_items
from bot.discord.batch_repost import repost_batch
from bot.discord.batch_views import render_batch
from bot.discord.pacing import ChannelPacer
from bot.keyed import BoundedMap
from bot.outcomes import BULK_NONE_PENDING, Actor, Outcome
from bot.store import BatchRecord, TrackedTask
from escalation.markup import inline_text

if TYPE_CHECKING:
    from bot.bridge import Bridge
    from bot.discord.notifier import DiscordNotifier

__all__ = ["STATE_KEY", "BatchingRuntime"]

log = logging.getLogger(__name__)

#: ``runtime_state`` key of the batcher's snapshot.
STATE_KEY = "batcher"

#: Most seconds between two attempts of an action that failed (Discord down, …).
MAX_RETRY_SECONDS = 60.0

#: Most batch messages (and decided items) whose last render is remembered.
MEMORY_LIMIT = 4096


def _fingerprint(rendered: dict[str, Any]) -> str:
    embed = rendered.get("embed")
    view = rendered.get("view")
    return json.dumps(
        [embed.to_dict() if embed else None, view.to_components() if view else None],
        sort_keys=True,
        default=str,
    )


class BatchingRuntime:
    """Runs smart batching for a bridge (started and stopped by ``bot.discord.cogs.BatchingCog``).

    Parameters
    ----------
    bridge : Bridge
        The bridge; this object becomes its ``batcher`` hook (done by the caller).
    notifier : DiscordNotifier
        Paced ``send`` and ``channel`` of the Discord side.
    policy : BatchingPolicy, optional
        Defaults to the settings: ``BATCH_GROUP_WAIT_SECONDS``,
        ``BATCH_GROUP_INTERVAL_SECONDS``, 20 items per message, edits coalesced per 2 s.
    post_pacer, edit_pacer : ChannelPacer, optional
        Pacing of batch message creation (default 4 per 5 s + 0.25 s margin) and of edits
        (default 5 per 5 s + 0.25 s margin), per channel.
    """

    def __init__(
        self,
        bridge: Bridge,
        notifier: DiscordNotifier,
        *,
        policy: BatchingPolicy | None = None,
        post_pacer: ChannelPacer | None = None,
        edit_pacer: ChannelPacer | None = None,
    ) -> None:
        settings = bridge.settings
        self.bridge = bridge
        self.store = bridge.store
        self.notifier = notifier
        self.policy = policy or BatchingPolicy(
            group_wait_seconds=settings.batch_group_wait_seconds,
            group_interval_seconds=settings.batch_group_interval_seconds,
        )
        self.min_coverage_percent = settings.batch_min_coverage_percent
        self.channel_id = settings.discord_tasks_channel_id
        self.post_pacer = post_pacer  # None: the notifier's shared pacer alone (full rate)
        self.edit_pacer = edit_pacer or ChannelPacer(max_messages=5, safety_margin=0.25)
        self._batcher = Batcher(self.policy)
        self._saved: dict[str, Any] | None = None
        self._lock = asyncio.Lock()
        self._queue: asyncio.Queue[Action] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._renders: dict[str, asyncio.Task[None]] = {}  # only while a render runs
        self._dirty: set[str] = set()
        # bounded: memory must not grow with every task ever seen (forgetting costs at most
        # one more edit, or one more idempotent mark_decided)
        self._shown: BoundedMap[int, str] = BoundedMap(MEMORY_LIMIT)
        self._notices: dict[str, str] = {}  # undecided items only
        self._marked: BoundedMap[str, None] = BoundedMap(MEMORY_LIMIT)
        # ids in actions queued or being carried out, until their rows point at a message:
        # the batcher forgets a task once its message is emitted, so a second sighting of
        # the task (reconciliation, a redelivery) in that window must not batch it again
        self._unattached: set[str] = set()
        self._attempts: dict[Action, int] = {}

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
        held = self._held_ids()
        self._tasks = [
            asyncio.create_task(self._timer(), name="batching-timer"),
            asyncio.create_task(self._worker(), name="batching-worker"),
        ]
        for tracked in await self.store.open_tasks():
            if (
                tracked.task_id not in held
                and not tracked.has_message
                and tracked.inflight_decision is None
                and batch_key(tracked.task) is not None
            ):
                await self.offer(tracked)

    async def stop(self) -> None:
        """Stop the loops (state is already saved; pending actions are redone at start)."""
        for task in (*self._tasks, *self._renders.values()):
            task.cancel()
        for task in (*self._tasks, *self._renders.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
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
        if key is None or tracked.has_message or tracked.is_decided:
            return False
        if tracked.task_id in self._unattached:
            return True  # on its way to a message
        await self._apply(lambda b, now: b.add(tracked.task_id, key, now))
        return True

    async def refresh_batch(self, batch_id: str) -> None:
        """Re-render a batch message from the store (coalesced and paced per message).

        Returns once a render that started after this call has finished; Discord errors are
        logged, never raised to the caller (the decision itself already stands).
        """
        self._dirty.add(batch_id)
        task = self._renders.get(batch_id)
        if task is None or task.done():
            task = asyncio.create_task(self._render_loop(batch_id), name=f"render-{batch_id}")
            self._renders[batch_id] = task
            task.add_done_callback(functools.partial(self._render_done, batch_id))
        await asyncio.shield(task)

    def _render_done(self, batch_id: str, task: asyncio.Task[None]) -> None:
        """Forget a finished render loop (the next refresh starts a new one)."""
        if self._renders.get(batch_id) is task:
            del self._renders[batch_id]

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
        while True:
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
            await self.store.save_batch(action.batch_id, action.key, action.task_ids)
            record = await self.store.get_batch(action.batch_id)
            assert record is not None
            rendered = render_batch(action.batch_id, await self._items_of(record))
            if self.post_pacer is not None:
                await self.post_pacer.acquire(self.channel_id)
            message = await self.notifier.send(self.channel_id, **rendered)
            await self.store.set_batch_message(action.batch_id, self.channel_id, message.id)
            log.info(
                "batch %s posted with %d items (message %s)",
                action.batch_id,
                len(action.task_ids),
                message.id,
            )
            self._shown[message.id] = _fingerprint(rendered)
            record = await self.store.get_batch(action.batch_id)
            assert record is not None and record.message_id is not None
        channel_id, message_id = record.channel_id, record.message_id
        assert channel_id is not None
        # the rows point at the message before the batcher hears of it: a crash in between
        # leaves an unconfirmed post, confirmed at the next start from the stored message
        attached = await self._point(record, action.task_ids)
        await self._apply(
            lambda b, now: b.posted(action.batch_id, f"{channel_id}/{message_id}", now)
        )
        await self._opened(record, attached)
        gone = self.bridge.deleted_before_recorded(message_id)
        if gone is not None:  # deleted before it was recorded
            await self.repost(action.batch_id, message_id, why=gone)

    async def _edit_batch(self, action: EditBatch) -> None:
        await self.store.save_batch(action.batch_id, action.key, action.task_ids)
        record = await self.store.get_batch(action.batch_id)
        if record is None or record.message_id is None:
            return  # not posted yet: the post shows every item
        await self.refresh_batch(action.batch_id)
        await self._opened(record, await self._point(record, action.task_ids))

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

    # ------------------------------------------------------------------ rendering
    async def _items_of(self, record: BatchRecord) -> list[BatchItem]:
        tracked = [
            t
            for t in await self.store.tasks_by_ids(record.task_ids)
            if not t.has_message or t.message_id == record.message_id
        ]
        return batch_items(
            tracked, min_coverage_percent=self.min_coverage_percent, notices=self._notices
        )

    async def items(self, batch_id: str) -> list[BatchItem]:
        """The items of a batch message, with their current state and risk ([] if unknown)."""
        record = await self.store.get_batch(batch_id)
        return [] if record is None else await self._items_of(record)

    async def item(self, task_id: str) -> BatchItem | None:
        """One task as a batch item (risk, notice), or ``None`` when unknown."""
        tracked = await self.store.get_task(task_id)
        if tracked is None:
            return None
        return batch_items(
            [tracked], min_coverage_percent=self.min_coverage_percent, notices=self._notices
        )[0]

    async def _render_loop(self, batch_id: str) -> None:
        while batch_id in self._dirty:
            self._dirty.discard(batch_id)
            try:
                await self._render_once(batch_id)
            except Exception:
                log.exception("could not re-render batch %s", batch_id)

    async def _render_once(self, batch_id: str) -> None:
        record = await self.store.get_batch(batch_id)
        if record is None or record.channel_id is None or record.message_id is None:
            return
        items = await self._items_of(record)
        newly_decided = [
            i.task_id for i in items if i.tracked.is_decided and i.task_id not in self._marked
        ]
        if newly_decided:

            def mark(b: Batcher, now: datetime) -> list[Action]:
                actions: list[Action] = []
                for task_id in newly_decided:
                    actions.extend(b.mark_decided(task_id, now))
                return actions

            await self._apply(mark)
            for task_id in newly_decided:
                self._marked[task_id] = None
                self._notices.pop(task_id, None)
        rendered = render_batch(batch_id, items)
        log.debug("batching: render %s with %d items", batch_id, len(items))
        fingerprint = _fingerprint(rendered)
        if self._shown.get(record.message_id) == fingerprint:
            return
        slot = await self.edit_pacer.acquire(record.channel_id)
        message = self.notifier.channel(record.channel_id).get_partial_message(record.message_id)
        try:
            await message.edit(**rendered)
        except discord.NotFound as exc:
            if exc.code != 10008:
                raise
            await self.repost(batch_id, record.message_id, why="edit answered Unknown Message")
            return
        finally:
            self.edit_pacer.mark_sent(slot)
        self._shown[record.message_id] = fingerprint

    async def repost(self, batch_id: str, message_id: int, *, why: str) -> None:
        """The batch's message ``message_id`` is gone: post it again while an item needs a
        decision (:func:`bot.discord.batch_repost.repost_batch`)."""
        await repost_batch(self, batch_id, message_id, why=why)

    # ------------------------------------------------------------------ Approve All Low-Risk
    async def approve_low_risk(
        self, batch_id: str, actor: Actor, *, idempotency_seed: str
    ) -> Outcome:
        """Approve, in ONE ``POST /v1/tasks/bulk``, the items low risk and pending right now.

        The exactly-once protocol is the bridge's (:meth:`bot.actions.Actions.approve_bulk`):
        the same role check per item, a compare-and-set "decision in flight" per item, one
        request, per-item results confirmed and audited with the batch id. This method picks
        the items, keeps each item's notice on the message and re-renders it.

        Parameters
        ----------
        batch_id : str
            The batch message's id.
        actor : Actor
            Who clicked; every item gets the single-message role check
            (:meth:`Bridge.refusal_for`).
        idempotency_seed : str
            Stable per click (the interaction id): derives the bulk ``Idempotency-Key`` and
            each item's in-flight key (contract §7.1).

        Returns
        -------
        Outcome
            ``done`` when at least one item was approved (the message lists any per-item
            failure too); ``refused`` for a member without the role; ``conflict`` when no
            low-risk item is pending; ``failed`` when the factory refused or stayed
            unreachable (nothing is shown as approved; the button stays live);
            ``unknown`` for an unknown batch.
        """
        record = await self.store.get_batch(batch_id)
        if record is None:
            return Outcome("unknown", "This batch is not known to the bridge.")
        low = [i.tracked for i in await self._items_of(record) if i.approvable_low]
        if not low:
            return Outcome("conflict", BULK_NONE_PENDING)
        result = await self.bridge.approve_bulk(
            low, actor, idempotency_seed=idempotency_seed, batch_id=batch_id
        )
        for tracked in result.approved:
            self._notices.pop(tracked.task_id, None)
        for failure in result.failures:
            if failure.kind == "failed":
                self._notices[failure.tracked.task_id] = (
                    f"⚠️ approval failed: {inline_text(failure.error, 300)}"
                )
            elif failure.kind == "unreported":
                self._notices[failure.tracked.task_id] = "⚠️ approval not confirmed by the factory"
        if result.sent:
            await self.refresh_batch(batch_id)
        return result.outcome
