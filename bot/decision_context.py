"""What every action shares: its collaborators and the small steps they all take.

:class:`DecisionContext` is the base of :class:`bot.actions.Actions`: the audit writer (one
helper for every decision's audit entry), the in-process "decision settled" events, the
background :class:`~bot.resend.Resender`, the role check, ``decisionData``, reading a task
back, and storing a decision the factory confirmed. The bridge is reached only through the
:class:`TaskBoard` protocol (messages and tasks), so this package layer never imports it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from bot.factory.client import FactoryClient, FactoryError, FactoryUnavailable
from bot.keyed import KeyedLocks
from bot.outcomes import Actor, Outcome, TimeText, conflict_text, plain_time
from bot.resend import Resender
from bot.roster import Roster
from bot.settings import Settings
from bot.store import Store, TrackedTask
from escalation.deploy_guard import DeployApproval
from escalation.models import Task, TaskDecision
from escalation.permissions import decision_refusal

__all__ = ["DecisionContext", "DirectMessages", "Escalation", "PendingDecision", "TaskBoard"]

log = logging.getLogger(__name__)


@runtime_checkable
class DirectMessages(Protocol):
    """A notifier that can also DM a person (``bot.discord.notifier.DiscordNotifier`` can)."""

    async def send_dm(self, user_id: int, content: str) -> None:
        """DM ``user_id`` (no pings); raises when Discord refuses (e.g. DMs closed)."""
        ...


class Escalation(Protocol):
    """Hooks into the escalation ladder (``bot.ladder``); a no-op by default."""

    async def task_opened(self, tracked: TrackedTask) -> None:
        """A task is tracked and open: arm its ladder."""
        ...

    async def task_changed(self, task_id: str) -> None:
        """Ack, snooze or decision changed: re-plan (a decision stops the ladder)."""
        ...


class TaskBoard(Protocol):
    """What the actions need from the bridge: its tasks and their messages."""

    @property
    def notifier(self) -> object | None:
        """The Discord side (a :class:`DirectMessages` can DM people), once attached."""
        ...

    @property
    def escalation(self) -> Escalation:
        """The ladder hooks."""
        ...

    async def refresh_message(self, task_id: str) -> None:
        """Re-render the task's message from the store."""
        ...

    async def apply_factory_task(self, task: Task) -> None:
        """Store a task the factory changed and update its message."""
        ...

    async def track(self, task: Task) -> TrackedTask:
        """Store (or refresh) a task snapshot from the factory."""
        ...

    async def get_or_fetch(
        self, task_id: str, *, reread_approval: bool = True
    ) -> TrackedTask | None:
        """The tracked task; fetched from the factory when the bridge never saw it (raises
        the factory's error when it cannot be read, ``None`` for a 404 / 410)."""
        ...

    async def task_gone(self, task_id: str, reason: str) -> TrackedTask | None:
        """Close a task the factory no longer has (404 / 410) and show it."""
        ...


@dataclass(frozen=True)
class PendingDecision:
    """One decision marked in flight, on its way to the factory.

    ``key`` is its ``Idempotency-Key`` (contract §7.1: every request of the decision carries
    it); ``request`` is what the audit records of it; ``option`` is the option chosen on a
    ``decision`` task (``{"value", "label"}``, sent as ``decisionData.option``, contract §1.4).
    """

    tracked: TrackedTask
    decision: str
    actor: Actor
    notes: str | None
    key: str
    request: dict[str, Any]
    option: dict[str, str] | None = None

    @property
    def task_id(self) -> str:
        """The factory task id."""
        return self.tracked.task_id


