"""Sending a decision marked in flight, and telling the truth about what became of it.

Exactly once, per factory contract §7.1: every request of one decision carries the same
``Idempotency-Key``; a 409 means someone decided first; a timeout or an unreadable answer is
not a "no" — the task is read back (``GET /v1/tasks/{id}``) before anything is said, and a
decision whose outcome stays unknown is re-sent in the background with the same key
(:class:`bot.resend.Resender`) until it settles, and its clicker gets a DM then.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from bot import outcomes as say
from bot.decision_context import DirectMessages, PendingDecision
from bot.deploy_approval import DeployApprovals
from bot.factory.client import FactoryError, FactoryUnavailable
from bot.outcomes import PROGRESS_NOTICE, Actor, Outcome, ProgressCallback
from bot.store import TrackedTask
from escalation.models import Task, TaskDecision
from escalation.task_kinds import decision_options

__all__ = ["DecisionSender"]

log = logging.getLogger(__name__)


def _needs_option(tracked: TrackedTask, decision: str) -> bool:
    """True when approving ``tracked`` is picking one of its options (a ``decision`` task with
    options, not a production deploy: contract §1.4 ``TaskType``)."""
    return (
        decision == TaskDecision.APPROVED.value
        and not tracked.guarded
        and bool(decision_options(tracked.task).options)
    )


def _answer_problem(pending: PendingDecision, task: Task) -> str | None:
    """Why a success answer to ``POST /v1/tasks/{id}/complete`` does not confirm the
    decision, or ``None`` when it is the task decided (contract §1.5: the answer is the
    updated ``Task``). A record of another task, or of this one still undecided, confirms
    nothing: the outcome is unknown and the task is read back. A record decided otherwise
    is someone else's decision (the caller settles it as such)."""
    if task.id != pending.task_id:
        return f"with another task ({task.id[:64]!r})"
    if task.decision is None:
        return "with the task still undecided"
    return None


