"""The bridge service: events in, messages out, decisions back to the factory exactly once.

:class:`Bridge` is the one place where the store, the factory client and the Discord notifier
meet. Discord views, slash commands, the HTTP intake and the WebSocket intake all call it; it
never imports discord.py itself (the notifier is behind the :class:`Notifier` protocol).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from bot.dashboard import attribute, audit_factory_decision, person_name
from bot.factory.client import FactoryClient, FactoryError, FactoryUnavailable
from bot.factory.events import (
    ApprovalPayload,
    FactoryEvent,
    TaskCompletedPayload,
    TaskPayload,
)
from bot.keyed import KeyedLocks
from bot.resend import Resender
from bot.roster import Roster
from bot.settings import Settings
from bot.store import Store, TrackedTask
from escalation.deploy_guard import DeployApproval
from escalation.markup import inline_text
from escalation.models import Task, TaskDecision, TaskType
from escalation.permissions import decision_refusal

__all__ = ["SYSTEM", "Actor", "Bridge", "DirectMessages", "Escalation", "Notifier", "Outcome"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    """Who asks for an action, and through what.

    ``via`` is ``button``, ``modal``, ``command``, ``event`` or ``system``.
    """

    name: str
    via: str
    discord_user_id: int | None = None
    role_ids: frozenset[int] = frozenset()

    @property
    def mention(self) -> str:
        """``<@id>`` for a Discord member, the name otherwise."""
        return f"<@{self.discord_user_id}>" if self.discord_user_id else self.name


SYSTEM = Actor(name="system", via="system")


@dataclass(frozen=True)
class Outcome:
    """The result of an action, with the sentence to show the person who asked (ephemeral).

    ``kind`` is ``done``, ``refused``, ``conflict``, ``failed``, ``unknown`` or ``pending``
    (an approval of a production deploy was recorded; more deploy approvers must approve
    before the decision is sent: two-person rule, :mod:`escalation.deploy_guard`) or
    ``unconfirmed`` (the factory's answer was lost or unreadable and the task could not be
    read back: the decision stays in flight and is re-sent in the background; the person
    gets a DM with the outcome).
    """

    kind: str
    message: str
    tracked: TrackedTask | None = None

    @property
    def ok(self) -> bool:
        """True when the action took effect."""
        return self.kind == "done"


class Notifier(Protocol):
    """What the bridge needs from Discord (implemented by ``bot.discord.notifier``)."""

    async def post_task(self, tracked: TrackedTask) -> tuple[int, int]:
        """Post the task message; return (channel id, message id)."""
        ...

    async def edit_task(self, tracked: TrackedTask) -> None:
        """Bring the task's message up to date with ``tracked``."""
        ...

    async def post_event(self, event: FactoryEvent) -> None:
        """Post an informational event (alerts, deploys, feed) to its channel."""
        ...


@runtime_checkable
class DirectMessages(Protocol):
    """A notifier that can also DM a person (``bot.discord.notifier.DiscordNotifier`` can)."""

    async def send_dm(self, user_id: int, content: str) -> None:
        """DM ``user_id`` (no pings); raises when Discord refuses (e.g. DMs closed)."""
        ...


class Escalation(Protocol):
    """Hooks into the escalation ladder (``bot.escalation_runtime``); a no-op by default."""

    async def task_opened(self, tracked: TrackedTask) -> None:
        """A task is tracked and open: arm its ladder."""
        ...

    async def task_changed(self, task_id: str) -> None:
        """Ack, snooze or decision changed: re-plan (a decision stops the ladder)."""
        ...


class _NoEscalation:
    async def task_opened(self, tracked: TrackedTask) -> None:
        return None

    async def task_changed(self, task_id: str) -> None:
        return None


#: Awaited with ``(attempt, problem)`` before each retry of a decision, and with
#: ``(PROGRESS_NOTICE, sentence)`` to replace the person's "working…" answer with ``sentence``.
ProgressCallback = Callable[[int, str], Awaitable[None]]

#: The ``attempt`` of a :data:`ProgressCallback` call that is a notice, not a retry.
PROGRESS_NOTICE = 0

DECISION_VERBS = {
    "approved": "approved",
    "rejected": "rejected",
    "deferred": "deferred",
    "escalated": "escalated",
}


def _who_decided(tracked: TrackedTask) -> str:
    if tracked.decided_by_discord_id:
        return f"<@{tracked.decided_by_discord_id}>"
    return inline_text(tracked.decided_by or "someone else", 100)


def _named(tracked: TrackedTask) -> str:
    """The task's title for an answer: one line, at most 200 characters, escaped (factory
    text never pings nor renders markdown; the answer stays within Discord's 2000)."""
    return inline_text(tracked.task.title)


def _when(at: datetime | None) -> str:
    return f" <t:{int(at.timestamp())}:R>" if at else ""


def _reason(exc: BaseException) -> str:
    """A short, inert reason for a failure (the database driver's own message when there is
    one: ``database or disk is full``, not SQLAlchemy's statement dump)."""
    inner = getattr(exc, "orig", None) or exc
    lines = str(inner).strip().splitlines()
    return inline_text(lines[0] if lines else type(inner).__name__, 200)


