"""What people do to a task, done once: decide, acknowledge, snooze, approve in bulk.

:class:`Actions` is the exactly-once decision protocol, written once and used by every way in:
task buttons and modals (``bot.discord.views.run_decision``), ``/factory approve|reject``, the
batch message's "Approve All Low-Risk" (:meth:`Actions.approve_bulk`), the ladder, and the
re-sends of decisions left in flight (:meth:`~bot.decision_send.DecisionSender.resume_decision`).

One decision (factory contract §7.1): role check (:mod:`escalation.permissions`); an already
decided task is answered with who decided; a production deploy collects its distinct approvers
first (:mod:`bot.deploy_approval`); a compare-and-set marks the decision in flight with its
``Idempotency-Key`` (:meth:`bot.store.Store.begin_decision`), so a second click loses and is
told who won; then :mod:`bot.decision_send` sends it and tells the truth about the outcome.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bot import outcomes as say
from bot.decision_context import PendingDecision
from bot.decision_send import DecisionSender
from bot.factory.client import FactoryClient, FactoryError, FactoryUnavailable
from bot.logs import task_log_context
from bot.outcomes import Actor, Outcome, ProgressCallback
from bot.store import TrackedTask
from escalation.models import TaskDecision, TaskStatus

__all__ = ["Actions", "BulkApproval", "BulkFailure"]

#: The audit ``request`` of each item of a bulk approval.
BULK_REQUEST = {"decision": "approved", "bulk": True}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BulkFailure:
    """One item of a bulk approval that was not approved.

    ``kind`` is ``conflict`` (decided by someone else), ``failed`` (the factory refused it)
    or ``unreported`` (the factory's answer does not mention it).
    """

    tracked: TrackedTask
    error: str
    kind: str


@dataclass(frozen=True)
class BulkApproval:
    """What :meth:`Actions.approve_bulk` did; ``sent`` is True once the factory was asked."""

    outcome: Outcome
    sent: bool = False
    approved: list[TrackedTask] = field(default_factory=list)
    failures: list[BulkFailure] = field(default_factory=list)


class Actions(DecisionSender):
    """The actions on tasks (see the module docstring); built and owned by the bridge."""

    # ------------------------------------------------------------------ checks
    async def _gate(
        self, task_id: str, decision: str, actor: Actor, *, role_check: bool = True
    ) -> tuple[Outcome | None, TrackedTask | None]:
        """Known, allowed, not decided yet: ``(None, task)``; otherwise the answer and task."""
        tracked = await self.board.get_or_fetch(task_id)
        if tracked is None:
            return Outcome("unknown", say.unknown_task(task_id)), None
        if role_check:
            refusal = self.refusal_for(tracked, decision, actor)
            if refusal is not None:
                return Outcome("refused", refusal, tracked), tracked
        if tracked.is_decided:
            return self._conflict(tracked), tracked
        return None, tracked

    async def check(
        self, task_id: str, decision: str, actor: Actor
    ) -> tuple[Outcome | None, TrackedTask | None]:
        """:meth:`precheck` without the audit write, with the task it read: one read, fast
        enough to run before answering an interaction (Discord: 3 s deadline). Audit a
        refusal afterwards with :meth:`audit_refusal`. ``(None, task)`` means go ahead."""
        return await self._gate(task_id, decision, actor)

    async def audit_refusal(
        self, task_id: str, decision: str, actor: Actor, outcome: Outcome
    ) -> None:
        """Audit what :meth:`check` refused (only ``refused`` outcomes are recorded)."""
        if outcome.kind == "refused":
            decision = TaskDecision(decision).value
            await self._audit_decision(actor, decision, task_id, None, "refused", outcome.message)

    async def precheck(self, task_id: str, decision: str, actor: Actor) -> Outcome | None:
        """Checks done before a modal opens or a decision is sent; ``None`` means go ahead.

        Returns an :class:`~bot.outcomes.Outcome` (already audited) when the task is unknown,
        the member lacks the role, or the task is already decided (then it says by whom and
        when).
        """
        outcome, _ = await self.check(task_id, decision, actor)
        if outcome is not None:
            await self.audit_refusal(task_id, decision, actor, outcome)
        return outcome

    # ------------------------------------------------------------------ decide
    @task_log_context
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
        skip_role_check:
            For callers that checked the roles already.
        option:
            The option chosen on a ``decision`` task, ``{"value", "label"}``: sent as
            ``decisionData.option`` with ``decision`` ``approved`` (contract §1.4
            ``TaskType``) and recorded in the audit.

        Returns
        -------
        Outcome
            ``done`` once the factory confirmed; ``conflict`` when someone decided first (the
            message is brought up to date); ``refused`` for a missing role; ``pending`` while
            a production deploy waits for more approvers; ``failed`` when the factory refused
            or stayed unreachable (nothing is shown as decided and the buttons stay live);
            ``unconfirmed`` when the outcome is not known yet (re-sent in the background, a
            DM follows); ``unknown`` for a task the factory does not know.
        """
        decision = TaskDecision(decision).value
        request: dict[str, Any] = {"decision": decision, "notes": notes}
        if option is not None:
            request["option"] = dict(option)
        outcome, tracked = await self._gate(
            task_id, decision, actor, role_check=not skip_role_check
        )
        if outcome is not None or tracked is None:
            assert outcome is not None
            if tracked is None:
                detail = "task unknown to the bridge and the factory"
                await self._audit_decision(actor, decision, task_id, request, "unknown", detail)
            elif outcome.kind == "refused":
                await self._audit_decision(
                    actor, decision, task_id, request, "refused", outcome.message
                )
            else:
                await self._audit_conflict(actor, decision, task_id, request, tracked)
            return outcome
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
                return self._conflict(settled)
            return Outcome("failed", say.BUSY, settled)
        self.settled.setdefault(task_id, asyncio.Event())
        if option is not None:
            self.inflight_options[key] = dict(option)
        outcome = None
        try:
            pending = PendingDecision(won, decision, actor, notes, key, request, option)
            outcome = await self._send_decision(pending, on_retry)
            return outcome
        finally:
            self._settle(task_id)
            if outcome is None or outcome.kind != "unconfirmed":  # no re-send will need it
                self.inflight_options.pop(key, None)

    # ------------------------------------------------------------------ bulk approval
    async def approve_bulk(
        self,
        items: list[TrackedTask],
        actor: Actor,
        *,
        idempotency_seed: str,
        batch_id: str | None = None,
    ) -> BulkApproval:
        """Approve ``items`` in ONE ``POST /v1/tasks/bulk`` (contract §1.5), exactly once each.

        Every item gets the single decision's role check and its own compare-and-set "decision
        in flight" (an item someone else is deciding is left alone); then one bulk request
        carries the approvals. Each item's result is confirmed (or cleared), audited with
        ``batch_id`` and its ladder re-planned. Nothing is shown as approved before the
        factory confirmed it.

        Parameters
        ----------
        items:
            The tasks to approve (pending, as seen at the click).
        actor:
            Who clicked.
        idempotency_seed:
            Stable per click (the interaction id): derives the bulk ``Idempotency-Key`` and
            each item's in-flight key (contract §7.1).
        batch_id:
            Recorded in every audit entry.

        Returns
        -------
        BulkApproval
            The answer (``done`` when at least one item was approved, listing any per-item
            failure too; ``refused``; ``conflict`` when every item is being decided by
            someone else; ``failed`` when the factory refused or stayed unreachable), the
            items approved and those that failed.
        """
        decision = TaskDecision.APPROVED.value

        async def audit(task_id: str, outcome: str, detail: str | None) -> None:
            await self._audit_decision(
                actor, decision, task_id, BULK_REQUEST, outcome, detail, batch_id=batch_id
            )

        allowed: list[TrackedTask] = []
        refusal: str | None = None
        for tracked in items:
            refusal_here = self.refusal_for(tracked, decision, actor)
            if refusal_here is None:
                allowed.append(tracked)
            else:
                refusal = refusal_here
                await audit(tracked.task_id, "refused", refusal_here)
        if not allowed:
            return BulkApproval(Outcome("refused", refusal or say.BULK_REFUSED))

        won: dict[str, tuple[TrackedTask, str]] = {}
        busy: list[TrackedTask] = []
        for tracked in allowed:
            key = FactoryClient.new_idempotency_key(f"{idempotency_seed}:{tracked.task_id}")
            claimed = await self.store.begin_decision(
                tracked.task_id,
                decision,
                discord_user_id=actor.discord_user_id,
                name=actor.name,
                key=key,
                notes=None,
            )
            if claimed is None:
                busy.append(tracked)
                await audit(tracked.task_id, "conflict", "another decision is being recorded")
            else:
                won[tracked.task_id] = (tracked, key)
        if not won:
            return BulkApproval(Outcome("conflict", say.BULK_ALL_BUSY))

        decision_data = self.decision_data(actor)
        try:
            result = await self.factory.bulk(
                action="approve",
                task_ids=list(won),
                notes=None,
                idempotency_key=FactoryClient.new_idempotency_key(idempotency_seed),
                decision_data=decision_data,
            )
        except (FactoryError, FactoryUnavailable) as exc:
            for task_id, (_, key) in won.items():
                await self._clear_inflight(task_id, key)
                await audit(task_id, "failed", str(exc))
            if isinstance(exc, FactoryUnavailable):
                text = say.BULK_UNREACHABLE
            else:
                text = say.factory_refused(exc, "the bulk approval")
            return BulkApproval(Outcome("failed", text), sent=True)

        now = self.clock()
        approved: list[TrackedTask] = []
        for task_id in result.succeeded:
            if task_id not in won:
                continue
            tracked = won[task_id][0]
            task = tracked.task.model_copy(
                update={
                    "status": TaskStatus.COMPLETED,
                    "decision": TaskDecision.APPROVED,
                    "decision_data": decision_data,
                    "decided_at": now,
                    "decided_by": decision_data["factoryUserId"] or actor.name,
                }
            )
            detail = "factory confirmed (bulk)"
            await self._record_confirmed(
                task, decision, actor, None, BULK_REQUEST, detail, batch_id=batch_id
            )
            approved.append(tracked)
        failures: list[BulkFailure] = []
        reported = set(result.succeeded)
        for failure in result.failed:
            task_id = str(failure.get("taskId"))
            if task_id not in won:
                continue
            reported.add(task_id)
            tracked, key = won[task_id]
            error = str(failure.get("error") or "failed")
            await self._clear_inflight(task_id, key)
            kind = "conflict" if error.upper().startswith("CONFLICT") else "failed"
            await audit(task_id, kind, error)
            if kind == "conflict":
                await self._refetch(task_id)
            failures.append(BulkFailure(tracked, error, kind))
        for task_id, (tracked, key) in won.items():  # ids the factory did not mention at all
            if task_id not in reported:
                await self._clear_inflight(task_id, key)
                await audit(task_id, "failed", "not in the factory's bulk answer")
                failures.append(BulkFailure(tracked, "not confirmed by the factory", "unreported"))
        for tracked in approved:
            await self.board.escalation.task_changed(tracked.task_id)
        summary = say.bulk_summary(
            approved, [(f.tracked, f.error) for f in failures], busy, refusal
        )
        kind = "done" if approved else "failed"
        return BulkApproval(Outcome(kind, summary), True, approved, failures)

    # ------------------------------------------------------------------ acknowledge / snooze
    async def _open_for(
        self, task_id: str, actor: Actor, action: str, as_decision: str
    ) -> tuple[Outcome | None, TrackedTask | None]:
        """The checks before acknowledging or snoozing: the task is known and open, and the
        member may ``as_decision`` it (role check); a refusal is audited as ``task.<action>``."""
        tracked = await self.board.get_or_fetch(task_id)
        if tracked is None:
            return Outcome("unknown", say.unknown_task(task_id)), None
        if tracked.is_decided:
            return self._conflict(tracked), tracked
        refusal = self.refusal_for(tracked, as_decision, actor)
        if refusal is not None:
            await self._audit(
                actor, action=f"task.{action}", task_id=task_id, outcome="refused", detail=refusal
            )
            return Outcome("refused", refusal.replace("decide", action), tracked), tracked
        return None, tracked

    @task_log_context
    async def acknowledge(self, task_id: str, actor: Actor, *, idempotency_seed: str) -> Outcome:
        """Acknowledge a task: ``POST /v1/tasks/{id}/claim`` and "👀 acknowledged by @name".

        Acknowledging stops the reminder steps of the ladder (not the breach or critical).
        The role needed is the one to reject the task (an approver role; no deploy role).
        """
        outcome, tracked = await self._open_for(task_id, actor, "acknowledge", "rejected")
        if outcome is not None or tracked is None:
            assert outcome is not None
            return outcome

        async def audit(outcome: str, detail: str | None = None) -> None:
            await self._audit(
                actor, action="task.acknowledge", task_id=task_id, outcome=outcome, detail=detail
            )

        try:
            await self.factory.claim_task(
                task_id,
                user_id=self._factory_user_id(actor.discord_user_id),
                idempotency_key=FactoryClient.new_idempotency_key(idempotency_seed),
            )
        except FactoryError as exc:
            if not exc.is_conflict:
                await audit("failed", str(exc))
                return Outcome("failed", say.ack_refused(exc), tracked)
        except FactoryUnavailable as exc:
            if not exc.uncertain:
                await audit("failed", str(exc))
                return Outcome("failed", say.ACK_UNREACHABLE, tracked)
            # a timeout or an unreadable answer is not a "no": read back
            unconfirmed = await self._claim_unconfirmed(tracked, actor, str(exc))
            if unconfirmed is not None:
                return unconfirmed
        except Exception as exc:  # an answer nobody foresaw: the outcome is unknown
            log.exception("acknowledging task %s: unexpected error from the factory", task_id)
            unconfirmed = await self._claim_unconfirmed(tracked, actor, repr(exc))
            if unconfirmed is not None:
                return unconfirmed
        try:
            await self.store.set_acknowledged(
                task_id, actor.discord_user_id or 0, say.acknowledger(actor), self.clock()
            )
        except Exception as exc:  # the database takes no write
            log.exception("acknowledgement of %s confirmed by the factory but not stored", task_id)
            return Outcome("done", say.acknowledged(tracked, exc), tracked)
        await audit("ok")
        await self._show_change(task_id)
        return Outcome("done", say.acknowledged(tracked), tracked)

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

        async def audit(outcome: str, detail: str) -> None:
            await self._audit(
                actor,
                action="task.acknowledge",
                task_id=task_id,
                outcome=outcome,
                detail=f"unconfirmed ({problem}); read back: {detail}",
            )

        if task is not None and task.claimed_by is not None and state == "open":
            await audit("ok", f"claimed by {task.claimed_by}")
            return None
        if state == "decided" and task is not None:
            await self._quietly(self.board.apply_factory_task(task), f"apply task {task_id}")
            fresh = await self.store.get_task(task_id)
            if fresh is not None and fresh.is_decided:
                return self._conflict(fresh)
        if state in ("open", "gone"):
            await audit("failed", state)
            return Outcome("failed", say.ACK_NOT_RECORDED, tracked)
        await audit("unknown", state)
        return Outcome("failed", say.ACK_UNKNOWN, tracked)

    @task_log_context
    async def snooze(self, task_id: str, actor: Actor, seconds: float) -> Outcome:
        """Snooze reminders for ``seconds``; the SLA breach never moves (recorded by the bridge).

        The role needed is the one to defer the task.
        """
        outcome, tracked = await self._open_for(task_id, actor, "snooze", "deferred")
        if outcome is not None or tracked is None:
            assert outcome is not None
            return outcome
        until = self.clock() + timedelta(seconds=seconds)
        await self.store.set_snoozed(task_id, until, actor.name)
        await self._audit(
            actor,
            action="task.snooze",
            task_id=task_id,
            request={"seconds": seconds},
            outcome="ok",
        )
        await self._show_change(task_id, quietly=False)
        return Outcome("done", say.snoozed(tracked, until, self.time_text), tracked)
