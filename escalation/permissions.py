"""Who may do what: the role rules for deciding, acknowledging and snoozing tasks.

Pure functions over role ids, so that buttons, slash commands and batch actions apply exactly
the same checks.
"""

from __future__ import annotations

from collections.abc import Collection

from .deploy_guard import is_guarded
from .models import Task, TaskDecision

__all__ = ["decision_refusal", "needs_deploy_confirmation"]


def needs_deploy_confirmation(
    task: Task, decision: TaskDecision | str, *, guarded: bool | None = None
) -> bool:
    """True when this decision may ship to production and so needs the typed "DEPLOY" modal.

    Source: master plan §8 ("type DEPLOY to confirm" for irreversible actions). Only approving
    is irreversible; rejecting or deferring a production task is not.

    Parameters
    ----------
    task:
        The task to decide.
    decision:
        ``approved``, ``rejected`` …
    guarded:
        The deploy guard's verdict when the caller knows the approval behind the task (a
        tracked task's ``guarded``); ``None`` judges from the task alone
        (:func:`escalation.deploy_guard.is_guarded`).
    """
    if TaskDecision(decision) is not TaskDecision.APPROVED:
        return False
    return is_guarded(task) if guarded is None else guarded


def decision_refusal(
    task: Task,
    decision: TaskDecision | str,
    member_role_ids: Collection[int],
    *,
    approver_role_ids: Collection[int],
    deploy_approver_role_ids: Collection[int],
    guarded: bool | None = None,
) -> str | None:
    """Why this member may not take this decision, or ``None`` when they may.

    Parameters
    ----------
    task:
        The task to decide.
    decision:
        ``approved``, ``rejected``, ``deferred`` …
    member_role_ids:
        Discord role ids of the member who asked.
    approver_role_ids, deploy_approver_role_ids:
        ``DISCORD_APPROVER_ROLE_IDS`` and ``DISCORD_DEPLOY_APPROVER_ROLE_IDS``.
    guarded:
        As for :func:`needs_deploy_confirmation`.

    Rules: any decision needs an approver role (a deploy-approver role counts as one);
    approving a production deploy needs a deploy-approver role. With no approver roles
    configured nobody may decide: the bridge fails closed.
    """
    roles = set(member_role_ids)
    deployers = set(deploy_approver_role_ids)
    approvers = set(approver_role_ids) | deployers
    if not approvers:
        return "No approver roles are configured (DISCORD_APPROVER_ROLE_IDS), so nobody can decide tasks from Discord."
    if not roles & approvers:
        return "You need an approver role to decide factory tasks. Nothing was sent to the factory."
    if needs_deploy_confirmation(task, decision, guarded=guarded) and not roles & deployers:
        return (
            "Approving a production deploy needs a deploy-approver role. "
            "Nothing was sent to the factory."
        )
    return None
