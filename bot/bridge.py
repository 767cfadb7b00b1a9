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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from bot.factory.client import FactoryClient, FactoryError, FactoryUnavailable
from bot.factory.events import (
    ApprovalPayload,
    FactoryEvent,
    TaskCompletedPayload,
    TaskPayload,
)
from bot.roster import Roster
from bot.settings import Settings
from bot.store import Store, TrackedTask
from escalation.models import Task, TaskDecision
from escalation.permissions import decision_refusal

__all__ = ["SYSTEM", "Actor", "Bridge", "Notifier", "Outcome"]

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

    ``kind`` is ``done``, ``refused``, ``conflict``, ``failed`` or ``unknown``.
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


ProgressCallback = Callable[[int, str], Awaitable[None]]

DECISION_VERBS = {
    "approved": "approved",
    "rejected": "rejected",
    "deferred": "deferred",
    "escalated": "escalated",
}


def _who_decided(tracked: TrackedTask) -> str:
    if tracked.decided_by_discord_id:
        return f"<@{tracked.decided_by_discord_id}>"
    return tracked.decided_by or "someone else"


def _when(at: datetime | None) -> str:
    return f" <t:{int(at.timestamp())}:R>" if at else ""


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
        self._message_locks: dict[str, asyncio.Lock] = {}
        self._decisions_settled: dict[str, asyncio.Event] = {}
        self.batcher: Any = None  # set by the batching runtime (issue: smart batching)

    async def _audit(self, actor: Actor, **entry: Any) -> None:
        """Append an audit entry for ``actor`` (see :meth:`bot.store.Store.audit`)."""
        await self.store.audit(
            actor_id=str(actor.discord_user_id) if actor.discord_user_id else None,
            actor_name=actor.name,
            via=actor.via,
            **entry,
        )

    def decision_data(self, actor: Actor) -> dict[str, Any]:
        """``decisionData`` sent with a decision: who decided and through what.

        ``{"source": "discord" | via, "discordUserId", "discordUsername", "factoryUserId"}``;
        ``factoryUserId`` comes from the roster (``None`` for someone not in it).
        """
        operator = (
            self.roster.by_discord_id(actor.discord_user_id) if actor.discord_user_id else None
        )
        return {
            "source": "discord" if actor.discord_user_id else actor.via,
            "discordUserId": str(actor.discord_user_id) if actor.discord_user_id else None,
            "discordUsername": actor.name,
            "factoryUserId": operator.factory_user_id if operator else None,
        }

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

    def _lock(self, task_id: str) -> asyncio.Lock:
        lock = self._message_locks.get(task_id)
        if lock is None:
            lock = self._message_locks[task_id] = asyncio.Lock()
        return lock

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
        if self.batcher is not None and await self.batcher.offer(tracked):
            return tracked
        return await self.post_single(tracked)

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
        known = await self.store.get_task(task.id)
        tracked = await self.track(task)
        if known is None and not tracked.is_decided:
            await self.show_task(task)
            return
        if task.claimed_by and tracked.acknowledged_at is None:
            await self.store.set_acknowledged(
                task.id, 0, task.claimed_by, task.claimed_at or self.clock()
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

    async def resume_decision(self, tracked: TrackedTask) -> Outcome:
        """Re-send a decision a crash left in flight, with its original ``Idempotency-Key``.

        The factory answers 200 (it executes the decision, or replays its first answer when
        the original request had arrived — contract §7.1) or 409 (the task was decided, by
        this decision or another one): both settle it, and the message is brought up to date.
        When the factory cannot be reached the decision stays in flight and is tried again by
        the next reconciliation; any other refusal clears it (the buttons are live again).

        Parameters
        ----------
        tracked:
            A task from :meth:`bot.store.Store.inflight_decisions`.

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
        notes = tracked.inflight_notes
        request = {"decision": decision, "notes": notes, "idempotencyKey": key}
        decision_data = self.decision_data(actor)
        try:
            task = await self.factory.complete_task(
                task_id,
                decision=decision,
                notes=notes,
                decision_data=decision_data,
                idempotency_key=key,
            )
        except FactoryUnavailable as exc:
            await self._audit(
                actor,
                action=f"task.{decision}",
                task_id=task_id,
                request=request,
                outcome="failed",
                detail=f"re-send after restart: {exc}; still in flight, retried later",
            )
            return Outcome("failed", str(exc), tracked)
        except FactoryError as exc:
            await self.store.abort_decision(task_id, key)
            if exc.is_conflict:
                return await self._conflicted(tracked, decision, actor, request)
            await self._audit(
                actor,
                action=f"task.{decision}",
                task_id=task_id,
                request=request,
                outcome="failed",
                detail=f"re-send after restart refused: {exc}",
            )
            await self.refresh_message(task_id)
            return Outcome("failed", str(exc), tracked)
        confirmed = await self._record_confirmed(
            task, decision, actor, notes, request, "re-sent after restart; factory confirmed"
        )
        self._settle(task_id)
        await self.refresh_message(task_id)
        await self.escalation.task_changed(task_id)
        if confirmed.decision != decision:
            return Outcome("conflict", self._conflict_message(confirmed), confirmed)
        return Outcome("done", f"Task **{confirmed.task.title}** {decision}.", confirmed)

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

        key = FactoryClient.new_idempotency_key(idempotency_seed)
        won = await self.store.begin_decision(
            task_id,
            decision,
            discord_user_id=actor.discord_user_id,
            name=actor.name,
            key=key,
            notes=notes,
        )
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
        task_id = tracked.task_id
        decision_data = self.decision_data(actor)
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
            await self.store.abort_decision(task_id, key)
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
                f"The factory refused the decision ({exc.code}: {exc.message}). Nothing was recorded.",
                tracked,
            )
        except FactoryUnavailable as exc:
            await self.store.abort_decision(task_id, key)
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
        confirmed = await self._record_confirmed(
            task,
            decision,
            actor,
            notes,
            request,
            f"factory confirmed in {time.monotonic() - started:.2f}s",
        )
        self._settle(task_id)
        await self.refresh_message(task_id)
        await self.escalation.task_changed(task_id)
        if confirmed.decision != decision:  # the factory's own record differs: say so
            return Outcome("conflict", self._conflict_message(confirmed), confirmed)
        verb = DECISION_VERBS[decision]
        return Outcome("done", f"Task **{confirmed.task.title}** {verb}.", confirmed)

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
                return Outcome("failed", f"The factory refused: {exc.message}", tracked)
        except FactoryUnavailable as exc:
            await self._audit(
                actor,
                action="task.acknowledge",
                task_id=task_id,
                outcome="failed",
                detail=str(exc),
            )
            return Outcome(
                "failed", "The factory could not be reached; not acknowledged. Try again.", tracked
            )
        await self.store.set_acknowledged(
            task_id, actor.discord_user_id or 0, actor.name, self.clock()
        )
        await self._audit(
            actor,
            action="task.acknowledge",
            task_id=task_id,
            outcome="ok",
        )
        await self.refresh_message(task_id)
        await self.escalation.task_changed(task_id)
        return Outcome(
            "done",
            f"👀 You acknowledged **{tracked.task.title}**. Reminders stop; the SLA still applies.",
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
            f"💤 Reminders for **{tracked.task.title}** snoozed until <t:{int(until.timestamp())}:f>. The SLA deadline does not move.",
            tracked,
        )
