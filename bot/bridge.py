"""The bridge service: factory events in, task messages out.

:class:`Bridge` is where the store, the factory client and the Discord notifier meet: one message
per task kept up to date (:meth:`Bridge.show_task`, :meth:`Bridge.refresh_message`,
:meth:`Bridge.handle_event`); what people do to a task (decisions sent exactly once, acks,
snoozes, bulk approvals) is :class:`bot.actions.Actions`, reached through thin methods here. It
never imports discord.py (:class:`~bot.bridge_ports.Notifier`) and writes no Discord markup.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

from bot.actions import Actions
from bot.bridge_ports import NoEscalation, Notifier
from bot.bulk_approval import BulkApproval
from bot.channel_access import ChannelAccess
from bot.dashboard import attribute, audit_factory_decision, person_name
from bot.decision_context import DirectMessages, Escalation
from bot.factory.client import FactoryClient, FactoryError, FactoryUnavailable
from bot.factory.events import ApprovalPayload, FactoryEvent, TaskCompletedPayload, TaskPayload
from bot.gone_tasks import close_gone
from bot.keyed import BoundedMap, KeyedLocks
from bot.message_faults import REPOSTED_NOTE, ChannelUnavailable, MessageGone
from bot.outcomes import (
    DECISION_VERBS,
    PROGRESS_NOTICE,
    SYSTEM,
    Actor,
    Outcome,
    ProgressCallback,
    TimeText,
    plain_time,
)
from bot.resend import Resender
from bot.roster import Roster
from bot.settings import Settings
from bot.store import Store, TrackedTask
from escalation.models import Task, TaskType

__all__ = [
    "DECISION_VERBS",
    "PROGRESS_NOTICE",
    "SYSTEM",
    "Actor",
    "Bridge",
    "DirectMessages",
    "Escalation",
    "Notifier",
    "Outcome",
    "ProgressCallback",
]

log = logging.getLogger(__name__)


class Bridge:
    """Handles factory events and people's actions on tasks.

    Parameters
    ----------
    settings, store, factory, roster:
        Collaborators built by ``bot.app``.
    clock:
        Returns the current aware UTC datetime (tests inject one).
    time_text:
        Writes times in the answers people get (``bot.app`` passes the Discord adapter's
        ``discord_timestamp``; plain UTC text by default).

    The notifier is set later with :meth:`attach_notifier` (the client needs the bridge).
    """

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        factory: FactoryClient,
        roster: Roster,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        time_text: TimeText = plain_time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.factory = factory
        self.roster = roster
        self.clock = clock
        self.policy = settings.escalation_policy()
        self.notifier: Notifier | None = None
        self.escalation: Escalation = NoEscalation()
        # per-task state lives only while in use: memory does not grow with tasks seen
        self._message_locks: KeyedLocks[str] = KeyedLocks()
        self.batcher: Any = None  # set by the batching runtime (smart batching)
        #: channels the bridge cannot use (set by the app: :class:`bot.channel_access.ChannelAccess`)
        self.access: ChannelAccess | None = None
        # deleted messages no task was known to show (yet): a post that records one of them
        # afterwards reposts at once (the deletion raced the post)
        self._deleted_unknown: BoundedMap[int, str] = BoundedMap(1024)
        #: Decisions, acknowledgements, snoozes, bulk approvals (exactly once).
        self.actions = Actions(
            board=self,
            settings=settings,
            store=store,
            factory=factory,
            roster=roster,
            clock=clock,
            time_text=time_text,
        )

    @property
    def resender(self) -> Resender:
        """Background re-sends of decisions whose outcome is not known yet."""
        return self.actions.resender

    @property
    def _decisions_settled(self) -> dict[str, asyncio.Event]:
        """In-process "decision settled" events per task (only while one is in flight)."""
        return self.actions.settled

    def attach_notifier(self, notifier: Notifier) -> None:
        """Connect the Discord side (once at start; its ``on_edit_sent`` → :meth:`edit_sent`)."""
        self.notifier = notifier
        if hasattr(notifier, "on_edit_sent"):
            notifier.on_edit_sent = self.edit_sent

    # ------------------------------------------------------------------ helpers
    def deadline_for(self, task: Task) -> datetime:
        """The task's SLA deadline: ``slaDeadline``, or created + SLA of its priority."""
        return self.policy.deadline_for(task.created_at, task.priority, task.sla_deadline)

    def _lock(self, task_id: str) -> AbstractAsyncContextManager[None]:
        """The task's message lock (``async with``); forgotten once nobody holds it."""
        return self._message_locks(task_id)

    async def track(self, task: Task) -> TrackedTask:
        """Store (or refresh) a task snapshot from the factory."""
        return await self.store.upsert_task(task, self.deadline_for(task))

    # ------------------------------------------------------------------ messages
    async def show_task(self, task: Task) -> TrackedTask:
        """Track a task and make sure exactly one message shows it.

        A task that already has a message gets it brought up to date; a new open task is
        posted (or handed to the batcher when batching applies). Safe to call twice for the
        same task, concurrently or after a restart: posting is guarded by a compare-and-set.
        """
        tracked = await self.track(task)
        if tracked.has_message:
            await self.refresh_message(task.id)
            return tracked
        if tracked.is_decided:
            return tracked  # decided before we ever showed it: nothing to ask anyone
        tracked = await self._look_up_approval(tracked)
        if self.batcher is not None and await self.batcher.offer(tracked):
            return tracked
        return await self.post_single(tracked)

    async def _look_up_approval(self, tracked: TrackedTask) -> TrackedTask:
        """Read the approval behind an approval task the bridge knows no approval of.

        ``GET /v1/approvals`` (contract §1.5) tells whether it is a deploy and how many people
        must approve it. When it cannot be read the task is guarded (fail safe,
        :mod:`escalation.deploy_guard`): a false alarm costs one typed word.
        """
        task = tracked.task
        if task.type is not TaskType.APPROVAL or tracked.approval is not None:
            return tracked
        try:
            approval = await self.factory.find_approval(task.id, pipeline_id=task.pipeline_id)
        except (FactoryError, FactoryUnavailable, ValueError) as exc:
            log.warning("approval of task %s could not be read (guarded): %s", task.id, exc)
            await self.store.set_approval(task.id, None, unread=True)
        else:
            if approval is None and not tracked.approval_unread:
                return tracked  # none listed: nothing to remember
            await self.store.set_approval(task.id, approval)
        return await self.store.get_task(task.id) or tracked

    async def post_single(self, tracked: TrackedTask, *, note: str | None = None) -> TrackedTask:
        """Post the single-task message for ``tracked`` unless one exists (compare-and-set).

        ``note`` is shown above the task (a repost). When the channel cannot be used
        (:class:`~bot.message_faults.ChannelUnavailable`) the task stays pending without a
        message and :attr:`access` alerts and retries.
        """
        assert self.notifier is not None, "notifier not attached"
        if not await self.store.claim_posting(tracked.task_id):
            return tracked
        try:
            if note is None:
                channel_id, message_id = await self.notifier.post_task(tracked)
            else:
                post: Any = self.notifier.post_task
                channel_id, message_id = await post(tracked, note=note)
        except ChannelUnavailable as fault:
            await self.store.release_posting(tracked.task_id)
            if self.access is None:
                raise
            await self.access.lost(fault, tracked.task_id)
            return tracked
        except Exception:
            await self.store.release_posting(tracked.task_id)
            raise
        fresh = await self.store.set_message(tracked.task_id, channel_id, message_id)
        assert fresh is not None
        if self.access is not None:
            await self.access.reached(channel_id, tracked.task_id)
        await self.store.audit(
            actor_name="system",
            via="event",
            action="message.posted",
            outcome="ok",
            task_id=tracked.task_id,
            detail=f"channel {channel_id} message {message_id}",
        )
        await self.escalation.task_opened(fresh)
        gone = self.deleted_before_recorded(message_id)
        if gone is not None:
            await self.message_deleted(message_id, why=gone)
            return await self.store.get_task(tracked.task_id) or fresh
        return fresh

    async def refresh_message(self, task_id: str, *, wait: bool = True) -> None:
        """Re-render the task's message from the store (serialised per task): gone (10008, 10003)
        → :meth:`message_deleted`, 50001 / 50013 → :attr:`access`; an accepted edit is reported
        by the notifier (:meth:`edit_sent`), never assumed because this returned. ``wait=False``
        (a factory event: events are handled one at a time, and a burst of decisions waiting out
        the edit budget held up every event behind it): return once the edit is queued."""
        if self.notifier is None:
            return
        async with self._lock(task_id):
            tracked = await self.store.get_task(task_id)
            if tracked is None or not tracked.has_message:
                return
            lost: MessageGone | None = None
            try:
                await self.notifier.edit_task(tracked, wait=wait)
            except MessageGone as gone:
                lost = gone
            except ChannelUnavailable as fault:
                if self.access is None:
                    raise
                await self.access.lost(fault, task_id)
                return
        if lost is not None:
            await self.message_deleted(lost.message_id, why=f"edit answered {lost.reason}")

    async def edit_sent(self, task_id: str, channel_id: int) -> None:
        """Discord accepted an edit of the task's message: ``channel_id`` works (:attr:`access`)."""
        if self.access is not None:
            await self.access.reached(channel_id, task_id)

    async def edit_failed(self, task_id: str, fault: Exception) -> None:
        """An edit of the task's message failed after :meth:`refresh_message` stopped waiting
        for it (:mod:`bot.discord.edit_queue`): handled as if it had failed at once (10008 /
        10003 → repost, 50001 / 50013 → :attr:`access`); anything else is logged."""
        if isinstance(fault, MessageGone):
            await self.message_deleted(fault.message_id, why=f"edit answered {fault.reason}")
        elif isinstance(fault, ChannelUnavailable) and self.access is not None:
            await self.access.lost(fault, task_id)
        else:
            log.warning("the message of task %s could not be edited: %r", task_id, fault)

    async def message_deleted(self, message_id: int, *, why: str = "deleted") -> None:
        """A task message is gone (gateway ``MESSAGE_DELETE``, or 10008 / 10003 on an edit).

        A task that still needs a decision is posted again ONCE per lost message, in the tasks
        channel configured now, with :data:`~bot.message_faults.REPOSTED_NOTE`; the task →
        message map points at the new message (compare-and-set
        :meth:`bot.store.Store.forget_message`: the gateway event and a failed edit about the
        same message repost once). Audited ``message.reposted``. A decided task is not reposted
        (audited ``message.deleted``); a message the bridge does not know is ignored.
        """
        tracked = await self.store.task_by_message(message_id)
        if tracked is None:
            batch_id = await self.store.batch_by_message(message_id)
            if batch_id is not None and self.batcher is not None:
                await self.batcher.repost(batch_id, message_id, why=why)
                return
            # perhaps a message being posted right now, not recorded yet: post_single looks
            self._deleted_unknown[message_id] = why
            # the post may have recorded it (and looked) while the read above ran: look again,
            # and whichever side takes the note reposts (once)
            if await self.store.task_by_message(
                message_id
            ) is not None and self.deleted_before_recorded(message_id):
                await self.message_deleted(message_id, why=why)
            return
        if tracked.is_decided:
            await self.store.audit(
                actor_name="system",
                via="discord",
                action="message.deleted",
                outcome="not reposted",
                task_id=tracked.task_id,
                detail=f"{why}: message {message_id}; the task is decided",
            )
            return
        if not await self.store.forget_message(tracked.task_id, message_id):
            return
        fresh = await self.store.get_task(tracked.task_id)
        if fresh is None:
            return
        shown = await self.post_single(fresh, note=REPOSTED_NOTE)
        await self.store.audit(
            actor_name="system",
            via="discord",
            action="message.reposted",
            outcome="ok" if shown.has_message else "pending",
            task_id=tracked.task_id,
            detail=f"{why}: message {message_id} → message {shown.message_id}",
        )

    def deleted_before_recorded(self, message_id: int) -> str | None:
        """Why ``message_id`` was deleted if the gateway said so before the bridge recorded it (a
        deletion racing its post: the poster, having just recorded it, reposts once), else None."""
        return self._deleted_unknown.pop(message_id)

    async def show_again(self, task_id: str) -> None:
        """Post the task, or edit its message, once more (a channel may be usable again);
        a decided task without a message is left alone."""
        tracked = await self.store.get_task(task_id)
        if tracked is None:
            return
        if tracked.has_message:
            await self.refresh_message(task_id)
        elif not tracked.is_decided:
            await self.post_single(tracked)
        elif self.access is not None:
            self.access.forget(task_id)

    # ------------------------------------------------------------------ events
    async def handle_event(self, event: FactoryEvent) -> None:
        """Act on one validated factory event (contract §1.6).

        task.created / approval.pending → the task message; task.claimed / task.completed /
        task.escalated / approval.approved / approval.rejected → the message is brought up
        to date; informational types are posted by the notifier to their channel.

        The same content delivered twice (webhook *and* WebSocket) reaches it once: see
        :meth:`bot.store.Store.record_event`.
        """
        payload = event.payload
        if event.type in ("task.created",) and isinstance(payload, TaskPayload):
            await self.show_task(payload.task)
        elif event.type == "approval.pending" and isinstance(payload, ApprovalPayload):
            task = payload.task or await self.factory.get_task(payload.approval.task_id)
            await self.store.set_approval(task.id, payload.approval)
            await self.show_task(task)
        elif isinstance(payload, TaskCompletedPayload):
            await self.apply_factory_task(payload.task)
        elif event.type in ("task.claimed", "task.escalated") and isinstance(payload, TaskPayload):
            await self.apply_factory_task(payload.task)
        elif event.type in ("approval.approved", "approval.rejected") and isinstance(
            payload, ApprovalPayload
        ):
            task = payload.task or await self.factory.get_task(payload.approval.task_id)
            await self.apply_factory_task(task)
        if self.notifier is not None:
            await self.notifier.post_event(event)

    async def apply_factory_task(self, task: Task) -> None:
        """A task changed at the factory: store it and update its message (never post anew).

        For a ``task.claimed`` / ``task.completed`` / ``task.escalated`` / ``approval.*``
        event and for what reconciliation sees: a decision made elsewhere is recorded and
        shown (and wakes whoever waits for it), a claim counts as an acknowledgement; a known
        task never gets a second message.
        """
        task = attribute(task, self.roster)  # a dashboard decision: roster name, source
        known = await self.store.get_task(task.id)
        tracked = await self.track(task)
        await audit_factory_decision(self.store, known, tracked)
        if task.claimed_by and tracked.acknowledged_at is None:  # also before its first post
            await self.store.set_acknowledged(
                task.id,
                0,
                person_name(task.claimed_by, self.roster) or task.claimed_by,
                task.claimed_at or self.clock(),
            )
        if known is None and not tracked.is_decided:
            await self.show_task(task)
            return
        if tracked.is_decided:
            self.actions._settle(task.id)
        elif self.batcher is not None:  # escalated while waiting for its group: posted alone
            await self.batcher.reconsider(tracked)
        await self.refresh_message(task.id, wait=False)
        await self.escalation.task_changed(task.id)

    async def task_gone(self, task_id: str, reason: str) -> TrackedTask | None:
        """Close an open task the factory no longer has (:func:`bot.gone_tasks.close_gone`)."""
        return await close_gone(self, task_id, reason)

    async def get_or_fetch(
        self, task_id: str, *, reread_approval: bool = True
    ) -> TrackedTask | None:
        """The tracked task; ``None`` when the factory does not know it either (404 / 410).

        One the bridge never saw is fetched with the approval behind it (the deploy guard needs
        it before any decision); an approval that could not be read is looked up again when
        ``reread_approval`` (guarded meanwhile). Raises :class:`FactoryUnavailable` or
        :class:`FactoryError` when a task the bridge never saw cannot be read."""
        tracked = await self.store.get_task(task_id)
        if tracked is None:
            try:
                tracked = await self.track(await self.factory.get_task(task_id))
            except FactoryError as exc:
                if exc.status in (404, 410):
                    return None
                raise
        elif not (tracked.approval_unread and reread_approval):
            return tracked
        return await self._look_up_approval(tracked)

    async def stop(self) -> None:
        """Stop background re-sends (what they carry stays in flight in the store and is
        re-sent at the next start, see :mod:`bot.reconcile`)."""
        await self.resender.stop()

    # ------------------------------------------------------------------ actions (bot.actions)
    def refusal_for(self, tracked: TrackedTask, decision: str, actor: Actor) -> str | None:
        """The role check for a decision (:meth:`bot.actions.Actions.refusal_for`)."""
        return self.actions.refusal_for(tracked, decision, actor)

    async def check(
        self, task_id: str, decision: str, actor: Actor
    ) -> tuple[Outcome | None, TrackedTask | None]:
        """Checks before answering an interaction (:meth:`bot.actions.Actions.check`)."""
        return await self.actions.check(task_id, decision, actor)

    async def audit_refusal(
        self, task_id: str, decision: str, actor: Actor, outcome: Outcome
    ) -> None:
        """Audit what :meth:`check` refused (:meth:`bot.actions.Actions.audit_refusal`)."""
        await self.actions.audit_refusal(task_id, decision, actor, outcome)

    async def precheck(self, task_id: str, decision: str, actor: Actor) -> Outcome | None:
        """Audited checks before a modal opens (:meth:`bot.actions.Actions.precheck`)."""
        return await self.actions.precheck(task_id, decision, actor)

    async def decide(
        self,
        task_id: str,
        decision: str,
        actor: Actor,
        *,
        notes: str | None = None,
        idempotency_seed: str,
        on_retry: ProgressCallback | None = None,
        skip_role_check: bool = False,
        option: dict[str, str] | None = None,
        deploy_confirmed: bool = False,
    ) -> Outcome:
        """Send a decision exactly once and update the message
        (:meth:`bot.actions.Actions.decide`; ``option`` is a ``decision`` task's choice)."""
        return await self.actions.decide(
            task_id,
            decision,
            actor,
            notes=notes,
            idempotency_seed=idempotency_seed,
            on_retry=on_retry,
            skip_role_check=skip_role_check,
            option=option,
            deploy_confirmed=deploy_confirmed,
        )

    async def resume_decision(
        self, tracked: TrackedTask, *, notify: bool = True, why: str = "re-sent after restart"
    ) -> Outcome:
        """Re-send a decision left in flight with its key
        (:meth:`bot.decision_send.DecisionSender.resume_decision`)."""
        return await self.actions.resume_decision(tracked, notify=notify, why=why)

    async def approve_bulk(
        self,
        items: list[TrackedTask],
        actor: Actor,
        *,
        idempotency_seed: str,
        batch_id: str | None = None,
    ) -> BulkApproval:
        """Approve ``items`` in one bulk request (:meth:`bot.actions.Actions.approve_bulk`)."""
        return await self.actions.approve_bulk(
            items, actor, idempotency_seed=idempotency_seed, batch_id=batch_id
        )

    async def acknowledge(self, task_id: str, actor: Actor, *, idempotency_seed: str) -> Outcome:
        """Acknowledge a task (:meth:`bot.actions.Actions.acknowledge`)."""
        return await self.actions.acknowledge(task_id, actor, idempotency_seed=idempotency_seed)

    async def snooze(self, task_id: str, actor: Actor, seconds: float) -> Outcome:
        """Snooze a task's reminders (:meth:`bot.actions.Actions.snooze`)."""
        return await self.actions.snooze(task_id, actor, seconds)