class DecisionContext:
    """Collaborators and shared steps of the actions (subclassed by :class:`bot.actions.Actions`).

    Parameters
    ----------
    board:
        The bridge (tasks and messages).
    settings, store, factory, roster:
        Collaborators built by ``bot.app``.
    clock:
        Returns the current aware UTC datetime.
    time_text:
        Writes times in answers (Discord timestamps from the Discord adapter; plain UTC text
        by default).
    """

    def __init__(
        self,
        *,
        board: TaskBoard,
        settings: Settings,
        store: Store,
        factory: FactoryClient,
        roster: Roster,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        time_text: TimeText = plain_time,
    ) -> None:
        self.board = board
        self.settings = settings
        self.store = store
        self.factory = factory
        self.roster = roster
        self.clock = clock
        self.time_text = time_text
        #: In-process "the decision on this task settled" events (only while one is in flight).
        self.settled: dict[str, asyncio.Event] = {}
        #: Background re-sends of decisions whose outcome is not known yet.
        self.resender = Resender(base_seconds=settings.factory_retry_base_seconds)
        #: The option of each ``decision`` task's pick in flight, by ``Idempotency-Key``: a
        #: background re-send sends it again (the store keeps no option; after a restart it
        #: is unknown, see :meth:`bot.decision_send.DecisionSender.resume_decision`).
        self.inflight_options: dict[str, dict[str, str]] = {}
        #: One acknowledgement per task at a time (:meth:`bot.actions.Actions.acknowledge`).
        self.acknowledging: KeyedLocks[str] = KeyedLocks()

    # ------------------------------------------------------------------ audit
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

    async def _audit_decision(
        self,
        actor: Actor,
        decision: str,
        task_id: str,
        request: dict[str, Any] | None,
        outcome: str,
        detail: str | None,
        **extra: Any,
    ) -> None:
        """The audit entry ``task.<decision>`` of one decision, whatever its outcome."""
        await self._audit(
            actor,
            action=f"task.{decision}",
            task_id=task_id,
            request=request,
            outcome=outcome,
            detail=detail,
            **extra,
        )

    async def _audit_conflict(
        self,
        actor: Actor,
        decision: str,
        task_id: str,
        request: dict[str, Any],
        tracked: TrackedTask,
    ) -> None:
        """Audit a decision that found the task decided already (by ``tracked``'s decider)."""
        detail = f"already {tracked.decision} by {tracked.decided_by}"
        await self._audit_decision(actor, decision, task_id, request, "conflict", detail)

    async def _audit_pending(self, pending: PendingDecision, outcome: str, detail: str) -> None:
        """The audit entry of a decision in flight (see :meth:`_audit_decision`)."""
        await self._audit_decision(
            pending.actor, pending.decision, pending.task_id, pending.request, outcome, detail
        )

    async def _audit_pending_conflict(self, pending: PendingDecision, tracked: TrackedTask) -> None:
        """Audit a decision in flight that found the task decided by ``tracked``'s decider."""
        await self._audit_conflict(
            pending.actor, pending.decision, pending.task_id, pending.request, tracked
        )

    # ------------------------------------------------------------------ settling
    def _settle(self, task_id: str) -> None:
        """Wake whoever waits for the decision in flight on ``task_id`` (and forget it)."""
        event = self.settled.pop(task_id, None)
        if event is not None:
            event.set()

    def may_still_land(self, tracked: TrackedTask) -> bool:
        """Whether a request of the decision in flight on ``tracked`` may still reach the
        factory: it was marked less than one call's longest run ago
        (:meth:`bot.factory.retries.RetryPolicy.longest_seconds` of ``FACTORY_TIMEOUT_SECONDS``):
        a process paused or killed mid-send left it, and its request may be on the way."""
        at = tracked.inflight_at
        longest = self.factory.retry.longest_seconds(self.settings.factory_timeout_seconds)
        return at is not None and (self.clock() - at).total_seconds() < longest

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
            event = self.settled.get(task_id)
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

    async def _quietly(self, work: Awaitable[Any], what: str) -> None:
        """Await ``work``; a failure is logged (the outcome told to the person stands)."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("could not %s", what)

    async def _show_change(self, task_id: str, *, quietly: bool = True) -> None:
        """Bring the task's message up to date and re-plan its ladder.

        ``quietly`` logs a failure of either instead of raising it (the outcome stands).
        """
        if not quietly:
            await self.board.refresh_message(task_id)
            await self.board.escalation.task_changed(task_id)
            return
        await self._quietly(
            self.board.refresh_message(task_id), f"refresh the message of {task_id}"
        )
        await self._quietly(self.board.escalation.task_changed(task_id), f"re-plan {task_id}")

    # ------------------------------------------------------------------ who may, who did
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

    def _conflict(self, tracked: TrackedTask) -> Outcome:
        """The ``conflict`` answer for a task already decided: by whom and when."""
        return Outcome("conflict", conflict_text(tracked, self.time_text), tracked)

    def _factory_user_id(self, discord_user_id: int | None) -> str | None:
        operator = self.roster.by_discord_id(discord_user_id) if discord_user_id else None
        return operator.factory_user_id if operator else None

    def decision_data(
        self,
        actor: Actor,
        approvers: tuple[DeployApproval, ...] = (),
        option: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """``decisionData`` sent with a decision: who decided and through what.

        ``{"source": "discord" | via, "discordUserId", "discordUsername", "factoryUserId"}``;
        ``factoryUserId`` comes from the roster (``None`` for someone not in it). The approval
        of a production deploy adds ``approvers``: every deploy approver, ``[{discordUserId,
        name, factoryUserId, at}]`` oldest first (two-person rule, contract §1.4
        ``Approval.requiredApprovers``). The choice on a ``decision`` task adds ``option``
        ``{"value", "label"}`` (contract §1.4 ``TaskType`` "decision").
        """
        data: dict[str, Any] = {
            "source": "discord" if actor.discord_user_id else actor.via,
            "discordUserId": str(actor.discord_user_id) if actor.discord_user_id else None,
            "discordUsername": actor.name,
            "factoryUserId": self._factory_user_id(actor.discord_user_id),
        }
        if approvers:
            data["approvers"] = [a.to_wire() for a in approvers]
        if option is not None:
            data["option"] = dict(option)
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

    def _decided_by(self, task: Task, actor: Actor) -> bool:
        """True when the factory's record of ``task`` is ``actor``'s decision (its
        ``decisionData`` names them, or its ``decidedBy`` is their factory id or name)."""
        who = task.decision_data.get("discordUserId")
        if who is not None and actor.discord_user_id is not None:
            return str(who) == str(actor.discord_user_id)
        names = {actor.name, self._factory_user_id(actor.discord_user_id)}
        return task.decided_by is not None and task.decided_by in names

    # ------------------------------------------------------------------ the factory's record
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

    async def _refetch(self, task_id: str) -> TrackedTask | None:
        """Re-read a task the factory says is decided (so its message shows by whom); the
        stored task when the factory cannot be read."""
        try:
            task = await self.factory.get_task(task_id)
        except (FactoryError, FactoryUnavailable) as exc:
            log.warning("could not re-read task %s after a conflict: %s", task_id, exc)
            return await self.store.get_task(task_id)
        return await self.board.track(task)

    async def _record_confirmed(
        self,
        task: Task,
        decision: str,
        actor: Actor,
        notes: str | None,
        request: dict[str, Any],
        detail: str,
        **extra: Any,
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
        await self._audit_decision(actor, decision, task.id, request, "ok", detail, **extra)
        log.info("task %s %s by %s (%s): %s", task.id, decision, actor.name, actor.via, detail)
        return confirmed
