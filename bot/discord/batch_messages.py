"""The batch message itself: its items read from the store, its pages, its edits, its bulk button.

Split out of :mod:`bot.discord.batching_runtime` (which decides *when* batch messages are posted
and extended); :class:`BatchMessages` is a mixin of :class:`~bot.discord.batching_runtime.
BatchingRuntime` and keeps what a batch message *shows*:

* **Pages.** A batch group is ONE message however large (README "Smart batching"), shown in pages of 20 items
  (:data:`bot.discord.batch_embeds.PAGE_SIZE`). :meth:`BatchMessages.show_page` is the ◀ / ▶
  click: it renders the page from the store and records it as the page the message shows
  (``runtime_state`` row ``batch-page:<batch id>``), so that later re-renders keep it, after a
  restart too; the buttons carry the batch id and the page, so they work across restarts.
* **Edits.** :meth:`BatchMessages.refresh_batch` re-renders the message from the store,
  coalesced per message (one render at a time, at most one more queued), through the
  notifier's edit queue (:mod:`bot.discord.edit_queue`: latest render only, the channel's edit
  budget shared with task messages). Decided items are reported to the batcher so that a fully
  decided message closes. 10008 Unknown Message, or 10003 Unknown Channel (the message went
  with its channel) → the batch is posted again in the tasks channel configured now
  (:func:`bot.discord.batch_repost.repost_batch`).
* **Channels the bot cannot use.** A batch message refused by Discord (50001 Missing Access,
  50013 Missing Permissions; 10003 for a new message) is handled as a task message is
  (:class:`bot.channel_access.ChannelAccess`, ``bridge.access``): one alert per outage,
  ``/healthz`` down, the post / edit / repost retried every ``DISCORD_CHANNEL_RETRY_SECONDS``
  (:meth:`BatchMessages.retry_batch`), and only a request Discord accepted ends the outage.
* **Approve All Low-Risk** (:meth:`BatchMessages.approve_low_risk`): the items low risk and
  pending at the click, on EVERY page, in one bulk approval through
  :meth:`bot.actions.Actions.approve_bulk` (the exactly-once protocol, unchanged).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import discord

from batching import Action, Batcher
from bot.discord.batch_embeds import UNCONFIRMED_NOTICE, BatchItem, batch_items, clamp_page
from bot.discord.batch_pending import mark_decided
from bot.discord.batch_repost import repost_batch
from bot.discord.batch_views import render_batch
from bot.keyed import BoundedMap
from bot.message_faults import CHANNEL_FAULT_CODES, ChannelUnavailable, MessageGone
from bot.outcomes import BULK_NONE_PENDING, Actor, Outcome
from bot.store import BatchRecord, Store
from escalation.markup import inline_text

if TYPE_CHECKING:
    from bot.bridge import Bridge
    from bot.discord.notifier import DiscordNotifier

__all__ = [
    "MAX_REPOST_RETRY_SECONDS",
    "MEMORY_LIMIT",
    "PAGE_STATE_PREFIX",
    "REPOSTS_STATE_KEY",
    "BatchMessages",
    "fingerprint",
]

log = logging.getLogger(__name__)

#: Most batch messages (and decided items) whose last render / page is remembered.
MEMORY_LIMIT = 4096

#: ``runtime_state`` key prefix of the page a batch message shows (``batch-page:<batch id>``).
PAGE_STATE_PREFIX = "batch-page:"

#: Longest wait, in seconds, between two tries of a repost that failed for a reason other
#: than the channel (the delays double from 2 s).
MAX_REPOST_RETRY_SECONDS = 60.0

#: ``runtime_state`` key of the reposts not made yet (batch id → [lost message id, why]):
#: one still failing when the bridge stops, or interrupted by a crash, is made at the next
#: start. Nothing else would show its items again: they point at the deleted message.
REPOSTS_STATE_KEY = "batch-reposts"


def fingerprint(rendered: dict[str, Any]) -> str:
    """A comparable text of a rendered batch message (embed and components)."""
    embed = rendered.get("embed")
    view = rendered.get("view")
    return json.dumps(
        [embed.to_dict() if embed else None, view.to_components() if view else None],
        sort_keys=True,
        default=str,
    )


class BatchMessages:
    """What a batch message shows: items, pages, edits, Approve All Low-Risk (a mixin).

    The class using it sets the attributes below in its ``__init__`` (see
    :class:`bot.discord.batching_runtime.BatchingRuntime`) and provides ``_apply``.
    """

    bridge: Bridge
    store: Store
    notifier: DiscordNotifier
    min_coverage_percent: float
    _renders: dict[str, asyncio.Task[None]]
    _dirty: set[str]
    _shown: BoundedMap[int, str]
    _pages: BoundedMap[str, int]
    _notices: dict[str, str]
    _marked: BoundedMap[str, None]
    #: batch id → (its lost message's id, why, failed attempts) while a repost is retried
    _unreposted: dict[str, tuple[int, str, int]]
    #: batch id → (its lost message's id, why) of each repost not made yet, as stored
    _owed: dict[str, tuple[int, str]]
    _reposts: set[asyncio.Task[None]]
    _stopping: bool
    channel_id: int

    async def _apply(
        self, step: Callable[[Batcher, datetime], list[Action]], *, wake: bool = True
    ) -> list[Action]:
        raise NotImplementedError

    async def retry_batch(self, batch_id: str) -> None:
        """Post, repost or edit the batch's message again (the channel may be usable again)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ channel outages
    async def post_in(self, channel_id: int, content: str | None, **rendered: Any) -> Any:
        """Create a batch message in ``channel_id`` (paced: the notifier's ``send``).

        Returns
        -------
        discord.Message
            The message Discord created.

        Raises
        ------
        bot.message_faults.ChannelUnavailable
            Discord answered 10003 Unknown Channel, 50001 Missing Access or 50013 Missing
            Permissions (Discord: JSON error codes).
        discord.HTTPException
            Any other refusal.
        """
        try:
            return await self.notifier.send(channel_id, content, **rendered)
        except discord.HTTPException as exc:
            if exc.code in CHANNEL_FAULT_CODES:
                raise self.notifier.channel_fault(channel_id, exc) from exc
            raise

    async def channel_lost(self, fault: ChannelUnavailable, batch_id: str) -> None:
        """Discord refused a post, edit or repost of the batch's message: ``bridge.access``
        alerts (once per outage) and retries it with :meth:`retry_batch`; logged only when
        the bridge has no :class:`~bot.channel_access.ChannelAccess`."""
        access = self.bridge.access
        if access is None:
            log.warning("batch %s: %s (Discord %s)", batch_id, fault.reason, fault.code)
            return
        retry = functools.partial(self.retry_batch, batch_id)
        await access.lost(fault, batch_id=batch_id, retry=retry)

    async def channel_reached(self, channel_id: int, batch_id: str) -> None:
        """Discord accepted a post or edit of the batch's message in ``channel_id``."""
        if self.bridge.access is not None:
            await self.bridge.access.reached(channel_id, batch_id=batch_id)

    # ------------------------------------------------------------------ reading
    async def _items_of(self, record: BatchRecord) -> list[BatchItem]:
        tracked = [
            t
            for t in await self.store.tasks_by_ids(record.task_ids)
            if not t.has_message or t.message_id == record.message_id
        ]
        return batch_items(
            tracked,
            min_coverage_percent=self.min_coverage_percent,
            notices=self._notices,
            now=self.bridge.clock(),
        )

    async def items(self, batch_id: str) -> list[BatchItem]:
        """The items of a batch message (every page), with their current state and risk ([] if
        unknown)."""
        record = await self.store.get_batch(batch_id)
        return [] if record is None else await self._items_of(record)

    async def item(self, task_id: str) -> BatchItem | None:
        """One task as a batch item (risk, notice), or ``None`` when unknown."""
        tracked = await self.store.get_task(task_id)
        if tracked is None:
            return None
        return batch_items(
            [tracked],
            min_coverage_percent=self.min_coverage_percent,
            notices=self._notices,
            now=self.bridge.clock(),
        )[0]

    async def page_of(self, batch_id: str) -> int:
        """The page (0-based) the batch message shows: remembered, else read from the store
        (a click before a restart), else the first."""
        page = self._pages.get(batch_id)
        if page is None:
            saved = await self.store.load_state(PAGE_STATE_PREFIX + batch_id)
            raw = saved.get("page") if saved else None
            page = raw if isinstance(raw, int) and raw >= 0 else 0
            self._pages[batch_id] = page
        return page

    async def show_page(self, batch_id: str, page: int) -> dict[str, Any] | None:
        """The ◀ / ▶ click: render ``page`` (0-based, clamped) of the batch from the store and
        keep it as the page the message shows.

        Parameters
        ----------
        batch_id : str
            The batch (from the button's custom_id).
        page : int
            The page asked for; a page past the end shows the last one.

        Returns
        -------
        dict or None
            ``embed`` and ``view`` for the message (the caller edits it through the
            interaction); ``None`` for a batch the store does not know.
        """
        record = await self.store.get_batch(batch_id)
        if record is None:
            return None
        items = await self._items_of(record)
        page = clamp_page(page, len(items))
        if await self.page_of(batch_id) != page:
            await self.store.save_state(PAGE_STATE_PREFIX + batch_id, {"page": page})
        self._pages[batch_id] = page
        rendered = render_batch(batch_id, items, page)
        if record.message_id is not None and record.channel_id is not None:
            # the click shows this render: a queued edit of an older page must not follow it
            self.notifier.edits.withdraw(record.channel_id, record.message_id)
            self._shown[record.message_id] = fingerprint(rendered)
        return rendered

    # ------------------------------------------------------------------ re-rendering
    async def refresh_batch(self, batch_id: str) -> None:
        """Re-render a batch message from the store (coalesced per message, then queued as an
        edit: :mod:`bot.discord.edit_queue`).

        Returns once a render that started after this call has finished (its edit sent, or
        still waiting for the channel's edit budget after
        :data:`bot.discord.notifier.EDIT_WAIT_SECONDS`); Discord errors are never raised to
        the caller (the decision itself already stands): a lost message is reposted, a
        channel the bot cannot use goes to :meth:`channel_lost`, anything else is logged.
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
            await self._apply(mark_decided(newly_decided))
            for task_id in newly_decided:
                self._marked[task_id] = None
                self._notices.pop(task_id, None)
        rendered = render_batch(batch_id, items, await self.page_of(batch_id))
        log.debug("batching: render %s with %d items", batch_id, len(items))
        shown = fingerprint(rendered)
        message_id = record.message_id
        if self._shown.get(message_id) == shown:
            return

        channel_id = record.channel_id

        async def refused(exc: Exception) -> None:
            if isinstance(exc, MessageGone):
                await self.repost(batch_id, message_id, why=f"edit answered {exc.reason}")
            elif isinstance(exc, ChannelUnavailable):
                self._shown.pop(message_id)  # the retry must ask Discord again
                await self.channel_lost(exc, batch_id)
            else:
                log.warning("could not edit batch message %s: %r", message_id, exc)

        async def accepted() -> None:
            await self.channel_reached(channel_id, batch_id)

        try:
            sent = await self.notifier.queue_edit(
                channel_id,
                message_id,
                rendered,
                important=True,
                on_late_fault=refused,
                on_late_sent=accepted,
            )
        except (MessageGone, ChannelUnavailable) as exc:
            await refused(exc)
            return
        if sent:
            self._shown[message_id] = shown
            await accepted()

    async def repost(self, batch_id: str, message_id: int, *, why: str) -> None:
        """The batch's message ``message_id`` is gone: post it again, in the tasks channel
        configured now, while an item needs a decision
        (:func:`bot.discord.batch_repost.repost_batch`).

        A repost Discord refuses (10003, 50001, 50013) raises nothing: it goes to
        :meth:`channel_lost` and is retried (:meth:`retry_batch`) until it is posted. Any
        other failure (a 5xx, which discord.py does not retry, a 429 it gave up on, a
        network error) is tried again after 2, 4, … up to :data:`MAX_REPOST_RETRY_SECONDS`
        seconds: the message is gone, so nothing else would show its items again.
        """
        earlier = self._unreposted.pop(batch_id, None)
        if batch_id not in self._owed:  # stored before it is tried: a crash cannot lose it
            self._owed[batch_id] = (message_id, why)
            await self._save_owed()
        settled = True
        try:
            posted = await repost_batch(self, batch_id, message_id, why=why)
        except asyncio.CancelledError:  # the runtime stops mid-repost: the next start makes it
            settled = False
            raise
        except ChannelUnavailable as fault:
            settled = False
            self._unreposted[batch_id] = (message_id, why, 0)
            await self.channel_lost(fault, batch_id)
            return
        except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as exc:
            # Discord's refusal or no answer: nothing was posted. A failure of the store after
            # the post (the new message exists) is raised as before, not posted again.
            settled = False
            attempt = (earlier[2] if earlier is not None else 0) + 1
            self._unreposted[batch_id] = (message_id, why, attempt)
            delay = min(MAX_REPOST_RETRY_SECONDS, 2.0**attempt)
            log.warning(
                "batch %s: repost failed (%r); retry %d in %.0fs", batch_id, exc, attempt, delay
            )
            asyncio.get_running_loop().call_later(delay, self._repost_again, batch_id)
            return
        finally:
            if settled and self._owed.pop(batch_id, None) is not None:
                await self._save_owed()
        retried = earlier is not None
        if posted is not None:
            await self.channel_reached(self.channel_id, batch_id)
        elif retried and self.bridge.access is not None:
            self.bridge.access.forget(batch_id=batch_id)  # reposted another way, or decided

    async def _save_owed(self) -> None:
        """Store :attr:`_owed` (:data:`REPOSTS_STATE_KEY`); a failure is logged: the repost
        itself goes on (only a restart before it is made would forget it)."""
        owed = {batch_id: list(entry) for batch_id, entry in self._owed.items()}
        try:
            await self.store.save_state(REPOSTS_STATE_KEY, owed, fenced=True)
        except Exception:
            log.exception("could not store the batch reposts not made yet: %s", sorted(owed))

    async def resume_owed_reposts(self) -> None:
        """At start: try again each repost a stop or a crash left unmade (its batch row is
        re-read: one shown or decided meanwhile is not posted again). An unreadable stored
        entry is logged and left out.

        Raises
        ------
        Exception
            What the store raises when it cannot be read (the start fails, as it does when the
            batcher's own state cannot be read).
        """
        stored = await self.store.load_state(REPOSTS_STATE_KEY) or {}
        for batch_id, entry in stored.items():
            try:
                message_id, why = int(entry[0]), str(entry[1])
            except (TypeError, ValueError, IndexError, KeyError):
                log.error("batch %s: unreadable stored repost %r, left out", batch_id, entry)
                continue
            self._owed[batch_id] = (message_id, why)
            self._unreposted[batch_id] = (message_id, why, 0)
            log.info("batch %s: repost of lost message %s resumed", batch_id, message_id)
            self._repost_again(batch_id)

    def _repost_again(self, batch_id: str) -> None:
        # call_later's callback: the retry runs as a task the runtime keeps until it ends
        if self._stopping:  # the runtime stopped meanwhile: the next start reposts it
            return  # (resume_owed_reposts, from REPOSTS_STATE_KEY)
        task = asyncio.create_task(self.retry_batch(batch_id), name=f"repost-{batch_id}")
        self._reposts.add(task)
        task.add_done_callback(self._reposts.discard)

    # ------------------------------------------------------------------ Approve All Low-Risk
    async def approve_low_risk(
        self, batch_id: str, actor: Actor, *, idempotency_seed: str
    ) -> Outcome:
        """Approve, in ONE ``POST /v1/tasks/bulk``, the items low risk and pending right now,
        on every page of the message.

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
            ``unconfirmed`` when the factory's answer was lost and no item could be read
            back (they are re-sent in the background);
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
            elif failure.kind == "unconfirmed":  # still in flight: re-sent in the background
                self._notices[failure.tracked.task_id] = UNCONFIRMED_NOTICE
        if result.sent:
            await self.refresh_batch(batch_id)
        return result.outcome
