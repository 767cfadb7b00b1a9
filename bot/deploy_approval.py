"""The two-person rule for production deploys: collect distinct approvers before sending.

Rules in :mod:`escalation.deploy_guard`; the number needed is ``DEPLOY_REQUIRED_APPROVERS`` or
the approval's ``requiredApprovers`` (factory contract §1.4), whichever is larger.
"""

from __future__ import annotations

from typing import Any

from bot.decision_context import DecisionContext
from bot.outcomes import (
    Actor,
    Outcome,
    deploy_needs_identity,
    deploy_pending,
    deploy_same_approver,
)
from bot.store import TrackedTask
from escalation.deploy_guard import DeployApproval

__all__ = ["DeployApprovals"]


class DeployApprovals(DecisionContext):
    """The deploy-approval step of :class:`bot.actions.Actions`."""

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
            ``refused`` (they had approved already, or they have no Discord identity to be
            told apart by; nothing changed).
        """
        task_id = tracked.task_id
        required = tracked.approvals_required(self.settings.deploy_required_approvers)
        if required <= 1:
            return tracked

        async def audit(outcome: str, detail: str) -> None:
            await self._audit(
                actor,
                action="task.deploy_approval",
                task_id=task_id,
                request=request,
                outcome=outcome,
                detail=detail,
            )

        if actor.discord_user_id is None:  # distinct people are told apart by Discord id
            await audit("refused", "no Discord identity to count as a distinct approver")
            return Outcome("refused", deploy_needs_identity(required), tracked)
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
            await audit("ok", f"{count} of {required} deploy approvals")
        if count >= required:
            fresh = await self.store.get_task(task_id)
            return fresh or tracked
        if not added:
            await audit("refused", "same approver twice")
            return Outcome("refused", deploy_same_approver(count, required), tracked)
        await self.board.refresh_message(task_id)
        return Outcome("pending", deploy_pending(tracked, count, required), tracked)