class DecisionSender(DeployApprovals):
    """The send / confirm / read-back / re-send steps of :class:`bot.actions.Actions`."""

    async def _send_decision(
        self, pending: PendingDecision, on_retry: ProgressCallback | None
    ) -> Outcome:
        """Send a decision marked in flight and tell the truth about what became of it.

        Whatever fails, the decision never stays in flight unattended: it is confirmed,
        cleared (the factory refused it, or reading the task back shows it was not recorded)
        or handed to :attr:`resender`, which re-sends it in the background with the same
        ``Idempotency-Key`` (contract §7.1) and DMs the person the outcome. A timeout or an
        unreadable answer is not a "no": the task is read back (``GET /v1/tasks/{id}``) before
        anything is said.
        """
        task_id = pending.task_id
        try:
            started = time.monotonic()
            try:
                task = await self._complete(pending, on_retry)
            except FactoryError as exc:
                if exc.is_conflict:
                    return await self._on_conflict(pending, "409")
                refused = await self._not_recorded(pending, str(exc), say.factory_refused(exc))
                # a 404/410: closed here too once reading the task back says it is gone (a
                # proxy's 404 for the route alone must not close a task the factory has)
                if exc.status in (404, 410) and (await self._read_back(task_id))[0] == "gone":
                    await self._close_gone(task_id, f"the factory answered {exc.status} to it")
                return refused
            except FactoryUnavailable as exc:
                if exc.uncertain:
                    return await self._unconfirmed(pending, on_retry, str(exc))
                return await self._not_recorded(pending, str(exc), say.UNREACHABLE)
            except Exception as exc:  # an answer nobody foresaw: the outcome is unknown
                log.exception("decision on task %s: unexpected error from the factory", task_id)
                return await self._unconfirmed(pending, on_retry, repr(exc))
            problem = _answer_problem(pending, task)
            if problem is None and not self._answer_is_ours(pending, task):
                # another verdict or person's: one already decided is a 409 (contract §7.1),
                # so the record is read back before anyone is told theirs was not kept
                problem = "another decision"
            if problem is not None:  # a 200 that does not say the decision was recorded
                log.warning("decision on task %s: the factory answered %s", task_id, problem)
                return await self._unconfirmed(pending, on_retry, problem)
            detail = f"factory confirmed in {time.monotonic() - started:.2f}s"
            return await self._confirmed(pending, task, detail)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the bridge itself failed (e.g. a database write)
            log.exception("decision on task %s: the bridge failed while sending it", task_id)
            return await self._after_bridge_failure(pending.tracked, pending.key, exc)

    def _answer_is_ours(self, pending: PendingDecision, task: Task) -> bool:
        """True when the factory's decided record ``task``, its answer to our ``POST
        /v1/tasks/{id}/complete``, is this decision: the same verdict, and not positively
        someone else's.

        A 200 is normally our own request's record (or its idempotent replay, contract §7.1);
        a factory may record ``decidedBy`` as the user of the API key (a UUID the bridge does
        not know, contract §1.4), so an unknown ``decidedBy`` proves nothing. The record is
        someone else's decision only when it names another person:
        ``decisionData.discordUserId`` that is not ``pending.actor``'s (or any, answering the
        ladder's safe default, which has none), or a ``decidedBy`` that is another roster
        operator's factory id or name — then the ladder's safe default must not take credit
        for a human's, nor Alice for Bob's.
        """
        if task.decision is None or task.decision.value != pending.decision:
            return False
        actor = pending.actor
        who = task.decision_data.get("discordUserId")
        if who is not None:
            return actor.discord_user_id is not None and str(who) == str(actor.discord_user_id)
        named = task.decided_by
        if named is None or named == actor.name:
            return True
        other = self.roster.by_factory_id(named) or next(
            (o for o in self.roster.operators if o.name == named), None
        )
        if other is None:
            return True
        return actor.discord_user_id is not None and other.discord_user_id == actor.discord_user_id

    async def _complete(
        self, pending: PendingDecision, on_retry: ProgressCallback | None = None
    ) -> Task:
        """``POST /v1/tasks/{id}/complete`` with the decision's key and ``decisionData``
        (retried by the client per contract §7.1; ``on_retry`` hears of each retry)."""
        approvers = self._deploy_approvers(pending.tracked, pending.decision)
        return await self.factory.complete_task(
            pending.task_id,
            decision=pending.decision,
            notes=pending.notes,
            decision_data=self.decision_data(pending.actor, approvers, pending.option),
            idempotency_key=pending.key,
            on_retry=on_retry,
        )

    async def _confirmed(self, pending: PendingDecision, task: Task, detail: str) -> Outcome:
        """The factory confirmed the decision (``task`` is its record): store, show, answer.

        When the bridge cannot store it (the database takes no write) the person is told
        that the factory recorded it all the same, and the decision stays in flight for a
        background re-send, which the factory answers by replaying its record (contract
        §7.1) and which stores it once the database is back.
        """
        try:
            return await self._store_confirmed(pending, task, detail)
        except Exception as exc:
            task_id, tracked = pending.task_id, pending.tracked
            log.exception("decision on task %s confirmed by the factory but not stored", task_id)
            self._resend_in_background(task_id, notify=False)
            message = say.recorded_not_stored(tracked, pending.decision, exc)
            return Outcome("done", message, tracked)

    async def _store_confirmed(self, pending: PendingDecision, task: Task, detail: str) -> Outcome:
        """Store and audit a decision the factory confirmed, wake whoever waits for it, show
        it, stop the ladder and answer (``conflict`` when the factory's own record differs).
        A failure to store it is raised."""
        decision = pending.decision
        confirmed = await self._record_confirmed(
            task, decision, pending.actor, pending.notes, pending.request, detail
        )
        self._settle(confirmed.task_id)
        await self._show_change(confirmed.task_id)
        if confirmed.decision != decision:
            return self._conflict(confirmed)
        return Outcome("done", say.done(confirmed, decision), confirmed)

    async def _not_recorded(self, pending: PendingDecision, detail: str, message: str) -> Outcome:
        """The factory did not record the decision: clear it in flight, audit, say so."""
        await self._clear_inflight(pending.task_id, pending.key)
        await self._audit_pending(pending, "failed", detail)
        return Outcome("failed", message, pending.tracked)

    async def _on_conflict(self, pending: PendingDecision, why: str) -> Outcome:
        """The factory answered 409 CONFLICT (contract §7.1): the task is decided.

        Usually by someone else; but when the factory no longer replays this request's
        first answer (its idempotency record expired, e.g. a re-send a day later) the 409 is
        for this very decision. So the task is read back first: a record that is this
        decision — same verdict, decided by this person (:meth:`_decided_by`) — settles it as
        done; anything else is the conflict (:meth:`_conflicted`).
        """
        state, found = await self._read_back(pending.task_id)
        if (
            state == "decided"
            and found is not None
            and found.decision is not None
            and found.decision.value == pending.decision
            and self._decided_by(found, pending.actor)
        ):
            detail = f"{why}: the factory's record is this decision (read back)"
            return await self._settle_from_factory(pending, found, detail)
        await self._clear_inflight(pending.task_id, pending.key)
        return await self._conflicted(pending, found if state == "decided" else None)

    async def _conflicted(self, pending: PendingDecision, found: Task | None = None) -> Outcome:
        """The factory answered 409 CONFLICT (contract §7.1): someone decided first.

        Re-reads the task (unless ``found``, the factory's record just read, is given),
        audits the conflict, brings the message up to date and says who decided and when.
        """
        fresh = await (self.board.track(found) if found else self._refetch(pending.task_id))
        await self._audit_pending_conflict(pending, fresh or pending.tracked)
        await self._show_change(pending.task_id, quietly=False)
        return say.decided_by_someone_first(fresh, self.time_text)

    async def _unconfirmed(
        self, pending: PendingDecision, on_retry: ProgressCallback | None, problem: str
    ) -> Outcome:
        """Every attempt timed out or was answered with something unreadable: the outcome is
        unknown, not a "no". The person is told so, the task is read back and the truth is
        told: recorded (shown as done, with the factory's ``decidedBy``), NOT recorded (the
        buttons are live again) or still unknown (the decision stays in flight and is re-sent
        in the background with the same ``Idempotency-Key``; the person gets a DM)."""
        if on_retry is not None:
            await self._quietly(
                on_retry(PROGRESS_NOTICE, say.CHECKING),
                "tell the person the decision is being checked",
            )
        state, task = await self._read_back(pending.task_id)
        unconfirmed = f"unconfirmed ({problem})"
        if state == "decided" and task is not None:
            return await self._settle_from_factory(pending, task, f"{unconfirmed}; read back")
        if state in ("open", "gone"):
            detail = f"{unconfirmed}; read back: {state}, not recorded"
            message = say.GONE_READ_BACK if state == "gone" else say.NOT_RECORDED_READ_BACK
            outcome = await self._not_recorded(pending, detail, message)
            if state == "gone":
                await self._close_gone(pending.task_id)
            return outcome
        detail = f"{unconfirmed}; task not readable; re-sent in the background"
        await self._audit_pending(pending, "unknown", detail)
        self._resend_in_background(pending.task_id, notify=True)
        return Outcome("unconfirmed", say.QUEUED, pending.tracked)

    async def _after_bridge_failure(
        self, tracked: TrackedTask, key: str, exc: Exception
    ) -> Outcome:
        """The bridge failed in the middle of a decision: if it is still in flight (or the
        store cannot tell), hand it to a background re-send and say so; otherwise it was
        settled before the failure, and the message shows how."""
        task_id = tracked.task_id
        try:
            fresh = await self.store.get_task(task_id)
            still = fresh is not None and fresh.inflight_key == key
        except Exception:
            still = True
        if still:
            self._resend_in_background(task_id, notify=True)
            return Outcome("unconfirmed", say.bridge_failed(exc, still_in_flight=True), tracked)
        return Outcome("failed", say.bridge_failed(exc, still_in_flight=False), tracked)

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
        detail = f"the bridge could not record it: {exc!r}"[:500]
        await self._audit_decision(actor, decision, tracked.task_id, request, "failed", detail)
        return Outcome("failed", say.not_marked(exc), tracked)

    async def _settle_from_factory(
        self, pending: PendingDecision, task: Task, detail: str
    ) -> Outcome:
        """The task read back is decided: ours (stored as confirmed, shown as done with the
        factory's ``decidedBy``) or someone else's (ours cleared, theirs shown)."""
        if (
            task.decision is not None
            and task.decision.value == pending.decision
            and self._decided_by(task, pending.actor)
        ):
            outcome = await self._confirmed(pending, task, detail)
            if outcome.kind == "done" and task.decided_by:
                message = say.confirmed_by_read_back(outcome.message, task.decided_by)
                outcome = Outcome("done", message, outcome.tracked)
            return outcome
        await self._clear_inflight(pending.task_id, pending.key)
        await self.board.apply_factory_task(task)
        fresh = await self.store.get_task(pending.task_id)
        await self._audit_pending_conflict(pending, fresh or pending.tracked)  # who decided
        return say.decided_by_someone_first(fresh, self.time_text, yours_lost=True)

    async def _close_gone(
        self, task_id: str, reason: str = "the factory answered 404 or 410 when it was read back"
    ) -> None:
        """The factory no longer has the task (a decision or its read-back answered 404 or
        410): close it here too (:meth:`bot.bridge.Bridge.task_gone`), so its buttons go and
        its ladder stops, without waiting for reconciliation."""
        await self._quietly(self.board.task_gone(task_id, reason), f"close {task_id}")

    async def _give_back_mark(self, task_id: str, key: str) -> None:
        """Clear an in-flight mark whose write raised: a connection lost while its commit was
        on the way leaves the server's answer unknown, and a mark the server did store would
        hold off every later click and be sent at the next start, though the person was told
        that nothing was sent. Clearing only ``key``'s mark touches nobody else's."""
        try:
            await self.store.abort_decision(task_id, key)
        except Exception:  # the database is still away: nothing more can be done now
            log.warning("in-flight mark %s of task %s not cleared", key, task_id, exc_info=True)

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

    # ------------------------------------------------------------------ re-sending
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
        option = self.inflight_options.get(key)
        request: dict[str, Any] = {"decision": decision, "notes": notes, "idempotencyKey": key}
        if option is not None:
            request["option"] = option
        pending = PendingDecision(tracked, decision, actor, notes, key, request, option)
        try:
            if option is None and _needs_option(tracked, decision):
                outcome = await self._option_lost(pending, why)
            else:
                outcome = await self._resend_once(pending, why)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # e.g. the database took no write: still in flight
            log.exception("%s: decision on %s not settled", why, tracked.task_id)
            return Outcome("failed", f"{why}: {exc!r}; still in flight", tracked)
        if notify and actor.discord_user_id is not None:
            try:
                fresh = await self.store.get_task(tracked.task_id)
            except Exception:
                return outcome
            if fresh is None or fresh.inflight_key != key:  # settled: tell the clicker
                await self._dm_outcome(actor, tracked, decision, outcome)
        return outcome

    async def _option_lost(self, pending: PendingDecision, why: str) -> Outcome:
        """A ``decision`` task's pick in flight whose option is no longer known (a restart,
        a failover): never re-sent without it. The task is read back: a decision found there
        settles it; found open while the first request may still land, or not readable, it
        stays in flight and is read again later; else the pick is cleared (the menu is live
        again) and the person is told to pick again."""
        state, found = await self._read_back(pending.task_id)
        if state == "decided" and found is not None:
            return await self._settle_from_factory(pending, found, f"{why}; read back")
        if state == "unknown" or (state == "open" and self.may_still_land(pending.tracked)):
            detail = f"{why}: the chosen option is unknown and the task {state} for now"
            await self._audit_pending(pending, "failed", detail)
            return Outcome("failed", detail, pending.tracked)
        outcome = await self._not_recorded(
            pending, f"{why}: the chosen option is unknown after a restart", say.OPTION_LOST
        )
        await self._quietly(
            self.board.refresh_message(pending.task_id),
            f"refresh the message of {pending.task_id}",
        )
        return outcome

    async def _resend_once(self, pending: PendingDecision, why: str) -> Outcome:
        """One re-send of a decision in flight (see :meth:`resume_decision`); a failure of
        the bridge to store the outcome is raised (the decision stays in flight)."""
        task_id = pending.task_id
        try:
            task = await self._complete(pending)
            problem = _answer_problem(pending, task)
            if problem is None and not self._answer_is_ours(pending, task):
                problem = "another decision"  # read back, as in send (contract §7.1: a 409)
            if problem is not None:  # a 200 that does not say it was recorded: read back
                raise FactoryUnavailable(f"the factory answered {problem}", uncertain=True)
        except FactoryUnavailable as exc:
            if exc.uncertain:
                state, found = await self._read_back(task_id)
                if state == "decided" and found is not None:
                    return await self._settle_from_factory(pending, found, f"{why}; read back")
                if state == "gone":
                    detail = f"{why}: the factory no longer knows the task"
                    outcome = await self._not_recorded(pending, detail, say.GONE_RESEND)
                    await self._close_gone(task_id)
                    return outcome
            detail = f"{why}: {exc}; still in flight, retried later"
            await self._audit_pending(pending, "failed", detail)
            return Outcome("failed", str(exc), pending.tracked)
        except FactoryError as exc:
            if exc.is_conflict:
                return await self._on_conflict(pending, f"{why}: 409")
            message = say.factory_refused(
                exc, "it", ": your decision was NOT recorded. The buttons are live again."
            )
            outcome = await self._not_recorded(pending, f"{why}, refused: {exc}", message)
            await self._quietly(
                self.board.refresh_message(task_id), f"refresh the message of {task_id}"
            )
            return outcome
        return await self._store_confirmed(pending, task, f"{why}; factory confirmed")

    async def _dm_outcome(
        self, actor: Actor, tracked: TrackedTask, decision: str, outcome: Outcome
    ) -> None:
        """DM the person whose click was cut short what became of their decision (audited)."""
        user_id = actor.discord_user_id
        notifier = self.board.notifier
        if user_id is None or not isinstance(notifier, DirectMessages):
            return
        text = say.dm_outcome(tracked, decision, outcome, self.time_text)
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
