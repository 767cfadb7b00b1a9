"""What people do to a task, done once: decide, acknowledge, snooze, approve in bulk.

:class:`Actions` is the exactly-once decision protocol, written once and used by every way in:
task buttons and modals (``bot.discord.views.run_decision``), ``/factory approve|reject``, the
batch message's "Approve All Low-Risk" (:mod:`bot.bulk_approval`), the ladder, and the
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
from datetime import timedelta
from typing import Any

from bot import outcomes as say
from bot.bulk_approval import BulkApprovals
from bot.decision_context import PendingDecision
from bot.factory.client import FactoryClient, FactoryError, FactoryUnavailable
from bot.logs import task_log_context
from bot.outcomes import Actor, Outcome, ProgressCallback
from bot.store import TrackedTask
from escalation.models import TaskDecision

__all__ = ["ACK_WAIT_SECONDS", "Actions"]

log = logging.getLogger(__name__)


#: Seconds the phone's acknowledgement waits for another acknowledgement of the same task
#: to end (Twilio waits 15 s for a webhook's answer).
ACK_WAIT_SECONDS = 5.0


class Actions(BulkApprovals):
    """The actions on tasks (see the module docstring); built and owned by the bridge."""

    # ------------------------------------------------------------------ checks
    async def _gate(
        self,
        task_id: str,
        decision: str,
        actor: Actor,
        *,
        role_check: bool = True,
        reread_approval: bool = False,
    ) -> tuple[Outcome | None, TrackedTask | None]:
        """Known, allowed, not decided yet: ``(None, task)``; otherwise the answer and task.

        ``reread_approval`` looks up again an approval that could not be read: the decision
        does, the checks before an interaction's answer do not (the task is guarded
        meanwhile, so the DEPLOY form opens at once; Discord: 3 s deadline).
        """
        tracked, outcome = await self._find(task_id, reread_approval=reread_approval)
        if tracked is None:
            return outcome, None
        if role_check:
            refusal = self.refusal_for(tracked, decision, actor)
            if refusal is not None:
                return Outcome("refused", refusal, tracked), tracked
        if tracked.is_decided:
            return self._conflict(tracked), tracked
        return None, tracked

    async def _find(
        self, task_id: str, *, reread_approval: bool
    ) -> tuple[TrackedTask | None, Outcome]:
        """The task (:meth:`bot.bridge.Bridge.get_or_fetch`), or ``None`` and the answer: not
        known to the factory either, or the factory could not be asked (then nobody is told
        the task does not exist)."""
        try:
            tracked = await self.board.get_or_fetch(task_id, reread_approval=reread_approval)
        except (FactoryError, FactoryUnavailable) as exc:
            log.warning("task %s could not be read from the factory: %s", task_id, exc)
            return None, Outcome("failed", say.task_unreadable(task_id, exc))
        return tracked, Outcome("unknown", say.unknown_task(task_id))

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
        deploy_confirmed: bool = False,
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
        deploy_confirmed:
            True only from the DEPLOY form (master plan §8: "type DEPLOY to confirm"). An
            approval of a guarded task (:mod:`escalation.deploy_guard`) without it is refused
            and nothing is sent, also when the task became a production deploy between the
            person's click and this call (an ``approval.pending`` arriving meanwhile).

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
            task_id, decision, actor, role_check=not skip_role_check, reread_approval=True
        )
        if outcome is not None or tracked is None:
            assert outcome is not None
            if tracked is None:
                detail = (
                    "task unknown to the bridge and the factory"
                    if outcome.kind == "unknown"
                    else outcome.message
                )
                await self._audit_decision(actor, decision, task_id, request, outcome.kind, detail)
            elif outcome.kind == "refused":
                await self._audit_decision(
                    actor, decision, task_id, request, "refused", outcome.message
                )
            else:
                await self._audit_conflict(actor, decision, task_id, request, tracked)
            return outcome
        checked_as_deploy = decision == TaskDecision.APPROVED.value and tracked.guarded
        if checked_as_deploy and not deploy_confirmed:
            return await self._deploy_unconfirmed(actor, decision, tracked, request)
        if checked_as_deploy:
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
            await self._give_back_mark(task_id, key)
            return await self._not_recorded_by_bridge(actor, decision, tracked, request, exc)
        if won is None:
            settled = await self._wait_settled(task_id)
            if settled is not None and settled.is_decided:
                await self._audit_conflict(actor, decision, task_id, request, settled)
                return self._conflict(settled)
            return Outcome("failed", say.BUSY, settled)
        if decision == TaskDecision.APPROVED.value and won.guarded:
            late = await self._deploy_changed(won, key, actor, request, checked_as_deploy)
            if late is not None:
                return late
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

    async def _deploy_changed(
        self,
        won: TrackedTask,
        key: str,
        actor: Actor,
        request: dict[str, Any],
        checked_as_deploy: bool,
    ) -> Outcome | None:
        """The deploy checks again on the task as the in-flight claim read it (its own
        transaction); ``None`` when they still hold, else the claim is given back and the
        answer returned. Between the checks and the claim an ``approval.pending`` may have
        made the task a deploy (its role and typed DEPLOY were not applied) or raised its
        ``requiredApprovers`` (contract §1.4): then this approval is recorded as one of them
        and nothing is sent yet."""
        decision = TaskDecision.APPROVED.value
        if not checked_as_deploy:
            await self.store.abort_decision(won.task_id, key)
            return await self._deploy_unconfirmed(actor, decision, won, request)
        required = won.approvals_required(self.settings.deploy_required_approvers)
        if required <= 1 or len(won.deploy_approvals) >= required:
            return None
        await self.store.abort_decision(won.task_id, key)
        gathering = await self._collect_deploy_approval(won, actor, request)
        # enough approvers meanwhile (another one approved in these milliseconds): the
        # person tries again and the decision goes out with every name
        return gathering if isinstance(gathering, Outcome) else Outcome("failed", say.BUSY, won)

    async def _deploy_unconfirmed(
        self, actor: Actor, decision: str, tracked: TrackedTask, request: dict[str, Any]
    ) -> Outcome:
        """Refuse (and audit) an approval of a production deploy that did not come through
        the DEPLOY form with the deploy checks: nothing is sent."""
        detail = "production deploy approved without the typed DEPLOY; nothing sent"
        await self._audit_decision(actor, decision, tracked.task_id, request, "refused", detail)
        return Outcome("refused", say.DEPLOY_NOT_CONFIRMED, tracked)

    # ------------------------------------------------------------------ acknowledge / snooze
    async def _open_for(
        self, task_id: str, actor: Actor, action: str, as_decision: str
    ) -> tuple[Outcome | None, TrackedTask | None]:
        """The checks before acknowledging or snoozing: the task is known and open, and the
        member may ``as_decision`` it (role check); a refusal is audited as ``task.<action>``."""
        tracked, unknown = await self._find(task_id, reread_approval=False)
        if tracked is None:
            return unknown, None
        if tracked.is_decided:
            return self._conflict(tracked), tracked
        refusal = self.refusal_for(tracked, as_decision, actor)
        if refusal is not None:
            refusal = refusal.replace("decide", action)  # audited as the person was told
            await self._audit(
                actor, action=f"task.{action}", task_id=task_id, outcome="refused", detail=refusal
            )
            return Outcome("refused", refusal, tracked), tracked
        return None, tracked

    @task_log_context
    async def acknowledge(
        self, task_id: str, actor: Actor, *, idempotency_seed: str, first: bool = False
    ) -> Outcome:
        """Acknowledge a task: ``POST /v1/tasks/{id}/claim`` and "👀 acknowledged by @name".

        Acknowledging stops the reminder steps of the ladder (not the breach or critical).
        The role needed is the one to reject the task (an approver role; no deploy role).
        One acknowledgement of a task runs at a time in this process (the leader's: a
        standby hands Twilio's webhooks over), so ``first`` can hold.

        ``first``: the phone's acknowledgement (README "Phone"): a task someone acknowledged
        already is not acknowledged again — nothing goes to the factory, the outcome is a
        ``conflict`` naming who (audited ``conflict``). Without it (the Acknowledge button)
        the factory's claim is sent again and the first acknowledger stays shown.
        """
        entered = False
        try:
            # the phone's waits a few seconds at most: Twilio waits 15 s for its answer
            async with self.acknowledging(
                task_id, wait_seconds=ACK_WAIT_SECONDS if first else None
            ):
                entered = True
                return await self._acknowledge(task_id, actor, idempotency_seed, first=first)
        except TimeoutError:
            if entered:
                raise
            await self._audit(
                actor,
                action="task.acknowledge",
                task_id=task_id,
                outcome="conflict",
                detail="another acknowledgement of the task under way; nothing sent",
            )
            return Outcome("conflict", say.ACK_UNDER_WAY, None)

    async def _acknowledge(
        self, task_id: str, actor: Actor, idempotency_seed: str, *, first: bool
    ) -> Outcome:
        outcome, tracked = await self._open_for(task_id, actor, "acknowledge", "rejected")
        if outcome is not None or tracked is None:
            assert outcome is not None
            return outcome

        async def audit(outcome: str, detail: str | None = None) -> None:
            await self._audit(
                actor, action="task.acknowledge", task_id=task_id, outcome=outcome, detail=detail
            )

        if first and tracked.acknowledged_at is not None:
            who = tracked.acknowledged_by_name or "someone"
            await audit("conflict", f"already acknowledged by {who}; nothing sent")
            return Outcome("conflict", f"Already acknowledged by {who}.", tracked)

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
            conflicted = await self._claim_conflict(tracked, actor, exc)
            if conflicted is not None:
                return conflicted
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

    async def _claim_conflict(
        self, tracked: TrackedTask, actor: Actor, exc: FactoryError
    ) -> Outcome | None:
        """The factory answered the claim 409 CONFLICT (contract §1.3: a state conflict, e.g.
        the task was decided on the dashboard before its event reached the bridge).

        The task is read back. Decided: the factory's record is applied and the person told
        who decided (nothing is acknowledged). Still open (a factory that refuses to claim a
        task someone else claimed): ``None``, the acknowledgement goes ahead, as the reminders
        are what it stops. Not readable: refused, with the factory's reason.
        """
        task_id = tracked.task_id
        state, task = await self._read_back(task_id)
        if state == "decided" and task is not None:
            await self._quietly(self.board.apply_factory_task(task), f"apply task {task_id}")
            fresh = await self.store.get_task(task_id)
            await self._audit(
                actor,
                action="task.acknowledge",
                task_id=task_id,
                outcome="conflict",
                detail=f"{exc}; read back: decided ({task.decision})",
            )
            if fresh is not None and fresh.is_decided:
                return self._conflict(fresh)
            return Outcome("conflict", say.ack_refused(exc), tracked)
        if state == "open":
            return None
        await self._audit(
            actor,
            action="task.acknowledge",
            task_id=task_id,
            outcome="failed",
            detail=f"{exc}; read back: {state}",
        )
        return Outcome("failed", say.ack_refused(exc), tracked)

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
