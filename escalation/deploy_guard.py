"""The deploy guard: which tasks may ship to production, and how many people must approve them.

A **guarded** task is one whose approval may ship to production. It is never batched nor
approved in bulk, it needs a deploy-approver role and the typed ``DEPLOY`` confirmation
(master plan §8, "type DEPLOY to confirm" for irreversible actions), and it may need the
approvals of several distinct people (the contract's ``Approval.requiredApprovers``, §1.4).

The rule fails safe: **guard when in doubt**. A false alarm costs one typed word; a miss ships
to production. Signals (any one guards the task):

* ``stageName`` is ``production`` or ``staging`` (contract Appendix A: the staging gate is the
  promotion to production, "staging → production | YES (deploy)");
* the approval behind the task has ``type: "deploy"`` (contract §1.4 ``ApprovalType``), or its
  own ``stageName`` is ``production`` or ``staging`` (whatever the task's says), or the bridge
  tried to read that approval and could not;
* ``context.modalConfig.target == "production"``;
* ``context.metrics.deploysToProduction`` is truthy;
* the title or the summary names production as a word (``production``, ``prod``,
  ``→ Production``).

Only an explicit ``context.modalConfig.target == "staging"`` lifts the *implicit* signals (the
staging stage, the task's or its approval's, and a ``deploy`` approval); an explicit production
signal (the production stage, the metric, production named in the text) still guards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from .models import Approval, PipelineStage, Task

__all__ = [
    "DeployApproval",
    "GuardSignal",
    "approvals_required",
    "guard_signals",
    "is_guarded",
]

_PRODUCTION_WORD = re.compile(r"(?<![A-Za-z0-9])(production|prod)(?![A-Za-z0-9])", re.IGNORECASE)


class GuardSignal(StrEnum):
    """One reason a task is guarded (shown in the audit and on the message)."""

    PRODUCTION_STAGE = "stage is production"
    STAGING_STAGE = "stage is staging (promotion to production)"
    DEPLOY_APPROVAL = "its approval is a deploy"
    APPROVAL_PRODUCTION = "its approval is for the production stage"
    APPROVAL_STAGING = "its approval is for the staging stage (promotion to production)"
    APPROVAL_UNREAD = "its approval could not be read"
    TARGET_PRODUCTION = "target is production"
    METRIC = "context says it deploys to production"
    NAMED = "title or summary names production"


@dataclass(frozen=True)
class DeployApproval:
    """One person's approval of a guarded task, collected before the decision is sent.

    Attributes
    ----------
    discord_user_id:
        The approver's Discord user id (distinct people are told apart by it).
    name:
        Their Discord username.
    factory_user_id:
        Their factory user id from the roster, ``None`` when not in it.
    at:
        When they approved (aware UTC).
    """

    discord_user_id: int
    name: str
    factory_user_id: str | None
    at: datetime

    def to_wire(self) -> dict[str, Any]:
        """One entry of ``decisionData.approvers``: ``{discordUserId, name, factoryUserId, at}``."""
        return {
            "discordUserId": str(self.discord_user_id),
            "name": self.name,
            "factoryUserId": self.factory_user_id,
            "at": self.at.isoformat(),
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> DeployApproval:
        """The inverse of :meth:`to_wire` (``at`` parsed as ISO 8601).

        Raises
        ------
        KeyError, ValueError
            For a malformed entry.
        """
        return cls(
            discord_user_id=int(data["discordUserId"]),
            name=str(data["name"]),
            factory_user_id=data.get("factoryUserId"),
            at=datetime.fromisoformat(str(data["at"])),
        )


def _target(task: Task) -> str:
    return str(task.context.modal_config.get("target", "") or "").strip().lower()


def _truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no", "off")
    try:
        return bool(value)
    except Exception:  # pragma: no cover - anything odd counts as a yes (fail safe)
        return True


def guard_signals(
    task: Task, approval: Approval | None = None, *, approval_unread: bool = False
) -> tuple[GuardSignal, ...]:
    """Every signal that says approving ``task`` may ship to production (empty: unguarded).

    Parameters
    ----------
    task:
        The factory task (contract §1.4 ``Task``).
    approval:
        The ``Approval`` behind it (from ``approval.pending`` or ``GET /v1/approvals``), when
        the bridge knows it.
    approval_unread:
        ``True`` when the bridge had to look the approval up and could not (factory
        unreachable, unreadable answer): counted as a deploy, fail safe.

    Returns
    -------
    tuple of GuardSignal
        In a fixed order; empty when nothing points at production.
    """
    explicit_staging = _target(task) == "staging"
    signals: list[GuardSignal] = []
    if task.stage_name is PipelineStage.PRODUCTION:
        signals.append(GuardSignal.PRODUCTION_STAGE)
    if task.stage_name is PipelineStage.STAGING and not explicit_staging:
        signals.append(GuardSignal.STAGING_STAGE)
    if approval is not None and (approval.type or "").lower() == "deploy" and not explicit_staging:
        signals.append(GuardSignal.DEPLOY_APPROVAL)
    # the approval names its own stage (contract §1.4 ``Approval.stageName``, required there),
    # whatever the task's (which may be null, or an earlier stage)
    approval_stage = (approval.stage_name or "").strip().lower() if approval is not None else ""
    if approval_stage == PipelineStage.PRODUCTION.value:
        signals.append(GuardSignal.APPROVAL_PRODUCTION)
    if approval_stage == PipelineStage.STAGING.value and not explicit_staging:
        signals.append(GuardSignal.APPROVAL_STAGING)
    if approval_unread and not explicit_staging:
        signals.append(GuardSignal.APPROVAL_UNREAD)
    if _target(task) == "production":
        signals.append(GuardSignal.TARGET_PRODUCTION)
    if _truthy(task.context.metrics.get("deploysToProduction", 0)):
        signals.append(GuardSignal.METRIC)
    if _PRODUCTION_WORD.search(task.title) or _PRODUCTION_WORD.search(task.context.summary):
        signals.append(GuardSignal.NAMED)
    return tuple(signals)


def is_guarded(
    task: Task, approval: Approval | None = None, *, approval_unread: bool = False
) -> bool:
    """True when approving ``task`` may ship to production (see :func:`guard_signals`)."""
    return bool(guard_signals(task, approval, approval_unread=approval_unread))


def approvals_required(
    task: Task,
    approval: Approval | None,
    configured: int,
    *,
    approval_unread: bool = False,
) -> int:
    """How many distinct deploy approvers must approve ``task`` before the decision is sent.

    Parameters
    ----------
    task, approval, approval_unread:
        As for :func:`guard_signals`.
    configured:
        Setting ``DEPLOY_REQUIRED_APPROVERS`` (≥ 1).

    Returns
    -------
    int
        ``1`` for an unguarded task; otherwise the larger of ``configured`` and the approval's
        ``requiredApprovers`` (contract §1.4), at least 1.
    """
    if not is_guarded(task, approval, approval_unread=approval_unread):
        return 1
    from_factory = approval.required_approvers if approval is not None else 1
    return max(1, configured, from_factory)