class Bridge:
    """Handles factory events and people's decisions.

    Parameters
    ----------
    settings, store, factory, roster:
        Collaborators built by ``bot.app``.
    notifier:
        The Discord side; set later with :meth:`attach_notifier` (the client needs the bridge).
    clock:
        Returns the current aware UTC datetime (tests inject one).
    """

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        factory: FactoryClient,
        roster: Roster,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.store = store
        self.factory = factory
        self.roster = roster
        self.clock = clock
        self.policy = settings.escalation_policy()
        self.notifier: Notifier | None = None
        self.escalation: Escalation = _NoEscalation()
        # per-task state lives only while in use: memory does not grow with tasks seen
        self._message_locks: KeyedLocks[str] = KeyedLocks()
        self._decisions_settled: dict[str, asyncio.Event] = {}
        #: Background re-sends of decisions whose outcome is not known yet.
        self.resender = Resender(base_seconds=settings.factory_retry_base_seconds)
        self.batcher: Any = None  # set by the batching runtime (issue: smart batching)

    async def _audit(self, actor: Actor, **entry: Any) -> None:
        """Append an audit entry for ``actor`` (see :meth:`bot.store.Store.audit`).

        When the database takes no write (disk full, read-only) the entry is logged as an
        error instead of raised: the person must still be told what happened.
        """
        try:
            await self.store.audit(
                actor_id=str(actor.discord_user_id) if actor.discord_user_id else None,
                actor_name=actor.name,
                via=actor.via,
                **entry,
            )
        except Exception as exc:
            log.error("audit entry not stored (%r): %s %r", exc, actor.name, entry)

    def _factory_user_id(self, discord_user_id: int | None) -> str | None:
        operator = self.roster.by_discord_id(discord_user_id) if discord_user_id else None
        return operator.factory_user_id if operator else None

    def decision_data(
        self, actor: Actor, approvers: tuple[DeployApproval, ...] = ()
    ) -> dict[str, Any]:
        """``decisionData`` sent with a decision: who decided and through what.

        ``{"source": "discord" | via, "discordUserId", "discordUsername", "factoryUserId"}``;
        ``factoryUserId`` comes from the roster (``None`` for someone not in it). The approval
        of a production deploy adds ``approvers``: every deploy approver, ``[{discordUserId,
        name, factoryUserId, at}]`` oldest first (two-person rule, contract §1.4
        ``Approval.requiredApprovers``).
        """
        data: dict[str, Any] = {
            "source": "discord" if actor.discord_user_id else actor.via,
            "discordUserId": str(actor.discord_user_id) if actor.discord_user_id else None,
            "discordUsername": actor.name,
            "factoryUserId": self._factory_user_id(actor.discord_user_id),
        }
        if approvers:
            data["approvers"] = [a.to_wire() for a in approvers]
        return data

    def _deploy_approvers(self, tracked: TrackedTask, decision: str) -> tuple[DeployApproval, ...]:
        """The approvers a guarded approval carries: those collected, else whoever is deciding."""
        if decision != TaskDecision.APPROVED.value or not tracked.guarded:
            return ()
        if tracked.deploy_approvals:
            return tracked.deploy_approvals
        if tracked.inflight_by_discord_id is None:
            return ()
        return (
            DeployApproval(
                discord_user_id=tracked.inflight_by_discord_id,
                name=tracked.inflight_by_name or "unknown",
                factory_user_id=self._factory_user_id(tracked.inflight_by_discord_id),
                at=tracked.inflight_at or self.clock(),
            ),
        )

    async def _conflicted(
        self, tracked: TrackedTask, decision: str, actor: Actor, request: dict[str, Any]
    ) -> Outcome:
        """The factory answered 409 CONFLICT (contract §7.1): someone decided first.

        Re-reads the task, audits the conflict, brings the message up to date and says who
        decided and when.
        """
        task_id = tracked.task_id
        fresh = await self._refetch(task_id)
        await self._audit_conflict(actor, decision, task_id, request, fresh or tracked)
        await self.refresh_message(task_id)
        await self.escalation.task_changed(task_id)
        if fresh is not None and fresh.is_decided:
            return Outcome("conflict", self._conflict_message(fresh), fresh)
        return Outcome("conflict", "Someone decided this task first.", fresh)

    async def _record_confirmed(
        self,
        task: Task,
        decision: str,
        actor: Actor,
        notes: str | None,
        request: dict[str, Any],
        detail: str,
    ) -> TrackedTask:
        """Store a decision the factory confirmed (``task`` is its answer) and audit it."""
        confirmed = await self.store.confirm_decision(
            task,
            decision=decision,
            decided_by=actor.name,
            discord_user_id=actor.discord_user_id,
            notes=notes,
            source=actor.via,
            at=task.decided_at or self.clock(),
        )
        await self._audit(
            actor,
            action=f"task.{decision}",
            task_id=task.id,
            request=request,
            outcome="ok",
            detail=detail,
        )
        return confirmed

    def attach_notifier(self, notifier: Notifier) -> None:
        """Connect the Discord side (done once at start)."""
        self.notifier = notifier

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

    async def post_single(self, tracked: TrackedTask) -> TrackedTask:
        """Post the single-task message for ``tracked`` unless one exists (compare-and-set)."""
        assert self.notifier is not None, "notifier not attached"
        if not await self.store.claim_posting(tracked.task_id):
            return tracked
        try:
            channel_id, message_id = await self.notifier.post_task(tracked)
        except Exception:
            await self.store.release_posting(tracked.task_id)
            raise
        await self.store.set_message(tracked.task_id, channel_id, message_id)
        fresh = await self.store.get_task(tracked.task_id)
        assert fresh is not None
        await self.store.audit(
            actor_name="system",
            via="event",
            action="message.posted",
            outcome="ok",
            task_id=tracked.task_id,
            detail=f"channel {channel_id} message {message_id}",
        )
        await self.escalation.task_opened(fresh)
        return fresh

    async def refresh_message(self, task_id: str) -> None:
        """Re-render the task's message from the store (serialised per task)."""
        if self.notifier is None:
            return
        async with self._lock(task_id):
            tracked = await self.store.get_task(task_id)
            if tracked is None or not tracked.has_message:
                return
            await self.notifier.edit_task(tracked)

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
            await self._apply_factory_task(payload.task)
        elif event.type in ("task.claimed", "task.escalated") and isinstance(payload, TaskPayload):
            await self._apply_factory_task(payload.task)
        elif event.type in ("approval.approved", "approval.rejected") and isinstance(
            payload, ApprovalPayload
        ):
            task = payload.task or await self.factory.get_task(payload.approval.task_id)
            await self._apply_factory_task(task)
        if self.notifier is not None:
            await self.notifier.post_event(event)

    async def _apply_factory_task(self, task: Task) -> None:
        """A task changed at the factory: store it and update its message (never post anew)."""
        task = attribute(task, self.roster)  # a dashboard decision: roster name, source
        known = await self.store.get_task(task.id)
        tracked = await self.track(task)
        await audit_factory_decision(self.store, known, tracked)
        if known is None and not tracked.is_decided:
            await self.show_task(task)
            return
        if task.claimed_by and tracked.acknowledged_at is None:
            await self.store.set_acknowledged(
                task.id,
                0,
                person_name(task.claimed_by, self.roster) or task.claimed_by,
                task.claimed_at or self.clock(),
            )
        if tracked.is_decided:
            self._settle(task.id)
        await self.refresh_message(task.id)
        await self.escalation.task_changed(task.id)

    async def apply_factory_task(self, task: Task) -> None:
        """A task changed at the factory (seen by reconciliation): store it, update its message.

        Same as a ``task.claimed`` / ``task.completed`` event: a decision made elsewhere is
        recorded and shown, a claim counts as an acknowledgement; a known task never gets a
        second message.
        """
        await self._apply_factory_task(task)

    async def resume_decision(
        self, tracked: TrackedTask, *, notify: bool = True, why: str = "re-sent after restart"
    ) -> Outcome:
        """Re-send a decision left in flight, with its original ``Idempotency-Key``.

        Left by a crash (found at start by :mod:`bot.reconcile`) or by a send whose outcome
        stayed unknown (:attr:`resender`). The factory answers 200 (it executes the decision,
        or replays its first answer when the original request had arrived — contract §7.1) or
        409 (the task was decided, by this decision or another one): both settle it, and the
        message is brought up to date. A timeout or an unreadable answer leads to reading the
        task back: a decision found there settles it. When the factory cannot be reached the
        decision stays in flight and is tried again (the background re-send, or the next
        reconciliation); any other refusal clears it (the buttons are live again).

        Parameters
        ----------
        tracked:
            A task from :meth:`bot.store.Store.inflight_decisions`.
        notify:
            DM the person who clicked the outcome once it settles: their click was never
            answered with it (a crash cut it short, or they were told "not confirmed yet").
        why:
            Said in the audit (``re-sent after restart`` …).

        Returns
        -------
        Outcome
            ``done``, ``conflict`` (someone else decided first) or ``failed`` (still in flight
            when the factory is unreachable; cleared when it refused).
        """
        task_id = tracked.task_id
        decision = tracked.inflight_decision
        key = tracked.inflight_key
        if decision is None or key is None:
            return Outcome("failed", "no decision in flight", tracked)
        actor = Actor(
            name=tracked.inflight_by_name or "unknown",
            via="resume",
            discord_user_id=tracked.inflight_by_discord_id,
        )
        try:
            outcome = await self._resend_once(tracked, decision, key, actor, why)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # e.g. the database took no write: still in flight
            log.exception("%s: decision on %s not settled", why, task_id)
            return Outcome("failed", f"{why}: {exc!r}; still in flight", tracked)
        if notify and actor.discord_user_id is not None:
            try:
                fresh = await self.store.get_task(task_id)
            except Exception:
                return outcome
            if fresh is None or fresh.inflight_key != key:  # settled: tell the clicker
                await self._dm_outcome(actor, tracked, decision, outcome)
        return outcome

    async def _resend_once(
        self, tracked: TrackedTask, decision: str, key: str, actor: Actor, why: str
    ) -> Outcome:
        """One re-send of ``tracked``'s decision in flight (see :meth:`resume_decision`)."""
        task_id = tracked.task_id
        notes = tracked.inflight_notes
        request = {"decision": decision, "notes": notes, "idempotencyKey": key}
        decision_data = self.decision_data(actor, self._deploy_approvers(tracked, decision))
        try:
            task = await self.factory.complete_task(
                task_id,
                decision=decision,
                notes=notes,
                decision_data=decision_data,
                idempotency_key=key,
            )
        except FactoryUnavailable as exc:
            if exc.uncertain:
                state, found = await self._read_back(task_id)
                if state == "decided" and found is not None:
                    return await self._settle_from_factory(
                        tracked, found, decision, actor, notes, key, request, f"{why}; read back"
                    )
                if state == "gone":
                    await self._clear_inflight(task_id, key)
                    await self._audit(
                        actor,
                        action=f"task.{decision}",
                        task_id=task_id,
                        request=request,
                        outcome="failed",
                        detail=f"{why}: the factory no longer knows the task",
                    )
                    return Outcome(
                        "failed",
                        "The factory no longer knows this task: your decision was NOT recorded.",
                        tracked,
                    )
            await self._audit(
                actor,
                action=f"task.{decision}",
                task_id=task_id,
                request=request,
                outcome="failed",
                detail=f"{why}: {exc}; still in flight, retried later",
            )
            return Outcome("failed", str(exc), tracked)
        except FactoryError as exc:
            await self._clear_inflight(task_id, key)
            if exc.is_conflict:
                return await self._conflicted(tracked, decision, actor, request)
            await self._audit(
                actor,
                action=f"task.{decision}",
                task_id=task_id,
                request=request,
                outcome="failed",
                detail=f"{why}, refused: {exc}",
            )
            await self._quietly(self.refresh_message(task_id), f"refresh the message of {task_id}")
            return Outcome(
                "failed",
                f"The factory refused it ({exc.code}: {inline_text(exc.message, 300)}): your "
                "decision was NOT recorded. The buttons are live again.",
                tracked,
            )
        confirmed = await self._record_confirmed(
            task, decision, actor, notes, request, f"{why}; factory confirmed"
        )
        self._settle(task_id)
        await self._quietly(self.refresh_message(task_id), f"refresh the message of {task_id}")
        await self._quietly(self.escalation.task_changed(task_id), f"re-plan {task_id}")
        if confirmed.decision != decision:
            return Outcome("conflict", self._conflict_message(confirmed), confirmed)
        verb = DECISION_VERBS.get(decision, decision)
        return Outcome("done", f"Task **{_named(confirmed)}** {verb}.", confirmed)

    async def _dm_outcome(
        self, actor: Actor, tracked: TrackedTask, decision: str, outcome: Outcome
    ) -> None:
        """DM the person whose click was cut short what became of their decision (audited)."""
        user_id = actor.discord_user_id
        notifier = self.notifier
        if user_id is None or not isinstance(notifier, DirectMessages):
            return
        verb = DECISION_VERBS.get(decision, decision)
        icon = {"done": "✅", "conflict": "ℹ️"}.get(outcome.kind, "⚠️")
        text = (
            f"{icon} About your decision on **{_named(tracked)}** ({verb}"
            f"{_when(tracked.inflight_at)}): {outcome.message}"
        )
        try:
            await notifier.send_dm(user_id, text)
        except Exception as exc:
            log.warning("could not DM %s the outcome on %s: %r", user_id, tracked.task_id, exc)
            await self._audit(
                actor,
                action="decision.dm",
                task_id=tracked.task_id,
                outcome="failed",
                detail=f"outcome {outcome.kind} not sent: {exc!r}"[:500],
            )
            return
        await self._audit(
            actor,
            action="decision.dm",
            task_id=tracked.task_id,
            outcome="ok",
            detail=f"told the outcome: {outcome.kind}",
        )

    # ------------------------------------------------------------------ decisions
    def _settle(self, task_id: str) -> None:
        event = self._decisions_settled.pop(task_id, None)
        if event is not None:
            event.set()

    async def _wait_settled(
        self, task_id: str, *, grace_seconds: float = 2.0
    ) -> TrackedTask | None:
        """Wait until the decision in flight on ``task_id`` settles; return the task then.

        The in-process winner's event is awaited (at most ``FACTORY_TIMEOUT_SECONDS`` × 4 +
        60 s). Two clicks in the same moment can lose the compare-and-set before the winner
        has registered its event: while the store still shows a decision in flight, it is
        re-read every 50 ms for up to ``grace_seconds`` (a decision left in flight by a crash
        is not waited for longer: reconciliation re-sends it).
        """
        loop = asyncio.get_running_loop()
        grace_until = loop.time() + grace_seconds
        while True:
            event = self._decisions_settled.get(task_id)
            if event is not None:
                timeout = self.settings.factory_timeout_seconds * 4 + 60
                try:
                    await asyncio.wait_for(event.wait(), timeout)
                except TimeoutError:
                    pass
                return await self.store.get_task(task_id)
            tracked = await self.store.get_task(task_id)
            if (
                tracked is None
                or tracked.is_decided
                or tracked.inflight_decision is None
                or loop.time() >= grace_until
            ):
                return tracked
            await asyncio.sleep(0.05)

    def refusal_for(self, tracked: TrackedTask, decision: str, actor: Actor) -> str | None:
        """The role check for a decision (see :func:`escalation.permissions.decision_refusal`)."""
        return decision_refusal(
            tracked.task,
            decision,
            actor.role_ids,
            approver_role_ids=self.settings.discord_approver_role_ids,
            deploy_approver_role_ids=self.settings.discord_deploy_approver_role_ids,
            guarded=tracked.guarded,
        )

    def _conflict_message(self, tracked: TrackedTask) -> str:
        verb = DECISION_VERBS.get(tracked.decision or "", tracked.decision or "decided")
        return f"Already {verb} by {_who_decided(tracked)}{_when(tracked.decided_at)}. Nothing was changed."

    async def get_or_fetch(self, task_id: str) -> TrackedTask | None:
        """The tracked task; if the bridge never saw it, fetch it from the factory."""
        tracked = await self.store.get_task(task_id)
        if tracked is not None:
            return tracked
        try:
            task = await self.factory.get_task(task_id)
        except (FactoryError, FactoryUnavailable):
            return None
        return await self.track(task)

    async def check(
        self, task_id: str, decision: str, actor: Actor
    ) -> tuple[Outcome | None, TrackedTask | None]:
        """:meth:`precheck` without the audit write, with the task it read: one read, fast
        enough to run before answering an interaction (Discord: 3 s deadline). Audit a
        refusal afterwards with :meth:`audit_refusal`. ``(None, task)`` means go ahead."""
        tracked = await self.get_or_fetch(task_id)
        if tracked is None:
            return Outcome("unknown", f"Task `{task_id}` is not known to the factory."), None
        refusal = self.refusal_for(tracked, decision, actor)
        if refusal is not None:
            return Outcome("refused", refusal, tracked), tracked
        if tracked.is_decided:
            return Outcome("conflict", self._conflict_message(tracked), tracked), tracked
        return None, tracked

    async def audit_refusal(
        self, task_id: str, decision: str, actor: Actor, outcome: Outcome
    ) -> None:
        """Audit what :meth:`check` refused (only ``refused`` outcomes are recorded)."""
        if outcome.kind == "refused":
            await self._audit(
                actor,
                action=f"task.{TaskDecision(decision).value}",
                task_id=task_id,
                outcome="refused",
                detail=outcome.message,
            )

    async def precheck(self, task_id: str, decision: str, actor: Actor) -> Outcome | None:
        """Checks done before a modal opens or a decision is sent; ``None`` means go ahead.

        Returns an :class:`Outcome` (already audited) when the task is unknown, the member
        lacks the role, or the task is already decided (then it says by whom and when).
        """
        outcome, _ = await self.check(task_id, decision, actor)
        if outcome is not None:
            await self.audit_refusal(task_id, decision, actor, outcome)
        return outcome

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
    ) -> Outcome:
        """Send a decision to the factory exactly once and update the message.

        Parameters
        ----------
        task_id:
            The factory task id.
        decision:
            ``approved``, ``rejected``, ``deferred`` (contract ``TaskDecision``).
        actor:
            Who decided (Discord id, name, roles) and through what.
        notes:
            Decision notes (a rejection's reason).
        idempotency_seed:
            Stable for retries of the same action (e.g. the interaction id): it derives the
            ``Idempotency-Key`` (contract §7.1).
        on_retry:
            Awaited before each retry with (attempt, problem) so the person can be told.

        Returns
        -------
        Outcome
            ``done`` once the factory confirmed; ``conflict`` when someone decided first (the
            message is brought up to date); ``refused`` for a missing role; ``failed`` when
            the factory refused or stayed unreachable (nothing is shown as decided and the
            buttons stay live); ``unknown`` for a task the factory does not know.
        """
        decision = TaskDecision(decision).value
        request = {"decision": decision, "notes": notes}
        tracked = await self.get_or_fetch(task_id)
        if tracked is None:
            await self._audit(
                actor,
                action=f"task.{decision}",
                task_id=task_id,
                request=request,
                outcome="unknown",
                detail="task unknown to the bridge and the factory",
            )
            return Outcome("unknown", f"Task `{task_id}` is not known to the factory.")
        if not skip_role_check:
            refusal = self.refusal_for(tracked, decision, actor)
            if refusal is not None:
                await self._audit(
                    actor,
                    action=f"task.{decision}",
                    task_id=task_id,
                    request=request,
                    outcome="refused",
                    detail=refusal,
                )
                return Outcome("refused", refusal, tracked)
        if tracked.is_decided:
            await self._audit_conflict(actor, decision, task_id, request, tracked)
            return Outcome("conflict", self._conflict_message(tracked), tracked)
        if decision == TaskDecision.APPROVED.value and tracked.guarded:
            try:
                gathering = await self._collect_deploy_approval(tracked, actor, request)
            except Exception as exc:  # the database takes no write (disk full, read-only)
                return await self._not_recorded_by_bridge(actor, decision, tracked, request, exc)
            if isinstance(gathering, Outcome):
                return gathering
            tracked = gathering

        key = FactoryClient.new_idempotency_key(idempotency_seed)
        try:
            won = await self.store.begin_decision(
                task_id,
                decision,
                discord_user_id=actor.discord_user_id,
                name=actor.name,
                key=key,
                notes=notes,
            )
        except Exception as exc:  # the database takes no write (disk full, read-only)
            return await self._not_recorded_by_bridge(actor, decision, tracked, request, exc)
        if won is None:
            settled = await self._wait_settled(task_id)
            if settled is not None and settled.is_decided:
                await self._audit_conflict(actor, decision, task_id, request, settled)
                return Outcome("conflict", self._conflict_message(settled), settled)
            return Outcome(
                "failed",
                "Another decision on this task is being recorded right now; nothing was sent. "
                "Try again in a moment.",
                settled,
            )
        self._decisions_settled.setdefault(task_id, asyncio.Event())
        try:
            return await self._send_decision(won, decision, actor, notes, key, request, on_retry)
        finally:
            self._settle(task_id)

    async def _collect_deploy_approval(
        self, tracked: TrackedTask, actor: Actor, request: dict[str, Any]
    ) -> TrackedTask | Outcome:
        """The two-person rule: record ``actor``'s approval of a guarded task.

        When the task needs more than one deploy approver (``DEPLOY_REQUIRED_APPROVERS`` or
        the approval's ``requiredApprovers``, contract §1.4), each distinct person's approval
        is stored and audited; the decision is sent only once enough distinct people approved.

        Returns
        -------
        TrackedTask or Outcome
            The task (with every approval collected) when the decision may be sent now;
            otherwise the answer for ``actor``: ``pending`` (recorded, waiting for more) or
            ``refused`` (they had approved already; nothing changed).
        """
        task_id = tracked.task_id
        required = tracked.approvals_required(self.settings.deploy_required_approvers)
        if required <= 1:
            return tracked
        if actor.discord_user_id is None:  # distinct people are told apart by Discord id
            message = (
                f"This production deploy needs {required} distinct deploy approvers in Discord; "
                "it cannot be approved from here. Nothing was sent to the factory."
            )
            await self._audit(
                actor,
                action="task.deploy_approval",
                task_id=task_id,
                request=request,
                outcome="refused",
                detail="no Discord identity to count as a distinct approver",
            )
            return Outcome("refused", message, tracked)
        added, approvals = await self.store.add_deploy_approval(
            task_id,
            DeployApproval(
                discord_user_id=actor.discord_user_id,
                name=actor.name,
                factory_user_id=self._factory_user_id(actor.discord_user_id),
                at=self.clock(),
            ),
        )
        count = len(approvals)
        if added:
            await self._audit(
                actor,
                action="task.deploy_approval",
                task_id=task_id,
                request=request,
                outcome="ok",
                detail=f"{count} of {required} deploy approvals",
            )
        if count >= required:
            fresh = await self.store.get_task(task_id)
            return fresh or tracked
        if not added:
            message = (
                f"You have already approved this deploy ({count} of {required} approvals). "
                "It needs a different deploy approver; nothing changed."
            )
            await self._audit(
                actor,
                action="task.deploy_approval",
                task_id=task_id,
                request=request,
                outcome="refused",
                detail="same approver twice",
            )
            return Outcome("refused", message, tracked)
        await self.refresh_message(task_id)
        missing = required - count
        if required == 2:
            more = "a second deploy approver approves"
        elif missing == 1:
            more = "one more deploy approver approves"
        else:
            more = f"{missing} more deploy approvers approve"
        return Outcome(
            "pending",
            f"✅ Your approval of **{_named(tracked)}** is recorded ({count} of {required}). "
            f"Nothing is sent to the factory until {more}.",
            tracked,
        )

    async def _audit_conflict(
        self,
        actor: Actor,
        decision: str,
        task_id: str,
        request: dict[str, Any],
        tracked: TrackedTask,
    ) -> None:
        await self._audit(
            actor,
            action=f"task.{decision}",
            task_id=task_id,
            request=request,
            outcome="conflict",
            detail=f"already {tracked.decision} by {tracked.decided_by}",
        )

    async def _send_decision(
        self,
        tracked: TrackedTask,
        decision: str,
        actor: Actor,
        notes: str | None,
        key: str,
        request: dict[str, Any],
        on_retry: ProgressCallback | None,
    ) -> Outcome:
        """Send a decision marked in flight and tell the truth about what became of it.

        Whatever fails, the decision never stays in flight unattended: it is confirmed,
        cleared (the factory refused it, or reading the task back shows it was not recorded)
        or handed to :attr:`resender`, which re-sends it in the background with the same
        ``Idempotency-Key`` (contract §7.1) and DMs the person the outcome. A timeout or an
        unreadable answer is not a "no": the task is read back (``GET /v1/tasks/{id}``) before
        anything is said.
        """
        task_id = tracked.task_id
        try:
            decision_data = self.decision_data(actor, self._deploy_approvers(tracked, decision))
            started = time.monotonic()
            try:
                task = await self.factory.complete_task(
                    task_id,
                    decision=decision,
                    notes=notes,
                    decision_data=decision_data,
                    idempotency_key=key,
                    on_retry=on_retry,
                )
            except FactoryError as exc:
                await self._clear_inflight(task_id, key)
                if exc.is_conflict:
                    return await self._conflicted(tracked, decision, actor, request)
                await self._audit(
                    actor,
                    action=f"task.{decision}",
                    task_id=task_id,
                    request=request,
                    outcome="failed",
                    detail=str(exc),
                )
                return Outcome(
                    "failed",
                    f"The factory refused the decision ({exc.code}: {inline_text(exc.message, 300)}). "
                    "Nothing was recorded.",
                    tracked,
                )
            except FactoryUnavailable as exc:
                if exc.uncertain:
                    return await self._unconfirmed(
                        tracked,
                        decision,
                        actor,
                        notes,
                        key,
                        request,
                        on_retry,
                        str(exc),
                    )
                await self._clear_inflight(task_id, key)
                await self._audit(
                    actor,
                    action=f"task.{decision}",
                    task_id=task_id,
                    request=request,
                    outcome="failed",
                    detail=str(exc),
                )
                return Outcome(
                    "failed",
                    "⚠️ The factory could not be reached, so your decision was NOT recorded. "
                    "The buttons are still live: please try again.",
                    tracked,
                )
            except Exception as exc:  # an answer nobody foresaw: the outcome is unknown
                log.exception("decision on task %s: unexpected error from the factory", task_id)
                return await self._unconfirmed(
                    tracked, decision, actor, notes, key, request, on_retry, repr(exc)
                )
            return await self._confirmed(
                tracked,
                task,
                decision,
                actor,
                notes,
                key,
                request,
                f"factory confirmed in {time.monotonic() - started:.2f}s",
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the bridge itself failed (e.g. a database write)
            log.exception("decision on task %s: the bridge failed while sending it", task_id)
            return await self._after_bridge_failure(tracked, key, exc)

    async def _confirmed(
        self,
        tracked: TrackedTask,
        task: Task,
        decision: str,
        actor: Actor,
        notes: str | None,
        key: str,
        request: dict[str, Any],
        detail: str,
    ) -> Outcome:
        """The factory confirmed ``decision`` (``task`` is its record): store, show, answer.

        When the bridge cannot store it (the database takes no write) the person is told
        that the factory recorded it all the same, and the decision stays in flight for a
        background re-send, which the factory answers by replaying its record (contract
        §7.1) and which stores it once the database is back.
        """
        task_id = tracked.task_id
        verb = DECISION_VERBS.get(decision, decision)
        try:
            confirmed = await self._record_confirmed(task, decision, actor, notes, request, detail)
        except Exception as exc:
            log.exception("decision on task %s confirmed by the factory but not stored", task_id)
            self._resend_in_background(task_id, notify=False)
            return Outcome(
                "done",
                f"✅ The factory recorded your decision: **{_named(tracked)}** {verb}. "
                f"⚠️ The bridge could not record it ({_reason(exc)}), so the task "
                "message may not show it until the bridge's database takes writes again.",
                tracked,
            )
        self._settle(task_id)
        await self._quietly(self.refresh_message(task_id), f"refresh the message of {task_id}")
        await self._quietly(self.escalation.task_changed(task_id), f"re-plan {task_id}")
        if confirmed.decision != decision:  # the factory's own record differs: say so
            return Outcome("conflict", self._conflict_message(confirmed), confirmed)
        return Outcome("done", f"Task **{_named(confirmed)}** {verb}.", confirmed)

    async def _unconfirmed(
        self,
        tracked: TrackedTask,
        decision: str,
        actor: Actor,
        notes: str | None,
        key: str,
        request: dict[str, Any],
        on_retry: ProgressCallback | None,
        problem: str,
    ) -> Outcome:
        """Every attempt timed out or was answered with something unreadable: the outcome is
        unknown, not a "no". The person is told so, the task is read back and the truth is
        told: recorded (shown as done, with the factory's ``decidedBy``), NOT recorded (the
        buttons are live again) or still unknown (the decision stays in flight and is re-sent
        in the background with the same ``Idempotency-Key``; the person gets a DM)."""
        task_id = tracked.task_id
        if on_retry is not None:
            await self._quietly(
                on_retry(
                    PROGRESS_NOTICE,
                    "⏳ Not confirmed yet: checking the task at the factory…",
                ),
                "tell the person the decision is being checked",
            )
        state, task = await self._read_back(task_id)
        if state == "decided" and task is not None:
            return await self._settle_from_factory(
                tracked,
                task,
                decision,
                actor,
                notes,
                key,
                request,
                f"unconfirmed ({problem}); read back",
            )
        if state in ("open", "gone"):
            await self._clear_inflight(task_id, key)
            await self._audit(
                actor,
                action=f"task.{decision}",
                task_id=task_id,
                request=request,
                outcome="failed",
                detail=f"unconfirmed ({problem}); read back: {state}, not recorded",
            )
            if state == "gone":
                return Outcome(
                    "failed",
                    "⚠️ The factory did not confirm your decision and no longer knows this "
                    "task: nothing was recorded.",
                    tracked,
                )
            return Outcome(
                "failed",
                "⚠️ The factory did not confirm your decision, and reading the task back shows "
                "it was NOT recorded. The buttons are still live: please try again.",
                tracked,
            )
        await self._audit(
            actor,
            action=f"task.{decision}",
            task_id=task_id,
            request=request,
            outcome="unknown",
            detail=f"unconfirmed ({problem}); task not readable; re-sent in the background",
        )
        self._resend_in_background(task_id, notify=True)
        return Outcome(
            "unconfirmed",
            "⚠️ Not confirmed yet: the factory did not answer in time and the task could not be "
            "read back. Your decision stays queued and is re-sent in the background with the "
            "same key (it cannot be recorded twice); you will get a DM with the outcome.",
            tracked,
        )

    async def _after_bridge_failure(
        self, tracked: TrackedTask, key: str, exc: Exception
    ) -> Outcome:
        """The bridge failed in the middle of a decision: if it is still in flight (or the
        store cannot tell), hand it to a background re-send and say so; otherwise it was
        settled before the failure, and the message shows how."""
        task_id = tracked.task_id
        name = inline_text(type(exc).__name__, 80)
        try:
            fresh = await self.store.get_task(task_id)
            still = fresh is not None and fresh.inflight_key == key
        except Exception:
            still = True
        if not still:
            return Outcome(
                "failed",
                f"⚠️ The bridge failed ({name}) after the factory answered; the task message "
                "shows what was recorded.",
                tracked,
            )
        self._resend_in_background(task_id, notify=True)
        return Outcome(
            "unconfirmed",
            f"⚠️ The bridge failed while recording your decision ({name}). It stays queued "
            "and is re-sent in the background with the same key (it cannot be recorded "
            "twice); you will get a DM with the outcome.",
            tracked,
        )

    async def _not_recorded_by_bridge(
        self,
        actor: Actor,
        decision: str,
        tracked: TrackedTask,
        request: dict[str, Any],
        exc: Exception,
    ) -> Outcome:
        """The bridge could not mark the decision in flight (its database takes no write):
        nothing was sent to the factory, and the person is told so."""
        log.error("decision on task %s not recorded by the bridge: %r", tracked.task_id, exc)
        await self._audit(
            actor,
            action=f"task.{decision}",
            task_id=tracked.task_id,
            request=request,
            outcome="failed",
            detail=f"the bridge could not record it: {exc!r}"[:500],
        )
        return Outcome(
            "failed",
            "⚠️ The bridge could not record your decision (its database is not taking writes: "
            f"{_reason(exc)}), so nothing was sent to the factory. "
            "The buttons are still live: please try again later.",
            tracked,
        )

    async def _read_back(self, task_id: str) -> tuple[str, Task | None]:
        """``GET /v1/tasks/{id}`` after an unconfirmed request.

        Returns ``("decided", task)``, ``("open", task)``, ``("gone", None)`` (404 / 410) or
        ``("unknown", None)`` when the factory could not be read.
        """
        try:
            task = await self.factory.get_task(task_id)
        except FactoryError as exc:
            if exc.status in (404, 410):
                return "gone", None
            log.warning("read-back of task %s refused: %s", task_id, exc)
            return "unknown", None
        except Exception as exc:
            log.warning("read-back of task %s failed: %r", task_id, exc)
            return "unknown", None
        return ("decided" if task.decision is not None else "open"), task

    def _decided_by(self, task: Task, actor: Actor) -> bool:
        """True when the factory's record of ``task`` is ``actor``'s decision (its
        ``decisionData`` names them, or its ``decidedBy`` is their factory id or name)."""
        who = task.decision_data.get("discordUserId")
        if who is not None and actor.discord_user_id is not None:
            return str(who) == str(actor.discord_user_id)
        names = {actor.name, self._factory_user_id(actor.discord_user_id)}
        return task.decided_by is not None and task.decided_by in names

    async def _settle_from_factory(
        self,
        tracked: TrackedTask,
        task: Task,
        decision: str,
        actor: Actor,
        notes: str | None,
        key: str,
        request: dict[str, Any],
        detail: str,
    ) -> Outcome:
        """The task read back is decided: ours (stored as confirmed, shown as done with the
        factory's ``decidedBy``) or someone else's (ours cleared, theirs shown)."""
        task_id = tracked.task_id
        if (
            task.decision is not None
            and task.decision.value == decision
            and self._decided_by(task, actor)
        ):
            outcome = await self._confirmed(
                tracked, task, decision, actor, notes, key, request, detail
            )
            if outcome.kind == "done" and task.decided_by:
                by = inline_text(task.decided_by, 100)
                outcome = Outcome(
                    "done",
                    f"{outcome.message} Confirmed by reading the task back: the factory "
                    f"records it as decided by {by}.",
                    outcome.tracked,
                )
            return outcome
        await self._clear_inflight(task_id, key)
        await self._audit_conflict(actor, decision, task_id, request, tracked)
        await self._apply_factory_task(task)
        fresh = await self.store.get_task(task_id)
        if fresh is not None and fresh.is_decided:
            return Outcome("conflict", self._conflict_message(fresh), fresh)
        return Outcome(
            "conflict",
            "Someone decided this task first; yours was not recorded.",
            fresh,
        )

    async def _clear_inflight(self, task_id: str, key: str) -> None:
        """Clear our in-flight mark (the factory did not record it); when the database takes
        no write the mark stays and a background re-send settles it later."""
        try:
            await self.store.abort_decision(task_id, key)
        except Exception as exc:
            log.error(
                "in-flight decision on %s not cleared (%r): settled in the background",
                task_id,
                exc,
            )
            self._resend_in_background(task_id, notify=False)

    def _resend_in_background(self, task_id: str, *, notify: bool) -> None:
        """Hand the decision in flight on ``task_id`` to :attr:`resender` (same key, with
        backoff) until it settles; ``notify`` DMs the clicker the outcome then."""

        async def attempt() -> bool:
            tracked = await self.store.get_task(task_id)
            if tracked is None or tracked.inflight_key is None or tracked.is_decided:
                return True
            await self.resume_decision(tracked, notify=notify, why="re-sent in the background")
            fresh = await self.store.get_task(task_id)
            return fresh is None or fresh.inflight_key != tracked.inflight_key

        if self.resender.schedule(task_id, attempt):
            log.info("decision in flight on %s handed to a background re-send", task_id)

    async def _quietly(self, work: Awaitable[Any], what: str) -> None:
        """Await ``work``; a failure is logged (the outcome told to the person stands)."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("could not %s", what)

    async def stop(self) -> None:
        """Stop background re-sends (what they carry stays in flight in the store and is
        re-sent at the next start, see :mod:`bot.reconcile`)."""
        await self.resender.stop()

    async def _refetch(self, task_id: str) -> TrackedTask | None:
        try:
            task = await self.factory.get_task(task_id)
        except (FactoryError, FactoryUnavailable) as exc:
            log.warning("could not re-read task %s after a conflict: %s", task_id, exc)
            return await self.store.get_task(task_id)
        return await self.track(task)

    # ------------------------------------------------------------------ acknowledge / snooze
    async def acknowledge(self, task_id: str, actor: Actor, *, idempotency_seed: str) -> Outcome:
        """Acknowledge a task: ``POST /v1/tasks/{id}/claim`` and "👀 acknowledged by @name".

        Acknowledging stops the reminder steps of the ladder (not the breach or critical).
        """
        tracked = await self.get_or_fetch(task_id)
        if tracked is None:
            return Outcome("unknown", f"Task `{task_id}` is not known to the factory.")
        if tracked.is_decided:
            return Outcome("conflict", self._conflict_message(tracked), tracked)
        refusal = self.refusal_for(tracked, "rejected", actor)  # an approver role, no deploy role
        if refusal is not None:
            await self._audit(
                actor,
                action="task.acknowledge",
                task_id=task_id,
                outcome="refused",
                detail=refusal,
            )
            return Outcome("refused", refusal.replace("decide", "acknowledge"), tracked)
        operator = (
            self.roster.by_discord_id(actor.discord_user_id) if actor.discord_user_id else None
        )
        try:
            await self.factory.claim_task(
                task_id,
                user_id=operator.factory_user_id if operator else None,
                idempotency_key=FactoryClient.new_idempotency_key(idempotency_seed),
            )
        except FactoryError as exc:
            if not exc.is_conflict:
                await self._audit(
                    actor,
                    action="task.acknowledge",
                    task_id=task_id,
                    outcome="failed",
                    detail=str(exc),
                )
                return Outcome(
                    "failed", f"The factory refused: {inline_text(exc.message, 300)}", tracked
                )
        except FactoryUnavailable as exc:
            if exc.uncertain:  # a timeout or an unreadable answer is not a "no": read back
                unconfirmed = await self._claim_unconfirmed(tracked, actor, str(exc))
                if unconfirmed is not None:
                    return unconfirmed
            else:
                await self._audit(
                    actor,
                    action="task.acknowledge",
                    task_id=task_id,
                    outcome="failed",
                    detail=str(exc),
                )
                return Outcome(
                    "failed",
                    "The factory could not be reached; not acknowledged. Try again.",
                    tracked,
                )
        except Exception as exc:  # an answer nobody foresaw: the outcome is unknown
            log.exception("acknowledging task %s: unexpected error from the factory", task_id)
            unconfirmed = await self._claim_unconfirmed(tracked, actor, repr(exc))
            if unconfirmed is not None:
                return unconfirmed
        try:
            await self.store.set_acknowledged(
                task_id, actor.discord_user_id or 0, actor.name, self.clock()
            )
        except Exception as exc:  # the database takes no write
            log.exception("acknowledgement of %s confirmed by the factory but not stored", task_id)
            return Outcome(
                "done",
                f"👀 The factory recorded your acknowledgement of **{_named(tracked)}**. ⚠️ The "
                f"bridge could not record it ({_reason(exc)}), so reminders may go on until its "
                "database takes writes again.",
                tracked,
            )
        await self._audit(
            actor,
            action="task.acknowledge",
            task_id=task_id,
            outcome="ok",
        )
        await self._quietly(self.refresh_message(task_id), f"refresh the message of {task_id}")
        await self._quietly(self.escalation.task_changed(task_id), f"re-plan {task_id}")
        return Outcome(
            "done",
            f"👀 You acknowledged **{_named(tracked)}**. Reminders stop; the SLA still applies.",
            tracked,
        )

    async def _claim_unconfirmed(
        self, tracked: TrackedTask, actor: Actor, problem: str
    ) -> Outcome | None:
        """A claim whose answer was lost or unreadable: read the task back.

        Returns ``None`` when the factory shows the task claimed (the acknowledgement goes
        ahead), else the truthful answer: decided meanwhile, NOT acknowledged, or unknown
        (then pressing Acknowledge again is safe: same request, contract §7.1).
        """
        task_id = tracked.task_id
        state, task = await self._read_back(task_id)
        if task is not None and task.claimed_by is not None and state == "open":
            await self._audit(
                actor,
                action="task.acknowledge",
                task_id=task_id,
                outcome="ok",
                detail=f"unconfirmed ({problem}); read back: claimed by {task.claimed_by}",
            )
            return None
        if state == "decided" and task is not None:
            await self._quietly(self._apply_factory_task(task), f"apply task {task_id}")
            fresh = await self.store.get_task(task_id)
            if fresh is not None and fresh.is_decided:
                return Outcome("conflict", self._conflict_message(fresh), fresh)
        recorded = "NOT" if state in ("open", "gone") else "unknown"
        await self._audit(
            actor,
            action="task.acknowledge",
            task_id=task_id,
            outcome="failed" if recorded == "NOT" else "unknown",
            detail=f"unconfirmed ({problem}); read back: {state}",
        )
        if recorded == "NOT":
            return Outcome(
                "failed",
                "⚠️ The factory did not confirm your acknowledgement, and reading the task back "
                "shows it was NOT recorded. Please try again.",
                tracked,
            )
        return Outcome(
            "failed",
            "⚠️ The factory did not confirm your acknowledgement and the task could not be "
            "read back, so it may or may not be recorded. Pressing Acknowledge again is safe.",
            tracked,
        )

    async def snooze(self, task_id: str, actor: Actor, seconds: float) -> Outcome:
        """Snooze reminders for ``seconds``; the SLA breach never moves (recorded by the bridge)."""
        tracked = await self.get_or_fetch(task_id)
        if tracked is None:
            return Outcome("unknown", f"Task `{task_id}` is not known to the factory.")
        if tracked.is_decided:
            return Outcome("conflict", self._conflict_message(tracked), tracked)
        refusal = self.refusal_for(tracked, "deferred", actor)
        if refusal is not None:
            await self._audit(
                actor,
                action="task.snooze",
                task_id=task_id,
                outcome="refused",
                detail=refusal,
            )
            return Outcome("refused", refusal.replace("decide", "snooze"), tracked)
        until = self.clock() + timedelta(seconds=seconds)
        await self.store.set_snoozed(task_id, until, actor.name)
        await self._audit(
            actor,
            action="task.snooze",
            task_id=task_id,
            request={"seconds": seconds},
            outcome="ok",
        )
        await self.refresh_message(task_id)
        await self.escalation.task_changed(task_id)
        return Outcome(
            "done",
            f"💤 Reminders for **{_named(tracked)}** snoozed until <t:{int(until.timestamp())}:f>. The SLA deadline does not move.",
            tracked,
        )
