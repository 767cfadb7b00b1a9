"""Approve All Low-Risk: many approvals in one ``POST /v1/tasks/bulk``, each exactly once.

The batch message's button (:mod:`bot.discord.batch_messages`) approves the low-risk items of a
batch in one request (factory contract §1.5 ``BulkAction``). Each item gets what a single
decision gets (:mod:`bot.actions`): the role check, its own compare-and-set "decision in
flight" with its own ``Idempotency-Key``, the factory's per-item result confirmed or cleared,
an audit entry naming the batch. A bulk request whose outcome is unknown (contract §7.1: a
timeout is not a "no") is read back item by item before anything is said.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from batching.keys import batch_key
from bot import outcomes as say
from bot.decision_send import DecisionSender
from bot.factory.client import FactoryClient, FactoryError, FactoryUnavailable
from bot.outcomes import Actor, Outcome
from bot.store import TrackedTask
from escalation.models import TaskDecision, TaskStatus

log = logging.getLogger(__name__)

__all__ = ["BULK_REQUEST", "BulkApproval", "BulkApprovals", "BulkFailure", "not_in_bulk"]

#: The audit ``request`` of each item of a bulk approval.
BULK_REQUEST = {"decision": "approved", "bulk": True}


def not_in_bulk(tracked: TrackedTask) -> str | None:
    """Why ``tracked`` may not be approved in bulk now (``None``: it may): a possible
    production deploy (:mod:`escalation.deploy_guard`: it needs its own typed DEPLOY) or a
    task no longer routine (escalated to high or critical: :func:`batching.keys.batch_key`),
    which needs its own decision."""
    if tracked.guarded:
        return say.BULK_GUARDED
    if batch_key(tracked.task, guarded=False) is None:
        return say.BULK_NOT_ROUTINE
    return None


@dataclass(frozen=True)
class BulkFailure:
    """One item of a bulk approval that was not approved.

    ``kind`` is ``conflict`` (decided by someone else), ``failed`` (the factory refused it,
    or reading it back showed it not recorded), ``unreported`` (the factory's answer does not
    mention it) or ``unconfirmed`` (the outcome is unknown: still in flight, re-sent in the
    background with its own key, and the clicker gets a DM once it settles).
    """

    tracked: TrackedTask
    error: str
    kind: str


@dataclass(frozen=True)
class BulkApproval:
    """What :meth:`BulkApprovals.approve_bulk` did; ``sent`` is True once the factory was asked."""

    outcome: Outcome
    sent: bool = False
    approved: list[TrackedTask] = field(default_factory=list)
    failures: list[BulkFailure] = field(default_factory=list)


class BulkApprovals(DecisionSender):
    """The bulk approval step of :class:`bot.actions.Actions`."""

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
        for seen in items:
            # as stored now, not as seen at the click: an approval.pending that landed since
            # may have made it a production deploy, which is never approved in bulk
            tracked = await self.store.get_task(seen.task_id) or seen
            refusal_bulk = not_in_bulk(tracked)
            if refusal_bulk is not None:
                refusal = refusal_bulk
                await audit(tracked.task_id, "refused", refusal)
                continue
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
            try:
                claimed = await self.store.begin_decision(
                    tracked.task_id,
                    decision,
                    discord_user_id=actor.discord_user_id,
                    name=actor.name,
                    key=key,
                    notes=None,
                )
            except Exception as exc:  # the database takes no write: nothing is sent
                # every mark of this click given back, this one too (its commit's answer
                # may be lost), or they would hold off later clicks and be sent at the
                # next start though the person is told nothing was
                marks = {task_id: mark for task_id, (_, mark) in won.items()}
                marks[tracked.task_id] = key
                log.error("bulk approval not recorded by the bridge: %r", exc)
                for task_id, mark in marks.items():
                    await self._give_back_mark(task_id, mark)
                    await audit(task_id, "failed", f"the bridge could not record it: {exc!r}"[:500])
                return BulkApproval(Outcome("failed", say.not_marked(exc)))
            if claimed is None:
                busy.append(tracked)
                await audit(tracked.task_id, "conflict", "another decision is being recorded")
            elif not_in_bulk(claimed) is not None:
                # checked again on the claimed row (same transaction as the claim): an
                # approval.pending or an escalation that landed after the reads above must
                # not ride along (the single decision does the same, bot.actions)
                await self.store.abort_decision(claimed.task_id, key)
                refusal = not_in_bulk(claimed)
                await audit(claimed.task_id, "refused", refusal)
            else:
                won[tracked.task_id] = (tracked, key)
        if not won:
            if not busy:  # every item became a deploy or urgent meanwhile
                return BulkApproval(Outcome("refused", refusal or say.BULK_REFUSED))
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
        except FactoryUnavailable as exc:
            if exc.uncertain:  # a timeout or an unreadable answer is not a "no": read back
                read = await self._read_back_items(won, actor, audit, str(exc), batch_id)
                return await self._bulk_answer(*read, busy, refusal)
            for task_id, (_, key) in won.items():
                await self._clear_inflight(task_id, key)
                await audit(task_id, "failed", str(exc))
            return BulkApproval(Outcome("failed", say.BULK_UNREACHABLE), sent=True)
        except FactoryError as exc:
            for task_id, (_, key) in won.items():
                await self._clear_inflight(task_id, key)
                await audit(task_id, "failed", str(exc))
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
        return await self._bulk_answer(approved, failures, busy, refusal)

    async def _bulk_answer(
        self,
        approved: list[TrackedTask],
        failures: list[BulkFailure],
        busy: list[TrackedTask],
        refusal: str | None,
    ) -> BulkApproval:
        """Re-plan the approved items' ladders and say what the bulk approval did."""
        for tracked in approved:
            await self.board.escalation.task_changed(tracked.task_id)
        unconfirmed = [f.tracked for f in failures if f.kind == "unconfirmed"]
        summary = say.bulk_summary(
            approved,
            [(f.tracked, f.error) for f in failures if f.kind != "unconfirmed"],
            busy,
            refusal,
            unconfirmed=unconfirmed,
        )
        kind = "done" if approved else "unconfirmed" if unconfirmed else "failed"
        return BulkApproval(Outcome(kind, summary), True, approved, failures)

    async def _read_back_items(
        self,
        won: dict[str, tuple[TrackedTask, str]],
        actor: Actor,
        audit: Callable[[str, str, str | None], Awaitable[None]],
        problem: str,
        batch_id: str | None,
    ) -> tuple[list[TrackedTask], list[BulkFailure]]:
        """The bulk request's outcome is unknown (every attempt timed out or was answered
        with something unreadable; the factory may have approved every item): each item is
        read back (``GET /v1/tasks/{id}``), as a single decision is (contract §7.1).

        Approved by this person: confirmed. Decided otherwise: a conflict, the factory's
        record shown. Open or gone: NOT recorded, its buttons live again. Not readable: it
        stays in flight and is re-sent in the background with its own ``Idempotency-Key``
        (a factory that did approve it answers 409 and the read back settles it as done),
        and the clicker gets a DM with the outcome.

        Parameters
        ----------
        won:
            Task id → (the task as seen at the click, its in-flight key).
        actor:
            Who clicked.
        audit:
            ``audit(task_id, outcome, detail)`` for each item.
        problem:
            Why the bulk request is unconfirmed, for the audit.
        batch_id:
            The batch message's id, recorded with each confirmed item.
        """
        decision = TaskDecision.APPROVED.value
        unconfirmed = f"unconfirmed ({problem})"
        approved: list[TrackedTask] = []
        failures: list[BulkFailure] = []
        for task_id, (tracked, key) in won.items():
            state, found = await self._read_back(task_id)
            if state == "decided" and found is not None and found.decision is not None:
                if found.decision.value == decision and self._decided_by(found, actor):
                    detail = f"{unconfirmed}; read back"
                    await self._record_confirmed(
                        found, decision, actor, None, BULK_REQUEST, detail, batch_id=batch_id
                    )
                    approved.append(tracked)
                    continue
                await self._clear_inflight(task_id, key)
                await self.board.apply_factory_task(found)
                fresh = await self.store.get_task(task_id) or tracked
                by = found.decided_by or "someone"
                error = f"already {found.decision.value} by {by}"
                await audit(task_id, "conflict", f"{unconfirmed}; read back: {error}")
                failures.append(BulkFailure(fresh, error, "conflict"))
            elif state in ("open", "gone"):
                await self._clear_inflight(task_id, key)
                await audit(task_id, "failed", f"{unconfirmed}; read back: {state}, not recorded")
                failures.append(BulkFailure(tracked, "NOT recorded by the factory", "failed"))
            else:
                detail = f"{unconfirmed}; task not readable; re-sent in the background"
                await audit(task_id, "unknown", detail)
                self._resend_in_background(task_id, notify=True)
                failures.append(BulkFailure(tracked, "not confirmed yet", "unconfirmed"))
        return approved, failures
